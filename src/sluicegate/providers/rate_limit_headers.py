"""Parsing of ``Retry-After`` and ``x-ratelimit-*`` headers into delays and hints."""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ..requests.provider import RateLimitHints

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: str | None) -> float | None:
    """Seconds in a rate-limit reset value (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``).

    A bare number is read as seconds. Anything unparseable gives ``None``: hints are advice,
    so a provider's odd header never fails a call.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
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


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], datetime] | None = None
) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP-date).

    ``headers`` must be case-insensitive (like ``httpx.Headers``) or use lower-case keys.
    An HTTP-date is compared with the wall clock (``now``, injectable for tests); a date in
    the past gives ``0.0``. Missing or unparseable values give ``None``.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _parse_count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        count = int(value.strip())
    except ValueError:
        return None
    return count if count >= 0 else None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitHints | None:
    """:class:`RateLimitHints` from ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.

    ``headers`` must be case-insensitive (like ``httpx.Headers``) or use lower-case keys.
    Returns ``None`` when no such header is present; unparseable values are left ``None``.
    """
    names = (
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    )
    values = [headers.get(name) for name in names]
    if all(v is None for v in values):
        return None
    return RateLimitHints(
        limit_requests=_parse_count(values[0]),
        remaining_requests=_parse_count(values[1]),
        reset_requests_seconds=parse_duration(values[2]),
        limit_tokens=_parse_count(values[3]),
        remaining_tokens=_parse_count(values[4]),
        reset_tokens_seconds=parse_duration(values[5]),
    )
