"""SimulatedProvider: determinism, hidden limits, injected faults, cancellation (virtual time)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluicegate import (
    ConfigurationError,
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderError,
    SimulatedProvider,
)
from sluicegate.providers import SimulatedProviderStats
from sluicegate.requests import (
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)


def chat(text: str = "hello", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": text}], **kwargs)


async def run_burst(
    provider: SimulatedProvider, count: int, *, stagger: float = 0.0
) -> list[tuple[int, str, float, Any]]:
    """Start ``count`` calls (``stagger`` apart); return (index, outcome, end time, detail)."""
    results: list[tuple[int, str, float, Any]] = []

    async def one(index: int) -> None:
        try:
            response = await provider.call("m", chat(f"row {index}"))
        except ProviderError as exc:
            detail = getattr(exc, "retry_after", None)
            results.append((index, type(exc).__name__, trio.current_time(), detail))
        else:
            results.append((index, "ok", trio.current_time(), response.content))

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
            if stagger:
                await trio.sleep(stagger)
    return sorted(results)


def test_is_a_provider() -> None:
    assert isinstance(SimulatedProvider(), Provider)
    assert SimulatedProvider(name="sim-a").name == "sim-a"


async def test_same_seed_same_run(autojump_clock: trio.testing.MockClock) -> None:
    def make(seed: int) -> SimulatedProvider:
        return SimulatedProvider(
            seed=seed,
            latency_seconds=1.0,
            latency_jitter=0.5,
            capacity=4,
            failure_rate=0.2,
            timeout_rate=0.1,
            timeout_seconds=3.0,
        )

    start = trio.current_time()
    first = await run_burst(make(11), 30, stagger=0.1)
    first = [(i, o, round(t - start, 9), d) for i, o, t, d in first]
    start = trio.current_time()
    second = await run_burst(make(11), 30, stagger=0.1)
    second = [(i, o, round(t - start, 9), d) for i, o, t, d in second]
    assert first == second
    outcomes = {o for _, o, _, _ in first}
    # The run must actually exercise several paths for the comparison to mean anything.
    assert {"ok", "ProviderRateLimitedError"} <= outcomes

    start = trio.current_time()
    other = await run_burst(make(12), 30, stagger=0.1)
    other = [(i, o, round(t - start, 9), d) for i, o, t, d in other]
    assert other != first


async def test_content_depends_on_request_not_on_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimulatedProvider(seed=3, latency_seconds=0.1, latency_jitter=0.9)
    b = SimulatedProvider(seed=3, latency_seconds=0.1, latency_jitter=0.9)
    requests = [chat(f"question {i}", max_tokens=50) for i in range(5)]
    forward = [await a.call("m", r) for r in requests]
    backward = [await b.call("m", r) for r in reversed(requests)]
    assert forward == list(reversed(backward))
    assert len({r.content for r in forward}) == 5
    # A different seed or model gives different text for the same request.
    other_seed = await SimulatedProvider(seed=4).call("m", requests[0])
    other_model = await SimulatedProvider(seed=3).call("m2", requests[0])
    assert other_seed.content != forward[0].content
    assert other_model.content != forward[0].content


async def test_latency_is_seeded_and_bounded(autojump_clock: trio.testing.MockClock) -> None:
    fixed = SimulatedProvider(latency_seconds=0.5)
    start = trio.current_time()
    await fixed.call("m", chat())
    assert trio.current_time() - start == pytest.approx(0.5)

    jittery = SimulatedProvider(seed=1, latency_seconds=1.0, latency_jitter=0.25)
    durations = []
    for _ in range(50):
        start = trio.current_time()
        await jittery.call("m", chat())
        durations.append(trio.current_time() - start)
    assert all(0.75 - 1e-9 <= d <= 1.25 + 1e-9 for d in durations)
    assert max(durations) - min(durations) > 0.25


async def test_zero_latency_call_is_still_a_checkpoint() -> None:
    provider = SimulatedProvider(latency_seconds=0.0)
    with trio.testing.assert_checkpoints():
        await provider.call("m", chat())


async def test_hidden_capacity_answers_429_with_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(
        latency_seconds=2.0,
        capacity=3,
        retry_after_seconds=1.5,
        rejection_latency_seconds=0.01,
    )
    start = trio.current_time()
    # Staggered so the arrival order (and thus who gets rejected) is fixed.
    results = await run_burst(provider, 5, stagger=0.001)
    ok = [r for r in results if r[1] == "ok"]
    limited = [r for r in results if r[1] == "ProviderRateLimitedError"]
    assert [r[0] for r in ok] == [0, 1, 2]
    assert [r[0] for r in limited] == [3, 4]
    assert all(r[3] == 1.5 for r in limited)
    assert all(r[2] - (start + r[0] * 0.001) == pytest.approx(0.01) for r in limited)
    assert all(r[2] - (start + r[0] * 0.001) == pytest.approx(2.0) for r in ok)
    assert provider.stats == SimulatedProviderStats(
        calls=5, successes=3, rate_limited=2, in_flight=0, max_in_flight=3
    )
    # Once the slots are free, new calls are admitted again.
    await provider.call("m", chat())
    assert provider.stats.successes == 4


async def test_rate_limited_error_fields(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(latency_seconds=5.0, capacity=1, retry_after_seconds=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider.call, "m", chat())
        await trio.sleep(1.0)
        with pytest.raises(ProviderRateLimitedError) as caught:
            await provider.call("m", chat())
        assert caught.value.status == 429
        assert caught.value.retry_after is None
        assert caught.value.rate_limits is None  # hidden limits publish no hints by default


async def test_requests_per_minute_window(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(
        latency_seconds=0.0, requests_per_minute=3, rejection_latency_seconds=0.0
    )
    start = trio.current_time()
    for _ in range(3):
        await provider.call("m", chat())
        await trio.sleep(10.0)
    with pytest.raises(ProviderRateLimitedError) as caught:
        await provider.call("m", chat())
    # Admissions at start, +10, +20; the first leaves the sliding window at start + 60.
    assert caught.value.retry_after == pytest.approx(30.0)
    await trio.sleep(caught.value.retry_after)
    await provider.call("m", chat())  # the oldest slot has been freed
    with pytest.raises(ProviderRateLimitedError) as caught:
        await provider.call("m", chat())
    assert caught.value.retry_after == pytest.approx(start + 70.0 - trio.current_time())
    assert caught.value.retry_after == pytest.approx(10.0)
    assert provider.stats.successes == 4
    assert provider.stats.rate_limited == 2


@settings(max_examples=200, deadline=None)
@example(first=1991.641870929195, gap=8.263643103071)  # used to be refused again
@example(first=4052.7813896949688, gap=2.534115597145)
@given(
    first=st.floats(0.0, 5000.0, allow_nan=False),
    gap=st.floats(0.0, 59.999, allow_nan=False),
)
def test_a_client_that_waits_exactly_retry_after_is_admitted(first: float, gap: float) -> None:
    # The 429 says when the window frees a slot; a client sleeping exactly that long used to
    # be refused once more (retry_after 0.0) when float rounding made the window disagree.
    async def main() -> None:
        provider = SimulatedProvider(
            latency_seconds=0.0, requests_per_minute=1, rejection_latency_seconds=0.0
        )
        await trio.sleep_until(first)
        await provider.call("m", chat())
        await trio.sleep(gap)
        with pytest.raises(ProviderRateLimitedError) as caught:
            await provider.call("m", chat())
        retry_after = caught.value.retry_after
        assert retry_after is not None and retry_after > 0
        await trio.sleep(retry_after)
        await provider.call("m", chat())

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_rpm_hints_when_published(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(
        latency_seconds=0.0, requests_per_minute=2, publish_rate_limit_hints=True
    )
    first = await provider.call("m", chat())
    assert first.rate_limits is not None
    assert first.rate_limits.limit_requests == 2
    assert first.rate_limits.remaining_requests == 1
    assert first.rate_limits.reset_requests_seconds == pytest.approx(60.0)
    await trio.sleep(10)
    second = await provider.call("m", chat())
    assert second.rate_limits is not None
    assert second.rate_limits.remaining_requests == 0
    assert second.rate_limits.reset_requests_seconds == pytest.approx(50.0)
    with pytest.raises(ProviderRateLimitedError) as caught:
        await provider.call("m", chat())
    assert caught.value.rate_limits is not None
    assert caught.value.rate_limits.remaining_requests == 0
    assert caught.value.retry_after == pytest.approx(50.0, abs=0.01)


async def test_failure_injection(autojump_clock: trio.testing.MockClock) -> None:
    always = SimulatedProvider(latency_seconds=0.2, failure_rate=1.0)
    start = trio.current_time()
    with pytest.raises(ProviderFailureError) as caught:
        await always.call("m", chat())
    assert caught.value.status == 500
    assert caught.value.retryable is True
    assert trio.current_time() - start == pytest.approx(0.2)
    assert always.stats.failures == 1
    assert always.stats.in_flight == 0

    sometimes = SimulatedProvider(seed=5, latency_seconds=0.0, failure_rate=0.3)
    failures = 0
    for _ in range(400):
        try:
            await sometimes.call("m", chat())
        except ProviderFailureError:
            failures += 1
    assert 80 <= failures <= 160
    assert sometimes.stats.failures == failures
    assert sometimes.stats.successes == 400 - failures


async def test_timeout_injection(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(latency_seconds=0.1, timeout_rate=1.0, timeout_seconds=7.0)
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError):
        await provider.call("m", chat())
    assert trio.current_time() - start == pytest.approx(7.0)
    # A shorter request timeout ends the hang earlier.
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError):
        await provider.call("m", chat(timeout=2.0))
    assert trio.current_time() - start == pytest.approx(2.0)
    assert provider.stats.timeouts == 2
    assert provider.stats.in_flight == 0


async def test_request_timeout_shorter_than_latency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(latency_seconds=5.0)
    start = trio.current_time()
    with pytest.raises(ProviderTimeoutError):
        await provider.call("m", chat(timeout=1.0))
    assert trio.current_time() - start == pytest.approx(1.0)
    response = await provider.call("m", chat(timeout=6.0))
    assert isinstance(response, ModelResponse)


async def test_cancellation_frees_the_slot(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(latency_seconds=10.0, capacity=1)
    with trio.move_on_after(1.0) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(provider.call, "m", chat())
            await trio.sleep(0.5)
            assert provider.stats.in_flight == 1
    assert scope.cancelled_caught
    stats = provider.stats
    assert stats.in_flight == 0
    assert stats.cancelled == 1
    assert stats.successes == 0
    # The slot really is free: a new call is admitted, not rate limited.
    await provider.call("m", chat())
    assert provider.stats.successes == 1
    assert provider.stats.rate_limited == 0


async def test_cancellation_during_rejection(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(latency_seconds=10.0, capacity=1, rejection_latency_seconds=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider.call, "m", chat())
        await trio.sleep(0.1)
        with trio.move_on_after(0.5):
            await provider.call("m", chat())
        nursery.cancel_scope.cancel()
    stats = provider.stats
    assert stats.cancelled == 2
    assert stats.rate_limited == 0
    assert stats.in_flight == 0


async def test_set_capacity_at_runtime(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(latency_seconds=1.0)
    results = await run_burst(provider, 4)
    assert all(r[1] == "ok" for r in results)

    provider.set_capacity(2)
    results = await run_burst(provider, 4)
    assert [r[1] for r in results].count("ProviderRateLimitedError") == 2

    # Lowering below the calls already running never aborts them; arrivals see the new limit.
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(provider.call, "m", chat())
        await trio.sleep(0.1)
        provider.set_capacity(1)
        with pytest.raises(ProviderRateLimitedError):
            await provider.call("m", chat())
    provider.set_capacity(None)
    results = await run_burst(provider, 6)
    assert all(r[1] == "ok" for r in results)
    assert provider.stats.max_in_flight == 6

    with pytest.raises(ConfigurationError) as caught:
        provider.set_capacity(0)
    assert caught.value.field == "SimulatedProvider.capacity"


async def test_set_requests_per_minute_at_runtime(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(latency_seconds=0.0)
    for _ in range(5):
        await provider.call("m", chat())
    provider.set_requests_per_minute(2)
    await provider.call("m", chat())
    await trio.sleep(1.0)
    await provider.call("m", chat())
    with pytest.raises(ProviderRateLimitedError) as caught:
        await provider.call("m", chat())
    assert caught.value.retry_after == pytest.approx(59.0)
    provider.set_requests_per_minute(None)
    await provider.call("m", chat())
    with pytest.raises(ConfigurationError) as config_error:
        provider.set_requests_per_minute(-1)
    assert config_error.value.field == "SimulatedProvider.requests_per_minute"


async def test_token_usage(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(latency_seconds=0.0, completion_tokens=100)
    short = await provider.call("m", chat("x" * 40))
    long = await provider.call("m", chat("x" * 400))
    assert short.usage.prompt_tokens == 4 + 10
    assert long.usage.prompt_tokens == 4 + 100
    for i in range(30):
        bounded = await provider.call("m", chat(f"q{i}", max_tokens=10))
        assert 5 <= bounded.usage.completion_tokens <= 10
        unbounded = await provider.call("m", chat(f"q{i}"))
        assert 50 <= unbounded.usage.completion_tokens <= 100
    again = await SimulatedProvider(completion_tokens=100).call("m", chat("x" * 40))
    assert again.usage == short.usage


async def test_embeddings_are_deterministic_unit_vectors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(latency_seconds=0.0, embedding_dimensions=40)
    request = ModelRequest(domain="embedding", input=["alpha", "beta", "alpha"])
    response = await provider.call("embedder", request)
    vectors = response.content
    assert len(vectors) == 3
    assert all(len(v) == 40 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert response.usage.prompt_tokens == 2 + 1 + 2
    assert response.usage.completion_tokens == 0
    single = await provider.call("embedder", ModelRequest(domain="embedding", input="alpha"))
    assert single.content == [vectors[0]]
    reseeded = await SimulatedProvider(seed=1, embedding_dimensions=40).call("embedder", request)
    assert reseeded.content[0] != vectors[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("seed", 1.5),
        ("latency_seconds", -0.1),
        ("latency_seconds", float("nan")),
        ("latency_jitter", 1.0),
        ("capacity", 0),
        ("capacity", True),
        ("requests_per_minute", 0),
        ("retry_after_seconds", -1.0),
        ("rejection_latency_seconds", float("inf")),
        ("failure_rate", 1.5),
        ("timeout_rate", -0.1),
        ("timeout_seconds", 0.0),
        ("completion_tokens", 0),
        ("embedding_dimensions", 0),
    ],
)
def test_invalid_configuration_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SimulatedProvider(**{field: value})
    assert caught.value.field == f"SimulatedProvider.{field}"
    assert caught.value.fix


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", -1.0),
        ("timeout", 0),
        ("timeout", float("nan")),
        ("timeout", "5"),
        ("estimated_tokens", -1),
        ("estimated_tokens", 1.5),
        ("max_tokens", 0),
        ("max_tokens", True),
    ],
)
def test_bad_model_request_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ModelRequest(messages=[], **{field: value})  # type: ignore[arg-type]
    assert caught.value.field == f"ModelRequest.{field}"
    assert "Fix:" in str(caught.value)


def test_model_request_accepts_no_limit() -> None:
    assert ModelRequest(timeout=float("inf"), estimated_tokens=0).timeout == float("inf")
