"""Memory per queued task: tracker + queue holding N ready tasks (tracemalloc).

python benchmarks/bench_memory.py --tasks 1000000
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

import sluicegate as sg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=64)
    args = parser.parse_args()
    n = args.tasks
    specs = [sg.TaskGroupSpec(f"g{i}") for i in range(args.groups)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracker = sg.DagCompletionTracker()
    for i in range(n):
        tracker.add(i, group=specs[i % args.groups])
    queue = sg.scheduling.FairTaskQueue()
    accepted = queue.enqueue(tracker.ready_frontier())
    tracker.mark_enqueued(accepted)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(queue) == n
    per_task = used / n
    print(f"{n:,} queued tasks in tracker + queue: {used / 2**20:,.1f} MiB, {per_task:,.0f} B/task")
    print(f"projected for 1,000,000 tasks: {per_task * 1e6 / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
