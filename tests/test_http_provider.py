"""OpenAICompatibleProvider against the real emulator on a loopback socket (real time, ms-scale).

Status mappings the emulator never produces (408, redirects, malformed bodies) use
``httpx.MockTransport``; header parsing has plain unit tests.
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import (
    ConfigurationError,
    ModelRequest,
    OpenAICompatibleProvider,
    Provider,
    ProviderError,
    SimulatedProvider,
)
from sluicegate.providers import parse_duration, parse_rate_limit_headers, parse_retry_after
from sluicegate.requests import (
    ProviderConnectionError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
)
from sluicegate.testing import Emulator, EmulatorConfig, serve_emulator

API_KEY = "sk-test-0123456789abcdef-SECRET"
PROMPT = "my confidential prompt text 4711"


def chat(text: str = PROMPT, **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": text}], **kwargs)


@asynccontextmanager
async def emulated(**config: Any) -> AsyncIterator[tuple[Emulator, OpenAICompatibleProvider]]:
    config.setdefault("latency_seconds", 0.001)
    async with (
        serve_emulator(EmulatorConfig(**config)) as emulator,
        OpenAICompatibleProvider(
            base_url=emulator.base_url, api_key=API_KEY, timeout=5.0, name="emu"
        ) as provider,
    ):
        yield emulator, provider


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        assert API_KEY not in text
        assert PROMPT not in text


# --- against the emulator -------------------------------------------------------------------


async def test_chat_success_and_usage_match_the_simulated_provider() -> None:
    request = chat(max_tokens=20)
    async with emulated(seed=9) as (_emulator, provider):
        assert isinstance(provider, Provider)
        response = await provider.call("model-a", request)
    expected = await SimulatedProvider(seed=9, latency_seconds=0.0).call("model-a", request)
    assert response.content == expected.content
    assert response.usage == expected.usage
    assert response.usage.prompt_tokens > 0
    assert 10 <= response.usage.completion_tokens <= 20
    assert response.model == "model-a"
    assert response.rate_limits is None  # no RPM configured, so no quota headers


async def test_an_attempt_without_a_time_limit() -> None:
    async with emulated(seed=9) as (_emulator, provider):
        response = await provider.call("model-a", chat(timeout=float("inf")))
    assert response.usage.completion_tokens > 0


async def test_embeddings() -> None:
    request = ModelRequest(domain="embedding", input=["one", "two"])
    async with emulated(embedding_dimensions=16) as (_emulator, provider):
        response = await provider.call("embedder", request)
    expected = await SimulatedProvider(embedding_dimensions=16, latency_seconds=0).call(
        "embedder", request
    )
    assert response.content == expected.content  # JSON floats round-trip exactly
    assert [len(v) for v in response.content] == [16, 16]
    assert response.usage.prompt_tokens == expected.usage.prompt_tokens
    assert response.usage.completion_tokens == 0


async def test_healthcheck_lists_models_and_image_is_unsupported() -> None:
    async with emulated(models=("a", "b")) as (_emulator, provider):
        health = await provider.call("a", ModelRequest(domain="healthcheck"))
        assert health.content == ["a", "b"]
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("a", ModelRequest(domain="image", input="a cat"))
        assert caught.value.retryable is False


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_with_or_without_v1(suffix: str) -> None:
    async with serve_emulator(EmulatorConfig(latency_seconds=0.001)) as emulator:
        provider = OpenAICompatibleProvider(base_url=emulator.base_url + suffix)
        async with provider:
            response = await provider.call("m", chat("hi"))
    assert isinstance(response.content, str)


async def test_keep_alive_reuses_one_connection() -> None:
    async with emulated() as (emulator, provider):
        for i in range(5):
            await provider.call("m", chat(f"q{i}"))
        assert emulator.stats.connections_opened == 1
        assert emulator.stats.provider.successes == 5


async def test_429_with_retry_after_from_concurrency_capacity() -> None:
    async with (
        emulated(latency_seconds=0.5, capacity=1, retry_after_seconds=0.25) as (
            emulator,
            provider,
        ),
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(provider.call, "m", chat("slow"))
        while emulator.stats.provider.in_flight == 0:  # noqa: ASYNC110 (no event to await)
            await trio.sleep(0.005)
        with pytest.raises(ProviderRateLimitedError) as caught:
            await provider.call("m", chat())
    error = caught.value
    assert error.status == 429
    assert error.retry_after == pytest.approx(0.25)
    assert error.rate_limits is not None
    assert error.rate_limits.remaining_requests == 0
    assert error.rate_limits.reset_requests_seconds == pytest.approx(0.25)
    assert_no_secret(error)


async def test_429_from_requests_per_minute_carries_quota_hints() -> None:
    async with emulated(requests_per_minute=2) as (_emulator, provider):
        first = await provider.call("m", chat("a"))
        assert first.rate_limits is not None
        assert first.rate_limits.limit_requests == 2
        assert first.rate_limits.remaining_requests == 1
        await provider.call("m", chat("b"))
        with pytest.raises(ProviderRateLimitedError) as caught:
            await provider.call("m", chat("c"))
    error = caught.value
    assert error.retry_after is not None
    assert 59.0 < error.retry_after <= 60.0
    assert error.rate_limits is not None
    assert error.rate_limits.limit_requests == 2
    assert error.rate_limits.remaining_requests == 0
    assert error.rate_limits.reset_requests_seconds is not None
    assert 59.0 < error.rate_limits.reset_requests_seconds <= 60.0


async def test_5xx_is_a_retryable_failure() -> None:
    async with emulated(failure_rate=1.0, failure_status=503) as (_emulator, provider):
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("m", chat())
    assert caught.value.status == 503
    assert caught.value.retryable is True
    assert "503" in str(caught.value)
    assert_no_secret(caught.value)


async def test_4xx_is_a_non_retryable_failure_without_the_prompt() -> None:
    async with emulated(models=("known",)) as (_emulator, provider):
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("unknown-model", chat())
    assert caught.value.status == 404
    assert caught.value.retryable is False
    assert "model_not_found" in str(caught.value)
    assert_no_secret(caught.value)


async def test_wrong_api_key_is_401_and_never_echoed() -> None:
    async with serve_emulator(EmulatorConfig(api_key="the-right-key")) as emulator:
        async with OpenAICompatibleProvider(
            base_url=emulator.base_url, api_key=API_KEY
        ) as provider:
            with pytest.raises(ProviderFailureError) as caught:
                await provider.call("m", chat())
            assert API_KEY not in repr(provider)
        async with OpenAICompatibleProvider(
            base_url=emulator.base_url, api_key="the-right-key"
        ) as authorized:
            response = await authorized.call("m", chat())
    assert caught.value.status == 401
    assert caught.value.retryable is False
    assert_no_secret(caught.value)
    assert isinstance(response.content, str)


async def test_timeout_is_a_provider_timeout() -> None:
    async with emulated(latency_seconds=3.0) as (_emulator, provider):
        start = trio.current_time()
        with pytest.raises(ProviderTimeoutError) as caught:
            await provider.call("m", chat(timeout=0.2))
        elapsed = trio.current_time() - start
    assert 0.15 < elapsed < 1.5
    assert_no_secret(caught.value)


async def test_provider_default_timeout() -> None:
    async with serve_emulator(EmulatorConfig(latency_seconds=3.0)) as emulator:
        provider = OpenAICompatibleProvider(base_url=emulator.base_url, timeout=0.2)
        async with provider:
            with pytest.raises(ProviderTimeoutError):
                await provider.call("m", chat())


async def test_connection_refused_names_the_url_and_the_cause() -> None:
    # A bound socket that never listens: connecting is refused, and the port stays ours.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with OpenAICompatibleProvider(
            base_url=f"http://127.0.0.1:{port}", api_key=API_KEY
        ) as provider:
            with pytest.raises(ProviderConnectionError) as caught:
                await provider.call("m", chat())
    error = caught.value
    assert isinstance(error, ProviderFailureError)  # the executor retries it
    assert error.retryable is True
    assert error.status is None
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    assert error.url == url
    assert error.cause.startswith("connection refused")
    # The top-level message says it all, not only the chained __cause__.
    text = str(error)
    assert url in text
    assert "connection refused" in text
    assert "'m'" in text
    assert "Fix:" in text
    assert_no_secret(error)


async def test_cancellation_propagates_and_the_provider_stays_usable() -> None:
    async with emulated(latency_seconds=3.0) as (emulator, provider):
        start = trio.current_time()
        with trio.move_on_after(0.1) as scope:
            await provider.call("m", chat())
        assert scope.cancelled_caught
        assert trio.current_time() - start < 1.0
        # The abandoned connection must not poison the pool: the next call gets an answer.
        emulator.provider.latency_seconds = 0.001
        with trio.fail_after(2):
            response = await provider.call("m", chat())
        assert isinstance(response.content, str)


# --- status mapping through httpx.MockTransport ---------------------------------------------


def mock_provider(handler: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        base_url="http://provider.test/v1",
        api_key=API_KEY,
        transport=httpx.MockTransport(handler),
        name="mock",
    )


async def test_request_shape_and_bearer_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"role": "assistant", "content": "hi"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                "model": "served-name",
            },
            headers={"x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "6m0s"},
        )

    async with mock_provider(handler) as provider:
        response = await provider.call(
            "m", chat("hi", max_tokens=7, temperature=0.5, extra={"seed": 1})
        )
    assert response.content == "hi"
    assert response.usage.prompt_tokens == 3
    assert response.usage.completion_tokens == 2
    assert response.model == "served-name"
    assert response.rate_limits == RateLimitHints(remaining_tokens=900, reset_tokens_seconds=360.0)
    (request,) = seen
    assert request.method == "POST"
    assert request.url == "http://provider.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = httpx.Response(200, content=request.content).json()
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "temperature": 0.5,
        "seed": 1,
    }


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (408, ProviderTimeoutError, None),
        (504, ProviderTimeoutError, None),
        (400, ProviderFailureError, False),
        (401, ProviderFailureError, False),
        (404, ProviderFailureError, False),
        (422, ProviderFailureError, False),
        (302, ProviderFailureError, False),
        (500, ProviderFailureError, True),
        (502, ProviderFailureError, True),
        (503, ProviderFailureError, True),
    ],
)
async def test_status_mapping(
    status: int, error_type: type[ProviderError], retryable: bool | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # A server that quotes the prompt back in its message: it must not reach our errors.
        return httpx.Response(
            status,
            json={"error": {"message": f"bad input: {PROMPT}", "type": "invalid_request_error"}},
            headers={"x-ratelimit-remaining-requests": "0"},
        )

    async with mock_provider(handler) as provider:
        with pytest.raises(error_type) as caught:
            await provider.call("m", chat())
    error = caught.value
    assert error.status == status
    assert error.rate_limits == RateLimitHints(remaining_requests=0)
    if retryable is not None:
        assert isinstance(error, ProviderFailureError)
        assert error.retryable is retryable
    assert "invalid_request_error" in str(error)
    assert_no_secret(error)


async def test_503_with_retry_after_carries_the_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"retry-after": "7"})

    async with mock_provider(handler) as provider:
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("m", chat())
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert caught.value.retry_after == 7.0


async def test_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"retry-after": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}
        )

    async with mock_provider(handler) as provider:
        with pytest.raises(ProviderRateLimitedError) as caught:
            await provider.call("m", chat())
    assert caught.value.retry_after is not None
    assert 25.0 < caught.value.retry_after <= 30.0
    assert caught.value.rate_limits is None


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", b'{"choices": []}', b'{"choices": [{"text": "old API"}]}', b"[]"],
)
async def test_malformed_200_is_non_retryable(body: bytes) -> None:
    async with mock_provider(lambda request: httpx.Response(200, content=body)) as provider:
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("m", chat())
    assert caught.value.retryable is False
    assert "base_url" in str(caught.value)
    assert_no_secret(caught.value)


async def test_transport_timeout_exception_is_a_provider_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async with mock_provider(handler) as provider:
        with pytest.raises(ProviderTimeoutError):
            await provider.call("m", chat())


async def test_injected_client_is_left_open() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    async with OpenAICompatibleProvider(base_url="http://x.test", client=client) as provider:
        with pytest.raises(ProviderFailureError):
            await provider.call("m", chat())
    assert not client.is_closed
    await client.aclose()

    owned = OpenAICompatibleProvider(
        base_url="http://x.test", transport=httpx.MockTransport(lambda r: httpx.Response(500))
    )
    await owned.aclose()
    await owned.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await owned.call("m", chat())  # a programming error, not a provider failure


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
async def test_a_far_future_retry_after_is_capped(status: int) -> None:
    when = datetime.now(UTC) + timedelta(days=3)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, headers={"retry-after": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}
        )

    async with mock_provider(handler) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.call("m", chat())
        assert caught.value.retry_after == 600.0  # type: ignore[attr-defined]
        provider.max_retry_after = 30.0
        with pytest.raises(ProviderError) as caught:
            await provider.call("m", chat())
        assert caught.value.retry_after == 30.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "ftp://host/v1"}, "base_url"),
        ({"base_url": "http://h", "timeout": 0}, "timeout"),
        ({"base_url": "http://h", "max_retry_after": float("inf")}, "max_retry_after"),
        ({"base_url": "http://h", "max_retry_after": 0}, "max_retry_after"),
        ({"base_url": "http://h", "name": ""}, "name"),
        ({"base_url": "http://h", "api_key": ""}, "api_key"),
        ({"base_url": "http://h", "api_key": "sk-with\nnewline-SECRET"}, "api_key"),
        (
            {
                "base_url": "http://h",
                "client": httpx.AsyncClient(),
                "transport": httpx.MockTransport(lambda r: httpx.Response(200)),
            },
            "transport",
        ),
    ],
)
def test_invalid_configuration(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAICompatibleProvider(**kwargs)
    assert caught.value.field == f"OpenAICompatibleProvider.{field}"
    assert "SECRET" not in str(caught.value)


def test_repr_hides_the_api_key() -> None:
    provider = OpenAICompatibleProvider(base_url="http://h/v1", api_key=API_KEY)
    assert API_KEY not in repr(provider)
    assert "http://h/v1" in repr(provider)


# --- header parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("250us", 0.00025),
        ("12", 12.0),
        ("1.5", 1.5),
        (" 2s ", 2.0),
        ("", None),
        ("soon", None),
        ("5x", None),
        ("1s garbage", None),
        ("-1", None),
        ("s", None),
        ("9" * 400 + "h", None),  # overflows to infinity: not a duration
        ("1" * 400 + "ms", None),
        (None, None),
    ],
)
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    result = parse_duration(text)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds)


_duration_parts = st.lists(
    st.tuples(
        st.one_of(
            st.text("0123456789.", min_size=1, max_size=12),
            st.integers(0, 400).map(lambda n: "9" * n + "1"),  # past float range at 309 digits
        ),
        st.sampled_from(["h", "m", "s", "ms", "us", "ns", "", "x"]),
    ),
    max_size=4,
).map(lambda parts: "".join(number + unit for number, unit in parts))


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=40), _duration_parts), st.one_of(st.text(), _duration_parts))
def test_header_parsers_give_none_or_finite_seconds(value: str, other: str) -> None:
    for seconds in (
        parse_duration(value),
        parse_retry_after({"retry-after": value}),
        parse_retry_after({"retry-after-ms": value, "retry-after": other}),
    ):
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0), (value, seconds)
    hints = parse_rate_limit_headers({"x-ratelimit-reset-tokens": value})
    assert hints is not None
    reset = hints.reset_tokens_seconds
    assert reset is None or (math.isfinite(reset) and reset >= 0)


def test_parse_retry_after() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    fixed = lambda: now  # noqa: E731
    assert parse_retry_after(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "0.5"})) == 0.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250", "Retry-After": "1"})) == 0.25
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "junk", "Retry-After": "3"})) == 3.0
    date = httpx.Headers({"Retry-After": "Wed, 01 May 2024 12:00:42 GMT"})
    assert parse_retry_after(date, now=fixed) == 42.0
    past = httpx.Headers({"Retry-After": "Wed, 01 May 2024 11:00:00 GMT"})
    assert parse_retry_after(past, now=fixed) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "tomorrow"})) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": "-3"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def test_parse_rate_limit_headers() -> None:
    headers = httpx.Headers(
        {
            "X-RateLimit-Limit-Requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert parse_rate_limit_headers(headers) == RateLimitHints(
        limit_requests=60,
        remaining_requests=59,
        reset_requests_seconds=1.0,
        limit_tokens=150000,
        remaining_tokens=149984,
        reset_tokens_seconds=360.0,
    )
    assert parse_rate_limit_headers(httpx.Headers({"content-type": "text/plain"})) is None
    partial = parse_rate_limit_headers(
        httpx.Headers(
            {"x-ratelimit-remaining-requests": "abc", "x-ratelimit-reset-requests": "20ms"}
        )
    )
    assert partial == RateLimitHints(reset_requests_seconds=0.02)
