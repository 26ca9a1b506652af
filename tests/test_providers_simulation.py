"""Realistic simulation: latency distributions, token quotas, scripted faults (virtual time),
and the same through the emulator's HTTP answers (real sockets, ms-scale)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError, ModelRequest, SimulatedProvider
from sluicegate.providers import (
    EmpiricalLatency,
    Fault,
    FaultRule,
    FixedLatency,
    LatencyDistribution,
    LogNormalLatency,
    SimulatedCall,
    UniformLatency,
)
from sluicegate.providers.quota_window import QuotaWindow
from sluicegate.requests import (
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)
from sluicegate.testing import EmulatorConfig, serve_emulator


def chat(text: str = "hello", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": text}], **kwargs)


async def durations(provider: SimulatedProvider, count: int) -> list[float]:
    taken = []
    for i in range(count):
        start = trio.current_time()
        await provider.call("m", chat(f"q{i}"))
        taken.append(trio.current_time() - start)
    return taken


async def outcomes(provider: SimulatedProvider, count: int, model: str = "m") -> list[str]:
    """Sequential calls; what each one ended with."""
    seen = []
    for i in range(count):
        try:
            await provider.call(model, chat(f"q{i}"))
        except (ProviderFailureError, ProviderRateLimitedError, ProviderTimeoutError) as exc:
            seen.append(f"{type(exc).__name__}:{exc.status}")
        else:
            seen.append("ok")
    return seen


# --- latency distributions ------------------------------------------------------------------


async def test_fixed_and_uniform_latency(autojump_clock: trio.testing.MockClock) -> None:
    fixed = SimulatedProvider(latency=FixedLatency(seconds=0.3))
    assert await durations(fixed, 5) == pytest.approx([0.3] * 5)
    uniform = SimulatedProvider(seed=3, latency=UniformLatency(low=0.1, high=0.5))
    taken = await durations(uniform, 200)
    assert all(0.1 - 1e-9 <= d < 0.5 + 1e-9 for d in taken)
    assert min(taken) < 0.15 and max(taken) > 0.45


async def test_lognormal_latency_has_its_median_and_a_long_tail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(seed=5, latency=LogNormalLatency(median=0.2, sigma=0.6))
    taken = sorted(await durations(provider, 400))
    assert statistics.median(taken) == pytest.approx(0.2, rel=0.15)
    assert taken[-4] > 0.2 * math.exp(1.5 * 0.6)  # the 99th percentile is far above it
    capped = SimulatedProvider(
        seed=5, latency=LogNormalLatency(median=0.2, sigma=0.6, max_seconds=0.5)
    )
    assert max(await durations(capped, 400)) <= 0.5 + 1e-9


async def test_empirical_latency_replays_its_samples(
    autojump_clock: trio.testing.MockClock,
) -> None:
    samples = (0.05, 0.2, 1.5)
    provider = SimulatedProvider(seed=1, latency=EmpiricalLatency(samples=samples))
    taken = await durations(provider, 60)
    assert {round(d, 9) for d in taken} == set(samples)


async def test_same_seed_same_latencies(autojump_clock: trio.testing.MockClock) -> None:
    def make() -> SimulatedProvider:
        return SimulatedProvider(seed=9, latency=LogNormalLatency(median=0.1, sigma=1.0))

    first = [round(d, 9) for d in await durations(make(), 30)]
    assert first == [round(d, 9) for d in await durations(make(), 30)]
    assert len(set(first)) == 30


@given(
    distribution=st.one_of(
        st.builds(FixedLatency, seconds=st.floats(0, 100)),
        st.tuples(st.floats(0, 100), st.floats(0, 100)).map(
            lambda t: UniformLatency(low=min(t), high=max(t))
        ),
        st.builds(LogNormalLatency, median=st.floats(0.001, 100), sigma=st.floats(0, 3)),
        st.builds(EmpiricalLatency, samples=st.lists(st.floats(0, 100), min_size=1, max_size=20)),
    ),
    u=st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)),
)
def test_quantiles_are_finite_non_negative_and_monotone(
    distribution: LatencyDistribution, u: tuple[float, float]
) -> None:
    low, high = sorted(u)
    a, b = distribution.quantile(low), distribution.quantile(high)
    assert math.isfinite(a) and math.isfinite(b)
    assert 0 <= a <= b * (1 + 1e-12) + 1e-12
    encoded = msgspec.json.encode(distribution)  # crosses a process boundary as a tagged union
    assert msgspec.json.decode(encoded, type=LatencyDistribution) == distribution


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: FixedLatency(seconds=-1), "FixedLatency.seconds"),
        (lambda: FixedLatency(seconds=True), "FixedLatency.seconds"),
        (lambda: UniformLatency(low=2, high=1), "UniformLatency.high"),
        (lambda: UniformLatency(low=math.nan, high=1), "UniformLatency.low"),
        (lambda: LogNormalLatency(median=0, sigma=1), "LogNormalLatency.median"),
        (lambda: LogNormalLatency(median=1, sigma=-1), "LogNormalLatency.sigma"),
        (lambda: LogNormalLatency(median=1, sigma=math.inf), "LogNormalLatency.sigma"),
        (
            lambda: LogNormalLatency(median=1, sigma=1, max_seconds=0.5),
            "LogNormalLatency.max_seconds",
        ),
        (lambda: EmpiricalLatency(samples=()), "EmpiricalLatency.samples"),
        (lambda: EmpiricalLatency(samples="0.1"), "EmpiricalLatency.samples"),
        (lambda: EmpiricalLatency(samples=(0.1, -2)), "EmpiricalLatency.samples[1]"),
        (lambda: SimulatedProvider(latency=0.5), "SimulatedProvider.latency"),
        (
            lambda: SimulatedProvider(latency=FixedLatency(seconds=1), latency_seconds=2),
            "SimulatedProvider.latency",
        ),
        (
            lambda: EmulatorConfig(latency=FixedLatency(seconds=1), latency_jitter=0.1),
            "EmulatorConfig.latency",
        ),
    ],
)
def test_invalid_latency_names_the_field(build: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert caught.value.field == field


# --- tokens per minute ----------------------------------------------------------------------


async def test_tokens_per_minute_quota(autojump_clock: trio.testing.MockClock) -> None:
    probe = SimulatedProvider(latency_seconds=0)
    usage = (await probe.call("m", chat("x" * 40, max_tokens=10))).usage
    per_call = usage.total_tokens
    provider = SimulatedProvider(
        latency_seconds=0.5, tokens_per_minute=per_call * 3, publish_rate_limit_hints=True
    )
    for _ in range(3):
        response = await provider.call("m", chat("x" * 40, max_tokens=10))
    assert response.rate_limits is not None
    assert response.rate_limits.limit_tokens == per_call * 3
    assert response.rate_limits.remaining_tokens == 0
    started = trio.current_time()
    with pytest.raises(ProviderRateLimitedError) as caught:
        await provider.call("m", chat("x" * 40, max_tokens=10))
    retry_after = caught.value.retry_after
    assert retry_after is not None
    # The first call was admitted at time 0 and leaves the window at 60 s.
    assert started + retry_after == pytest.approx(60.0)
    hints = caught.value.rate_limits
    assert hints is not None and hints.remaining_tokens == 0
    assert hints.remaining_requests is None  # no request quota: nothing said about it
    await trio.sleep(retry_after)
    await provider.call("m", chat("x" * 40, max_tokens=10))  # exactly then, there is room
    stats = provider.stats
    assert (stats.successes, stats.rate_limited, stats.tokens) == (4, 1, per_call * 4)


async def test_a_request_larger_than_the_token_quota_never_fits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(tokens_per_minute=10)
    with pytest.raises(ProviderFailureError) as caught:
        await provider.call("m", chat("x" * 400))
    assert (caught.value.status, caught.value.retryable) == (413, False)
    assert "tokens_per_minute" in str(caught.value)


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(1, 50),
    arrivals=st.lists(st.tuples(st.floats(0, 100), st.integers(1, 50)), max_size=30),
)
def test_quota_window_waits_are_exact(limit: int, arrivals: list[tuple[float, int]]) -> None:
    window = QuotaWindow(limit)
    now = 0.0
    for gap, amount in arrivals:
        now += gap
        amount = min(amount, limit)
        wait = window.wait_for(amount, now)
        if wait is None:
            assert window.used(now) + amount <= limit
            window.admit(amount, now)
            continue
        assert wait > 0
        assert window.used(now) + amount > limit
        assert window.wait_for(amount, now + wait) is None  # back exactly then: it fits
        window.admit(amount, now + wait)
        now += wait


# --- scripted faults ------------------------------------------------------------------------


async def test_calls_ten_to_twelve_fail_with_500(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(
        latency_seconds=0.1,
        faults=(FaultRule(first_call=10, last_call=12, fault=Fault.failure(500)),),
    )
    seen = await outcomes(provider, 15)
    failed = [i + 1 for i, outcome in enumerate(seen) if outcome != "ok"]
    assert failed == [10, 11, 12]
    assert seen[9] == "ProviderFailureError:500"
    assert provider.stats.scripted_faults == 3
    assert provider.stats.failures == 3


async def test_the_third_call_to_a_model_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(
        latency_seconds=0.1,
        timeout_seconds=5.0,
        faults=[FaultRule(first_call=3, model="judge", fault=Fault.timeout())],
    )
    assert isinstance(provider.faults, tuple)
    assert await outcomes(provider, 4, model="writer") == ["ok"] * 4
    start = trio.current_time()
    assert await outcomes(provider, 4, model="judge") == [
        "ok",
        "ok",
        "ProviderTimeoutError:None",
        "ok",
    ]
    assert trio.current_time() - start == pytest.approx(0.1 * 3 + 5.0)


async def test_scripted_rate_limit_and_non_retryable_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(
        faults=(
            FaultRule(first_call=2, fault=Fault.rate_limited(retry_after=4.0)),
            FaultRule(first_call=3, fault=Fault.failure(404)),
            FaultRule(first_call=1, last_call=3, fault=Fault.failure(503)),  # first match wins
        )
    )
    seen = []
    for _ in range(4):
        try:
            await provider.call("m", chat())
        except (ProviderFailureError, ProviderRateLimitedError) as exc:
            seen.append(exc)
        else:
            seen.append(None)
    first, second, third, fourth = seen
    assert isinstance(first, ProviderFailureError) and first.status == 503 and first.retryable
    assert isinstance(second, ProviderRateLimitedError) and second.retry_after == 4.0
    assert isinstance(third, ProviderFailureError) and (third.status, third.retryable) == (
        404,
        False,
    )
    assert fourth is None
    assert provider.stats.in_flight == 0


async def test_a_script_function(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[SimulatedCall] = []

    def script(call: SimulatedCall) -> Fault | None:
        calls.append(call)
        return Fault.failure(502) if call.number % 3 == 0 else None

    provider = SimulatedProvider(latency_seconds=0, faults=script)
    seen = await outcomes(provider, 6)
    assert seen == ["ok", "ok", "ProviderFailureError:502"] * 2
    assert [c.number for c in calls] == [1, 2, 3, 4, 5, 6]
    assert calls[0].request == chat("q0")

    broken = SimulatedProvider(faults=lambda call: "boom")
    with pytest.raises(ConfigurationError) as caught:
        await broken.call("m", chat())
    assert caught.value.field == "SimulatedProvider.faults"


async def test_a_scripted_failure_on_a_refused_call_leaves_the_429(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = SimulatedProvider(
        latency_seconds=1.0,
        capacity=1,
        faults=(FaultRule(first_call=2, fault=Fault.failure()),),
    )
    results: list[str] = []

    async def one() -> None:
        try:
            await provider.call("m", chat())
            results.append("ok")
        except ProviderRateLimitedError:
            results.append("429")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        await trio.sleep(0.1)
        nursery.start_soon(one)
    assert sorted(results) == ["429", "ok"]
    assert provider.stats.max_in_flight == 1


@pytest.mark.parametrize(
    ("build", "field", "hint"),
    [
        (lambda: Fault(kind="timout"), "Fault.kind", "did you mean 'timeout'"),  # type: ignore[arg-type]
        (lambda: Fault.failure(429), "Fault.status", "Fault.rate_limited()"),
        (lambda: Fault.failure(504), "Fault.status", "Fault.timeout()"),
        (lambda: Fault.failure(200), "Fault.status", "400..599"),
        (lambda: Fault.failure(True), "Fault.status", "400..599"),  # type: ignore[arg-type]
        (lambda: Fault(kind="timeout", status=500), "Fault.status", "'failure'"),
        (lambda: Fault.rate_limited(retry_after=-1), "Fault.retry_after", ">= 0"),
        (lambda: Fault.timeout(hang_seconds=math.inf), "Fault.hang_seconds", "> 0"),
        (lambda: FaultRule(first_call=0, fault=Fault.timeout()), "FaultRule.first_call", ">= 1"),
        (
            lambda: FaultRule(first_call=3, last_call=2, fault=Fault.timeout()),
            "FaultRule.last_call",
            ">= first_call",
        ),
        (lambda: FaultRule(first_call=1, fault="timeout"), "FaultRule.fault", "Fault.failure()"),  # type: ignore[arg-type]
        (lambda: SimulatedProvider(faults="calls 10-12"), "SimulatedProvider.faults", "tuple"),
        (
            lambda: SimulatedProvider(faults=(Fault.timeout(),)),
            "SimulatedProvider.faults[0]",
            "FaultRule",
        ),
        (lambda: EmulatorConfig(faults=lambda call: None), "EmulatorConfig.faults", "tuple"),
    ],
)
def test_invalid_faults_name_the_field(build: Any, field: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert caught.value.field == field
    assert hint in str(caught.value)


def test_fault_rules_decode_from_config() -> None:
    raw = b'{"first_call": 10, "last_call": 12, "fault": {"kind": "failure", "status": 503}}'
    rule = msgspec.json.decode(raw, type=FaultRule)
    assert rule == FaultRule(first_call=10, last_call=12, fault=Fault.failure(503))


# --- through the emulator -------------------------------------------------------------------

CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_emulator_answers_scripted_faults_with_their_statuses() -> None:
    config = EmulatorConfig(
        latency_seconds=0.001,
        faults=(
            FaultRule(first_call=1, fault=Fault.failure(503)),
            FaultRule(first_call=2, fault=Fault.failure(404)),
            FaultRule(first_call=3, fault=Fault.rate_limited(retry_after=2.5)),
            FaultRule(first_call=4, fault=Fault.timeout(hang_seconds=0.01)),
        ),
    )
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        url = emulator.base_url + "/v1/chat/completions"
        answers = [await client.post(url, json=CHAT_BODY) for _ in range(5)]
    assert [a.status_code for a in answers] == [503, 404, 429, 504, 200]
    assert answers[1].json()["error"]["type"] == "invalid_request_error"
    assert answers[2].headers["retry-after-ms"] == "2500"
    assert answers[2].headers["retry-after"] == "3"


async def test_emulator_publishes_token_quota_headers_and_latency_distribution() -> None:
    config = EmulatorConfig(
        latency=EmpiricalLatency(samples=(0.001, 0.002)),
        tokens_per_minute=10_000,
        requests_per_minute=100,
    )
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        answer = await client.post(emulator.base_url + "/v1/chat/completions", json=CHAT_BODY)
        stats = emulator.stats
    assert answer.status_code == 200
    used = answer.json()["usage"]["total_tokens"]
    assert answer.headers["x-ratelimit-limit-tokens"] == "10000"
    assert answer.headers["x-ratelimit-remaining-tokens"] == str(10_000 - used)
    assert answer.headers["x-ratelimit-remaining-requests"] == "99"
    assert stats.provider.tokens == used


def test_emulator_cli_validates_the_new_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from sluicegate.testing.emulator import main

    assert main(["--port", "0", "--latency-sigma", "-1"]) == 2
    assert "LogNormalLatency.sigma" in capsys.readouterr().err
    assert main(["--port", "0", "--tpm", "0"]) == 2
    assert "EmulatorConfig.tokens_per_minute" in capsys.readouterr().err
    assert main(["--port", "0", "--latency-sigma", "0.5", "--jitter", "0.1"]) == 2
