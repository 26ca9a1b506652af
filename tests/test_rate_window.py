from __future__ import annotations

import copy
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError
from sluicegate.requests.rate_window import RateWindow


def test_requests_per_window_slides() -> None:
    window = RateWindow(requests_per_window=2, window_seconds=10.0)
    window.reserve(0.0)
    window.reserve(1.0)
    assert window.blocked_by(5.0) == "rate_window_requests"
    # the oldest admission leaves at exactly 0 + 10
    assert window.available_at(5.0) == 10.0
    assert window.blocked_by(9.999) == "rate_window_requests"
    assert window.blocked_by(10.0) is None
    assert window.requests_in_window(10.0) == 1


def test_tokens_are_reserved_then_settled_to_actual_usage() -> None:
    window = RateWindow(tokens_per_window=100, window_seconds=60.0)
    first = window.reserve(0.0, 80)
    assert window.blocked_by(1.0, 30) == "rate_window_tokens"
    window.settle(first, 50)  # the call used less than estimated
    assert window.tokens_in_window(1.0) == 50
    assert window.blocked_by(1.0, 30) is None
    second = window.reserve(2.0, 30)
    window.settle(second, 45)  # and this one more
    assert window.tokens_in_window(2.0) == 95
    assert window.blocked_by(2.0, 10) == "rate_window_tokens"
    # 50 tokens leave at 60, which is enough for 10 more
    assert window.available_at(2.0, 10) == 60.0
    assert window.available_at(2.0, 60) == 62.0  # needs both entries gone
    window.settle(second, None)  # None keeps the settled value
    assert window.tokens_in_window(2.0) == 95


def test_settling_an_expired_entry_changes_nothing() -> None:
    window = RateWindow(tokens_per_window=100, window_seconds=1.0)
    entry = window.reserve(0.0, 10)
    window.prune(5.0)
    assert entry.live is False
    window.settle(entry, 90)
    assert window.tokens_in_window(5.0) == 0


@pytest.mark.parametrize("actual", [math.nan, math.inf, -5])
def test_an_unusable_actual_keeps_the_estimate(actual: float) -> None:
    # A NaN or infinite "actual usage" used to poison the token total for good: NaN compares
    # false (the quota stopped binding), infinity turned into NaN when its entry left.
    window = RateWindow(tokens_per_window=100, window_seconds=10.0)
    entry = window.reserve(0.0, 40)
    window.settle(entry, actual)
    assert window.tokens_in_window(1.0) == 40
    assert window.blocked_by(1.0, 70) == "rate_window_tokens"
    assert window.available_at(1.0, 70) == 10.0
    assert window.blocked_by(10.0, 100) is None
    assert window.tokens_in_window(10.0) == 0


def test_request_larger_than_token_quota_never_fits() -> None:
    window = RateWindow(tokens_per_window=10)
    assert not window.fits(11)
    assert window.available_at(0.0, 11) == math.inf


def test_validation() -> None:
    with pytest.raises(ConfigurationError, match="needs a rate"):
        RateWindow()
    with pytest.raises(ConfigurationError, match="window_seconds"):
        RateWindow(requests_per_window=1, window_seconds=0)
    with pytest.raises(ConfigurationError, match="requests_per_window"):
        RateWindow(requests_per_window=0)


def test_reconfigure_keeps_entries() -> None:
    window = RateWindow(requests_per_window=5, window_seconds=10.0)
    for t in range(3):
        window.reserve(float(t))
    window.reconfigure(requests_per_window=2, tokens_per_window=None, window_seconds=10.0)
    assert window.blocked_by(3.0) == "rate_window_requests"
    # two entries must leave (at 10 and 11) before one more fits
    assert window.available_at(3.0) == 11.0


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 5),
    tokens_limit=st.integers(10, 60),
    arrivals=st.lists(
        st.tuples(st.floats(0.0, 3.0), st.integers(0, 15), st.integers(0, 20)),
        max_size=60,
    ),
)
@example(  # the last entry is due to leave exactly at `now` (float rounding of at + w)
    limit=2,
    tokens_limit=10,
    arrivals=[(1.3099775040800612, 0, 0), (1.8018595066049299, 0, 0), (2.0, 0, 0), (3.0, 0, 0)],
)
def test_admitted_load_never_exceeds_quota_in_any_window(limit, tokens_limit, arrivals) -> None:
    """Admit whenever blocked_by says so; every window of length W then holds at most
    ``limit`` requests, and ``available_at`` is exactly the first instant that fits."""
    w = 5.0
    window = RateWindow(requests_per_window=limit, tokens_per_window=tokens_limit, window_seconds=w)
    now = 0.0
    admitted: list[tuple[float, int]] = []
    for gap, estimate, actual in arrivals:
        now += gap
        if window.blocked_by(now, estimate) is None:
            entry = window.reserve(now, estimate)
            window.settle(entry, actual)
            admitted.append((now, actual))
        else:
            at = window.available_at(now, estimate)
            assert at > now
            if at != math.inf:
                # probing a future instant prunes, so probe copies
                assert copy.deepcopy(window).blocked_by(at, estimate) is None
                before = math.nextafter(at, -math.inf)
                assert copy.deepcopy(window).blocked_by(before, estimate) is not None
    for start, _ in admitted:
        inside = [a for a in admitted if start <= a[0] < start + w]
        assert len(inside) <= limit
    # the running totals equal a recount from scratch (an entry leaves at exactly at + w:
    # `a[0] > now - w` rounds differently, e.g. 3.111837010684991 + 5.0 == 8.11183701068499)
    live = [a for a in admitted if a[0] + w > now]
    assert window.requests_in_window(now) == len(live)
    assert window.tokens_in_window(now) == sum(a[1] for a in live)


