"""The result of a run: its status, what was written and what could not be produced."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import msgspec

from .output import OutputFormat, read_rows
from .rundir import RowGroupCheckpoint

RunStatus: TypeAlias = Literal["success", "failure", "empty", "interrupted"]


RUN_STATUSES: Final[tuple[RunStatus, ...]] = ("success", "failure", "empty", "interrupted")


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a run did.

    ``status``: ``success`` (every row was produced or filtered, and with ``exact`` exactly
    ``records`` rows passed), ``failure`` (some rows could not be produced, the exact count
    was not reached, or the error rate stopped the run), ``empty`` (nothing to write) or
    ``interrupted`` (stopped or cancelled). ``message`` says why in one sentence.

    Row counts cover the whole run directory (earlier runs of a resumed run included):
    ``rows_generated`` rows were attempted, ``rows_passed`` passed, ``rows_filtered`` failed a
    ``keep_if``, ``rows_failed`` could not be produced, ``rows_written`` are in the files.
    ``failures`` counts failed rows by ``"column: ErrorType"``; ``failure_examples`` keeps one
    full reason per key; ``filtered`` counts filtered rows by column.
    """

    status: RunStatus
    message: str
    run_id: str
    output_dir: str
    output_format: OutputFormat
    files: tuple[str, ...]
    rows_target: int
    rows_written: int
    rows_generated: int
    rows_passed: int
    rows_filtered: int
    rows_failed: int
    failures: dict[str, int]
    failure_examples: dict[str, str]
    filtered: dict[str, int]
    row_groups_written: int
    resumed: bool
    elapsed_seconds: float
    manifest: str

    @property
    def ok(self) -> bool:
        """Whether the status is ``success``."""
        return self.status == "success"

    @property
    def rows_dropped(self) -> int:
        """Rows not in the output: filtered plus failed."""
        return self.rows_filtered + self.rows_failed

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every written row, in row order (reads the files)."""
        for name in self.files:
            yield from read_rows(str(Path(self.output_dir) / name), self.output_format)


class RunTotals(msgspec.Struct, kw_only=True):
    """Row counts over the row groups a run directory lists (earlier runs included)."""

    written: int = 0
    generated: int = 0
    passed: int = 0
    filtered: int = 0
    failed: int = 0
    failures: dict[str, int] = msgspec.field(default_factory=dict)
    filtered_by: dict[str, int] = msgspec.field(default_factory=dict)

    @classmethod
    def of(cls, checkpoints: Iterable[RowGroupCheckpoint]) -> RunTotals:
        totals = cls()
        for c in checkpoints:
            totals.written += c.rows_written
            totals.generated += c.row_stop - c.row_start
            totals.passed += c.rows_passed
            totals.filtered += c.rows_filtered
            totals.failed += c.rows_failed
            for category, count in c.failures.items():
                totals.failures[category] = totals.failures.get(category, 0) + count
            for category, count in c.filtered.items():
                totals.filtered_by[category] = totals.filtered_by.get(category, 0) + count
        return totals


def run_status(
    totals: RunTotals,
    *,
    records: int,
    exact: bool,
    max_attempts_factor: float,
    stop_reason: str | None,
    cancelled: bool,
    interrupted: bool,
    stop_failed: bool = False,
) -> tuple[RunStatus, str]:
    """The status of a finished run and the sentence that explains it (``stop_failed``: the
    run stopped itself because it was failing: the error rate, or slow start halted)."""
    if stop_reason is not None and stop_failed:
        return "failure", f"stopped early: {stop_reason}"
    if interrupted or cancelled or stop_reason is not None:
        how = "cancelled" if cancelled else "stopped"
        return "interrupted", f"{how}; {totals.written} rows written, resume by running again"
    if exact:
        if totals.written < records:
            return "failure", (
                f"only {totals.written} of {records} rows passed after generating "
                f"{totals.generated} (max_attempts_factor {max_attempts_factor})"
            )
    elif totals.failed:
        return "failure", f"{totals.failed} row(s) could not be produced"
    if totals.written == 0:
        return "empty", "no row was written"
    return "success", f"{totals.written} rows written"
