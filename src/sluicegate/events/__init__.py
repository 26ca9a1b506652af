"""Observability vocabulary: versioned events, sinks, the per-stream emitter, correlation.

Every layer imports this package; it imports none of them.
"""

from __future__ import annotations

from .correlation import (
    RuntimeCorrelation,
    correlation_scope,
    current_correlation,
    set_correlation,
)
from .emitter import EventEmitter
from .reading import read_events
from .schema import (
    SCHEMA_VERSION,
    AnyEvent,
    RequestEvent,
    RequestEventKind,
    SchedulerEvent,
    SchedulerEventKind,
)
from .sinks import (
    EventSink,
    FanOutEventSink,
    InMemoryEventSink,
    JsonLinesEventSink,
    NullEventSink,
)

__all__ = [
    "SCHEMA_VERSION",
    "AnyEvent",
    "EventEmitter",
    "EventSink",
    "FanOutEventSink",
    "InMemoryEventSink",
    "JsonLinesEventSink",
    "NullEventSink",
    "RequestEvent",
    "RequestEventKind",
    "RuntimeCorrelation",
    "SchedulerEvent",
    "SchedulerEventKind",
    "correlation_scope",
    "current_correlation",
    "read_events",
    "set_correlation",
]
