"""Slow start, the default start of every resource: small, doubling per round trip, until the
first rate limit or the cap; then AIMD. Virtual time throughout."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sluicegate as sg
from sluicegate.requests import RequestAdmissionItem, RequestAdmissionLease, RequestReleaseOutcome
from sluicegate.scheduling import AsyncTaskScheduler, DagCompletionTracker

KEY = sg.RequestResourceKey("sim", "m", "chat")
SUCCESS = RequestReleaseOutcome("success")


def controller(cap: int, **settings: object) -> sg.AdaptiveRequestAdmissionController:
    return sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=cap)],
        sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(**settings)),  # type: ignore[arg-type]
    )


def limit(ctl: sg.AdaptiveRequestAdmissionController) -> int:
    pressure = ctl.resource_pressure(KEY)
    assert pressure is not None
    return pressure.limit


async def test_starts_small_and_doubles_per_round_trip(autojump_clock: object) -> None:
    ctl = controller(64)
    limits: list[int] = []

    async def call() -> None:
        lease = await ctl.acquire(RequestAdmissionItem(resource=KEY))
        await trio.sleep(1.0)
        ctl.release(lease, SUCCESS)

    async with trio.open_nursery() as nursery:
        for _ in range(200):  # far more demand than the cap
            nursery.start_soon(call)
        await trio.sleep(0.5)  # sample between the round trips' ends
        for _ in range(6):
            limits.append(limit(ctl))
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert limits == [4, 8, 16, 32, 64, 64]
    pressure = ctl.resource_pressure(KEY)
    assert pressure is not None and not pressure.slow_start  # the cap ended it


async def test_the_first_rate_limit_ends_it(autojump_clock: object) -> None:
    ctl = controller(64, decrease_factor=0.5)
    leases = [ctl.try_acquire(RequestAdmissionItem(resource=KEY)) for _ in range(4)]
    assert all(isinstance(lease, RequestAdmissionLease) for lease in leases)
    ctl.release(leases[0], SUCCESS)  # type: ignore[arg-type]
    assert limit(ctl) == 5
    ctl.release(leases[1], RequestReleaseOutcome.rate_limited())  # type: ignore[arg-type]
    pressure = ctl.resource_pressure(KEY)
    assert pressure is not None and (pressure.limit, pressure.slow_start) == (2, False)
    ctl.release(leases[2], SUCCESS)  # type: ignore[arg-type]
    ctl.release(leases[3], SUCCESS)  # type: ignore[arg-type]
    assert limit(ctl) == 2  # AIMD now: one step per successes_until_increase, in cooldown none


async def test_a_trickle_of_calls_does_not_grow_it(autojump_clock: object) -> None:
    ctl = controller(64)
    for _ in range(100):  # one call at a time: the limit of 4 is never filled
        lease = await ctl.acquire(RequestAdmissionItem(resource=KEY))
        ctl.release(lease, SUCCESS)
    assert limit(ctl) == 4


async def test_explicit_starts_are_kept(autojump_clock: object) -> None:
    assert limit_after_first_use(controller(64, initial_limit=20)) == 20
    assert limit_after_first_use(controller(64, slow_start=False)) == 64
    assert limit_after_first_use(controller(64, slow_start_initial_limit=10)) == 10
    assert limit_after_first_use(controller(3)) == 3  # never above the cap


def limit_after_first_use(ctl: sg.AdaptiveRequestAdmissionController) -> int:
    lease = ctl.try_acquire(RequestAdmissionItem(resource=KEY))
    assert isinstance(lease, RequestAdmissionLease)
    ctl.release(lease, RequestReleaseOutcome("local_cancelled"))
    return limit(ctl)


def run_narrow_pipeline(capacity: int, task_capacity: int, rows: int = 100) -> dict[str, object]:
    """rows x 4-column chain, one call per cell, hidden capacity C, declared cap 4C."""
    out: dict[str, object] = {}

    async def main() -> None:
        provider = sg.SimulatedProvider(
            name="sim", seed=capacity, latency_seconds=1.0, latency_jitter=0.2, capacity=capacity
        )
        ctl = sg.AdaptiveRequestAdmissionController(
            [
                sg.ModelEndpoint(
                    name="m", provider="sim", model_id="m", max_parallel_requests=4 * capacity
                )
            ]
        )
        executor = sg.ModelRequestExecutor(ctl, {"sim": provider})
        tracker = DagCompletionTracker()
        columns = ("topic", "question", "answer", "judge")
        for row in range(rows):
            for i, column in enumerate(columns):
                after = [(row, columns[i - 1])] if i else []
                tracker.add((row, column), None, depends_on=after, group=column)

        async def worker(task: sg.SchedulableTask) -> None:
            request = sg.ModelRequest(messages=[{"role": "user", "content": str(task.task_id)}])
            await executor.execute("m", request, request_group=task.group.key)

        scheduler = AsyncTaskScheduler(tracker, worker, capacity=task_capacity)
        result = await scheduler.run()
        out.update(result.counts)
        out["rate_limited"] = provider.stats.rate_limited
        out["wall"] = trio.current_time()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out


@pytest.mark.parametrize(("capacity", "task_capacity"), [(16, 64), (32, 400)])
def test_a_cap_far_above_the_real_capacity_makes_no_startup_storm(
    capacity: int, task_capacity: int
) -> None:
    # Before slow start the limit began at the declared cap (4C): the first wave of calls
    # met a wall of 429s and cells failed after their attempts ran out (30 failed and 90
    # dropped for C=32 here).
    out = run_narrow_pipeline(capacity, task_capacity)
    assert (out["failed"], out["dropped"], out["succeeded"]) == (0, 0, 400), out
    assert out["rate_limited"] <= 10, out  # type: ignore[operator]
    assert out["wall"] <= 1.5 * (400 / capacity + 4), out  # type: ignore[operator]


async def test_calls_that_start_queueing_end_slow_start(autojump_clock: object) -> None:
    # A server that never answers 429 but queues: with more than 8 calls in flight each call
    # takes proportionally longer. Slow start must stop once calls queue (and step back to
    # the level of a round trip ago), not run to the cap of 64 on successes alone; later
    # growth waits while the calls still queue.
    ctl = controller(64)
    in_flight = 0

    async def call() -> None:
        nonlocal in_flight
        lease = await ctl.acquire(RequestAdmissionItem(resource=KEY))
        in_flight += 1
        await trio.sleep(0.1 * max(1.0, in_flight / 8))
        in_flight -= 1
        ctl.release(lease, SUCCESS)

    async def caller() -> None:
        while True:
            await call()

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(caller)
        await trio.sleep(30.0)
        pressure = ctl.resource_pressure(KEY)
        nursery.cancel_scope.cancel()
    assert pressure is not None
    assert not pressure.slow_start and pressure.max_limit < 64, pressure
    assert pressure.limit <= 3 * 8, pressure
