"""One admission cycle by hand: select, acquire, commit, release (what the scheduler does)."""

import sluicegate as sg


def task(task_id: str, group: str) -> sg.SchedulableTask:
    return sg.SchedulableTask(task_id, None, sg.TaskGroupSpec(group, 1.0))


queue = sg.scheduling.FairTaskQueue()
admission = sg.TaskAdmissionController(
    capacity=3, policy=sg.scheduling.StrictFairPolicy(group_caps={"a": {"submission": 1}})
)
queue.enqueue([task("a1", "a"), task("a2", "a"), task("b1", "b")])

leases = []
while (selection := queue.select_next(admission.is_eligible)) is not None:
    decision = admission.try_acquire(selection.item, selection.view)
    assert isinstance(decision, sg.scheduling.TaskAdmissionLease)
    assert queue.commit(selection) is selection.item  # None would mean "stale: release, retry"
    leases.append(decision)
print("admitted:", [lease.item.task_id for lease in leases])

summary = admission.explain_blocked(queue.view())
print("blocked:", summary.blocked_groups, summary.dominant_reasons)

admission.reconfigure({"submission": 1})  # shrink below usage: nothing is revoked
view = admission.view()
print("after shrink:", view.in_use, "leases", view.active_leases, "free", admission.free_resources)

a1, b1 = leases
print("release:", admission.release(a1).reason)
print("again:  ", admission.release(a1).reason)  # never raises, never adds capacity
other = sg.TaskAdmissionController(capacity=1)
print("foreign:", other.release(b1).reason)  # a lease from another controller

admission.begin_shutdown()
denied = admission.try_acquire(task("b2", "b"), queue.view())
assert isinstance(denied, sg.scheduling.TaskAdmissionDenied)
print("after begin_shutdown:", denied.reason, "| held lease still releases:", admission.release(b1))
print(admission.view().release_diagnostics, other.view().release_diagnostics)
