"""The run directory: manifest, row-group files and the cell journal.

Layout (every file is written by this module only)::

    <output_dir>/manifest.json          RunManifest (msgspec JSON), replaced atomically
    <output_dir>/capacity_plan.json     AsyncCapacityPlan, at start and at the end
    <output_dir>/data/part-00000.jsonl  one file per written row group (or .parquet)
    <output_dir>/journal/rg-00000.jsonl finished cells of an unfinished row group
    <output_dir>/events.jsonl.gz        scheduler and request events (unless turned off)

Crash safety. A row-group file is written to a temporary name, fsynced and renamed; then the
manifest (same procedure) lists it with its content hash; then the group's journal is deleted.
A crash between two steps leaves either an unlisted file (rewritten identically on resume) or a
stale journal (ignored and deleted). Journals are append-only and flushed at a bounded
interval; a torn last line (a crash mid-write) is dropped on load, a corrupt line elsewhere is
an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import trio

from ..events import run_events_path
from .errors import RunDirectoryError

FORMAT_VERSION: Final = 1


T = TypeVar("T")


class RowGroupCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A written row group: its rows, its file and the file's content hash."""

    index: int
    row_start: int
    row_stop: int
    rows_passed: int
    rows_written: int
    rows_filtered: int
    rows_failed: int
    path: str | None
    sha256: str | None
    size_bytes: int = 0
    failures: dict[str, int] = msgspec.field(default_factory=dict)
    filtered: dict[str, int] = msgspec.field(default_factory=dict)


class RunManifest(msgspec.Struct, kw_only=True):
    """What a run directory holds and which pipeline made it."""

    run_id: str
    pipeline_name: str
    fingerprint: str
    fingerprint_parts: dict[str, str]
    pipeline: dict[str, Any]
    settings: dict[str, Any]
    created_at: str
    updated_at: str
    status: str = "running"
    row_groups: list[RowGroupCheckpoint] = msgspec.field(default_factory=list)
    failures: dict[str, int] = msgspec.field(default_factory=dict)
    format_version: int = FORMAT_VERSION


class CellLine(msgspec.Struct, frozen=True, array_like=True, tag="c"):
    """Journal line: a finished cell (its value stays raw until its column's type is known)."""

    row: int
    column: str
    value: msgspec.Raw


class RowLine(msgspec.Struct, frozen=True, array_like=True, tag="r"):
    """Journal line: a resolved row (``status`` is a row state: 2 filtered, 3 failed) with its
    failure category (``column: ErrorType``, or the filtering column) and full reason."""

    row: int
    status: int
    category: str
    reason: str


JournalLine = CellLine | RowLine


_LINE_DECODER: Final = msgspec.json.Decoder(JournalLine)


_ENCODER: Final = msgspec.json.Encoder()


_MANIFEST_DECODER: Final = msgspec.json.Decoder(RunManifest)


