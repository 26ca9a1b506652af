"""How progress looks: a rich panel for terminals, one plain line for logs.

Both render the same :class:`~.meter.ProgressFigures`: elapsed time and ETA, rows done of
the target with rows per second, a bar per column, per endpoint requests per second, calls
in flight against the current adaptive limit (and the static cap), waiters, cooldowns and
429s, and failures by reason.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
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


def bar(done: int, total: int, width: int = _BAR_WIDTH) -> Text:
    """A progress bar as styled text (rich's own bar characters and theme styles).

    Plain text rather than rich's table and bar renderables: a frame then costs a fraction
    of a millisecond, which matters at several frames a second beside a busy run.
    """
    total = max(1, total)
    halves = min(2 * width, max(0, 2 * width * done // total))
    full, half = divmod(halves, 2)
    style = "bar.finished" if done >= total else "bar.complete"
    text = Text("━" * full, style=style)
    if half:
        text.append("╸", style=style)
    rest = width - full - half
    if rest > 0:
        text.append(("╺" if not half and full else "━") + "━" * (rest - 1), style="bar.back")
    return text


def _head(f: ProgressFigures) -> list[Text]:
    head = Text("rows  ", style="bold")
    head.append_text(bar(f.rows_done, f.rows_target))
    head.append(
        f"  {f.rows_done:,} / {f.rows_target:,}  {f.fraction:.0%}  "
        f"{rate(f.rows_per_second)} rows/s  ETA {duration(f.eta_seconds)}"
    )
    counts = Text(
        f"elapsed {duration(f.elapsed_seconds)} · written {f.rows_written:,} · failed "
        f"{f.rows_failed:,} · filtered {f.rows_filtered:,} · {f.row_groups_in_flight} row "
        f"groups, {f.cells_running} cells running",
        style="dim",
    )
    return [head, counts]


def _columns(f: ProgressFigures) -> list[Text]:
    width = max([len("column"), *(len(c.name) for c in f.columns)])
    lines = [Text(f" {'column':<{width}}  cells done", style="bold")]
    for c in f.columns:
        line = Text(f" {c.name:<{width}}  ")
        line.append_text(bar(c.done, c.target))
        line.append(f"  {c.done:>7,}")
        lines.append(line)
    return lines


_ENDPOINT_HEADER = ("req/s", "in flight", "limit", "cap", "waiting", "429s", "failed")


def _endpoints(f: ProgressFigures) -> list[Text]:
    width = max([len("endpoint"), *(len(e.name) for e in f.endpoints)])
    rows = []
    for e in f.endpoints:
        recent = f" (+{e.recent_rate_limited})" if e.recent_rate_limited else ""
        limit = "-" if e.limit is None else str(e.limit)
        cells = (
            rate(e.requests_per_second),
            str(e.in_flight),
            limit,
            str(e.static_cap),
            str(e.waiters),
            f"{e.rate_limited}{recent}",
            str(e.failures),
        )
        rows.append((e.name, cells, _pressure(e)))
    widths = [max([len(h), *(len(r[1][i]) for r in rows)]) for i, h in enumerate(_ENDPOINT_HEADER)]
    header = " " + f"{'endpoint':<{width}}"
    header += "".join(f"  {h:>{w}}" for h, w in zip(_ENDPOINT_HEADER, widths, strict=True))
    lines = [Text(header + "  state", style="bold")]
    for name, cells, state in rows:
        line = " " + f"{name:<{width}}"
        line += "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
        lines.append(Text(f"{line}  {state}"))
    return lines


def render_panel(figures: ProgressFigures, title: str) -> RenderableType:
    """The live panel for one frame (fits 80 columns)."""
    f = figures
    parts: list[RenderableType] = [*_head(f), Text(""), *_columns(f)]
    if f.endpoints:
        parts += [Text(""), *_endpoints(f)]
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
