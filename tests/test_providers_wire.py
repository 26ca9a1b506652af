"""The one OpenAI wire format: what the emulator writes, the provider reads, and back."""

from __future__ import annotations

import math

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.providers import openai_wire as wire
from sluicegate.providers.rate_limit_headers import (
    format_duration,
    parse_duration,
    parse_rate_limit_headers,
    rate_limit_header_items,
    retry_after_header_items,
)
from sluicegate.requests import RateLimitHints


def test_request_bodies_omit_unset_fields() -> None:
    body = wire.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    assert msgspec.json.decode(wire.ENCODER.encode(body)) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize(
    ("fields", "limit"),
    [({"max_tokens": 5}, 5), ({"max_completion_tokens": 7}, 7), ({}, None)],
)
def test_completion_limit_under_either_name(fields: dict[str, int], limit: int | None) -> None:
    raw = msgspec.json.encode({"model": "m", "messages": [], "extra_field": 1, **fields})
    assert wire.CHAT_REQUEST_DECODER.decode(raw).completion_limit == limit


def test_lenient_decoding_of_a_minimal_answer() -> None:
    answer = wire.CHAT_DECODER.decode(b'{"choices": [{"message": {"content": "x"}}]}')
    assert answer.choices[0].message.content == "x"
    assert answer.usage is None and answer.model is None


def test_error_body_as_object_or_string() -> None:
    detail = wire.ERROR_DECODER.decode(b'{"error": {"message": "m", "code": 404}}').error
    assert detail == wire.ErrorDetail(message="m", code=404)
    assert wire.ERROR_DECODER.decode(b'{"error": "plain text"}').error == "plain text"
    encoded = wire.ENCODER.encode(wire.ErrorBody(error=wire.ErrorDetail(message="m", type="t")))
    assert msgspec.json.decode(encoded) == {"error": {"message": "m", "type": "t"}}


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_format_duration_round_trips_to_the_millisecond(seconds: float) -> None:
    parsed = parse_duration(format_duration(seconds))
    assert parsed is not None
    assert math.isclose(parsed, seconds, abs_tol=0.0006)


_counts = st.none() | st.integers(0, 10**12)
_resets = st.none() | st.floats(0, 86_000, allow_nan=False).map(lambda s: round(s, 3))


@given(_counts, _counts, _resets, _counts, _counts, _resets)
def test_rate_limit_headers_round_trip(
    limit_r: int | None,
    remaining_r: int | None,
    reset_r: float | None,
    limit_t: int | None,
    remaining_t: int | None,
    reset_t: float | None,
) -> None:
    hints = RateLimitHints(
        limit_requests=limit_r,
        remaining_requests=remaining_r,
        reset_requests_seconds=reset_r,
        limit_tokens=limit_t,
        remaining_tokens=remaining_t,
        reset_tokens_seconds=reset_t,
    )
    items = rate_limit_header_items(hints)
    assert {name for name, _ in items} <= set(wire.RATE_LIMIT_HEADERS)
    parsed = parse_rate_limit_headers(httpx.Headers(items))
    if not items:
        assert parsed is None
        return
    assert parsed is not None
    assert (parsed.limit_requests, parsed.remaining_requests) == (limit_r, remaining_r)
    assert (parsed.limit_tokens, parsed.remaining_tokens) == (limit_t, remaining_t)
    for got, sent in (
        (parsed.reset_requests_seconds, reset_r),
        (parsed.reset_tokens_seconds, reset_t),
    ):
        assert (got is None) == (sent is None)
        if got is not None and sent is not None:
            assert math.isclose(got, sent, abs_tol=0.0006)


def test_retry_after_items() -> None:
    assert retry_after_header_items(1.2) == [("retry-after", "2"), ("retry-after-ms", "1200")]
