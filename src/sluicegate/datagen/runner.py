"""One pipeline run: the run directory, the request layer, the tracker on the scheduler.

:class:`PipelineRun` wires the layers for :meth:`Pipeline.arun`:

- the run directory (new, resumed, refused when the pipeline changed, or overwritten);
- the request layer from the endpoints (:func:`.endpoints.build_request_stack`), one request
  group per concrete endpoint;
- task admission with one resource per endpoint (sized from its cap), one for worker threads
  and a shared ``submission`` resource; the :class:`CellTracker` lanes match them, so cells
  waiting on one endpoint never hold the task slots of another;
- the scheduler, run in *segments* of at most ``_SEGMENT_TASKS`` released cells: the scheduler
  keeps one outcome record per task it ran, so a single scheduler over a million cells would
  grow without bound; one per segment keeps memory flat (a segment boundary drains the
  running cells once);
- the checkpoint writer task, run control (stop, cancel, error-rate stop), progress and the
  final manifest, capacity plan and :class:`RunResult`.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import uuid
from collections.abc import Hashable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio
import trio.testing

from ..events import EventSink, JsonLinesEventSink, SchedulerEvent, correlation_scope
from ..events.emitter import EventEmitter
from ..requests import ModelRequest, ModelResponse, RequestAdmissionConfig
from ..scheduling import (
    AsyncTaskScheduler,
    RetryPolicy,
    SchedulableTask,
    TaskAdmissionController,
    TaskGroupSpec,
    TaskOutcome,
)
from .capacity import AsyncCapacityPlan, CapacityValue, ObservedMaxima
from .cells import CellWorker, ColumnRuntime, ErrorRateMonitor
from .checkpoints import CheckpointWriter
from .errors import PipelineChangedError
from .output import require_format
from .progress import (
    CheckpointProgress,
    EndpointSnapshot,
    ProgressReporter,
    RunControl,
    RunPhase,
    RunSnapshot,
)
from .result import RunResult, RunStatus
from .rowgroups import ROW_FAILED, RowGroupPlanner, RowGroupState
from .rundir import RowGroupCheckpoint, RunDirectory, RunManifest
from .settings import RunSettings
from .tracker import CellTracker, Lane

if TYPE_CHECKING:
    from .endpoints import RequestStack
    from .pipeline import Pipeline

_SEGMENT_TASKS: Final = 50_000


# The tracker bounds attempts itself; the scheduler must never drop a task on its own count.
_TRACKER_RETRIES: Final = RetryPolicy(max_attempts=1_000_000_000, initial_backoff=0.0)


def _never_retryable(_: BaseException) -> bool:
    return False


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class _SchedulerStream:
    """Numbers scheduler events across segments (and the run's own events) as one stream."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.sequence = 0

    def emit(self, event: Any) -> None:
        if isinstance(event, SchedulerEvent):
            self.sequence += 1
            event = msgspec.structs.replace(event, sequence=self.sequence)
        self.sink.emit(event)


class _Segment:
    """The tracker as one scheduler sees it: at most ``budget`` released cells, then finished
    once they have completed."""

    def __init__(self, tracker: CellTracker, budget: int) -> None:
        self.tracker = tracker
        self.budget = budget
        self.released = 0
        self.completed = 0

    def ready_frontier(self) -> Sequence[SchedulableTask]:
        if self.released >= self.budget:
            return ()
        tasks = self.tracker.ready_frontier()
        self.released += len(tasks)
        return tasks

    def mark_enqueued(self, task_ids: Iterable[Hashable]) -> None:
        self.tracker.mark_enqueued(task_ids)

    def mark_complete(self, task: SchedulableTask, outcome: TaskOutcome) -> Sequence[Hashable]:
        self.completed += 1
        return self.tracker.mark_complete(task, outcome)

    @property
    def is_finished(self) -> bool:
        if self.released >= self.budget:
            return self.completed >= self.released
        return self.tracker.is_finished

    def next_ready_at(self) -> float | None:
        return None if self.released >= self.budget else self.tracker.next_ready_at()


class PipelineRun:
    """One run of a pipeline (see the module docstring). Use :meth:`Pipeline.arun`."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: RunSettings,
        *,
        output_dir: str | None,
        overwrite: bool,
        force: bool,
        control: RunControl | None,
        progress: ProgressReporter | None,
        events: EventSink | bool | None,
        run_id: str | None,
        request_config: RequestAdmissionConfig | None,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self._output_dir = output_dir
        self._overwrite = overwrite
        self._force = force
        self._control = control
        self._progress = progress
        self._events_option = events
        self._run_id = run_id
        self._request_config = request_config
        self._phase: RunPhase = "starting"
        self._stop_reason: str | None = None
        self._stop_grace: tuple[float | None] | None = None
        self._cancelled = False
        self._cancel_scope = trio.CancelScope()
        self._scheduler: AsyncTaskScheduler | None = None
        self._held: dict[int, RowGroupState] = {}
        self._live_failures: dict[str, int] = {}
        self._live_filtered = 0
        self._live_failed = 0
        self._started = 0.0
        self._owned_sink: JsonLinesEventSink | None = None
        self._resumed = False
        self._failure_examples: dict[str, str] = {}
        columns = pipeline.columns
        self._names = tuple(c.name for c in columns)
        self._output_columns = tuple((c.name, i) for i, c in enumerate(columns) if not c.drop)
        self._decoders = {
            c.name: msgspec.json.Decoder(c.value_type if c.value_type is not None else Any)
            for c in columns
        }

    # -- control (RunControl calls these) --------------------------------------------------

    def request_stop(self, grace_period: float | None, reason: str | None) -> None:
        """Stop admitting; running cells get ``grace_period`` seconds (``None``: no limit)."""
        if self._stop_reason is None:
            self._stop_reason = reason or "stopped"
        if self._phase == "running":
            self._phase = "stopping"
        tracker = getattr(self, "tracker", None)
        if tracker is not None:
            tracker.stop()
        self._stop_grace = (grace_period,)
        if self._scheduler is not None:
            self._scheduler.shutdown(grace_period)

    def request_cancel(self) -> None:
        """Cancel running cells now (finished work is still written)."""
        self._cancelled = True
        self.request_stop(0.0, None)
        self._cancel_scope.cancel()

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Run to the end (or a stop) and return the result; see :meth:`Pipeline.arun`."""
        from .endpoints import build_request_stack

        settings = self.settings
        require_format(settings.output_format)
        io_inline = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        self.rundir = self._open_directory(io_inline)
        self.manifest = self._open_manifest()
        events_sink = self._events_sink()
        self._stream = _SchedulerStream(events_sink) if events_sink is not None else None
        self._emitter = EventEmitter(self._stream)
        self.stack: RequestStack = build_request_stack(
            self.pipeline.endpoints,
            providers=self.pipeline.providers,
            seed=settings.seed,
            sink=events_sink,
            config=self._request_config,
            max_attempts=settings.request_max_attempts,
        )
        self._request_group = {a: str(k) for a, k in self.stack.endpoint_of_alias.items()}
        try:
            self._build(io_inline)
            self._started = trio.current_time()
            await self.rundir.run_io(self.rundir.write_capacity_plan, self._capacity_plan(False))
            if self._control is not None:
                self._control.bind(self)
            self._phase = "stopping" if self._stop_reason else "running"
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.writer.run)
                    with self._cancel_scope:
                        await self._segments()
                    self.writer.close()
            except BaseException as exc:
                cancelled = isinstance(exc, (trio.Cancelled, KeyboardInterrupt)) or (
                    isinstance(exc, BaseExceptionGroup)
                    and exc.split((trio.Cancelled, KeyboardInterrupt))[1] is None
                )
                await self._finish(interrupted=cancelled, error=None if cancelled else exc)
                raise
            return await self._finish(interrupted=False, error=None)
        finally:
            with trio.CancelScope(shield=True):
                await self.stack.aclose()
            if self._owned_sink is not None:
                self._owned_sink.close()

    def _open_directory(self, io_inline: bool) -> RunDirectory:
        path = self._output_dir
        if path is None:
            path = tempfile.mkdtemp(prefix=f"sluicegate-{self.pipeline.name}-")
        rundir = RunDirectory(path, io_inline=io_inline)
        if self._overwrite and rundir.path.exists():
            for child in ("data", "journal"):
                shutil.rmtree(rundir.path / child, ignore_errors=True)
            for name in ("manifest.json", "capacity_plan.json", "events.jsonl"):
                (rundir.path / name).unlink(missing_ok=True)
        rundir.prepare()
        return rundir

    def _open_manifest(self) -> RunManifest:
        from .pipeline import fingerprint_of

        parts = self.pipeline.fingerprint_parts(self.settings)
        fingerprint = fingerprint_of(parts)
        existing = self.rundir.load_manifest()
        description = self.pipeline.describe()
        if existing is not None:
            if existing.fingerprint != fingerprint and not self._force:
                raise PipelineChangedError(
                    str(self.rundir.path), _changes(existing, parts, description, self.settings)
                )
            self._resumed = True
            kept = [c for c in existing.row_groups if self.rundir.verify_part(c)]
            if self._force:  # only groups whose rows are the same rows may be kept
                planner = self._planner({})
                kept = [
                    c
                    for c in kept
                    if (c.row_start, c.row_stop - c.row_start) == planner.group_range(c.index)
                ]
            existing.row_groups = kept
            existing.fingerprint = fingerprint
            existing.fingerprint_parts = parts
            existing.pipeline = description
            existing.settings = msgspec.to_builtins(self.settings.output_settings())
            existing.status = "running"
            existing.updated_at = _utc_now()
            self.run_id = existing.run_id
            return existing
        self.run_id = self._run_id or uuid.uuid4().hex[:12]
        now = _utc_now()
        manifest = RunManifest(
            run_id=self.run_id,
            pipeline_name=self.pipeline.name,
            fingerprint=fingerprint,
            fingerprint_parts=parts,
            pipeline=description,
            settings=msgspec.to_builtins(self.settings.output_settings()),
            created_at=now,
            updated_at=now,
        )
        self.rundir.write_manifest(manifest)
        return manifest

    def _events_sink(self) -> EventSink | None:
        option = self._events_option
        if option is True:
            self._owned_sink = JsonLinesEventSink(self.rundir.events_path)
            return self._owned_sink
        if option is None or option is False:
            return None
        return option

    def _planner(self, completed: Mapping[int, int]) -> RowGroupPlanner:
        s = self.settings
        return RowGroupPlanner(
            s.records,
            s.buffer_size,
            exact=s.exact,
            max_attempts_factor=s.max_attempts_factor,
            completed=completed,
        )

    def _build(self, io_inline: bool) -> None:
        """Lanes, task admission, the tracker, the worker and the writer."""
        s = self.settings
        pipeline = self.pipeline
        columns = pipeline.columns
        stack = self.stack
        lanes: dict[str, Lane] = {}
        limits: dict[str, int] = {}
        lane_of: list[int] = []
        groups: list[TaskGroupSpec] = []
        runtimes: list[ColumnRuntime] = []
        thread_limiter = trio.CapacityLimiter(s.local_threads)
        for index, column in enumerate(columns):
            identity: tuple[str | int, ...] = (column.name,)
            if column.model is not None and column.scheduling.kind != "local":
                key = stack.endpoint_of_alias[column.model]
                name = f"endpoint:{key}"
                window = stack.static_caps[key]
                identity = (key.provider, key.model_id)
            elif column.threaded and not io_inline:
                name, window = "threads", s.local_threads
            else:
                name, window = "local", s.local_concurrency
            if name not in lanes:
                resources = {"submission": 1} if name == "local" else {"submission": 1, name: 1}
                lanes[name] = Lane(name, window, MappingProxyType(resources))
                if name != "local":
                    limits[name] = window
            lane_of.append(list(lanes).index(name))
            groups.append(
                TaskGroupSpec(column.scheduling.group_key(identity), column.scheduling.weight)
            )
            runtimes.append(
                ColumnRuntime(
                    column,
                    index,
                    pipeline.index,
                    identity_hash=column.scheduling.identity_hash(identity),
                    threaded=column.threaded and not io_inline,
                    limiter=thread_limiter,
                )
            )
        capacity = s.task_capacity or sum(lane.window for lane in lanes.values())
        limits["submission"] = capacity
        self.admission = TaskAdmissionController(limits=limits)
        completed = {c.index: c.rows_passed for c in self.manifest.row_groups}
        planner = self._planner(completed)
        deps = [[pipeline.index[d] for d in c.depends_on] for c in columns]
        self.tracker = CellTracker(
            deps=deps,
            order=pipeline.order,
            is_model=[c.scheduling.kind != "local" for c in columns],
            lane_of=lane_of,
            groups=groups,
            lanes=list(lanes.values()),
            planner=planner,
            hooks=self,
            max_attempts=s.cell_max_attempts,
            salvage_rounds=s.salvage_rounds,
            salvage_delay=s.salvage_delay_seconds,
            max_row_groups=s.max_concurrent_row_groups,
        )
        if self._stop_reason is not None:
            self.tracker.stop()
        self.monitor = ErrorRateMonitor(
            s.error_rate_window,
            s.error_rate_threshold,
            lambda why: self.request_stop(s.stop_grace_seconds, f"error rate: {why}"),
        )
        self.worker = CellWorker(
            runtimes=tuple(runtimes),
            tracker=self.tracker,
            rundir=self.rundir,
            caller=self,
            run_id=self.run_id,
            seed=s.seed,
            backoff_seconds=s.cell_backoff_seconds,
            monitor=self.monitor,
        )
        self.writer = CheckpointWriter(
            self.rundir,
            self.manifest,
            output_columns=self._output_columns,
            output_format=s.output_format,
            flush_interval=s.journal_flush_seconds,
            on_written=self._written,
        )
        self._journal_groups = set(self.rundir.journal_groups())

    async def _segments(self) -> None:
        while not self.tracker.is_finished:
            segment = _Segment(self.tracker, _SEGMENT_TASKS)
            scheduler = AsyncTaskScheduler(
                segment,
                self.worker,
                admission=self.admission,
                sink=self._stream,
                retry=_TRACKER_RETRIES,
                is_retryable=_never_retryable,
                run_id=self.run_id,
            )
            self._scheduler = scheduler
            if self._stop_grace is not None:
                scheduler.shutdown(self._stop_grace[0])
            try:
                await scheduler.run()
            finally:
                self._scheduler = None
            if self._stop_reason is not None:
                return

    # -- model calls (the context's caller) -------------------------------------------------

    async def call(self, model: str, request: ModelRequest) -> ModelResponse:
        """Send one model request through the executor, in the endpoint's request group."""
        group = self._request_group.get(model, model)
        return await self.stack.executor.execute(model, request, request_group=group)

    # -- tracker hooks -----------------------------------------------------------------------

    def prefill(
        self, group: int
    ) -> tuple[Mapping[int, object], Mapping[int, tuple[int, str, str]]]:
        if group not in self._journal_groups:
            return {}, {}
        raw_cells, raw_rows = self.rundir.load_journal(group, self._decoders)
        start, size = self.tracker.planner.group_range(group)
        columns = len(self._names)
        position = {name: i for i, name in enumerate(self._names)}
        cells = {
            (row - start) * columns + position[name]: value
            for (row, name), value in raw_cells.items()
            if start <= row < start + size
        }
        rows = {row - start: line for row, line in raw_rows.items() if start <= row < start + size}
        return cells, rows

    def group_admitted(self, state: RowGroupState) -> None:
        if self._emitter.enabled:
            with correlation_scope(run_id=self.run_id, row_group=state.index):
                self._emitter.scheduler(
                    "row_group_admitted",
                    diagnostics={"row_start": state.start, "rows": state.size},
                )

    def group_finished(self, state: RowGroupState, writes: list[tuple[int, int | None]]) -> None:
        self._held[state.index] = state
        for index, limit in writes:
            self.writer.submit(self._held.pop(index), limit)

    def group_abandoned(self, index: int) -> None:
        self.writer.submit_discard(index)

    def row_resolved(
        self, state: RowGroupState, row: int, status: int, reason: str, cell: int
    ) -> str:
        column = self._names[cell % len(self._names)]
        if status == ROW_FAILED:
            kind = self.worker.failure_kind.pop(cell, "Error")
            category = f"{column}: {kind}"
            self._live_failed += 1
            self._live_failures[category] = self._live_failures.get(category, 0) + 1
            self._failure_examples.setdefault(category, reason)
        else:
            category = column
            self._live_filtered += 1
        self.rundir.append_row(state.index, state.start + row, status, category, reason)
        return category

    def salvage(self, state: RowGroupState, cells: int) -> None:
        if self._emitter.enabled:
            with correlation_scope(run_id=self.run_id, row_group=state.index):
                self._emitter.scheduler(
                    "salvage_redispatched",
                    diagnostics={"cells": cells, "round": state.salvage_rounds},
                )

    def backlog(self) -> int:
        return self.writer.writes_pending + len(self._held)

    def _written(self, checkpoint: RowGroupCheckpoint) -> None:
        if self._emitter.enabled:
            with correlation_scope(run_id=self.run_id, row_group=checkpoint.index):
                self._emitter.scheduler(
                    "row_group_checkpointed",
                    diagnostics={
                        "rows_written": checkpoint.rows_written,
                        "rows_failed": checkpoint.rows_failed,
                        "rows_filtered": checkpoint.rows_filtered,
                    },
                )
        self._live_failed -= checkpoint.rows_failed
        self._live_filtered -= checkpoint.rows_filtered
        for category, count in checkpoint.failures.items():
            self._live_failures[category] = self._live_failures.get(category, 0) - count
        if self._progress is not None:
            totals = self._totals()
            self._progress.checkpoint(
                CheckpointProgress(
                    run_id=self.run_id,
                    row_group=checkpoint.index,
                    rows_written=totals["written"],
                    rows_target=self.settings.records,
                    rows_generated=totals["generated"],
                    rows_passed=totals["passed"],
                    rows_filtered=totals["filtered"],
                    rows_failed=totals["failed"],
                    elapsed_seconds=trio.current_time() - self._started,
                )
            )
        if self._scheduler is not None:
            self._scheduler.notify()  # a written group frees room for the next one

    # -- results -----------------------------------------------------------------------------

    def _totals(self) -> dict[str, int]:
        groups = self.manifest.row_groups
        return {
            "written": sum(c.rows_written for c in groups),
            "generated": sum(c.row_stop - c.row_start for c in groups),
            "passed": sum(c.rows_passed for c in groups),
            "filtered": sum(c.rows_filtered for c in groups),
            "failed": sum(c.rows_failed for c in groups),
        }

    async def _finish(self, *, interrupted: bool, error: BaseException | None) -> RunResult:
        """Write what is finished, then the manifest and capacity plan; report once."""
        with trio.CancelScope(shield=True):
            await self.writer.drain()
            status, message = self._status(interrupted)
            if error is not None:
                status = "failure"
                message = f"the run failed: {type(error).__name__}: {error}"
            manifest = self.manifest
            manifest.status = status
            manifest.updated_at = _utc_now()
            failures: dict[str, int] = {}
            for checkpoint in manifest.row_groups:
                for category, count in checkpoint.failures.items():
                    failures[category] = failures.get(category, 0) + count
            manifest.failures = failures
            await self.rundir.run_io(self.rundir.write_manifest, manifest)
            await self.rundir.run_io(self.rundir.write_capacity_plan, self._capacity_plan(True))
            self.rundir.close_journals()
        self._phase = "finished"
        result = self._result(status, message)
        if self._progress is not None:
            self._progress.finished(result)
        return result

    def _status(self, interrupted: bool) -> tuple[RunStatus, str]:
        totals = self._totals()
        s = self.settings
        reason = self._stop_reason
        if reason is not None and reason.startswith("error rate"):
            return "failure", f"stopped early: {reason}"
        if interrupted or self._cancelled or reason is not None:
            return "interrupted", (
                "cancelled" if self._cancelled else "stopped"
            ) + f"; {totals['written']} rows written, resume by running again"
        if s.exact:
            if totals["written"] < s.records:
                return "failure", (
                    f"only {totals['written']} of {s.records} rows passed after generating "
                    f"{totals['generated']} (max_attempts_factor {s.max_attempts_factor})"
                )
        elif totals["failed"]:
            return "failure", f"{totals['failed']} row(s) could not be produced"
        if totals["written"] == 0:
            return "empty", "no row was written"
        return "success", f"{totals['written']} rows written"

    def _result(self, status: RunStatus, message: str) -> RunResult:
        totals = self._totals()
        failures: dict[str, int] = {}
        filtered: dict[str, int] = {}
        for checkpoint in self.manifest.row_groups:
            for category, count in checkpoint.failures.items():
                failures[category] = failures.get(category, 0) + count
            for category, count in checkpoint.filtered.items():
                filtered[category] = filtered.get(category, 0) + count
        examples = {k: v for k, v in self._failure_examples.items() if k in failures}
        files = tuple(c.path for c in self.manifest.row_groups if c.path is not None)
        return RunResult(
            status=status,
            message=message,
            run_id=self.run_id,
            output_dir=str(self.rundir.path),
            output_format=self.settings.output_format,
            files=files,
            rows_target=self.settings.records,
            rows_written=totals["written"],
            rows_generated=totals["generated"],
            rows_passed=totals["passed"],
            rows_filtered=totals["filtered"],
            rows_failed=totals["failed"],
            failures=failures,
            failure_examples=examples,
            filtered=filtered,
            row_groups_written=len(files),
            resumed=self._resumed,
            elapsed_seconds=trio.current_time() - self._started,
            manifest=str(self.rundir.manifest_path),
        )

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> RunSnapshot:
        """A cheap live view (counters and one pressure read per endpoint)."""
        tracker = self.tracker
        totals = self._totals()
        active_rows = sum(g.resolved for g in tracker.groups.values())
        controller = self.stack.controller
        endpoints = []
        for key, cap in self.stack.static_caps.items():
            pressure = controller.endpoint_pressure(key)
            resources = [
                controller.resource_pressure(r) for r in (pressure.resources if pressure else ())
            ]
            lane = next((lane for lane in tracker.lanes if lane.name == f"endpoint:{key}"), None)
            endpoints.append(
                EndpointSnapshot(
                    endpoint=str(key),
                    aliases=pressure.aliases if pressure else (),
                    in_flight=pressure.in_flight if pressure else 0,
                    waiters=pressure.waiters if pressure else 0,
                    limit=max((r.limit for r in resources if r is not None), default=None),
                    static_cap=cap,
                    rate_limited=sum(r.rate_limits for r in resources if r is not None),
                    cells_running=lane.outstanding if lane is not None else 0,
                )
            )
        failures = {k: v for k, v in self._live_failures.items() if v}
        for checkpoint in self.manifest.row_groups:
            for category, count in checkpoint.failures.items():
                failures[category] = failures.get(category, 0) + count
        return RunSnapshot(
            run_id=self.run_id,
            phase=self._phase,
            elapsed_seconds=trio.current_time() - self._started,
            rows_target=self.settings.records,
            rows_done=totals["generated"] + active_rows,
            rows_written=totals["written"],
            rows_failed=totals["failed"] + self._live_failed,
            rows_filtered=totals["filtered"] + self._live_filtered,
            row_groups_in_flight=len(tracker.groups),
            cells_running=self.worker.running,
            columns_done=dict(zip(self._names, tracker.column_done, strict=True)),
            endpoints=tuple(endpoints),
            failures=failures,
        )

    def _capacity_plan(self, final: bool) -> AsyncCapacityPlan:
        s = self.settings
        configured: dict[str, CapacityValue] = {
            "records": CapacityValue(value=s.records, source="user"),
            "buffer_size": CapacityValue(value=s.buffer_size, source="user"),
            "max_concurrent_row_groups": CapacityValue(
                value=s.max_concurrent_row_groups, source="user"
            ),
            "local_threads": CapacityValue(value=s.local_threads, source="user"),
        }
        for name, limit in self.admission.limits.items():
            source = "derived"
            if name == "submission" and s.task_capacity is not None:
                source = "user"
            configured[f"task_resource:{name}"] = CapacityValue(value=limit, source=source)
        for plan in self.stack.controller.resolver.cap_plans():
            configured[f"endpoint:{plan.key}.static_cap"] = CapacityValue(
                value=plan.static_cap,
                source="derived" if len(plan.contributions) > 1 else "user",
                fallback_from=None
                if len(plan.contributions) == 1
                else "min of " + ", ".join(f"{c.alias}={c.raw_cap}" for c in plan.contributions),
            )
        capacity_plan = AsyncCapacityPlan(
            run_id=self.run_id,
            configured=configured,
            runtime_snapshot={"phase": self._phase, "resumed": self._resumed},
        )
        if final:
            capacity_plan.observed_maxima = self._observed_maxima()
        return capacity_plan

    def _observed_maxima(self) -> ObservedMaxima:
        maxima = ObservedMaxima(row_groups_in_flight=self.tracker.max_groups_in_flight)
        for lane in self.tracker.lanes:
            maxima.leases_by_resource[lane.name] = lane.max_outstanding
        snapshot = self.stack.controller.pressure_snapshot()
        for resource in snapshot.resources:
            name = str(resource.resource)
            maxima.request_in_flight_by_resource[name] = resource.max_in_flight
            maxima.request_waiters_by_resource[name] = resource.max_waiters
            maxima.adaptive_limit_by_resource[name] = resource.max_limit
        for endpoint in snapshot.endpoints:
            maxima.aggregate_in_flight_by_endpoint[str(endpoint.key)] = endpoint.max_in_flight
        return maxima


