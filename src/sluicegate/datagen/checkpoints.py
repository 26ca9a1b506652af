"""The checkpoint writer: one task that does every file write of a run, in order.

Finished row groups arrive from the tracker (:meth:`CheckpointWriter.submit`); the writer
encodes the passing rows, writes the row-group file atomically, lists it in the manifest with
its content hash, deletes the group's journal and then releases the group's memory (it keeps
no reference). Between row groups it flushes the journal buffers at most
``flush_interval`` seconds apart. Doing all of it in one task keeps the order that crash
safety depends on (file, then manifest, then journal deletion) without locks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .output import SUFFIX, OutputFormat, encode_rows
from .rowgroups import ROW_FAILED, ROW_FILTERED, RowGroupState
from .rundir import RowGroupCheckpoint, RunDirectory, RunManifest

OnWritten = Callable[[RowGroupCheckpoint], None]


class CheckpointWriter:
    """Writes row groups and journal flushes for one run (see the module docstring)."""

    def __init__(
        self,
        rundir: RunDirectory,
        manifest: RunManifest,
        *,
        output_columns: Sequence[tuple[str, int]],
        output_format: OutputFormat,
        flush_interval: float,
        on_written: OnWritten,
    ) -> None:
        self.rundir = rundir
        self.manifest = manifest
        self._columns = tuple(output_columns)
        self._format = output_format
        self._interval = flush_interval
        self._on_written = on_written
        self._backlog: deque[tuple[str, Any, int | None]] = deque()
        self._wake = trio.Event()
        self._closing = False
        self.writes_pending = 0

    def submit(self, state: RowGroupState, limit: int | None) -> None:
        """Queue a finished group for writing (``limit``: passing rows to keep). Not a
        checkpoint."""
        self._backlog.append(("write", state, limit))
        self.writes_pending += 1
        self._wake.set()

    def submit_discard(self, index: int) -> None:
        """Queue the deletion of a journal whose group the output does not need."""
        self._backlog.append(("discard", index, None))
        self._wake.set()

    def close(self) -> None:
        """Finish the backlog, flush once more and return from :meth:`run`."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """The writer task. Cancelling it between two steps leaves the directory consistent;
        :meth:`drain` completes what is left."""
        # Deadlines, not durations: "now - last >= interval" can stay false by one ulp while a
        # timer computed as "interval - (now - last)" keeps expiring at once, a busy loop.
        flush_at = trio.current_time() + self._interval
        while True:
            if self._backlog:
                await self._step(*self._backlog.popleft())
            elif self._closing:
                break
            elif trio.current_time() < flush_at:
                with trio.move_on_at(flush_at):
                    await self._wake.wait()
                self._wake = trio.Event()
            if trio.current_time() >= flush_at:
                await self.flush()
                flush_at = trio.current_time() + self._interval
        await self.flush()

    async def drain(self) -> None:
        """Write everything still queued and flush the journal (call it shielded)."""
        while self._backlog:
            await self._step(*self._backlog.popleft())
        await self.flush()

    async def flush(self) -> None:
        """Write buffered journal lines to disk (fsynced)."""
        chunks = self.rundir.take_journal_buffers()
        if chunks:
            await self.rundir.run_io(self.rundir.write_journal, chunks)

    async def _step(self, kind: str, payload: Any, limit: int | None) -> None:
        if kind == "discard":
            await self.rundir.run_io(self.rundir.drop_journal, payload)
            return
        try:
            checkpoint = await self.rundir.run_io(self._write_group, payload, limit)
        finally:
            self.writes_pending -= 1
        self._on_written(checkpoint)

    def _write_group(self, state: RowGroupState, limit: int | None) -> RowGroupCheckpoint:
        """Blocking: file, manifest, journal deletion, in that order."""
        passing = state.passing_rows()
        if limit is not None:
            passing = passing[:limit]
        columns = state.columns
        values = state.values
        rows = [
            {name: values[offset * columns + index] for name, index in self._columns}
            for offset in passing
        ]
        rundir = self.rundir
        path = digest = None
        size = 0
        if rows:  # an empty file would trip some readers (pandas, datasets)
            path, digest, size = rundir.write_part(
                state.index, SUFFIX[self._format], encode_rows(rows, self._format)
            )
        row_state = state.row_state
        failures: dict[str, int] = {}
        filtered: dict[str, int] = {}
        for offset, (category, _) in sorted(state.reasons.items()):
            counts = filtered if row_state[offset] == ROW_FILTERED else failures
            counts[category] = counts.get(category, 0) + 1
        checkpoint = RowGroupCheckpoint(
            index=state.index,
            row_start=state.start,
            row_stop=state.start + state.size,
            rows_passed=len(state.passing_rows()),
            rows_written=len(rows),
            rows_filtered=row_state.count(ROW_FILTERED),
            rows_failed=row_state.count(ROW_FAILED),
            path=path,
            sha256=digest,
            size_bytes=size,
            failures=failures,
            filtered=filtered,
        )
        manifest = self.manifest
        manifest.row_groups = sorted(
            [*(c for c in manifest.row_groups if c.index != state.index), checkpoint],
            key=lambda c: c.index,
        )
        rundir.write_manifest(manifest)
        rundir.drop_journal(state.index)
        return checkpoint
