"""The demo workload: a rows x columns table where every cell is a task."""

from __future__ import annotations

import random
import time
from collections import Counter

import trio

from ._errors import RetryableTaskError
from ._events import EventSink, JsonLinesEventSink
from ._readiness import DagCompletionTracker
from ._scheduler import AsyncTaskScheduler, RetryPolicy
from ._task import SchedulableTask

# column -> (dependencies, fairness weight, mean latency in seconds)
COLUMNS: dict[str, tuple[tuple[str, ...], float, float]] = {
    "topic": ((), 1.0, 0.002),
    "question": (("topic",), 3.0, 0.006),
    "answer": (("topic", "question"), 3.0, 0.008),
    "judge": (("question", "answer"), 1.0, 0.004),
}


def build_table(rows: int) -> DagCompletionTracker:
    tracker = DagCompletionTracker()
    for row in range(rows):
        for column, (deps, weight, _) in COLUMNS.items():
            tracker.add(
                (row, column),
                {"row": row, "column": column},
                depends_on=[(row, d) for d in deps],
                group=column,
                weight=weight,
            )
    tracker.seal()
    return tracker


def run_demo(*, rows: int, capacity: int, seed: int, events: str | None) -> int:
    rng = random.Random(seed)
    started: Counter[str] = Counter()
    retries = 0

    async def cell(task: SchedulableTask) -> None:
        nonlocal retries
        column = task.payload["column"]
        started[column] += 1
        await trio.sleep(rng.expovariate(1.0 / COLUMNS[column][2]))
        if rng.random() < 0.02:
            retries += 1
            raise RetryableTaskError("simulated transient failure", retry_after=0.01)

    tracker = build_table(rows)
    sink: EventSink | None = JsonLinesEventSink(events) if events else None
    scheduler = AsyncTaskScheduler(
        tracker, cell, capacity=capacity, sink=sink, retry=RetryPolicy(initial_backoff=0.01)
    )
    t0 = time.perf_counter()
    result = trio.run(scheduler.run)
    wall = time.perf_counter() - t0
    if isinstance(sink, JsonLinesEventSink):
        sink.close()
    cells = len(tracker)
    print(f"sluicegate demo: {rows} rows x {len(COLUMNS)} columns = {cells} cell tasks")
    print(f"  capacity {capacity}, wall {wall:.2f}s, {cells / wall:,.0f} cells/s")
    print("  outcomes: " + ", ".join(f"{k}={v}" for k, v in result.counts.items()))
    print(f"  retried attempts: {retries}")
    print("  attempts by column: " + ", ".join(f"{c}={started[c]}" for c in COLUMNS))
    print(
        f"  final admission: {result.admission.active_leases} leases held, "
        f"{result.admission.acquired_total} acquired / {result.admission.released_total} released"
    )
    if events:
        print(f"  {result.event_count} scheduler events written to {events}")
    ok = result.counts["succeeded"] == cells and result.admission.active_leases == 0
    return 0 if ok else 1
