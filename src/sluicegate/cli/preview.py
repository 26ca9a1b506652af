"""``sluicegate preview PIPELINE``: a few rows as a table, nothing kept on disk.

The rows are generated exactly as ``run`` would generate the first rows of the run (same
seed, same settings), in a temporary directory that is deleted afterwards. Failed and
filtered rows are listed with their reasons under the table: the quick loop of prompt
iteration.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import msgspec
import trio
from rich.console import Console
from rich.table import Table

from ..datagen import RunResult
from .exit_codes import EXIT_INTERRUPTED, exit_code_for
from .run import CommandError, failure_details
from .target import load_target


def _cell(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def preview_rows(args: argparse.Namespace) -> tuple[RunResult, list[dict[str, Any]]]:
    """Generate ``args.rows`` rows in a temporary run directory; the result and the rows."""
    if args.rows < 1:
        raise CommandError("--rows: must be at least 1. Fix: pass --rows 5, say")
    target = load_target(args.pipeline)
    flags = {"records": str(args.rows), "buffer_size": str(args.rows)}
    origins = {"records": "--rows", "buffer_size": "--rows"}
    if args.seed is not None:
        flags["seed"], origins["seed"] = args.seed, "--seed"
    resolved = target.resolve(
        profile=args.profile, environ=os.environ, flags=flags, flag_origins=origins
    )
    options = resolved.run_options()
    options["output_format"] = "jsonl"
    with tempfile.TemporaryDirectory(prefix="sluicegate-preview-") as tmp:
        result = trio.run(
            lambda: target.pipeline.arun(
                resolved.records,
                output_dir=tmp,
                events=False,  # thrown away with the directory
                request_config=resolved.request_config(target.request_config),
                **options,
            )
        )
        rows = list(result.rows())
    return result, rows


def preview_command(args: argparse.Namespace) -> int:
    """Print the preview table; the exit status follows the run's status."""
    try:
        result, rows = preview_rows(args)
    except KeyboardInterrupt:
        raise CommandError("interrupted; nothing was kept", EXIT_INTERRUPTED) from None
    console = Console()
    names = list(rows[0]) if rows else []
    table = Table(title=f"{len(rows)} of {result.rows_generated} rows", show_lines=True)
    for name in names:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(name), args.width) for name in names))
    if rows:
        console.print(table)
    for detail in failure_details(result):
        console.print(detail, markup=False, highlight=False)
    for column, count in result.filtered.items():
        console.print(f"  {count} rows filtered by {column}'s keep_if", markup=False)
    if not rows:
        console.print(f"no row passed: {result.message}", markup=False)
    return exit_code_for(result.status)
