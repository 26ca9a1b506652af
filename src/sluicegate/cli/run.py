"""``sluicegate run PIPELINE``: resolve the settings, run with progress, stop on signals.

1. PIPELINE is loaded (a TOML file or ``module:attribute``) and every setting resolved in
   layers (defaults < file ``[run]`` < profile < environment < flags; see
   :mod:`sluicegate.datagen.profiles`). ``--show-config`` prints the result and stops.
2. The run directory (``--out``, default ``runs/<pipeline>[-<profile>]``) is resumed when it
   holds a run of the same pipeline, refused when it holds another one, started over with
   ``--fresh``.
3. The pipeline runs in one trio run beside two tasks: the progress view and the signal
   watcher (:mod:`.interrupts`). When it ends, one summary line says what happened and the
   exit status says how (:mod:`.exit_codes`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import trio
from attrs import frozen
from rich.console import Console

from ..datagen import (
    EndpointSnapshot,
    PipelineChangedError,
    ResolvedSettings,
    RunManifest,
    RunResult,
)
from ..datagen.profiles import environment_layer
from ..datagen.settings_table import ENV_PREFIX
from ..requests import RequestAdmissionConfig
from .exit_codes import EXIT_SUCCESS, EXIT_USAGE, exit_code_for
from .flags import given_settings
from .interrupts import RunInterrupts
from .panel import duration
from .progress import TerminalProgress, choose_mode
from .sinks import event_sinks
from .target import PipelineTarget, load_target


class CommandError(Exception):
    """A user error the command reports in one line (with ``code`` as the exit status)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@frozen
class RunPlan:
    """Everything decided before the run starts."""

    target: PipelineTarget
    resolved: ResolvedSettings
    output_dir: str
    fresh: bool
    force: bool
    rows_before: int | None
    request_config: RequestAdmissionConfig | None = None
    """Request-admission settings when the target has none (the demo's short cooldown)."""


@frozen
class RunOutcome:
    """How the run ended: its result, what interrupted it, and the last snapshot's counts."""

    result: RunResult
    interrupted_by: str | None
    cells_finished: int
    cells_cancelled: int
    columns: int
    endpoints: tuple[EndpointSnapshot, ...] = ()


def default_output_dir(pipeline: str, profile: str | None) -> str:
    """``runs/<pipeline>``, or ``runs/<pipeline>-<profile>`` (profiles change the records)."""
    return str(Path("runs") / (f"{pipeline}-{profile}" if profile else pipeline))


def resolve(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[PipelineTarget, ResolvedSettings, str | None]:
    """Load PIPELINE and resolve its settings with ``--profile``, the environment and flags."""
    target = load_target(args.pipeline)
    flags, origins = given_settings(args)
    profile = args.profile or environ.get(ENV_PREFIX + "PROFILE") or None
    resolved = target.resolve(profile=profile, environ=environ, flags=flags, flag_origins=origins)
    return target, resolved, profile


def render_config(
    target: PipelineTarget,
    resolved: ResolvedSettings,
    output_dir: str,
    environ: Mapping[str, str],
) -> str:
    """``--show-config``: every setting with its value and where it came from."""
    pipeline = target.pipeline
    lines = [
        f"pipeline  {target.label} ({pipeline.name!r}: {len(pipeline.columns)} columns, "
        f"endpoints: {', '.join(e.alias for e in pipeline.endpoints) or 'none'})",
        f"profile   {resolved.profile or '-'}"
        + (f" (file profiles: {', '.join(target.profiles)})" if target.profiles else ""),
        "",
    ]
    rows = [
        (name, output_dir, "default (runs/<pipeline>[-<profile>])")
        if name == "output_dir" and resolved["output_dir"] is None
        else (name, value, source)
        for name, value, source in resolved.rows()
    ]
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines.append(f"{'setting':<{width}}  {'value':<{value_width}}  source")
    for name, value, source in rows:
        lines.append(f"{name:<{width}}  {value:<{value_width}}  {source}")
    for note in resolved.notes:
        lines.append(f"adjusted: {note}")
    ignored = environment_layer(environ)[1]
    if ignored:
        lines.append("ignored environment (not settings): " + ", ".join(ignored))
    return "\n".join(lines)


def rows_already_written(output_dir: str) -> int | None:
    """Rows the manifest in ``output_dir`` lists as written; ``None`` without a manifest."""
    path = Path(output_dir) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=RunManifest)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None  # the run itself reports an unreadable manifest properly
    return sum(group.rows_written for group in manifest.row_groups)


def plan_run(args: argparse.Namespace, environ: Mapping[str, str]) -> RunPlan | None:
    """Resolve everything; ``None`` when ``--show-config`` printed the configuration."""
    target, resolved, profile = resolve(args, environ)
    output_dir = resolved["output_dir"] or default_output_dir(target.pipeline.name, profile)
    if args.show_config:
        print(render_config(target, resolved, output_dir, environ))
        return None
    rows_before = None if args.fresh else rows_already_written(output_dir)
    if args.resume and rows_before is None:
        raise CommandError(
            f"--resume: {output_dir} holds no run to resume. Fix: drop --resume to start a new "
            "run there, or pass --out with the directory of an earlier run"
        )
    return RunPlan(target, resolved, output_dir, args.fresh, args.force, rows_before)


