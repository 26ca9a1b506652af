"""Gzip-compressed event files: one gzip member per written batch.

A compressed events file (``events.jsonl.gz``) is a sequence of gzip members, each holding
whole JSON Lines, so ``zcat``, ``gzip -dc | jq`` and Python's :mod:`gzip` read it as one
stream. One member per batch keeps the JSON Lines sink's crash rules: a process killed
mid-write leaves at most one torn member at the end. Readers read every complete member and
skip the torn one whole (:func:`iter_decompressed`); opening the file again for appending
cuts it off (:func:`cut_torn_member`). That looks for the start of the last member from the
end of the file, so resuming a long run does not decompress its whole events file.

Members are deflated at level 1 with ISA-L (the ``isal`` package, a dependency where it has
wheels: x86-64 and ARM64), which writes standard gzip about five times faster than zlib and
smaller (13 times smaller than the lines on a zero-latency pipeline's events, against zlib's
12). Where ``isal`` is missing, zlib's fastest level does the same job; readers need only
zlib. Measured: ``benchmarks/results/2026-12-07-events-gzip.md`` (zlib) and
``benchmarks/results/2026-12-07-events-isal.md``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Final

_deflate_with: ModuleType
try:  # ISA-L: the same gzip, about five times faster to write
    from isal import isal_zlib as _deflate_with
except ImportError:  # pragma: no cover - platforms without an isal wheel
    _deflate_with = zlib

DEFLATER: Final = _deflate_with.__name__
"""Which library deflates the members (``isal.isal_zlib`` or ``zlib``)."""

LEVEL: Final = 1
"""Compression level of every member: higher levels cost more CPU than they save."""

_WBITS: Final = 31  # 16 + 15: a gzip header and trailer around a deflate stream
_GZIP_ID: Final = b"\x1f\x8b"
# How every member this module writes starts: gzip id, deflate, no flags (no name, no
# extra field), mtime 0. Eight fixed bytes, so a false match inside compressed data is
# practically impossible; cut_torn_member also inflates from each candidate to be sure.
_OUR_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
_CHUNK: Final = 1 << 16


def compress_member(data: bytes) -> bytes:
    """``data`` (whole lines) as one gzip member; deterministic (no name, mtime 0)."""
    member: bytes = _deflate_with.compress(data, LEVEL, wbits=_WBITS)
    return member


def is_gzip(path: Path) -> bool:
    """Whether ``path`` holds gzip data (by its first bytes, whatever its name); a file torn
    inside the first member's very first bytes counts too."""
    try:
        with path.open("rb") as f:
            first = f.read(2)
    except FileNotFoundError:
        return False
    return bool(first) and _GZIP_ID.startswith(first)


class TornMember(Exception):
    """The file ended inside a gzip member (a writer killed mid-write) of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the file ends inside a gzip member ({size} bytes)")
        self.size = size


def iter_decompressed(file: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of each complete member of ``file``, one member at a time.

    Raises :class:`TornMember` at the end when the file ends inside a member: that member
    is skipped whole (nothing of it was checked against its CRC, and appending cuts it off
    whole), and ``zlib.error`` for damaged data.
    """
    inflater = zlib.decompressobj(_WBITS)
    parts: list[bytes] = []
    member_bytes = 0  # compressed bytes of the current member read so far
    pending = b""
    while True:
        chunk = pending or file.read(_CHUNK)
        pending = b""
        if not chunk:
            break
        member_bytes += len(chunk)
        parts.append(inflater.decompress(chunk))
        if inflater.eof:  # a member ended: the rest of the chunk starts the next one
            yield b"".join(parts)
            parts.clear()
            pending = inflater.unused_data
            inflater = zlib.decompressobj(_WBITS)
            member_bytes = 0
    if member_bytes:
        raise TornMember(member_bytes)


def cut_torn_member(path: Path) -> int:
    """Cut a torn last member off ``path``; return how many bytes were cut (0: clean).

    Finds the start of the last member by looking backwards for the header this module
    writes, and inflates only that member. A file with no such header anywhere (not written
    here) is left alone.
    """
    try:
        f = path.open("r+b")
    except FileNotFoundError:
        return 0
    with f:
        end = f.seek(0, os.SEEK_END)
        if 0 < end < len(_OUR_HEADER):  # torn inside the first member's header
            f.seek(0)
            if _OUR_HEADER.startswith(f.read()):
                f.truncate(0)
                return end
        position = end
        overlap = b""  # the next window's first bytes: a header may straddle two windows
        while position > 0:
            start = max(0, position - _CHUNK)
            f.seek(start)
            window = f.read(position - start) + overlap
            at = window.rfind(_OUR_HEADER)
            while at >= 0:
                keep = _keep_up_to(f, start + at, end)
                if keep is not None:
                    f.truncate(keep)
                    return end - keep
                at = window.rfind(_OUR_HEADER, 0, at)
            overlap = window[: len(_OUR_HEADER) - 1]
            position = start
        return 0


def _keep_up_to(f: IO[bytes], offset: int, end: int) -> int | None:
    """Where the file should end, given a header-like match at ``offset``; ``None`` when
    the bytes only looked like a header.

    A member that starts there and ends exactly at ``end``: ``end`` (clean). One the file
    ends inside: ``offset`` (torn). A complete member followed by a few more bytes: the
    member's end (the writer was killed inside the next member's header, which is too short
    to be matched).
    """
    f.seek(offset)
    inflater = zlib.decompressobj(_WBITS)
    read = offset
    try:
        while read < end:
            chunk = f.read(min(_CHUNK, end - read))
            if not chunk:
                break
            read += len(chunk)
            inflater.decompress(chunk)
            if inflater.eof:
                return read - len(inflater.unused_data)
    except zlib.error:
        return None
    return offset
