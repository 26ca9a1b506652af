"""The result of a run: its status, what was written and what could not be produced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import msgspec

from .output import OutputFormat, read_rows

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
