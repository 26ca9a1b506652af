"""Several scheduler resources, a per-group cap, and the borrowing policy."""

from collections import Counter

import trio

import sluicegate as sg


def build() -> sg.DagCompletionTracker:
    tracker = sg.DagCompletionTracker()
    for row in range(12):
        tracker.add(("gen", row), group="generate", weight=3)
        # the judge needs one unit of a scarce "gpu" resource besides its submission slot
        tracker.add(
            ("judge", row),
            depends_on=[("gen", row)],
            group="judge",
            resources={"submission": 1, "gpu": 1},
        )
    return tracker


async def measure(policy: sg.scheduling.TaskAdmissionPolicy) -> Counter[str]:
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def worker(task: sg.SchedulableTask) -> None:
        group = task.group.key
        running[group] += 1
        peak[group] = max(peak[group], running[group])
        await trio.sleep(0.01)
        running[group] -= 1

    admission = sg.TaskAdmissionController({"submission": 6, "gpu": 2}, policy=policy)
    result = await sg.AsyncTaskScheduler(build(), worker, admission=admission).run()
    assert result.counts["succeeded"] == 24 and result.admission.active_leases == 0
    return peak


async def main() -> None:
    # Default policy: capacity only. The gpu limit alone caps judges at 2.
    print("strict_fair:", dict(await measure(sg.scheduling.StrictFairPolicy())))
    # A per-group cap: "generate" may never hold more than 3 submission units.
    capped = sg.scheduling.StrictFairPolicy(group_caps={"generate": {"submission": 3}})
    print("group cap:  ", dict(await measure(capped)))
    # Borrowing: a group may exceed its weighted fair share by 1 unit while peers are idle;
    # "generate" is alone at first, and a group alone has the whole resource as its share.
    print("borrow:     ", dict(await measure(sg.scheduling.BoundedBorrowPolicy(max_borrow=1))))


trio.run(main)
