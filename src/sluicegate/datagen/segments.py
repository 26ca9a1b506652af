"""Adapters between the cell tracker and :class:`~sluicegate.scheduling.AsyncTaskScheduler`.

The scheduler keeps an outcome record and an attempt count for every task id it has run (its
result lists them). Over a million cells that is hundreds of megabytes, so a run drives a
sequence of schedulers, each over a *segment* of at most :data:`SEGMENT_TASKS` released cells:
:class:`SchedulerSegment` is the tracker as one of them sees it. They share one task
admission controller; a segment boundary lets the running cells finish once before the next
scheduler starts. The run has one :class:`~sluicegate.events.EventEmitter`: the runner passes
it to every segment's scheduler (``AsyncTaskScheduler(events=...)``) and emits its own
row-group events on it, so the scheduler events of all segments continue one gap-free
sequence.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Final

from ..scheduling import RetryPolicy, SchedulableTask, TaskOutcome
from .tracker import CellTracker

SEGMENT_TASKS: Final = 50_000


# The tracker bounds attempts itself; a scheduler must never drop a cell on its own count.
TRACKER_RETRIES: Final = RetryPolicy(max_attempts=1_000_000_000, initial_backoff=0.0)


def never_retryable(_: BaseException) -> bool:
    """The cell worker turns every failure into an outcome; a raised error is a bug."""
    return False


class SchedulerSegment:
    """The tracker as one scheduler sees it: at most ``budget`` released cells, then finished
    once those have completed (implements :class:`~sluicegate.scheduling.CompletionTracker`)."""

    def __init__(self, tracker: CellTracker, budget: int = SEGMENT_TASKS) -> None:
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
