"""OpenAICompatibleProvider hardening: validated arguments, actionable errors, a sized pool,
header parsing that never raises."""

from __future__ import annotations

import math
import socket
import ssl
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError, ModelRequest, OpenAICompatibleProvider
from sluicegate.providers import (
    DEFAULT_MAX_CONNECTIONS,
    LargeConnectionPoolWarning,
    UnboundedConnectionPoolWarning,
    parse_rate_limit_headers,
    parse_retry_after,
)
from sluicegate.providers.http_clients import CONNECTIONS_PER_CLIENT, MAX_CLIENTS
from sluicegate.providers.openai import _pool_limit
from sluicegate.providers.rate_limit_headers import DEFAULT_MAX_RESET, MAX_COUNT
from sluicegate.requests import (
    ProviderConnectionError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)
from sluicegate.testing import EmulatorConfig, serve_emulator

PROMPT = "the confidential prompt of row 4711"


def chat(text: str = PROMPT) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": text}])


def mock(handler: Any, **kwargs: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        base_url="http://user:pw@provider.test/v1",
        transport=httpx.MockTransport(handler),
        name="mock",
        **kwargs,
    )


# --- errors a user can act on ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "fix"),
    [
        (404, "The model `gpt-5` does not exist", "GET http://provider.test/v1/models"),
        (401, "Incorrect API key provided", "api_key"),
        (400, "max_tokens is too large: 999999", "ModelRequest.max_tokens"),
        (403, "Project does not have access", "permissions"),
    ],
)
async def test_4xx_names_url_model_server_message_and_fix(
    status: int, message: str, fix: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": message, "type": "invalid"}})

    async with mock(handler) as provider:
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("gpt-5", chat())
    text = str(caught.value)
    assert "POST http://provider.test/v1/chat/completions" in text
    assert "'gpt-5'" in text
    assert f'server said: "{message}"' in text
    assert f"HTTP {status}" in text
    assert "Fix:" in text and fix in text
    assert "user:pw" not in text  # credentials in base_url never reach a message
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "message",
    [
        f"Invalid input: {PROMPT}",
        f"could not parse ...{PROMPT[5:25]}...",  # a piece of it is enough
    ],
)
async def test_a_server_message_quoting_the_request_is_withheld(message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": message, "code": "bad"}})

    async with mock(handler) as provider:
        with pytest.raises(ProviderFailureError) as caught:
            await provider.call("m", chat())
    text = str(caught.value)
    assert "withheld" in text
    assert "code=bad" in text
    assert PROMPT[5:25] not in text


async def test_a_bare_string_error_body_is_shown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "no such route"})

    async with mock(handler) as provider:
        with pytest.raises(ProviderFailureError, match='server said: "no such route"'):
            await provider.call("m", chat())


async def test_redirect_names_the_location() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"location": "https://elsewhere.test/v1"})

    async with mock(handler) as provider:
        with pytest.raises(ProviderFailureError, match=r"https://elsewhere\.test/v1"):
            await provider.call("m", chat())


