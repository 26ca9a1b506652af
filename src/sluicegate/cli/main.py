"""Command line: ``python -m sluicegate demo``.

Errors a user can fix (a bad flag, a value the library rejects) and Ctrl-C end the command
with one line on stderr, not a traceback; ``--debug`` prints the full traceback as well.
Exit status: 0 success, 1 the run finished but not everything succeeded, 2 a usage or
configuration error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

EXIT_INTERRUPTED = 130


"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        help="on an error or Ctrl-C, print the full traceback too",
    )
    parser = argparse.ArgumentParser(prog="sluicegate", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run an example table of model-calling cells through both admission layers",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
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
            _debug_trace(exc, args.debug)
            print(f"sluicegate demo: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            # SchedulerInterrupted says what was interrupted; a bare KeyboardInterrupt (Ctrl-C
            # before the run started) says nothing useful.
            _debug_trace(exc, args.debug)
            what = str(exc) or "interrupted before the run started"
            hint = "" if args.debug else " (--debug for the traceback)"
            print(f"sluicegate demo: {what}{hint}", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 2  # pragma: no cover - argparse enforces the choices


def _debug_trace(exc: BaseException, debug: bool) -> None:
    if not debug:
        return
    # The original exception (a SchedulerInterrupted keeps it as its context) in full.
    shown = exc.__context__ if exc.__suppress_context__ and exc.__context__ else exc
    traceback.print_exception(shown, file=sys.stderr)
