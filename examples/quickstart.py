"""The smallest useful run: two dependent tasks in two weighted groups."""

import trio

import sluicegate as sg

tracker = sg.DagCompletionTracker()
tracker.add("topic", group="topic")
tracker.add("question", depends_on=["topic"], group="question", weight=3)


async def worker(task: sg.SchedulableTask) -> None:
    await trio.sleep(0.01)  # call a model, compute a cell, ...


result = trio.run(sg.AsyncTaskScheduler(tracker, worker, capacity=32).run)
print(result.counts)
