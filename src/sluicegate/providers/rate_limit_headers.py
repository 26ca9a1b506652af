"""``Retry-After`` and ``x-ratelimit-*`` headers: parsed into delays and hints, and written back.

Parsing is for untrusted input and never raises: a header is advice, so an odd one (garbage,
a negative number, ``nan``, a number too long for a float, an HTTP-date in the year 9999) must
never fail a call. Each parser documents what such a value becomes: ``None`` (no hint, so the
caller's configured default applies) or a value capped at a documented bound.

The writers (:func:`format_duration`, :func:`rate_limit_header_items`,
:func:`retry_after_header_items`) are what the loopback emulator sends; the header names come
from :mod:`sluicegate.providers.openai_wire`, shared by both ends.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

from ..requests.provider import RateLimitHints
from . import openai_wire as wire

DEFAULT_MAX_RETRY_AFTER: Final = 600.0
"""The longest ``Retry-After`` honoured by default, in seconds (ten minutes)."""


DEFAULT_MAX_RESET: Final = 86_400.0
"""The longest ``x-ratelimit-reset-*`` kept by default, in seconds (one day: daily quotas)."""


MAX_COUNT: Final = 2**53
"""Counts above this (``x-ratelimit-limit-*``, ``-remaining-*``) are not believable: ``None``."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


_DATE_ERRORS = (TypeError, ValueError, IndexError, OverflowError)


def parse_duration(value: str | None) -> float | None:
    """Seconds in a rate-limit reset value (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``).

    A bare number is read as seconds. Anything unparseable, negative or not finite gives
    ``None``: hints are advice, so a provider's odd header never fails a call. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _float_or_nan(text)
    if not math.isnan(seconds):
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        return None
    # a number too long for a float reads as infinity: as unusable as any other odd value
    return total if math.isfinite(total) else None


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return math.nan


def parse_retry_after(
    headers: Mapping[str, str],
    *,
    now: Callable[[], datetime] | None = None,
    max_seconds: float = DEFAULT_MAX_RETRY_AFTER,
) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP-date).

    ``headers`` must be case-insensitive (like ``httpx.Headers``) or use lower-case keys.
    ``retry-after-ms`` wins when it is readable. An HTTP-date is compared with the wall clock
    (``now``, injectable for tests); a date in the past gives ``0.0``.

    Never raises. The result is ``None`` (no usable hint: missing, garbage, negative,
    ``nan``) or a number in ``[0, max_seconds]``: a longer delay (a huge number, an infinite
    one, a date years ahead) is cut to ``max_seconds``, so one odd answer cannot freeze an
    endpoint. ``max_seconds`` itself must be a finite number > 0.
    """
    seconds = _retry_after_seconds(headers, now)
    if seconds is None:
        return None
    return min(seconds, max_seconds)


def _retry_after_seconds(
    headers: Mapping[str, str], now: Callable[[], datetime] | None
) -> float | None:
    millis = headers.get(wire.RETRY_AFTER_MS)
    if millis is not None:
        value = _float_or_nan(millis.strip()) / 1000.0
        if value >= 0:  # false for nan
            return value  # may be inf: the caller caps it
    raw = headers.get(wire.RETRY_AFTER)
    if raw is None:
        return None
    text = raw.strip()
    seconds = _float_or_nan(text)
    if not math.isnan(seconds):
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = now() if now is not None else datetime.now(UTC)
        return max(0.0, (when - current).total_seconds())
    except _DATE_ERRORS:
        return None


def _parse_count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        count = int(value.strip())
    except ValueError:  # also raised for a number longer than Python's digit limit
        return None
    return count if 0 <= count <= MAX_COUNT else None


def _parse_reset(value: str | None, max_seconds: float) -> float | None:
    seconds = parse_duration(value)
    return None if seconds is None else min(seconds, max_seconds)


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, max_reset_seconds: float = DEFAULT_MAX_RESET
) -> RateLimitHints | None:
    """:class:`RateLimitHints` from ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.

    ``headers`` must be case-insensitive (like ``httpx.Headers``) or use lower-case keys.
    Returns ``None`` when no such header is present. Never raises: an unparseable, negative
    or unbelievable value (a count above :data:`MAX_COUNT`) is left ``None``; a reset longer
    than ``max_reset_seconds`` (default one day) is cut to it.
    """
    values = [headers.get(name) for name in wire.RATE_LIMIT_HEADERS]
    if all(v is None for v in values):
        return None
    return RateLimitHints(
        limit_requests=_parse_count(values[0]),
        remaining_requests=_parse_count(values[1]),
        reset_requests_seconds=_parse_reset(values[2], max_reset_seconds),
        limit_tokens=_parse_count(values[3]),
        remaining_tokens=_parse_count(values[4]),
        reset_tokens_seconds=_parse_reset(values[5], max_reset_seconds),
    )


def format_duration(seconds: float) -> str:
    """A Go-style duration as OpenAI sends it (``20ms``, ``1.5s``, ``6m0s``); the inverse of
    :func:`parse_duration` to the millisecond. ``seconds`` must be finite and >= 0."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def rate_limit_header_items(hints: RateLimitHints | None) -> list[tuple[str, str]]:
    """The ``x-ratelimit-*`` headers that say what ``hints`` says (fields left ``None`` are
    not sent)."""
    if hints is None:
        return []
    items: list[tuple[str, str]] = []
    for name, count in (
        (wire.LIMIT_REQUESTS, hints.limit_requests),
        (wire.REMAINING_REQUESTS, hints.remaining_requests),
        (wire.LIMIT_TOKENS, hints.limit_tokens),
        (wire.REMAINING_TOKENS, hints.remaining_tokens),
    ):
        if count is not None:
            items.append((name, str(count)))
    for name, reset in (
        (wire.RESET_REQUESTS, hints.reset_requests_seconds),
        (wire.RESET_TOKENS, hints.reset_tokens_seconds),
    ):
        if reset is not None:
            items.append((name, format_duration(reset)))
    return items


def retry_after_header_items(seconds: float) -> list[tuple[str, str]]:
    """``Retry-After`` (whole seconds, rounded up, as the standard requires) and the exact
    ``retry-after-ms``. ``seconds`` must be finite and >= 0."""
    return [
        (wire.RETRY_AFTER, str(math.ceil(seconds))),
        (wire.RETRY_AFTER_MS, str(round(seconds * 1000))),
    ]
