"""``CorrelatedRuntimeView``: both event streams of one run, joined and explained.

Build it from the events of a run (an ``InMemoryEventSink``'s list, or a JSON Lines file
written by ``JsonLinesEventSink``). It gives per-task timelines, per-layer waits, per-endpoint
summaries, the run-level facts the quality bars are about (hidden waiters, ready-idle gaps,
the active-capacity integral) and the verdict: which layer held the run back.

The view is computed lazily and cached: build it once per run and ask it many questions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from .._internal.cpu_time import LOOP_CPU, PERF_COUNTER, PROCESS_CPU
from ..errors import ConfigurationError
from ..events.reading import read_event_file
from ..events.schema import (
    TASK_LEASE_RELEASING_KINDS,
    AnyEvent,
    RequestEvent,
    SchedulerEvent,
    per_task_events,
)
from .occupancy import sweep
from .series import RunOccupancy
from .timeline import (
    AttemptTimeline,
    RequestTimeline,
    TaskExecution,
    TaskTimeline,
    TimelineBuilder,
    build_timelines,
    task_key,
)
from .verdict import EndpointSummary, Percentiles, Verdict, VerdictInputs, decide


def split_runs(events: Iterable[AnyEvent]) -> list[list[AnyEvent]]:
    """Cut a stream (e.g. a file appended to by a resumed run) into runs.

    A data-generation run starts at its ``pipeline_started`` and lasts until the next one:
    every scheduler job in between is part of it (files written before the runner reported
    one job per run have one per 50,000-cell segment). In a stream without
    ``pipeline_started`` a run starts at its ``scheduler_job_started``. Events before the
    first start (an endpoint registered before the scheduler started) belong to the first run.
    """
    runs: list[list[AnyEvent]] = []
    current: list[AnyEvent] = []
    started = pipeline = False
    for event in events:
        kind = event.event_kind
        if kind == "pipeline_started" or (kind == "scheduler_job_started" and not pipeline):
            if started:
                runs.append(current)
                current = []
            started = True
            pipeline = kind == "pipeline_started"
        current.append(event)
    if current:
        runs.append(current)
    return runs


class CorrelatedRuntimeView:
    """Per-task timelines, per-layer waits and the verdict of one run.

    ``events`` are in emission order (as a sink received them). If they hold several runs
    (a file appended to by resumed runs), ``run`` picks one (default: the last); ``runs``
    says how many there were.
    """

    def __init__(
        self,
        events: Sequence[AnyEvent],
        *,
        run: int = -1,
        source: str | None = None,
        torn_tail_bytes: int = 0,
    ) -> None:
        runs = split_runs(events)
        self.runs = len(runs)
        if runs and not -len(runs) <= run < len(runs):
            raise ConfigurationError(
                "run",
                f"got {run}, but the events hold {len(runs)} run(s)",
                f"use 0 to {len(runs) - 1} (the first to the last), or -1 for the last",
            )
        self.run_number = run % len(runs) + 1 if runs else 0
        """Which run of the source this view is, counting from 1 (0: no events)."""
        # One ready_enqueued per task (a schema-3 frontier event is split): what the timelines
        # and the sweep follow.
        self.events: list[AnyEvent] = list(per_task_events(runs[run])) if runs else []
        self.source = source
        self.torn_tail_bytes = torn_tail_bytes

    @classmethod
    def from_file(cls, path: str | Path, *, run: int = -1) -> CorrelatedRuntimeView:
        """Read a JSON Lines event file, or a run directory's (a torn last line is skipped and
        remembered)."""
        found = read_event_file(path)
        return cls(found.events, run=run, source=found.path, torn_tail_bytes=found.torn_tail_bytes)

    # -- joined timelines -----------------------------------------------------------------

    @functools.cached_property
    def _builder(self) -> TimelineBuilder:
        return build_timelines(self.events)

    @functools.cached_property
    def executions(self) -> list[TaskExecution]:
        """Every task execution (one per attempt of a task), in spawn order."""
        return self._builder.executions()

    def row_executions(self, row: int) -> list[TaskExecution]:
        """Every execution of a pipeline row's cells (each column's attempts), in the order
        they became ready. Raises :class:`ConfigurationError` when the run has no cell of
        ``row`` (naming the rows it has)."""
        found = [e for e in self.executions if e.row == row]
        if not found:
            rows = [e.row for e in self.executions if e.row is not None]
            have = f"rows {min(rows)} to {max(rows)}" if rows else "no pipeline rows"
            raise ConfigurationError(
                "row",
                f"the run has no cell of row {row} ({have})",
                "pick a row the run made (a row number as in the dataset, from 0)",
            )
        return sorted(found, key=lambda e: (e.ready_enqueued_at or 0.0, e.attempt))

    @functools.cached_property
    def tasks(self) -> list[TaskTimeline]:
        """Every task that became ready, with its executions."""
        return self._builder.tasks()

    @functools.cached_property
    def requests(self) -> list[RequestTimeline]:
        """Every logical model request, those of tasks first, then any made outside tasks."""
        out = [r for e in self.executions for r in e.requests]
        out.extend(self._builder.orphan_requests())
        return out

    @functools.cached_property
    def occupancy(self) -> RunOccupancy:
        """The sweep: every instant labelled with the layer that held the run back."""
        return sweep(self.events)

    @property
    def run_id(self) -> str | None:
        for e in self.events:
            if e.event_kind == "scheduler_job_started":
                run_id = (
                    (e.diagnostics or {}).get("run_id") if isinstance(e, SchedulerEvent) else None
                )
                return run_id if isinstance(run_id, str) else None
        return None

    @property
    def duration(self) -> float:
        return self.occupancy.duration

    # -- quality-bar facts ----------------------------------------------------------------

    @functools.cached_property
    def hidden_waiters(self) -> int:
        """Workers spawned, or model calls started, without holding their lease (must be 0).

        In schema 2 a spawn and a call start carry the lease they hold (taken in the same
        instant, or before for a call whose controller reports to the same stream): a
        missing lease, or a lease already returned, is a hidden waiter.
        """
        returned: set[tuple[object, int | None]] = set()
        hidden = 0
        for e in self.events:
            kind = e.event_kind
            if kind == "task_dispatched":
                hidden += e.lease_id is None or ("task", e.lease_id) in returned
            elif kind in TASK_LEASE_RELEASING_KINDS and e.lease_id is not None:
                returned.add(("task", e.lease_id))
            elif isinstance(e, RequestEvent):
                resource = (e.provider, e.model_id, e.domain)
                if kind == "model_request_started":
                    hidden += e.lease_id is None or (resource, e.lease_id) in returned
                elif kind in ("model_request_completed", "request_lease_released"):
                    returned.add((resource, e.lease_id))
        return hidden

    @property
    def ready_idle_seconds(self) -> float | None:
        """Time when work was ready and task capacity free yet nothing was admitted;
        ``None`` when the events do not say which resources the queued tasks needed."""
        return self.occupancy.ready_idle_seconds

    @property
    def active_capacity_seconds(self) -> float:
        """Integral of task leases held over the run (lease-seconds)."""
        return self.occupancy.active_capacity_seconds

    @functools.cached_property
    def _cpu_shares(self) -> tuple[float | None, float | None]:
        return cpu_shares(self.events)

    @functools.cached_property
    def run_status(self) -> str | None:
        """How a data-generation run ended (``success``, ``failure``, ``empty``,
        ``interrupted``: its ``scheduler_job_completed`` event's status), ``unfinished`` when
        the run started but that event is missing (killed, or still going), ``None`` for a
        run that says neither (a scheduler run outside a pipeline)."""
        started = False
        status: str | None = None
        for e in self.events:
            kind = e.event_kind
            if kind == "pipeline_started":
                started = True
            elif kind == "scheduler_job_completed" and started:
                value = (e.diagnostics or {}).get("status")
                if isinstance(value, str):
                    status = value
        if status is None and started:
            return "unfinished"
        return status

    @property
    def cpu_busy_share(self) -> float | None:
        """CPU seconds of the whole process over the run's wall seconds (worker threads
        count, so it can exceed 1 on several cores); ``None`` when not measured."""
        return self._cpu_shares[0]

    @property
    def loop_cpu_share(self) -> float | None:
        """The same for the event loop's thread alone; ``None`` when not measured."""
        return self._cpu_shares[1]

    # -- waits and endpoints --------------------------------------------------------------

    def layer_waits(self) -> dict[str, Percentiles]:
        """Seconds per task execution (or per attempt) spent at each layer."""
        executions = self.executions
        attempts: list[AttemptTimeline] = [a for r in self.requests for a in r.attempts]
        local = []
        for e in executions:
            if e.worker_spawned_at is None or e.ended_at is None:
                continue
            busy = sum(
                r.provider_seconds + r.admission_wait + r.backoff_seconds for r in e.requests
            )
            spent = e.ended_at - e.worker_spawned_at - busy
            local.append(spent if spent > 1e-9 else 0.0)  # float dust is not local work
        return {
            "ready_queue_and_task_admission": Percentiles.of([e.queue_wait for e in executions]),
            "request_admission": Percentiles.of(
                [a.admission_wait for a in attempts if a.wait_started_at is not None]
            ),
            "retry_backoff": Percentiles.of(
                [r.backoff_seconds for r in self.requests if len(r.attempts) > 1]
            ),
            "provider_latency": Percentiles.of([a.provider_seconds for a in attempts]),
            "worker_local": Percentiles.of(local),
            "task_retry_wait": Percentiles.of(self._task_retry_waits()),
        }

    def _task_retry_waits(self) -> list[float]:
        waits = []
        for task in self.tasks:
            for before, after in zip(task.executions, task.executions[1:], strict=False):
                if before.task_completed_at is not None and after.dependency_ready_at is not None:
                    waits.append(max(0.0, after.dependency_ready_at - before.task_completed_at))
        return waits

    @functools.cached_property
    def endpoints(self) -> dict[str, EndpointSummary]:
        """Per-endpoint summary: outcomes, rate limits, limits, measured capacity, latency."""
        occupancy = self.occupancy
        by_key: dict[tuple[str, str, str], list[RequestTimeline]] = {}
        for request in self.requests:
            by_key.setdefault(request.endpoint, []).append(request)
        column_of = {id(r): e.column for e in self.executions for r in e.requests if e.column}
        out = {}
        for series in occupancy.endpoints.values():
            key = (series.provider, series.model_id, series.domain)
            requests = by_key.get(key, [])
            attempts = [a for r in requests for a in r.attempts]
            outcomes: dict[str, int] = {}
            for a in attempts:
                if a.outcome is not None:
                    outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
            limits = [v for v in series.limit if v is not None]
            after_first = (
                [
                    v
                    for t, v in zip(series.times, series.limit, strict=True)
                    if v is not None and t >= series.rate_limits[0]
                ]
                if series.rate_limits
                else limits
            )
            duration = occupancy.duration or 1.0
            peak, sustained = _concurrency(
                [(a.started_at, a.completed_at) for a in attempts if a.outcome == "success"]
            )
            out[series.name] = EndpointSummary(
                name=series.name,
                provider=series.provider,
                model_id=series.model_id,
                domain=series.domain,
                static_cap=series.static_cap,
                rate_window=series.rate_window,
                requests=len(requests),
                attempts=len(attempts),
                outcomes=outcomes,
                rate_limits=len(series.rate_limits),
                limit_decreases=len(series.decreases),
                limit_increases=series.increases,
                recoveries=len(series.recoveries),
                rate_limited_share=series.rate_limited_seconds / duration,
                peak_concurrent_successes=peak,
                sustained_concurrent_successes=sustained,
                **_token_totals(requests, column_of),
                mean_in_flight=series.in_flight_seconds / duration,
                lowest_limit=min(after_first) if after_first else None,
                final_limit=limits[-1] if limits else None,
                latency=Percentiles.of(
                    [a.provider_seconds for a in attempts if a.outcome == "success"]
                ),
            )
        return out

    @functools.cached_property
    def chain_depth(self) -> int:
        """Longest dependency chain: a pipeline's column DAG when the run says it
        (``pipeline_started``), else estimated from readiness following completions."""
        for e in self.events:
            if isinstance(e, SchedulerEvent) and e.event_kind == "pipeline_started":
                columns = (e.diagnostics or {}).get("columns")
                if isinstance(columns, dict) and columns:
                    return _longest_chain(columns)
        depth: dict[Hashable, int] = {}
        last_done: tuple[Hashable, float] | None = None
        for e in self.events:
            if not isinstance(e, SchedulerEvent) or e.task_id is None:
                continue
            key = task_key(e.task_id)
            if e.event_kind == "task_completed":
                last_done = (key, e.captured_at)
            elif e.event_kind == "ready_enqueued" and key not in depth:
                parent = last_done[0] if last_done and last_done[1] == e.captured_at else None
                depth[key] = depth.get(parent, 0) + 1 if parent is not None else 1
        return max(depth.values(), default=0)

    def failures(self) -> dict[str, int]:
        """Failed attempts by outcome, and tasks by terminal reason class (``task_failed:x
        (ValueError)``: a pipeline cell's column and exception class)."""
        return dict(self._failures[0])

    def failure_examples(self) -> dict[str, str]:
        """The first reason of each task class of :meth:`failures` (at most 200 characters),
        e.g. ``x: ValueError: bad input for row``."""
        return dict(self._failures[1])

    @functools.cached_property
    def _failures(self) -> tuple[dict[str, int], dict[str, str]]:
        out: dict[str, int] = {}
        examples: dict[str, str] = {}
        for request in self.requests:
            for attempt in request.attempts:
                if attempt.outcome not in (None, "success"):
                    key = f"attempt:{attempt.outcome}"
                    out[key] = out.get(key, 0) + 1
            if request.outcome is not None and request.outcome.startswith("admission_"):
                key = f"request:{request.outcome}"
                out[key] = out.get(key, 0) + 1
        for e in self.executions:
            if e.status in ("failed", "retry_deferred", "cancelled"):
                key = f"task_{e.status}:{_reason_class(e.reason)}"
                out[key] = out.get(key, 0) + 1
                if e.reason and key not in examples:
                    reason = e.reason
                    examples[key] = reason if len(reason) <= 200 else reason[:197] + "..."
        return dict(sorted(out.items(), key=lambda item: -item[1])), examples

    # -- the verdict ----------------------------------------------------------------------

    def verdict(self) -> Verdict:
        """Which layer held the run back, its share of the run and the one setting to change."""
        return decide(
            self.occupancy,
            VerdictInputs(
                endpoints=self.endpoints,
                chain_depth=self.chain_depth,
                tasks=len(self.tasks),
                queue_wait=Percentiles.of([e.queue_wait for e in self.executions]),
                pipeline=self.occupancy.rows is not None,  # the sweep found pipeline_started
                cpu_busy_share=self.cpu_busy_share,
                loop_cpu_share=self.loop_cpu_share,
            ),
        )


