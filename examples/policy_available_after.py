"""A policy that denies with a time hint: the scheduler sleeps until then, then retries."""

import trio

import sluicegate as sg


class OpensAt:
    """Admits nothing before ``opens_at`` (an absolute time on trio's clock)."""

    name = "opens_at"

    def __init__(self, opens_at: float) -> None:
        self.opens_at = opens_at

    def evaluate(
        self,
        item: sg.SchedulableTask,
        queue_view: sg.scheduling.QueueView,
        usage: sg.scheduling.TaskAdmissionUsage,
    ) -> sg.scheduling.TaskAdmissionPolicyDecision:
        if usage.now < self.opens_at:
            return sg.scheduling.TaskAdmissionPolicyDecision(
                False, "policy_denied", available_after=self.opens_at
            )
        return sg.scheduling.TaskAdmissionPolicyDecision(True)

    def on_acquire(
        self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
    ) -> sg.scheduling.PolicyStateDelta | None:
        return None

    def on_release(
        self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
    ) -> sg.scheduling.PolicyStateDelta | None:
        return None


async def main() -> None:
    start = trio.current_time()
    started: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append(trio.current_time() - start)

    tracker = sg.DagCompletionTracker()
    tracker.add("a")
    tracker.add("b")
    sink = sg.InMemoryEventSink()
    admission = sg.TaskAdmissionController(capacity=2, policy=OpensAt(start + 0.05))
    await sg.AsyncTaskScheduler(tracker, worker, admission=admission, sink=sink).run()
    blocked = sink.of_kind("admission_blocked")[0]
    assert isinstance(blocked, sg.events.SchedulerEvent) and blocked.available_after is not None
    wake = blocked.available_after - start
    print(f"blocked: reason={blocked.reason}, look again at +{wake:.2f}s")
    print("started at:", [f"{t:.2f}s" for t in started])


trio.run(main)
