"""Which layer held the run back, instant by instant: a sweep over the joined event streams.

The sweep keeps the run's state as the events change it (tasks queued, task leases held,
workers and what each is doing, every endpoint's limit, in-flight calls, waiters and cooldown)
and labels every interval between two event instants with the one layer that bound progress
then. The rules, in order (``plans/observability.md`` explains them):

1. Ready tasks are queued and a policy holds them back: ``task_admission`` (policy). A block
   for ``no_capacity`` is no policy: capacity is full, and rule 3 applies.
2. Ready tasks are queued, capacity is free for one of them and nothing holds them back:
   ``ready_queue`` (a ready-idle gap: work ready, capacity free, nothing admitted). With several
   task-admission resources (a pipeline), a queued task's group must fit under every limit
   (:mod:`.task_resources`); where the events do not say what a group holds, the gaps are not
   measured (``ready_idle_seconds`` is ``None``) and the interval goes to rule 3.
3. Ready tasks are queued and task capacity is full: blame what the lease holders do. Most
   wait for request admission or back off after a 429: ``request_admission`` (detail
   ``rate_window``) when their endpoint's limit has room and no cooldown holds them (its rate
   window is full), else ``provider_cooldown`` when their endpoint is rate limited (in
   cooldown, or its adaptive limit is still below its cap after a 429), else
   ``request_admission``. Most are in provider calls: ``provider_cooldown`` or
   ``request_admission`` if their endpoint is at its limit, else ``task_admission`` (the
   endpoint had headroom: more task capacity would have been used). Most run local code:
   ``downstream_completion``.
4. Nothing is queued: blame what the running workers do, the same way (calls to an endpoint
   at its limit are ``request_admission``: the endpoint's cap sets the pace), except that
   calls to an endpoint with headroom and local code with idle capacity while more tasks are
   still to come is ``dependency_readiness`` (the work exists but is not ready yet). With
   several resources, capacity is idle while the resources every group holds (a pipeline's
   ``submission``, its total) have a free unit. Local code filling a pipeline's local lane
   (``threads``, ``local``: counted from the job event's ``lanes``) is
   ``downstream_completion`` (detail ``lane_full:<lane>``), not work still to come.
5. Nothing runs: tasks waiting to be retried are ``provider_cooldown`` (after a rate limit) or
   ``failure_retry``; tasks still to come are ``dependency_readiness``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from typing import Final

from ..events.schema import AnyEvent, RequestEvent, SchedulerEvent
from .series import (
    WORKER_STATES,
    EndpointSeries,
    GroupSeries,
    Layer,
    LayerTime,
    RowProgress,
    RunOccupancy,
)
from .task_resources import TaskResources
from .timeline import TERMINAL_KINDS, endpoint_key, task_key

# When workers are split between states, the more blocking state wins a tie.
_PRIORITY: Final = {"wait": 0, "backoff_rate_limited": 1, "backoff": 2, "call": 3, "local": 4}

_READY_IDLE: Final[tuple[Layer, None, str]] = ("ready_queue", None, "ready_idle")


class _Endpoint:
    __slots__ = (
        "cooldown_until",
        "leases",
        "limit",
        "rate_limited_ever",
        "series",
        "waiting",
    )

    def __init__(self, series: EndpointSeries) -> None:
        self.series = series
        self.limit: int | None = None
        self.leases: set[int | None] = set()
        self.waiting = 0
        self.cooldown_until = float("-inf")
        self.rate_limited_ever = False

    def quota_bound(self, t: float) -> bool:
        """Calls wait though the limit has room and no cooldown holds them: what they wait
        for is the endpoint's rate window (a producer-side quota of requests or tokens)."""
        limit = self.limit
        return (
            self.series.rate_window is not None
            and self.cooldown_until <= t
            and limit is not None
            and len(self.leases) < limit
        )

    def constrained(self, t: float) -> bool:
        """Rate limited now: in cooldown, or still below the cap after a rate limit."""
        if self.cooldown_until > t:
            return True
        cap = self.series.static_cap
        limit = self.limit
        return self.rate_limited_ever and cap is not None and limit is not None and limit < cap

    def record(self, t: float) -> None:
        s = self.series
        if s.times and s.times[-1] == t:
            s.limit[-1], s.in_flight[-1], s.waiting[-1] = self.limit, len(self.leases), self.waiting
            return
        s.times.append(t)
        s.limit.append(self.limit)
        s.in_flight.append(len(self.leases))
        s.waiting.append(self.waiting)


