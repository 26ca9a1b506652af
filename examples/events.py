"""Watch a run through events: in memory and as a JSON Lines file at the same time."""

import tempfile
from pathlib import Path

import trio

import sluicegate as sg

tracker = sg.DagCompletionTracker()
tracker.add("topic")
tracker.add("question", depends_on=["topic"])


async def worker(task: sg.SchedulableTask) -> None:
    await trio.sleep(0.01)


with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "events.jsonl"
    memory = sg.InMemoryEventSink()
    with sg.JsonLinesEventSink(path) as file_sink:
        sink = sg.events.FanOutEventSink([memory, file_sink])
        scheduler = sg.AsyncTaskScheduler(tracker, worker, sink=sink, run_id="run-1")
        result = trio.run(scheduler.run)
    # closing the sink flushes it; read_events decodes both event streams
    from_file = sg.read_events(path)

print("events:", result.event_count, "in memory:", len(memory.events), "in file:", len(from_file))
# per_task_events: a frontier's one ready_enqueued (task_ids) as one event per task
for event in sg.events.per_task_events(memory.events):
    if isinstance(event, sg.events.SchedulerEvent) and event.task_id == "question":
        run_id = event.correlation.run_id if event.correlation else None
        print(f"  #{event.sequence:<3} {event.event_kind:<20} run_id={run_id}")
# schema 2: the terminal event carries the lease it returned in the same instant
released = memory.of_kind("task_completed")
print("leases released:", [e.lease_id for e in released])
print("same events in the file:", [e.event_kind for e in from_file] == memory.kinds())
