"""Hardening of the request layer: typed errors at every boundary, arithmetic that cannot
overflow or lose fairness, unknown versus zero token estimates, KI protection, and the
retry attributes of the errors a model call can end with."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate import ConfigurationError
from sluicegate.requests import (
    ModelRequestError,
    ProviderRateLimitedError,
    RateLimitHints,
    RateWindow,
    RequestAdmissionConfig,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestReleaseOutcome,
    RequestResourceOverride,
    RequestResourceSettings,
)
from sluicegate.requests.config import SETTINGS_FIELDS

KEY = sg.RequestResourceKey("sim", "m", "chat")
SUCCESS = RequestReleaseOutcome("success")

# ---------------------------------------------------------------------------- boundaries

BAD_VALUES: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    -1,
    0,
    -0.5,
    "3",
    [1],
    {"a": 1},
    None,
]


def _accepted(field: str, value: Any) -> bool:
    try:
        RequestResourceSettings(**{field: value})
    except ConfigurationError:
        return False
    return True


@pytest.mark.parametrize("field", SETTINGS_FIELDS)
def test_every_setting_rejects_wrong_types_with_a_named_field(field: str) -> None:
    default = getattr(RequestResourceSettings(), field)
    for value in BAD_VALUES:
        if type(value) is type(default) and value == default:
            continue
        try:
            RequestResourceSettings(**{field: value})
        except ConfigurationError as exc:
            assert exc.field == field and exc.fix
            continue
        # accepted: must be a sensible value of the field's own kind
        if isinstance(default, bool):
            assert isinstance(value, bool), (field, value)
        elif value is not None:
            assert not isinstance(value, bool | str | list | dict), (field, value)
            assert math.isfinite(value), (field, value)


def test_specific_boundary_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        RequestResourceSettings(coalesce_rate_limits="yes")  # type: ignore[arg-type]
    assert info.value.field == "coalesce_rate_limits"
    with pytest.raises(ConfigurationError) as info:
        RequestResourceOverride(alias=5)  # type: ignore[arg-type]
    assert info.value.field == "alias"
    with pytest.raises(ConfigurationError) as info:
        RequestResourceOverride(provider="p", increase_step=True)  # type: ignore[arg-type]
    assert info.value.field == "increase_step"
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig(resources="p")  # type: ignore[arg-type]
    assert info.value.field == "resources"
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig(defaults={"clamp": 3})  # type: ignore[arg-type]
    assert info.value.field == "defaults" and "from_dict" in info.value.fix
    listed = RequestAdmissionConfig(resources=[RequestResourceOverride(provider="p")])  # type: ignore[arg-type]
    assert isinstance(listed.resources, tuple) and hash(listed)
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict({"defaults": [1, 2]})
    assert info.value.field == "defaults"
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict({"resources": {"provider": "p"}})
    assert info.value.field == "resources"
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict({"resources": [{"provider": "p", "clamb": 2}]})
    assert info.value.field == "resources[0].clamb" and "did you mean 'clamp'" in str(info.value)


def test_request_values_are_checked_where_they_are_built() -> None:
    with pytest.raises(ConfigurationError) as info:
        sg.ModelRequest(messages="hi")  # type: ignore[arg-type]
    assert info.value.field == "ModelRequest.messages"
    with pytest.raises(ConfigurationError) as info:
        sg.ModelRequest(messages=["hi"])  # type: ignore[list-item]
    assert info.value.field == "ModelRequest.messages"
    with pytest.raises(ConfigurationError) as info:
        sg.ModelRequest(domain="chta")  # type: ignore[arg-type]
    assert "did you mean 'chat'" in str(info.value)
    with pytest.raises(ConfigurationError, match="temperature"):
        sg.ModelRequest(temperature=math.nan)
    with pytest.raises(ConfigurationError, match="temperature"):
        sg.ModelRequest(temperature=True)
    with pytest.raises(ConfigurationError, match="extra"):
        sg.ModelRequest(extra=[("top_p", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="RequestResourceKey"):
        sg.RequestResourceKey("sim", 5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="domain"):
        sg.RequestResourceKey("sim", "m", "video")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="resource"):
        RequestAdmissionItem(resource=("sim", "m"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"RateWindow\.window_seconds"):
        RateWindow(requests_per_window=5, window_seconds=True)
    with pytest.raises(ConfigurationError, match="max_parallel_requests"):
        sg.ModelEndpoint(name="m", provider="p", model_id="m", max_parallel_requests=2.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="provider_alias"):
        sg.ModelEndpoint(
            name="m", provider="p", model_id="m", max_parallel_requests=2, provider_alias=3
        )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_attempts", 2.0),
        ("max_attempts", True),
        ("backoff_seconds", math.nan),
        ("backoff_seconds", "1"),
        ("backoff_multiplier", 0.5),
        ("max_backoff_seconds", math.inf),
        ("backoff_jitter", 1.0),
        ("attempt_timeout", 0),
        ("attempt_timeout", math.nan),
        ("admission_timeout", True),
    ],
)
def test_executor_retry_options_are_typed(option: str, value: Any) -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=2)]
    )
    with pytest.raises(ConfigurationError) as info:
        sg.ModelRequestExecutor(controller, {}, **{option: value})
    assert info.value.field == f"ModelRequestExecutor.{option}"


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(SETTINGS_FIELDS),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_any_value_is_accepted_or_rejected_with_a_configuration_error(
    field: str, value: Any
) -> None:
    # never a TypeError or OverflowError from deep inside: a ConfigurationError or a config
    # that a controller can run with
    try:
        config = RequestAdmissionConfig.from_dict({"defaults": {field: value}})
    except ConfigurationError as exc:
        # the field itself, or the other side of a check between two settings
        cross = ("defaults.circuit_max_open_seconds",)
        assert exc.field == f"defaults.{field}" or exc.field in cross, exc
        return
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=4)],
        config,
    )

    async def main() -> None:
        for outcome in (SUCCESS, RequestReleaseOutcome.rate_limited(), SUCCESS):
            decision = controller.try_acquire(RequestAdmissionItem(resource=KEY))
            if isinstance(decision, RequestAdmissionLease):
                result = controller.release(decision, outcome)
                assert result.released and result.diagnostics is None

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ---------------------------------------------------------------------------- arithmetic


async def test_a_huge_ceiling_hold_does_not_overflow_on_release() -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=8)],
        RequestAdmissionConfig(
            defaults=RequestResourceSettings(
                initial_limit=4, ceiling_hold_rounds=1e308, cooldown_seconds=0.0
            )
        ),
    )
    lease = controller.try_acquire(RequestAdmissionItem(resource=KEY))
    assert isinstance(lease, RequestAdmissionLease)
    controller.release(lease, RequestReleaseOutcome.rate_limited())  # 4 -> 3, ceiling 4
    for _ in range(20):
        lease = controller.try_acquire(RequestAdmissionItem(resource=KEY))
        assert isinstance(lease, RequestAdmissionLease)
        result = controller.release(lease, SUCCESS)
        assert result.released and result.diagnostics is None  # before: OverflowError inside
    pressure = controller.resource_pressure(KEY)
    assert pressure is not None and pressure.successes == 20 and pressure.limit == 3


@settings(max_examples=40, deadline=None)
@given(
    st.floats(1e-6, 1e6),
    st.floats(1e-6, 1e6),
    st.floats(1e-6, 1e6),
)
def test_fairness_holds_among_waiters_for_every_accepted_weight(
    tiny: float, w1: float, w2: float
) -> None:
    # One group with any accepted weight (as small as 1e-6) must not destroy the fair share
    # of the others: before, a weight of 1e-300 pushed the virtual time to 1e300 and every
    # later stride rounded away.
    weights = {"tiny": tiny, "a": w1, "b": w2}
    order: list[str] = []

    async def main() -> None:
        controller = sg.AdaptiveRequestAdmissionController(
            [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=1)],
            RequestAdmissionConfig(defaults=RequestResourceSettings(initial_limit=1)),
        )
        held = controller.try_acquire(RequestAdmissionItem(resource=KEY))
        assert isinstance(held, RequestAdmissionLease)

        async def waiter(group: str) -> None:
            item = RequestAdmissionItem(resource=KEY, request_group=group, weight=weights[group])
            lease = await controller.acquire(item)
            order.append(group)
            controller.release(lease, SUCCESS)

        async with trio.open_nursery() as nursery:
            for _ in range(60):
                for group in weights:
                    nursery.start_soon(waiter, group)
            await trio.testing.wait_all_tasks_blocked()
            controller.release(held, SUCCESS)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    served = order[:60]  # while every group still waits
    total = sum(weights.values())
    for group, weight in weights.items():
        assert abs(served.count(group) - 60 * weight / total) <= 3, (weights, group)


def test_weights_outside_the_documented_range_are_errors() -> None:
    for weight in (1e-300, 0.0, 1e7, math.inf, math.nan, True):
        with pytest.raises(ConfigurationError) as info:
            RequestAdmissionItem(resource=KEY, weight=weight)
        assert "1e-06" in info.value.problem and "1e+06" in info.value.problem


# ---------------------------------------------------------------------------- tokens


async def test_unknown_estimates_are_told_apart_from_zero(autojump_clock: object) -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=50)],
        RequestAdmissionConfig(
            defaults=RequestResourceSettings(initial_limit=50, tokens_per_window=100)
        ),
    )
    unknown = RequestAdmissionItem(resource=KEY)
    free = RequestAdmissionItem(resource=KEY, estimated_tokens=0)
    first = controller.try_acquire(unknown)
    assert isinstance(first, RequestAdmissionLease) and first.reserved_tokens == 0
    controller.release(first, RequestReleaseOutcome("success", actual_tokens=40))
    # now an unknown request reserves what calls actually used (40 of the 100 are spent
    # already): one more fits, not fifty
    held = [controller.try_acquire(unknown) for _ in range(3)]
    assert [type(h).__name__ for h in held] == [
        "RequestAdmissionLease",
        "RequestAdmissionDenied",
        "RequestAdmissionDenied",
    ]
    assert held[0].reserved_tokens == 40  # type: ignore[union-attr]
    # a request that says it uses no tokens is not held back by the token quota
    assert isinstance(controller.try_acquire(free), RequestAdmissionLease)


# ---------------------------------------------------------------------------- KI safety


async def test_new_state_changes_are_keyboard_interrupt_protected(autojump_clock: object) -> None:
    protected: list[tuple[str, bool]] = []

    class Probe:
        def emit(self, event: Any) -> None:
            protected.append((event.event_kind, trio.lowlevel.currently_ki_protected()))

    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=8)],
        RequestAdmissionConfig(
            defaults=RequestResourceSettings(circuit_breaker_threshold=2, circuit_open_seconds=1)
        ),
        sink=Probe(),
    )
    item = RequestAdmissionItem(resource=KEY)
    lease = await controller.acquire(item)
    controller.release(
        lease,
        RequestReleaseOutcome(
            "success", quota=RateLimitHints(limit_requests=600, limit_tokens=90_000)
        ),
    )  # slow start grows, the quota is learned
    for _ in range(2):
        controller.release(
            await controller.acquire(item),
            RequestReleaseOutcome("connection_failed", detail="http://x: refused"),
        )
    await trio.sleep(2.0)  # the timer turns the circuit half-open
    controller.release(await controller.acquire(item), SUCCESS)
    kinds = {kind for kind, _ in protected}
    for kind in (
        "request_quota_learned",
        "request_circuit_opened",
        "request_circuit_half_open",
        "request_circuit_closed",
    ):
        assert kind in kinds
    assert [kind for kind, ok in protected if not ok] == []


# ---------------------------------------------------------------------------- retry layers


def test_model_request_error_says_it_is_retryable_and_when() -> None:
    limited = ModelRequestError(KEY, 3, RequestReleaseOutcome.rate_limited(2.5))
    assert (limited.retryable, limited.retry_after) == (True, 2.5)
    failed = ModelRequestError(KEY, 3, RequestReleaseOutcome("provider_timeout"))
    assert (failed.retryable, failed.retry_after) == (True, None)
    nonsense = ModelRequestError(KEY, 3, RequestReleaseOutcome.rate_limited(math.inf))
    assert nonsense.retry_after is None


async def test_executor_errors_carry_the_classification(autojump_clock: object) -> None:
    class AlwaysLimited:
        name = "sim"

        async def call(self, model_id: str, request: sg.ModelRequest) -> sg.ModelResponse:
            await trio.sleep(0.01)
            raise ProviderRateLimitedError(retry_after=4.0)

    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=4)],
        RequestAdmissionConfig(defaults=RequestResourceSettings(circuit_breaker_threshold=None)),
    )
    executor = sg.ModelRequestExecutor(controller, {"sim": AlwaysLimited()}, max_attempts=2)
    with pytest.raises(ModelRequestError) as info:
        await executor.execute("m", sg.ModelRequest(messages=[]))
    assert info.value.retryable is True and info.value.retry_after == 4.0


async def test_admission_errors_say_whether_a_retry_can_help(autojump_clock: object) -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=1)],
        RequestAdmissionConfig(defaults=RequestResourceSettings(initial_limit=1)),
    )
    held = controller.try_acquire(RequestAdmissionItem(resource=KEY))
    assert isinstance(held, RequestAdmissionLease)
    with pytest.raises(RequestAdmissionError) as info:
        await controller.acquire(RequestAdmissionItem(resource=KEY, timeout=1.0))
    assert info.value.reason == "timeout" and info.value.retryable is True
    controller.shutdown()
    with pytest.raises(RequestAdmissionError) as info:
        await controller.acquire(RequestAdmissionItem(resource=KEY))
    assert info.value.reason == "shutdown" and info.value.retryable is False


async def test_a_denial_builds_its_snapshot_only_when_read() -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=1)],
        RequestAdmissionConfig(defaults=RequestResourceSettings(initial_limit=1)),
    )
    controller.try_acquire(RequestAdmissionItem(resource=KEY))
    denied = controller.try_acquire(RequestAdmissionItem(resource=KEY))
    assert isinstance(denied, RequestAdmissionDenied)
    assert denied.captured is None  # nothing built yet
    snapshot = denied.snapshot
    assert snapshot is not None and snapshot.in_flight == 1
    assert denied.snapshot is snapshot  # kept once built


@pytest.mark.parametrize("bad", [0, -3, True, 1.5, "7"])
def test_request_id_is_a_positive_integer(bad: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionItem(resource=KEY, request_id=bad)
    assert info.value.field == "RequestAdmissionItem.request_id"


async def test_request_events_take_the_item_id_else_the_enclosing_scope(
    autojump_clock: object,
) -> None:
    """An item's own request id names its admission events; an item without one takes the
    id of the user's ``request_scope`` around the call (the executor no longer sets one)."""
    sink = sg.InMemoryEventSink()
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=2)],
        sink=sink,
    )
    release = RequestReleaseOutcome("success")
    controller.release(
        await controller.acquire(RequestAdmissionItem(resource=KEY, request_id=41)), release
    )
    with sg.events.request_scope(42):
        controller.release(await controller.acquire(RequestAdmissionItem(resource=KEY)), release)
    leases = [
        e
        for e in sink.events
        if e.event_kind in ("request_lease_acquired", "request_lease_released")
    ]
    assert [e.request_id for e in leases] == [41, 41, 42, 42]