def _raise(exc: Exception) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def _with_cause(exc: Exception, cause: BaseException) -> Exception:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectTimeout("connect timed out"), "connect timeout"),
        (
            _with_cause(httpx.ConnectError("failed"), socket.gaierror(-2, "Name not known")),
            "DNS lookup failed",
        ),
        (
            _with_cause(
                httpx.ConnectError("failed"),
                ExceptionGroup("all attempts failed", [ConnectionRefusedError(111, "refused")]),
            ),
            "connection refused",
        ),
        (
            _with_cause(httpx.ReadError("read failed"), ConnectionResetError(104, "reset")),
            "connection reset",
        ),
        (
            _with_cause(httpx.ConnectError("tls"), ssl.SSLError(1, "CERTIFICATE_VERIFY_FAILED")),
            "TLS failed",
        ),
        (httpx.ConnectError("plain"), "could not connect"),
        (httpx.ProxyError("proxy said no"), "proxy failed"),
    ],
)
async def test_connection_failures_are_connection_errors(exc: Exception, kind: str) -> None:
    async with mock(_raise(exc)) as provider:
        with pytest.raises(ProviderConnectionError) as caught:
            await provider.call("m", chat())
    error = caught.value
    assert error.url == "http://provider.test/v1/chat/completions"
    assert error.cause.startswith(kind)
    assert error.url in str(error) and kind in str(error)
    assert error.retryable is True


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (httpx.ReadTimeout("slow"), ProviderTimeoutError, None),
        (httpx.PoolTimeout("pool"), ProviderTimeoutError, None),
        (httpx.RemoteProtocolError("garbage"), ProviderFailureError, True),
        (httpx.UnsupportedProtocol("gopher"), ProviderFailureError, False),
    ],
)
async def test_other_transport_failures(
    exc: Exception, expected: type[Exception], retryable: bool | None
) -> None:
    async with mock(_raise(exc)) as provider:
        with pytest.raises(expected) as caught:
            await provider.call("m", chat())
    assert not isinstance(caught.value, ProviderConnectionError)
    assert "http://provider.test/v1/chat/completions" in str(caught.value)
    if retryable is not None:
        assert isinstance(caught.value, ProviderFailureError)
        assert caught.value.retryable is retryable


async def test_unsupported_domain_says_what_to_do() -> None:
    async with mock(lambda r: httpx.Response(200)) as provider:
        with pytest.raises(ProviderFailureError, match="Fix:"):
            await provider.call("m", ModelRequest(domain="image", input="a cat"))


# --- the connection pool --------------------------------------------------------------------


