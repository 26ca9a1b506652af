"""A custom task admission policy, checked against the TaskAdmissionPolicy protocol."""

from collections.abc import Mapping

import trio

import sluicegate as sg

ALLOW = sg.scheduling.TaskAdmissionPolicyDecision(True)


class HeavyTaskLimit:
    """At most ``max_heavy`` tasks whose payload is marked ``heavy`` run at the same time.

    The running count is policy state: ``on_acquire``/``on_release`` return deltas and the
    controller applies them in the same step as the lease change, so they never drift.
    """

    name = "heavy_limit"

    def __init__(self, max_heavy: int) -> None:
        self.max_heavy = max_heavy

    @staticmethod
    def _is_heavy(item: sg.SchedulableTask) -> bool:
        return isinstance(item.payload, Mapping) and bool(item.payload.get("heavy"))

    def evaluate(
        self,
        item: sg.SchedulableTask,
        queue_view: sg.scheduling.QueueView,
        usage: sg.scheduling.TaskAdmissionUsage,
    ) -> sg.scheduling.TaskAdmissionPolicyDecision:
        # Pure: read the live counters, change nothing.
        if self._is_heavy(item) and usage.policy_counter("heavy_running") >= self.max_heavy:
            return sg.scheduling.TaskAdmissionPolicyDecision(
                False, "policy_denied", detail=f"{self.max_heavy} heavy task(s) running"
            )
        return ALLOW

    def on_acquire(
        self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
    ) -> sg.scheduling.PolicyStateDelta | None:
        return (
            sg.scheduling.PolicyStateDelta((("heavy_running", 1),))
            if self._is_heavy(lease.item)
            else None
        )

    def on_release(
        self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
    ) -> sg.scheduling.PolicyStateDelta | None:
        return (
            sg.scheduling.PolicyStateDelta((("heavy_running", -1),))
            if self._is_heavy(lease.item)
            else None
        )


tracker = sg.DagCompletionTracker()
for i in range(12):
    tracker.add(i, {"heavy": i % 2 == 0})
heavy_now = heavy_peak = 0


async def worker(task: sg.SchedulableTask) -> None:
    global heavy_now, heavy_peak
    heavy = task.payload["heavy"]
    heavy_now += heavy
    heavy_peak = max(heavy_peak, heavy_now)
    await trio.sleep(0.01)
    heavy_now -= heavy


policy: sg.scheduling.TaskAdmissionPolicy = HeavyTaskLimit(
    max_heavy=2
)  # mypy checks the protocol here
admission = sg.TaskAdmissionController(capacity=6, policy=policy)
result = trio.run(sg.AsyncTaskScheduler(tracker, worker, admission=admission).run)
print("heavy peak:", heavy_peak, "| policy state after the run:", admission.view().policy_state)
print(result.counts)
