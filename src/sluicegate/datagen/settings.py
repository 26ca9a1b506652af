"""Run settings: how many rows, how they are grouped, retried, stopped and written.

:class:`RunSettings` is a msgspec Struct, validated at construction (each error names the field
and the fix), so the CLI can build it from a TOML table or flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .._internal.checks import did_you_mean, is_number
from ..errors import ConfigurationError
from .output import OUTPUT_FORMATS, OutputFormat

# Settings that change which rows end up in the output, and how they are written: a resumed
# run must agree on them (the run directory's fingerprint includes them).
OUTPUT_SETTINGS: Final = (
    "records",
    "exact",
    "max_attempts_factor",
    "seed",
    "buffer_size",
    "output_format",
)


class RunSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one run generates and writes its rows.

    - ``records``: rows to generate; with ``exact=True``, rows that must *pass* (``keep_if``
      and no failure), generating up to ``records * max_attempts_factor`` rows to get them.
    - ``seed``: the run seed (samplers and ``ctx.rng`` derive from it per row and column).
    - ``buffer_size``: rows per row group; ``max_concurrent_row_groups``: groups in memory.
    - ``row_group_slow_start``: admit row groups 1, 2, 4, ... up to
      ``max_concurrent_row_groups``, growing as the admitted groups' first rows pass, and stop
      the run early when the first ones fail (see docs/slow-start.md); ``False`` admits
      ``max_concurrent_row_groups`` at once.
    - ``task_capacity``: cells running at once (default: twice each endpoint's cap plus
      ``local_threads`` plus ``local_concurrency``, counting only the kinds of cells the
      pipeline has, so it never binds); ``local_threads``: sync generators in
      worker threads at once; ``local_concurrency``: inline and async local cells at once.
    - ``output_format``: ``jsonl`` (built in) or ``parquet`` (the ``parquet`` extra).
    - ``cell_max_attempts`` / ``cell_backoff_seconds``: attempts of a cell failing in a
      retryable way (each attempt may itself retry its model calls ``request_max_attempts``
      times), and the backoff before the second attempt (doubling, at most 60 s).
    - ``request_max_attempts`` / ``request_backoff_seconds``: attempts of one model call inside
      a cell (429, 5xx, timeouts), and the pause before its second attempt (doubling, +/-10%
      jitter, at most 30 s; a longer ``Retry-After`` wins). The cell's endpoint slot serves
      another cell meanwhile.
    - ``salvage_rounds`` / ``salvage_delay_seconds``: extra rounds for a row group stalled on
      cells that used all their attempts, and the pause before each.
    - ``error_rate_window`` / ``error_rate_threshold``: stop early when at least this share of
      the last ``window`` cell attempts failed (``threshold=1.0``: only when all did).
    - ``journal_flush_seconds``: the longest a finished cell waits before reaching the journal.
    - ``stop_grace_seconds``: how long in-flight cells may finish after an error-rate stop.
    """

    records: int
    exact: bool = False
    max_attempts_factor: float = 3.0
    seed: int = 0
    buffer_size: int = 1000
    max_concurrent_row_groups: int = 4
    row_group_slow_start: bool = True
    task_capacity: int | None = None
    local_threads: int = 8
    local_concurrency: int = 64
    output_format: OutputFormat = "jsonl"
    cell_max_attempts: int = 3
    cell_backoff_seconds: float = 1.0
    request_max_attempts: int = 3
    request_backoff_seconds: float = 0.5
    salvage_rounds: int = 2
    salvage_delay_seconds: float = 5.0
    error_rate_window: int = 200
    error_rate_threshold: float = 0.5
    journal_flush_seconds: float = 1.0
    stop_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        _int("records", self.records, 0)
        _int("seed", self.seed, None)
        _int("buffer_size", self.buffer_size, 1)
        _int("max_concurrent_row_groups", self.max_concurrent_row_groups, 1)
        if self.task_capacity is not None:
            _int("task_capacity", self.task_capacity, 1)
        _int("local_threads", self.local_threads, 1)
        _int("local_concurrency", self.local_concurrency, 1)
        _int("cell_max_attempts", self.cell_max_attempts, 1)
        if self.cell_max_attempts > 100:
            raise ConfigurationError(
                "cell_max_attempts", f"got {self.cell_max_attempts}", "use at most 100"
            )
        _int("request_max_attempts", self.request_max_attempts, 1)
        _int("salvage_rounds", self.salvage_rounds, 0)
        _int("error_rate_window", self.error_rate_window, 1)
        for name in ("exact", "row_group_slow_start"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigurationError(name, f"got {value!r}", "use True or False")
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigurationError(
                "output_format",
                f"unknown format {self.output_format!r}"
                + did_you_mean(str(self.output_format), OUTPUT_FORMATS),
                "use 'jsonl' or 'parquet'",
            )
        f = self.max_attempts_factor
        if not (is_number(f) and math.isfinite(f) and f >= 1):
            raise ConfigurationError(
                "max_attempts_factor", f"got {f!r}", "use a number >= 1 (3.0: up to 3x the rows)"
            )
        t = self.error_rate_threshold
        if not (is_number(t) and 0 < t <= 1):
            raise ConfigurationError(
                "error_rate_threshold", f"got {t!r}", "use a share in (0, 1], e.g. 0.5"
            )
        for name in (
            "cell_backoff_seconds",
            "request_backoff_seconds",
            "salvage_delay_seconds",
            "journal_flush_seconds",
            "stop_grace_seconds",
        ):
            value = getattr(self, name)
            if not (is_number(value) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(name, f"got {value!r}", "use a number of seconds >= 0")
        if self.journal_flush_seconds <= 0:
            raise ConfigurationError(
                "journal_flush_seconds", "must be > 0", "use e.g. 1.0 (seconds between flushes)"
            )

    @classmethod
    def from_options(cls, records: int, options: Mapping[str, Any]) -> RunSettings:
        """Build from keyword options, rejecting unknown names with a did-you-mean."""
        known = cls.__struct_fields__
        for name in options:
            if name not in known:
                raise ConfigurationError(
                    name,
                    f"unknown run option{did_you_mean(name, known)}",
                    "use one of: " + ", ".join(k for k in known if k != "records"),
                )
        return cls(records=records, **options)

    def output_settings(self) -> dict[str, Any]:
        """The settings a resumed run must agree on."""
        return {name: getattr(self, name) for name in OUTPUT_SETTINGS}


def _int(name: str, value: object, least: int | None) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or (least is not None and value < least)
    ):
        bound = "an integer" if least is None else f"an integer >= {least}"
        raise ConfigurationError(name, f"must be {bound}, got {value!r}", f"use {bound}")
