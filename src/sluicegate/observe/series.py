"""What the occupancy sweep produces: layer time, and per-endpoint and per-group series
(and, for a pipeline run, per-column series and rows over time).

These are the facts the verdict, the run report and the pictures are drawn from. Times are on
the run's clock (the events' ``captured_at``).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import msgspec

Layer = Literal[
    "dependency_readiness",
    "ready_queue",
    "task_admission",
    "request_admission",
    "provider_cooldown",
    "provider_latency",
    "downstream_completion",
    "failure_retry",
]

LAYERS: Final[tuple[Layer, ...]] = get_args(Layer)
"""Every layer, in the order above (the one list: the ``Layer`` type's own values)."""

WorkerState = Literal["queued", "wait", "backoff_rate_limited", "backoff", "call", "local"]

WORKER_STATES: Final[tuple[WorkerState, ...]] = (
    "queued",
    "wait",
    "backoff_rate_limited",
    "backoff",
    "call",
    "local",
)


class EndpointSeries(msgspec.Struct, kw_only=True):
    """One request resource over the run: limits, calls in flight, waiters, rate limits."""

    name: str
    provider: str
    model_id: str
    domain: str
    static_cap: int | None = None
    rate_window: dict[str, float | int | None] | None = None
    """The producer-side quota, when one was set: ``requests``/``tokens`` per ``seconds``."""
    times: list[float] = msgspec.field(default_factory=list)
    limit: list[int | None] = msgspec.field(default_factory=list)
    in_flight: list[int] = msgspec.field(default_factory=list)
    waiting: list[int] = msgspec.field(default_factory=list)
    rate_limits: list[float] = msgspec.field(default_factory=list)
    cooldowns: list[tuple[float, float]] = msgspec.field(default_factory=list)
    decreases: list[tuple[float, int, int]] = msgspec.field(default_factory=list)
    increases: int = 0
    recoveries: list[tuple[float, str]] = msgspec.field(default_factory=list)
    in_flight_seconds: float = 0.0
    rate_limited_seconds: float = 0.0
    """Seconds in cooldown or under a limit lowered by a rate limit."""


class GroupSeries(msgspec.Struct, kw_only=True):
    """One task group, or one pipeline column, over the run: how many of its tasks (cells)
    were in each state."""

    name: str
    times: list[float] = msgspec.field(default_factory=list)
    counts: dict[str, list[int]] = msgspec.field(default_factory=dict)
    endpoints: list[str] = msgspec.field(default_factory=list)
    """A column's: the endpoints its model calls went to (empty for a task group)."""


class RowProgress(msgspec.Struct, kw_only=True):
    """A pipeline run's rows over time (a generic scheduler run has none)."""

    columns: int
    """Columns the pipeline declared (``pipeline_started``)."""
    completed: list[float] = msgspec.field(default_factory=list)
    """When each row became complete: a cell of every column completed in this run (a row
    filtered or failed part-way, or finished from a journal by a resumed run, is not here)."""
    written: list[tuple[float, int]] = msgspec.field(default_factory=list)
    """``(instant, rows)`` per row-group checkpoint: the rows it wrote."""
    records: int | None = None
    """Rows the run was asked for (``pipeline_started``)."""
    buffer_size: int | None = None
    """Rows per row group (``pipeline_started``; ``None`` in files before 2026-12-07)."""
    max_concurrent_row_groups: int | None = None
    """Row groups in flight at most (``pipeline_started``)."""


class LayerTime(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds attributed to one (layer, endpoint, detail) label."""

    layer: Layer
    endpoint: str | None
    detail: str | None
    seconds: float


class RunOccupancy(msgspec.Struct, kw_only=True):
    """The result of the sweep: layer time, integrals and the series the pictures use."""

    started_at: float
    ended_at: float
    capacity: int | None
    layer_times: list[LayerTime]
    ready_idle_seconds: float | None
    """Seconds when a queued task could have been admitted yet nothing was; ``None``: not
    measured (the events do not say what every queued task's group holds, see
    ``observe/task_resources.py``)."""
    ready_idle_gaps: list[float] | None
    """The gaps one by one: the seconds a task group had a queued task that could have been
    admitted until one of its tasks was. The scheduler's own per-task work makes many gaps of
    microseconds; a lost wakeup makes a long one. ``None`` when ``ready_idle_seconds`` is."""
    active_capacity_seconds: float
    """Integral of task leases held over time (lease-seconds)."""
    endpoints: dict[str, EndpointSeries]
    groups: dict[str, GroupSeries]
    completions: list[float]
    peak_leases: int
    segments: list[tuple[float, float, str]] = msgspec.field(default_factory=list)
    """``(start, end, layer)``: the label over time, adjacent equal labels merged."""
    columns: dict[str, GroupSeries] = msgspec.field(default_factory=dict)
    """A pipeline run's series per column, in pipeline order (empty for other runs: their
    task groups are in ``groups``; a pipeline's groups are its endpoint lanes)."""
    rows: RowProgress | None = None
    """A pipeline run's rows over time; ``None`` for other runs."""
    task_limits: dict[str, int] = msgspec.field(default_factory=dict)
    """The run's task-admission limits per resource, as ``scheduler_job_started`` said
    (a pipeline: ``submission``, ``threads``, one per endpoint lane)."""
    lane_windows: dict[str, int] = msgspec.field(default_factory=dict)
    """A pipeline's lanes and how many of each lane's cells run at once at most."""

    @property
    def duration(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    def layer_seconds(self) -> dict[str, float]:
        """Seconds per layer (every layer listed, zeros included)."""
        out: dict[str, float] = dict.fromkeys(LAYERS, 0.0)
        for item in self.layer_times:
            out[item.layer] += item.seconds
        return out

    @property
    def utilization(self) -> float | None:
        """Mean share of task capacity held, when the capacity is one known number."""
        if not self.capacity or self.duration <= 0:
            return None
        return self.active_capacity_seconds / (self.capacity * self.duration)
