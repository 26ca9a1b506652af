"""Event sinks: the protocol and the null, in-memory, JSON Lines and fan-out sinks.

A sink's ``emit`` runs on the run's event loop, synchronously, once per event. No sink ever
raises into a run: the emitter counts exceptions from ``emit`` (``EventEmitter.sink_errors``),
the fan-out sink counts those of the sinks behind it (``FanOutEventSink.errors``), and the JSON
Lines sink counts its own write failures (:class:`EventSinkStats`), because it writes later
than it receives. Each warns once, on its first error.
"""

from __future__ import annotations

import atexit
import os
import warnings
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Final, Protocol, runtime_checkable

import msgspec

from ..errors import ConfigurationError
from .gzip_members import compress_member, cut_torn_member
from .schema import AnyEvent


@runtime_checkable
class EventSink(Protocol):
    """Receives events. ``emit`` is synchronous and must not block the event loop.

    A sink that raises never breaks a run: the emitter counts the error and carries on.
    Sinks that buffer also offer ``flush()`` and ``close()`` (see :class:`JsonLinesEventSink`).
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
        """Forget every event received so far."""
        self.events.clear()


class EventSinkStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a buffering sink did with the events it received.

    ``received == written + dropped + buffered``. ``write_errors`` counts failed writes (each
    drops the events of that batch), ``encode_errors`` events that could not be encoded, and
    ``last_error`` says what went wrong last. ``bytes_written`` counts the bytes in the file
    (compressed ones, for a compressed file). ``repaired_bytes`` is the torn tail (line or gzip
    member) of an earlier crashed run that was cut off when the file was opened for appending.
    """

    path: str
    received: int
    written: int
    dropped: int
    buffered: int
    bytes_written: int
    flushes: int
    write_errors: int
    encode_errors: int
    repaired_bytes: int = 0
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """No event was lost so far."""
        return self.dropped == 0

    def summary(self) -> str:
        """One line for logs and run reports."""
        text = f"{self.written} events written to {self.path}"
        if self.dropped:
            text += (
                f"; {self.dropped} dropped after {self.write_errors} write error(s) and "
                f"{self.encode_errors} encode error(s), last: {self.last_error}"
            )
        return text


def _encode_fallback(value: object) -> str:
    # A task id or diagnostics value msgspec cannot encode (an arbitrary object) becomes its
    # repr instead of costing the whole event.
    return repr(value)


