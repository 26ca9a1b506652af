"""Admission-cycle microbenchmark (pyperf).

Per task: ``enqueue`` (the frontier is enqueued in one call, as the scheduler does) +
``select_next`` + ``try_acquire`` + ``commit`` + ``release``. Reported time is per task.

    python benchmarks/bench_admission_cycle.py --fast --tasks 10000 --groups 1,256
"""

from __future__ import annotations

import time

import pyperf
import trio

import sluicegate as sg


def make_tasks(n: int, groups: int) -> list[sg.SchedulableTask]:
    specs = [sg.TaskGroupSpec(f"g{i}", float(1 + i % 4)) for i in range(groups)]
    return [sg.SchedulableTask(i, None, specs[i % groups]) for i in range(n)]


def make_policy(name: str) -> sg.scheduling.TaskAdmissionPolicy:
    return (
        sg.scheduling.BoundedBorrowPolicy(max_borrow=4)
        if name == "borrow"
        else sg.scheduling.StrictFairPolicy()
    )


def cycle(loops: int, tasks: list[sg.SchedulableTask], policy: str, capacity: int) -> float:
    # The controller always runs inside trio (its leases are stamped with trio's clock).
    return trio.run(_cycle, loops, tasks, policy, capacity)


async def _cycle(loops: int, tasks: list[sg.SchedulableTask], policy: str, capacity: int) -> float:
    total = 0.0
    for _ in range(loops):
        queue = sg.scheduling.FairTaskQueue()
        admission = sg.TaskAdmissionController(capacity=capacity, policy=make_policy(policy))
        is_eligible = admission.is_eligible
        select, commit = queue.select_next, queue.commit
        try_acquire, release = admission.try_acquire, admission.release
        t0 = time.perf_counter()
        queue.enqueue(tasks)
        while True:
            selection = select(is_eligible)
            if selection is None:
                break
            lease = try_acquire(selection.item, selection.view)
            commit(selection)
            release(lease)  # type: ignore[arg-type]
        total += time.perf_counter() - t0
        assert len(queue) == 0 and admission.active_leases == 0
    return total


def _forward(cmd: list[str], args: object) -> None:
    for name in ["tasks", "groups", "policies", "capacity"]:
        cmd.extend([f"--{name}", str(getattr(args, name))])


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_forward)
    runner.argparser.add_argument("--tasks", default="1000,10000,100000")
    runner.argparser.add_argument("--groups", default="1,8,64,256")
    runner.argparser.add_argument("--policies", default="strict,borrow")
    runner.argparser.add_argument("--capacity", type=int, default=64)
    args = runner.parse_args()
    for n in (int(x) for x in args.tasks.split(",")):
        for g in (int(x) for x in args.groups.split(",")):
            tasks = make_tasks(n, g)
            for policy in args.policies.split(","):
                runner.bench_time_func(
                    f"admission_cycle[{policy},tasks={n},groups={g}]",
                    cycle,
                    tasks,
                    policy,
                    args.capacity,
                    inner_loops=n,
                )


if __name__ == "__main__":
    main()
