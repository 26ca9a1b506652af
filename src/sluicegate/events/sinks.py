"""Event sinks: the protocol and the null, in-memory, JSON Lines and fan-out sinks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

import msgspec

from .schema import AnyEvent


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
