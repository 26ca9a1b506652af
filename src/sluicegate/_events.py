"""Versioned telemetry events, event sinks and the per-stream emitter.

Events are msgspec Structs so they can cross process boundaries (JSON Lines files, the
benchmark harness) without dict-building. Layers build an event only after their state
change is complete, and only when a sink listens (``EventEmitter.enabled``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

import msgspec

from ._clock import now as _now
from ._correlation import RuntimeCorrelation, current_correlation
from ._errors import EventDecodeError

SCHEMA_VERSION: Final = 1

SchedulerEventKind = Literal[
    "scheduler_job_started",
    "scheduler_job_completed",
    "dependency_ready",
    "ready_enqueued",
    "row_group_admitted",
    "row_group_admission_blocked",
    "row_group_checkpointed",
    "selected",
    "queue_empty",
    "admission_blocked",
    "group_capped",
    "request_pressure_advisory_skipped",
    "task_lease_acquired",
    "admission_denied",
    "worker_spawned",
    "worker_spawn_failed",
    "stale_selection",
    "retry_deferred",
    "non_retryable_dropped",
    "cancelled",
    "salvage_redispatched",
    "queue_drained",
    "task_completed",
    "task_lease_released",
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
]


class SchedulerEvent(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="scheduler"
):
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


class RequestEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="request"):
    """One step of request admission or of a model call attempt."""

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


AnyEvent = SchedulerEvent | RequestEvent


@runtime_checkable
class EventSink(Protocol):
    """Receives events. ``emit`` is synchronous and must not block the event loop.

    A sink that raises never breaks a run: the emitter counts the error and carries on.
    """

    def emit(self, event: AnyEvent) -> None: ...


class NullEventSink:
    """Discards everything. Emitters skip event construction entirely for this sink."""

    def emit(self, event: AnyEvent) -> None:
        return None


NULL_SINK: Final = NullEventSink()


class InMemoryEventSink:
    """Keeps every event in a list, for tests and small runs."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []

    def emit(self, event: AnyEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        """Event kinds in arrival order."""
        return [e.event_kind for e in self.events]

    def of_kind(self, *kinds: str) -> list[AnyEvent]:
        """Events whose kind is one of ``kinds``, in arrival order."""
        wanted = set(kinds)
        return [e for e in self.events if e.event_kind in wanted]

    def clear(self) -> None:
        self.events.clear()


class JsonLinesEventSink:
    """Appends each event as one JSON line to ``path`` (one reusable encoder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()
        self._file = self.path.open("ab")

    def emit(self, event: AnyEvent) -> None:
        self._encoder.encode_into(event, self._buffer)
        self._buffer.extend(b"\n")
        self._file.write(self._buffer)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonLinesEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | Path) -> list[AnyEvent]:
    """Decode a JSON Lines event file written by :class:`JsonLinesEventSink`.

    Fields added by a newer ``schema_version`` are ignored; a line that cannot be decoded
    raises :class:`EventDecodeError` naming the file, the line and the cause.
    """
    decoder = msgspec.json.Decoder(SchedulerEvent | RequestEvent)
    version = msgspec.json.Decoder(_VersionProbe)
    events: list[AnyEvent] = []
    with Path(path).open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                events.append(decoder.decode(line))
            except msgspec.DecodeError as exc:
                raise _decode_error(path, number, line, exc, version) from exc
    return events


class _VersionProbe(msgspec.Struct):
    schema_version: int | None = None


def _decode_error(
    path: str | Path,
    number: int,
    line: bytes,
    exc: msgspec.DecodeError,
    probe: msgspec.json.Decoder[_VersionProbe],
) -> EventDecodeError:
    try:
        found = probe.decode(line).schema_version
    except msgspec.DecodeError:
        found = None
    if found is not None and found > SCHEMA_VERSION:
        return EventDecodeError(
            str(path),
            number,
            f"schema_version {found} is newer than this sluicegate reads ({SCHEMA_VERSION})",
            "read the file with the sluicegate version that wrote it, or upgrade",
        )
    return EventDecodeError(
        str(path),
        number,
        f"not a sluicegate event ({exc})",
        "pass a file written by JsonLinesEventSink; a torn last line means the run was killed "
        "mid-write and can be deleted",
    )


class FanOutEventSink:
    """Forwards every event to several sinks; one failing sink does not starve the others."""

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self.sinks: tuple[EventSink, ...] = tuple(sinks)
        self.errors = 0

    def emit(self, event: AnyEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                self.errors += 1


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
        self._sequence += 1
        return self._sequence

    def deliver(self, event: AnyEvent) -> None:
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
        """Build and deliver a request event (call only when ``enabled``)."""
        # Request events set a few of many fields: here passing only those is cheaper.
        self._sequence += 1
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
