"""BoundedBorrowPolicy step by step: borrow while a peer idles, then repay the debt."""

import sluicegate as sg


def task(task_id: object, group: str) -> sg.SchedulableTask:
    return sg.SchedulableTask(task_id, None, sg.TaskGroupSpec(group, 1.0))


policy = sg.scheduling.BoundedBorrowPolicy(max_borrow=2)
admission = sg.TaskAdmissionController(capacity=8, policy=policy)
queue = sg.scheduling.FairTaskQueue()


def admit_all() -> list[sg.scheduling.TaskAdmissionLease]:
    leases = []
    while (sel := queue.select_next(admission.is_eligible)) is not None:
        lease = admission.try_acquire(sel.item, sel.view)
        assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
        queue.commit(sel)
        leases.append(lease)
    return leases


# b holds one unit and has nothing queued; a queues ten tasks.
b_lease = admission.try_acquire(task("b0", "b"), queue.view())
queue.enqueue([task(("a", i), "a") for i in range(10)])
a_leases = admit_all()
share = policy.fair_share("a", 1.0, "submission", queue.view(), admission.usage)
print(f"a holds {len(a_leases)} (share {share} + max_borrow 2)", admission.view().policy_state)

# b queues work: a, above its share, is denied with borrow_debt; free units go to b.
queue.enqueue([task(("b", i), "b") for i in range(5)])
admission.release(a_leases.pop())
head = queue.view().first_candidate("a")
assert head is not None
denied = admission.evaluate(head, queue.view())
print("a while b waits:", denied.reason if denied else "allowed")
print("next admitted:", [lease.item.task_id for lease in admit_all()])

# Once releases bring a back under its share, it is eligible again.
admission.release(a_leases.pop())
admission.release(a_leases.pop())
print("a after repaying:", admission.is_eligible(head, queue.view()), admission.view().policy_state)
