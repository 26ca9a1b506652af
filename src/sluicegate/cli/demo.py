"""The demo workload: a rows x columns table where every cell is a task making one model call.

Both admission layers are at work: task admission bounds how many cells run, and request
admission learns the simulated endpoint's hidden capacity from its 429s (AIMD), so the run
keeps the endpoint busy without hammering it. No network: the provider is simulated.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import NamedTuple

import trio

from ..errors import RetryableTaskError
from ..events.sinks import EventSink, JsonLinesEventSink
from ..providers.simulated import SimulatedProvider, SimulatedProviderStats
from ..requests.adaptive import AdaptiveRequestAdmissionController
from ..requests.config import RequestAdmissionConfig, RequestResourceSettings
from ..requests.executor import ModelRequestError, ModelRequestExecutor
from ..requests.identity import ModelEndpoint, RequestResourceKey
from ..requests.pressure import RequestResourcePressure
from ..requests.provider import ModelRequest
from ..scheduling.outcomes import SchedulerRunResult
from ..scheduling.policies.pressure import RequestPressureLookup
from ..scheduling.readiness import DagCompletionTracker
from ..scheduling.retry import RetryPolicy
from ..scheduling.scheduler import AsyncTaskScheduler
from ..scheduling.task import SchedulableTask

MODEL = "demo-model"


STATIC_CAP = 64


"""The endpoint's declared ``max_parallel_requests``: well above what it really takes."""


# column -> (dependencies, fairness weight, completion tokens)
COLUMNS: dict[str, tuple[tuple[str, ...], float, int]] = {
    "topic": ((), 1.0, 8),
    "question": (("topic",), 3.0, 32),
    "answer": (("topic", "question"), 3.0, 128),
    "judge": (("question", "answer"), 1.0, 4),
}


class Cell(NamedTuple):
    """The payload of one cell task."""

    row: int
    column: str


def build_table(rows: int) -> DagCompletionTracker[Cell]:
    """A rows x columns table: one task per cell, in its column's fairness group."""
    tracker: DagCompletionTracker[Cell] = DagCompletionTracker()
    for row in range(rows):
        for column, (deps, weight, _) in COLUMNS.items():
            tracker.add(
                (row, column),
                Cell(row, column),
                depends_on=[(row, d) for d in deps],
                group=column,
                weight=weight,
            )
    tracker.seal()
    return tracker


def _model_stack(
    seed: int, hidden_capacity: int, sink: EventSink | None
) -> tuple[SimulatedProvider, AdaptiveRequestAdmissionController, ModelRequestExecutor]:
    """The simulated endpoint, its AIMD request admission and the executor cells call."""
    provider = SimulatedProvider(
        name="sim",
        seed=seed,
        latency_seconds=0.02,
        latency_jitter=0.5,
        capacity=hidden_capacity,
        retry_after_seconds=0.05,
        failure_rate=0.01,
    )
    controller = AdaptiveRequestAdmissionController(
        [
            ModelEndpoint(
                name=MODEL, provider="sim", model_id=MODEL, max_parallel_requests=STATIC_CAP
            )
        ],
        RequestAdmissionConfig(defaults=RequestResourceSettings(cooldown_seconds=0.05)),
        sink=sink,
    )
    executor = ModelRequestExecutor(
        controller, {"sim": provider}, max_attempts=4, backoff_seconds=0.01, seed=seed, sink=sink
    )
    return provider, controller, executor


def run_demo(
    *,
    rows: int,
    capacity: int,
    seed: int,
    events: str | None,
    hidden_capacity: int = 24,
) -> int:
    """Run the demo table and print what happened; 0 when every cell succeeded cleanly."""
    sink: EventSink | None = JsonLinesEventSink(events) if events else None
    provider, controller, executor = _model_stack(seed, hidden_capacity, sink)
    started: Counter[str] = Counter()

    async def cell(task: SchedulableTask[Cell]) -> None:
        column = task.payload.column
        started[column] += 1
        request = ModelRequest(
            messages=[{"role": "user", "content": f"{column} for row {task.payload.row}"}],
            max_tokens=COLUMNS[column][2],
        )
        try:
            await executor.execute(MODEL, request, request_group=column, weight=COLUMNS[column][1])
        except ModelRequestError as exc:  # attempts exhausted: let the scheduler retry later
            raise RetryableTaskError(str(exc), retry_after=0.1) from exc

    tracker = build_table(rows)
    cells = len(tracker)
    scheduler = AsyncTaskScheduler(
        tracker, cell, capacity=capacity, sink=sink, retry=RetryPolicy(initial_backoff=0.01)
    )

    async def run() -> SchedulerRunResult:
        # Printed from inside the run, so a Ctrl-C from here on is the scheduler's to report.
        print(f"sluicegate demo: {rows} rows x {len(COLUMNS)} columns = {cells} cell tasks")
        sys.stdout.flush()
        return await scheduler.run()

    t0 = time.perf_counter()
    try:
        result = trio.run(run)
    finally:
        if isinstance(sink, JsonLinesEventSink):
            sink.close()
    wall = time.perf_counter() - t0
    # Statically checked (mypy --strict): request admission's read-only pressure satisfies the
    # protocol task admission reads it through, without either layer importing the other.
    pressure: RequestPressureLookup[RequestResourceKey, RequestResourcePressure]
    pressure = controller.pressure
    final = pressure.resource(RequestResourceKey("sim", MODEL, "chat"))
    print(f"  task capacity {capacity}, wall {wall:.2f}s, {cells / wall:,.0f} cells/s")
    print("  outcomes: " + ", ".join(f"{k}={v}" for k, v in result.counts.items()))
    print("  cells started by column: " + ", ".join(f"{c}={started[c]}" for c in COLUMNS))
    _report_requests(provider.stats, final, hidden_capacity)
    print(
        f"  task admission: {result.admission.active_leases} leases held, "
        f"{result.admission.acquired_total} acquired / {result.admission.released_total} released"
    )
    if events:
        print(f"  events written to {events}")
    ok = (
        result.counts["succeeded"] == cells
        and result.admission.active_leases == 0
        and final is not None
        and final.in_flight == 0
        and final.grants == final.released
    )
    return 0 if ok else 1


def _report_requests(
    stats: SimulatedProviderStats, final: RequestResourcePressure | None, hidden_capacity: int
) -> None:
    share = stats.rate_limited / max(1, stats.calls)
    print(
        f"  model calls: {stats.calls} attempts, {stats.successes} ok, "
        f"{stats.rate_limited} rate limited ({share:.1%}), {stats.failures} failed and retried"
    )
    if final is not None:
        print(
            f"  endpoint {MODEL!r}: hidden capacity {hidden_capacity}, static cap {STATIC_CAP}; "
            f"AIMD limit now {final.limit}, at most {stats.max_in_flight} in flight"
        )
        print(
            f"  request admission: {final.in_flight} leases held, {final.waiters} waiters, "
            f"{final.grants} granted / {final.released} released"
        )
