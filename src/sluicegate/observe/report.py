"""The run report: the verdict, waits per layer, endpoint limits over time, failures.

``generate_report(path)`` is what ``sluicegate report RUN_DIR`` calls: it reads the run's
``events.jsonl.gz`` (or an events file given directly), builds a :class:`RunReport`, writes
``report.txt``, ``report.json`` (msgspec, for machines) and the pictures next to it, and
returns the report; :func:`render_text` is the human form. Until the CLI wires it,
``python -m sluicegate.observe RUN_DIR`` does the same (:func:`main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from .._internal.report_options import add_format_options
from ..errors import NoEventsError, SluicegateError
from ..events import run_events_path
from .occupancy import run_start
from .plots import INSTALL_HINT, PlotDependencyError, write_pictures
from .verdict import LAYER_TITLES, EndpointSummary, Percentiles, Verdict
from .view import CorrelatedRuntimeView

REPORT_VERSION = 1
"""Version of the ``report.json`` layout (independent of the event ``SCHEMA_VERSION``)."""

_WAIT_TITLES = {
    "ready_queue_and_task_admission": "ready queue + task admission (per task)",
    "request_admission": "request admission (per attempt that waited)",
    "retry_backoff": "backoff between attempts (per retried request)",
    "provider_latency": "provider call (per attempt)",
    "worker_local": "worker code outside calls (per task)",
    "task_retry_wait": "task retry backoff (per retry)",
}


class LimitChange(msgspec.Struct, frozen=True, array_like=True):
    """One change of an endpoint's adaptive limit, ``at`` seconds into the run."""

    at: float
    kind: str
    """``decrease`` (after a 429), ``soft_ceiling_recovered`` or ``fully_recovered``."""
    limit_before: int | None = None
    limit_after: int | None = None


class EndpointLimits(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint's limits over the run: every rate-limit decrease and recovery."""

    rate_limits: int
    first_rate_limit_at: float | None
    cooldown_seconds: float
    changes: list[LimitChange]


class RunReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``sluicegate report`` says about one run, in machine-readable form."""

    report_version: int
    source: str | None
    run_id: str | None
    runs_in_source: int
    run_number: int = 0
    """Which of the source's runs this report is, counting from 1 (0 in a ``report.json``
    written before 2026-12-07: the last)."""
    torn_tail_bytes: int
    duration: float
    tasks: int
    executions: int
    statuses: dict[str, int]
    capacity: int | None
    utilization: float | None
    chain_depth: int
    verdict: Verdict
    waits: dict[str, Percentiles]
    endpoints: dict[str, EndpointSummary]
    limits: dict[str, EndpointLimits]
    failures: dict[str, int]
    hidden_waiters: int
    ready_idle_seconds: float | None
    """``None``: not measured (the events do not say what the queued tasks needed)."""
    active_capacity_seconds: float
    cpu_busy_share: float | None = None
    """The process's CPU seconds over the run's wall seconds (worker threads count, so it can
    pass 1 on several cores); ``None``: not measured (an older events file, a virtual clock)."""
    loop_cpu_share: float | None = None
    """The same for the event loop's thread alone."""
    run_status: str | None = None
    """How a pipeline run ended: ``success``, ``failure``, ``empty``, ``interrupted``, or
    ``unfinished`` (no end recorded: killed, or still going); ``None`` outside a pipeline."""
    pictures: list[str] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    failure_examples: dict[str, str] = msgspec.field(default_factory=dict)
    """The first reason of each task class in ``failures`` (what the error said)."""


def build_report(view: CorrelatedRuntimeView) -> RunReport:
    """Assemble the report of the run ``view`` holds (no files written)."""
    occupancy = view.occupancy
    t0 = occupancy.started_at
    limits = {}
    for name, series in occupancy.endpoints.items():
        changes = [
            LimitChange(at=t - t0, kind="decrease", limit_before=before, limit_after=after)
            for t, before, after in series.decreases
        ] + [LimitChange(at=t - t0, kind=kind) for t, kind in series.recoveries]
        changes.sort(key=lambda c: c.at)
        limits[name] = EndpointLimits(
            rate_limits=len(series.rate_limits),
            first_rate_limit_at=series.rate_limits[0] - t0 if series.rate_limits else None,
            cooldown_seconds=_union_length(series.cooldowns),
            changes=changes,
        )
    statuses: dict[str, int] = {}
    for task in view.tasks:
        statuses[task.status] = statuses.get(task.status, 0) + 1
    return RunReport(
        report_version=REPORT_VERSION,
        source=view.source,
        run_id=view.run_id,
        runs_in_source=view.runs,
        run_number=view.run_number,
        torn_tail_bytes=view.torn_tail_bytes,
        duration=occupancy.duration,
        tasks=len(view.tasks),
        executions=len(view.executions),
        statuses=statuses,
        capacity=occupancy.capacity,
        utilization=occupancy.utilization,
        chain_depth=view.chain_depth,
        verdict=view.verdict(),
        waits=view.layer_waits(),
        endpoints=view.endpoints,
        limits=limits,
        failures=view.failures(),
        failure_examples=view.failure_examples(),
        hidden_waiters=view.hidden_waiters,
        ready_idle_seconds=view.ready_idle_seconds,
        active_capacity_seconds=view.active_capacity_seconds,
        cpu_busy_share=view.cpu_busy_share,
        run_status=view.run_status,
        loop_cpu_share=view.loop_cpu_share,
    )


