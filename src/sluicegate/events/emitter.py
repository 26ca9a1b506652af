"""The per-stream emitter: sequences, stamps and delivers events only when a sink listens."""

from __future__ import annotations

import warnings
from typing import Any

from .._internal.clock import now as _now
from .correlation import current_correlation, current_request_id
from .schema import (
    SCHEMA_VERSION,
    AnyEvent,
    RequestEvent,
    RequestEventKind,
    SchedulerEvent,
    SchedulerEventKind,
)
from .sinks import NULL_SINK, EventSink, NullEventSink


class EventEmitter:
    """Numbers, stamps and delivers the events of one stream.

    Callers test ``enabled`` before building an event so that a run with no sink pays one
    attribute read per would-be event. ``sink_errors`` counts exceptions raised by the
    sink; the first one is reported once as a ``RuntimeWarning``.
    """

    __slots__ = ("_sequence", "enabled", "sink", "sink_errors")

    def __init__(self, sink: EventSink | None) -> None:
        self.sink: EventSink = sink if sink is not None else NULL_SINK
        self.enabled = not isinstance(self.sink, NullEventSink)
        self._sequence = 0
        self.sink_errors = 0

    @property
    def count(self) -> int:
        """How many events this stream has emitted."""
        return self._sequence

    def next_sequence(self) -> int:
        """Take the next sequence number (for callers that build their own events)."""
        self._sequence += 1
        return self._sequence

    def deliver(self, event: AnyEvent) -> None:
        """Hand a prebuilt event to the sink; a sink error is counted, never raised."""
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)

    def _sink_failed(self, exc: Exception) -> None:
        self.sink_errors += 1
        if self.sink_errors == 1:
            warnings.warn(
                f"event sink {type(self.sink).__name__} raised {exc!r}; "
                "the run continues and further sink errors are only counted",
                RuntimeWarning,
                stacklevel=3,
            )

    # Scheduler fields are spelled out (not ``**fields``): measured, that builds the Struct in
    # about a third of the time, and it runs once per event on the hot path.

    def scheduler(
        self,
        kind: SchedulerEventKind,
        *,
        task_id: Any = None,
        group: str | None = None,
        lease_id: int | None = None,
        attempt: int | None = None,
        reason: str | None = None,
        available_after: float | None = None,
        snapshot: Any = None,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        """Build and deliver a scheduler event (call only when ``enabled``)."""
        self._sequence += 1
        event = SchedulerEvent(
            event_kind=kind,
            sequence=self._sequence,
            captured_at=_now(),
            schema_version=SCHEMA_VERSION,
            correlation=current_correlation(),
            task_id=task_id,
            group=group,
            lease_id=lease_id,
            attempt=attempt,
            reason=reason,
            available_after=available_after,
            snapshot=snapshot,
            diagnostics=diagnostics,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)

    def request(self, kind: RequestEventKind, **fields: Any) -> None:
        """Build and deliver a request event (call only when ``enabled``).

        Unless ``request_id`` is given, the event carries the id of the logical model request
        in progress in this context (:func:`~sluicegate.events.request_scope`), if any.
        """
        # Request events set a few of many fields: here passing only those is cheaper.
        self._sequence += 1
        if "request_id" not in fields:
            request_id = current_request_id()
            if request_id is not None:
                fields["request_id"] = request_id
        event = RequestEvent(
            event_kind=kind,
            sequence=self._sequence,
            captured_at=_now(),
            schema_version=SCHEMA_VERSION,
            correlation=current_correlation(),
            **fields,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)