def cpu_shares(events: Sequence[AnyEvent]) -> tuple[float | None, float | None]:
    """CPU seconds over wall seconds between the run's ``scheduler_job_started`` and its last
    ``scheduler_job_completed``: of the whole process, and of the event loop's thread.

    ``None`` when the job events carry no CPU readings (a file from before they did), or when
    the run's clock was not real time: on a virtual clock (``MockClock``) the events' times
    disagree with the real-time reading taken beside the CPU's, and a CPU share of virtual
    seconds means nothing. Real runs agree to microseconds (trio's clock reads the same
    counter); the tolerance only absorbs the time between the two readings.
    """
    started = next((e for e in events if e.event_kind == "scheduler_job_started"), None)
    ended = next((e for e in reversed(events) if e.event_kind == "scheduler_job_completed"), None)
    if not isinstance(started, SchedulerEvent) or not isinstance(ended, SchedulerEvent):
        return None, None
    before, after = started.diagnostics or {}, ended.diagnostics or {}

    def elapsed(key: str) -> float | None:
        first, last = before.get(key), after.get(key)
        if not (isinstance(first, int | float) and isinstance(last, int | float)):
            return None
        seconds = float(last - first)
        return seconds if seconds >= 0 else None

    wall = ended.captured_at - started.captured_at
    real = elapsed(PERF_COUNTER)
    cpu = elapsed(PROCESS_CPU)
    if wall <= 0 or real is None or cpu is None or abs(real - wall) > 1e-3 + 0.01 * real:
        return None, None
    loop = elapsed(LOOP_CPU)
    return cpu / wall, (loop / wall if loop is not None else None)