def events_path(path: str | Path) -> Path:
    """The events file of a run directory (:func:`~sluicegate.events.run_events_path`:
    ``RUN_DIR/events.jsonl.gz``), or ``path`` itself."""
    found = Path(path)
    return run_events_path(found) if found.is_dir() else found


def read_run(path: str | Path, *, run: int = -1) -> CorrelatedRuntimeView:
    """The view of one run of an events file or run directory; :class:`NoEventsError` when
    the file holds no whole event (there is no run to report on)."""
    view = CorrelatedRuntimeView.from_file(path, run=run)
    if not view.events:
        raise NoEventsError(view.source or str(path), view.torn_tail_bytes)
    return view


def generate_report(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    pictures: bool = True,
    run: int = -1,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Read a run's events, write ``report.txt``, ``report.json`` and pictures, return it.

    ``path`` is a run directory (holding ``events.jsonl.gz``) or an events file. ``out_dir``
    defaults to ``report/`` beside the events file. Without matplotlib the pictures are
    skipped and the report says how to install it (``pip install 'sluicegate[plot]'``).
    ``progress`` is told each step as it starts (a large run's report takes seconds: about
    10 s for 490,000 events); ``sluicegate report`` shows it on a terminal.
    """
    say = progress if progress is not None else _silent
    source = events_path(path)
    say(f"reading {source} ({_size(source)})")
    view = read_run(source, run=run)
    say(f"following {len(view.events):,} events through the run")
    report = build_report(view)
    out = Path(out_dir) if out_dir is not None else source.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    drawn: list[str] = []
    notes: list[str] = []
    if pictures:
        say(f"drawing the pictures into {out}")
        try:
            drawn = [str(p) for p in write_pictures(view.occupancy, out)]
        except PlotDependencyError:
            notes.append(f"pictures skipped: matplotlib is not installed ({INSTALL_HINT})")
    report = msgspec.structs.replace(report, pictures=drawn, notes=notes)
    (out / "report.json").write_bytes(report_to_json(report))
    (out / "report.txt").write_text(render_text(report) + "\n")
    return report


def render_row(view: CorrelatedRuntimeView, row: int) -> str:
    """One pipeline row's cells, attempt by attempt: when each became ready, was admitted and
    ended (seconds from the run's start), where it waited, and how its model calls went."""
    executions = view.row_executions(row)
    t0 = run_start(view.events)  # not the sweep: a row's timelines are all this needs
    groups = {e.row_group for e in executions if e.row_group is not None}
    where = f" (row group {', '.join(map(str, sorted(groups)))})" if groups else ""
    lines = [
        f"row {row}{where}: {len(executions)} cell execution(s); seconds from the run's start "
        "(a cell is queued once its inputs are done and its endpoint or lane has room)",
        f"  {'column':<16}{'try':>4} {'status':<15}{'queued':>9}{'admitted':>10}{'ended':>9}"
        f"{'q wait':>9}{'req wait':>10}{'provider':>10}{'backoff':>9}  calls",
    ]

    def at(t: float | None) -> str:
        return "-" if t is None else f"{t - t0:.3f}"

    failures = []
    for e in executions:
        attempts = [a for r in e.requests for a in r.attempts]
        outcomes = ", ".join(a.outcome or "running" for a in attempts)
        calls = f"{len(e.requests)} ({outcomes})" if attempts else "0"
        lines.append(
            f"  {(e.column or str(e.task_id)):<16}{e.attempt:>4} {e.status:<15}"
            f"{at(e.ready_enqueued_at):>9}{at(e.task_lease_acquired_at):>10}{at(e.ended_at):>9}"
            f"{e.queue_wait:>9.3f}{e.request_wait:>10.3f}{e.provider_seconds:>10.3f}"
            f"{e.backoff_seconds:>9.3f}  {calls}"
        )
        if e.reason and e.status != "succeeded":
            failures.append(f"  {e.column or e.task_id} #{e.attempt}: {e.reason}")
    return "\n".join(lines + failures)


def _silent(_: str) -> None:
    return None


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size:,} bytes"


def report_to_json(report: RunReport) -> bytes:
    """The report as indented JSON (msgspec)."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


def report_from_json(data: bytes) -> RunReport:
    """Read a ``report.json`` back."""
    return msgspec.json.decode(data, type=RunReport)


def render_text(report: RunReport) -> str:
    """The report for people: verdict first, then the evidence."""
    lines: list[str] = []
    add = lines.append
    title = report.run_id or "run"
    add(f"sluicegate run report: {title}")
    if report.source:
        more = (
            f", run {report.run_number or report.runs_in_source} of {report.runs_in_source}"
            if report.runs_in_source > 1
            else ""
        )
        add(f"  events: {report.source}{more}")
    if report.torn_tail_bytes:
        add(
            f"  note: the file's torn end ({report.torn_tail_bytes} bytes: the last line or gzip "
            "member of a process killed mid-write) was skipped"
        )
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items()))
    used = f", mean {report.utilization:.0%} used" if report.utilization is not None else ""
    capacity = (
        f"task capacity {report.capacity}"
        if report.capacity is not None
        else "task capacity per resource (a pipeline: one per endpoint and local work)"
    )
    add(
        f"  {report.duration:.3g} s, {report.tasks} tasks ({statuses}), {report.executions} "
        f"executions, {capacity}{used}"
    )
    if report.run_status is not None:
        add(f"  run ended: {report.run_status}{_STATUS_NOTES.get(report.run_status, '')}")
    add(f"  {_cpu_line(report)}")
    add("")
    verdict = report.verdict
    layer = LAYER_TITLES.get(verdict.layer or "", "none")
    if verdict.cpu_bound:  # the layer is what the sweep saw; the process's CPU is the limit
        add(f"Verdict: this process's CPU ({layer}: {verdict.share:.0%} of the run)")
    else:
        add(f"Verdict: {layer}, {verdict.share:.0%} of the run")
    add(f"  {verdict.message}")
    if verdict.setting:
        value = f" = {verdict.value}" if verdict.value is not None else ""
        add(f"  setting to change: {verdict.setting}{value}")
    add("")
    add("Where the run's time went (share of wall time, by the layer holding it back)")
    for name, share in sorted(verdict.shares.items(), key=lambda item: -item[1]):
        if share >= 0.005:
            add(f"  {LAYER_TITLES.get(name, name):<38} {share:>5.0%}  {'#' * round(share * 40)}")
    add("")
    add(f"Waits (seconds)  {'':<45}{'count':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, stats in report.waits.items():
        if stats.count:
            add(
                f"  {_WAIT_TITLES.get(name, name):<59}{stats.count:>6} {stats.p50:>8.3g} "
                f"{stats.p90:>8.3g} {stats.p99:>8.3g} {stats.max:>8.3g}"
            )
    add("")
    add("Endpoints")
    for name, ep in report.endpoints.items():
        _endpoint_lines(lines, name, ep, report.limits.get(name))
    if not report.endpoints:
        add("  none (the run made no model calls)")
    add("")
    add("Failures")
    if report.failures:
        for reason, count in report.failures.items():
            add(f"  {reason}: {count}")
            example = report.failure_examples.get(reason)
            if example:
                add(f"    e.g. {example}")
    else:
        add("  none")
    add("")
    # Never a 0 nobody checked: without the task capacity, or each group's resources, the
    # sweep cannot tell whether a queued task could have been admitted.
    ready_idle = (
        f"{report.ready_idle_seconds:.3g} s"
        if report.ready_idle_seconds is not None
        else "not measured (the events do not say which task resources each group holds)"
    )
    add(
        f"Checks: hidden waiters {report.hidden_waiters} (must be 0); ready-idle gaps "
        f"{ready_idle}; active capacity {report.active_capacity_seconds:.4g} "
        f"lease-seconds; longest dependency chain about {report.chain_depth} tasks"
    )
    for picture in report.pictures:
        add(f"Picture: {picture}")
    for note in report.notes:
        add(f"Note: {note}")
    return "\n".join(lines)


def _tokens(ep: EndpointSummary) -> str:
    """``61,234 in, 183,020 out; by column: question 12,000 in / 40,000 out (1,000 calls)``."""
    text = f"{ep.input_tokens:,} in, {ep.output_tokens:,} out"
    if len(ep.tokens_by_column) > 1:
        parts = [
            f"{column} {tokens_in:,} / {tokens_out:,} ({calls:,} requests)"
            for column, (calls, tokens_in, tokens_out) in ep.tokens_by_column.items()
        ]
        text += "; by column (in / out): " + ", ".join(parts)
    return text


def _sustained(ep: EndpointSummary) -> str:
    sustained = ep.sustained_concurrent_successes
    if sustained is None or sustained == ep.peak_concurrent_successes:
        return ""
    return f" ({sustained} sustained: held 1% of the busy time or more)"


_STATUS_NOTES: Final = {
    "failure": " (see Failures below)",
    "empty": " (no rows were written)",
    "interrupted": " (a stop or Ctrl-C before every cell ran: this report covers what ran)",
    "unfinished": (
        " (no end recorded: the process was killed, or the run is still going; this report "
        "covers the events written so far)"
    ),
}


def _cpu_line(report: RunReport) -> str:
    """Was the process busy? Its CPU over the run's wall time, or why it is not known."""
    if report.cpu_busy_share is None:
        return (
            "process CPU: not measured (no CPU readings at both ends of the run: a run still "
            "going or killed before it ended, an events file from an older sluicegate, or a "
            "run on a virtual clock)"
        )
    loop = (
        f" (the event loop's thread {report.loop_cpu_share:.0%})"
        if report.loop_cpu_share is not None
        else ""
    )
    return f"process CPU: busy {report.cpu_busy_share:.0%} of the wall time{loop}"


def _endpoint_lines(
    lines: list[str], name: str, ep: EndpointSummary, limits: EndpointLimits | None
) -> None:
    add = lines.append
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(ep.outcomes.items(), key=lambda i: -i[1]))
    add(
        f"  {name} ({ep.provider}/{ep.model_id}, {ep.domain}; max_parallel_requests "
        f"{ep.static_cap}): {ep.requests} requests, {ep.attempts} attempts ({outcomes})"
    )
    add(
        f"    latency p50 {ep.latency.p50:.3g} s, p95 {ep.latency.p95:.3g} s; mean in flight "
        f"{ep.mean_in_flight:.3g}; at most {ep.peak_concurrent_successes} successful calls at once"
        + _sustained(ep)
    )
    if ep.input_tokens or ep.output_tokens:
        add(f"    tokens: {_tokens(ep)}")
    if limits is None or not limits.rate_limits:
        add(f"    no rate limits; final limit {ep.final_limit}")
        return
    add(
        f"    {limits.rate_limits} rate limits (first at {limits.first_rate_limit_at:.3g} s), "
        f"{ep.limit_decreases} decreases, {ep.limit_increases} increases, {ep.recoveries} "
        f"recoveries; {limits.cooldown_seconds:.3g} s in cooldown; limited "
        f"{ep.rate_limited_share:.0%} of the run; lowest limit {ep.lowest_limit}, final "
        f"{ep.final_limit}"
    )
    shown = limits.changes[:8]
    text = "; ".join(
        f"{c.at:.3g}s {c.limit_before}->{c.limit_after}"
        if c.kind == "decrease"
        else f"{c.at:.3g}s {c.kind.replace('_', ' ')}"
        for c in shown
    )
    more = (
        f" (+{len(limits.changes) - len(shown)} more)" if len(limits.changes) > len(shown) else ""
    )
    add(f"    limit changes: {text}{more}")


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total = 0.0
    end = float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def format_report(report: RunReport, form: str) -> str:
    """The report as ``sluicegate report`` prints it: ``text`` or ``json``."""
    return report_to_json(report).decode() if form == "json" else render_text(report)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sluicegate.observe RUN_DIR``: write the report, print it.

    Exit status 0 on success, 2 when the events file is missing or unreadable.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sluicegate.observe",
        description="Why was this run slow? Reads RUN_DIR/events.jsonl.gz (or an events file).",
    )
    parser.add_argument("path", help="a run directory or an events .jsonl file")
    parser.add_argument("--out", help="where to write report.txt, report.json, pictures")
    parser.add_argument("--no-pictures", action="store_true", help="skip the matplotlib pictures")
    add_format_options(parser)
    parser.add_argument("--run", type=int, default=-1, help="which run of a resumed file (0 first)")
    args = parser.parse_args(argv)
    source = events_path(args.path)
    if not source.is_file():
        print(
            f"no events file at {source}: pass a run directory or an events .jsonl file",
            file=sys.stderr,
        )
        return 2
    try:
        report = generate_report(
            source, out_dir=args.out, pictures=not args.no_pictures, run=args.run
        )
    except SluicegateError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sys.stdout.write(format_report(report, args.format))
    sys.stdout.write("\n")
    return 0
