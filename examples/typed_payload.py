"""Typed payloads: the tracker's payload type flows to the worker, checked by mypy --strict."""

from typing import NamedTuple

import trio

import sluicegate as sg


class Cell(NamedTuple):
    row: int
    column: str


tracker: sg.DagCompletionTracker[Cell] = sg.DagCompletionTracker()
for row in range(3):
    tracker.add((row, "question"), Cell(row, "question"), group="question")
    tracker.add((row, "answer"), Cell(row, "answer"), depends_on=[(row, "question")])


async def worker(task: sg.SchedulableTask[Cell]) -> None:
    await trio.sleep(0.001)
    print(f"row {task.payload.row}: {task.payload.column}")  # mypy knows task.payload is a Cell


# mypy rejects a worker that expects another payload type for this tracker.
result = trio.run(sg.AsyncTaskScheduler(tracker, worker, capacity=1).run)
print(result.counts)
