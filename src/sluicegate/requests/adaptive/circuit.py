"""The circuit breaker of one request resource: closed, open, half-open. Pure, clock passed in.

An endpoint that keeps answering 429 even at limit 1 is not helped by AIMD. After
``circuit_breaker_threshold`` consecutive rate limits at limit 1 the circuit opens: nothing
is admitted until ``until``; then it is half-open and exactly one probe lease may go out. The
probe's success closes it; its 429 reopens it for longer (``circuit_backoff_multiplier``, up
to ``circuit_max_open_seconds``); after ``circuit_max_reopens`` reopenings it stays open until
an operator closes it. Only the outstanding probe gives a verdict.

Connection failures (the endpoint refused, reset, could not be resolved or reached) count
too: ``circuit_breaker_threshold`` of them in a row, at any limit, open the circuit as
*unreachable*. An unreachable endpoint fails fast: every waiter and newcomer is denied at
once with the failure's ``detail`` (URL and cause) instead of waiting for the half-open
probe; the first call after the open period is the probe. Any answer from the endpoint
(a success, a 429, a 5xx) ends a connection-failure streak.

The open -> half-open step is lazy: :meth:`state_at` and :meth:`blocked_by` *report* it at any
``now`` without changing anything; :meth:`half_open_due` says when the controller should
*make* it (and emit its event).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from ..pressure import CircuitState

if TYPE_CHECKING:
    from ..config import RequestResourceSettings


_INF: Final = math.inf


CLOSED: Final = 0


OPEN: Final = 1


HALF_OPEN: Final = 2


CIRCUIT_NAMES: Final[dict[int, CircuitState]] = {
    CLOSED: "closed",
    OPEN: "open",
    HALF_OPEN: "half_open",
}


class CircuitBreaker:
    """Closed / open / half-open state, the probe in flight and the reopening backoff."""

    __slots__ = (
        "backoff",
        "connection_failures",
        "detail",
        "floor_rate_limits",
        "probe_lease",
        "reopens",
        "state",
        "unreachable",
        "until",
    )

    def __init__(self, open_seconds: float) -> None:
        self.state = CLOSED
        self.until = -_INF
        self.backoff = open_seconds
        self.reopens = 0
        self.probe_lease = 0  # lease id of the half-open probe in flight (0: none)
        self.floor_rate_limits = 0  # consecutive non-coalesced 429s at limit 1
        self.connection_failures = 0  # consecutive calls that could not reach the endpoint
        self.unreachable = False  # opened by connection failures: fail fast
        self.detail: str | None = None  # the last connection failure (URL and cause)

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    def state_at(self, now: float) -> int:
        """The state at ``now`` (an open circuit past its reopening time reads half-open)."""
        if self.state == OPEN and now >= self.until:
            return HALF_OPEN
        return self.state

    def blocked_by(self, now: float) -> str | None:
        """``None`` if the circuit lets a call through at ``now``, else why not."""
        state = self.state
        if state == CLOSED:
            return None
        if state == OPEN and now < self.until:
            return "circuit_open"
        return "circuit_probe" if self.probe_lease else None

    def half_open_due(self, now: float) -> bool:
        """Whether an open circuit has reached its reopening time."""
        return self.state == OPEN and now >= self.until

    def to_half_open(self) -> None:
        self.state = HALF_OPEN

    def reopens_in(self, now: float) -> float | None:
        """Seconds until an open circuit turns half-open (``None`` if not open at ``now``)."""
        return max(0.0, self.until - now) if self.state_at(now) == OPEN else None

    def is_probe(self, lease_id: int) -> bool:
        """Whether ``lease_id`` is the outstanding probe (the only lease that gives a verdict)."""
        return lease_id == self.probe_lease and lease_id != 0

    def count_floor_rate_limit(self, threshold: int) -> bool:
        """A non-coalesced 429 at limit 1; ``True`` when the breaker should open."""
        self.floor_rate_limits += 1
        return self.floor_rate_limits >= threshold

    def count_connection_failure(self, threshold: int | None, detail: str | None) -> bool:
        """A call that never reached the endpoint; ``True`` when the breaker should open."""
        self.connection_failures += 1
        if detail is not None:
            self.detail = detail
        return threshold is not None and self.connection_failures >= threshold

    def answered(self) -> None:
        """The endpoint answered (any HTTP status): the connection-failure streak ends."""
        self.connection_failures = 0

    @property
    def fails_fast(self) -> bool:
        """Whether waiting cannot help: the circuit is open because nothing answers."""
        return self.unreachable and self.state != CLOSED

    def open(
        self,
        now: float,
        retry_after: float | None,
        settings: RequestResourceSettings,
        *,
        unreachable: bool = False,
    ) -> None:
        """Open for ``circuit_open_seconds`` (or the provider's longer ``retry_after``)."""
        self.unreachable = unreachable
        self.state = OPEN
        self.reopens = 0
        self.backoff = settings.circuit_open_seconds
        self.until = now + max(self.backoff, retry_after or 0.0)

    def reopen(
        self,
        now: float,
        retry_after: float | None,
        settings: RequestResourceSettings,
        *,
        unreachable: bool = False,
    ) -> None:
        """The probe failed: open again, for longer; for good after too many reopenings."""
        self.unreachable = unreachable
        self.probe_lease = 0
        self.reopens += 1
        self.state = OPEN
        max_reopens = settings.circuit_max_reopens
        if max_reopens is not None and self.reopens > max_reopens:
            self.until = _INF  # stays open: only reset_circuit() or reconfigure() closes it
        else:
            self.backoff = min(
                settings.circuit_max_open_seconds,
                self.backoff * settings.circuit_backoff_multiplier,
            )
            self.until = now + max(self.backoff, retry_after or 0.0)

    def close(self, settings: RequestResourceSettings) -> None:
        self.state = CLOSED
        self.probe_lease = 0
        self.floor_rate_limits = 0
        self.connection_failures = 0
        self.unreachable = False
        self.reopens = 0
        self.backoff = settings.circuit_open_seconds
        self.until = -_INF