_EXHAUSTED = re.compile(r"attempts exhausted \(\d+\): (.*)", re.DOTALL)
_EXCEPTION_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*(Error|Exception|Exceeded|Timeout|Failure)")


def _reason_class(reason: str | None) -> str:
    """A failure reason's bounded class: its first part (a pipeline cell's column, or an
    exception class), with the exception class after a column when there is one:
    ``x: ValueError: bad input`` -> ``x (ValueError)``; ``RuntimeError: boom`` ->
    ``RuntimeError``."""
    exhausted = _EXHAUSTED.match(reason or "")
    if exhausted is not None:
        return f"attempts exhausted: {_reason_class(exhausted.group(1))}"
    parts = (reason or "").split(": ", 2)
    head = parts[0].split(":", 1)[0].strip() or "unknown"
    if len(parts) > 1 and _EXCEPTION_NAME.fullmatch(parts[1].strip()):
        return f"{head} ({parts[1].strip()})"
    return head


def _token_totals(requests: list[RequestTimeline], column_of: dict[int, str]) -> dict[str, Any]:
    """An endpoint's token usage, in all and per column (``EndpointSummary`` fields)."""
    total_in = total_out = 0
    by_column: dict[str, list[int]] = {}
    for r in requests:
        tokens_in, tokens_out = r.input_tokens or 0, r.output_tokens or 0
        total_in += tokens_in
        total_out += tokens_out
        column = column_of.get(id(r))
        if column is not None:
            row = by_column.setdefault(column, [0, 0, 0])
            row[0] += 1
            row[1] += tokens_in
            row[2] += tokens_out
    return {"input_tokens": total_in, "output_tokens": total_out, "tokens_by_column": by_column}