def _changes(
    existing: RunManifest,
    parts: Mapping[str, str],
    description: Mapping[str, Any],
    settings: RunSettings,
) -> list[str]:
    """What differs between a run directory's pipeline and this one, one line each."""
    old_parts = existing.fingerprint_parts
    changes: list[str] = []
    old_columns = {c["name"]: c for c in existing.pipeline.get("columns", [])}
    new_columns = {c["name"]: c for c in description["columns"]}
    for name in old_columns.keys() - new_columns.keys():
        changes.append(f"column {name!r} removed")
    for name in new_columns.keys() - old_columns.keys():
        changes.append(f"column {name!r} added")
    for name in sorted(old_columns.keys() & new_columns.keys()):
        if old_parts.get(f"column:{name}") == parts.get(f"column:{name}"):
            continue
        old, new = old_columns[name], new_columns[name]
        fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        what = ", ".join(fields) if fields else "generator or filter code"
        changes.append(f"column {name!r}: {what} changed")
    for key in sorted(old_parts.keys() | parts.keys()):
        if key.startswith("endpoint:") and old_parts.get(key) != parts.get(key):
            changes.append(f"{key.replace(':', ' ', 1)} changed (provider or model)")
    new_settings = msgspec.to_builtins(settings.output_settings())
    for name, value in new_settings.items():
        old = existing.settings.get(name)
        if old != value:
            changes.append(f"{name} {old!r} -> {value!r}")
    return changes or ["pipeline fingerprint differs"]
