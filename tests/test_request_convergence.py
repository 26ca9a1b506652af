"""AIMD convergence against SimulatedProvider's hidden capacity, in virtual time.

For a hidden concurrency capacity C and a static cap four times larger, the controller must
learn C from 429s alone: after warm-up it carries >= 90% of C with < 5% of attempts rejected;
after a 60-second drop of the capacity to C/4 it settles near C/4, and after the capacity
comes back it re-converges near C. Settle times and overshoot are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from sluicegate import (
    AdaptiveRequestAdmissionController,
    ModelEndpoint,
    ModelRequest,
    ModelRequestError,
    ModelRequestExecutor,
    RequestResourceKey,
    SimulatedProvider,
)

LATENCY = 1.0
WARMUP = 30.0
DROP_AT = 150.0
DROP_FOR = 60.0
END = 330.0
SAMPLE = 1.0
ROLLING = 10.0
KEY = RequestResourceKey("sim", "model", "chat")


class Sample(msgspec.Struct, frozen=True):
    at: float
    successes: int
    rate_limited: int
    calls: int
    limit: int
    in_flight: int


class LimitTrace:
    """An event sink that keeps only the limit trajectory: (time, new limit)."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def emit(self, event: Any) -> None:
        if event.event_kind in ("request_limit_increased", "request_limit_decreased"):
            self.points.append((event.captured_at, event.limit))


class PhaseReport(msgspec.Struct, frozen=True):
    capacity: int
    throughput_share: float
    rate_limited_share: float
    settle_seconds: float | None
    overshoot: float
    peak_limit: int
    reach_seconds: float | None


