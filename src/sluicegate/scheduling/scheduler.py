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
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Generic

import trio

from .._internal.checks import describe, is_number
from .._internal.cpu_time import cpu_clocks
from ..errors import ConfigurationError, SchedulerClosedError
from ..events.emitter import EventEmitter
from ..events.sinks import EventSink
from .admission import TaskAdmissionController
from .dispatch import Dispatcher
from .leases import (
    TaskAdmissionLease,
)
from .outcomes import (
    TASK_STATUSES,
    SchedulerInterrupted,
    SchedulerRunResult,
    SchedulerStalledError,
)
from .policies.base import TaskAdmissionPolicy
from .queue import FairTaskQueue
from .readiness import CompletionTracker
from .retry import RetryPolicy, default_is_retryable
from .task import PayloadT, SchedulableTask
from .terminal import TaskTerminal

Worker = Callable[[SchedulableTask[PayloadT]], Awaitable[object]]


"""An async function run once per attempt of a task: ``await worker(task)``."""


_MIN_REPOLL: Final = 0.001  # seconds; floor for re-polling a policy's past available_after


_PAST_HINT_STALL_SECONDS: Final = 5.0


"""How long a policy may keep denying, with nothing running, at an ``available_after`` that
has already passed before the run fails with :class:`SchedulerStalledError`."""


def _check_options(
    admission: object,
    capacity: object,
    queue: object,
    sink: object,
    retry: object,
    is_retryable: object,
    run_id: object,
) -> None:
    """Reject a scheduler option of the wrong kind at construction, naming it."""
    field = "AsyncTaskScheduler"
    if admission is not None and capacity is not None:
        raise ConfigurationError(
            f"{field}.capacity",
            "given together with admission=, whose limits would silently win",
            "set the capacity on the TaskAdmissionController (limits= or capacity=), "
            "or drop admission=",
        )
    if capacity is not None and (
        not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0
    ):
        raise ConfigurationError(
            f"{field}.capacity", f"got {describe(capacity)}", "use a positive integer"
        )
    wrong = [
        (name, value, kind, fix)
        for name, value, kind, fix in (
            ("admission", admission, TaskAdmissionController, "a TaskAdmissionController"),
            ("queue", queue, FairTaskQueue, "a FairTaskQueue"),
            ("retry", retry, RetryPolicy, "a RetryPolicy, e.g. RetryPolicy(max_attempts=3)"),
        )
        if value is not None and not isinstance(value, kind)
    ]
    if wrong:
        name, value, _, fix = wrong[0]
        raise ConfigurationError(f"{field}.{name}", f"got {describe(value)}", f"pass {fix}")
    if sink is not None and not callable(getattr(sink, "emit", None)):
        raise ConfigurationError(
            f"{field}.sink",
            f"{describe(sink)} has no emit(event) method",
            "pass an event sink such as InMemoryEventSink() or JsonLinesEventSink(path)",
        )
    if is_retryable is not None and not callable(is_retryable):
        raise ConfigurationError(
            f"{field}.is_retryable",
            f"{describe(is_retryable)} is not callable",
            "pass a function exception -> bool, or None for default_is_retryable",
        )
    if run_id is not None and not isinstance(run_id, str):
        raise ConfigurationError(f"{field}.run_id", f"got {describe(run_id)}", "use a string")


class _Dispatch:
    """Wake-up flag for the dispatch loop (single event loop, no locks)."""

    __slots__ = ("lot", "parked", "pending")

    def __init__(self) -> None:
        self.lot = trio.lowlevel.ParkingLot()
        self.pending = False
        self.parked = False


