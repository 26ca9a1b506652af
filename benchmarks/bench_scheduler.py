"""Scheduler end to end with no-op tasks vs bare trio (pyperf). Time is per task.

The floor is bare trio: ``nursery.start_soon`` of every task, each entering a
``trio.CapacityLimiter`` of the same capacity.

- ``scheduler[...]``: no-op tasks, no event sink (the default).
- ``scheduler[...,sink=memory]``: the same with an ``InMemoryEventSink`` listening, i.e.
  what the scheduler's events cost per task (about seven events each).
- ``cells_with_model_call`` vs ``bare_trio_model_call``: every task makes one model call to a
  zero-latency ``SimulatedProvider``; sluicegate goes through the scheduler, the
  ``ModelRequestExecutor`` and the adaptive request controller, the floor calls the provider
  from bare trio tasks under a ``CapacityLimiter``. The difference is the whole stack's
  overhead per cell.

    python benchmarks/bench_scheduler.py --fast
"""

from __future__ import annotations

import time

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
        assert sink is None or len(sink.events) >= 5 * n
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


def _bare_trio(loops: int, n: int, capacity: int, call_model: bool) -> float:
    """The floor: every task spawned at once, each entering one ``CapacityLimiter``."""

    async def main() -> None:
        limiter = trio.CapacityLimiter(capacity)
        provider = _provider()

        async def task() -> None:
            async with limiter:
                if call_model:
                    await provider.call("m", REQUEST)

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(task)

    total = 0.0
    for _ in range(loops):
        t0 = time.perf_counter()
        trio.run(main)
        total += time.perf_counter() - t0
    return total


def bare_trio_model_call(loops: int, n: int, capacity: int) -> float:
    return _bare_trio(loops, n, capacity, call_model=True)


def bare_trio(loops: int, n: int, capacity: int) -> float:
    return _bare_trio(loops, n, capacity, call_model=False)


def _forward(cmd: list[str], args: object) -> None:
    for name in ["tasks", "capacity", "groups"]:
        cmd.extend([f"--{name}", str(getattr(args, name))])


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_forward)
    runner.argparser.add_argument("--tasks", type=int, default=20000)
    runner.argparser.add_argument("--capacity", type=int, default=64)
    runner.argparser.add_argument("--groups", default="1,8,64")
    args = runner.parse_args()
    n, cap = args.tasks, args.capacity
    runner.bench_time_func(f"bare_trio[tasks={n},capacity={cap}]", bare_trio, n, cap, inner_loops=n)
    for g in (int(x) for x in args.groups.split(",")):
        for policy in ("strict", "borrow"):
            runner.bench_time_func(
                f"scheduler[{policy},tasks={n},groups={g},capacity={cap}]",
                scheduler_run,
                n,
                g,
                cap,
                policy,
                inner_loops=n,
            )
    g = 8
    runner.bench_time_func(
        f"scheduler[strict,tasks={n},groups={g},capacity={cap},sink=memory]",
        scheduler_run,
        n,
        g,
        cap,
        "strict",
        True,
        inner_loops=n,
    )
    runner.bench_time_func(
        f"bare_trio_model_call[tasks={n},capacity={cap}]",
        bare_trio_model_call,
        n,
        cap,
        inner_loops=n,
    )
    runner.bench_time_func(
        f"cells_with_model_call[tasks={n},capacity={cap}]",
        cells_with_model_call,
        n,
        cap,
        inner_loops=n,
    )


if __name__ == "__main__":
    main()