def test_owned_pool_is_bounded_and_keeps_every_connection_alive() -> None:
    default = OpenAICompatibleProvider(base_url="http://h/v1")
    shards = default._http
    assert sum(_pool_limit(c) or 0 for c in shards.clients) == DEFAULT_MAX_CONNECTIONS
    assert max(shards.sizes) <= CONNECTIONS_PER_CLIENT
    for size in (1, 5, 9, 64, 100, 129):
        sized = OpenAICompatibleProvider(base_url="http://h/v1", max_connections=size)
        limits = [_pool_limit(c) for c in sized._http.clients]
        keepalive = [c._transport._pool._max_keepalive_connections for c in sized._http.clients]  # type: ignore[attr-defined]
        assert sum(limits) == size  # type: ignore[arg-type]
        assert keepalive == limits
        assert max(limits) - min(limits) <= 1  # type: ignore[type-var, operator]
        largest = max(CONNECTIONS_PER_CLIENT, -(-size // MAX_CLIENTS))
        assert max(limits) <= largest  # type: ignore[type-var, operator]
    huge = OpenAICompatibleProvider(base_url="http://h/v1", max_connections=10_000)
    assert len(huge._http.clients) == MAX_CLIENTS
    assert sum(huge._http.sizes) == 10_000


@pytest.mark.parametrize("max_connections", [3, 12])
async def test_pool_bounds_the_connections_and_reuses_them(max_connections: int) -> None:
    async with (
        serve_emulator(EmulatorConfig(latency_seconds=0.05)) as emulator,
        OpenAICompatibleProvider(
            base_url=emulator.base_url, max_connections=max_connections
        ) as provider,
    ):
        for _ in range(2):
            async with trio.open_nursery() as nursery:
                for i in range(max_connections):  # as many as admission would let through
                    nursery.start_soon(provider.call, "m", chat(f"q{i}"))
            assert provider._http.in_flight == 0
        # more calls than connections: the extra ones wait inside httpx, never a new socket
        async with trio.open_nursery() as nursery:
            for i in range(2 * max_connections):
                nursery.start_soon(provider.call, "m", chat(f"q{i}"))
        stats = emulator.stats
    assert stats.provider.successes == 4 * max_connections
    assert stats.provider.max_in_flight <= max_connections
    assert stats.connections_opened == max_connections  # no churn: every one kept alive


def test_user_client_with_an_unbounded_pool_warns_and_is_kept() -> None:
    unbounded = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
    with pytest.warns(UnboundedConnectionPoolWarning, match="max_parallel_requests"):
        provider = OpenAICompatibleProvider(base_url="http://h/v1", client=unbounded)
    assert provider._http.clients == (unbounded,)
    bounded = httpx.AsyncClient(limits=httpx.Limits(max_connections=16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OpenAICompatibleProvider(base_url="http://h/v1", client=bounded)


def test_user_client_with_one_large_pool_warns_and_is_kept() -> None:
    large = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
    with pytest.warns(LargeConnectionPoolWarning, match="pools 64 connections in one client"):
        provider = OpenAICompatibleProvider(base_url="http://h/v1", client=large)
    assert provider._http.clients == (large,)


def test_max_connections_with_a_client_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAICompatibleProvider(
            base_url="http://h/v1", client=httpx.AsyncClient(), max_connections=8
        )
    assert caught.value.field == "OpenAICompatibleProvider.max_connections"


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "hint"),
    [
        ({"base_url": "htps://host/v1"}, "base_url", "did you mean 'https'"),
        ({"base_url": "localhost:8000/v1"}, "base_url", "did you mean 'http://localhost:8000/v1'"),
        ({"base_url": "http://h/v1?key=abc"}, "base_url", "query"),
        ({"base_url": 8000}, "base_url", "8000"),
        ({"base_url": "http://h", "timeout": True}, "timeout", "not a bool"),
        ({"base_url": "http://h", "timeout": float("nan")}, "timeout", "nan"),
        ({"base_url": "http://h", "timeout": "5"}, "timeout", "'5'"),
        ({"base_url": "http://h", "max_connections": 0}, "max_connections", ">= 1"),
        ({"base_url": "http://h", "max_connections": None}, "max_connections", ">= 1"),
        ({"base_url": "http://h", "max_connections": 2.0}, "max_connections", ">= 1"),
        ({"base_url": "http://h", "max_connections": True}, "max_connections", ">= 1"),
        ({"base_url": "http://h", "headers": [("a", "b")]}, "headers", "mapping"),
        ({"base_url": "http://h", "headers": {"bad name": "x"}}, "headers", "header name"),
        ({"base_url": "http://h", "client": object()}, "client", "httpx.AsyncClient"),
        ({"base_url": "http://h", "transport": object()}, "transport", "transport"),
        (
            {"base_url": "http://h", "api_key": "k", "headers": {"Authorization": "Bearer k"}},
            "headers",
            "once",
        ),
    ],
)
def test_invalid_arguments_name_the_field(kwargs: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAICompatibleProvider(**kwargs)
    assert caught.value.field == f"OpenAICompatibleProvider.{field}"
    assert hint in str(caught.value)


def test_a_bad_header_value_is_named_but_not_quoted() -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAICompatibleProvider(base_url="http://h", headers={"X-Key": "SECRET\nvalue"})
    assert caught.value.field == "OpenAICompatibleProvider.headers['X-Key']"
    assert "SECRET" not in str(caught.value)


_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["timeout", "max_retry_after", "max_connections"]),
    value=_anything,
)
def test_numeric_arguments_are_accepted_in_range_or_refused_by_name(
    name: str, value: object
) -> None:
    try:
        provider = OpenAICompatibleProvider(base_url="http://h/v1", **{name: value})
    except ConfigurationError as exc:
        assert exc.field == f"OpenAICompatibleProvider.{name}"
        return
    accepted = getattr(provider, name)
    assert not isinstance(accepted, bool)
    assert isinstance(accepted, (int, float)) and math.isfinite(accepted) and accepted > 0
    if name == "max_connections":
        assert isinstance(accepted, int)


def test_setting_a_bad_value_later_is_refused_too() -> None:
    provider = OpenAICompatibleProvider(base_url="http://h/v1")
    with pytest.raises(ConfigurationError):
        provider.max_retry_after = -1.0
    assert provider.max_retry_after == 600.0


# --- header parsing never raises ------------------------------------------------------------


_header_text = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?[0-9]{1,400}(\.[0-9]*)?(e[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-0", "0x10", "1_000", "  7  ", "١٢"]),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ).map(lambda d: d.strftime("%a, %d %b ") + f"{d.year:04d}" + d.strftime(" %H:%M:%S GMT")),
    st.sampled_from(
        [
            "Fri, 31 Dec 9999 23:59:59 -2359",
            "Mon, 01 Jan 0001 00:00:00 +2359",
            "Mon, 01 Jan 99999 00:00:00 GMT",
            "Mon, 32 Jan 2020 00:00:00 GMT",
            "1 Jan 0 00:00:00",
        ]
    ),
)


@settings(max_examples=400)
@given(
    retry_after=st.none() | _header_text,
    retry_after_ms=st.none() | _header_text,
    cap=st.floats(0.001, 10**6),
)
def test_retry_after_is_none_or_a_bounded_delay(
    retry_after: str | None, retry_after_ms: str | None, cap: float
) -> None:
    headers = {
        name: value
        for name, value in (("retry-after", retry_after), ("retry-after-ms", retry_after_ms))
        if value is not None
    }
    seconds = parse_retry_after(headers, max_seconds=cap)
    assert seconds is None or 0.0 <= seconds <= cap


@settings(max_examples=300)
@given(values=st.lists(_header_text, min_size=6, max_size=6))
def test_rate_limit_headers_never_raise_and_stay_bounded(values: list[str]) -> None:
    names = [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ]
    hints = parse_rate_limit_headers(dict(zip(names, values, strict=True)))
    assert hints is not None
    for count in (
        hints.limit_requests,
        hints.remaining_requests,
        hints.limit_tokens,
        hints.remaining_tokens,
    ):
        assert count is None or 0 <= count <= MAX_COUNT
    for reset in (hints.reset_requests_seconds, hints.reset_tokens_seconds):
        assert reset is None or 0.0 <= reset <= DEFAULT_MAX_RESET


def test_absurd_retry_after_values_become_the_cap() -> None:
    far = "Fri, 31 Dec 9999 23:59:59 GMT"
    assert parse_retry_after({"retry-after": far}) == 600.0
    assert parse_retry_after({"retry-after": "1e999"}, max_seconds=30.0) == 30.0
    assert parse_retry_after({"retry-after": "9" * 500}, max_seconds=30.0) == 30.0
    assert parse_retry_after({"retry-after-ms": "inf"}, max_seconds=5.0) == 5.0
    assert parse_retry_after({"retry-after": "-5"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_rate_limit_headers({"x-ratelimit-limit-requests": "9" * 30}) is not None
    hints = parse_rate_limit_headers({"x-ratelimit-limit-requests": "9" * 30})
    assert hints is not None and hints.limit_requests is None
    hints = parse_rate_limit_headers({"x-ratelimit-reset-tokens": "100000h"})
    assert hints is not None and hints.reset_tokens_seconds == DEFAULT_MAX_RESET


async def test_a_huge_retry_after_on_a_429_is_capped_by_the_provider() -> None:
    when = datetime.now(UTC) + timedelta(days=365 * 7000)

    def handler(request: httpx.Request) -> httpx.Response:
        date = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return httpx.Response(429, headers={"retry-after": date, "x-ratelimit-limit-requests": "x"})

    async with mock(handler, max_retry_after=12.5) as provider:
        with pytest.raises(ProviderRateLimitedError) as caught:
            await provider.call("m", chat())
    assert caught.value.retry_after == 12.5


async def test_a_huge_error_message_is_clipped_quickly() -> None:
    prompt = "lorem ipsum dolor sit amet " * 40_000  # about 1 MB
    message = "x" * 1_000_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": message}})

    async with mock(handler) as provider:
        with trio.fail_after(5), pytest.raises(ProviderFailureError) as caught:
            await provider.call("m", chat(prompt))
    assert len(str(caught.value)) < 1_000
    assert "..." in str(caught.value)