class AsyncTaskScheduler(Generic[PayloadT]):
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
    - While events are on (or a ``run_id`` is given) each worker runs with its task's
      :class:`~sluicegate.events.RuntimeCorrelation` set, so the events it causes (model
      calls) name the task. ``task_correlation=False`` leaves that to a worker that sets a
      richer correlation of its own (the data-generation runner: row, column, row group).
    - ``events=`` (instead of ``sink=``) continues an existing
      :class:`~sluicegate.events.EventEmitter`'s stream: several schedulers in a row (the
      data-generation runner's segments) number one stream's events without gaps.
      ``job_events=False`` leaves ``scheduler_job_started`` / ``scheduler_job_completed`` to
      the caller, so that several schedulers read as one run (one report, one trace).
    - ``capacity`` (default 64) sizes the default task admission (resource ``submission``);
      pass ``admission=`` instead for several resources or another policy, not both.

    Generic in the payload type: ``AsyncTaskScheduler(tracker, worker)`` with a
    ``DagCompletionTracker[Row]`` checks (statically) that ``worker`` takes
    ``SchedulableTask[Row]``.

    The module is split by concern: this class owns control (``shutdown``, ``notify``,
    ``reconfigure``), the run and its dispatch loop, and each worker's lease;
    :class:`~.terminal.TaskTerminal` owns what an attempt's ending means (retry, drop,
    outcome); :mod:`.outcomes` holds the result types.
    """

    def __init__(
        self,
        tracker: CompletionTracker[PayloadT],
        worker: Worker[PayloadT],
        *,
        admission: TaskAdmissionController | None = None,
        capacity: int | None = None,
        queue: FairTaskQueue | None = None,
        sink: EventSink | None = None,
        retry: RetryPolicy | None = None,
        is_retryable: Callable[[BaseException], bool] | None = None,
        run_id: str | None = None,
        task_correlation: bool = True,
        events: EventEmitter | None = None,
        job_events: bool = True,
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
        _check_options(admission, capacity, queue, sink, retry, is_retryable, run_id)
        if not isinstance(task_correlation, bool):
            raise ConfigurationError(
                "AsyncTaskScheduler.task_correlation",
                f"got {describe(task_correlation)}",
                "use True (each worker sees its task's RuntimeCorrelation) or False (the "
                "worker sets its own)",
            )
        if not isinstance(job_events, bool):
            raise ConfigurationError(
                "AsyncTaskScheduler.job_events",
                f"got {describe(job_events)}",
                "use True (the scheduler reports its run's start and end) or False (the caller "
                "reports them, e.g. for several schedulers making one run)",
            )
        if events is not None and (sink is not None or not isinstance(events, EventEmitter)):
            raise ConfigurationError(
                "AsyncTaskScheduler.events",
                f"got {describe(events)}" + (" together with sink=" if sink is not None else ""),
                "pass an EventEmitter to continue its stream, or sink= for a new one, not both",
            )
        self.admission = (
            admission
            if admission is not None
            else TaskAdmissionController(capacity=64 if capacity is None else capacity)
        )
        self.queue = queue if queue is not None else FairTaskQueue()
        self.events = events if events is not None else EventEmitter(sink)
        self.retry = retry if retry is not None else RetryPolicy()
        self.is_retryable = is_retryable or default_is_retryable
        self.run_id = run_id
        self._terminal = TaskTerminal(tracker, self.retry, self.is_retryable, self.events)
        self._outcomes = self._terminal.outcomes
        self._dispatcher = Dispatcher(
            tracker=tracker,
            queue=self.queue,
            admission=self.admission,
            events=self.events,
            terminal=self._terminal,
            worker=worker,
            run_id=run_id,
            spawn=self._spawn,
            notify=self._notify,
            abort=self._abort,
        )
        self._dispatcher.correlate = task_correlation
        self._job_events = job_events
        self._wake = _Dispatch()
        self._nursery: trio.Nursery | None = None
        self._state = "new"
        self._ran = False
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
        self._terminal.shutting_down = True
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
        return self._dispatcher.running

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
        ``trio.Cancelled`` propagates. An error raised by the dispatch loop (a tracker, a
        policy, a sink) surfaces as itself, not inside an exception group, once every worker
        has released its lease. A ``KeyboardInterrupt`` (Ctrl-C), wherever it lands, winds
        the run down the same way and then raises :class:`SchedulerInterrupted`, which
        carries the partial result and says in one line what was interrupted.
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
        fatal: BaseException | None = None
        try:
            if self.events.enabled and self._job_events:
                self.events.scheduler(
                    "scheduler_job_started",
                    diagnostics={
                        "run_id": self.run_id,
                        "limits": dict(self.admission.limits),
                        "policy": self.admission.policy.name,
                        # CPU used over the run, against its wall time: "was it busy?"
                        **cpu_clocks(),
                    },
                )
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._dispatch_loop(nursery)
                except trio.Cancelled:
                    raise
                except BaseException as exc:
                    # Surface the error itself (not wrapped in an ExceptionGroup) once
                    # every running worker has been cancelled and has released its lease.
                    fatal = exc
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # What workers let out: only BaseExceptions that are not Exceptions (a
            # KeyboardInterrupt, SystemExit, ...) get past a worker's own handling.
            fatal = _what_workers_raised(group)
            if fatal is None:
                self._emit_ended(group)
                raise
        except BaseException as exc:  # the caller's scope was cancelled: say the run ended
            self._emit_ended(exc)
            raise
        finally:
            self._nursery = None
            self._dispatcher.detach()  # no scheduler <-> dispatcher cycle outlives the run
            self._terminal.not_run(task.task_id for task in self.queue.drain())
        if fatal is None:
            fatal = self._fatal
        if fatal is not None:
            if not _is_interrupt(fatal):
                self._state = "finished"
                self._emit_ended(fatal)
                raise fatal
            interrupted = SchedulerInterrupted(self._result(interrupted=True), fatal)
            interrupted.__context__ = fatal  # the full trace, for --debug and the like
            raise interrupted from None
        return self._result(interrupted=False)

    def _emit_ended(self, exc: BaseException) -> None:
        """``scheduler_job_completed`` for a run that ends by raising, so observers close it."""
        if not (self.events.enabled and self._job_events):
            return
        reason = type(exc).__name__
        if isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[1] is None:
            reason = "Cancelled"  # the run's nursery wraps its workers' Cancelled
        self.events.scheduler("scheduler_job_completed", reason=reason, diagnostics=cpu_clocks())

    def _result(self, *, interrupted: bool) -> SchedulerRunResult:
        """Close the run: give every task an outcome and build the result."""
        shutdown = self._state == "shutting_down"
        self._state = "finished"
        self._terminal.mark_unstarted()
        counts = Counter(o.status for o in self._outcomes.values())
        finished_at = trio.current_time()
        em = self.events
        if em.enabled:
            em.scheduler("queue_drained")
        if em.enabled and self._job_events:
            em.scheduler(
                "scheduler_job_completed",
                diagnostics={
                    "counts": dict(counts),
                    "shutdown": shutdown,
                    "interrupted": interrupted,
                    **cpu_clocks(),
                },
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
            interrupted=interrupted,
        )

    async def _dispatch_loop(self, nursery: trio.Nursery) -> None:
        tracker = self.tracker
        queue = self.queue
        wake = self._wake
        dispatcher = self._dispatcher
        while True:
            wake.pending = False
            if trio.current_effective_deadline() == -math.inf:
                # Cancelled (the caller's scope, or a worker's interrupt cancelled the run):
                # spawn nothing more; this checkpoint raises Cancelled.
                await trio.lowlevel.checkpoint()
            if self._state == "shutting_down":
                if dispatcher.running == 0:
                    return
                deadline = math.inf if self._shutdown_deadline is None else self._shutdown_deadline
                if trio.current_time() >= deadline:
                    nursery.cancel_scope.cancel()
                    return
            else:
                frontier = tracker.ready_frontier()
                if frontier:
                    dispatcher.enqueue(frontier)
                if len(queue):
                    hint = dispatcher.dispatch(nursery)
                    self._queue_was_empty = False
                else:
                    hint = None
                    if not self._queue_was_empty:
                        self._queue_was_empty = True
                        if self.events.enabled:
                            self.events.scheduler(
                                "queue_empty", diagnostics={"running": dispatcher.running}
                            )
                if dispatcher.running == 0 and tracker.is_finished:
                    return
                next_ready = tracker.next_ready_at()
                deadline = math.inf if next_ready is None else next_ready
                if hint is not None and hint < deadline:
                    # A hint already in the past would make the loop spin: re-poll at most
                    # once per millisecond instead.
                    now = trio.current_time()
                    if hint <= now and dispatcher.running == 0:
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
                if dispatcher.running == 0 and deadline == math.inf:
                    self._stalled()
            wake.parked = True
            if deadline == math.inf:  # no timer: a plain park saves a cancel scope per pass
                await wake.lot.park()
            else:
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

    def _abort(self, exc: Exception) -> None:
        if self._fatal is None:
            self._fatal = exc
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


def _what_workers_raised(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The error to surface for what the run's nursery raised, or ``None`` to let the group
    propagate (cancellation of the caller's scope): an interrupt anywhere in it wins; a
    single other error comes out by itself."""
    if group.subgroup(KeyboardInterrupt) is not None:
        return group
    _, rest = group.split(trio.Cancelled)
    if rest is None:
        return None
    leaves = _leaves(rest)
    return leaves[0] if len(leaves) == 1 else None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def _is_interrupt(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(KeyboardInterrupt) is not None
    return isinstance(error, KeyboardInterrupt)
