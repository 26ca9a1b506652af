"""The ``sluicegate`` command: run, preview, validate, report and demo pipelines.

Errors a user can fix (a bad flag, a pipeline file with problems, a run directory of another
pipeline) and interrupts end the command with one line on stderr, never a traceback;
``--debug`` prints the full traceback as well. Exit statuses: 0 success, 1 failure, 2 usage
or configuration error, 3 empty (no rows), 130 interrupted (see :mod:`.exit_codes`).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .._internal.report_options import add_format_options
from ..errors import ConfigurationError, SluicegateError
from .exit_codes import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from .flags import add_setting_flags

EPILOG = (
    "exit status: 0 success, 1 failure, 2 usage or configuration error, 3 empty (no rows), "
    "130 interrupted. Docs: docs/cli.md, docs/configuration.md"
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on an error, print the full traceback too"
    )
    return common


def _add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="generate a pipeline's rows into a run directory (resumable)",
        description="Generate a pipeline's rows into a run directory, with live progress. "
        "Running again on the same directory resumes; Ctrl-C stops gracefully (twice: now).",
        epilog=EPILOG,
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="a .toml pipeline file or module:attr")
    run.add_argument("--profile", help="smoke, ci, nightly, or a profile of the file")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="require an earlier run in the directory"
    )
    mode.add_argument(
        "--fresh", action="store_true", help="delete the directory's earlier run and start over"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="resume although the pipeline changed, keeping row groups whose rows are unchanged",
    )
    run.add_argument(
        "--show-config",
        action="store_true",
        help="print every resolved setting and where it came from, then exit",
    )
    add_setting_flags(run)


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="sluicegate", description=__doc__.split("\n", 1)[0], parents=[common], epilog=EPILOG
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub, common)
    preview = sub.add_parser(
        "preview",
        parents=[common],
        help="generate a few rows and print them as a table (nothing is kept)",
        description="Generate a few rows in a temporary directory and print them: the quick "
        "loop of prompt iteration.",
        epilog=EPILOG,
    )
    preview.add_argument("pipeline", metavar="PIPELINE", help="a .toml file or module:attr")
    preview.add_argument("--rows", type=int, default=5, help="rows to generate (default 5)")
    preview.add_argument("--seed", help="the run seed (default: the resolved setting)")
    preview.add_argument("--profile", help="resolve settings with this profile")
    preview.add_argument(
        "--width", type=int, default=60, help="characters shown per value (default 60)"
    )
    validate = sub.add_parser(
        "validate",
        parents=[common],
        help="check a pipeline without running it; lists every problem",
        description="Build-time checks only: columns, dependencies, templates, endpoints, "
        "providers, profiles and settings. Exit 0 when valid, 1 with every problem listed.",
    )
    validate.add_argument("pipeline", metavar="PIPELINE", help="a .toml file or module:attr")
    validate.add_argument("--profile", help="also resolve the settings with this profile")
    report = sub.add_parser(
        "report",
        parents=[common],
        help="why was a run slow? the report of a run directory's events",
        description="Read RUN_DIR/events.jsonl.gz (every run records it unless --events=false), "
        "write report.txt, "
        "report.json and pictures, and print the report.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory or an events file")
    add_format_options(report)
    report.add_argument("--no-pictures", action="store_true", help="skip the pictures")
    report.add_argument("--out", help="where to write the report (default RUN_DIR/report)")
    report.add_argument("--run", type=int, default=-1, help="which run of a resumed file (0 first)")
    report.add_argument(
        "--row",
        type=int,
        help="print one pipeline row's cells, attempt by attempt (when each was queued, "
        "admitted and ended, its waits and calls) instead of the report; writes nothing",
    )
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run an example pipeline on a simulated endpoint (no network, a few seconds)",
        epilog=EPILOG,
    )
    demo.add_argument("--rows", type=int, default=400, help="rows to generate (default 400)")
    demo.add_argument("--capacity", type=int, default=64, help="task capacity (default 64)")
    demo.add_argument("--seed", type=int, default=7, help="seed of latencies, 429s, failures")
    demo.add_argument(
        "--hidden-capacity",
        type=int,
        default=24,
        help="concurrent calls the simulated endpoint really takes (default 24)",
    )
    demo.add_argument(
        "--events",
        default=None,
        help="write the run's events to this file (default: RUN_DIR/events.jsonl.gz)",
    )
    demo.add_argument("--out", default=None, help="the run directory (default: a temporary one)")
    return parser


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    if name == "run":
        from .run import run_command

        return run_command
    if name == "preview":
        from .preview import preview_command

        return preview_command
    if name == "validate":
        from .validate import validate_command

        return validate_command
    if name == "report":
        from .report import report_command

        return report_command
    from .demo import demo_command

    return demo_command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    prog = f"sluicegate {args.command}"
    try:
        with warnings.catch_warnings():
            if not args.debug:  # one line per warning, as for errors; --debug shows the source
                warnings.formatwarning = _one_line_warning(prog)
            code = _command(args.command)(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, like a tool killed by SIGPIPE.
        # stdout now points at nothing, so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:  # a Ctrl-C outside a run (while loading, say)
        _debug_trace(exc, args.debug)
        print(f"{prog}: interrupted (no run was in progress)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place every error becomes one line
        from .run import CommandError

        _debug_trace(exc, args.debug)
        hint = "" if args.debug else " (--debug for the traceback)"
        if isinstance(exc, CommandError):
            print(f"{prog}: {exc}", file=sys.stderr)
            return exc.code
        if isinstance(exc, ConfigurationError):
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, SluicegateError):
            print(f"{prog}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{prog}: unexpected error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line_warning(prog: str) -> Any:
    """``warnings.formatwarning`` for a terminal user: ``sluicegate run: warning: ...``
    (the library's own words, without a Python source file and line)."""

    def format_warning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str:
        return f"{prog}: warning: {message}\n"

    return format_warning


def _debug_trace(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
