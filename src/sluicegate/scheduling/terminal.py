"""The worker terminal path: how an attempt's ending becomes a tracker update and an outcome.

:class:`TaskTerminal` is the part of :class:`~sluicegate.scheduling.AsyncTaskScheduler` that
runs after a worker ended (or could not be spawned) and its lease is back: it classifies the
ending (success, retry, drop, cancelled), tells the tracker, records the task's
:class:`TaskRunOutcome` and emits the matching event. It is synchronous and has no
checkpoint, so the scheduler can call it from a worker's ``finally``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final

import trio

from .._internal.checks import is_number
from ..events.emitter import EventEmitter
from .outcomes import TaskRunOutcome
from .readiness import CompletionTracker, TaskOutcome
from .retry import RetryPolicy, error_cause, retry_hint
from .task import SchedulableTask

_SUCCESS: Final = TaskOutcome.success()


_SUCCEEDED: Final = (None, *(TaskRunOutcome(status="succeeded", attempts=n) for n in range(1, 8)))


class TaskTerminal:
    """Records how every attempt of a run ended (internal to the scheduler).

    ``attempts`` counts the attempts started per task id (the dispatch loop bumps it before a
    spawn); ``outcomes`` holds each task's terminal state once it has one.
    """

    __slots__ = (
        "attempts",
        "events",
        "is_retryable",
        "outcomes",
        "released_lease",
        "retry",
        "shutting_down",
        "tracker",
    )

    def __init__(
        self,
        tracker: CompletionTracker[Any],
        retry: RetryPolicy,
        is_retryable: Callable[[BaseException], bool],
        events: EventEmitter,
    ) -> None:
        self.tracker = tracker
        self.retry = retry
        self.is_retryable = is_retryable
        self.events = events
        self.outcomes: dict[Hashable, TaskRunOutcome] = {}
        self.attempts: dict[Hashable, int] = {}
        self.shutting_down = False
        # The task lease released in the instant this ending is recorded (set by the worker's
        # cleanup around one terminal call): its event carries it instead of a separate
        # release event (schema 2).
        self.released_lease: int | None = None

    def succeed(self, task: SchedulableTask, result: Any, attempt: int) -> None:
        """Attempt ``attempt`` returned ``result`` (a non-success :class:`TaskOutcome` is
        honoured)."""
        task_id = task.task_id
        if isinstance(result, TaskOutcome) and result.kind != "success":
            reason = result.reason or f"worker_requested_{result.kind}"
            if result.kind == "retry":
                self._retry(task, result.delay, reason, None)
            else:
                self.drop(task, reason)
            return
        self.tracker.mark_complete(task, _SUCCESS)
        attempts = attempt
        # Immutable, so one value per attempt count serves every task (no allocation).
        outcome = _SUCCEEDED[attempts] if attempts < len(_SUCCEEDED) else None
        if outcome is None:
            outcome = TaskRunOutcome(status="succeeded", attempts=attempts)
        self.outcomes[task_id] = outcome
        if self.events.enabled:
            self.events.task_event(
                "task_completed",
                task_id,
                None,
                self.released_lease,
                None,
                "succeeded",
                trio.current_time(),
            )

    def fail(self, task: SchedulableTask, error: Exception, *, spawn_failed: bool = False) -> None:
        """The worker raised ``error`` (or its spawn failed): retry or drop."""
        cause = error_cause(error)
        reason = f"{cause[0]}: {cause[1]}"[:200]
        if not (spawn_failed or self.is_retryable(error)):
            self.drop(task, reason, cause)
            return
        hint = retry_hint(error)
        if is_number(hint) and math.isfinite(hint):  # type: ignore[arg-type]
            delay = max(0.0, hint)  # type: ignore[call-overload]  # a past hint means "now"
        else:
            delay = self.retry.backoff(self.attempts[task.task_id])  # no usable hint
        self._retry(task, delay, reason, cause)

    def _retry(
        self, task: SchedulableTask, delay: float, reason: str, cause: tuple[str, str] | None
    ) -> None:
        """The one retry rule, for a returned ``TaskOutcome.retry`` and a raised retryable
        error alike: defer while attempts remain, else fail with "attempts exhausted".

        While shutting down, a retry never spends the last attempt (the failure is often the
        shutdown itself, seen through request admission): the task is deferred and ends
        ``cancelled`` / ``awaiting_retry``, keeping its downstream, so a later run can do it.
        """
        attempt = self.attempts[task.task_id]
        if attempt < self.retry.max_attempts or self.shutting_down:
            self.defer(task, delay, reason)
        else:
            self.drop(task, f"attempts exhausted ({attempt}): {reason}", cause)

    def defer(self, task: SchedulableTask, delay: float, reason: str) -> None:
        """Hand the task back to the tracker to become ready again after ``delay`` seconds."""
        self.tracker.mark_complete(task, TaskOutcome.retry(delay, reason))
        if self.events.enabled:
            self.events.scheduler(
                "retry_deferred",
                task_id=task.task_id,
                lease_id=self.released_lease,
                attempt=self.attempts[task.task_id],
                reason=reason,
                available_after=trio.current_time() + delay,
            )

    def drop(
        self, task: SchedulableTask, reason: str, cause: tuple[str, str] | None = None
    ) -> None:
        """The task failed for good: it and everything downstream are dropped."""
        task_id = task.task_id
        dropped = self.tracker.mark_complete(task, TaskOutcome.drop(reason))
        self.outcomes[task_id] = TaskRunOutcome(
            status="failed",
            attempts=self.attempts[task_id],
            reason=reason,
            error_type=None if cause is None else cause[0],
            error=None if cause is None else cause[1],
        )
        for other in dropped:
            self.outcomes[other] = TaskRunOutcome(status="dropped", reason=f"upstream {task_id!r}")
        if self.events.enabled:
            self.events.scheduler(
                "non_retryable_dropped",
                task_id=task_id,
                lease_id=self.released_lease,
                reason=reason,
                diagnostics={
                    "downstream_dropped": len(dropped),
                    "error_type": None if cause is None else cause[0],
                },
            )

    def cancelled(self, task: SchedulableTask, error: BaseException) -> None:
        """The attempt was cancelled (or interrupted) while it ran."""
        task_id = task.task_id
        reason = type(error).__name__
        if isinstance(error, BaseExceptionGroup) and error.split(trio.Cancelled)[1] is None:
            reason = "Cancelled"  # a worker's own nursery wraps its children's Cancelled
        error_type, message = error_cause(error)
        self.outcomes[task_id] = TaskRunOutcome(
            status="cancelled",
            attempts=self.attempts[task_id],
            reason=reason,
            error_type=None if reason == "Cancelled" else error_type,
            error=(message or None) if reason != "Cancelled" else None,
        )
        if self.events.enabled:
            self.events.scheduler(
                "cancelled", task_id=task_id, lease_id=self.released_lease, reason=reason
            )

    def not_run(self, task_ids: Iterable[Hashable]) -> None:
        """Tasks the run ended without finishing: never started, or waiting for a retry."""
        for task_id in task_ids:
            attempts = self.attempts.get(task_id, 0)
            self.outcomes[task_id] = TaskRunOutcome(
                status="cancelled",
                attempts=attempts,
                reason="awaiting_retry" if attempts else "not_started",
            )

    def mark_unstarted(self) -> None:
        """Give every task of the tracker without an outcome one (dropped or not run)."""
        tasks = getattr(self.tracker, "tasks", None)
        if tasks is None:
            return
        dropped = getattr(self.tracker, "dropped", {})
        outcomes = self.outcomes
        for task_id in tasks:
            if task_id not in outcomes:
                if task_id in dropped:
                    outcomes[task_id] = TaskRunOutcome(status="dropped", reason=dropped[task_id])
                else:
                    self.not_run((task_id,))
