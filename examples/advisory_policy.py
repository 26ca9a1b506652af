"""Prefer tasks bound for an unpressured endpoint: RequestPressureAdvisoryPolicy.

The "writer" endpoint has just answered 429 with a 3 s retry-after, and it pauses every call
during its cooldown. With one task slot, the default policy lets a writer task sit in that
slot waiting out the cooldown; the advisory policy runs judge tasks meanwhile, and the writer
tasks, which kept their place in the fair order, catch up as soon as the cooldown is over.

Runs in virtual time (trio's MockClock) so the output is exact; drop ``clock=`` for real time.
"""

import trio
import trio.testing

import sluicegate as sg

WRITER = sg.RequestResourceKey("sim", "writer")  # provider/model/domain ("chat" by default)
JUDGE = sg.RequestResourceKey("sim", "judge")


def build() -> sg.DagCompletionTracker:
    tracker = sg.DagCompletionTracker()
    for i in range(3):
        tracker.add(f"write{i}", WRITER, group="write")  # the payload names the endpoint
    for i in range(5):
        tracker.add(f"judge{i}", JUDGE, group="judge")
    return tracker


def endpoint_of(task: sg.SchedulableTask) -> sg.RequestResourceKey | None:
    return task.payload  # type: ignore[no-any-return]


async def run(advisory: bool) -> None:
    requests = sg.AdaptiveRequestAdmissionController(
        [
            sg.ModelEndpoint(name=name, provider="sim", model_id=name, max_parallel_requests=4)
            for name in ("writer", "judge")
        ],
        sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(cooldown_admission="paused")),
    )
    # The writer endpoint has just been rate limited: 3 s of cooldown.
    lease = requests.try_acquire(sg.requests.RequestAdmissionItem(resource=WRITER))
    assert isinstance(lease, sg.requests.RequestAdmissionLease)
    requests.release(lease, sg.requests.RequestReleaseOutcome.rate_limited(retry_after_seconds=3.0))

    async def worker(task: sg.SchedulableTask) -> None:
        item = sg.requests.RequestAdmissionItem(resource=task.payload, request_group=task.group.key)
        call = await requests.acquire(item)  # waits while the endpoint is paused
        try:
            await trio.sleep(1.0)  # the model call
        finally:
            requests.release(call, sg.requests.RequestReleaseOutcome.success())

    policy: sg.scheduling.TaskAdmissionPolicy = sg.scheduling.StrictFairPolicy()
    if advisory:
        advisor = sg.scheduling.RequestPressureAdvisoryPolicy(requests.pressure, endpoint_of)
        print("writer endpoint at the start:", advisor.pressure_signal(WRITER))
        policy = advisor
    admission = sg.TaskAdmissionController(capacity=1, policy=policy)
    sink = sg.InMemoryEventSink()
    scheduler = sg.AsyncTaskScheduler(build(), worker, admission=admission, sink=sink)
    result = await scheduler.run()
    order = " ".join(str(e.task_id) for e in sink.of_kind("task_dispatched"))
    in_flight = sum(p.in_flight for p in requests.pressure.snapshot().resources)
    print(f"{policy.name}: {order}")
    print(
        f"  took {result.elapsed:.1f} s; task leases left {result.admission.active_leases}, "
        f"calls in flight {in_flight}"
    )


async def main() -> None:
    await run(advisory=False)
    await run(advisory=True)


trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
