"""What a scheduler run reports: per-task terminal states and the run result."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from ..errors import SluicegateError
from .leases import TaskAdmissionView

TaskStatus = Literal["succeeded", "failed", "dropped", "cancelled"]


TASK_STATUSES: Final[tuple[TaskStatus, ...]] = ("succeeded", "failed", "dropped", "cancelled")


class TaskRunOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The terminal state of one task in a run.

    ``reason`` is one line for people. When the last attempt ended with an exception,
    ``error_type`` and ``error`` keep its cause: the exception's class name and message
    (for an exception group, those of its only leaf, or ``ExceptionGroup`` and every leaf's
    ``Type: message`` joined with ``"; "`` when there are several).
    """

    status: TaskStatus
    attempts: int = 0
    reason: str | None = None
    error_type: str | None = None
    error: str | None = None


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
    interrupted: bool = False

    @property
    def elapsed(self) -> float:
        """Seconds from the start of the run to its end, on the run's clock."""
        return self.finished_at - self.started_at

    def summary(self) -> str:
        """One line saying how the run's tasks ended (what finished, what did not)."""
        done = self.counts.get("succeeded", 0)
        failed = self.counts.get("failed", 0) + self.counts.get("dropped", 0)
        reasons = [o.reason for o in self.outcomes.values() if o.status == "cancelled"]
        waiting = reasons.count("awaiting_retry")
        never = reasons.count("not_started")
        stopped = len(reasons) - waiting - never
        parts = [f"{done + failed} finished ({done} succeeded, {failed} failed or dropped)"]
        parts.append(f"{stopped} cancelled while running")
        parts.append(f"{never} not started")
        if waiting:
            parts.append(f"{waiting} awaiting a retry")
        return ", ".join(parts)


class SchedulerStalledError(SluicegateError, RuntimeError):
    """The tracker is not finished but nothing is running, queued or scheduled to become ready."""


class SchedulerInterrupted(KeyboardInterrupt):
    """A run was interrupted (Ctrl-C): every worker was cancelled and every lease released.

    Raised by :meth:`AsyncTaskScheduler.run` instead of the bare ``KeyboardInterrupt`` (or
    the exception group trio would wrap it in), once the run has wound down. It *is* a
    ``KeyboardInterrupt``, so code that handles Ctrl-C keeps working. ``result`` is the
    partial :class:`SchedulerRunResult` (``interrupted`` true); ``str()`` is one line with
    how many tasks finished, were cancelled while running or never started. The original
    exception (with its traceback) is kept as ``original`` and as ``__context__``.
    """

    def __init__(self, result: SchedulerRunResult, original: BaseException) -> None:
        self.result = result
        self.original = original
        super().__init__(f"interrupted after {result.elapsed:.1f}s: {result.summary()}")
