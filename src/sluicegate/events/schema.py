"""Versioned telemetry events: the two streams, their kinds and ``SCHEMA_VERSION``.

Events are msgspec Structs so they can cross process boundaries (JSON Lines files, the
benchmark harness) without dict-building. Layers build an event only after their state
change is complete, and only when a sink listens (``EventEmitter.enabled``).

``SCHEMA_VERSION`` is written into every event. It changes when a reader of the previous
version could misread a file: a kind or field removed or renamed, a field's meaning or unit
changed, or a new kind added (an older reader cannot decode a kind it does not know). New
optional fields and new ``diagnostics`` keys keep the version: readers ignore what they do not
know. Every kind and its fields are listed in ``plans/observability.md``.

Events are not tracked by the cyclic garbage collector (``gc=False``): they hold plain data
and never take part in a reference cycle, and a run allocates many of them. Build them with
keywords: the emitter alone builds them positionally (it is the hot path), so the field order
below is not a public promise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import msgspec

from .correlation import RuntimeCorrelation

SCHEMA_VERSION: Final = 3
"""2: same-instant steps folded into one event (``plans/observability.md``, "Schema 2");
``model_request_completed`` reports its call in a typed :class:`ModelCallReport`.
3: ``ready_enqueued`` reports a whole frontier queued in one instant, in one event
(``task_ids`` and ``groups``, no ``task_id``); :func:`per_task_events` turns it back into one
event per task. Schema 2 files are read as they are."""

OLDEST_READABLE_SCHEMA: Final = 2
"""The oldest ``schema_version`` readers accept (schema 3 only added the frontier form)."""


SchedulerEventKind = Literal[
    "scheduler_job_started",
    "scheduler_job_completed",
    "ready_enqueued",
    "pipeline_started",
    "row_group_admitted",
    "row_group_admission_blocked",
    "row_group_checkpointed",
    "selected",
    "queue_empty",
    "admission_blocked",
    "group_capped",
    "request_pressure_advisory_skipped",
    "admission_denied",
    "task_dispatched",
    "worker_spawn_failed",
    "stale_selection",
    "retry_deferred",
    "non_retryable_dropped",
    "cancelled",
    "salvage_redispatched",
    "queue_drained",
    "task_completed",
    "release_diagnostic",
    "config_reloaded",
]


RequestEventKind = Literal[
    "request_resource_registered",
    "request_effective_cap_changed",
    "request_queue_formed",
    "request_wait_started",
    "request_wait_completed",
    "request_wait_timeout",
    "request_wait_cancelled",
    "request_acquire_denied",
    "request_lease_acquired",
    "model_request_started",
    "model_request_completed",
    "request_queue_drained",
    "request_rate_limited",
    "request_limit_decreased",
    "request_limit_increased",
    "request_soft_ceiling_recovered",
    "request_fully_recovered",
    "request_lease_released",
    "request_release_diagnostic",
    "request_circuit_opened",
    "request_circuit_half_open",
    "request_circuit_closed",
    "request_quota_learned",
]


TASK_LEASE_RELEASING_KINDS: Final = frozenset(
    {
        "task_completed",
        "retry_deferred",
        "non_retryable_dropped",
        "cancelled",
        "stale_selection",
        "worker_spawn_failed",
    }
)
"""Scheduler kinds whose ``lease_id`` (when set) is a task lease released in that instant."""


class ModelCallReport(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """What one provider call did, carried by ``model_request_completed``.

    Typed rather than a ``diagnostics`` dictionary: it is built once per call on the hot path.
    ``waited_seconds`` is the attempt's admission wait; ``will_retry`` says whether the
    executor makes another attempt of the same logical request. ``input_messages`` and
    ``output_messages`` (JSON, in the OpenTelemetry GenAI conventions' message format) are
    set only when the user opted in to content capture
    (``ModelRequestExecutor(capture_content=True)``, by default from
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``); otherwise no prompt or
    completion is ever in an event.
    """

    duration_seconds: float
    waited_seconds: float = 0.0
    will_retry: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_model: str | None = None
    error_type: str | None = None
    http_status: int | None = None
    server_address: str | None = None
    server_port: int | None = None
    input_messages: str | None = None
    output_messages: str | None = None


class SchedulerEvent(msgspec.Struct, frozen=True, omit_defaults=True, gc=False, tag="scheduler"):
    """One step of the scheduler (task layer). ``sequence`` is per stream, gap-free."""

    event_kind: SchedulerEventKind
    sequence: int
    captured_at: float
    schema_version: int
    correlation: RuntimeCorrelation | None = None
    task_id: Any = None
    group: str | None = None
    lease_id: int | None = None
    attempt: int | None = None
    reason: str | None = None
    available_after: float | None = None
    snapshot: Any = None
    diagnostics: dict[str, Any] | None = None
    task_ids: list[Any] | None = None
    """``ready_enqueued`` of a frontier (schema 3): every task queued in that instant."""
    groups: list[str | None] | None = None
    """The group of each of ``task_ids``, in the same order."""


class RequestEvent(msgspec.Struct, frozen=True, omit_defaults=True, gc=False, tag="request"):
    """One step of request admission or of a model call attempt.

    ``request_id`` names the logical model request (all its attempts and admission waits):
    the executor sets it for the duration of ``execute`` and the emitter copies it into every
    request event built meanwhile (see :func:`~sluicegate.events.request_scope`).
    """

    event_kind: RequestEventKind
    sequence: int
    captured_at: float
    schema_version: int
    correlation: RuntimeCorrelation | None = None
    provider: str | None = None
    model_id: str | None = None
    domain: str | None = None
    request_group: str | None = None
    lease_id: int | None = None
    request_id: int | None = None
    attempt: int | None = None
    outcome: str | None = None
    reason: str | None = None
    limit: int | None = None
    previous_limit: int | None = None
    retry_after: float | None = None
    snapshot: Any = None
    diagnostics: dict[str, Any] | None = None
    call: ModelCallReport | None = None


AnyEvent = SchedulerEvent | RequestEvent


def per_task_events(events: Iterable[AnyEvent]) -> Iterator[AnyEvent]:
    """``events`` with every frontier ``ready_enqueued`` (schema 3: ``task_ids``) replaced by
    one ``ready_enqueued`` per task, in order, each with its ``task_id`` and ``group`` and the
    frontier's sequence number and instant: what a schema-2 stream said. Readers that follow
    tasks one by one (timelines, the sweep, the OpenTelemetry bridge) read this."""
    for event in events:
        task_ids = event.task_ids if type(event) is SchedulerEvent else None
        if task_ids is None:
            yield event
            continue
        assert isinstance(event, SchedulerEvent)
        groups = event.groups or []
        for i, task_id in enumerate(task_ids):
            yield SchedulerEvent(
                event_kind=event.event_kind,
                sequence=event.sequence,
                captured_at=event.captured_at,
                schema_version=event.schema_version,
                correlation=event.correlation,
                task_id=task_id,
                group=groups[i] if i < len(groups) else None,
            )
