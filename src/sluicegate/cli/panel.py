"""How progress looks: a rich panel for terminals, one plain line for logs.

Both render the same :class:`~.meter.ProgressFigures`: elapsed time and ETA, rows done of
the target with rows per second, a bar per column, per endpoint requests per second, calls
in flight against the current adaptive limit (and the static cap), waiters, cooldowns and
429s, and failures by reason.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .meter import EndpointFigures, ProgressFigures

_BAR_WIDTH = 28
_MAX_FAILURE_LINES = 4


def duration(seconds: float | None) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour); ``-`` when unknown."""
    if seconds is None:
        return "-"
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate(value: float | None) -> str:
    """A rate with sensible precision; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _pressure(e: EndpointFigures) -> str:
    parts = []
    if e.cooldown_seconds > 0:
        parts.append(f"cooldown {e.cooldown_seconds:.1f}s")
    if e.circuit != "closed":
        parts.append(f"circuit {e.circuit.replace('_', '-')}")
    return ", ".join(parts) or "ok"


def _head(f: ProgressFigures) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_row(
        Text("rows", style="bold"),
        ProgressBar(total=max(1, f.rows_target), completed=f.rows_done, width=_BAR_WIDTH),
        Text(f"{f.rows_done:,} / {f.rows_target:,}  {f.fraction:.0%}"),
        Text(f"{rate(f.rows_per_second)} rows/s  ETA {duration(f.eta_seconds)}"),
    )
    counts = Text(
        f"elapsed {duration(f.elapsed_seconds)} · written {f.rows_written:,} · failed "
        f"{f.rows_failed:,} · filtered {f.rows_filtered:,} · {f.row_groups_in_flight} row "
        f"groups, {f.cells_running} cells running",
        style="dim",
    )
    return Group(head, counts)


def _columns(f: ProgressFigures) -> RenderableType:
    columns = Table(box=None, header_style="bold", padding=(0, 1))
    columns.add_column("column")
    columns.add_column("cells done")
    columns.add_column("", justify="right")
    for c in f.columns:
        columns.add_row(
            c.name,
            ProgressBar(total=max(1, c.target), completed=c.done, width=_BAR_WIDTH),
            f"{c.done:,}",
        )
    return columns


def _endpoints(f: ProgressFigures) -> RenderableType:
    table = Table(box=None, header_style="bold", padding=(0, 1))
    for name in ("endpoint", "req/s", "in flight", "limit", "cap", "waiting", "429s", "failed"):
        table.add_column(name, justify="left" if name == "endpoint" else "right")
    table.add_column("state")
    for e in f.endpoints:
        recent = f" (+{e.recent_rate_limited})" if e.recent_rate_limited else ""
        table.add_row(
            e.name,
            rate(e.requests_per_second),
            str(e.in_flight),
            "-" if e.limit is None else str(e.limit),
            str(e.static_cap),
            str(e.waiters),
            f"{e.rate_limited}{recent}",
            str(e.failures),
            _pressure(e),
        )
    return table


def render_panel(figures: ProgressFigures, title: str) -> RenderableType:
    """The live panel for one frame (fits 80 columns)."""
    f = figures
    parts: list[RenderableType] = [_head(f), Text(""), _columns(f)]
    if f.endpoints:
        parts += [Text(""), _endpoints(f)]
    if f.failures:
        parts.append(Text(""))
        for reason, count in f.failures[:_MAX_FAILURE_LINES]:
            parts.append(Text(f"failed rows: {count:,} {reason}", style="red"))
        if len(f.failures) > _MAX_FAILURE_LINES:
            more = sum(n for _, n in f.failures[_MAX_FAILURE_LINES:])
            parts.append(Text(f"failed rows: {more:,} more, other reasons", style="red"))
    return Panel(Group(*parts), title=f"{title} · {f.phase}", title_align="left")


def render_line(figures: ProgressFigures) -> str:
    """The same key figures as one plain line (no colour, no cursor movement)."""
    f = figures
    line = (
        f"[{duration(f.elapsed_seconds)}] {f.phase}: {f.rows_done:,}/{f.rows_target:,} rows "
        f"({f.fraction:.0%}), {rate(f.rows_per_second)} rows/s, ETA {duration(f.eta_seconds)}; "
        f"written {f.rows_written:,}, failed {f.rows_failed:,}"
    )
    for e in f.endpoints:
        limit = "-" if e.limit is None else e.limit
        line += (
            f" | {e.name}: {rate(e.requests_per_second)} req/s, {e.in_flight}/{limit} in flight, "
            f"{e.waiters} waiting, {e.rate_limited} 429s"
        )
        if e.cooldown_seconds > 0:
            line += f", cooldown {e.cooldown_seconds:.1f}s"
        if e.circuit != "closed":
            line += f", circuit {e.circuit}"
    if f.failures:
        top = ", ".join(f"{reason} {count}" for reason, count in f.failures[:2])
        line += f" | failures: {top}"
    return line