class _Worker:
    """A running task execution and the state of each of its model requests."""

    __slots__ = ("column", "group", "lane", "requests", "state", "state_endpoint")

    def __init__(self, group: str, column: str | None, lane: str | None) -> None:
        self.group = group
        self.column = column
        self.lane = lane  # a pipeline's local lane the cell runs on (None: an endpoint's)
        self.requests: dict[int, tuple[str, str]] = {}  # request id -> (state, endpoint)
        self.state: str = "local"
        self.state_endpoint: str | None = None


class OccupancySweep:
    """Runs the sweep over events given in emission order (see :func:`sweep`)."""

    def __init__(self, events: Sequence[AnyEvent]) -> None:
        self.events = events
        self.queued: dict[Hashable, str] = {}
        self.held: dict[int | None, str] = {}
        self.workers: dict[Hashable, _Worker] = {}
        self.request_owner: dict[int, Hashable] = {}
        self.endpoints: dict[tuple[str, str, str], _Endpoint] = {}
        self.groups: dict[str, GroupSeries] = {}
        self.group_counts: Counter[tuple[str, str]] = Counter()
        self.lane_running: Counter[str] = Counter()  # a pipeline's local lanes
        self.state_counts: Counter[tuple[str, str | None]] = Counter()
        self.deferred: dict[Hashable, bool] = {}
        self.task_groups: dict[Hashable, str] = {}
        self.last_outcome: dict[Hashable, str | None] = {}
        self.blocked: str | None = None
        self.resources = TaskResources()
        self.labels: dict[tuple[Layer, str | None, str | None], float] = {}
        self.ready_idle = 0.0
        self.ready_idle_checked = True  # False once work sat queued where no one can tell
        self.stalled: dict[str, float] = {}  # group -> ready-idle seconds since it was served
        self.gaps: list[float] = []
        self.active = 0.0
        self.peak = 0
        self.completions: list[float] = []
        self.segments: list[tuple[float, float, str]] = []
        self.first_ready = _first_ready_times(events)
        self.dirty_groups: set[str] = set()
        # A pipeline run (it says so with ``pipeline_started``) is also drawn per column and
        # per row: its task groups are endpoint lanes, shared by the columns on one endpoint.
        self.pipeline_columns = _pipeline_columns(events)
        self.task_columns = _task_columns(events) if self.pipeline_columns is not None else {}
        self.columns: dict[str, GroupSeries] = {}
        self.column_counts: Counter[tuple[str, str]] = Counter()
        self.dirty_columns: set[str] = set()
        self.column_endpoints: dict[str, dict[tuple[str, str, str], None]] = {}
        self.row_cells: dict[int, set[str]] = {}
        self.rows_completed: list[float] = []
        self.rows_written: list[tuple[float, int]] = []

    # -- driving ------------------------------------------------------------------------

    def run(self) -> RunOccupancy:
        events = self.events
        start = run_start(events)
        last = start
        for event in events:
            t = event.captured_at
            if t > last:
                self._account(last, t)
                last = t
            if type(event) is SchedulerEvent:
                self._scheduler(event)
            else:
                assert isinstance(event, RequestEvent)
                self._request(event)
            self._record(t)
        for group in list(self.stalled):  # tasks still queued when the events end
            self._served(group)
        measured = self.ready_idle_checked and self.resources.declared
        return RunOccupancy(
            started_at=start,
            ended_at=last,
            capacity=self.resources.capacity,
            layer_times=[
                LayerTime(layer=layer, endpoint=ep, detail=detail, seconds=seconds)
                for (layer, ep, detail), seconds in sorted(
                    self.labels.items(), key=lambda item: -item[1]
                )
            ],
            ready_idle_seconds=self.ready_idle if measured else None,
            ready_idle_gaps=self.gaps if measured else None,
            task_limits=dict(self.resources.limits or {}),
            lane_windows=dict(self.resources.lane_windows),
            active_capacity_seconds=self.active,
            endpoints={ep.series.name: ep.series for ep in self.endpoints.values()},
            groups=self.groups,
            completions=self.completions,
            peak_leases=self.peak,
            segments=self.segments,
            columns=self._column_series(),
            rows=None
            if self.pipeline_columns is None
            else RowProgress(
                columns=len(self.pipeline_columns),
                completed=self.rows_completed,
                written=self.rows_written,
                **_row_group_settings(self.events),
            ),
        )

    def _column_series(self) -> dict[str, GroupSeries]:
        """The columns' series in pipeline order, each naming the endpoints it called."""
        order = {name: i for i, name in enumerate(self.pipeline_columns or ())}
        out = {}
        for name in sorted(self.columns, key=lambda n: order.get(n, len(order))):
            series = out[name] = self.columns[name]
            series.endpoints = [
                self.endpoints[key].series.name for key in self.column_endpoints.get(name, {})
            ]
        return out

    def _account(self, t0: float, t1: float) -> None:
        dt = t1 - t0
        held = len(self.held)
        self.active += held * dt
        for ep in self.endpoints.values():
            ep.series.in_flight_seconds += len(ep.leases) * dt
            if ep.constrained(t0):
                ep.series.rate_limited_seconds += dt
        label = self._classify(t0)
        if label is not None:
            self.labels[label] = self.labels.get(label, 0.0) + dt
            segments = self.segments
            if segments and segments[-1][2] == label[0] and segments[-1][1] == t0:
                segments[-1] = (segments[-1][0], t1, label[0])
            else:
                segments.append((t0, t1, label[0]))
            if label == _READY_IDLE:
                self.ready_idle += dt
                self._stall(dt)
            elif (
                self.ready_idle_checked
                and self.queued
                and self.blocked in (None, "no_capacity")
                and self.resources.fits(self._queued_groups()) is None
            ):
                # A gap may hide here: the events do not say what the queued tasks need.
                self.ready_idle_checked = False

    def _stall(self, dt: float) -> None:
        """Every queued group that could have had a task admitted waited ``dt`` more; its
        gap ends when one of its tasks is admitted (:meth:`_served`)."""
        resources = self.resources
        for group in self._queued_groups():
            if resources.fits((group,)):
                self.stalled[group] = self.stalled.get(group, 0.0) + dt

    def _served(self, group: str) -> None:
        """A task of ``group`` was admitted (or the events ended): its gap, if any, is over."""
        stalled = self.stalled.pop(group, None)
        if stalled is not None:
            self.gaps.append(stalled)

    def _record(self, t: float) -> None:
        _record_series(t, self.groups, self.group_counts, self.dirty_groups)
        if self.dirty_columns:
            _record_series(t, self.columns, self.column_counts, self.dirty_columns)

    # -- classification -----------------------------------------------------------------

    def _classify(self, t: float) -> tuple[Layer, str | None, str | None] | None:
        if self.queued:
            # "no_capacity" is no policy holding work back: capacity is full, and what the
            # lease holders do says why (rule 3).
            if self.blocked is not None and self.blocked != "no_capacity":
                return ("task_admission", None, self.blocked)
            if self.resources.fits(self._queued_groups()):
                return _READY_IDLE
            return self._holders(t, capacity_full=True)
        if self.workers:
            label = self._holders(t, capacity_full=False)
            if label[0] == "downstream_completion":
                lane = self._full_local_lane()
                if lane is not None:  # every unit of the lane busy with local code
                    return ("downstream_completion", None, f"lane_full:{lane}")
            if (
                label[0] in ("provider_latency", "downstream_completion")
                and self.resources.idle()
                and self._still_to_come(t)
            ):
                return ("dependency_readiness", label[1], "capacity_idle")
            return label
        if self.deferred:
            if any(self.deferred.values()):
                return ("provider_cooldown", None, "task_retry_after_rate_limit")
            return ("failure_retry", None, "task_retry")
        if self._still_to_come(t):
            return ("dependency_readiness", None, "nothing_ready")
        return None

    def _full_local_lane(self) -> str | None:
        """A lane of local work running as many cells as it may (a pipeline's ``threads``:
        every worker thread busy; ``local``: ``local_concurrency`` async or inline cells),
        or, outside a pipeline, a task resource other than the total that local code holds
        to its limit. A full lane's other cells wait in the pipeline, not in the scheduler's
        queue, so without this the time would read as work still to come."""
        resources = self.resources
        windows = resources.lane_windows
        if windows:  # a pipeline: the running cells of each local lane, counted as they go
            for lane, count in self.lane_running.items():
                window = windows.get(lane)
                if window is not None and count >= window:
                    return lane
            return None
        limits = resources.limits
        if not limits or resources.capacity is not None:
            return None
        in_use = resources.in_use
        for worker in self.workers.values():
            if worker.state != "local":
                continue
            for name in resources.group_resources.get(worker.group, ()):
                limit = limits.get(name)
                if name not in resources.shared and limit is not None and in_use[name] >= limit:
                    return name
        return None

    def _queued_groups(self) -> Iterator[str]:
        """The task groups with a task in the queue (read lazily: one capacity needs none)."""
        counts = self.group_counts
        return (group for group in self.groups if counts[(group, "queued")])

    def _still_to_come(self, t: float) -> bool:
        first = self.first_ready
        return bisect.bisect_right(first, t) < len(first)

    def _holders(self, t: float, *, capacity_full: bool) -> tuple[Layer, str | None, str | None]:
        # Once per instant of the run: plain dictionaries and loops (a Counter's missing-key
        # path and key functions cost a third of the report's sweep on a 100,000-cell run).
        counts = self.state_counts
        by_state: dict[str, int] = {}
        for (s, _), n in counts.items():
            if n:
                by_state[s] = by_state.get(s, 0) + n
        if not by_state:
            return ("downstream_completion", None, "local")
        state = ""
        best = (0, 0)
        for s, n in by_state.items():  # the most held state; ties to the higher priority
            rank = (-n, _PRIORITY[s])
            if not state or rank < best:
                state, best = s, rank
        endpoint: str | None = None
        most: int | None = None
        for (s, ep), n in counts.items():  # its busiest endpoint (the first of equals)
            if s == state and n and (most is None or n > most):
                endpoint, most = ep, n
        ep_state = self._endpoint_named(endpoint)
        if state == "wait" and ep_state is not None and ep_state.quota_bound(t):
            return ("request_admission", endpoint, "rate_window")
        if state == "wait":
            if ep_state is not None and ep_state.constrained(t):
                return ("provider_cooldown", endpoint, "rate_limited")
            return ("request_admission", endpoint, "at_limit")
        if state == "backoff_rate_limited":
            return ("provider_cooldown", endpoint, "backoff_after_429")
        if state == "backoff":
            return ("failure_retry", endpoint, "backoff_after_failure")
        if state == "call":
            if ep_state is not None and ep_state.constrained(t):
                return ("provider_cooldown", endpoint, "rate_limited")
            limit = None if ep_state is None else ep_state.limit
            if ep_state is not None and limit is not None and len(ep_state.leases) >= limit:
                # The endpoint serves as many calls as it may: its cap sets the pace, whether
                # or not more work is queued behind it (a pipeline releases an endpoint's
                # cells only while it has room, so none wait in request admission).
                return ("request_admission", endpoint, "at_limit")
            if not capacity_full:
                return ("provider_latency", endpoint, "in_call")
            return ("task_admission", endpoint, "capacity_full")
        return ("downstream_completion", None, "local")

    def _endpoint_named(self, name: str | None) -> _Endpoint | None:
        if name is None:
            return None
        for ep in self.endpoints.values():
            if ep.series.name == name:
                return ep
        return None

    # -- scheduler stream ---------------------------------------------------------------

    def _group(self, name: str) -> str:
        if name not in self.groups:
            self.groups[name] = GroupSeries(
                name=name, counts={state: [] for state in WORKER_STATES}
            )
        self.dirty_groups.add(name)
        return name

    def _move(self, group: str, column: str | None, old: str | None, new: str | None) -> None:
        if old is not None:
            self.group_counts[(group, old)] -= 1
        if new is not None:
            self.group_counts[(group, new)] += 1
        self._group(group)
        if column is not None:
            if column not in self.columns:
                self.columns[column] = GroupSeries(
                    name=column, counts={state: [] for state in WORKER_STATES}
                )
            if old is not None:
                self.column_counts[(column, old)] -= 1
            if new is not None:
                self.column_counts[(column, new)] += 1
            self.dirty_columns.add(column)

    def _column(self, key: Hashable, group: str) -> str | None:
        """The pipeline column of a task (``None`` outside a pipeline run). A cell that never
        ran, so no event of it named its column, is shown under its task group."""
        if self.pipeline_columns is None:
            return None
        return self.task_columns.get(key, group)

    def _scheduler(self, e: SchedulerEvent) -> None:
        kind = e.event_kind
        if kind == "scheduler_job_started" or kind == "config_reloaded":
            self.resources.configure(e.diagnostics or {})
            return
        if kind in ("admission_blocked", "group_capped"):
            self.blocked = e.reason or kind
            return
        if kind == "request_pressure_advisory_skipped":
            return
        if kind == "row_group_checkpointed":
            written = (e.diagnostics or {}).get("rows_written")
            if isinstance(written, int):
                self.rows_written.append((e.captured_at, written))
            return
        if e.task_id is None:
            return
        key = task_key(e.task_id)
        if kind == "ready_enqueued":  # readiness and queueing: one instant (schema 2)
            self.deferred.pop(key, None)
            if e.group is not None:
                self.task_groups[key] = e.group
            group = self._group(self._known_group(key, e.group))
            self.queued[key] = group
            self._move(group, self._column(key, group), None, "queued")
        elif kind == "task_dispatched":  # selected, leased and spawned: one instant
            self._leased(key, e)
            group = self.held.get(e.lease_id) or self._known_group(key, e.group)
            if self.workers.get(key) is None:
                lane = self.resources.group_lanes.get(group)
                if lane is not None and lane.startswith("endpoint:"):
                    lane = None
                worker = self.workers[key] = _Worker(group, self._column(key, group), lane)
                if lane is not None:
                    self.lane_running[lane] += 1
                self._move(group, worker.column, None, "local")
                self.state_counts[("local", None)] += 1
        elif kind == "selected":  # leased, then a stale selection or a failed spawn
            self._leased(key, e)
        elif kind == "stale_selection":
            holder = self.held.get(e.lease_id)
            if holder is not None and key not in self.queued:
                self.queued[key] = holder
                self._move(holder, self._column(key, holder), None, "queued")
            self._released(e)
        elif kind == "worker_spawn_failed":
            self._released(e)
        elif kind in TERMINAL_KINDS:
            self._released(e)
            self._worker_ended(key, e)

    def _leased(self, key: Hashable, e: SchedulerEvent) -> None:
        self.blocked = None
        queued_in = self.queued.pop(key, None)
        if queued_in is not None:
            self._move(queued_in, self._column(key, queued_in), "queued", None)
            self._served(queued_in)
        if e.lease_id is not None:  # a worker without a lease holds no capacity
            group = self.held[e.lease_id] = queued_in or self._known_group(key, e.group)
            self.resources.hold(e.lease_id, group)
            self.peak = max(self.peak, len(self.held))

    def _released(self, e: SchedulerEvent) -> None:
        """The task lease the event carries went back in its instant (schema 2)."""
        if e.lease_id is not None:
            self.held.pop(e.lease_id, None)
            self.resources.release(e.lease_id)
            self.blocked = None  # the next dispatch pass decides again

    def _known_group(self, key: Hashable, group: str | None) -> str:
        if group is not None:
            return group
        known = self.task_groups.get(key)
        if known is not None:
            return known
        worker = self.workers.get(key)
        if worker is not None:
            return worker.group
        return self.queued.get(key, "default")

    def _worker_ended(self, key: Hashable, e: SchedulerEvent) -> None:
        kind = e.event_kind
        worker = self.workers.pop(key, None)
        if worker is not None:
            if worker.lane is not None:
                self.lane_running[worker.lane] -= 1
            self._move(worker.group, worker.column, worker.state, None)
            self.state_counts[(worker.state, worker.state_endpoint)] -= 1
            for rid in worker.requests:
                self.request_owner.pop(rid, None)
        if kind == "task_completed":
            self.completions.append(e.captured_at)
            if self.pipeline_columns is not None:
                self._cell_completed(e)
        elif kind == "retry_deferred":
            self.deferred[key] = self.last_outcome.get(key) == "rate_limited"
        if kind != "retry_deferred":
            self.task_groups.pop(key, None)
        self.last_outcome.pop(key, None)

    def _cell_completed(self, e: SchedulerEvent) -> None:
        """A row is complete when a cell of each of the pipeline's columns has completed."""
        corr = e.correlation
        if corr is None or corr.row is None or corr.column is None:
            return
        done = self.row_cells.setdefault(corr.row, set())
        before = len(done)
        done.add(corr.column)
        if before < len(done) == len(self.pipeline_columns or ()):
            self.rows_completed.append(e.captured_at)

    # -- request stream -----------------------------------------------------------------

    def _endpoint(self, e: RequestEvent) -> _Endpoint:
        key = endpoint_key(e)
        ep = self.endpoints.get(key)
        if ep is None:
            provider, model, domain = key
            ep = self.endpoints[key] = _Endpoint(
                EndpointSeries(
                    name=f"{provider}/{model}" + ("" if domain == "chat" else f":{domain}"),
                    provider=provider,
                    model_id=model,
                    domain=domain,
                )
            )
        return ep

    def _request(self, e: RequestEvent) -> None:
        kind = e.event_kind
        ep = self._endpoint(e)
        t = e.captured_at
        if kind == "request_resource_registered":
            self._registered(ep, e)
        elif kind == "request_wait_started":
            ep.waiting += 1
            self._set_request(e, "wait", ep)
        elif kind in ("request_wait_completed", "request_wait_timeout", "request_wait_cancelled"):
            ep.waiting = max(0, ep.waiting - 1)
            if kind != "request_wait_completed":
                self._set_request(e, None, ep)
        elif kind == "request_lease_acquired":
            ep.leases.add(e.lease_id)
            if e.limit is not None:
                ep.limit = e.limit
        elif kind == "request_lease_released":
            ep.leases.discard(e.lease_id)
            if e.limit is not None:
                ep.limit = e.limit
        elif kind == "model_request_started":  # holds its lease (acquired now, or before)
            corr = e.correlation
            if corr is not None and corr.column is not None and self.pipeline_columns is not None:
                self.column_endpoints.setdefault(corr.column, {})[endpoint_key(e)] = None
            ep.leases.add(e.lease_id)
            if e.limit is not None:
                ep.limit = e.limit
            self._set_request(e, "call", ep)
        elif kind == "model_request_completed":  # and the lease goes back in this instant
            ep.leases.discard(e.lease_id)
            self._completed(e, ep)
        elif kind == "request_acquire_denied":
            self._set_request(e, None, ep)
        elif kind == "request_rate_limited":
            ep.rate_limited_ever = True
            ep.series.rate_limits.append(t)
            until = (e.diagnostics or {}).get("cooldown_until")
            if isinstance(until, (int, float)) and until > t:
                ep.cooldown_until = max(ep.cooldown_until, float(until))
                ep.series.cooldowns.append((t, float(until)))
        else:
            self._limit_event(ep, e)
        ep.record(t)

    def _registered(self, ep: _Endpoint, e: RequestEvent) -> None:
        diagnostics = e.diagnostics or {}
        aliases = diagnostics.get("aliases")
        if isinstance(aliases, list) and aliases:
            name = str(aliases[0])
            domain = ep.series.domain
            ep.series.name = name if domain == "chat" else f"{name}:{domain}"
        cap = diagnostics.get("static_cap")
        if isinstance(cap, int):
            ep.series.static_cap = cap
        window = diagnostics.get("rate_window")
        if isinstance(window, dict):
            ep.series.rate_window = window
        if e.limit is not None:
            ep.limit = e.limit

    def _limit_event(self, ep: _Endpoint, e: RequestEvent) -> None:
        kind = e.event_kind
        t = e.captured_at
        if kind == "request_limit_decreased":
            if e.limit is not None:
                ep.series.decreases.append((t, e.previous_limit or 0, e.limit))
                ep.limit = e.limit
        elif kind == "request_limit_increased":
            ep.series.increases += 1
            if e.limit is not None:
                ep.limit = e.limit
        elif kind in ("request_soft_ceiling_recovered", "request_fully_recovered"):
            ep.series.recoveries.append((t, kind.removeprefix("request_")))
            if kind == "request_fully_recovered":
                ep.rate_limited_ever = False
        elif (
            kind == "request_effective_cap_changed"
            and e.reason == "reconfigured"
            and e.limit is not None
        ):
            ep.series.static_cap = e.limit

    def _completed(self, e: RequestEvent, ep: _Endpoint) -> None:
        owner = self._owner(e)
        if owner is not None:
            self.last_outcome[owner] = e.outcome
        if e.call is not None and e.call.will_retry:
            state = "backoff_rate_limited" if e.outcome == "rate_limited" else "backoff"
            self._set_request(e, state, ep)
        else:
            self._set_request(e, None, ep)

    def _owner(self, e: RequestEvent) -> Hashable | None:
        corr = e.correlation
        if corr is None or corr.task_id is None:
            return None
        return task_key(corr.task_id)

    def _set_request(self, e: RequestEvent, state: str | None, ep: _Endpoint) -> None:
        """Move one logical request to ``state`` (``None``: it ended) and its worker with it."""
        rid = e.request_id
        owner = self._owner(e)
        if rid is None or owner is None:
            return
        worker = self.workers.get(owner)
        if worker is None:
            return
        if state is None:
            worker.requests.pop(rid, None)
        else:
            worker.requests[rid] = (state, ep.series.name)
        self._restate(worker)

    def _restate(self, worker: _Worker) -> None:
        state: str = "local"
        endpoint: str | None = None
        for candidate, name in worker.requests.values():
            if _PRIORITY[candidate] < _PRIORITY[state]:
                state, endpoint = candidate, name
        if (state, endpoint) != (worker.state, worker.state_endpoint):
            self.state_counts[(worker.state, worker.state_endpoint)] -= 1
            self.state_counts[(state, endpoint)] += 1
            self._move(worker.group, worker.column, worker.state, state)
            worker.state, worker.state_endpoint = state, endpoint


