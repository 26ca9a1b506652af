"""Scheduler end to end with no-op tasks vs hand-written trio floors (pyperf). Time is per task.

Floors, measured side by side in the same run:

- ``floor_bounded_spawn``: what a careful hand-written trio program does: acquire a
  ``trio.CapacityLimiter`` on behalf of the task *before* spawning it, so at most
  ``capacity`` tasks are alive; the task releases it when done. This is the fair floor.
- ``floor_chain_bounded_spawn``: the same for a rows x 4 columns chain (each row's cells run
  in column order): a ready deque and a dispatcher that acquires the limiter, then spawns;
  a finishing cell makes the next cell of its row ready and wakes the dispatcher.
- ``floor_spawn_all_unbounded`` (the old floor, kept for comparison only): ``start_soon`` of
  every task at once, each then parking on the limiter. It keeps every task alive at once
  and is about twice as slow as the bounded floor, so it flatters whoever is compared to it.

Sluicegate rows:

- ``scheduler[...]``: independent no-op tasks, no event sink (the default).
- ``chain4[...]``: the 4-column chain through ``AsyncTaskScheduler`` (one group per column).
- ``scheduler[...,sink=memory]``: with an ``InMemoryEventSink`` listening, i.e. what the
  scheduler's events cost per task (three events each under schema 2).
- ``cells_with_model_call`` vs ``floor_model_call_bounded_spawn``: every task makes one
  model call to a zero-latency ``SimulatedProvider``; sluicegate goes through the scheduler,
  the ``ModelRequestExecutor`` and the adaptive request controller, the floor calls the
  provider from bounded-spawn trio tasks. The difference is the whole stack's overhead.

    python benchmarks/bench_scheduler.py --fast [--only chain4,floor_chain]
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable

import pyperf
import trio

import sluicegate as sg


async def noop(task: sg.SchedulableTask) -> None:
    return None


def scheduler_run(
    loops: int, n: int, groups: int, capacity: int, policy: str, with_sink: bool = False
) -> float:
    specs = [sg.TaskGroupSpec(f"g{i}", float(1 + i % 4)) for i in range(groups)]
    total = 0.0
    for _ in range(loops):
        tracker = sg.DagCompletionTracker.from_tasks(
            [sg.SchedulableTask(i, None, specs[i % groups]) for i in range(n)]
        )
        pol = sg.scheduling.BoundedBorrowPolicy(max_borrow=4) if policy == "borrow" else None
        admission = sg.TaskAdmissionController(capacity=capacity, policy=pol)
        sink = sg.InMemoryEventSink() if with_sink else None
        scheduler = sg.AsyncTaskScheduler(tracker, noop, admission=admission, sink=sink)
        t0 = time.perf_counter()
        result = trio.run(scheduler.run)
        total += time.perf_counter() - t0
        assert result.counts["succeeded"] == n
        assert sink is None or len(sink.events) >= 3 * n  # ready, dispatched, completed
    return total


def chain4_run(loops: int, rows: int, capacity: int) -> float:
    """Rows x 4 columns, each cell depending on the previous column of its row."""
    specs = [sg.TaskGroupSpec(f"c{c}") for c in range(4)]
    total = 0.0
    for _ in range(loops):
        tracker = sg.DagCompletionTracker.from_tasks(
            [
                (sg.SchedulableTask((r, c), None, specs[c]), [(r, c - 1)] if c else [])
                for r in range(rows)
                for c in range(4)
            ]
        )
        scheduler = sg.AsyncTaskScheduler(tracker, noop, capacity=capacity)
        t0 = time.perf_counter()
        result = trio.run(scheduler.run)
        total += time.perf_counter() - t0
        assert result.counts["succeeded"] == rows * 4
    return total


REQUEST = sg.ModelRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8)


def _provider() -> sg.SimulatedProvider:
    return sg.SimulatedProvider(name="sim", latency_seconds=0.0, seed=1)


def cells_with_model_call(loops: int, n: int, capacity: int) -> float:
    total = 0.0
    for _ in range(loops):
        controller = sg.AdaptiveRequestAdmissionController(
            [
                sg.ModelEndpoint(
                    name="m", provider="sim", model_id="m", max_parallel_requests=capacity
                )
            ]
        )
        executor = sg.ModelRequestExecutor(controller, {"sim": _provider()})

        async def cell(
            task: sg.SchedulableTask, executor: sg.ModelRequestExecutor = executor
        ) -> None:
            await executor.execute("m", REQUEST)

        tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask(i) for i in range(n)])
        scheduler = sg.AsyncTaskScheduler(tracker, cell, capacity=capacity)
        t0 = time.perf_counter()
        result = trio.run(scheduler.run)
        total += time.perf_counter() - t0
        assert result.counts["succeeded"] == n
    return total


def _timed(loops: int, main: Callable[[], Awaitable[None]]) -> float:
    total = 0.0
    for _ in range(loops):
        t0 = time.perf_counter()
        trio.run(main)
        total += time.perf_counter() - t0
    return total


def floor_spawn_all_unbounded(loops: int, n: int, capacity: int) -> float:
    """The old floor: every task spawned at once, each then entering one ``CapacityLimiter``."""

    async def main() -> None:
        limiter = trio.CapacityLimiter(capacity)

        async def task() -> None:
            async with limiter:
                pass

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(task)

    return _timed(loops, main)


def _floor_bounded(loops: int, n: int, capacity: int, call_model: bool) -> float:
    """The fair floor: acquire on behalf of the task, then spawn it (<= capacity alive)."""

    async def main() -> None:
        limiter = trio.CapacityLimiter(capacity)
        provider = _provider()

        async def task(token: int) -> None:
            try:
                if call_model:
                    await provider.call("m", REQUEST)
            finally:
                limiter.release_on_behalf_of(token)

        async with trio.open_nursery() as nursery:
            for i in range(n):
                await limiter.acquire_on_behalf_of(i)
                nursery.start_soon(task, i)

    return _timed(loops, main)


def floor_bounded_spawn(loops: int, n: int, capacity: int) -> float:
    return _floor_bounded(loops, n, capacity, call_model=False)


def floor_model_call_bounded_spawn(loops: int, n: int, capacity: int) -> float:
    return _floor_bounded(loops, n, capacity, call_model=True)


def floor_chain_bounded_spawn(loops: int, rows: int, capacity: int) -> float:
    """Bounded spawn over a rows x 4 chain: a ready deque, one dispatcher, wake-ups."""

    async def main() -> None:
        limiter = trio.CapacityLimiter(capacity)
        ready: collections.deque[tuple[int, int]] = collections.deque((r, 0) for r in range(rows))
        wake = trio.Event()
        left = rows * 4

        async def cell(row: int, column: int, token: object) -> None:
            nonlocal left
            try:
                pass  # the no-op work
            finally:
                limiter.release_on_behalf_of(token)
                left -= 1
                if column < 3:
                    ready.append((row, column + 1))
                wake.set()

        async with trio.open_nursery() as nursery:
            while left:
                if not ready:
                    await wake.wait()
                    wake = trio.Event()
                    continue
                row, column = ready.popleft()
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(cell, row, column, token)

    return _timed(loops, main)


def _forward(cmd: list[str], args: object) -> None:
    for name in ["tasks", "capacity", "groups", "only"]:
        cmd.extend([f"--{name}", str(getattr(args, name))])


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_forward)
    runner.argparser.add_argument("--tasks", type=int, default=20000)
    runner.argparser.add_argument("--capacity", type=int, default=64)
    runner.argparser.add_argument("--groups", default="1,8,64")
    runner.argparser.add_argument(
        "--only", default="", help="comma-separated name prefixes of the benchmarks to run"
    )
    args = runner.parse_args()
    n, cap = args.tasks, args.capacity
    rows = n // 4
    wanted = [p for p in args.only.split(",") if p]

    def bench(name: str, func: Callable[..., float], *fargs: object) -> None:
        if not wanted or any(name.startswith(p) for p in wanted):
            runner.bench_time_func(name, func, *fargs, inner_loops=n)

    # Each floor right before the sluicegate rows it is the floor of.
    bench(f"floor_bounded_spawn[tasks={n},capacity={cap}]", floor_bounded_spawn, n, cap)
    bench(f"floor_spawn_all_unbounded[tasks={n},capacity={cap}]", floor_spawn_all_unbounded, n, cap)
    for g in (int(x) for x in args.groups.split(",")):
        for policy in ("strict", "borrow"):
            bench(
                f"scheduler[{policy},tasks={n},groups={g},capacity={cap}]",
                scheduler_run,
                n,
                g,
                cap,
                policy,
            )
    bench(
        f"floor_chain_bounded_spawn[rows={rows},columns=4,capacity={cap}]",
        floor_chain_bounded_spawn,
        rows,
        cap,
    )
    bench(f"chain4[rows={rows},columns=4,capacity={cap}]", chain4_run, rows, cap)
    bench(
        f"scheduler[strict,tasks={n},groups=8,capacity={cap},sink=memory]",
        scheduler_run,
        n,
        8,
        cap,
        "strict",
        True,
    )
    bench(
        f"floor_model_call_bounded_spawn[tasks={n},capacity={cap}]",
        floor_model_call_bounded_spawn,
        n,
        cap,
    )
    bench(f"cells_with_model_call[tasks={n},capacity={cap}]", cells_with_model_call, n, cap)


if __name__ == "__main__":
    main()
