"""One dispatch round of the scheduler, and each worker's lease from spawn to release.

:class:`Dispatcher` is the part of :class:`~sluicegate.scheduling.AsyncTaskScheduler` that
does the work the dispatch loop asks for: queue the ready frontier, admit and spawn the
fairest eligible tasks until admission says no, and run each worker holding its lease. Every
step is synchronous except the worker itself: no checkpoint lies between granting a lease
and handing it to a spawned worker (or releasing it), and none in a worker's cleanup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import trio

from .._internal.leases import ReleaseResult
from ..events.correlation import RuntimeCorrelation, set_correlation
from ..events.emitter import EventEmitter
from .admission import TaskAdmissionController
from .leases import TaskAdmissionBlockSummary, TaskAdmissionDenied, TaskAdmissionLease
from .queue import FairTaskQueue, QueueSelection, QueueView
from .readiness import CompletionTracker
from .task import SchedulableTask
from .terminal import TaskTerminal

SpawnSeam = Callable[
    [
        Callable[..., None],
        Callable[..., Awaitable[None]],
        SchedulableTask,
        TaskAdmissionLease,
        int,
    ],
    None,
]


"""``spawn(start_soon, run_task, task, lease, attempt)``: how a worker is started."""


class Dispatcher:
    """Admits and spawns workers for one run (internal to the scheduler).

    ``running`` counts the workers holding a lease. ``notify`` wakes the dispatch loop;
    ``abort`` stops the run with an error once every worker has released its lease.
    """

    def __init__(
        self,
        *,
        tracker: CompletionTracker[Any],
        queue: FairTaskQueue,
        admission: TaskAdmissionController,
        events: EventEmitter,
        terminal: TaskTerminal,
        worker: Callable[[SchedulableTask[Any]], Awaitable[object]],
        run_id: str | None,
        spawn: SpawnSeam,
        notify: Callable[[], None],
        abort: Callable[[Exception], None],
    ) -> None:
        self.tracker = tracker
        self.queue = queue
        self.admission = admission
        self.events = events
        self._terminal = terminal
        self.worker = worker
        self.run_id = run_id
        self._spawn = spawn
        self._notify = notify
        self._abort = abort
        self.running = 0
        self.correlate = True
        """Set each worker's RuntimeCorrelation (``AsyncTaskScheduler(task_correlation=)``)."""
        self._checked_requests: dict[int, tuple[int, object]] = {}

    def detach(self) -> None:
        """Drop the scheduler's callbacks once its run is over.

        They are bound methods of the scheduler, which holds this dispatcher: a reference cycle
        that only the cyclic garbage collector frees, and it runs its full collections rarely.
        A scheduler keeps an outcome per task, so a sequence of finished schedulers (a pipeline
        runs one per segment of 50,000 cells) would keep every segment's outcomes alive until
        then: the process's memory grew with the table. Without the cycle, a finished
        scheduler is freed as soon as nothing else refers to it.
        """
        self._spawn = _closed_spawn
        self._notify = _nothing
        self._abort = _nothing

    def enqueue(self, frontier: Sequence[SchedulableTask[Any]]) -> None:
        """Queue the ready frontier (checking each distinct resource request once)."""
        em = self.events
        # Most tasks share one resource mapping: check each distinct mapping once per limits.
        checked = self._checked_requests
        check = self.admission.check_request
        limits = self.admission.limits_version
        last: object = None  # the mapping checked just before: usually all tasks share one
        for task in frontier:
            resources = task.resources
            if resources is last:
                continue
            key = id(resources)
            seen = checked.get(key)
            if seen is None or seen[0] != limits:
                check(task)
                checked[key] = (limits, resources)  # the reference pins the id
            last = resources
        accepted = self.queue.enqueue(frontier)
        self.tracker.mark_enqueued(accepted)
        if em.enabled and accepted:
            # Readiness and queueing are one instant, and the whole frontier is queued in it:
            # one event for every queued task, with their groups (schema 3).
            if len(accepted) == len(frontier):  # the usual case: the same tasks, in order
                ids = [task.task_id for task in frontier]
                groups: list[str | None] = [task.group.key for task in frontier]
            else:
                by_id = {task.task_id: task.group.key for task in frontier}
                ids = list(accepted)
                groups = [by_id.get(task_id) for task_id in ids]
            em.ready_frontier(ids, groups, trio.current_time())

    @trio.lowlevel.enable_ki_protection
    def dispatch(self, nursery: trio.Nursery) -> float | None:
        """Admit and spawn until blocked. Returns a policy's ``available_after`` hint, if any.

        KI-protected (a Ctrl-C arriving meanwhile is delivered at the dispatch loop's next
        checkpoint), and an exception raised by a hook (sink, policy, tracker) in the middle
        never strands a lease: see :meth:`_start`.
        """
        queue = self.queue
        admission = self.admission
        is_eligible: Callable[[SchedulableTask, QueueView], bool] = admission.is_eligible
        em = self.events
        spawn = nursery.start_soon
        skipped: list[tuple[SchedulableTask, TaskAdmissionDenied]] | None = None
        if em.enabled:
            skipped = []
            is_eligible = self._recording_eligibility(skipped)
        while len(queue) and admission.free_resources:
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
            self._start(selection, decision, spawn)
        return None

    def _start(
        self, selection: QueueSelection, lease: TaskAdmissionLease, spawn: Callable[..., None]
    ) -> None:
        """Commit ``selection`` and spawn its worker holding ``lease``.

        On every path the lease ends up held by a spawned worker or released: a stale
        selection releases it, a failed spawn releases it before anything else, and an
        exception raised before the hand-off (by an event sink, say, even a
        ``KeyboardInterrupt``) releases it and propagates, the task staying queued.
        """
        item = selection.item
        em = self.events
        try:
            task = self.queue.commit(selection)
        except BaseException:
            self.admission.release(lease)
            raise
        if task is None:
            result = self.admission.release(lease)
            if em.enabled:
                self._emit_selected(item, lease)
                self._emit_release("stale_selection", item, lease, result)
            return
        task_id = task.task_id
        attempts = self._terminal.attempts
        # A task carried over from an earlier scheduler of the same run continues its count.
        attempt = attempts.get(task_id, 0)
        prior = task.prior_attempts
        attempt = (attempt if attempt >= prior else prior) + 1
        attempts[task_id] = attempt
        # Counted before the spawn: the worker's cleanup decrements it, whenever it runs.
        self.running += 1
        try:
            self._spawn(spawn, self.run_task, task, lease, attempt)
        except BaseException as exc:  # release first, then report
            self.running -= 1
            self._spawn_failed(task, lease, exc)
            return
        if em.enabled:
            # Selected, leased and spawned in one instant: one event (schema 2).
            # ``now``: the instant of the grant (no second clock read)
            em.task_event(
                "task_dispatched",
                task_id,
                task.group.key,
                lease.lease_id,
                attempt,
                None,
                lease.acquired_at,
            )

    def _emit_selected(self, item: SchedulableTask, lease: TaskAdmissionLease) -> None:
        """The unusual paths (stale selection, failed spawn): the selection and its lease."""
        self.events.scheduler(
            "selected", task_id=item.task_id, group=item.group.key, lease_id=lease.lease_id
        )

    def _emit_release(
        self,
        kind: Literal["stale_selection", "worker_spawn_failed"],
        task: SchedulableTask,
        lease: TaskAdmissionLease,
        result: ReleaseResult,
        *,
        reason: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """``kind`` carries the released lease; a failed release is its own diagnostic."""
        em = self.events
        if not result.released:
            em.scheduler(
                "release_diagnostic",
                task_id=task.task_id,
                lease_id=lease.lease_id,
                reason=result.reason,
            )
        em.scheduler(
            kind,
            task_id=task.task_id,
            lease_id=lease.lease_id if result.released else None,
            attempt=attempt,
            reason=reason,
        )

    def _recording_eligibility(
        self, skipped: list[tuple[SchedulableTask, TaskAdmissionDenied]]
    ) -> Callable[[SchedulableTask, QueueView], bool]:
        """``is_eligible`` that also records the heads a policy skipped for a peer.

        Used only while events are on, so the common path keeps the bare bound method. A
        held-back head is evaluated once more (same state, so the same denial) to read its
        typed :class:`~.leases.PeerSkip`.
        """
        admission = self.admission
        is_eligible = admission.is_eligible

        def recording(item: SchedulableTask, view: QueueView) -> bool:
            if is_eligible(item, view):
                return True
            denial = admission.evaluate(item, view)
            if denial is not None and denial.skip is not None:
                skipped.append((item, denial))
            return False

        return recording

    def _emit_advisory_skips(
        self,
        skipped: list[tuple[SchedulableTask, TaskAdmissionDenied]],
        admitted: SchedulableTask | None,
    ) -> None:
        for item, denial in skipped:
            skip = denial.skip
            assert skip is not None
            diagnostics: dict[str, Any] = {
                "detail": denial.detail,
                "endpoint": skip.endpoint,
                "signal": skip.signal,
                "peer_group": skip.peer_group,
            }
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
        result = self.admission.release(lease)
        if self.events.enabled:
            self._emit_selected(task, lease)
            self._emit_release(
                "worker_spawn_failed",
                task,
                lease,
                result,
                reason=type(exc).__name__,
                attempt=self._terminal.attempts.get(task.task_id),
            )
        if not isinstance(exc, Exception):
            self._terminal.cancelled(task, exc)
            raise exc
        self._terminal.fail(task, exc, spawn_failed=True)
        # With no backoff the task is ready again at once, yet neither deferred nor running:
        # only this wake-up makes the loop pull it back in.
        self._notify()

    # -- workers -------------------------------------------------------------------------

    @trio.lowlevel.enable_ki_protection
    async def run_task(
        self, task: SchedulableTask, lease: TaskAdmissionLease, attempt: int
    ) -> None:
        """One attempt of ``task`` holding ``lease``; the lease is released exactly once.

        KI-protected except for the worker itself (:meth:`_call_worker`), so a Ctrl-C can
        land inside the worker but never between the worker's end and the release.
        """
        em = self.events
        error: BaseException | None = None
        result: Any = None
        try:
            # Inside the try: whatever fails here is the attempt's failure, and the lease
            # is still released below.
            if self.correlate and (em.enabled or self.run_id is not None):
                set_correlation(
                    RuntimeCorrelation(
                        run_id=self.run_id,
                        task_id=task.task_id,
                        task_execution_id=f"{task.task_id}#{attempt}",
                    )
                )
            result = await self._call_worker(task)
        except BaseException as exc:
            error = exc
            if not isinstance(exc, Exception):
                raise  # Cancelled, KeyboardInterrupt, ...: recorded below, then propagated
        finally:
            # No checkpoint below: this cleanup cannot be interrupted by cancellation.
            self._finish(task, lease, attempt, result, error)

    @trio.lowlevel.disable_ki_protection
    async def _call_worker(self, task: SchedulableTask) -> object:
        # The user's code runs unprotected, so Ctrl-C reaches a worker stuck in a busy loop.
        return await self.worker(task)

    def _finish(
        self,
        task: SchedulableTask,
        lease: TaskAdmissionLease,
        attempt: int,
        result: Any,
        error: BaseException | None,
    ) -> None:
        self.running -= 1
        terminal = self._terminal
        if self.events.enabled:
            self.release(task, lease)
        else:
            self.admission.release(lease)
        try:
            if error is None:
                terminal.succeed(task, result, attempt)
            elif isinstance(error, Exception):
                terminal.fail(task, error)
            else:
                terminal.cancelled(task, error)
        except Exception as exc:
            # A broken tracker or ``is_retryable``: stop the run and surface the error
            # itself (not an ExceptionGroup) once every worker has released its lease.
            self._abort(exc)
        finally:
            terminal.released_lease = None
        self._notify()

    def release(self, task: SchedulableTask, lease: TaskAdmissionLease) -> None:
        """Return ``lease`` to task admission; the terminal event that follows carries it.

        The release and the attempt's ending are one instant, so the release is reported by
        that event (``TaskTerminal.released_lease``); a failed release by its own
        ``release_diagnostic``.
        """
        result = self.admission.release(lease)
        if result.released:
            self._terminal.released_lease = lease.lease_id
        else:
            self.events.scheduler(
                "release_diagnostic",
                task_id=task.task_id,
                lease_id=lease.lease_id,
                reason=result.reason,
            )


def _nothing(*_: object) -> None:
    """A finished run's notify and abort: nothing to wake or stop any more."""


def _closed_spawn(*_: object) -> None:
    raise RuntimeError("this scheduler's run is over: it spawns no more workers")