SUSTAINED_SHARE: Final = 0.01
"""A concurrency counts as sustained when held (or exceeded) for this share of the busy time."""


def _concurrency(intervals: list[tuple[float | None, float | None]]) -> tuple[int, int]:
    """The most intervals open at one instant (an end at t closes before a start at t opens),
    and the most held for at least :data:`SUSTAINED_SHARE` of the time any is open."""
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        if start is None or end is None:
            continue
        points.append((start, 1))
        points.append((end, -1))
    points.sort(key=lambda p: (p[0], p[1]))
    peak = current = 0
    held: dict[int, float] = {}  # seconds spent at each level above 0
    last = points[0][0] if points else 0.0
    for t, delta in points:
        if current:
            held[current] = held.get(current, 0.0) + (t - last)
        last = t
        current += delta
        peak = max(peak, current)
    busy = sum(held.values())
    if busy <= 0.0:  # instantaneous calls (a virtual clock at zero latency): the peak
        return peak, peak
    at_least = 0.0
    for level in sorted(held, reverse=True):
        at_least += held[level]
        if at_least >= SUSTAINED_SHARE * busy:
            return peak, level
    return peak, peak


def _longest_chain(columns: dict[str, Any]) -> int:
    """Columns on the longest dependency path of a pipeline (``{name: [dependencies]}``)."""
    depth: dict[str, int] = {}

    def visit(name: str, seen: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        deps = columns.get(name) or []
        if name in seen or not isinstance(deps, list):
            return 1  # a malformed file: never loop
        depth[name] = 1 + max((visit(str(d), seen | {name}) for d in deps), default=0)
        return depth[name]

    return max(visit(name, frozenset()) for name in columns)
