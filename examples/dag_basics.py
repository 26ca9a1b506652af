"""Build a task DAG, run it, and read the result."""

import trio

import sluicegate as sg

tracker = sg.DagCompletionTracker()
# Dependencies may name tasks that are added later; seal() checks the whole graph.
tracker.add("judge", depends_on=["question", "answer"], group="judge")
tracker.add("topic", {"seed": 1}, group="topic")
tracker.add("question", depends_on=["topic"], group="question", weight=3)
tracker.add("answer", depends_on=["topic", "question"], group="answer", weight=3)
tracker.seal()  # optional: the first ready_frontier() seals too

# A prepared SchedulableTask works as well, e.g. one that holds two resource units.
big = sg.SchedulableTask(
    "summary", {"kind": "report"}, sg.TaskGroupSpec("report", 1.0), {"submission": 2}
)
tracker.add_task(big, depends_on=["judge"])

order: list[str] = []


async def worker(task: sg.SchedulableTask) -> None:
    await trio.sleep(0.01)
    order.append(task.task_id)


result = trio.run(sg.AsyncTaskScheduler(tracker, worker, capacity=4).run)
print("order:", order)
print("summary:", result.outcomes["summary"])
print("tracker state of 'judge':", tracker.state_of("judge"))
print(result.counts)
