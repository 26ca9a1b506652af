"""``sluicegate report RUN_DIR``: why was the run slow? (``sluicegate.observe``'s report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec
from rich.console import Console

from ..observe import events_path, generate_report
from ..observe.report import format_report, read_run, render_row
from .exit_codes import EXIT_SUCCESS
from .run import CommandError


def report_command(args: argparse.Namespace) -> int:
    """Write ``report.txt``, ``report.json`` and the pictures; print the report."""
    source = events_path(args.run_dir)
    if not source.is_file():
        raise CommandError(
            f"no events file at {source}. Fix: pass a run directory recorded with events "
            "(every run records them there unless it was run with --events=false or events = "
            "false in [run]: run it again to record them), or the events file itself (a run "
            "with --events FILE wrote them to FILE)"
        )
    if args.row is not None:
        return _row_command(source, args)
    console = Console(stderr=True)
    if console.is_terminal:  # a large run's report takes seconds: say what it is doing
        with console.status("reading the events") as status:
            report = generate_report(
                source,
                out_dir=args.out,
                pictures=not args.no_pictures,
                run=args.run,
                progress=status.update,
            )
    else:
        report = generate_report(
            source, out_dir=args.out, pictures=not args.no_pictures, run=args.run
        )
    sys.stdout.write(format_report(report, args.format))
    sys.stdout.write("\n")
    return EXIT_SUCCESS


def _row_command(source: Path, args: argparse.Namespace) -> int:
    """``--row N``: one row's cells (text, or their timelines as JSON); nothing written."""
    view = read_run(source, run=args.run)
    if args.format == "json":
        executions = view.row_executions(args.row)
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(executions), indent=2).decode())
    else:
        sys.stdout.write(render_row(view, args.row))
    sys.stdout.write("\n")
    return EXIT_SUCCESS
