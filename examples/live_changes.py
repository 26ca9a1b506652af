"""Change a run while it is running: add tasks, then grow task capacity."""

import trio

import sluicegate as sg

tracker = sg.DagCompletionTracker()
tracker.add("plan")
scheduler: sg.AsyncTaskScheduler
running = peak = 0
started: list[object] = []


async def worker(task: sg.SchedulableTask) -> None:
    global running, peak
    started.append(task.task_id)
    running += 1
    peak = max(peak, running)
    if task.task_id == "plan":
        # The tracker is sealed once the run starts: new tasks may depend only on known ones.
        for i in range(12):
            tracker.add(("step", i), depends_on=["plan"])
        tracker.add("extra")  # ready at once: without notify() it would wait for "plan"
        scheduler.notify()  # wake the dispatch loop so it pulls the new frontier
    if task.task_id == ("step", 0):
        scheduler.reconfigure({"submission": 6})  # held leases are never revoked
    await trio.sleep(0.01)
    running -= 1


scheduler = sg.AsyncTaskScheduler(tracker, worker, capacity=2)
result = trio.run(scheduler.run)
print("first two started:", started[:2])
print("limits now:", dict(scheduler.admission.limits), "peak concurrency:", peak)
print(result.counts)