def run_scenario(capacity: int) -> tuple[list[Sample], LimitTrace]:
    samples: list[Sample] = []
    trace = LimitTrace()

    async def main() -> None:
        provider = SimulatedProvider(
            name="sim",
            seed=capacity,
            latency_seconds=LATENCY,
            latency_jitter=0.2,
            capacity=capacity,
        )
        controller = AdaptiveRequestAdmissionController(
            [
                ModelEndpoint(
                    name="model",
                    provider="sim",
                    model_id="model",
                    max_parallel_requests=4 * capacity,
                )
            ],
            sink=trace,
        )
        executor = ModelRequestExecutor(controller, {"sim": provider}, max_attempts=3)
        request = ModelRequest(messages=[{"role": "user", "content": "hi"}])

        async def worker() -> None:
            while True:
                with contextlib.suppress(ModelRequestError):
                    await executor.execute("model", request)

        async def sampler() -> None:
            while True:
                await trio.sleep(SAMPLE)
                stats = provider.stats
                pressure = controller.resource_pressure(KEY)
                assert pressure is not None
                samples.append(
                    Sample(
                        trio.current_time(),
                        stats.successes,
                        stats.rate_limited,
                        stats.calls,
                        pressure.limit,
                        stats.in_flight,
                    )
                )

        async def capacity_drop() -> None:
            await trio.sleep(DROP_AT)
            provider.set_capacity(max(1, capacity // 4))
            await trio.sleep(DROP_FOR)
            provider.set_capacity(capacity)

        async with trio.open_nursery() as nursery:
            for _ in range(3 * capacity):  # demand well above the hidden capacity
                nursery.start_soon(worker)
            nursery.start_soon(sampler)
            nursery.start_soon(capacity_drop)
            await trio.sleep(END)
            nursery.cancel_scope.cancel()
        pressure = controller.resource_pressure(KEY)
        assert pressure is not None
        # every lease came back, even those cancelled mid-call at the end
        assert (pressure.in_flight, pressure.waiters) == (0, 0)
        assert pressure.grants == pressure.released

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return samples, trace


def window(samples: list[Sample], start: float, end: float) -> tuple[float, float]:
    """(throughput in calls in flight on average, 429 share) over ``(start, end]``."""
    before = max((s for s in samples if s.at <= start), key=lambda s: s.at)
    after = max((s for s in samples if s.at <= end), key=lambda s: s.at)
    seconds = after.at - before.at
    successes = after.successes - before.successes
    calls = after.calls - before.calls
    rejected = after.rate_limited - before.rate_limited
    return successes * LATENCY / seconds, rejected / max(1, calls)


def phase(
    samples: list[Sample],
    trace: LimitTrace,
    start: float,
    end: float,
    capacity: int,
    band: float = 0.85,
) -> PhaseReport:
    """Settle time: first instant after which the rolling 10-second throughput stays
    >= band * capacity until the phase ends (10 s spans a probe-and-back-off cycle of the
    controller, so the normal sawtooth near capacity does not count as unsettled).
    Overshoot: how far the limit went above the capacity after it first reached it (from
    below, or from above after a drop), as a fraction of the capacity."""
    settle: float | None = None
    for candidate in [s.at for s in samples if start + ROLLING <= s.at <= end]:
        checks = [s.at for s in samples if candidate <= s.at <= end]
        if all(window(samples, t - ROLLING, t)[0] >= band * capacity for t in checks):
            settle = candidate - start
            break
    points = [(at, limit) for at, limit in trace.points if start < at <= end]
    limits = [limit for _, limit in points]
    falling = bool(limits) and limits[0] > capacity  # the capacity dropped under the limit
    reached = next(
        (
            i
            for i, limit in enumerate(limits)
            if (limit <= capacity if falling else limit >= capacity)
        ),
        None,
    )
    peak = max(limits[reached:]) if reached is not None else max(limits, default=0)
    steady_from = start + (settle if settle is not None else 0.0)
    share, rejected = window(samples, steady_from, end)
    return PhaseReport(
        capacity=capacity,
        throughput_share=share / capacity,
        rate_limited_share=rejected,
        settle_seconds=settle,
        overshoot=max(0.0, peak / capacity - 1.0),
        peak_limit=peak,
        reach_seconds=None if reached is None else points[reached][0] - start,
    )


@pytest.mark.parametrize("capacity", [8, 24, 100])
def test_aimd_converges_to_hidden_capacity_and_recovers(capacity: int) -> None:
    samples, trace = run_scenario(capacity)
    low = max(1, capacity // 4)
    steady = phase(samples, trace, WARMUP, DROP_AT, capacity)
    steady_share, steady_rejected = window(samples, WARMUP, DROP_AT)
    dropped = phase(samples, trace, DROP_AT, DROP_AT + DROP_FOR, low)
    restored = phase(samples, trace, DROP_AT + DROP_FOR, END, capacity)
    report: dict[str, Any] = {
        "C": capacity,
        "steady throughput/C": round(steady_share / capacity, 3),
        "steady 429 share": round(steady_rejected, 4),
        "drop reach s": round(dropped.reach_seconds or -1, 2),
        "drop settle s": dropped.settle_seconds,
        "drop throughput/(C/4)": round(dropped.throughput_share, 3),
        "drop overshoot": round(dropped.overshoot, 3),
        "restore reach s": round(restored.reach_seconds or -1, 2),
        "restore settle s": restored.settle_seconds,
        "restore throughput/C": round(restored.throughput_share, 3),
        "restore 429 share": round(restored.rate_limited_share, 4),
        "restore overshoot": round(restored.overshoot, 3),
        "steady overshoot": round(steady.overshoot, 3),
    }
    print("\nconvergence", report)

    assert steady_share >= 0.90 * capacity, report
    assert steady_rejected < 0.05, report
    # the drop is learned quickly and the controller then sits near C/4
    assert dropped.settle_seconds is not None and dropped.settle_seconds <= 25, report
    assert dropped.throughput_share >= 0.85, report
    # after the capacity comes back it climbs to C again and stays there
    assert restored.settle_seconds is not None and restored.settle_seconds <= 60, report
    assert restored.throughput_share >= 0.90, report
    assert restored.rate_limited_share < 0.05, report
    # once at the capacity, the limit only ever probes one step (or 10%) above it
    for part in (steady, dropped, restored):
        assert part.peak_limit - part.capacity <= max(1, part.capacity // 10), report


def run_recovery(capacity: int, rejection_latency: float) -> tuple[int, int, float, float]:
    """Steady at C, 30 s at C/4, then C again for 60 s. Returns (seconds with 429s after the
    capacity came back, peak limit after it came back, throughput share of C over the last
    30 s, 429 share of all calls)."""
    steady_for, drop_for, after_for = 60.0, 30.0, 60.0
    samples: list[tuple[float, int, int, int, int]] = []

    async def main() -> None:
        provider = SimulatedProvider(
            name="sim",
            seed=capacity,
            latency_seconds=LATENCY,
            latency_jitter=0.2,
            capacity=capacity,
            rejection_latency_seconds=rejection_latency,
        )
        controller = AdaptiveRequestAdmissionController(
            [
                ModelEndpoint(
                    name="model",
                    provider="sim",
                    model_id="model",
                    max_parallel_requests=4 * capacity,
                )
            ]
        )
        executor = ModelRequestExecutor(controller, {"sim": provider}, max_attempts=3)
        request = ModelRequest(messages=[{"role": "user", "content": "hi"}])

        async def worker() -> None:
            while True:
                with contextlib.suppress(ModelRequestError):
                    await executor.execute("model", request)

        async def sampler() -> None:
            while True:
                await trio.sleep(SAMPLE)
                stats = provider.stats
                pressure = controller.resource_pressure(KEY)
                assert pressure is not None
                samples.append(
                    (
                        trio.current_time(),
                        stats.rate_limited,
                        pressure.limit,
                        stats.successes,
                        stats.calls,
                    )
                )

        async with trio.open_nursery() as nursery:
            for _ in range(3 * capacity):
                nursery.start_soon(worker)
            nursery.start_soon(sampler)
            await trio.sleep(steady_for)
            provider.set_capacity(max(1, capacity // 4))
            await trio.sleep(drop_for)
            provider.set_capacity(capacity)
            await trio.sleep(after_for + 0.5)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    back = steady_for + drop_for
    after = [s for s in samples if s[0] > back]
    before = max(s for s in samples if s[0] <= back)
    seconds_with_429s = sum(
        1 for prev, cur in zip([before, *after], after, strict=False) if cur[1] > prev[1]
    )
    peak = max(s[2] for s in after)
    last = after[-1]
    settled = max(s for s in samples if s[0] <= last[0] - 30.0)
    share = (last[3] - settled[3]) * LATENCY / (last[0] - settled[0]) / capacity
    rejected = samples[-1][1] / max(1, samples[-1][4])
    return seconds_with_429s, peak, share, rejected


@pytest.mark.parametrize("capacity", [3, 7, 50, 300])
@pytest.mark.parametrize("rejection_latency", [0.001, LATENCY], ids=["fast-429", "slow-429"])
def test_no_long_overshoot_after_recovery(capacity: int, rejection_latency: float) -> None:
    # Before: with 429s that take as long as a call to arrive, the limit kept growing while
    # the answers were on their way (peak 352 at C=300) and 429s went on for most of the
    # minute after the capacity came back (46 s at C=300; 92 s with 50 ms calls). Now the cut
    # is taken from the level the rejected call was admitted at, a failed probe steps back
    # one, and the climb back slows down near the level held before the dip.
    seconds, peak, share, rejected = run_recovery(capacity, rejection_latency)
    report = {"C": capacity, "429 seconds": seconds, "peak": peak, "share": round(share, 3)}
    print("\nrecovery", report, "429 share", round(rejected, 4))
    assert seconds <= 10, report
    assert peak <= capacity + max(1, capacity // 10), report
    assert share >= 0.85, report


def run_quota(requests_per_minute: int, hints: bool, end: float = 420.0) -> tuple[float, float]:
    """A hidden requests-per-minute quota (and no concurrency limit). Returns (throughput
    share of the quota, 429 share of calls) measured after a two-minute warm-up."""
    marks: dict[str, Any] = {}

    async def main() -> None:
        provider = SimulatedProvider(
            name="sim",
            seed=requests_per_minute,
            latency_seconds=LATENCY,
            latency_jitter=0.2,
            requests_per_minute=requests_per_minute,
            publish_rate_limit_hints=hints,
        )
        controller = AdaptiveRequestAdmissionController(
            [
                ModelEndpoint(
                    name="model", provider="sim", model_id="model", max_parallel_requests=256
                )
            ]
        )
        executor = ModelRequestExecutor(controller, {"sim": provider}, max_attempts=3)
        request = ModelRequest(messages=[{"role": "user", "content": "hi"}])

        async def worker() -> None:
            while True:
                with contextlib.suppress(ModelRequestError):
                    await executor.execute("model", request)

        async with trio.open_nursery() as nursery:
            for _ in range(60):
                nursery.start_soon(worker)
            await trio.sleep(120.0)
            marks["start"] = provider.stats
            await trio.sleep(end - 120.0)
            marks["end"] = provider.stats
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    start, stop = marks["start"], marks["end"]
    quota = requests_per_minute / 60.0 * (end - 120.0)
    share = (stop.successes - start.successes) / quota
    rejected = (stop.rate_limited - start.rate_limited) / max(1, stop.calls - start.calls)
    return share, rejected


@pytest.mark.parametrize("requests_per_minute", [120, 600, 3000])
def test_a_quota_the_provider_states_is_used(requests_per_minute: int) -> None:
    # x-ratelimit-limit-requests on every answer: the controller adopts it as a rate window
    # and admits at the quota without a single 429 after warm-up.
    share, rejected = run_quota(requests_per_minute, hints=True)
    print("\nquota with headers", requests_per_minute, round(share, 3), round(rejected, 4))
    assert share >= 0.97 and rejected < 0.01, (share, rejected)


@pytest.mark.parametrize("requests_per_minute", [120, 600, 3000])
def test_a_quota_nobody_states_is_approached_by_aimd_alone(requests_per_minute: int) -> None:
    # Without headers the controller sees only 429s, and a per-minute quota answers them a
    # minute late: AIMD on concurrency cannot hold the quota's rate exactly (see
    # plans/request-admission.md, "Quotas"). This pins what it reaches today.
    share, rejected = run_quota(requests_per_minute, hints=False)
    print("\nquota without headers", requests_per_minute, round(share, 3), round(rejected, 4))
    assert share >= 0.6 and rejected < 0.15, (share, rejected)