def _record_series(
    t: float, series: dict[str, GroupSeries], counts: Counter[tuple[str, str]], dirty: set[str]
) -> None:
    """Append (or, in the same instant, overwrite) a sample of every changed series.

    Once or twice per event of the run: ``counts.get`` rather than ``counts[...]`` (a
    Counter's missing key goes through a Python ``__missing__``)."""
    get = counts.get
    for name in dirty:
        s = series[name]
        if s.times and s.times[-1] == t:
            for state in WORKER_STATES:
                s.counts[state][-1] = get((name, state), 0)
            continue
        s.times.append(t)
        for state in WORKER_STATES:
            s.counts[state].append(get((name, state), 0))
    dirty.clear()


def _pipeline_columns(events: Sequence[AnyEvent]) -> list[str] | None:
    """The columns a pipeline run declared (``pipeline_started``); ``None``: not a pipeline."""
    for e in events:
        if type(e) is SchedulerEvent and e.event_kind == "pipeline_started":
            columns = (e.diagnostics or {}).get("columns")
            if isinstance(columns, dict) and columns:
                return [str(name) for name in columns]
    return None


def _row_group_settings(events: Sequence[AnyEvent]) -> dict[str, int]:
    """``records``, ``buffer_size`` and ``max_concurrent_row_groups`` as the run's
    ``pipeline_started`` gave them (those it gave as integers)."""
    for e in events:
        if type(e) is SchedulerEvent and e.event_kind == "pipeline_started":
            found = e.diagnostics or {}
            keys = ("records", "buffer_size", "max_concurrent_row_groups")
            return {key: found[key] for key in keys if isinstance(found.get(key), int)}
    return {}