def journal_prefix(column: str) -> bytes:
    """The bytes between a cell line's row and its value: ``,"<column>",``."""
    return b"," + _ENCODER.encode(column) + b","


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename (then fsync the
    directory), so readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RunDirectory:
    """File operations of one run directory. Blocking work runs in a worker thread unless
    ``io_inline`` (virtual-time runs, where a thread would let the clock jump)."""

    def __init__(self, path: str | os.PathLike[str], *, io_inline: bool = False) -> None:
        self.path = Path(path)
        self.io_inline = io_inline
        self.data_dir = self.path / "data"
        self.journal_dir = self.path / "journal"
        self.manifest_path = self.path / "manifest.json"
        self.capacity_path = self.path / "capacity_plan.json"
        self._journals: dict[int, bytearray] = {}
        self._files: dict[int, Any] = {}

    @property
    def events_path(self) -> Path:
        """The events file (:func:`~sluicegate.events.run_events_path`): ``events.jsonl.gz``,
        or the ``events.jsonl`` an earlier sluicegate wrote here."""
        return run_events_path(self.path)

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` off the event loop (inline in virtual time)."""
        if self.io_inline:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args)

    def prepare(self) -> None:
        """Create the directories."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.journal_dir.mkdir(parents=True, exist_ok=True)

    # -- manifest ------------------------------------------------------------------------

    def load_manifest(self) -> RunManifest | None:
        """The manifest, or ``None`` when the directory holds no run."""
        try:
            data = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            manifest = _MANIFEST_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RunDirectoryError(
                str(self.manifest_path),
                f"not a sluicegate run manifest ({exc})",
                "point output_dir at a run directory of this sluicegate, or pass overwrite=True",
            ) from None
        if manifest.format_version != FORMAT_VERSION:
            raise RunDirectoryError(
                str(self.manifest_path),
                f"format version {manifest.format_version} (this sluicegate writes "
                f"{FORMAT_VERSION})",
                "resume with the sluicegate version that started the run, or overwrite=True",
            )
        return manifest

    def write_manifest(self, manifest: RunManifest) -> None:
        atomic_write(self.manifest_path, _ENCODER.encode(manifest))

    def write_capacity_plan(self, plan: msgspec.Struct) -> None:
        atomic_write(self.capacity_path, _ENCODER.encode(plan))

    def part_path(self, index: int, suffix: str) -> Path:
        return self.data_dir / f"part-{index:05d}{suffix}"

    def write_part(self, index: int, suffix: str, data: bytes) -> tuple[str, str, int]:
        """Write one row-group file atomically; returns (relative path, sha256, size)."""
        path = self.part_path(index, suffix)
        atomic_write(path, data)
        return str(path.relative_to(self.path)), sha256_of(data), len(data)

    def verify_part(self, checkpoint: RowGroupCheckpoint) -> bool:
        """Whether a listed row-group file is present with the recorded content."""
        if checkpoint.path is None:
            return True
        try:
            data = (self.path / checkpoint.path).read_bytes()
        except OSError:
            return False
        return sha256_of(data) == checkpoint.sha256

    # -- journal -------------------------------------------------------------------------

    def journal_path(self, group: int) -> Path:
        return self.journal_dir / f"rg-{group:05d}.jsonl"

    def append_encoded(self, group: int, prefix: bytes, row: int, value: bytes) -> None:
        """Buffer a finished cell for ``group``'s journal: a :class:`CellLine` written by hand
        (``prefix`` from :func:`journal_prefix`, ``value`` already JSON), the hot path."""
        buffer = self._journals.get(group)
        if buffer is None:
            buffer = self._journals[group] = bytearray()
        buffer += b'["c",%d%s%s]\n' % (row, prefix, value)

    def append_row(self, group: int, row: int, status: int, category: str, reason: str) -> None:
        """Buffer a resolved (filtered or failed) row for ``group``'s journal."""
        buffer = self._journals.get(group)
        if buffer is None:
            buffer = self._journals[group] = bytearray()
        _ENCODER.encode_into(RowLine(row, status, category, reason), buffer, len(buffer))
        buffer.extend(b"\n")

    def take_journal_buffers(self) -> list[tuple[int, bytes]]:
        """Everything buffered since the last call (the caller writes it)."""
        out = [(g, bytes(b)) for g, b in self._journals.items() if b]
        for buffer in self._journals.values():
            buffer.clear()
        return out

    def write_journal(self, chunks: list[tuple[int, bytes]]) -> None:
        """Append buffered lines to their journal files and fsync them (blocking)."""
        for group, data in chunks:
            f = self._files.get(group)
            if f is None:
                f = self._files[group] = open(self.journal_path(group), "ab")  # noqa: SIM115
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def drop_journal(self, group: int) -> None:
        """Close and delete ``group``'s journal (its row group is written or not needed)."""
        self._journals.pop(group, None)
        f = self._files.pop(group, None)
        if f is not None:
            f.close()
        self.journal_path(group).unlink(missing_ok=True)

    def close_journals(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def journal_groups(self) -> list[int]:
        """Groups that have a journal file on disk."""
        groups = []
        for path in self.journal_dir.glob("rg-*.jsonl"):
            try:
                groups.append(int(path.stem[3:]))
            except ValueError:
                continue
        return sorted(groups)

    def load_journal(
        self, group: int, decoders: Mapping[str, msgspec.json.Decoder[Any]]
    ) -> tuple[dict[tuple[int, str], Any], dict[int, tuple[int, str, str]]]:
        """Cells ``(row, column) -> value`` and resolved rows ``row -> (status, category,
        reason)`` of
        ``group``'s journal. A torn last line is cut off the file; a corrupt line elsewhere
        raises :class:`RunDirectoryError`. Cells of unknown columns are ignored."""
        path = self.journal_path(group)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return {}, {}
        cells: dict[tuple[int, str], Any] = {}
        rows: dict[int, tuple[int, str, str]] = {}
        position = 0
        number = 0
        size = len(data)
        while position < size:
            end = data.find(b"\n", position)
            last = end < 0
            line = data[position:] if last else data[position:end]
            number += 1
            try:
                if not line.strip():
                    raise msgspec.DecodeError("empty line")
                record = _LINE_DECODER.decode(line)
                if isinstance(record, CellLine):
                    decoder = decoders.get(record.column)
                    if decoder is not None:
                        cells[(record.row, record.column)] = decoder.decode(record.value)
                else:
                    rows[record.row] = (record.status, record.category, record.reason)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if last or (data.find(b"\n", end + 1) < 0 and not data[end + 1 :].strip()):
                    # The last line is torn (a crash mid-append): cut it off so later appends
                    # start on a fresh line.
                    with open(path, "r+b") as f:
                        f.truncate(position)
                    break
                raise RunDirectoryError(
                    f"{path}:{number}",
                    f"corrupt journal line ({exc})",
                    "delete this journal file to regenerate its row group from scratch",
                ) from None
            if last:
                # A complete record without its newline: keep it, and end the file cleanly.
                with open(path, "ab") as f:
                    f.write(b"\n")
                break
            position = end + 1
        return cells, rows
