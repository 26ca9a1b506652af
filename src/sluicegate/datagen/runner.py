"""One pipeline run: the run directory, the request layer, the tracker on the scheduler.

:class:`PipelineRun` wires the layers for :meth:`Pipeline.arun`:

- the run directory (new, resumed, refused when the pipeline changed, or overwritten);
- the request layer from the endpoints (:func:`.endpoints.build_request_stack`), one request
  group per concrete endpoint;
- task admission and tracker lanes laid out per endpoint (:mod:`.layout`), so cells waiting
  on one endpoint never hold the task slots of another;
- the scheduler, run in segments (:mod:`.segments`) so its per-task records stay bounded;
- row-group slow start (``row_group_slow_start``): a
  :class:`~sluicegate.scheduling.SlowStartWindow` the tracker admits row groups through; the
  runner reports failed rows to it (classified by
  :func:`~sluicegate.scheduling.classify_failure`) and stops the run early when it halts;
- the checkpoint writer task, run control (stop, cancel, early stops), progress and the
  final manifest, capacity plan and :class:`RunResult`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio

from .._internal.cpu_time import cpu_clocks
from ..errors import ConfigurationError
from ..events import EventSink, JsonLinesEventSink, correlation_scope
from ..events.emitter import EventEmitter
from ..requests import RequestAdmissionConfig
from ..scheduling import (
    AsyncTaskScheduler,
    BatchStrategy,
    SlowStartWindow,
    TaskAdmissionController,
)
from .calls import CellCalls
from .capacity import AsyncCapacityPlan, configured_capacity, observed_maxima
from .cells import CellWorker, ErrorRateMonitor
from .checkpoints import CheckpointWriter
from .layout import plan_layout
from .output import require_format
from .progress import (
    CheckpointProgress,
    ProgressReporter,
    RunControl,
    RunPhase,
    RunSnapshot,
    endpoint_snapshots,
)
from .result import RunResult, RunStatus, RunTotals, run_status
from .resume import open_run, planner_for, utc_now
from .rowgroups import ROW_FAILED, RowGroupState
from .rundir import RowGroupCheckpoint
from .segments import (
    SEGMENT_TASKS,
    TRACKER_RETRIES,
    SchedulerSegment,
    never_retryable,
)
from .settings import RunSettings
from .tracker import CellTracker

if TYPE_CHECKING:
    from .endpoints import RequestStack
    from .pipeline import Pipeline

SLOW_START_TOLERANCE: Final = 3
"""Rows of a slow-start step's row groups that may fail before any row of them passes, in a
column that has not produced one value in this run, for a reason that is not backpressure;
the third stops the run. A column that has worked once is not broken, so its failures are
left to the error rate; and more than one, so one unlucky answer does not end a run."""


def _virtual_clock() -> bool:
    """Whether the run's clock is trio's MockClock (virtual time: no threads, inline IO).

    Without importing ``trio.testing`` (it imports pytest): if nobody imported it, the clock
    cannot be one of its clocks.
    """
    testing = sys.modules.get("trio.testing")
    mock = getattr(testing, "MockClock", None)
    return mock is not None and isinstance(trio.lowlevel.current_clock(), mock)


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
        events: EventSink | bool | str | os.PathLike[str] | None,
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
        self._events_option = _checked_events_option(events)
        self._run_id = run_id
        self._request_config = request_config
        self._phase: RunPhase = "starting"
        self._stop_reason: str | None = None
        self._stop_failed = False  # the stop is a failure (error rate, slow start halted)
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
        self._job_open = False  # scheduler_job_started emitted, its completion not yet
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

    def _stop_early(self, reason: str) -> None:
        """Stop because the run is failing (status ``failure``), unless a stop came first."""
        if self._stop_reason is None:
            self._stop_failed = True
        self.request_stop(self.settings.stop_grace_seconds, reason)

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
        io_inline = _virtual_clock()
        opened = open_run(
            self.pipeline,
            settings,
            output_dir=self._output_dir,
            overwrite=self._overwrite,
            force=self._force,
            run_id=self._run_id,
            io_inline=io_inline,
        )
        self.rundir, self.manifest = opened.rundir, opened.manifest
        self.run_id, self._resumed = opened.run_id, opened.resumed
        events_sink = self._events_sink()
        # One scheduler stream for the runner's own events and every segment's scheduler.
        self._emitter = EventEmitter(events_sink)
        if self._emitter.enabled:
            # What a report needs to read the run as a pipeline (the chain depth, the columns).
            # First, so a file that resumed runs appended to splits before each run's own
            # endpoint registrations (the request stack's first events).
            self._emitter.scheduler(
                "pipeline_started",
                diagnostics={
                    "run_id": self.run_id,
                    "records": settings.records,
                    # How many rows can be in flight at once: what dependency-bound advice
                    # needs to tell "more row groups" from "every row was already running".
                    "buffer_size": settings.buffer_size,
                    "max_concurrent_row_groups": settings.max_concurrent_row_groups,
                    "columns": {c.name: list(c.depends_on) for c in self.pipeline.columns},
                    "endpoints": [e.alias for e in self.pipeline.endpoints],
                },
            )
        try:
            self.stack: RequestStack = build_request_stack(
                self.pipeline.endpoints,
                providers=self.pipeline.providers,
                seed=settings.seed,
                sink=events_sink,
                config=self._request_config,
                max_attempts=1,  # CellCalls retries, so a pause frees the endpoint slot
            )
        except BaseException:
            if self._owned_sink is not None:
                self._owned_sink.close()
            raise
        self.calls = CellCalls(
            self.stack.executor,
            {a: str(k) for a, k in self.stack.endpoint_of_alias.items()},
            max_attempts=settings.request_max_attempts,
            backoff_seconds=settings.request_backoff_seconds,
            seed=settings.seed,
            wake=self._wake,
        )
        try:
            self._started = trio.current_time()
            try:
                self._build(io_inline)
            except Exception as exc:
                self._report(self._result("failure", f"the run could not start: {exc}"))
                raise
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
                error = _sole_error(exc)
                await self._finish(interrupted=error is None, error=error)
                if error is not None and error is not exc:
                    raise error from None  # the failure itself, not a one-member group
                raise
            return await self._finish(interrupted=False, error=None)
        finally:
            with trio.CancelScope(shield=True):
                await self.stack.aclose()
            if self._owned_sink is not None:
                self._owned_sink.close()

    def _events_sink(self) -> EventSink | None:
        option = self._events_option
        if option is True or option is None:  # by default: RUN_DIR/events.jsonl.gz
            self._owned_sink = JsonLinesEventSink(self.rundir.events_path)
            return self._owned_sink
        if option is False:
            return None
        if isinstance(option, (str, os.PathLike)):  # a file of the caller's choosing
            self._owned_sink = JsonLinesEventSink(Path(option))
            return self._owned_sink
        return option

    def _build(self, io_inline: bool) -> None:
        """Lanes, task admission, the tracker, the worker and the writer."""
        s = self.settings
        pipeline = self.pipeline
        columns = pipeline.columns
        layout = plan_layout(pipeline, self.stack, s, io_inline=io_inline)
        self.admission = TaskAdmissionController(limits=layout.limits)
        self._group_resources = layout.group_resources()
        self._lanes = {"lanes": layout.lane_windows(), "group_lanes": layout.group_lanes()}
        completed = {c.index: c.rows_passed for c in self.manifest.row_groups}
        planner = planner_for(s, completed)
        deps = [[pipeline.index[d] for d in c.depends_on] for c in columns]
        self.tracker = CellTracker(
            deps=deps,
            order=pipeline.order,
            is_model=[c.scheduling.kind != "local" for c in columns],
            lane_of=layout.lane_of,
            groups=layout.groups,
            lanes=layout.lanes,
            planner=planner,
            hooks=self,
            max_attempts=s.cell_max_attempts,
            salvage_rounds=s.salvage_rounds,
            salvage_delay=s.salvage_delay_seconds,
            max_row_groups=s.max_concurrent_row_groups,
            window=self._window(),
        )
        if self._stop_reason is not None:
            self.tracker.stop()
        self.monitor = ErrorRateMonitor(
            s.error_rate_window,
            s.error_rate_threshold,
            lambda why: self._stop_early(f"error rate: {why}"),
        )
        self.worker = CellWorker(
            runtimes=layout.runtimes,
            tracker=self.tracker,
            rundir=self.rundir,
            caller=self.calls,
            run_id=self.run_id,
            seed=s.seed,
            backoff_seconds=s.cell_backoff_seconds,
            monitor=self.monitor,
            correlate=self._emitter.enabled,
            on_dead_endpoint=self._stop_early,
        )
        self.writer = CheckpointWriter(
            self.rundir,
            self.manifest,
            output_columns=self._output_columns,
            output_format=s.output_format,
            flush_interval=s.journal_flush_seconds,
            on_written=self._written,
        )
        # Read every journal now: a corrupt one fails the run before anything is generated.
        # A journal of a listed group is left over from a crash just after its checkpoint.
        self._journaled = {}
        for group in self.rundir.journal_groups():
            if group in completed:
                self.rundir.drop_journal(group)
            else:
                self._journaled[group] = self._load_journal(group)

    def _window(self) -> SlowStartWindow[int] | None:
        """The row-group slow-start window: widths 1, 2, 4, ... ``max_concurrent_row_groups``."""
        if not self.settings.row_group_slow_start:
            return None
        strategy = BatchStrategy(max_batch_size=self.settings.max_concurrent_row_groups)
        return SlowStartWindow(strategy, tolerance=SLOW_START_TOLERANCE)

    async def _segments(self) -> None:
        if self._emitter.enabled:
            # One run for every reader (report, OpenTelemetry trace) however many segments
            # it takes: the segments' schedulers leave their job events to the runner.
            self._emitter.scheduler(
                "scheduler_job_started",
                diagnostics={
                    "run_id": self.run_id,
                    "limits": dict(self.admission.limits),
                    "policy": self.admission.policy.name,
                    # What each group's cells hold (one entry per group, not per cell).
                    "group_resources": self._group_resources,
                    # Each lane's window and each group's lane: a full lane is not work
                    # still to come (its waiting cells are in the tracker).
                    **self._lanes,
                    # CPU used over the run, against its wall time: "was it busy?"
                    **cpu_clocks(),
                },
            )
            self._job_open = True
        while not self.tracker.is_finished:
            scheduler = AsyncTaskScheduler(
                SchedulerSegment(self.tracker, SEGMENT_TASKS),
                self.worker,
                admission=self.admission,
                events=self._emitter,
                retry=TRACKER_RETRIES,
                is_retryable=never_retryable,
                run_id=self.run_id,
                task_correlation=False,  # the cell worker sets the cell's own
                job_events=False,  # the run's, not the segment's (see above)
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

    def _wake(self) -> None:
        if self._scheduler is not None:
            self._scheduler.notify()

    # -- tracker hooks -----------------------------------------------------------------------

    def prefill(
        self, group: int
    ) -> tuple[Mapping[int, object], Mapping[int, tuple[int, str, str]]]:
        return self._journaled.pop(group, ({}, {}))

    def _load_journal(
        self, group: int
    ) -> tuple[dict[int, object], dict[int, tuple[int, str, str]]]:
        raw_cells, raw_rows = self.rundir.load_journal(group, self._decoders)
        start, size = self.tracker.planner.group_range(group)
        columns = len(self._names)
        position = {name: i for i, name in enumerate(self._names)}
        cells: dict[int, object] = {
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
            kind, failure = self.worker.failure_kind.pop(cell, ("Error", "task"))
            window = self.tracker.window
            if (
                window is not None
                and window.state == "ramping"
                and not self.tracker.column_succeeded(cell % len(self._names))
                and window.failed(state.index, failure, reason)
            ):
                self._stop_early(self._slow_start_reason(state.start + row, reason))
            category = f"{column}: {kind}"
            self._live_failed += 1
            self._live_failures[category] = self._live_failures.get(category, 0) + 1
            self._failure_examples.setdefault(category, reason)
        else:
            category = column
            self._live_filtered += 1
        self.rundir.append_row(state.index, state.start + row, status, category, reason)
        return category

    def _slow_start_reason(self, row: int, reason: str) -> str:
        window = self.tracker.window
        width = window.view().widths[-1] if window is not None else 1
        groups = "row group" if width == 1 else f"{width} row groups"
        return (
            f"row-group slow start: {SLOW_START_TOLERANCE} rows of the first {groups} failed "
            "in columns that have not produced one value yet; the last, row "
            f"{row}, with {reason}. Fix: correct that column or its endpoint and run again "
            "(finished cells are kept), or set row_group_slow_start = false"
        )

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
            # The events up to this checkpoint reach the file with the rows they describe:
            # a run killed later leaves both on disk (the report reads a crashed run too).
            self._emitter.flush()
        self._live_failed -= checkpoint.rows_failed
        self._live_filtered -= checkpoint.rows_filtered
        for category, count in checkpoint.failures.items():
            self._live_failures[category] = self._live_failures.get(category, 0) - count
        if self._progress is not None:
            totals = RunTotals.of(self.manifest.row_groups)
            self._progress.checkpoint(
                CheckpointProgress(
                    run_id=self.run_id,
                    row_group=checkpoint.index,
                    rows_written=totals.written,
                    rows_target=self.settings.records,
                    rows_generated=totals.generated,
                    rows_passed=totals.passed,
                    rows_filtered=totals.filtered,
                    rows_failed=totals.failed,
                    elapsed_seconds=trio.current_time() - self._started,
                )
            )
        if self._scheduler is not None:
            self._scheduler.notify()  # a written group frees room for the next one

    # -- results -----------------------------------------------------------------------------

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
            manifest.updated_at = utc_now()
            manifest.failures = RunTotals.of(manifest.row_groups).failures
            await self.rundir.run_io(self.rundir.write_manifest, manifest)
            await self.rundir.run_io(self.rundir.write_capacity_plan, self._capacity_plan(True))
            self.rundir.close_journals()
            if self._job_open:
                self._job_open = False
                self._emitter.scheduler(
                    "scheduler_job_completed",
                    # A reason only for a run that ended by raising (as a scheduler reports it).
                    reason=(
                        type(error).__name__
                        if error is not None
                        else "Cancelled"
                        if interrupted
                        else None
                    ),
                    diagnostics={"status": status, "interrupted": interrupted, **cpu_clocks()},
                )
            if self._emitter.enabled:
                self._emitter.flush()  # a sink the caller owns stays open, its events written
        result = self._result(status, message)
        self._report(result)
        return result

    def _report(self, result: RunResult) -> None:
        self._phase = "finished"
        if self._progress is not None:
            self._progress.finished(result)

    def _status(self, interrupted: bool) -> tuple[RunStatus, str]:
        s = self.settings
        return run_status(
            RunTotals.of(self.manifest.row_groups),
            records=s.records,
            exact=s.exact,
            max_attempts_factor=s.max_attempts_factor,
            stop_reason=self._stop_reason,
            stop_failed=self._stop_failed,
            cancelled=self._cancelled,
            interrupted=interrupted,
        )

    def _result(self, status: RunStatus, message: str) -> RunResult:
        totals = RunTotals.of(self.manifest.row_groups)
        examples = {k: v for k, v in self._failure_examples.items() if k in totals.failures}
        files = tuple(c.path for c in self.manifest.row_groups if c.path is not None)
        return RunResult(
            status=status,
            message=message,
            run_id=self.run_id,
            output_dir=str(self.rundir.path),
            output_format=self.settings.output_format,
            files=files,
            rows_target=self.settings.records,
            rows_written=totals.written,
            rows_generated=totals.generated,
            rows_passed=totals.passed,
            rows_filtered=totals.filtered,
            rows_failed=totals.failed,
            failures=totals.failures,
            failure_examples=examples,
            filtered=totals.filtered_by,
            row_groups_written=len(files),
            resumed=self._resumed,
            elapsed_seconds=trio.current_time() - self._started,
            manifest=str(self.rundir.manifest_path),
        )

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> RunSnapshot:
        """A cheap live view (counters and one pressure read per endpoint)."""
        tracker = self.tracker
        totals = RunTotals.of(self.manifest.row_groups)
        active_rows = sum(g.resolved for g in tracker.groups.values())
        endpoints = endpoint_snapshots(self.stack.controller, self.stack.static_caps, tracker.lanes)
        failures = {k: v for k, v in self._live_failures.items() if v}
        for category, count in totals.failures.items():
            failures[category] = failures.get(category, 0) + count
        return RunSnapshot(
            run_id=self.run_id,
            phase=self._phase,
            elapsed_seconds=trio.current_time() - self._started,
            rows_target=self.settings.records,
            rows_done=totals.generated + active_rows,
            rows_written=totals.written,
            rows_failed=totals.failed + self._live_failed,
            rows_filtered=totals.filtered + self._live_filtered,
            row_groups_in_flight=len(tracker.groups),
            cells_running=self.worker.running,
            columns_done=dict(zip(self._names, tracker.column_done, strict=True)),
            endpoints=endpoints,
            failures=failures,
        )

    def _capacity_plan(self, final: bool) -> AsyncCapacityPlan:
        plan = AsyncCapacityPlan(
            run_id=self.run_id,
            configured=configured_capacity(
                self.settings, self.admission.limits, self.stack.controller.resolver.cap_plans()
            ),
            runtime_snapshot={"phase": self._phase, "resumed": self._resumed},
        )
        window = self.tracker.window
        if window is not None:
            view = window.view()
            plan.runtime_snapshot["row_group_slow_start"] = {
                "state": view.state,
                "widths": list(view.widths),
            }
        if final:
            plan.observed_maxima = observed_maxima(
                self.tracker.lanes,
                self.tracker.max_groups_in_flight,
                self.stack.controller.pressure_snapshot(),
                self.tracker.max_ready,
            )
        return plan


def _sole_error(exc: BaseException) -> Exception | None:
    """The one error (not a cancellation or interrupt) behind ``exc``, or ``None``."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split((trio.Cancelled, KeyboardInterrupt))
        if rest is None:
            return None
        leaves: list[BaseException] = []
        stack: list[BaseException] = [rest]
        while stack:
            current = stack.pop()
            if isinstance(current, BaseExceptionGroup):
                stack.extend(current.exceptions)
            else:
                leaves.append(current)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            return leaves[0]
        return rest if isinstance(rest, Exception) else None
    if isinstance(exc, Exception):
        return exc
    return None


def _checked_events_option(
    events: EventSink | bool | str | os.PathLike[str] | None,
) -> EventSink | bool | str | os.PathLike[str] | None:
    """``Pipeline.run(events=...)``: ``True``/``None`` (the run directory's file), ``False``, a
    file path or a sink; anything else is refused before the run opens its directory."""
    if events is None or isinstance(events, (bool, str, os.PathLike)):
        return events
    if callable(getattr(events, "emit", None)):
        return events
    raise ConfigurationError(
        "events",
        f"must be True, False, a file path or an event sink (an object with emit(event)), "
        f"got {type(events).__name__}",
        "leave it out to record RUN_DIR/events.jsonl.gz, pass False for no events, a path "
        "such as 'events.jsonl' for a file of your own, or a sink such as InMemoryEventSink()",
    )
