"""Progress figures from run snapshots: rates over a sliding window, ETA, per-column progress.

:class:`ProgressMeter` is pure arithmetic over successive
:class:`~sluicegate.datagen.RunSnapshot` values and the times they were taken (the caller
passes the time in), so it is trivially testable and costs one small deque per view. The
terminal views (:mod:`.panel`) render the :class:`ProgressFigures` it returns.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from attrs import frozen

from ..datagen import RunSnapshot

DEFAULT_RATE_WINDOW: Final = 10.0
"""Seconds of history behind a rate: recent enough to follow a change, long enough to be calm."""


@frozen
class EndpointFigures:
    """One endpoint: calls per second, in flight vs its adaptive limit and static cap, waiters,
    cooldown, 429s (total and within the rate window), other failures, circuit state."""

    name: str
    requests_per_second: float | None
    in_flight: int
    limit: int | None
    static_cap: int
    waiters: int
    cooldown_seconds: float
    rate_limited: int
    recent_rate_limited: int
    failures: int
    circuit: str


@frozen
class ColumnFigures:
    """One column: cells done (this run's and earlier runs' rows) out of ``target`` rows."""

    name: str
    done: int
    target: int


@frozen
class ProgressFigures:
    """Everything a progress view shows, computed from snapshots."""

    run_id: str
    phase: str
    elapsed_seconds: float
    rows_target: int
    rows_done: int
    rows_written: int
    rows_failed: int
    rows_filtered: int
    rows_per_second: float | None
    eta_seconds: float | None
    row_groups_in_flight: int
    cells_running: int
    columns: tuple[ColumnFigures, ...]
    endpoints: tuple[EndpointFigures, ...]
    failures: tuple[tuple[str, int], ...]

    @property
    def fraction(self) -> float:
        """Rows done out of the target, in [0, 1]."""
        if self.rows_target <= 0:
            return 1.0 if self.phase == "finished" else 0.0
        return min(1.0, self.rows_done / self.rows_target)


class ProgressMeter:
    """Keeps ``window`` seconds of snapshot history and turns each new snapshot into
    :class:`ProgressFigures`. Not thread-safe; one per view (it is called from one trio task).
    """

    def __init__(self, window: float = DEFAULT_RATE_WINDOW) -> None:
        if not window > 0:
            raise ValueError("window must be > 0 seconds")
        self.window = window
        self._history: deque[tuple[float, int, dict[str, tuple[int, int]]]] = deque()
        self._baseline: int | None = None

    def update(self, snapshot: RunSnapshot, now: float) -> ProgressFigures:
        """Fold in ``snapshot`` taken at ``now`` (any monotonic clock, in seconds)."""
        counters = {e.endpoint: (e.requests, e.rate_limited) for e in snapshot.endpoints}
        history = self._history
        history.append((now, snapshot.rows_done, counters))
        while len(history) > 2 and now - history[1][0] >= self.window:
            history.popleft()
        oldest_at, oldest_rows, oldest_counters = history[0]
        span = now - oldest_at
        rows_rate: float | None = None
        if span > 0:
            rows_rate = max(0.0, (snapshot.rows_done - oldest_rows) / span)
        eta = None
        left = snapshot.rows_target - snapshot.rows_done
        if rows_rate and left > 0:
            eta = left / rows_rate
        elif left <= 0:
            eta = 0.0
        if self._baseline is None:
            # Rows finished by earlier runs of a resumed directory are not in columns_done.
            most = max(snapshot.columns_done.values(), default=0)
            self._baseline = max(0, snapshot.rows_done - most)
        target = max(snapshot.rows_target, snapshot.rows_done)
        columns = tuple(
            ColumnFigures(name, min(target, done + self._baseline), target)
            for name, done in snapshot.columns_done.items()
        )
        endpoints = []
        for e in snapshot.endpoints:
            old_requests, old_limited = oldest_counters.get(
                e.endpoint, (e.requests, e.rate_limited)
            )
            endpoints.append(
                EndpointFigures(
                    name=e.aliases[0] if e.aliases else e.endpoint,
                    requests_per_second=(e.requests - old_requests) / span if span > 0 else None,
                    in_flight=e.in_flight,
                    limit=e.limit,
                    static_cap=e.static_cap,
                    waiters=e.waiters,
                    cooldown_seconds=e.cooldown_seconds,
                    rate_limited=e.rate_limited,
                    recent_rate_limited=e.rate_limited - old_limited,
                    failures=e.failures,
                    circuit=e.circuit,
                )
            )
        failures = tuple(sorted(snapshot.failures.items(), key=lambda kv: (-kv[1], kv[0])))
        return ProgressFigures(
            run_id=snapshot.run_id,
            phase=snapshot.phase,
            elapsed_seconds=snapshot.elapsed_seconds,
            rows_target=snapshot.rows_target,
            rows_done=snapshot.rows_done,
            rows_written=snapshot.rows_written,
            rows_failed=snapshot.rows_failed,
            rows_filtered=snapshot.rows_filtered,
            rows_per_second=rows_rate,
            eta_seconds=eta,
            row_groups_in_flight=snapshot.row_groups_in_flight,
            cells_running=snapshot.cells_running,
            columns=columns,
            endpoints=tuple(endpoints),
            failures=failures,
        )
