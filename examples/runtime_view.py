"""Ask the joined events of a run questions in Python: timelines, waits, endpoints, verdict."""

import tempfile
from pathlib import Path

import sluicegate as sg
from sluicegate.observe import CorrelatedRuntimeView, run_scenario_in_virtual_time

path = Path(tempfile.mkdtemp()) / "events.jsonl"
with sg.JsonLinesEventSink(path) as sink:  # any run; here a crafted one in virtual time
    run_scenario_in_virtual_time("small_task_capacity", sink)

view = CorrelatedRuntimeView.from_file(path)  # or CorrelatedRuntimeView(memory_sink.events)
verdict = view.verdict()
print(verdict.layer, f"{verdict.share:.0%}", verdict.setting, verdict.value)
print(verdict.message)
first = view.executions[0]  # one per task attempt, in spawn order
for name, at in first.timeline():
    print(f"  {name:<28} {at:8.3f}")
last = view.executions[-1]
print(
    f"last task: queued {last.queue_wait:.2f} s, waited {last.request_wait:.2f} s for a lease, "
    f"{last.provider_seconds:.2f} s in the provider, {last.attempts} attempt(s)"
)
for name, waits in view.layer_waits().items():
    if waits.count:
        print(f"  {name:<32} p50 {waits.p50:7.3f}  p99 {waits.p99:7.3f}  (n={waits.count})")
print("endpoint fast:", view.endpoints["fast"].peak_concurrent_successes, "calls at once at most")
print("hidden waiters:", view.hidden_waiters, "ready-idle seconds:", view.ready_idle_seconds)
