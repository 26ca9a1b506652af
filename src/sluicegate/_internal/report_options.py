"""The report's output options, shared by ``sluicegate report`` and
``python -m sluicegate.observe`` (kept here so the command line need not import the report)."""

from __future__ import annotations

import argparse


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """``--format text|json`` into ``args.format``; ``--json`` is short for ``--format json``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="print the report as text (default) or as report.json, for machines",
    )
    group.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