class JsonLinesEventSink:
    """Writes events to ``path`` as JSON Lines: one event per line, buffered.

    ``emit`` only appends the event to a batch; one reusable msgspec encoder turns a batch into
    lines when ``max_buffered_events`` are waiting, at :meth:`flush` (the data-generation runner
    calls it at every row-group checkpoint; ``fsync=True`` also asks the OS to put the bytes on
    disk), at :meth:`close`, and when the interpreter exits. A process killed between flushes
    loses only the unflushed events and may leave a torn last line: :func:`read_events`
    ignores that line, and opening the file again for appending cuts it off first.

    ``compress`` (by default: when ``path`` ends in ``.gz``) writes each batch as one gzip
    member (:mod:`.gzip_members`): the same lines, about 13 times fewer bytes, for about
    0.5 µs more CPU per pipeline cell than the uncompressed file with ISA-L (3 µs with the
    zlib fallback; measured). A torn last
    member is to a compressed file what a torn last line is to a plain one. The
    data-generation runner writes ``RUN_DIR/events.jsonl.gz`` this way.

    Never raises into the run: a failed write drops that batch, is counted in :attr:`stats`
    and reported once as a ``RuntimeWarning``; later batches are tried again.
    Not thread-safe: emit from the run's event loop only.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_buffered_events: int = 1024,
        append: bool = True,
        compress: bool | None = None,
    ) -> None:
        if not isinstance(max_buffered_events, int) or max_buffered_events < 1:
            raise ConfigurationError(
                "JsonLinesEventSink.max_buffered_events",
                f"must be an integer >= 1, got {max_buffered_events!r}",
                "use e.g. 4096 (events kept in memory between writes)",
            )
        self.path = Path(path)
        self.max_buffered_events = max_buffered_events
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_fallback)
        self._pending: list[AnyEvent] = []
        self._received = self._written = self._dropped = 0
        self._bytes = self._flushes = self._write_errors = self._encode_errors = 0
        self._last_error: str | None = None
        self.compressed = self.path.suffix == ".gz" if compress is None else compress
        if not append:
            self._repaired = 0
        elif self.compressed:
            self._repaired = cut_torn_member(self.path)
        else:
            self._repaired = _cut_torn_tail(self.path)
        # Unbuffered: batches are ours, so each one is a single write the OS sees at once.
        self._file: IO[bytes] | None = self.path.open("ab" if append else "wb", buffering=0)
        self._exit_hook = _register_exit_flush(self)

    # -- receiving ------------------------------------------------------------------------

    def emit(self, event: AnyEvent) -> None:
        """Queue ``event`` for writing (writes a batch once enough are waiting)."""
        pending = self._pending
        pending.append(event)
        if len(pending) >= self.max_buffered_events:
            self._write_pending()

    # -- writing --------------------------------------------------------------------------

    def flush(self, *, fsync: bool = False) -> EventSinkStats:
        """Write every queued event and flush the file; with ``fsync`` also sync to disk.

        Returns :attr:`stats`. Never raises; failures are counted. Not a checkpoint (it blocks
        the event loop for the write, which is what a checkpoint flush wants).
        """
        self._write_pending()
        file = self._file
        if file is not None:
            try:
                file.flush()
                if fsync:
                    os.fsync(file.fileno())
                self._flushes += 1
            except OSError as exc:
                self._write_failed(exc, 0)
        return self.stats

    def close(self) -> EventSinkStats:
        """Flush and close the file. Further events are counted as dropped. Idempotent."""
        if self._file is not None:
            self.flush()
            try:
                self._file.close()
            except OSError as exc:
                self._write_failed(exc, 0)
            self._file = None
            atexit.unregister(self._exit_hook)
        return self.stats

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def stats(self) -> EventSinkStats:
        """Counters since the sink was opened (consistent at the moment of the call)."""
        return EventSinkStats(
            path=str(self.path),
            received=self._received + len(self._pending),
            written=self._written,
            dropped=self._dropped,
            buffered=len(self._pending),
            bytes_written=self._bytes,
            flushes=self._flushes,
            write_errors=self._write_errors,
            encode_errors=self._encode_errors,
            repaired_bytes=self._repaired,
            last_error=self._last_error,
        )

    def _write_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        count = len(pending)
        self._received += count
        self._pending = []
        if self._file is None:
            self._dropped += count
            self._note_error("event sink is closed")
            return
        try:
            data = self._encoder.encode_lines(pending)
        except (TypeError, ValueError, OverflowError):
            data = self._encode_one_by_one(pending)
            count = data.count(b"\n")
        if self.compressed and data:
            data = compress_member(data)
        try:
            _write_all(self._file, data)
        except OSError as exc:
            self._write_failed(exc, count)
            return
        self._written += count
        self._bytes += len(data)

    def _encode_one_by_one(self, events: list[AnyEvent]) -> bytes:
        """Encode what can be encoded; count and drop the rest (rare: a broken value)."""
        out = bytearray()
        encode = self._encoder.encode
        for event in events:
            try:
                out += encode(event)
            except (TypeError, ValueError, OverflowError) as exc:
                self._encode_errors += 1
                self._dropped += 1
                self._note_error(f"cannot encode a {event.event_kind} event: {exc}")
                continue
            out += b"\n"
        return bytes(out)

    def _write_failed(self, exc: OSError, lost: int) -> None:
        self._write_errors += 1
        self._dropped += lost
        self._note_error(f"{type(exc).__name__}: {exc}")

    def _note_error(self, text: str) -> None:
        first = self._last_error is None
        self._last_error = text
        if first:
            warnings.warn(
                f"event sink {self.path}: {text}; the run continues, events are being lost "
                "(see JsonLinesEventSink.stats)",
                RuntimeWarning,
                stacklevel=4,
            )

    def __enter__(self) -> JsonLinesEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(file: IO[bytes], data: bytes) -> None:
    """Write every byte (an unbuffered write may take only part of them)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if written is None:  # a non-blocking file that would block: not ours to handle
            raise BlockingIOError("the event file would block")
        view = view[written:]


