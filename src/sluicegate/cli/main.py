"""Command line: ``python -m sluicegate demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluicegate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run an example table of model-calling cells through both admission layers"
    )
    demo.add_argument(
        "--rows", type=int, default=400, help="rows of the example table (default 400)"
    )
    demo.add_argument(
        "--capacity", type=int, default=64, help="task admission capacity (default 64)"
    )
    demo.add_argument(
        "--seed", type=int, default=7, help="seed of latencies, 429s and failures (default 7)"
    )
    demo.add_argument(
        "--hidden-capacity",
        type=int,
        default=24,
        help="concurrent calls the simulated endpoint really takes (default 24)",
    )
    demo.add_argument(
        "--events", default=None, help="write scheduler and request events to this JSONL file"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ..errors import SluicegateError
        from .demo import run_demo

        if args.rows < 1:
            parser.error("--rows must be at least 1")
        try:
            return run_demo(
                rows=args.rows,
                capacity=args.capacity,
                seed=args.seed,
                events=args.events,
                hidden_capacity=args.hidden_capacity,
            )
        except SluicegateError as exc:
            print(f"sluicegate demo: {exc}", file=sys.stderr)
            return 2
    return 2  # pragma: no cover - argparse enforces the choices
