"""Reading event files back (``read_events``), with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ..errors import EventDecodeError
from .schema import SCHEMA_VERSION, AnyEvent, RequestEvent, SchedulerEvent


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
