"""Crafted runs, one per limiting layer, in virtual time (seconds of work in milliseconds).

Each scenario is a small table (rows x columns of cells) run by today's engine: a
``DagCompletionTracker``, the ``AsyncTaskScheduler``, a ``ModelRequestExecutor`` over an
``AdaptiveRequestAdmissionController`` and ``SimulatedProvider`` endpoints. They exist so
that the verdict can be tested against a known answer, and so that the documentation's
"Why is my run slow?" walkthrough shows a real report:

- ``slow_endpoint``: a few cells, each one long call; nothing waits: provider latency.
- ``small_task_capacity``: task capacity 4 in front of an endpoint allowed 32: task admission.
- ``rate_limited``: a judge endpoint allowed 64 calls that really serves 12: provider cooldown.
- ``dependency_chain``: two rows of 25 dependent cells: dependency readiness.
- ``slow_worker``: cells that spend seconds in local code before a fast call: downstream
  completion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio.testing

from ..events.correlation import correlation_scope
from ..events.sinks import EventSink
from ..providers.simulated import SimulatedProvider
from ..requests.adaptive import AdaptiveRequestAdmissionController
from ..requests.config import RequestAdmissionConfig, RequestResourceOverride
from ..requests.executor import ModelRequestExecutor
from ..requests.identity import ModelEndpoint
from ..requests.provider import ModelRequest
from ..scheduling.outcomes import SchedulerRunResult
from ..scheduling.readiness import DagCompletionTracker
from ..scheduling.scheduler import AsyncTaskScheduler
from ..scheduling.task import SchedulableTask, TaskGroupSpec


@attrs.frozen(kw_only=True)
class EndpointSpec:
    """A declared endpoint and the simulated provider behind it."""

    name: str
    max_parallel_requests: int
    latency_seconds: float
    latency_jitter: float = 0.2
    hidden_capacity: int | None = None
    retry_after_seconds: float = 1.0
    slow_start: bool = True
    """False starts the adaptive limit at the cap (the capacity is known)."""


@attrs.frozen(kw_only=True)
class ColumnSpec:
    """A column: its cells call ``endpoint`` (if any) after ``local_seconds`` of own work."""

    name: str
    endpoint: str | None
    local_seconds: float = 0.0


@attrs.frozen(kw_only=True)
class Scenario:
    """A crafted run: ``rows`` x ``columns`` cells; a cell depends on the cell to its left."""

    name: str
    description: str
    rows: int
    columns: tuple[ColumnSpec, ...]
    endpoints: tuple[EndpointSpec, ...]
    capacity: int
    expected_layer: str

    def tracker(self) -> DagCompletionTracker:
        """Every cell as a task in the group of its column."""
        tracker = DagCompletionTracker()
        for row in range(self.rows):
            previous = None
            for column in self.columns:
                task_id = (row, column.name)
                tracker.add(
                    task_id,
                    depends_on=[previous] if previous is not None else [],
                    group=TaskGroupSpec(column.name),
                )
                previous = task_id
        return tracker


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="slow_endpoint",
            description="40 cells, each one call to an endpoint that takes about 8 s",
            rows=40,
            columns=(ColumnSpec(name="answer", endpoint="slow"),),
            endpoints=(
                EndpointSpec(
                    name="slow", max_parallel_requests=64, latency_seconds=8.0, slow_start=False
                ),
            ),
            capacity=64,
            expected_layer="provider_latency",
        ),
        Scenario(
            name="small_task_capacity",
            description="300 cells, task capacity 4, endpoint allowed 32 calls at once",
            rows=300,
            columns=(ColumnSpec(name="answer", endpoint="fast"),),
            endpoints=(EndpointSpec(name="fast", max_parallel_requests=32, latency_seconds=0.5),),
            capacity=4,
            expected_layer="task_admission",
        ),
        Scenario(
            name="rate_limited",
            description=(
                "300 rows of question -> judge; judge is allowed 64 calls but serves only 12"
            ),
            rows=300,
            columns=(
                ColumnSpec(name="question", endpoint="generator"),
                ColumnSpec(name="judge", endpoint="judge"),
            ),
            endpoints=(
                EndpointSpec(name="generator", max_parallel_requests=32, latency_seconds=0.4),
                EndpointSpec(
                    name="judge",
                    max_parallel_requests=64,
                    latency_seconds=1.0,
                    hidden_capacity=12,
                    retry_after_seconds=1.0,
                ),
            ),
            capacity=64,
            expected_layer="provider_cooldown",
        ),
        Scenario(
            name="dependency_chain",
            description="2 rows of 25 cells, each cell needs the one before it",
            rows=2,
            columns=tuple(ColumnSpec(name=f"step{i:02d}", endpoint="llm") for i in range(25)),
            endpoints=(EndpointSpec(name="llm", max_parallel_requests=32, latency_seconds=0.5),),
            capacity=64,
            expected_layer="dependency_readiness",
        ),
        Scenario(
            name="slow_worker",
            description="150 cells that compute 2 s locally before one fast call",
            rows=150,
            columns=(ColumnSpec(name="parse", endpoint="fast", local_seconds=2.0),),
            endpoints=(EndpointSpec(name="fast", max_parallel_requests=64, latency_seconds=0.05),),
            capacity=32,
            expected_layer="downstream_completion",
        ),
    )
}


_REQUEST = ModelRequest(messages=[{"role": "user", "content": "say something"}], max_tokens=32)


async def run_scenario(scenario: Scenario | str, sink: EventSink | None) -> SchedulerRunResult:
    """Run ``scenario`` in the current trio run, sending both event streams to ``sink``."""
    spec = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    endpoints = [
        ModelEndpoint(
            name=e.name,
            provider=e.name,
            model_id=e.name,
            max_parallel_requests=e.max_parallel_requests,
        )
        for e in spec.endpoints
    ]
    providers = {
        e.name: SimulatedProvider(
            name=e.name,
            seed=index,
            latency_seconds=e.latency_seconds,
            latency_jitter=e.latency_jitter,
            capacity=e.hidden_capacity,
            retry_after_seconds=e.retry_after_seconds,
        )
        for index, e in enumerate(spec.endpoints)
    }
    config = RequestAdmissionConfig(
        resources=tuple(
            RequestResourceOverride(provider=e.name, slow_start=False)
            for e in spec.endpoints
            if not e.slow_start
        )
    )
    controller = AdaptiveRequestAdmissionController(endpoints, config, sink=sink)
    executor = ModelRequestExecutor(controller, providers, max_attempts=10, backoff_seconds=0.2)
    columns = {c.name: c for c in spec.columns}
    worker = _worker(executor, columns)
    scheduler = AsyncTaskScheduler(
        spec.tracker(), worker, capacity=spec.capacity, sink=sink, run_id=spec.name
    )
    return await scheduler.run()


def _worker(
    executor: ModelRequestExecutor, columns: dict[str, ColumnSpec]
) -> Callable[[SchedulableTask], Any]:
    async def cell(task: SchedulableTask) -> None:
        row, name = task.task_id
        column = columns[name]
        with correlation_scope(row=row, column=name):
            if column.local_seconds:
                await trio.sleep(column.local_seconds)
            if column.endpoint is not None:
                await executor.execute(column.endpoint, _REQUEST, request_group=name)

    return cell


def run_scenario_in_virtual_time(
    scenario: Scenario | str, sink: EventSink | None
) -> SchedulerRunResult:
    """``run_scenario`` in a fresh ``trio.run`` on a ``MockClock`` that jumps when idle."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(run_scenario, scenario, sink, clock=clock)