def test_usage_counts_slide_on_their_own() -> None:
    # reading the usage is enough to let old entries leave: a snapshot taken long after the
    # last admission must not report requests and tokens that already left the window
    window = RateWindow(requests_per_window=5, tokens_per_window=100, window_seconds=10.0)
    window.reserve(0.0, 30)
    window.reserve(4.0, 20)
    assert (window.requests_in_window(9.0), window.tokens_in_window(9.0)) == (2, 50)
    assert window.tokens_in_window(10.0) == 20
    assert window.requests_in_window(14.0) == 0
    assert window.tokens_in_window(14.0) == 0


def test_reconfigure_changes_the_window_length() -> None:
    window = RateWindow(requests_per_window=1, window_seconds=10.0)
    window.reserve(0.0)
    window.reconfigure(requests_per_window=1, tokens_per_window=None, window_seconds=30.0)
    assert window.window_seconds == 30.0
    # the admitted entry now counts for 30 s, not 10
    assert window.blocked_by(20.0) == "rate_window_requests"
    assert window.available_at(20.0) == 30.0


@pytest.mark.parametrize(
    ("requests", "tokens", "seconds", "field"),
    [
        (None, None, 10.0, "needs a rate"),
        (0, None, 10.0, "requests_per_window"),
        (None, -1, 10.0, "tokens_per_window"),
        (2, None, math.inf, "window_seconds"),
    ],
)
def test_reconfigure_rejects_a_bad_quota_and_keeps_the_old_one(
    requests: int | None, tokens: int | None, seconds: float, field: str
) -> None:
    window = RateWindow(requests_per_window=2, window_seconds=10.0)
    with pytest.raises(ConfigurationError, match=field):
        window.reconfigure(
            requests_per_window=requests, tokens_per_window=tokens, window_seconds=seconds
        )
    assert (window.requests_per_window, window.tokens_per_window) == (2, None)
    assert window.window_seconds == 10.0


def test_a_request_that_exactly_fills_the_token_quota_fits() -> None:
    window = RateWindow(tokens_per_window=100, window_seconds=10.0)
    assert window.fits(100)
    assert window.available_at(0.0, 100) == 0.0
    window.reserve(0.0, 60)
    # 60 + 40 is exactly the quota: it fits now, not when the 60 leaves
    assert window.blocked_by(1.0, 40) is None
    assert window.available_at(1.0, 40) == 1.0
    assert window.blocked_by(1.0, 41) == "rate_window_tokens"
    assert window.available_at(1.0, 41) == 10.0
    # the whole quota fits again once the 60 has left
    assert window.available_at(1.0, 100) == 10.0


def test_token_arguments_default_to_zero() -> None:
    window = RateWindow(requests_per_window=5, tokens_per_window=10, window_seconds=10.0)
    window.reserve(0.0)
    assert window.tokens_in_window(0.0) == 0
    window.reserve(0.0, 10)  # the token quota is now exactly spent
    assert window.blocked_by(1.0) is None  # a call that uses no tokens still fits
    assert window.available_at(1.0) == 1.0


def test_available_at_waits_for_enough_tokens_to_leave() -> None:
    window = RateWindow(tokens_per_window=100, window_seconds=10.0)
    window.reserve(0.0, 9)
    window.reserve(1.0, 85)
    # 94 + 16 is 10 over the quota: the 9 leaving at t=10 is not enough, the 85 must go too
    assert window.available_at(2.0, 16) == 11.0
    assert window.available_at(2.0, 15) == 10.0  # 9 over: the first entry suffices