def _cut_torn_tail(path: Path) -> int:
    """Cut a torn last line (no trailing newline) left by a crashed writer; return its size.

    A last line that is a whole event and lacks only its newline (the crash fell between the
    two) is what readers read, so it is kept and its newline written instead.
    """
    try:
        with path.open("r+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0:
                return 0
            f.seek(end - 1)
            if f.read(1) == b"\n":
                return 0
            # Walk back to the last newline; a torn line is at most one event long.
            position = end
            step = 4096
            keep = 0
            while position > 0:
                start = max(0, position - step)
                f.seek(start)
                chunk = f.read(position - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                position = start
            f.seek(keep)
            if _whole_event(f.read(end - keep)):
                f.write(b"\n")
                return 0
            f.truncate(keep)
            return end - keep
    except FileNotFoundError:
        return 0


_EVENT_PROBE: Final = msgspec.json.Decoder(dict[str, object])


def _whole_event(line: bytes) -> bool:
    """Whether ``line`` decodes as one whole event (a JSON object naming its kind)."""
    try:
        return "event_kind" in _EVENT_PROBE.decode(line)
    except msgspec.DecodeError:
        return False


def _register_exit_flush(sink: JsonLinesEventSink) -> Callable[[], None]:
    """Flush ``sink`` at interpreter exit without keeping it alive (a weak reference)."""
    ref = weakref.ref(sink)

    def flush_at_exit() -> None:
        target = ref()
        if target is not None:
            target.close()

    atexit.register(flush_at_exit)
    return flush_at_exit


class FanOutEventSink:
    """Forwards every event to several sinks; one failing sink does not starve the others.

    ``errors`` counts exceptions raised by the sinks; the first one (from ``emit``, ``flush``
    or ``close``) is also reported as a ``RuntimeWarning`` naming the sink, like the
    emitter's own sink errors, because the emitter never sees them. :meth:`flush` and
    :meth:`close` are forwarded to the sinks that have them.
    """

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self.sinks: tuple[EventSink, ...] = tuple(sinks)
        self.errors = 0

    def emit(self, event: AnyEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception as exc:
                self._sink_failed(sink, exc, stacklevel=3)

    def flush(self) -> None:
        """Flush every sink that buffers (errors are counted, never raised)."""
        self._forward("flush")

    def close(self) -> None:
        """Close every sink that can be closed (errors are counted, never raised)."""
        self._forward("close")

    def _forward(self, method: str) -> None:
        for sink in self.sinks:
            call = getattr(sink, method, None)
            if call is None:
                continue
            try:
                call()
            except Exception as exc:
                self._sink_failed(sink, exc, stacklevel=4)

    def _sink_failed(self, sink: EventSink, exc: Exception, *, stacklevel: int) -> None:
        self.errors += 1
        if self.errors == 1:
            warn_sink_error(sink, exc, stacklevel=stacklevel + 1)


def warn_sink_error(sink: object, exc: Exception, *, stacklevel: int) -> None:
    """The one warning a sink's first error gets (the caller counts it and every later one).

    ``stacklevel`` counts from the caller, as ``warnings.warn``'s does."""
    warnings.warn(
        f"event sink {type(sink).__name__} raised {exc!r}; "
        "the run continues and further sink errors are only counted",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
