"""``sluicegate report RUN_DIR``: why was the run slow? (``sluicegate.observe``'s report)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ..observe import events_path, generate_report
from ..observe.report import format_report
from .exit_codes import EXIT_SUCCESS
from .run import CommandError


def report_command(args: argparse.Namespace) -> int:
    """Write ``report.txt``, ``report.json`` and the pictures; print the report."""
    source = events_path(args.run_dir)
    if not source.is_file():
        raise CommandError(
            f"no events file at {source}. Fix: pass a run directory recorded with events "
            "(every run records them unless it was run with --events=false or events = false "
            "in [run]; run it again to record them), or an events .jsonl or .jsonl.gz file"
        )
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
