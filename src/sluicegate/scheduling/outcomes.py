"""What a scheduler run reports: per-task terminal states and the run result."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from ..errors import SluicegateError
from .leases import TaskAdmissionView

TaskStatus = Literal["succeeded", "failed", "dropped", "cancelled"]


TASK_STATUSES: Final[tuple[TaskStatus, ...]] = ("succeeded", "failed", "dropped", "cancelled")


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
        """Seconds from the start of the run to its end, on the run's clock."""
        return self.finished_at - self.started_at


class SchedulerStalledError(SluicegateError, RuntimeError):
    """The tracker is not finished but nothing is running, queued or scheduled to become ready."""
