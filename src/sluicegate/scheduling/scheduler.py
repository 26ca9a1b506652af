"""The runtime control owner: one dispatch loop per run, on trio.

:class:`AsyncTaskScheduler` pulls the ready frontier from a completion tracker into the fair
queue, asks task admission for a lease for the fairest eligible candidate, commits the
selection and spawns the worker into the run's nursery holding that lease. Nothing pushes
work into it. Leases are acquired before a worker is spawned and released exactly once, on
every path, in the worker's ``finally``; that cleanup contains no checkpoint, so no
cancellation can interrupt it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Final, Literal

import msgspec
import trio

from .._internal.checks import describe, is_number
from ..errors import ConfigurationError, RetryableTaskError, SchedulerClosedError, SluicegateError
from ..events.correlation import RuntimeCorrelation, set_correlation
from ..events.emitter import EventEmitter
from ..events.sinks import EventSink
from .admission import TaskAdmissionController
from .leases import (
    TaskAdmissionBlockSummary,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)
from .policies.base import TaskAdmissionPolicy
from .queue import FairTaskQueue, QueueView
from .readiness import CompletionTracker, TaskOutcome
from .retry import RetryPolicy
from .task import SchedulableTask

TaskStatus = Literal["succeeded", "failed", "dropped", "cancelled"]


TASK_STATUSES: Final[tuple[TaskStatus, ...]] = ("succeeded", "failed", "dropped", "cancelled")


Worker = Callable[[SchedulableTask], Awaitable[Any]]


_MIN_REPOLL: Final = 0.001  # seconds; floor for re-polling a policy's past available_after


_PAST_HINT_STALL_SECONDS: Final = 5.0


"""How long a policy may keep denying, with nothing running, at an ``available_after`` that
has already passed before the run fails with :class:`SchedulerStalledError`."""


class TaskRunOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The terminal state of one task in a run."""

    status: TaskStatus
    attempts: int = 0
    reason: str | None = None


class SchedulerRunResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a run did: per-task outcomes, counts, final admission facts, event count."""

    outcomes: dict[Any, TaskRunOutcome]
    counts: dict[str, int]
    admission: TaskAdmissionView
    event_count: int
    started_at: float
    finished_at: float
    shutdown_requested: bool = False
    sink_errors: int = 0

    @property
    def elapsed(self) -> float:
        return self.finished_at - self.started_at


class SchedulerStalledError(SluicegateError, RuntimeError):
    """The tracker is not finished but nothing is running, queued or scheduled to become ready."""


class _Dispatch:
    """Wake-up flag for the dispatch loop (single event loop, no locks)."""

    __slots__ = ("lot", "parked", "pending")

    def __init__(self) -> None:
        self.lot = trio.lowlevel.ParkingLot()
        self.pending = False
        self.parked = False


class AsyncTaskScheduler:
    """Runs every task of a :class:`CompletionTracker` through queue and task admission.

    - ``worker(task)`` is awaited once per attempt. Returning normally is success (a
      returned :class:`TaskOutcome` is honoured as is); raising :class:`RetryableTaskError`
      (or anything ``is_retryable`` accepts) defers a retry with backoff through the
      tracker, up to ``retry.max_attempts`` attempts; any other exception drops the task
      and everything downstream of it.
    - :meth:`shutdown` stops admitting; running tasks finish, or are cancelled once the
      grace period ends. Cancelling the scope around :meth:`run` cancels every worker.
      Either way every lease is released and :attr:`admission` ends with zero leases.
    - Events (scheduler stream) go to ``sink``; with no sink none is built.
    - ``capacity`` (default 64) sizes the default task admission (resource ``submission``);
      pass ``admission=`` instead for several resources or another policy, not both.
    """

    def __init__(
        self,
        tracker: CompletionTracker,
        worker: Worker,
        *,
        admission: TaskAdmissionController | None = None,
        capacity: int | None = None,
        queue: FairTaskQueue | None = None,
        sink: EventSink | None = None,
        retry: RetryPolicy | None = None,
        is_retryable: Callable[[BaseException], bool] | None = None,
        run_id: str | None = None,
    ) -> None:
        if not isinstance(tracker, CompletionTracker):
            raise ConfigurationError(
                "AsyncTaskScheduler.tracker",
                f"{describe(tracker)} is not a completion tracker",
                "pass a DagCompletionTracker, or an object with ready_frontier, mark_enqueued, "
                "mark_complete, is_finished and next_ready_at",
            )
        if not callable(worker):
            raise ConfigurationError(
                "AsyncTaskScheduler.worker",
                f"{describe(worker)} is not callable",
                "pass an async function task -> result",
            )
        self.tracker = tracker
        self.worker = worker
        if admission is not None and capacity is not None:
            raise ConfigurationError(
                "AsyncTaskScheduler.capacity",
                "given together with admission=, whose limits would silently win",
                "set the capacity on the TaskAdmissionController (limits= or capacity=), "
                "or drop admission=",
            )
        self.admission = (
            admission
            if admission is not None
            else TaskAdmissionController(capacity=64 if capacity is None else capacity)
        )
        self.queue = queue if queue is not None else FairTaskQueue()
        self.events = EventEmitter(sink)
        self.retry = retry if retry is not None else RetryPolicy()
        self.is_retryable = is_retryable or _default_retryable
        self.run_id = run_id
        self._outcomes: dict[Hashable, TaskRunOutcome] = {}
        self._attempts: dict[Hashable, int] = {}
        self._running = 0
        self._wake = _Dispatch()
        self._nursery: trio.Nursery | None = None
        self._state = "new"
        self._ran = False
        self._checked_requests: dict[int, tuple[int, object]] = {}
        self._queue_was_empty = True
        self._shutdown_deadline: float | None = None
        self._shutdown_grace: float | None = None
        self._fatal: Exception | None = None
        self._past_hint_since: float | None = None
        self._started_at = 0.0

    # -- control -------------------------------------------------------------------------

    def shutdown(self, grace_period: float | None = None) -> None:
        """Stop admitting new work; cancel running tasks after ``grace_period`` seconds.

        ``None`` waits for running tasks however long they take. Calling again while shutting
        down can only bring the deadline closer (a second Ctrl-C that means "now"); a longer or
        ``None`` grace period is then ignored. Not a checkpoint.
        """
        if self._state == "finished":
            return
        if grace_period is not None and not (is_number(grace_period) and grace_period >= 0):
            raise ConfigurationError(
                "shutdown.grace_period",
                f"got {grace_period!r}",
                "pass a number of seconds >= 0, or None to wait for running tasks",
            )
        if self._state == "shutting_down":
            self._escalate_shutdown(grace_period)
            return
        started = self._state != "new"
        self._state = "shutting_down"
        self.admission.begin_shutdown()
        self._shutdown_grace = grace_period
        if started and grace_period is not None:
            self._shutdown_deadline = trio.current_time() + grace_period
        self._notify()

    def _escalate_shutdown(self, grace_period: float | None) -> None:
        if grace_period is None:
            return
        grace = self._shutdown_grace
        if grace is None or grace_period < grace:
            self._shutdown_grace = grace_period
        if self._ran:  # the run's clock is running: move its deadline closer
            deadline = trio.current_time() + grace_period
            current = self._shutdown_deadline
            if current is None or deadline < current:
                self._shutdown_deadline = deadline
                self._notify()

    def notify(self) -> None:
        """Wake the dispatch loop, e.g. after adding tasks to the tracker mid-run.

        Safe to call any time from the run's event loop; not a checkpoint.
        """
        self._notify()

    def reconfigure(
        self, limits: Mapping[str, int], *, policy: TaskAdmissionPolicy | None = None
    ) -> None:
        """Resize task admission live (see :meth:`TaskAdmissionController.reconfigure`).

        Held leases are never revoked; the dispatch loop is woken so growth is used at once.
        """
        self.admission.reconfigure(limits, policy=policy)
        if self.events.enabled:
            self.events.scheduler(
                "config_reloaded",
                diagnostics={
                    "limits": dict(self.admission.limits),
                    "policy": self.admission.policy.name,
                },
            )
        self._notify()

    @property
    def running(self) -> int:
        """Number of workers currently holding a lease."""
        return self._running

    def _notify(self) -> None:
        wake = self._wake
        wake.pending = True
        if wake.parked:
            wake.parked = False
            wake.lot.unpark_all()

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> SchedulerRunResult:
        """Run until the tracker is finished or a shutdown completes.

        Cancelling the caller's scope cancels every worker; leases are still released and
        ``trio.Cancelled`` propagates.
        """
        if self._ran:
            raise SchedulerClosedError("this scheduler already ran; create a new one per run")
        self._ran = True
        if self._state == "new":
            self._state = "running"
        self._started_at = trio.current_time()
        if self._state == "shutting_down" and self._shutdown_grace is not None:
            # shutdown() before run(): the grace period starts now, on the run's clock.
            self._shutdown_deadline = self._started_at + self._shutdown_grace
        fatal: Exception | None = None
        em = self.events
        if em.enabled:
            em.scheduler(
                "scheduler_job_started",
                diagnostics={
                    "run_id": self.run_id,
                    "limits": dict(self.admission.limits),
                    "policy": self.admission.policy.name,
                },
            )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._dispatch_loop(nursery)
                except Exception as exc:
                    # Surface the error itself (not wrapped in an ExceptionGroup) once
                    # every running worker has been cancelled and has released its lease.
                    fatal = exc
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            if em.enabled:  # the run ends here too: say so, so observers can close it
                reason = type(exc).__name__
                if isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[1] is None:
                    reason = "Cancelled"  # the run's nursery wraps its workers' Cancelled
                em.scheduler("scheduler_job_completed", reason=reason)
            raise
        finally:
            self._nursery = None
            for task in self.queue.drain():
                attempts = self._attempts.get(task.task_id, 0)
                self._outcomes[task.task_id] = TaskRunOutcome(
                    status="cancelled",
                    attempts=attempts,
                    reason="awaiting_retry" if attempts else "not_started",
                )
        if fatal is None:
            fatal = self._fatal
        if fatal is not None:
            self._state = "finished"
            if em.enabled:
                em.scheduler("scheduler_job_completed", reason=type(fatal).__name__)
            raise fatal
        shutdown = self._state == "shutting_down"
        self._state = "finished"
        self._mark_unstarted()
        counts = Counter(o.status for o in self._outcomes.values())
        finished_at = trio.current_time()
        if em.enabled:
            em.scheduler("queue_drained")
            em.scheduler(
                "scheduler_job_completed",
                diagnostics={"counts": dict(counts), "shutdown": shutdown},
            )
        return SchedulerRunResult(
            outcomes=dict(self._outcomes),
            counts={s: counts.get(s, 0) for s in TASK_STATUSES},
            admission=self.admission.view(),
            event_count=em.count,
            started_at=self._started_at,
            finished_at=finished_at,
            shutdown_requested=shutdown,
            sink_errors=em.sink_errors,
        )

    def _mark_unstarted(self) -> None:
        tasks = getattr(self.tracker, "tasks", None)
        if tasks is None:
            return
        dropped = getattr(self.tracker, "dropped", {})
        for task_id in tasks:
            if task_id not in self._outcomes:
                if task_id in dropped:
                    self._outcomes[task_id] = TaskRunOutcome(
                        status="dropped", reason=dropped[task_id]
                    )
                else:
                    attempts = self._attempts.get(task_id, 0)
                    self._outcomes[task_id] = TaskRunOutcome(
                        status="cancelled",
                        attempts=attempts,
                        reason="awaiting_retry" if attempts else "not_started",
                    )

    async def _dispatch_loop(self, nursery: trio.Nursery) -> None:
        tracker = self.tracker
        queue = self.queue
        wake = self._wake
        while True:
            wake.pending = False
            if self._state == "shutting_down":
                if self._running == 0:
                    return
                deadline = math.inf if self._shutdown_deadline is None else self._shutdown_deadline
                if trio.current_time() >= deadline:
                    nursery.cancel_scope.cancel()
                    return
            else:
                frontier = tracker.ready_frontier()
                if frontier:
                    self._enqueue(frontier)
                if queue._count:
                    hint = self._dispatch(nursery)
                    self._queue_was_empty = False
                else:
                    hint = None
                    if not self._queue_was_empty:
                        self._queue_was_empty = True
                        if self.events.enabled:
                            self.events.scheduler(
                                "queue_empty", diagnostics={"running": self._running}
                            )
                if self._running == 0 and tracker.is_finished:
                    return
                next_ready = tracker.next_ready_at()
                deadline = math.inf if next_ready is None else next_ready
                if hint is not None and hint < deadline:
                    # A hint already in the past would make the loop spin: re-poll at most
                    # once per millisecond instead.
                    now = trio.current_time()
                    if hint <= now and self._running == 0:
                        # Nothing runs and the policy's "try again at" has passed, yet it
                        # still refuses: past a grace period that is a stall, not a wait.
                        since = self._past_hint_since
                        if since is None:
                            self._past_hint_since = now
                        elif now - since > _PAST_HINT_STALL_SECONDS:
                            self._stalled()
                    else:
                        self._past_hint_since = None
                    deadline = max(hint, now + _MIN_REPOLL)
                else:
                    self._past_hint_since = None
                if wake.pending:
                    continue
                if self._running == 0 and deadline == math.inf:
                    self._stalled()
            wake.parked = True
            with trio.move_on_at(deadline):
                await wake.lot.park()
            wake.parked = False

    def _stalled(self) -> None:
        view = self.queue.view()
        if view.queued_total:
            summary = self.admission.explain_blocked(view)
            raise SchedulerStalledError(
                f"{view.queued_total} task(s) queued but none can be admitted with nothing "
                f"running: {summary.dominant_reasons}. Fix: check the admission policy and "
                "per-group caps against the resource limits"
            )
        raise SchedulerStalledError(
            "the completion tracker is not finished but reports no ready task and nothing is "
            "running or deferred. Fix: the tracker must eventually make every task ready or drop it"
        )

    def _enqueue(self, frontier: list[SchedulableTask] | Any) -> None:
        em = self.events
        # Most tasks share one resource mapping: check each distinct mapping once per limits.
        checked = self._checked_requests
        check = self.admission.check_request
        limits = self.admission.limits_version
        for task in frontier:
            key = id(task.resources)
            seen = checked.get(key)
            if seen is None or seen[0] != limits:
                check(task)
                checked[key] = (limits, task.resources)  # the reference pins the id
        accepted = self.queue.enqueue(frontier)
        self.tracker.mark_enqueued(accepted)
        if em.enabled and accepted:
            for task in frontier:
                em.scheduler("dependency_ready", task_id=task.task_id, group=task.group.key)
            for task_id in accepted:
                em.scheduler("ready_enqueued", task_id=task_id)

    def _dispatch(self, nursery: trio.Nursery) -> float | None:
        """Admit and spawn until blocked. Returns a policy's ``available_after`` hint, if any."""
        queue = self.queue
        admission = self.admission
        is_eligible: Callable[[SchedulableTask, QueueView], bool] = admission.is_eligible
        em = self.events
        spawn = nursery.start_soon
        run_task = self._run_task
        attempts = self._attempts
        skipped: list[tuple[SchedulableTask, TaskAdmissionDenied]] | None = None
        if em.enabled and getattr(admission.policy, "DETAIL_PREFIX", None) is not None:
            skipped = []
            is_eligible = self._recording_eligibility(skipped)
        while queue._count and admission.free_resources:
            selection = queue.select_next(is_eligible)
            if skipped:
                self._emit_advisory_skips(skipped, None if selection is None else selection.item)
            if selection is None:
                # Free units exist but no head fits them (policy denial, or a head needing more
                # units than are free): learn when to look again. O(groups), once per round.
                summary = admission.explain_blocked(queue.view())
                if em.enabled:
                    self._emit_blocked(summary)
                return summary.available_after
            item = selection.item
            decision = admission.try_acquire(item, selection.view)
            if type(decision) is TaskAdmissionDenied:  # eligibility changed under us
                if em.enabled:
                    em.scheduler(
                        "admission_denied",
                        task_id=item.task_id,
                        group=item.group.key,
                        reason=decision.reason,
                        available_after=decision.available_after,
                    )
                return decision.available_after
            assert isinstance(decision, TaskAdmissionLease)
            if em.enabled:
                em.scheduler("selected", task_id=item.task_id, group=item.group.key)
                em.scheduler(
                    "task_lease_acquired",
                    task_id=item.task_id,
                    group=item.group.key,
                    lease_id=decision.lease_id,
                )
            task = queue.commit(selection)
            if task is None:
                admission.release(decision)
                if em.enabled:
                    em.scheduler(
                        "stale_selection", task_id=item.task_id, lease_id=decision.lease_id
                    )
                    em.scheduler(
                        "task_lease_released",
                        task_id=item.task_id,
                        lease_id=decision.lease_id,
                        reason="stale_selection",
                    )
                continue
            task_id = task.task_id
            attempt = attempts.get(task_id, 0) + 1
            attempts[task_id] = attempt
            try:
                self._spawn(spawn, run_task, task, decision, attempt)
            except BaseException as exc:  # release first, then report
                self._spawn_failed(task, decision, exc)
                continue
            self._running += 1
            if em.enabled:
                em.scheduler(
                    "worker_spawned", task_id=task_id, lease_id=decision.lease_id, attempt=attempt
                )
        return None

    def _recording_eligibility(
        self, skipped: list[tuple[SchedulableTask, TaskAdmissionDenied]]
    ) -> Callable[[SchedulableTask, QueueView], bool]:
        """``is_eligible`` that also records heads an advisory policy held back.

        Used only while events are on and the policy is advisory (it has ``DETAIL_PREFIX``),
        so the common path keeps the bare bound method.
        """
        admission = self.admission
        is_eligible = admission.is_eligible
        prefix = admission.policy.DETAIL_PREFIX  # type: ignore[attr-defined]

        def recording(item: SchedulableTask, view: QueueView) -> bool:
            if is_eligible(item, view):
                return True
            denial = admission.evaluate(item, view)
            if denial is not None and (denial.detail or "").startswith(prefix):
                skipped.append((item, denial))
            return False

        return recording

    def _emit_advisory_skips(
        self,
        skipped: list[tuple[SchedulableTask, TaskAdmissionDenied]],
        admitted: SchedulableTask | None,
    ) -> None:
        parse = getattr(self.admission.policy, "parse_detail", None)
        for item, denial in skipped:
            diagnostics: dict[str, Any] = {"detail": denial.detail}
            parsed = parse(denial.detail) if parse is not None else None
            if parsed:
                diagnostics.update(parsed)
            if admitted is not None:
                diagnostics["admitted_instead"] = admitted.task_id
            self.events.scheduler(
                "request_pressure_advisory_skipped",
                task_id=item.task_id,
                group=item.group.key,
                reason=denial.reason,
                diagnostics=diagnostics,
            )
        skipped.clear()

    def _spawn(
        self,
        spawn: Callable[..., None],
        run_task: Callable[..., Awaitable[None]],
        task: SchedulableTask,
        lease: TaskAdmissionLease,
        attempt: int,
    ) -> None:
        """Start one worker in the run's nursery (a seam for tests of spawn failure)."""
        spawn(run_task, task, lease, attempt)

    def _emit_blocked(self, summary: TaskAdmissionBlockSummary) -> None:
        reasons = dict(summary.dominant_reasons)
        kind: Literal["group_capped", "admission_blocked"] = (
            "group_capped"
            if reasons and max(reasons, key=reasons.__getitem__) == "group_capped"
            else "admission_blocked"
        )
        self.events.scheduler(
            kind,
            reason=summary.dominant_reasons[0][0] if summary.dominant_reasons else None,
            available_after=summary.available_after,
            diagnostics={"queued": summary.queued, "blocked_groups": len(summary.blocked_groups)},
        )

    def _spawn_failed(
        self, task: SchedulableTask, lease: TaskAdmissionLease, exc: BaseException
    ) -> None:
        self._release(task, lease)
        if self.events.enabled:
            self.events.scheduler(
                "worker_spawn_failed",
                task_id=task.task_id,
                lease_id=lease.lease_id,
                reason=type(exc).__name__,
            )
        if not isinstance(exc, Exception):
            self._cancelled(task, exc)
            raise exc
        self._fail(task, exc, spawn_failed=True)
        # With no backoff the task is ready again at once, yet neither deferred nor running:
        # only this wake-up makes the loop pull it back in.
        self._notify()

    # -- workers -------------------------------------------------------------------------

    async def _run_task(
        self, task: SchedulableTask, lease: TaskAdmissionLease, attempt: int
    ) -> None:
        em = self.events
        error: BaseException | None = None
        result: Any = None
        try:
            # Inside the try: whatever fails here is the attempt's failure, and the lease
            # is still released below.
            if em.enabled or self.run_id is not None:
                set_correlation(
                    RuntimeCorrelation(
                        run_id=self.run_id,
                        task_id=task.task_id,
                        task_execution_id=f"{task.task_id}#{attempt}",
                    )
                )
            result = await self.worker(task)
        except trio.Cancelled as exc:
            error = exc
            raise
        except Exception as exc:
            error = exc
        except BaseException as exc:
            error = exc
            raise
        finally:
            # No checkpoint below: this cleanup cannot be interrupted by cancellation.
            self._running -= 1
            self._release(task, lease)
            try:
                if error is None:
                    self._succeed(task, result)
                elif isinstance(error, Exception):
                    self._fail(task, error)
                else:
                    self._cancelled(task, error)
            except Exception as exc:
                # A broken tracker or ``is_retryable``: stop the run and surface the error
                # itself (not an ExceptionGroup) once every worker has released its lease.
                self._abort(exc)
            self._notify()

    def _abort(self, exc: Exception) -> None:
        if self._fatal is None:
            self._fatal = exc
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _release(self, task: SchedulableTask, lease: TaskAdmissionLease) -> None:
        result = self.admission.release(lease)
        em = self.events
        if em.enabled:
            if result.released:
                em.scheduler("task_lease_released", task_id=task.task_id, lease_id=lease.lease_id)
            else:
                em.scheduler(
                    "release_diagnostic",
                    task_id=task.task_id,
                    lease_id=lease.lease_id,
                    reason=result.reason,
                )

    def _succeed(self, task: SchedulableTask, result: Any) -> None:
        task_id = task.task_id
        if isinstance(result, TaskOutcome) and result.kind != "success":
            reason = result.reason or f"worker_requested_{result.kind}"
            if result.kind == "retry":
                attempt = self._attempts[task_id]
                if attempt < self.retry.max_attempts:
                    self._defer(task, result.delay, reason)
                else:
                    self._drop(task, f"attempts exhausted ({attempt}): {reason}")
            else:
                self._drop(task, reason)
            return
        self.tracker.mark_complete(task, TaskOutcome.success())
        self._outcomes[task_id] = TaskRunOutcome(
            status="succeeded", attempts=self._attempts[task_id]
        )
        if self.events.enabled:
            self.events.scheduler("task_completed", task_id=task_id, reason="succeeded")

    def _fail(self, task: SchedulableTask, error: Exception, *, spawn_failed: bool = False) -> None:
        attempt = self._attempts[task.task_id]
        reason = f"{type(error).__name__}: {error}"[:200]
        if self.is_retryable(error) or spawn_failed:
            # While shutting down, a retryable failure (often the shutdown itself, seen through
            # request admission) never spends the last attempt: the task ends cancelled /
            # awaiting_retry, so a later run can still do it and its downstream is not dropped.
            if attempt < self.retry.max_attempts or self._state == "shutting_down":
                retry_after = _retry_hint(error)
                if isinstance(retry_after, (int, float)) and math.isfinite(retry_after):
                    delay = max(0.0, retry_after)  # a hint in the past means "now"
                else:
                    delay = self.retry.backoff(attempt)  # no hint, or not a usable one
                self._defer(task, delay, reason)
                return
            reason = f"attempts exhausted ({attempt}): {reason}"
        self._drop(task, reason)

    def _defer(self, task: SchedulableTask, delay: float, reason: str) -> None:
        self.tracker.mark_complete(task, TaskOutcome.retry(delay, reason))
        if self.events.enabled:
            self.events.scheduler(
                "retry_deferred",
                task_id=task.task_id,
                attempt=self._attempts[task.task_id],
                reason=reason,
                available_after=trio.current_time() + delay,
            )

    def _drop(self, task: SchedulableTask, reason: str) -> None:
        task_id = task.task_id
        dropped = self.tracker.mark_complete(task, TaskOutcome.drop(reason))
        self._outcomes[task_id] = TaskRunOutcome(
            status="failed", attempts=self._attempts[task_id], reason=reason
        )
        for other in dropped:
            self._outcomes[other] = TaskRunOutcome(status="dropped", reason=f"upstream {task_id!r}")
        if self.events.enabled:
            self.events.scheduler(
                "non_retryable_dropped",
                task_id=task_id,
                reason=reason,
                diagnostics={"downstream_dropped": len(dropped)},
            )

    def _cancelled(self, task: SchedulableTask, error: BaseException) -> None:
        task_id = task.task_id
        reason = type(error).__name__
        if isinstance(error, BaseExceptionGroup) and error.split(trio.Cancelled)[1] is None:
            reason = "Cancelled"  # a worker's own nursery wraps its children's Cancelled
        self._outcomes[task_id] = TaskRunOutcome(
            status="cancelled", attempts=self._attempts[task_id], reason=reason
        )
        if self.events.enabled:
            self.events.scheduler("cancelled", task_id=task_id, reason=reason)


def _default_retryable(error: BaseException) -> bool:
    """A :class:`RetryableTaskError`, or a group made only of them (a worker that ran calls
    in its own nursery and every one of them failed in a retryable way)."""
    if isinstance(error, RetryableTaskError):
        return True
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(RetryableTaskError)
        return rest is None
    return False


def _retry_hint(error: BaseException) -> object:
    """The error's ``retry_after``; for a group, the latest hint among its members."""
    if isinstance(error, BaseExceptionGroup):
        hints = [_retry_hint(e) for e in error.exceptions]
        usable = [h for h in hints if isinstance(h, (int, float)) and math.isfinite(h)]
        return max(usable) if usable else None
    return getattr(error, "retry_after", None)
