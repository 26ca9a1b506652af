"""Pictures of a run (matplotlib, the ``plot`` extra; imported only when drawing).

- ``timeline.png``: per pipeline column (labelled with the endpoint it calls), or per task
  group in a run that is not a pipeline, how many of its tasks were queued, waiting for
  request admission, backing off after a 429 or a failure, in a provider call, or running
  local code, over time.
- ``endpoint_limits.png``: per endpoint, the adaptive limit, calls in flight and waiters over
  time, with every 429 marked and cooldowns shaded.
- ``progress.png``: rows completed (and written at each row-group checkpoint) over time for a
  pipeline, tasks completed for other runs, with rate limits marked, above a band that shows
  which layer held the run back at each moment.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ..errors import SluicegateError
from .series import WORKER_STATES, GroupSeries, RunOccupancy
from .verdict import LAYER_TITLES

INSTALL_HINT = "pip install 'sluicegate[plot]'"

_STATE_LABELS = {
    "queued": "queued (ready, not admitted)",
    "wait": "waiting for request admission",
    "backoff_rate_limited": "backing off after a 429",
    "backoff": "backing off after a failure",
    "call": "in a provider call",
    "local": "worker code (local)",
}

_STATE_COLORS = {
    "queued": "#bdbdbd",
    "wait": "#fdae61",
    "backoff_rate_limited": "#d7191c",
    "backoff": "#f46d43",
    "call": "#2c7bb6",
    "local": "#66bd63",
}

_LAYER_COLORS = {
    "dependency_readiness": "#9e9ac8",
    "ready_queue": "#000000",
    "task_admission": "#bdbdbd",
    "request_admission": "#fdae61",
    "provider_cooldown": "#d7191c",
    "provider_latency": "#2c7bb6",
    "downstream_completion": "#66bd63",
    "failure_retry": "#f46d43",
}

MAX_GROUPS = 8
"""Groups (or columns) drawn in the timeline: the busiest ones; the rest are left out."""

MAX_POINTS = 4000


class PlotDependencyError(SluicegateError, ImportError):
    """matplotlib (the ``plot`` extra) is not installed."""

    def __init__(self) -> None:
        super().__init__(f"drawing a run report needs matplotlib. Fix: {INSTALL_HINT}")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotDependencyError() from exc
    matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


def write_pictures(occupancy: RunOccupancy, out_dir: str | Path) -> list[Path]:
    """Draw the three pictures of a run into ``out_dir``; returns their paths.

    Raises :class:`PlotDependencyError` (naming ``pip install 'sluicegate[plot]'``) when
    matplotlib is missing.
    """
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (
        ("timeline.png", _timeline),
        ("endpoint_limits.png", _endpoint_limits),
        ("progress.png", _progress),
    ):
        figure = draw(plt, occupancy)
        path = out / name
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def _thin(times: list[float], columns: list[list[Any]]) -> tuple[list[float], list[list[Any]]]:
    """At most ``MAX_POINTS`` samples, keeping each bin's largest value (spikes survive)."""
    n = len(times)
    if n <= MAX_POINTS:
        return times, columns
    step = n / MAX_POINTS
    keep_t: list[float] = []
    keep: list[list[Any]] = [[] for _ in columns]
    start = 0
    while start < n:
        end = min(n, int(start + step) + 1)
        keep_t.append(times[start])
        for target, column in zip(keep, columns, strict=True):
            values = [v for v in column[start:end] if v is not None]
            target.append(max(values) if values else None)
        start = end
    return keep_t, keep


def _busy(series: GroupSeries) -> int:
    return sum(sum(v) for v in series.counts.values())


def _timeline(plt: Any, occ: RunOccupancy) -> Any:
    t0 = occ.started_at
    if occ.columns:
        # A pipeline's task groups are endpoint lanes: draw its columns, in pipeline order.
        # Columns whose cells took no time (samplers, expressions) would be empty rows.
        idle = [c.name for c in occ.columns.values() if not _busy(c)]
        busy = [c for c in occ.columns.values() if _busy(c)] or list(occ.columns.values())
        ranked = sorted(busy, key=_busy, reverse=True)
        busiest = {c.name for c in ranked[:MAX_GROUPS]}
        shown = [c for c in busy if c.name in busiest]
        title = "Cells per column over time, by what they were doing"
        if idle and len(busy) < len(occ.columns):
            more = f" and {len(idle) - 4} more" if len(idle) > 4 else ""
            title += f"\n(no time in any state: {', '.join(idle[:4])}{more})"
    else:
        shown = sorted(occ.groups.values(), key=lambda g: -_busy(g))[:MAX_GROUPS]
        title = "Tasks per column over time, by what they were doing"
    rows = max(1, len(shown))
    figure, axes = plt.subplots(rows, 1, figsize=(10, 1.9 * rows + 0.8), sharex=True, squeeze=False)
    for ax, group in zip(axes[:, 0], shown, strict=False):
        times = [t - t0 for t in group.times] + [occ.ended_at - t0]
        columns = [group.counts[s] + group.counts[s][-1:] for s in WORKER_STATES]
        times, columns = _thin(times, columns)
        ax.stackplot(
            times,
            *columns,
            step="post",
            colors=[_STATE_COLORS[s] for s in WORKER_STATES],
            labels=[_STATE_LABELS[s] for s in WORKER_STATES],
        )
        ax.set_ylabel(series_label(group), rotation=0, ha="right", va="center")
        ax.margins(x=0)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper right", fontsize="x-small", ncol=2)
    axes[-1, 0].set_xlabel("seconds since the run started")
    return figure


