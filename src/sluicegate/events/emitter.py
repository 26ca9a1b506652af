"""The per-stream emitter: sequences, stamps and delivers events only when a sink listens."""

from __future__ import annotations

import time
from typing import Any

import trio

from .correlation import current_correlation, current_request_id
from .schema import (
    SCHEMA_VERSION,
    AnyEvent,
    ModelCallReport,
    RequestEvent,
    RequestEventKind,
    SchedulerEvent,
    SchedulerEventKind,
)
from .sinks import NULL_SINK, EventSink, NullEventSink, warn_sink_error

_current_time = trio.current_time


class EventEmitter:
    """Numbers, stamps and delivers the events of one stream.

    Callers test ``enabled`` before building an event so that a run with no sink pays one
    attribute read per would-be event. ``sink_errors`` counts exceptions raised by the
    sink; the first one is reported once as a ``RuntimeWarning``.
    """

    __slots__ = ("_sequence", "enabled", "lease_events_folded", "sink", "sink_errors")

    def __init__(self, sink: EventSink | None) -> None:
        self.sink: EventSink = sink if sink is not None else NULL_SINK
        self.enabled = not isinstance(self.sink, NullEventSink)
        self._sequence = 0
        self.sink_errors = 0
        self.lease_events_folded: set[int] = set()
        """Ids of the admission items whose lease is reported by their caller's own events
        on this stream (the model-request executor folds a lease's acquisition into
        ``model_request_started`` and its release into ``model_request_completed``: same
        instants). Request admission skips its own lease events for these items. A set of
        ids, not a context variable: a context-variable set and reset per call allocates,
        and the allocations cost more in garbage collection than the events saved."""

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

    def flush(self) -> None:
        """Ask the sink to write what it buffers (its ``flush()``, when it has one).

        The data-generation runner calls this at every row-group checkpoint and when the run
        ends, so a process killed later has its events on disk up to the last checkpoint
        (``JsonLinesEventSink`` writes them to the OS, no fsync). Never raises: an error is
        counted in ``sink_errors`` like an ``emit`` error.
        """
        flush = getattr(self.sink, "flush", None)
        if flush is None:
            return
        try:
            flush()
        except Exception as exc:
            self._sink_failed(exc)

    def _sink_failed(self, exc: Exception) -> None:
        self.sink_errors += 1
        if self.sink_errors == 1:
            warn_sink_error(self.sink, exc, stacklevel=3)

    # Both builders spell their fields out and build the Struct positionally: measured, that
    # is about a third cheaper than keyword construction (msgspec matches no names), and it
    # runs once per event on the hot path. The order is the field order in schema.py.

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
        now: float | None = None,
    ) -> None:
        """Build and deliver a scheduler event (call only when ``enabled``).

        ``now`` is the instant of the step when the caller already holds it (trio's clock);
        otherwise the clock is read here.
        """
        self._sequence += 1
        if now is None:
            try:  # sluicegate._internal.clock.now, inlined: one call less per event
                now = _current_time()
            except RuntimeError:
                now = time.monotonic()
        event = SchedulerEvent(
            kind,
            self._sequence,
            now,
            SCHEMA_VERSION,
            current_correlation(),
            task_id,
            group,
            lease_id,
            attempt,
            reason,
            available_after,
            snapshot,
            diagnostics,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)

    def task_event(
        self,
        kind: SchedulerEventKind,
        task_id: Any,
        group: str | None,
        lease_id: int | None,
        attempt: int | None,
        reason: str | None,
        now: float,
    ) -> None:
        """:meth:`scheduler` for the per-task hot path (dispatch, ending): all positional.

        Once per task and event, so it skips what :meth:`scheduler` offers for the rare
        events (optional fields matched by name, a clock read): the caller holds ``now``.
        Measured, keyword matching of a dozen optional parameters cost more than building
        the event itself.
        """
        self._sequence += 1
        event = SchedulerEvent(
            kind,
            self._sequence,
            now,
            SCHEMA_VERSION,
            current_correlation(),
            task_id,
            group,
            lease_id,
            attempt,
            reason,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)

    def ready_frontier(self, task_ids: list[Any], groups: list[str | None], now: float) -> None:
        """One ``ready_enqueued`` for every task queued in one instant (schema 3): a frontier
        of a hundred cells is one event, not a hundred. ``groups[i]`` is ``task_ids[i]``'s."""
        self._sequence += 1
        event = SchedulerEvent(
            "ready_enqueued",
            self._sequence,
            now,
            SCHEMA_VERSION,
            current_correlation(),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            task_ids,
            groups,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)

    def call_event(
        self,
        kind: RequestEventKind,
        resource: Any,
        request_group: str,
        lease_id: int,
        request_id: int | None,
        attempt: int,
        outcome: str | None,
        reason: str | None,
        limit: int | None,
        retry_after: float | None,
        call: ModelCallReport | None,
        now: float,
    ) -> None:
        """:meth:`request` for a model call attempt's start and end (the executor's hot
        path): positional, ``resource`` a :class:`~sluicegate.requests.RequestResourceKey`
        (read for provider, model and domain), ``request_id`` as given (the executor
        carries it on its admission item rather than in a context variable)."""
        self._sequence += 1
        event = RequestEvent(
            kind,
            self._sequence,
            now,
            SCHEMA_VERSION,
            current_correlation(),
            resource.provider,
            resource.model_id,
            resource.domain,
            request_group,
            lease_id,
            request_id,
            attempt,
            outcome,
            reason,
            limit,
            None,
            retry_after,
            None,
            None,
            call,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)

    def request(
        self,
        kind: RequestEventKind,
        *,
        provider: str | None = None,
        model_id: str | None = None,
        domain: str | None = None,
        request_group: str | None = None,
        lease_id: int | None = None,
        request_id: int | None = None,
        attempt: int | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
        previous_limit: int | None = None,
        retry_after: float | None = None,
        snapshot: Any = None,
        diagnostics: dict[str, Any] | None = None,
        call: ModelCallReport | None = None,
        now: float | None = None,
    ) -> None:
        """Build and deliver a request event (call only when ``enabled``).

        Unless ``request_id`` is given, the event carries the id of the logical model request
        in progress in this context (:func:`~sluicegate.events.request_scope`), if any.
        ``now`` as for :meth:`scheduler`.
        """
        self._sequence += 1
        if now is None:
            try:
                now = _current_time()
            except RuntimeError:
                now = time.monotonic()
        event = RequestEvent(
            kind,
            self._sequence,
            now,
            SCHEMA_VERSION,
            current_correlation(),
            provider,
            model_id,
            domain,
            request_group,
            lease_id,
            current_request_id() if request_id is None else request_id,
            attempt,
            outcome,
            reason,
            limit,
            previous_limit,
            retry_after,
            snapshot,
            diagnostics,
            call,
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            self._sink_failed(exc)
