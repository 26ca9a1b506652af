"""Observability vocabulary: versioned events, sinks, the per-stream emitter, correlation.

Every layer imports this package; it imports none of them.
"""

from __future__ import annotations

from .correlation import (
    RuntimeCorrelation,
    correlation_scope,
    current_correlation,
    current_request_id,
    new_request_id,
    request_scope,
    reset_request_id,
    set_correlation,
    set_request_id,
)
from .emitter import EventEmitter
from .reading import (
    RUN_EVENTS_FILE,
    EventFile,
    iter_events,
    read_event_file,
    read_events,
    run_events_path,
)
from .schema import (
    OLDEST_READABLE_SCHEMA,
    SCHEMA_VERSION,
    TASK_LEASE_RELEASING_KINDS,
    AnyEvent,
    ModelCallReport,
    RequestEvent,
    RequestEventKind,
    SchedulerEvent,
    SchedulerEventKind,
    per_task_events,
)
from .sinks import (
    EventSink,
    EventSinkStats,
    FanOutEventSink,
    InMemoryEventSink,
    JsonLinesEventSink,
    NullEventSink,
)

__all__ = [
    "OLDEST_READABLE_SCHEMA",
    "RUN_EVENTS_FILE",
    "SCHEMA_VERSION",
    "TASK_LEASE_RELEASING_KINDS",
    "AnyEvent",
    "EventEmitter",
    "EventFile",
    "EventSink",
    "EventSinkStats",
    "FanOutEventSink",
    "InMemoryEventSink",
    "JsonLinesEventSink",
    "ModelCallReport",
    "NullEventSink",
    "RequestEvent",
    "RequestEventKind",
    "RuntimeCorrelation",
    "SchedulerEvent",
    "SchedulerEventKind",
    "correlation_scope",
    "current_correlation",
    "current_request_id",
    "iter_events",
    "new_request_id",
    "per_task_events",
    "read_event_file",
    "read_events",
    "request_scope",
    "reset_request_id",
    "run_events_path",
    "set_correlation",
    "set_request_id",
]