async def _execute(plan: RunPlan, view: TerminalProgress, events: Any) -> RunOutcome:
    from ..datagen import RunControl

    resolved = plan.resolved
    control = RunControl()
    interrupts = RunInterrupts(
        control,
        grace_seconds=resolved["stop_grace_seconds"],
        notice=view.notice,
        deadline_seconds=resolved["deadline_seconds"],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(interrupts.run)
        await nursery.start(view.run, control)
        try:
            result = await plan.target.pipeline.arun(
                resolved.records,
                output_dir=plan.output_dir,
                overwrite=plan.fresh,
                force=plan.force,
                control=control,
                progress=view,
                events=events,
                request_config=resolved.request_config(
                    plan.target.request_config or plan.request_config
                ),
                **resolved.run_options(),
            )
        finally:
            nursery.cancel_scope.cancel()
    final = control.snapshot()
    finished = sum(final.columns_done.values()) if final is not None else 0
    return RunOutcome(
        result,
        interrupts.reason,
        finished,
        interrupts.cancelled_cells or 0,
        len(plan.target.pipeline.columns),
        final.endpoints if final is not None else (),
    )


def sole_error(error: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, else ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def execute(plan: RunPlan, *, console: Console | None = None) -> RunOutcome:
    """Run the plan (progress, events, OpenTelemetry, signals) and return how it ended."""
    resolved = plan.resolved
    console = console if console is not None else Console(file=sys.stdout)
    view = TerminalProgress(
        choose_mode(resolved["progress"], console),
        title=f"sluicegate run {plan.target.pipeline.name}",
        console=console,
        line_interval=resolved["progress_interval"],
    )
    otel = None
    if resolved["otel"] is not None:
        from .otel_setup import setup_otel

        otel = setup_otel(resolved["otel"])
    events, files = event_sinks(
        resolved["events"],
        output_dir=plan.output_dir,
        fresh=plan.fresh,
        extra=otel.sink if otel is not None else None,
    )
    try:
        return trio.run(_execute, plan, view, events)
    except BaseExceptionGroup as group:
        raise sole_error(group) from None
    finally:
        for file in files:
            file.close()
            stats = file.stats
            if stats is not None and stats.dropped:  # the run went on; say what it lost
                print(f"sluicegate run: events: {stats.summary()}", file=sys.stderr)
        if otel is not None:
            otel.shutdown()


def changed_message(error: PipelineChangedError) -> str:
    """The refusal of a run directory that holds another pipeline, with the CLI's fixes."""
    changes = "\n".join(f"  - {change}" for change in error.changes)
    return (
        f"{error.output_dir} holds a run of a different pipeline or settings:\n{changes}\n"
        "Fix: --fresh to start over there, --force to keep the row groups whose rows are "
        "unchanged and resume, or --out DIR to write elsewhere"
    )


def summary(outcome: RunOutcome, plan: RunPlan) -> str:
    """One line: the status, rows written where, how long; for an interrupt what was done."""
    r = outcome.result
    took = duration(r.elapsed_seconds)
    resumed = ""
    if r.resumed:
        resumed = f" (resumed: {plan.rows_before or 0:,} rows were already written)"
    where = f"{r.rows_written:,} of {r.rows_target:,} rows written to {r.output_dir}"
    if r.status == "interrupted":
        total = r.rows_target * outcome.columns
        earlier = (plan.rows_before or 0) * outcome.columns
        not_started = max(0, total - earlier - outcome.cells_finished - outcome.cells_cancelled)
        why = outcome.interrupted_by or "stopped"
        return (
            f"interrupted after {took} ({why}): {where}{resumed}; cells: "
            f"{outcome.cells_finished:,} finished, {outcome.cells_cancelled:,} cancelled while "
            f"running, {not_started:,} not started; run the same command again to resume"
        )
    if r.status == "success":
        return f"success: {where} in {took}{resumed}"
    return f"{r.status}: {r.message}; {where} in {took}{resumed}"


def failure_details(result: RunResult, limit: int = 5) -> list[str]:
    """One line per failure reason (count and an example), most frequent first."""
    out = []
    for category, count in sorted(result.failures.items(), key=lambda kv: -kv[1])[:limit]:
        example = result.failure_examples.get(category, "")
        out.append(f"  {count:,} rows failed: {example or category}")
    return out


def run_command(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """The ``run`` command; returns the exit status (see :mod:`.exit_codes`)."""
    env = os.environ if environ is None else environ
    plan = plan_run(args, env)
    if plan is None:
        return EXIT_SUCCESS
    try:
        outcome = execute(plan)
    except PipelineChangedError as exc:
        raise CommandError(changed_message(exc)) from exc
    result = outcome.result
    line = summary(outcome, plan)
    events = plan.resolved["events"]
    # Every run that recorded its events can be explained, a stopped or failed one too.
    report = f"report: sluicegate report {plan.output_dir}" if events is True else None
    if result.status == "success":
        print(line, flush=True)
        if report:
            print(report, flush=True)
    else:
        sys.stdout.flush()
        print(line, file=sys.stderr, flush=True)
        for detail in failure_details(result):
            print(detail, file=sys.stderr)
        if report and result.status != "empty":
            print(report, file=sys.stderr, flush=True)
    return exit_code_for(result.status)
