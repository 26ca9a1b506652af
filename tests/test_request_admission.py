from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError, InMemoryEventSink
from sluicegate.events.emitter import EventEmitter
from sluicegate.requests.adaptive import AdaptiveRequestAdmissionController
from sluicegate.requests.admission import (
    OUTCOME_LOCAL_CANCELLED,
    OUTCOME_LOCAL_TIMEOUT,
    OUTCOME_PROVIDER_FAILURE,
    OUTCOME_PROVIDER_TIMEOUT,
    OUTCOME_SUCCESS,
    OUTCOME_UNEXPECTED,
    RequestAdmissionController,
    RequestAdmissionDecision,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestReleaseOutcome,
)
from sluicegate.requests.config import (
    RequestAdmissionConfig,
    RequestResourceOverride,
    RequestResourceSettings,
)
from sluicegate.requests.identity import ModelEndpoint, ProviderModelKey, RequestResourceKey

KEY = RequestResourceKey("sim", "m", "chat")
EMBED = RequestResourceKey("sim", "m", "embedding")
ENDPOINT = ProviderModelKey("sim", "m")
RATE_LIMITED = RequestReleaseOutcome.rate_limited()


def guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail (instead of hanging) if a waiter is never woken: under the autojump clock the
    deadline is virtual, so the guard costs nothing when the test passes."""

    @functools.wraps(test)
    async def wrapper(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(1_000):
            await test(*args, **kwargs)

    return wrapper


def make(
    cap: int = 4,
    *,
    sink: Any = None,
    overrides: tuple[RequestResourceOverride, ...] = (),
    **settings: Any,
) -> AdaptiveRequestAdmissionController:
    return AdaptiveRequestAdmissionController(
        [ModelEndpoint(name="gen", provider="sim", model_id="m", max_parallel_requests=cap)],
        RequestAdmissionConfig(defaults=RequestResourceSettings(**settings), resources=overrides),
        sink=sink,
    )


def item(
    group: str = "default", weight: float = 1.0, key: RequestResourceKey = KEY, **kwargs: Any
) -> RequestAdmissionItem:
    return RequestAdmissionItem(resource=key, request_group=group, weight=weight, **kwargs)


def snap(controller: AdaptiveRequestAdmissionController, key: RequestResourceKey = KEY):
    pressure = controller.resource_pressure(key)
    assert pressure is not None
    return pressure


def lease_of(decision: RequestAdmissionLease | RequestAdmissionDenied) -> RequestAdmissionLease:
    assert isinstance(decision, RequestAdmissionLease), decision
    return decision


async def cycle(
    controller: AdaptiveRequestAdmissionController,
    n: int,
    outcome: RequestReleaseOutcome = OUTCOME_SUCCESS,
) -> None:
    """Acquire and release ``n`` leases one after the other."""
    for _ in range(n):
        controller.release(await controller.acquire(item()), outcome)


# ------------------------------------------------------------------------------ basics


def test_controller_satisfies_protocol() -> None:
    assert isinstance(make(), RequestAdmissionController)


async def test_try_acquire_release_and_limit() -> None:
    controller = make(cap=2)
    first = lease_of(controller.try_acquire(item()))
    lease_of(controller.try_acquire(item()))
    denied = controller.try_acquire(item())
    assert isinstance(denied, RequestAdmissionDenied)
    assert (denied.reason, denied.blocked_by) == ("would_wait", "limit")
    assert denied.snapshot is not None and denied.snapshot.in_flight == 2
    result = controller.release(first, OUTCOME_SUCCESS)
    assert (result.released, result.reason, result.lease_id) == (True, "released", first.lease_id)
    lease_of(controller.try_acquire(item()))


async def test_release_diagnostics_never_add_capacity() -> None:
    controller = make(cap=2)
    other = make(cap=2)
    lease = lease_of(controller.try_acquire(item()))
    keep = lease_of(controller.try_acquire(item()))
    assert controller.release(lease, OUTCOME_SUCCESS).released

    assert controller.release(lease, OUTCOME_SUCCESS).reason == "duplicate"
    foreign = lease_of(other.try_acquire(item()))
    assert controller.release(foreign, OUTCOME_SUCCESS).reason == "wrong_generation"
    forged = msgspec.structs.replace(keep, lease_id=999)
    assert controller.release(forged, OUTCOME_SUCCESS).reason == "unknown_lease"
    tampered = msgspec.structs.replace(keep, acquired_at=keep.acquired_at - 5)
    assert controller.release(tampered, OUTCOME_SUCCESS).reason == "stale_lease"
    result = controller.release("not a lease", OUTCOME_SUCCESS)  # type: ignore[arg-type]
    assert result.released is False

    pressure = snap(controller)
    assert pressure.in_flight == 1  # `keep` is still held: nothing freed its slot
    assert pressure.duplicate_releases == 1
    assert pressure.unknown_releases == 2  # forged + tampered
    assert controller.pressure_snapshot().unknown_releases >= 1  # the foreign lease
    assert controller.release(keep, OUTCOME_SUCCESS).released  # the real one still works
    assert snap(controller).in_flight == 0


@guarded
async def test_malformed_outcome_still_frees_the_slot_for_the_next_waiter(autojump_clock) -> None:
    # A release whose outcome cannot be read used to take the slot back without handing it
    # on, and then report the lease as unknown: the waiter stayed parked under a free cap.
    sink = InMemoryEventSink()
    controller = make(
        cap=1, sink=sink, initial_limit=1, circuit_breaker_threshold=1, tokens_per_window=1000
    )
    malformed: list[Any] = [
        RequestReleaseOutcome("rate_limited", "5"),  # type: ignore[arg-type]
        RequestReleaseOutcome("success", None, "7"),  # type: ignore[arg-type]
        None,
    ]
    held = lease_of(controller.try_acquire(item()))
    got: list[RequestAdmissionLease] = []

    async def waiter() -> None:
        got.append(await controller.acquire(item()))

    for outcome in malformed:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            result = controller.release(held, outcome)
            assert result.released and result.reason == "released", result
            assert result.diagnostics and "invalid_outcome" in result.diagnostics
        assert controller.release(held, OUTCOME_SUCCESS).reason == "duplicate"  # exactly once
        held = got.pop()  # the waiter got the slot
    pressure = snap(controller)
    assert (pressure.limit, pressure.rate_limits, pressure.successes) == (1, 0, 0)
    assert pressure.grants == pressure.released + pressure.in_flight
    released = sink.of_kind("request_lease_released")
    assert {e.outcome for e in released} == {"unexpected_exception"}

    # a half-open probe released that way gives no verdict: the next probe may go
    controller.release(held, RATE_LIMITED)
    assert snap(controller).circuit == "open"
    probe = await controller.acquire(item())
    assert probe.probe
    assert controller.release(probe, None).released  # type: ignore[arg-type]
    probe = await controller.acquire(item())
    assert probe.probe
    controller.release(probe, OUTCOME_SUCCESS)
    assert snap(controller).circuit == "closed"


@guarded
async def test_state_changes_cannot_be_split_by_keyboard_interrupt(autojump_clock) -> None:
    # Like trio's own primitives: a Ctrl-C must not land between taking a lease back and
    # handing the slot on (or mid-grant, mid-reconfigure...). Every event is emitted from
    # inside such a state change, so the sink sees whether it runs KI-protected.
    protected: list[tuple[str, bool]] = []

    class Probe:
        def emit(self, event: Any) -> None:
            protected.append((event.event_kind, trio.lowlevel.currently_ki_protected()))

    controller = make(cap=1, sink=Probe(), circuit_breaker_threshold=1, initial_limit=1)
    held = lease_of(controller.try_acquire(item()))

    async def denied() -> None:
        with pytest.raises(RequestAdmissionError, match="circuit_open"):
            await controller.acquire(item(timeout=5.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(denied)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, RATE_LIMITED)  # opens the circuit: the waiter is denied
    with pytest.raises(RequestAdmissionError):
        await controller.acquire(item(timeout=1.0))
    controller.reset_circuit(KEY)
    controller.release(await controller.acquire(item()), OUTCOME_SUCCESS)
    controller.reconfigure(static_caps={ENDPOINT: 2})
    controller.shutdown()
    assert trio.lowlevel.currently_ki_protected() is False  # the probe can tell
    assert [kind for kind, ok in protected if not ok] == []
    assert len({kind for kind, _ in protected}) >= 8


async def test_unknown_resource() -> None:
    controller = make()
    unknown = item(key=RequestResourceKey("sim", "nope", "chat"))
    denied = controller.try_acquire(unknown)
    assert isinstance(denied, RequestAdmissionDenied) and denied.reason == "unknown_resource"
    with pytest.raises(RequestAdmissionError) as info:
        await controller.acquire(unknown)
    assert info.value.reason == "unknown_resource"
    assert "Fix:" in str(info.value)


def test_item_validation() -> None:
    with pytest.raises(ConfigurationError, match="weight"):
        item(weight=0)
    with pytest.raises(ConfigurationError, match="request_group"):
        item(group="")
    with pytest.raises(ConfigurationError, match="timeout"):
        item(timeout=-1)
    with pytest.raises(ConfigurationError, match="estimated_tokens"):
        item(estimated_tokens=-5)


# ------------------------------------------------------------------------------ AIMD


@guarded
async def test_aimd_decrease_cooldown_and_additive_increase(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(
        cap=10,
        sink=sink,
        initial_limit=8,
        decrease_factor=0.5,
        successes_until_increase=2,
        cooldown_seconds=5.0,
        ceiling_hold_rounds=0,
    )
    await cycle(controller, 1)
    assert snap(controller).limit == 8

    start = trio.current_time()
    await cycle(controller, 1, RATE_LIMITED)
    pressure = snap(controller)
    assert pressure.limit == 4  # floor(8 * 0.5)
    assert pressure.cooldown_remaining == pytest.approx(5.0)
    assert pressure.last_rate_limit_ceiling == 8
    assert pressure.consecutive_rate_limits == 1

    await cycle(controller, 6)  # successes inside the cooldown do not count
    assert snap(controller).limit == 4

    await trio.sleep_until(start + 5.0)
    await cycle(controller, 1)
    assert snap(controller).limit == 4  # one success: not yet
    await cycle(controller, 1)
    assert snap(controller).limit == 5
    await cycle(controller, 10)
    assert snap(controller).limit == 10  # min(effective_max, ...)
    await cycle(controller, 10)
    assert snap(controller).limit == 10  # never above effective_max
    assert snap(controller).consecutive_rate_limits == 0

    kinds = sink.kinds()
    assert kinds.count("request_limit_decreased") == 1
    assert kinds.count("request_limit_increased") == 6
    assert kinds.count("request_fully_recovered") == 1
    assert kinds.count("request_rate_limited") == 1


@pytest.mark.parametrize("hint", [2.0, 0.25, 30.0])
@guarded
async def test_retry_after_overrides_configured_cooldown(hint: float, autojump_clock) -> None:
    controller = make(cap=10, cooldown_seconds=5.0)
    await cycle(controller, 1, RequestReleaseOutcome.rate_limited(hint))
    assert snap(controller).cooldown_remaining == pytest.approx(hint)


@pytest.mark.parametrize("hint", [math.inf, math.nan, -1.0, 0.0])
@guarded
async def test_unusable_retry_after_falls_back_to_the_configured_cooldown(
    hint: float, autojump_clock
) -> None:
    # An infinite hint used to start a cooldown (and open a circuit) that never ends: the
    # limit could never grow again and a paused resource never admitted anything again.
    controller = make(cap=10, initial_limit=1, cooldown_seconds=5.0, circuit_breaker_threshold=1)
    await cycle(controller, 1, RequestReleaseOutcome.rate_limited(hint))
    pressure = snap(controller)
    assert pressure.cooldown_remaining == pytest.approx(5.0)
    assert (pressure.circuit, pressure.circuit_reopens_in) == ("open", pytest.approx(30.0))


@pytest.mark.parametrize(
    "outcome",
    [
        OUTCOME_PROVIDER_FAILURE,
        OUTCOME_PROVIDER_TIMEOUT,
        OUTCOME_LOCAL_CANCELLED,
        OUTCOME_LOCAL_TIMEOUT,
        OUTCOME_UNEXPECTED,
    ],
)
@guarded
async def test_only_rate_limited_decreases(outcome, autojump_clock) -> None:
    controller = make(cap=10, initial_limit=6, successes_until_increase=1)
    await cycle(controller, 5, outcome)
    pressure = snap(controller)
    assert pressure.limit == 6
    assert pressure.cooldown_remaining == 0.0
    assert pressure.released == 5


@guarded
async def test_max_limit_remembers_the_highest_limit_after_a_decrease(autojump_clock) -> None:
    controller = make(
        cap=10,
        initial_limit=2,
        successes_until_increase=1,
        ceiling_hold_rounds=0,
        decrease_factor=0.5,
        cooldown_seconds=0.0,
    )
    await cycle(controller, 4)
    assert snap(controller).limit == 6
    await cycle(controller, 1, RATE_LIMITED)
    pressure = snap(controller)
    assert (pressure.limit, pressure.max_limit) == (3, 6)


@guarded
async def test_pressure_counts_each_outcome(autojump_clock) -> None:
    controller = make(cap=10, initial_limit=4, cooldown_seconds=0.0)
    await cycle(controller, 3)
    await cycle(controller, 2, OUTCOME_PROVIDER_FAILURE)
    await cycle(controller, 1, OUTCOME_PROVIDER_TIMEOUT)
    await cycle(controller, 1, RATE_LIMITED)
    await cycle(controller, 1, OUTCOME_LOCAL_CANCELLED)
    pressure = snap(controller)
    assert (pressure.grants, pressure.released, pressure.in_flight) == (8, 8, 0)
    assert (pressure.successes, pressure.failures, pressure.rate_limits) == (3, 3, 1)
    assert (pressure.denials, pressure.wait_timeouts, pressure.wait_cancellations) == (0, 0, 0)


@guarded
async def test_limit_floor_is_one(autojump_clock) -> None:
    controller = make(cap=10, initial_limit=3, decrease_factor=0.5, circuit_breaker_threshold=None)
    for expected in (1, 1, 1):
        await cycle(controller, 1, RATE_LIMITED)
        assert snap(controller).limit == expected


@guarded
async def test_decrease_is_the_exact_floor_of_limit_times_factor(autojump_clock) -> None:
    # 90 * 0.7 is 62.99999999999999 in binary floating point; the SPEC's floor(90 * 0.7) is 63
    controller = make(cap=100, initial_limit=90, decrease_factor=0.7)
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).limit == 63


@guarded
async def test_rate_limit_storm_is_coalesced_into_one_decrease(autojump_clock) -> None:
    controller = make(cap=8, decrease_factor=0.5, slow_start=False)  # start at the cap
    leases = [await controller.acquire(item()) for _ in range(8)]
    for lease in leases:
        controller.release(lease, RATE_LIMITED)
    pressure = snap(controller)
    assert pressure.limit == 4
    assert (pressure.rate_limits, pressure.coalesced_rate_limits) == (8, 7)
    # a 429 for a call admitted after the decrease is news: it decreases again
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).limit == 2


@guarded
async def test_without_coalescing_every_rate_limit_decreases(autojump_clock) -> None:
    controller = make(
        cap=8,
        decrease_factor=0.5,
        coalesce_rate_limits=False,
        circuit_breaker_threshold=None,
        slow_start=False,
    )
    leases = [await controller.acquire(item()) for _ in range(4)]
    for lease in leases:
        controller.release(lease, RATE_LIMITED)
    assert snap(controller).limit == 1  # 8 -> 4 -> 2 -> 1 -> 1


@guarded
async def test_soft_ceiling_holds_then_probes_then_forgets(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(
        cap=20,
        sink=sink,
        initial_limit=8,
        decrease_factor=0.5,
        successes_until_increase=1,
        cooldown_seconds=0.0,
        ceiling_hold_rounds=2,
        ceiling_hold_seconds=0.0,  # rounds only: the cycles take no time
    )
    await cycle(controller, 1, RATE_LIMITED)
    assert (snap(controller).limit, snap(controller).last_rate_limit_ceiling) == (4, 8)
    await cycle(controller, 3)  # normal growth: 5, 6, 7 (one below the ceiling)
    assert snap(controller).limit == 7
    assert sink.kinds().count("request_soft_ceiling_recovered") == 1
    await cycle(controller, 13)  # at 7 a step needs ceil(2 * 7) = 14 successes
    assert snap(controller).limit == 7
    await cycle(controller, 1)
    assert snap(controller).limit == 8  # back at the ceiling
    await cycle(controller, 16)  # at 8 it needs 16 more before trying 9
    pressure = snap(controller)
    assert (pressure.limit, pressure.last_rate_limit_ceiling) == (9, None)
    await cycle(controller, 3)  # the ceiling is stale: normal growth again
    assert snap(controller).limit == 12


@guarded
async def test_a_large_step_stops_one_below_the_ceiling(autojump_clock) -> None:
    controller = make(
        cap=20,
        initial_limit=8,
        decrease_factor=0.5,
        increase_step=3,
        successes_until_increase=1,
        cooldown_seconds=0.0,
        ceiling_hold_rounds=2,
        ceiling_hold_seconds=0.0,  # rounds only: the cycles take no time
    )
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).limit == 4
    await cycle(controller, 1)
    assert snap(controller).limit == 7  # 4 + 3 is exactly one below the ceiling
    controller.reconfigure(limits={KEY: 5})
    await cycle(controller, 1)
    assert snap(controller).limit == 7  # 5 + 3 would jump over it: held at ceiling - 1


@guarded
async def test_a_hold_of_one_round_still_climbs_past_the_ceiling(autojump_clock) -> None:
    controller = make(
        cap=20,
        initial_limit=8,
        decrease_factor=0.5,
        successes_until_increase=1,
        cooldown_seconds=0.0,
        ceiling_hold_rounds=1,
        ceiling_hold_seconds=0.0,  # rounds only: the cycles take no time
    )
    await cycle(controller, 1, RATE_LIMITED)
    await cycle(controller, 3)
    assert snap(controller).limit == 7
    await cycle(controller, 7)  # at 7 a step needs ceil(1 * 7) = 7 successes
    assert snap(controller).limit == 8
    await cycle(controller, 8)
    pressure = snap(controller)
    assert (pressure.limit, pressure.last_rate_limit_ceiling) == (9, None)
    await cycle(controller, 3)  # the ceiling is stale: normal growth again
    assert snap(controller).limit == 12


@guarded
async def test_startup_ramp_admits_by_time_alone(autojump_clock) -> None:
    controller = make(cap=10, initial_limit=5, startup_ramp_seconds=4.0)
    start = trio.current_time()
    first = await controller.acquire(item())
    assert snap(controller).limit == 1 and snap(controller).ramping
    admitted: list[float] = []

    async def waiter() -> None:
        await controller.acquire(item())  # held until the end of the test
        admitted.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(waiter)
    # nobody released anything: the timer alone let the ramp admit them
    assert admitted == pytest.approx([1.0, 2.0, 3.0, 4.0])
    pressure = snap(controller)
    assert (pressure.limit, pressure.ramping, pressure.in_flight) == (5, False, 5)
    controller.release(first, OUTCOME_SUCCESS)


@guarded
async def test_timer_does_not_spin_while_another_domain_holds_the_cap(autojump_clock) -> None:
    # chat ramps 1 -> 2 at t=4 while chat + embedding fill the aggregate cap of 2. When the
    # ramp step comes, only a release can help; the timer must go quiet, not re-fire at the
    # same instant (virtual time would then barely advance: the watchdog below catches it).
    controller = make(
        cap=2,
        overrides=(
            RequestResourceOverride(
                provider="sim", domain="chat", initial_limit=2, startup_ramp_seconds=4.0
            ),
        ),
    )
    chat = await controller.acquire(item())
    embed = await controller.acquire(item(key=EMBED))
    got: list[float] = []

    async def waiter() -> None:
        await controller.acquire(item())
        got.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        while trio.current_time() < 10.0:
            await trio.sleep(0.01)
            assert controller.timer_wakeups <= 2, controller.timer_wakeups
        assert got == [] and snap(controller).limit == 2
        released_at = trio.current_time()
        controller.release(embed, OUTCOME_SUCCESS)
    assert got == [released_at]  # handed over by the release itself
    controller.release(chat, OUTCOME_SUCCESS)


@guarded
async def test_rate_limit_aborts_startup_ramp(autojump_clock) -> None:
    controller = make(cap=20, initial_limit=9, startup_ramp_seconds=8.0, decrease_factor=0.5)
    lease = await controller.acquire(item())
    await trio.sleep(4.0)  # ramp limit is now 1 + floor(8 * 4 / 8) = 5
    controller.release(lease, RATE_LIMITED)
    pressure = snap(controller)
    # the cut is taken from the limit the rejected call was admitted at (1), not from the
    # ramp's step reached while it was out (5): the 429 speaks about the level it met
    assert (pressure.limit, pressure.ramping) == (1, False)
    second = await controller.acquire(item())
    await trio.sleep(1.0)
    controller.release(second, RATE_LIMITED)  # a second answer that cuts, from limit 1
    await trio.sleep(10.0)
    assert snap(controller).limit == 1  # the ramp does not resume


@guarded
async def test_reconfigure_lowering_the_max_under_a_ramp_ends_it(autojump_clock) -> None:
    # A clamp of 1 leaves the ramp nothing to climb; computing its next step used to divide
    # by zero in reconfigure, in release (which then reported a freed lease as unknown) and
    # in the timer task (which crashed the run).
    controller = make(cap=10, initial_limit=5, startup_ramp_seconds=10.0)
    held = await controller.acquire(item())
    got: list[RequestAdmissionLease] = []

    async def waiter() -> None:
        got.append(await controller.acquire(item()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.reconfigure(
            RequestAdmissionConfig(
                defaults=RequestResourceSettings(
                    clamp=1, initial_limit=5, startup_ramp_seconds=10.0
                )
            )
        )
        assert (snap(controller).limit, snap(controller).ramping) == (1, False)
        assert controller.release(held, OUTCOME_SUCCESS).released
    assert len(got) == 1 and got[0].waited == 0.0
    assert controller.release(got[0], OUTCOME_SUCCESS).released
    assert snap(controller).in_flight == 0


@guarded
async def test_paused_cooldown_wakes_waiters_without_any_release(autojump_clock) -> None:
    controller = make(cap=10, initial_limit=4, cooldown_admission="paused")
    await cycle(controller, 1, RequestReleaseOutcome.rate_limited(3.0))
    start = trio.current_time()
    assert snap(controller).in_flight == 0
    denied = controller.try_acquire(item())
    assert isinstance(denied, RequestAdmissionDenied)
    assert (denied.blocked_by, denied.available_after) == ("cooldown", start + 3.0)
    lease = await controller.acquire(item())  # nothing in flight, nothing to release
    assert trio.current_time() - start == pytest.approx(3.0)
    assert lease.limit == 3


@guarded
async def test_within_limit_cooldown_keeps_admitting_up_to_the_decreased_limit(
    autojump_clock,
) -> None:
    controller = make(cap=10, initial_limit=4, decrease_factor=0.5)
    held = [await controller.acquire(item()) for _ in range(3)]
    controller.release(held.pop(), RequestReleaseOutcome.rate_limited(30.0))
    assert snap(controller).limit == 2
    denied = controller.try_acquire(item())  # 2 still in flight: at the decreased limit
    assert isinstance(denied, RequestAdmissionDenied) and denied.blocked_by == "limit"
    controller.release(held.pop(), OUTCOME_SUCCESS)
    lease_of(controller.try_acquire(item()))  # below it again: admitted, cooldown or not
    assert snap(controller).cooldown_remaining > 0


# ------------------------------------------------------------------------------ caps


async def test_aggregate_cap_spans_domains_and_aliases() -> None:
    controller = AdaptiveRequestAdmissionController(
        [
            ModelEndpoint(name="generator", provider="sim", model_id="m", max_parallel_requests=6),
            ModelEndpoint(name="judge", provider="sim", model_id="m", max_parallel_requests=3),
        ]
    )
    chat = controller.resolver.resolve("generator")
    embed = controller.resolver.resolve("judge", domain="embedding")
    lease_of(controller.try_acquire(item(key=chat)))
    lease_of(controller.try_acquire(item(key=chat)))
    lease_of(controller.try_acquire(item(key=embed)))
    for key in (chat, embed):
        denied = controller.try_acquire(item(key=key))
        assert isinstance(denied, RequestAdmissionDenied)
        assert denied.blocked_by == "aggregate_cap"
    endpoint = controller.endpoint_pressure(ENDPOINT)
    assert endpoint is not None
    assert (endpoint.static_cap, endpoint.in_flight) == (3, 3)
    assert endpoint.aliases == ("generator", "judge") and endpoint.raw_caps == (6, 3)
    assert snap(controller, chat).effective_max == 3


async def test_clamp_bounds_one_domain_below_the_cap() -> None:
    controller = make(
        cap=8, overrides=(RequestResourceOverride(provider="sim", domain="embedding", clamp=2),)
    )
    lease_of(controller.try_acquire(item(key=EMBED)))
    lease_of(controller.try_acquire(item(key=EMBED)))
    denied = controller.try_acquire(item(key=EMBED))
    assert isinstance(denied, RequestAdmissionDenied) and denied.blocked_by == "limit"
    assert snap(controller, EMBED).effective_max == 2
    lease_of(controller.try_acquire(item()))  # chat still has room under the cap
    assert snap(controller).effective_max == 8


@guarded
async def test_reconfigure_lowering_never_revokes_and_raising_admits(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(cap=4, sink=sink)
    leases = [await controller.acquire(item()) for _ in range(4)]
    controller.reconfigure(static_caps={ENDPOINT: 2})
    pressure = snap(controller)
    assert (pressure.in_flight, pressure.limit, pressure.effective_max) == (4, 2, 2)
    controller.release(leases.pop(), OUTCOME_SUCCESS)
    controller.release(leases.pop(), OUTCOME_SUCCESS)
    assert isinstance(controller.try_acquire(item()), RequestAdmissionDenied)
    controller.release(leases.pop(), OUTCOME_SUCCESS)
    leases.append(lease_of(controller.try_acquire(item())))

    got: list[RequestAdmissionLease] = []

    async def waiter() -> None:
        got.append(await controller.acquire(item()))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        controller.reconfigure(static_caps={ENDPOINT: 8}, limits={KEY: 5})
    assert len(got) == 3  # raising the cap and the limit admitted every waiter
    assert snap(controller).limit == 5
    assert "request_effective_cap_changed" in sink.kinds()
    with pytest.raises(ConfigurationError, match="static_caps"):
        controller.reconfigure(static_caps={ProviderModelKey("sim", "zzz"): 3})
    with pytest.raises(ConfigurationError, match="limits"):
        controller.reconfigure(limits={KEY: 0})
    assert snap(controller).limit == 5  # a rejected reconfigure changes nothing


@guarded
async def test_reconfigure_settings_and_endpoints(autojump_clock) -> None:
    controller = make(cap=4)
    await cycle(controller, 1)
    controller.reconfigure(RequestAdmissionConfig(defaults=RequestResourceSettings(clamp=1)))
    assert snap(controller).effective_max == 1
    controller.reconfigure(
        endpoints=[ModelEndpoint(name="x", provider="sim", model_id="m2", max_parallel_requests=2)]
    )
    with pytest.raises(RequestAdmissionError) as info:
        await controller.acquire(item())
    assert info.value.reason == "unknown_resource"  # the old endpoint is no longer declared
    lease_of(controller.try_acquire(item(key=RequestResourceKey("sim", "m2", "chat"))))


@guarded
async def test_reconfigure_denies_waiters_a_lowered_token_quota_can_never_fit(
    autojump_clock,
) -> None:
    controller = make(cap=10, tokens_per_window=100, window_seconds=10.0)
    held = await controller.acquire(item(estimated_tokens=80))
    outcomes: list[str] = []

    async def waiter(tokens: int) -> None:
        try:
            lease = await controller.acquire(item(estimated_tokens=tokens, timeout=math.inf))
        except RequestAdmissionError as exc:
            outcomes.append(f"{tokens}: {exc.reason}")
        else:
            outcomes.append(f"{tokens}: lease")
            controller.release(lease, OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, 50)  # the head of the lane ...
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, 30)  # ... and one behind it that still fits
        await trio.testing.wait_all_tasks_blocked()
        controller.reconfigure(
            RequestAdmissionConfig(
                defaults=RequestResourceSettings(tokens_per_window=40, window_seconds=10.0)
            )
        )
    # 50 can never fit into 40 tokens: told at once instead of waiting forever (and blocking
    # the waiter behind it); 30 is admitted when the 80 leaves the window at t=10
    assert outcomes == ["50: too_large", "30: lease"]
    assert trio.current_time() == pytest.approx(10.0)
    controller.release(held, OUTCOME_SUCCESS)
    assert (snap(controller).in_flight, snap(controller).waiters) == (0, 0)


# ------------------------------------------------------------------------------ waiters


@guarded
async def test_waiters_get_direct_handoff_and_try_acquire_never_overtakes(autojump_clock) -> None:
    controller = make(cap=1)
    held = lease_of(controller.try_acquire(item()))
    got: list[RequestAdmissionLease] = []

    async def waiter() -> None:
        got.append(await controller.acquire(item()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        denied = controller.try_acquire(item())
        assert isinstance(denied, RequestAdmissionDenied)
        assert (denied.reason, denied.queued_waiters_ahead) == ("would_wait", 1)
        controller.release(held, OUTCOME_SUCCESS)
        # the lease went straight to the waiter: it is in flight before the waiter even ran
        assert snap(controller).in_flight == 1
        assert isinstance(controller.try_acquire(item()), RequestAdmissionDenied)
    assert len(got) == 1 and got[0].waited == 0.0


async def _newcomer_round(newcomer_waits: bool = False) -> list[RequestAdmissionDecision]:
    """A chat waiter held by a paused cooldown ending at t+3, and an embedding newcomer at
    t+3 too (``try_acquire``, or ``acquire`` without waiting), under an endpoint cap of 1.
    Returns what each got."""
    controller = make(
        cap=1,
        overrides=(
            RequestResourceOverride(provider="sim", domain="chat", cooldown_admission="paused"),
        ),
    )
    await cycle(controller, 1, RequestReleaseOutcome.rate_limited(3.0))
    due = trio.current_time() + 3.0
    got: list[RequestAdmissionDecision] = []

    async def waiter() -> None:
        lease = await controller.acquire(item())
        got.append(lease)
        controller.release(lease, OUTCOME_SUCCESS)

    async def newcomer() -> None:
        await trio.sleep_until(due)
        decision: RequestAdmissionDecision
        if newcomer_waits:
            try:
                decision = await controller.acquire(item(key=EMBED, timeout=0.0))
            except RequestAdmissionError as exc:
                decision = exc.denied
        else:
            decision = controller.try_acquire(item(key=EMBED))
        got.append(decision)
        if isinstance(decision, RequestAdmissionLease):
            controller.release(decision, OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(newcomer)
    assert trio.current_time() == due
    return got


@pytest.mark.parametrize("newcomer_waits", [False, True], ids=["try_acquire", "acquire"])
@guarded
async def test_newcomer_never_takes_a_slot_that_time_just_freed_for_a_waiter(
    newcomer_waits: bool, autojump_clock
) -> None:
    # Whichever of the newcomer and the timer task trio runs first at the instant the
    # cooldown ends (trio picks at random, so try a few rounds), the waiter that time made
    # admissible gets the slot; the newcomer on the other domain finds the cap taken.
    for _ in range(12):
        got = await _newcomer_round(newcomer_waits)
        leases = [g for g in got if isinstance(g, RequestAdmissionLease)]
        denials = [g for g in got if isinstance(g, RequestAdmissionDenied)]
        assert [lease.item.resource for lease in leases] == [KEY]
        assert [denied.blocked_by for denied in denials] == ["aggregate_cap"]


@guarded
async def test_fifo_within_group_and_oldest_first_on_ties(autojump_clock) -> None:
    controller = make(cap=1)
    held = lease_of(controller.try_acquire(item()))
    order: list[str] = []

    async def waiter(name: str, group: str) -> None:
        lease = await controller.acquire(item(group))
        order.append(name)
        await trio.sleep(1)
        controller.release(lease, OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        for name, group in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("b2", "b")]:
            nursery.start_soon(waiter, name, group)
            await trio.testing.wait_all_tasks_blocked()
        controller.release(held, OUTCOME_SUCCESS)
    # equal weights: alternate groups; a ties with b at every round and a1 is older than b1
    assert order == ["a1", "b1", "a2", "b2", "a3"]


@guarded
async def test_weighted_fairness_three_to_one(autojump_clock) -> None:
    controller = make(cap=2)
    grants: Counter[str] = Counter()
    total = 400

    async def worker(group: str, weight: float, cancel: trio.CancelScope) -> None:
        while True:
            lease = await controller.acquire(item(group, weight))
            grants[group] += 1
            if sum(grants.values()) >= total:
                cancel.cancel()
            await trio.sleep(1)
            controller.release(lease, OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(worker, "heavy", 3.0, nursery.cancel_scope)
            nursery.start_soon(worker, "light", 1.0, nursery.cancel_scope)
    ratio = grants["heavy"] / grants["light"]
    assert 2.8 <= ratio <= 3.2, grants


@pytest.mark.parametrize("visited_before", [False, True])
@guarded
async def test_late_group_gets_no_credit_for_idleness(visited_before: bool, autojump_clock) -> None:
    controller = make(cap=1)
    order: list[str] = []
    if visited_before:  # the late group once queued and gave up: it is idle all the same
        held = lease_of(controller.try_acquire(item()))
        with pytest.raises(RequestAdmissionError, match="timeout"):
            await controller.acquire(item("late", timeout=0.5))
        controller.release(held, OUTCOME_SUCCESS)

    async def worker(group: str, rounds: int) -> None:
        for _ in range(rounds):
            lease = await controller.acquire(item(group))
            order.append(group)
            await trio.sleep(1)
            controller.release(lease, OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(worker, "early", 30)
        await trio.sleep(20.5)  # "early" alone took ~20 grants
        for _ in range(2):
            nursery.start_soon(worker, "late", 10)
    late_start = order.index("late")
    window = order[late_start : late_start + 16]
    # the late group shares 1:1 from its arrival; it does not get a burst to catch up
    assert abs(window.count("late") - window.count("early")) <= 1, window


@guarded
async def test_another_group_goes_past_a_head_blocked_by_its_own_tokens(autojump_clock) -> None:
    controller = make(cap=10, tokens_per_window=100, window_seconds=60.0)
    await controller.acquire(item(estimated_tokens=50))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(controller.acquire, item("big", estimated_tokens=90))
        await trio.testing.wait_all_tasks_blocked()
        # FIFO holds within a group only: 10 tokens fit now, so this call does not wait
        lease = await controller.acquire(item("small", estimated_tokens=10))
        assert trio.current_time() == start
        assert snap(controller).waiters == 1  # only the big one
        nursery.cancel_scope.cancel()
    assert lease.reserved_tokens == 10


@guarded
async def test_a_lease_reports_how_long_it_waited(autojump_clock) -> None:
    controller = make(cap=1)
    start = trio.current_time()
    await trio.sleep(5.0)  # queued at start + 5, not at the clock's origin
    held = lease_of(controller.try_acquire(item()))
    async with trio.open_nursery() as nursery:
        got: list[RequestAdmissionLease] = []

        async def waiter() -> None:
            got.append(await controller.acquire(item()))

        nursery.start_soon(waiter)
        await trio.sleep(2.0)
        controller.release(held, OUTCOME_SUCCESS)
    assert got[0].waited == pytest.approx(2.0)
    assert got[0].acquired_at == pytest.approx(start + 7.0)


@guarded
async def test_acquire_timeout(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(cap=1, sink=sink, queue_timeout_seconds=5.0)
    held = lease_of(controller.try_acquire(item()))
    start = trio.current_time()
    with pytest.raises(RequestAdmissionError) as info:
        await controller.acquire(item(timeout=2.0))
    assert info.value.reason == "timeout"
    assert trio.current_time() - start == pytest.approx(2.0)
    with pytest.raises(RequestAdmissionError):
        await controller.acquire(item())  # the resource default: 5 s
    assert trio.current_time() - start == pytest.approx(7.0)
    with pytest.raises(RequestAdmissionError):
        await controller.acquire(item(timeout=0))  # no wait at all
    assert trio.current_time() - start == pytest.approx(7.0)
    pressure = snap(controller)
    assert (pressure.waiters, pressure.wait_timeouts, pressure.in_flight) == (0, 2, 1)
    assert sink.kinds().count("request_wait_timeout") == 2
    controller.release(held, OUTCOME_SUCCESS)
    lease_of(controller.try_acquire(item()))


@guarded
async def test_timeout_behind_other_waiters_names_them_as_the_constraint(autojump_clock) -> None:
    # The small call fits the window but queues (FIFO) behind a head that does not: the
    # timeout used to report no binding constraint at all.
    sink = InMemoryEventSink()
    controller = make(cap=4, sink=sink, tokens_per_window=100, window_seconds=10.0)
    held = await controller.acquire(item(estimated_tokens=80))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(controller.acquire, item(estimated_tokens=50))  # the blocked head
        await trio.testing.wait_all_tasks_blocked()
        for timeout in (0.0, 1.0):
            with pytest.raises(RequestAdmissionError) as info:
                await controller.acquire(item(estimated_tokens=5, timeout=timeout))
            assert (info.value.reason, info.value.denied.blocked_by) == ("timeout", "waiters")
        nursery.cancel_scope.cancel()
    assert [e.reason for e in sink.of_kind("request_wait_timeout")] == ["waiters"]
    controller.release(held, OUTCOME_SUCCESS)


@guarded
async def test_cancel_while_waiting_removes_the_waiter(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(cap=1, sink=sink)
    held = lease_of(controller.try_acquire(item()))
    got: list[str] = []

    async def waiter(name: str) -> None:
        await controller.acquire(item())
        got.append(name)

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(1.0) as scope:
            await waiter("cancelled")
        assert scope.cancelled_caught
        nursery.start_soon(waiter, "next")
        await trio.testing.wait_all_tasks_blocked()
        assert snap(controller).waiters == 1
        controller.release(held, OUTCOME_SUCCESS)
    assert got == ["next"]
    pressure = snap(controller)
    assert (pressure.wait_cancellations, pressure.in_flight, pressure.cancelled_grants) == (1, 1, 0)
    assert "request_wait_cancelled" in sink.kinds()


@guarded
async def test_cancelled_head_unblocks_the_waiter_behind_it_at_once(autojump_clock) -> None:
    controller = make(cap=10, tokens_per_window=100, window_seconds=60.0)
    await controller.acquire(item(estimated_tokens=50))
    start = trio.current_time()
    admitted: list[float] = []

    async def small() -> None:
        await controller.acquire(item(estimated_tokens=10))
        admitted.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(1.0):
            async with trio.open_nursery() as inner:
                inner.start_soon(controller.acquire, item(estimated_tokens=90))  # blocks
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(small)  # fits, but FIFO puts it behind the big one
                await trio.sleep_forever()
    # the big waiter was cancelled at t=1; the small one must not wait for the window (t=60)
    assert admitted == [1.0]


@guarded
async def test_timed_out_head_unblocks_the_waiter_behind_it_at_once(autojump_clock) -> None:
    controller = make(cap=10, tokens_per_window=100, window_seconds=60.0)
    await controller.acquire(item(estimated_tokens=50))
    start = trio.current_time()
    admitted: list[float] = []

    async def big() -> None:
        with pytest.raises(RequestAdmissionError, match="timeout"):
            await controller.acquire(item(estimated_tokens=90, timeout=1.0))

    async def small() -> None:
        await controller.acquire(item(estimated_tokens=10))
        admitted.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(big)  # blocks the window until t=60
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(small)  # fits, but FIFO puts it behind the big one
    # the big waiter gave up at t=1; the small one must not wait for the window (t=60)
    assert admitted == [1.0]


async def test_acquire_is_a_checkpoint_even_with_capacity_free() -> None:
    # Like trio's own primitives: an already-cancelled caller gets Cancelled, not a lease
    # it would carry unreleased into its cancelled scope.
    controller = make(cap=1)
    controller.release(lease_of(controller.try_acquire(item())), OUTCOME_SUCCESS)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await controller.acquire(item())
    pressure = snap(controller)
    assert (pressure.in_flight, pressure.grants) == (0, 1)
    lease_of(controller.try_acquire(item()))  # the slot is still free


@guarded
async def test_lease_granted_in_the_instant_of_cancellation_is_released(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(cap=1, sink=sink)
    held = lease_of(controller.try_acquire(item()))
    scope = trio.CancelScope()
    seen: list[str] = []

    async def waiter() -> None:
        with scope:
            try:
                await controller.acquire(item())
            except trio.Cancelled:
                seen.append("cancelled")
                raise
            seen.append("acquired")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, OUTCOME_SUCCESS)  # hands the lease to the parked waiter...
        scope.cancel()  # ... which is cancelled before it runs again
    assert seen == ["cancelled"]
    pressure = snap(controller)
    assert (pressure.in_flight, pressure.cancelled_grants) == (0, 1)
    assert pressure.grants == pressure.released == 2
    diagnostics = [e for e in sink.of_kind("request_release_diagnostic")]
    assert [e.reason for e in diagnostics] == ["cancelled_grant"]


@guarded
async def test_cancelled_grant_is_paired_in_the_event_stream(autojump_clock) -> None:
    # The reclaimed lease used to show up as released without ever having been acquired, and
    # its wait had no ending: every grant must read acquired -> released, every wait must end.
    sink = InMemoryEventSink()
    controller = make(cap=1, sink=sink)
    held = lease_of(controller.try_acquire(item()))
    scope = trio.CancelScope()

    async def waiter() -> None:
        with scope:
            await controller.acquire(item("late"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, OUTCOME_SUCCESS)
        scope.cancel()
    assert snap(controller).cancelled_grants == 1
    per_lease: dict[int | None, list[str]] = {}
    for event in sink.of_kind("request_lease_acquired", "request_lease_released"):
        per_lease.setdefault(event.lease_id, []).append(event.event_kind)
    assert list(per_lease.values()) == [["request_lease_acquired", "request_lease_released"]] * 2
    late = [
        e.event_kind
        for e in sink.events
        if e.request_group == "late" and e.event_kind.startswith("request_wait_")
    ]
    assert late == ["request_wait_started", "request_wait_cancelled"]


@guarded
async def test_queue_formed_and_drained_pair_up_however_waiters_leave(autojump_clock) -> None:
    # formed / drained mark a resource's waiters going 0 -> 1 and back to 0; a queue emptied
    # by a timeout, a cancellation or a denial used to stay "formed" in the event stream.
    sink = InMemoryEventSink()
    controller = make(cap=1, sink=sink)
    held = lease_of(controller.try_acquire(item()))

    def queue_events() -> list[str]:
        return [e.event_kind for e in sink.of_kind("request_queue_formed", "request_queue_drained")]

    with pytest.raises(RequestAdmissionError, match="timeout"):
        await controller.acquire(item(timeout=1.0))
    assert queue_events() == ["request_queue_formed", "request_queue_drained"]
    with trio.move_on_after(1.0):
        await controller.acquire(item())
    assert queue_events() == ["request_queue_formed", "request_queue_drained"] * 2
    first = trio.CancelScope()

    async def first_waiter() -> None:
        with first:
            await controller.acquire(item())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first_waiter)
        await trio.testing.wait_all_tasks_blocked()
        first.cancel()  # leaves the queue at once; the task itself runs again later ...
        with trio.move_on_after(1.0):
            await controller.acquire(item())  # ... after this one queued: one queue, not two
    assert queue_events() == ["request_queue_formed", "request_queue_drained"] * 3
    assert snap(controller).waiters == 0

    async def denied() -> None:
        with pytest.raises(RequestAdmissionError, match="shutdown"):
            await controller.acquire(item())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(denied)
        await trio.testing.wait_all_tasks_blocked()
        controller.shutdown()
    assert queue_events() == ["request_queue_formed", "request_queue_drained"] * 4
    controller.release(held, OUTCOME_SUCCESS)


@guarded
async def test_shutdown_wakes_waiters_and_denies_new_acquires(autojump_clock) -> None:
    controller = make(cap=1)
    held = lease_of(controller.try_acquire(item()))
    reasons: list[str] = []

    async def waiter() -> None:
        try:
            await controller.acquire(item())
        except RequestAdmissionError as exc:
            reasons.append(exc.reason)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.shutdown()
    assert reasons == ["shutdown"] * 3
    denied = controller.try_acquire(item())
    assert isinstance(denied, RequestAdmissionDenied) and denied.reason == "shutdown"
    with pytest.raises(RequestAdmissionError, match="shutdown"):
        await controller.acquire(item())
    assert controller.release(held, OUTCOME_SUCCESS).released  # in-flight leases still release
    pressure = snap(controller)
    assert (pressure.in_flight, pressure.waiters) == (0, 0)


@guarded
async def test_queue_full(autojump_clock) -> None:
    controller = make(cap=1, max_waiters=1)
    lease_of(controller.try_acquire(item()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(controller.acquire, item())
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RequestAdmissionError) as info:
            await controller.acquire(item())
        assert info.value.reason == "queue_full"
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------ circuit


@guarded
async def test_circuit_opens_probes_and_closes(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(
        cap=4,
        sink=sink,
        initial_limit=1,
        cooldown_seconds=0.0,
        circuit_breaker_threshold=2,
        circuit_open_seconds=10.0,
        circuit_backoff_multiplier=2.0,
        circuit_max_open_seconds=100.0,
    )
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).circuit == "closed"
    opened_at = trio.current_time()
    await cycle(controller, 1, RATE_LIMITED)  # the second consecutive 429 at limit 1
    assert snap(controller).circuit == "open"
    denied = controller.try_acquire(item())
    assert isinstance(denied, RequestAdmissionDenied)
    assert (denied.reason, denied.available_after) == ("circuit_open", opened_at + 10.0)
    with pytest.raises(RequestAdmissionError) as info:  # cannot wait long enough: told now
        await controller.acquire(item(timeout=5.0))
    assert info.value.reason == "circuit_open"
    assert trio.current_time() == opened_at

    probe = await controller.acquire(item())  # waits for the half-open probe slot
    assert probe.probe and trio.current_time() == opened_at + 10.0
    assert isinstance(controller.try_acquire(item()), RequestAdmissionDenied)  # one probe only
    controller.release(probe, RATE_LIMITED)  # probe rejected: reopen, longer backoff
    assert snap(controller).circuit == "open"
    assert snap(controller).circuit_reopens_in == pytest.approx(20.0)

    probe = await controller.acquire(item())
    assert trio.current_time() == opened_at + 30.0
    controller.release(probe, OUTCOME_SUCCESS)  # probe succeeded: closed
    assert snap(controller).circuit == "closed"
    lease_of(controller.try_acquire(item()))
    reasons = [e.reason for e in sink.of_kind("request_effective_cap_changed")]
    assert reasons == [
        "circuit_opened",
        "circuit_half_open",
        "circuit_reopened",
        "circuit_half_open",
        "circuit_closed",
    ]


@guarded
async def test_max_reopens_allows_that_many_reopenings(autojump_clock) -> None:
    controller = make(
        cap=4,
        initial_limit=1,
        cooldown_seconds=0.0,
        circuit_breaker_threshold=1,
        circuit_open_seconds=1.0,
        circuit_backoff_multiplier=2.0,
        circuit_max_reopens=1,
    )
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).circuit_reopens_in == pytest.approx(1.0)
    await cycle(controller, 1, RATE_LIMITED)  # the first probe fails: reopened, for longer
    assert snap(controller).circuit_reopens_in == pytest.approx(2.0)
    await cycle(controller, 1, RATE_LIMITED)  # the second: more than one reopening
    assert snap(controller).circuit_reopens_in == math.inf


@guarded
async def test_a_reconfigured_open_period_applies_to_the_next_opening(autojump_clock) -> None:
    controller = make(cap=4, initial_limit=1, cooldown_seconds=0.0, circuit_breaker_threshold=1)
    await cycle(controller, 1)  # the resource exists with the default 30 s open period
    controller.reconfigure(
        RequestAdmissionConfig(
            defaults=RequestResourceSettings(
                initial_limit=1,
                cooldown_seconds=0.0,
                circuit_breaker_threshold=1,
                circuit_open_seconds=0.5,
                circuit_backoff_multiplier=1.5,
            )
        )
    )
    await cycle(controller, 1, RATE_LIMITED)
    pressure = snap(controller)
    assert (pressure.circuit, pressure.circuit_reopens_in) == ("open", pytest.approx(0.5))
    await cycle(controller, 1, RATE_LIMITED)  # the probe fails: sub-second periods stay exact
    assert snap(controller).circuit_reopens_in == pytest.approx(0.75)


@guarded
async def test_a_circuit_closed_by_hand_starts_afresh(autojump_clock) -> None:
    controller = make(
        cap=4,
        initial_limit=1,
        cooldown_seconds=0.0,
        circuit_breaker_threshold=2,
        circuit_open_seconds=10.0,
    )
    await cycle(controller, 2, RATE_LIMITED)
    await cycle(controller, 1, RATE_LIMITED)  # the probe fails: reopened
    assert snap(controller).circuit_reopens_in == pytest.approx(20.0)
    controller.reset_circuit(KEY)
    await cycle(controller, 1, RATE_LIMITED)  # the streak starts again from zero
    assert snap(controller).circuit == "closed"
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).circuit_reopens_in == pytest.approx(10.0)  # the first period again
    probe = await controller.acquire(item())  # a new probe goes out once it is half-open
    assert probe.probe
    controller.release(probe, OUTCOME_SUCCESS)
    assert snap(controller).circuit == "closed"


@guarded
async def test_opening_the_circuit_skips_waiters_that_already_left(autojump_clock) -> None:
    controller = make(cap=4, initial_limit=1, cooldown_seconds=0.0, circuit_breaker_threshold=1)
    held = lease_of(controller.try_acquire(item()))
    reasons: list[str] = []
    gone = trio.CancelScope()

    async def leaves() -> None:
        with gone:
            await controller.acquire(item(timeout=5.0))

    async def stays() -> None:
        with pytest.raises(RequestAdmissionError) as info:
            await controller.acquire(item(timeout=5.0))
        reasons.append(info.value.reason)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stays)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(leaves)  # queued behind the one that stays ...
        await trio.testing.wait_all_tasks_blocked()
        gone.cancel()  # ... and left in the queue (skipped lazily) when it leaves
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, RATE_LIMITED)  # opens for 30 s: longer than both timeouts
    assert reasons == ["circuit_open"]
    pressure = snap(controller)
    assert (pressure.waiters, pressure.in_flight, pressure.wait_cancellations) == (0, 0, 1)


@guarded
async def test_circuit_stays_open_after_max_reopens(autojump_clock) -> None:
    controller = make(
        cap=4,
        initial_limit=1,
        cooldown_seconds=0.0,
        circuit_breaker_threshold=1,
        circuit_open_seconds=1.0,
        circuit_max_reopens=0,
    )
    await cycle(controller, 1, RATE_LIMITED)
    probe = await controller.acquire(item())
    reasons: list[str] = []

    async def waiter() -> None:
        try:
            await controller.acquire(item())
        except RequestAdmissionError as exc:
            reasons.append(exc.reason)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(probe, RATE_LIMITED)
    assert reasons == ["circuit_open"]
    with pytest.raises(RequestAdmissionError, match="circuit_open"):
        await controller.acquire(item())
    controller.reset_circuit(KEY)
    lease_of(controller.try_acquire(item()))


@guarded
async def test_only_rate_limits_at_limit_one_count_towards_the_breaker(autojump_clock) -> None:
    controller = make(
        cap=16,
        initial_limit=8,
        decrease_factor=0.5,
        cooldown_seconds=0.0,
        circuit_breaker_threshold=2,
    )
    for expected in (4, 2, 1):  # separate storms: each one cuts
        await cycle(controller, 1, RATE_LIMITED)
        assert snap(controller).limit == expected
    pressure = snap(controller)
    assert (pressure.circuit, pressure.consecutive_rate_limits) == ("closed", 3)
    await cycle(controller, 1, RATE_LIMITED)  # the first 429 at limit 1
    assert snap(controller).circuit == "closed"
    await cycle(controller, 1, RATE_LIMITED)  # the second: the breaker's threshold
    assert snap(controller).circuit == "open"


@pytest.mark.parametrize("answer", [OUTCOME_PROVIDER_FAILURE, OUTCOME_SUCCESS])
@guarded
async def test_failures_break_the_rate_limit_streak(
    answer: RequestReleaseOutcome, autojump_clock
) -> None:
    controller = make(cap=4, initial_limit=1, cooldown_seconds=0.0, circuit_breaker_threshold=2)
    await cycle(controller, 1, RATE_LIMITED)
    await cycle(controller, 1, answer)  # any non-429 answer ends the streak at limit 1
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).circuit == "closed"
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).circuit == "open"


@guarded
async def test_stale_probe_after_the_circuit_closed_is_an_ordinary_rate_limit(
    autojump_clock,
) -> None:
    controller = make(
        cap=4,
        initial_limit=3,
        cooldown_seconds=0.0,
        coalesce_rate_limits=False,
        circuit_breaker_threshold=2,
        circuit_open_seconds=10.0,
    )
    first, second, straggler = [await controller.acquire(item()) for _ in range(3)]
    controller.reconfigure(limits={KEY: 1})
    controller.release(first, RATE_LIMITED)
    controller.release(second, RATE_LIMITED)  # two 429s at limit 1: open
    assert snap(controller).circuit == "open"
    await trio.sleep(10.0)
    controller.reconfigure(limits={KEY: 2})  # room for the probe beside the straggler
    probe = lease_of(controller.try_acquire(item()))
    assert probe.probe
    controller.release(straggler, OUTCOME_SUCCESS)  # any success closes the circuit
    assert snap(controller).circuit == "closed"
    # The probe's 429 is no verdict any more: one 429 on a closed circuit (threshold 2) used
    # to reopen it at once, for twice the open period.
    controller.release(probe, RATE_LIMITED)
    pressure = snap(controller)
    assert (pressure.circuit, pressure.consecutive_rate_limits) == ("closed", 1)
    lease_of(controller.try_acquire(item()))


@guarded
async def test_reconfigure_closes_a_circuit_open_for_good_or_no_longer_wanted(
    autojump_clock,
) -> None:
    sink = InMemoryEventSink()
    settings = {
        "initial_limit": 1,
        "cooldown_seconds": 0.0,
        "circuit_breaker_threshold": 1,
        "circuit_open_seconds": 1.0,
        "circuit_max_reopens": 0,
    }
    controller = make(cap=4, sink=sink, **settings)
    await cycle(controller, 1, RATE_LIMITED)
    await cycle(controller, 1, RATE_LIMITED)  # the probe is refused: open for good
    assert snap(controller).circuit_reopens_in == math.inf
    controller.reconfigure(static_caps={ENDPOINT: 3})  # any reconfigure: try again
    assert snap(controller).circuit == "closed"
    lease_of(controller.try_acquire(item()))
    assert "circuit_closed" in [e.reason for e in sink.of_kind("request_effective_cap_changed")]

    controller = make(cap=4, **settings)
    await cycle(controller, 1, RATE_LIMITED)
    assert snap(controller).circuit == "open"
    no_breaker = dict(settings, circuit_breaker_threshold=None)
    controller.reconfigure(RequestAdmissionConfig(defaults=RequestResourceSettings(**no_breaker)))
    assert snap(controller).circuit == "closed"  # the breaker is off: nothing keeps it open
    lease_of(controller.try_acquire(item()))


# ------------------------------------------------------------------------------ rate window


@guarded
async def test_request_window_admits_by_time_alone(autojump_clock) -> None:
    controller = make(cap=10, requests_per_window=2, window_seconds=10.0)
    start = trio.current_time()
    await cycle(controller, 2)
    denied = controller.try_acquire(item())
    assert isinstance(denied, RequestAdmissionDenied)
    assert (denied.blocked_by, denied.available_after) == ("rate_window_requests", start + 10.0)
    await controller.acquire(item())  # nothing in flight: only the window's timer wakes it
    assert trio.current_time() == start + 10.0
    assert snap(controller).window_requests == 1


@guarded
async def test_token_window_reserves_estimates_and_settles_actuals(autojump_clock) -> None:
    controller = make(cap=10, tokens_per_window=100, window_seconds=60.0)
    lease = await controller.acquire(item(estimated_tokens=80))
    assert lease.reserved_tokens == 80
    denied = controller.try_acquire(item(estimated_tokens=30))
    assert isinstance(denied, RequestAdmissionDenied) and denied.blocked_by == "rate_window_tokens"
    controller.release(lease, RequestReleaseOutcome.success(actual_tokens=40))
    assert snap(controller).window_tokens == 40
    lease_of(controller.try_acquire(item(estimated_tokens=30)))
    too_big = controller.try_acquire(item(estimated_tokens=101))
    assert isinstance(too_big, RequestAdmissionDenied) and too_big.reason == "too_large"
    with pytest.raises(RequestAdmissionError, match="too_large"):
        await controller.acquire(item(estimated_tokens=101))


@guarded
async def test_token_window_returns_the_estimate_of_a_rejected_call(autojump_clock) -> None:
    controller = make(cap=10, tokens_per_window=100, window_seconds=60.0, cooldown_seconds=0.0)
    lease = await controller.acquire(item(estimated_tokens=80))
    controller.release(lease, RequestReleaseOutcome.rate_limited(retry_after_seconds=0.0))
    pressure = snap(controller)
    assert (pressure.window_tokens, pressure.window_requests) == (0, 1)  # the request counts
    lease = await controller.acquire(item(estimated_tokens=80))
    controller.release(lease, RequestReleaseOutcome.rate_limited(actual_tokens=5))
    assert snap(controller).window_tokens == 5  # an explicit count wins


@guarded
async def test_token_window_returns_the_estimate_of_a_grant_never_sent(autojump_clock) -> None:
    controller = make(cap=1, tokens_per_window=100, window_seconds=60.0)
    held = lease_of(controller.try_acquire(item(estimated_tokens=10)))
    scope = trio.CancelScope()

    async def waiter() -> None:
        with scope:
            await controller.acquire(item(estimated_tokens=50))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, RequestReleaseOutcome.success(actual_tokens=10))
        scope.cancel()  # granted and cancelled in one instant: the call never went out
    pressure = snap(controller)
    assert pressure.cancelled_grants == 1
    assert pressure.window_tokens == 10  # only the call that ran


# ------------------------------------------------------------------------------ events


@guarded
async def test_no_event_is_built_without_a_sink(monkeypatch, autojump_clock) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("event built without a sink")

    monkeypatch.setattr(EventEmitter, "request", boom)
    controller = make(cap=1, initial_limit=1, requests_per_window=5, window_seconds=1.0)
    assert controller.emitter.enabled is False
    held = await controller.acquire(item())

    async def waiter() -> None:
        controller.release(await controller.acquire(item()), RATE_LIMITED)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, OUTCOME_SUCCESS)
    controller.release(held, OUTCOME_SUCCESS)  # duplicate: diagnosed silently
    controller.reconfigure(static_caps={ENDPOINT: 3})


@guarded
async def test_event_stream_of_a_wait(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller = make(cap=1, sink=sink)
    held = await controller.acquire(item())

    async def waiter() -> None:
        controller.release(await controller.acquire(item("g")), OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, OUTCOME_SUCCESS)
    assert sink.kinds() == [
        "request_resource_registered",
        "request_lease_acquired",
        "request_queue_formed",
        "request_wait_started",
        "request_queue_drained",
        "request_lease_released",
        "request_wait_completed",
        "request_lease_acquired",
        "request_lease_released",
    ]
    assert [e.sequence for e in sink.events] == list(range(1, 10))
    acquired = sink.of_kind("request_lease_acquired")[1]
    assert (acquired.provider, acquired.model_id, acquired.domain, acquired.request_group) == (
        "sim",
        "m",
        "chat",
        "g",
    )


def test_pressure_reader_is_read_only() -> None:
    controller = make()
    reader = controller.pressure
    assert not hasattr(reader, "acquire") and not hasattr(reader, "release")
    snapshot = reader.snapshot()
    assert snapshot.endpoint(ENDPOINT) is not None
    with pytest.raises(AttributeError):
        snapshot.closed = True  # type: ignore[misc]


# ------------------------------------------------------------------------------ property


OUTCOMES = [
    OUTCOME_SUCCESS,
    RATE_LIMITED,
    RequestReleaseOutcome.rate_limited(1.5),
    OUTCOME_PROVIDER_FAILURE,
    OUTCOME_PROVIDER_TIMEOUT,
    OUTCOME_UNEXPECTED,
]

half_seconds = st.integers(0, 8).map(lambda n: n / 2)
request_op = st.fixed_dictionaries(
    {
        "arrive": half_seconds,
        "domain": st.sampled_from(["chat", "embedding"]),
        "group": st.sampled_from(["a", "b", "c"]),
        "hold": half_seconds,
        "outcome": st.sampled_from(OUTCOMES),
        "cancel_after": st.none() | half_seconds,
        "timeout": st.none() | half_seconds,
        "tokens": st.integers(0, 30),
    }
)
scenario = st.fixed_dictionaries(
    {
        "cap": st.integers(1, 4),
        "settings": st.fixed_dictionaries(
            {
                "initial_limit": st.none() | st.integers(1, 4),
                "startup_ramp_seconds": st.sampled_from([0.0, 2.0]),
                "cooldown_admission": st.sampled_from(["within_limit", "paused"]),
                "cooldown_seconds": st.sampled_from([0.0, 1.0]),
                "circuit_breaker_threshold": st.sampled_from([None, 1, 2]),
                "circuit_open_seconds": st.just(1.0),
                "coalesce_rate_limits": st.booleans(),
                "ceiling_hold_rounds": st.sampled_from([0.0, 1.0]),
                "requests_per_window": st.none() | st.integers(2, 6),
                "tokens_per_window": st.none() | st.integers(30, 80),
                "max_waiters": st.none() | st.integers(1, 4),
            }
        ),
        "embedding_clamp": st.none() | st.integers(1, 3),
        "shutdown_at": st.none() | st.integers(1, 12),
        "ops": st.lists(request_op, min_size=1, max_size=14),
    }
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario)
def test_random_arrivals_cancellations_and_outcomes_leave_nothing_behind(case) -> None:
    settings_kwargs = dict(case["settings"])
    if settings_kwargs["requests_per_window"] or settings_kwargs["tokens_per_window"]:
        settings_kwargs["window_seconds"] = 3.0
    overrides: tuple[RequestResourceOverride, ...] = ()
    if case["embedding_clamp"] is not None:
        overrides = (
            RequestResourceOverride(
                provider="sim", domain="embedding", clamp=case["embedding_clamp"]
            ),
        )
    sink = InMemoryEventSink()
    controller = make(cap=case["cap"], overrides=overrides, sink=sink, **settings_kwargs)
    acquired = 0
    errors: Counter[str] = Counter()
    cancelled = 0
    peak = 0

    async def request(op: dict[str, Any]) -> None:
        nonlocal acquired, cancelled, peak
        await trio.sleep(op["arrive"])
        key = RequestResourceKey("sim", "m", op["domain"])
        timeout = op["timeout"]
        entry = item(
            op["group"],
            1.0 + (op["group"] == "a"),
            key=key,
            estimated_tokens=op["tokens"],
            timeout=math.inf if timeout is None else timeout,
        )
        deadline = (
            math.inf if op["cancel_after"] is None else trio.current_time() + op["cancel_after"]
        )
        with trio.CancelScope(deadline=deadline) as scope:
            try:
                lease = await controller.acquire(entry)
            except RequestAdmissionError as exc:
                errors[exc.reason] += 1
                return
            acquired += 1
            endpoint = controller.endpoint_pressure(ENDPOINT)
            assert endpoint is not None
            peak = max(peak, endpoint.in_flight)
            outcome = OUTCOME_LOCAL_CANCELLED
            try:
                await trio.sleep(op["hold"])
                outcome = op["outcome"]
            finally:
                result = controller.release(lease, outcome)  # synchronous: no shield needed
                assert result.released, result
        if scope.cancelled_caught:
            cancelled += 1

    async def main() -> None:
        # virtual seconds: a lost wakeup would leave a waiter parked forever, failing here
        with trio.fail_after(600):
            await run_all()

    async def run_all() -> None:
        async with trio.open_nursery() as nursery:
            for op in case["ops"]:
                nursery.start_soon(request, op)
            if case["shutdown_at"] is not None:
                await trio.sleep(case["shutdown_at"])
                controller.shutdown()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    # Each timed change (ramp step, window slot, reopening, cooldown end) needs at most a few
    # wake-ups; a timer re-firing without time advancing would need thousands.
    assert controller.timer_wakeups <= 10 * len(case["ops"]), controller.timer_wakeups
    snapshot = controller.pressure_snapshot()
    endpoint = snapshot.endpoint(ENDPOINT)
    assert endpoint is not None
    assert (endpoint.in_flight, endpoint.waiters) == (0, 0)
    assert endpoint.max_in_flight <= case["cap"]
    assert peak <= case["cap"]
    grants = released = cancelled_grants = 0
    for pressure in snapshot.resources:
        assert (pressure.in_flight, pressure.waiters) == (0, 0)
        assert pressure.max_in_flight <= pressure.max_limit
        assert 1 <= pressure.limit <= pressure.effective_max
        assert pressure.duplicate_releases == pressure.unknown_releases == 0
        grants += pressure.grants
        released += pressure.released
        cancelled_grants += pressure.cancelled_grants
    assert snapshot.unknown_releases == 0
    assert grants == released == acquired + cancelled_grants
    assert sum(errors.values()) + acquired + cancelled_grants <= len(case["ops"])
    assert_event_stream_pairs(sink, grants)


def assert_event_stream_pairs(sink: InMemoryEventSink, grants: int) -> None:
    """Every grant reads acquired -> released once; each resource's queue alternates formed /
    drained and ends drained."""
    per_lease: dict[int | None, list[str]] = {}
    for event in sink.of_kind("request_lease_acquired", "request_lease_released"):
        per_lease.setdefault(event.lease_id, []).append(event.event_kind)
    assert len(per_lease) == grants
    assert all(
        k == ["request_lease_acquired", "request_lease_released"] for k in per_lease.values()
    )
    queues: dict[tuple[Any, ...], list[str]] = {}
    for event in sink.of_kind("request_queue_formed", "request_queue_drained"):
        queues.setdefault((event.provider, event.model_id, event.domain), []).append(
            event.event_kind
        )
    for kinds in queues.values():
        assert kinds == ["request_queue_formed", "request_queue_drained"] * (len(kinds) // 2)


reconfigured_settings = st.fixed_dictionaries(
    {
        "initial_limit": st.none() | st.integers(1, 4),
        "clamp": st.none() | st.integers(1, 4),
        "startup_ramp_seconds": st.sampled_from([0.0, 2.0]),
        "cooldown_admission": st.sampled_from(["within_limit", "paused"]),
        "cooldown_seconds": st.sampled_from([0.0, 1.0]),
        "circuit_breaker_threshold": st.sampled_from([None, 1, 2]),
        "circuit_open_seconds": st.just(1.0),
        "circuit_max_reopens": st.sampled_from([None, 0, 1]),
        "requests_per_window": st.none() | st.integers(2, 6),
        "tokens_per_window": st.none() | st.integers(20, 80),
    }
)
live_op = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("request"),
            "at": half_seconds,
            "domain": st.sampled_from(["chat", "embedding"]),
            "group": st.sampled_from(["a", "b"]),
            "hold": half_seconds,
            "outcome": st.sampled_from([OUTCOME_SUCCESS, RATE_LIMITED, OUTCOME_PROVIDER_FAILURE]),
            "cancel_after": st.none() | half_seconds,
            "tokens": st.integers(0, 40),
            "try": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("reconfigure"),
            "at": half_seconds,
            "cap": st.none() | st.integers(1, 4),
            "limit": st.none() | st.integers(1, 4),
            "settings": st.none() | reconfigured_settings,
            "reset_circuit": st.booleans(),
        }
    ),
)


def _config_of(settings: dict[str, Any]) -> RequestAdmissionConfig:
    settings = dict(settings)
    if settings["requests_per_window"] or settings["tokens_per_window"]:
        settings["window_seconds"] = 3.0
    return RequestAdmissionConfig(defaults=RequestResourceSettings(**settings))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.integers(1, 4), reconfigured_settings, st.lists(live_op, min_size=1, max_size=12))
def test_live_reconfigures_never_strand_waiters_leak_leases_or_lose_wakeups(
    cap: int, initial: dict[str, Any], ops: list[dict[str, Any]]
) -> None:
    controller = make(cap=cap)
    controller.reconfigure(_config_of(initial))
    acquired = 0
    asleep_while_admissible: list[tuple[float, RequestResourceKey]] = []

    async def request(op: dict[str, Any]) -> None:
        nonlocal acquired
        await trio.sleep(op["at"])
        entry = item(
            op["group"],
            key=RequestResourceKey("sim", "m", op["domain"]),
            estimated_tokens=op["tokens"],
            timeout=math.inf,
        )
        deadline = (
            math.inf if op["cancel_after"] is None else trio.current_time() + op["cancel_after"]
        )
        with trio.CancelScope(deadline=deadline):
            if op["try"]:
                decision = controller.try_acquire(entry)
                if isinstance(decision, RequestAdmissionDenied):
                    return
                lease = decision
            else:
                try:
                    lease = await controller.acquire(entry)
                except RequestAdmissionError:
                    return
            acquired += 1
            outcome = OUTCOME_LOCAL_CANCELLED
            try:
                await trio.sleep(op["hold"])
                outcome = op["outcome"]
            finally:
                assert controller.release(lease, outcome).released

    async def reconfigure(op: dict[str, Any]) -> None:
        await trio.sleep(op["at"])
        controller.reconfigure(
            _config_of(op["settings"]) if op["settings"] else None,
            static_caps={ENDPOINT: op["cap"]} if op["cap"] else None,
            limits={KEY: op["limit"]} if op["limit"] else None,
        )
        if op["reset_circuit"]:
            controller.reset_circuit(EMBED)

    async def watch_for_lost_wakeups() -> None:
        # Whenever every task is asleep, no queued head may be admissible under a free cap.
        while True:
            await trio.testing.wait_all_tasks_blocked()
            now = trio.current_time()
            asleep_while_admissible.extend((now, key) for key in controller.stranded_waiters())
            await trio.sleep(0.25)

    async def main() -> None:
        with trio.fail_after(10_000):  # virtual: a stranded waiter fails here, not hangs
            async with trio.open_nursery() as watcher:
                watcher.start_soon(watch_for_lost_wakeups)
                async with trio.open_nursery() as nursery:
                    for op in ops:
                        nursery.start_soon(request if op["kind"] == "request" else reconfigure, op)
                watcher.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    assert asleep_while_admissible == []
    snapshot = controller.pressure_snapshot()
    grants = released = cancelled_grants = 0
    for pressure in snapshot.resources:
        assert (pressure.in_flight, pressure.waiters) == (0, 0)
        assert 1 <= pressure.limit <= pressure.effective_max
        assert pressure.duplicate_releases == pressure.unknown_releases == 0
        grants += pressure.grants
        released += pressure.released
        cancelled_grants += pressure.cancelled_grants
    assert grants == released == acquired + cancelled_grants


@guarded
async def test_many_short_lived_request_groups_keep_memory_bounded(autojump_clock) -> None:
    controller = make(cap=1, initial_limit=1)
    held = lease_of(controller.try_acquire(item("steady")))
    got: list[RequestAdmissionLease] = []

    async def waiter(group: str) -> None:
        got.append(await controller.acquire(item(group)))

    for i in range(3_000):  # one caller per request group, each queued behind the held lease
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, f"request-{i}")
            await trio.testing.wait_all_tasks_blocked()
            controller.release(held, OUTCOME_SUCCESS)
        held = got.pop()
    controller.release(held, OUTCOME_SUCCESS)
    resource = controller._registry.resources[KEY]  # internals: memory is the point here
    assert len(resource.endpoint.waiters.groups) <= 2_048  # not 3,000
    assert len(resource.lanes) <= 2_048
    pressure = snap(controller)
    assert (pressure.in_flight, pressure.waiters) == (0, 0)
    assert pressure.grants == pressure.released == 3_001


@guarded
async def test_on_a_fairness_tie_the_oldest_waiter_goes_first(autojump_clock) -> None:
    # Groups a and b both joined at the same virtual time, so their passes tie. Lane a is
    # listed first (a1 queued first), but after a1 leaves, its head a2 is younger than b1.
    controller = make(cap=1, initial_limit=1)
    held = lease_of(controller.try_acquire(item("a")))
    order: list[str] = []
    scope_a1 = trio.CancelScope()

    async def waiter(name: str, group: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            lease = await controller.acquire(item(group))
            order.append(name)
            await trio.sleep(1)
            controller.release(lease, OUTCOME_SUCCESS)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a1", "a", scope_a1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "b1", "b")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "a2", "a")
        await trio.testing.wait_all_tasks_blocked()
        scope_a1.cancel()
        await trio.testing.wait_all_tasks_blocked()
        controller.release(held, OUTCOME_SUCCESS)
    assert order == ["b1", "a2"]
