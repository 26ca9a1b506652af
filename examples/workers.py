"""What a worker's ending means: success, retry, a returned outcome, or a drop."""

from collections import Counter

import trio

import sluicegate as sg

tracker = sg.DagCompletionTracker()
tracker.add("ok")
tracker.add("flaky")  # fails twice with a retryable error, then succeeds
tracker.add("throttled")  # asks to be retried after a server-given delay
tracker.add("skip")  # returns an outcome instead of raising
tracker.add("poll")  # always returns a retry: bounded by max_attempts all the same
tracker.add("broken")  # raises a non-retryable error ...
tracker.add("child", depends_on=["broken"])  # ... which drops everything downstream
tracker.add("grandchild", depends_on=["child"])

calls: Counter[str] = Counter()


async def worker(task: sg.SchedulableTask) -> sg.TaskOutcome | None:
    name = task.task_id
    calls[name] += 1
    await trio.sleep(0.005)
    if name == "flaky" and calls[name] < 3:
        raise sg.RetryableTaskError("transient failure")
    if name == "throttled" and calls[name] == 1:
        raise sg.RetryableTaskError("HTTP 429", retry_after=0.05)
    if name == "skip":
        return sg.TaskOutcome.drop("nothing to do for this row")
    if name == "poll":
        return sg.TaskOutcome.retry(0.01, "result not ready yet")
    if name == "broken":
        raise ValueError("malformed input")
    return None  # normal return (any value but a TaskOutcome) is success


scheduler = sg.AsyncTaskScheduler(
    tracker,
    worker,
    capacity=8,
    retry=sg.RetryPolicy(max_attempts=3, initial_backoff=0.01, multiplier=2.0),
)
result = trio.run(scheduler.run)
for task_id in tracker.tasks:  # insertion order; result.outcomes is in completion order
    outcome = result.outcomes[task_id]
    line = f"{task_id:>10}: {outcome.status:<9} attempts={outcome.attempts} {outcome.reason or ''}"
    print(line.rstrip())
print(f"took {result.elapsed:.2f}s; leases held at the end: {result.admission.active_leases}")
print(result.counts)