def _endpoint_limits(plt: Any, occ: RunOccupancy) -> Any:
    t0 = occ.started_at
    endpoints = list(occ.endpoints.values())
    rows = max(1, len(endpoints))
    figure, axes = plt.subplots(rows, 1, figsize=(10, 2.4 * rows + 0.8), sharex=True, squeeze=False)
    for ax, ep in zip(axes[:, 0], endpoints, strict=False):
        times = [t - t0 for t in ep.times]
        times, (limit, in_flight, waiting) = _thin(times, [ep.limit, ep.in_flight, ep.waiting])
        for start, end in ep.cooldowns:
            ax.axvspan(start - t0, end - t0, color="#d7191c", alpha=0.12, linewidth=0)
        ax.step(times, limit, where="post", color="black", label="adaptive limit")
        ax.step(times, in_flight, where="post", color="#2c7bb6", label="calls in flight")
        ax.step(times, waiting, where="post", color="#fdae61", linestyle="--", label="waiting")
        if ep.static_cap is not None:
            ax.axhline(ep.static_cap, color="grey", linestyle=":", label="max_parallel_requests")
        if ep.rate_limits:
            top = max([v for v in limit if v is not None] + [ep.static_cap or 1, 1])
            ax.plot(
                [t - t0 for t in ep.rate_limits],
                [top * 1.04] * len(ep.rate_limits),
                "x",
                color="#d7191c",
                label="429 (cooldown shaded)",
            )
        ax.set_ylabel(ep.name, rotation=0, ha="right", va="center")
        ax.margins(x=0)
        ax.legend(loc="upper right", fontsize="x-small", ncol=3)
    axes[0, 0].set_title("Endpoints: adaptive limit vs calls in flight, with rate limits")
    axes[-1, 0].set_xlabel("seconds since the run started")
    return figure


def series_label(series: GroupSeries) -> str:
    """A timeline row's label: ``column (endpoint)`` when the column called an endpoint."""
    if not series.endpoints:
        return series.name
    return f"{series.name} ({', '.join(series.endpoints)})"


def _progress(plt: Any, occ: RunOccupancy) -> Any:
    t0 = occ.started_at
    figure, (top, band) = plt.subplots(
        2, 1, figsize=(10, 4.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    rows = occ.rows
    if rows is None:
        done = [t - t0 for t in occ.completions]
        top.step([0.0, *done], list(range(len(done) + 1)), where="post", color="#1a9641")
        top.set_ylabel("tasks completed")
    else:
        done = [t - t0 for t in rows.completed]
        top.step(
            [0.0, *done],
            list(range(len(done) + 1)),
            where="post",
            color="#1a9641",
            label="rows completed (every column's cell done)",
        )
        written = list(itertools.accumulate(n for _, n in rows.written))
        top.step(
            [0.0, *(t - t0 for t, _ in rows.written)],
            [0, *written],
            where="post",
            color="black",
            linestyle="--",
            label="rows written (row-group checkpoints)",
        )
        top.set_ylabel("rows completed / written")
        top.legend(loc="upper left", fontsize="x-small")
    for ep in occ.endpoints.values():
        for t in ep.rate_limits:
            top.axvline(t - t0, color="#d7191c", alpha=0.25, linewidth=0.8)
    top.set_title("Progress (red lines: rate limits) and the layer holding the run back")
    top.margins(x=0)
    # One collection of bars per layer, not one patch per segment: a run has a segment per
    # change of layer (12,582 in a 10,000-cell run), and a patch each took 11 s to draw.
    spans: dict[str, list[tuple[float, float]]] = {}
    for start, end, layer in occ.segments:
        spans.setdefault(layer, []).append((start - t0, end - start))
    seen = set(spans)
    for layer, bars in spans.items():
        band.broken_barh(
            bars,
            (0, 1),
            facecolors=_LAYER_COLORS.get(layer, "white"),
            label=LAYER_TITLES.get(layer, layer),
            linewidth=0,
        )
    band.set_ylim(0, 1)
    band.set_yticks([])
    band.set_xlabel("seconds since the run started")
    band.set_xlim(0, max(occ.duration, 1e-9))
    if seen:
        band.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="x-small")
    return figure
