"""Reading event files back, with errors that name the file and line.

A writer killed mid-write leaves a torn last line (bytes with no trailing newline). Readers
skip it and say so (:attr:`EventFile.torn_tail_bytes`); any other line that does not decode,
including an unterminated last line that is not a prefix of an event, is corruption and
raises :class:`~sluicegate.errors.EventDecodeError` naming the file and line. A gzip file
(``events.jsonl.gz``, recognised by its first bytes) is read the same way; there a crash leaves
a torn last gzip member, which is skipped whole.

Schema 2 and 3 events are read (3 only added the frontier form of ``ready_enqueued``; see
:func:`~sluicegate.events.per_task_events`). An event older than ``OLDEST_READABLE_SCHEMA``
raises :class:`~sluicegate.errors.EventSchemaVersionError` (schema 2 folded schema 1's
same-instant events, so an old file's kinds would be misread, not merely incomplete). A newer
event that still decodes (it only added fields) is read; one that does not is named as newer.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import msgspec
from msgspec.structs import force_setattr

from ..errors import EventDecodeError, EventSchemaVersionError
from .correlation import RuntimeCorrelation
from .gzip_members import TornMember, is_gzip, iter_decompressed
from .schema import (
    OLDEST_READABLE_SCHEMA,
    SCHEMA_VERSION,
    AnyEvent,
    RequestEvent,
    SchedulerEvent,
)


class EventFile(msgspec.Struct, frozen=True, kw_only=True):
    """The events of one file, in file order, and what the reader had to skip."""

    path: str
    events: list[AnyEvent]
    torn_tail_bytes: int = 0
    """Size of the torn last line that was skipped, or of the torn last gzip member in a
    compressed file (0: the file ended cleanly)."""

    @property
    def torn(self) -> bool:
        return self.torn_tail_bytes > 0


class _Reader:
    __slots__ = ("decoder", "path", "probe", "torn_tail_bytes")

    def __init__(self, path: str | Path) -> None:
        found = Path(path)
        # A run directory stands for its events file (what `sluicegate report RUN_DIR` takes).
        self.path = run_events_path(found) if found.is_dir() else found
        self.decoder = msgspec.json.Decoder(SchedulerEvent | RequestEvent)
        self.probe = msgspec.json.Decoder(_VersionProbe)
        self.torn_tail_bytes = 0

    def __iter__(self) -> Iterator[AnyEvent]:
        decode = self.decoder.decode
        with self.path.open("rb") as f:
            lines = _gzip_lines(self, f) if is_gzip(self.path) else f
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    event = decode(line)
                except msgspec.DecodeError as exc:
                    if not line.endswith(b"\n") and _looks_torn(line):
                        self.torn_tail_bytes = len(line)
                        return
                    raise _decode_error(self.path, number, line, exc, self.probe) from exc
                if event.schema_version < OLDEST_READABLE_SCHEMA:  # newer: read what decodes
                    raise EventSchemaVersionError(
                        str(self.path), number, event.schema_version, SCHEMA_VERSION
                    )
                yield event


RUN_EVENTS_FILE: Final = "events.jsonl.gz"
"""The events file of a run directory: JSON Lines, one gzip member per written batch."""

UNCOMPRESSED_RUN_EVENTS_FILE: Final = "events.jsonl"
"""The uncompressed events file of run directories recorded by an earlier sluicegate."""


def run_events_path(run_dir: str | Path) -> Path:
    """The events file of run directory ``run_dir``: ``events.jsonl.gz``, or the
    uncompressed ``events.jsonl`` when the directory has that one and not the other (a run
    recorded by an earlier sluicegate: resuming it appends to the file it has)."""
    folder = Path(run_dir)
    compressed = folder / RUN_EVENTS_FILE
    plain = folder / UNCOMPRESSED_RUN_EVENTS_FILE
    if plain.exists() and not compressed.exists():
        return plain
    return compressed


def _gzip_lines(reader: _Reader, file: IO[bytes]) -> Iterator[bytes]:
    """The lines of a gzip-compressed events file, each with its newline.

    A torn last member (a crash mid-write) is skipped whole and its size is the torn tail.
    Damaged compressed data raises :class:`EventDecodeError` naming the line after which it
    starts.
    """
    rest = b""
    number = 0
    try:
        for chunk in iter_decompressed(file):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            number += len(lines)
            for line in lines:
                yield line + b"\n"
    except TornMember as torn:
        reader.torn_tail_bytes = torn.size
        return
    except zlib.error as exc:
        raise EventDecodeError(
            str(reader.path),
            number + 1,
            f"damaged gzip data ({exc})",
            "only the last gzip member of an events file can be torn by a crash; restore the "
            "file from a copy, or keep the lines before the damage (gzip -dc)",
        ) from exc
    if rest:
        yield rest


def iter_events(path: str | Path) -> Iterator[AnyEvent]:
    """Decode a JSON Lines event file one event at a time (constant memory). ``path`` may be
    a run directory: its events file is read (:func:`run_events_path`).

    A torn last line is skipped silently; use :func:`read_event_file` to learn about it.
    Raises :class:`EventDecodeError` for a corrupt line, naming the file and the line.
    """
    return iter(_Reader(path))


def read_event_file(path: str | Path) -> EventFile:
    """Decode a whole event file, reporting a skipped torn last line (``path``: the file, or
    a run directory, whose events file is read).

    Values that repeat from event to event are held once (:class:`_Sharing`): the events of
    a run take less than half the memory they would as decoded.
    """
    reader = _Reader(path)
    events = list(map(_Sharing().share, reader))
    return EventFile(path=str(reader.path), events=events, torn_tail_bytes=reader.torn_tail_bytes)


_CORRELATION_STRINGS: Final = ("run_id", "column", "task_type", "group_kind", "group_identity_hash")
_REQUEST_STRINGS: Final = ("provider", "model_id", "domain", "request_group", "outcome", "reason")
_SCHEDULER_STRINGS: Final = ("group", "reason")


class _Sharing:
    """Makes the decoded events of one file share the values they repeat.

    A decoder makes a new object for every value it reads. In a run's events the same few
    strings (run id, column, endpoint, group, outcome) come back in every event, and the
    events of one task execution carry equal correlations. Held once, a 10,000-cell run's
    62,000 events took 377 bytes each instead of 838, for 0.7 µs per event
    (``benchmarks/results/2026-12-07-events-gzip.md``). Events are frozen, so sharing equal
    values is invisible; ``force_setattr`` swaps them in right after decoding, before anyone
    else holds the event.
    """

    __slots__ = ("correlations", "strings")

    def __init__(self) -> None:
        self.correlations: dict[RuntimeCorrelation, RuntimeCorrelation] = {}
        self.strings: dict[str, str] = {}

    def share(self, event: AnyEvent) -> AnyEvent:
        one = self.strings.setdefault
        correlation = event.correlation
        if correlation is not None:
            try:
                shared = self.correlations.get(correlation)
                hashable = True
            except TypeError:  # a task id that was a tuple reads back as a list: not hashable
                shared, hashable = None, False
            if shared is None:  # the first of its task execution: keep it, its strings shared
                for name in _CORRELATION_STRINGS:
                    value = getattr(correlation, name)
                    if value is not None:
                        force_setattr(correlation, name, one(value, value))
                if hashable:
                    self.correlations[correlation] = correlation
            else:
                force_setattr(event, "correlation", shared)
        names = _REQUEST_STRINGS if type(event) is RequestEvent else _SCHEDULER_STRINGS
        for name in names:
            value = getattr(event, name)
            if value is not None:
                force_setattr(event, name, one(value, value))
        return event


def read_events(path: str | Path) -> list[AnyEvent]:
    """Decode a JSON Lines event file written by :class:`JsonLinesEventSink` (or a run
    directory's: ``RUN_DIR/events.jsonl.gz``).

    A ``schema_version`` older than 2 raises :class:`~sluicegate.errors.EventSchemaVersionError`;
    fields added by a newer one are ignored; a torn last line (a crash
    mid-write) is skipped; any other line that cannot be decoded raises
    :class:`EventDecodeError` naming the file, the line and the cause.
    """
    return read_event_file(path).events


class _VersionProbe(msgspec.Struct):
    schema_version: int | None = None


def _looks_torn(line: bytes) -> bool:
    """An unterminated line that starts like an event: the writer stopped mid-line."""
    return line.lstrip().startswith(b"{")


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
    if found is not None and not OLDEST_READABLE_SCHEMA <= found <= SCHEMA_VERSION:
        return EventSchemaVersionError(str(path), number, found, SCHEMA_VERSION)
    return EventDecodeError(
        str(path),
        number,
        f"not a sluicegate event ({exc})",
        "pass a file written by JsonLinesEventSink; a line in the middle of the file is "
        "damaged, so restore the file or cut the run's events before this line",
    )
