"""Scheduler end to end with no-op tasks vs bare trio (pyperf). Time is per task.

The floor is bare trio: ``nursery.start_soon`` of every task, each entering a
``trio.CapacityLimiter`` of the same capacity.

    python benchmarks/bench_scheduler.py --fast
"""

from __future__ import annotations

import time

import pyperf
import trio

import sluicegate as sg


async def noop(task: sg.SchedulableTask) -> None:
    return None


def scheduler_run(loops: int, n: int, groups: int, capacity: int, policy: str) -> float:
    specs = [sg.TaskGroupSpec(f"g{i}", float(1 + i % 4)) for i in range(groups)]
    total = 0.0
    for _ in range(loops):
        tracker = sg.DagCompletionTracker.from_tasks(
            [sg.SchedulableTask(i, None, specs[i % groups]) for i in range(n)]
        )
        pol = sg.BoundedBorrowPolicy(max_borrow=4) if policy == "borrow" else None
        admission = sg.TaskAdmissionController(capacity=capacity, policy=pol)
        scheduler = sg.AsyncTaskScheduler(tracker, noop, admission=admission)
        t0 = time.perf_counter()
        result = trio.run(scheduler.run)
        total += time.perf_counter() - t0
        assert result.counts["succeeded"] == n
    return total


def bare_trio(loops: int, n: int, capacity: int) -> float:
    async def main() -> None:
        limiter = trio.CapacityLimiter(capacity)

        async def task() -> None:
            async with limiter:
                pass

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(task)

    total = 0.0
    for _ in range(loops):
        t0 = time.perf_counter()
        trio.run(main)
        total += time.perf_counter() - t0
    return total


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


if __name__ == "__main__":
    main()