def _task_columns(events: Sequence[AnyEvent]) -> dict[Hashable, str]:
    """Task key -> pipeline column, from the cell correlation its events carry (a cell's
    readiness and dispatch come before any of them, so this is a pass of its own)."""
    out: dict[Hashable, str] = {}
    for e in events:
        corr = e.correlation
        if corr is not None and corr.column is not None and corr.task_id is not None:
            out.setdefault(task_key(corr.task_id), corr.column)
    return out


def _first_ready_times(events: Sequence[AnyEvent]) -> list[float]:
    """When each task first became ready, sorted (tasks still to come at time t are those
    whose first readiness is after t)."""
    seen: dict[Hashable, float] = {}
    for e in events:
        if type(e) is SchedulerEvent and e.event_kind == "ready_enqueued":
            seen.setdefault(task_key(e.task_id), e.captured_at)
    return sorted(seen.values())


def run_start(events: Sequence[AnyEvent]) -> float:
    """When a run's events start: its ``scheduler_job_started``, else its first event."""
    for e in events:
        if e.event_kind == "scheduler_job_started":
            return e.captured_at
    return events[0].captured_at if events else 0.0


def sweep(events: Sequence[AnyEvent]) -> RunOccupancy:
    """Label every instant of one run with the layer that held it back (see module doc)."""
    return OccupancySweep(events).run()
