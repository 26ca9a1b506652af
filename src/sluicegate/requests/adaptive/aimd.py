"""The adaptive limit of one request resource: AIMD arithmetic, pure, clock passed in.

:class:`AimdLimit` holds the limit in ``[1, effective_max]``, the success streak, the
cooldown, the rate-limit ceilings and the rate-limit epoch. It never reads a clock, never
emits and never touches waiters: every method takes ``now`` (and the settings) and changes
only its own fields, so it is tested with plain numbers.

- Slow start (the default start): one more per success while calls fill the limit, so the
  limit doubles per round trip, until the first rate limit or ``effective_max``, or until
  calls take much longer than the fastest recent ones (queueing somewhere: in the server,
  the connection pool or a saturated client), like TCP's HyStart.
- Latency: while the fastest call of a round takes over 1.5 times the lowest latency seen
  (and 5 ms more), the limit does not grow: more calls would only queue.
- Decrease (a rate limit that is not part of a storm already answered):
  ``limit = max(1, floor(limit * decrease_factor))``; the limit before the cut is remembered
  as the ceiling and a new epoch starts (leases carry the epoch they were admitted in). A
  429 at the ceiling itself is a failed probe of a level already known to be too high: the
  limit steps back to ``ceiling - 1`` (the level that held) instead of being cut.
- Cooldown: no additive increase while ``now < cooldown_until``.
- Increase: after ``successes_until_increase`` successes outside cooldown,
  ``limit = min(effective_max, limit + increase_step)``, never past ``ceiling - 1``.
- Cautious zone: at ``ceiling - 1`` and above, each step of one needs
  ``ceiling_hold_rounds * limit`` successes *and* ``ceiling_hold_seconds`` since the last
  change, so an endpoint with short calls is not probed many times a second. A limit that
  holds a full period above the ceiling proves the ceiling stale; the highest ceiling seen
  (the *peak*) then becomes the ceiling, if it is still above: climbing back after a
  capacity dip slows down near the old level instead of overshooting it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..config import RequestResourceSettings


_INF: Final = math.inf


# Successes per latency round (the fastest of 8 is well clear of a +-30% jitter).
_ROUND: Final = 8


# How fast the lowest latency seen forgets itself, per round of successes.
_MIN_DRIFT: Final = 1.001


# More successes than any run will see: a cautious zone this long holds the limit for good.
_HOLD_FOREVER: Final = 2**62


class AimdLimit:
    """One resource's additive-increase / multiplicative-decrease limit."""

    __slots__ = (
        "ceiling",
        "changed_at",
        "cooldown_until",
        "effective_max",
        "epoch",
        "latency_min",
        "limit",
        "max_limit",
        "peak_ceiling",
        "queueing",
        "round_count",
        "round_min",
        "slow_start",
        "successes",
    )

    def __init__(self, limit: int, effective_max: int) -> None:
        self.limit = limit
        self.effective_max = effective_max
        self.max_limit = limit
        self.successes = 0  # streak towards the next additive increase
        self.cooldown_until = -_INF
        self.ceiling: int | None = None  # the limit at the last decrease
        self.peak_ceiling: int | None = None  # the highest ceiling not yet proven stale
        self.changed_at = -_INF  # when the last step or decrease happened
        self.epoch = 0
        self.slow_start = False  # growing by one per success until a rate limit or the max
        self.latency_min = _INF  # the fastest success seen (drifts up slowly)
        self.round_min = _INF  # the fastest success of the current round
        self.round_count = 0
        self.queueing = False  # the last round's fastest call waited in a queue

    def in_cooldown(self, now: float) -> bool:
        """Whether ``now`` is inside the cooldown of the last rate limit."""
        return now < self.cooldown_until

    def cooldown_remaining(self, now: float) -> float:
        """Seconds of cooldown left at ``now`` (0 outside a cooldown)."""
        return max(0.0, self.cooldown_until - now)

    def raise_to(self, limit: int) -> None:
        """Set the limit (caller keeps it within ``[1, effective_max]``); track the maximum."""
        self.limit = limit
        if limit > self.max_limit:
            self.max_limit = limit

    def set_effective_max(self, effective_max: int) -> None:
        """A new ``min(static cap, clamp)``; a limit above it comes down to it."""
        self.effective_max = effective_max
        if self.limit > effective_max:
            self.limit = effective_max
        if self.limit >= effective_max:
            self.slow_start = False

    def start_cooldown(self, now: float, seconds: float) -> None:
        """A rate limit arrived: no growth until ``now + seconds`` (never shortened)."""
        self.successes = 0
        until = now + seconds
        if until > self.cooldown_until:
            self.cooldown_until = until

    def same_storm(self, lease_epoch: int) -> bool:
        """Whether a 429 for a lease of ``lease_epoch`` belongs to a storm already answered
        (the lease was admitted before the last decrease)."""
        return lease_epoch != self.epoch

    def decrease(
        self, decrease_factor: float, now: float = -_INF, admitted_at_limit: int = 0
    ) -> int:
        """Answer a rate limit; returns the limit the cut was taken from (the new ceiling).

        ``admitted_at_limit`` is the limit when the rejected call was admitted: a 429 speaks
        about that level, not about the (possibly higher) limit reached while the answer was
        on its way, so the cut is taken from the lower of the two.
        """
        level = self.limit
        if 0 < admitted_at_limit < level:
            level = admitted_at_limit
        self.slow_start = False
        self.epoch += 1
        self.changed_at = now
        if level == self.ceiling and level > 1:
            self.limit = level - 1  # a failed probe: back to the level that held
            return level
        # The epsilon keeps decimal factors exact: 90 * 0.7 is 62.99999999999999 in binary.
        self.limit = max(1, math.floor(level * decrease_factor + 1e-9))
        self.ceiling = level
        if self.peak_ceiling is None or level > self.peak_ceiling:
            self.peak_ceiling = level
        return level

    def observe_latency(self, latency: float) -> bool:
        """Fold one success's latency in; ``True`` while calls queue somewhere.

        Judged once per round of 8 successes on the round's *fastest* call, so jitter does
        not count: when even the fastest call of a round takes over 1.5 times the
        lowest latency seen (and 5 ms more), the calls wait in a queue, in the server, the
        connection pool or a saturated client, and more of them would only wait longer.
        """
        if not 0.0 <= latency < _INF:
            return self.queueing
        if latency < self.round_min:
            self.round_min = latency
        self.round_count += 1
        if self.round_count >= _ROUND:
            fastest = self.round_min
            # the lowest latency drifts up a little per round, so that a lasting change of
            # the endpoint's base latency is learned rather than read as queueing forever
            low = min(self.latency_min * _MIN_DRIFT, fastest)
            self.latency_min = low
            self.queueing = fastest > 1.5 * low and fastest - low > 0.005
            self.round_min = _INF
            self.round_count = 0
        return self.queueing

    def on_success(
        self,
        now: float,
        settings: RequestResourceSettings,
        limit_bound: bool = True,
        latency: float = 0.0,
    ) -> None:
        """Count one success outside cooldown towards the next increase.

        ``limit_bound`` says whether calls are filling the limit; slow start grows only then
        (an idle limit proves nothing about the endpoint). ``latency`` is the call's, in
        seconds: while calls queue (see :meth:`observe_latency`) the limit does not grow, and
        slow start ends.
        """
        # observe_latency, inlined for the common case (mid-round): this runs per success
        round_count = self.round_count + 1
        if round_count < _ROUND and 0.0 <= latency < self.round_min:
            self.round_min = latency
            self.round_count = round_count
            queueing = self.queueing
        elif round_count < _ROUND and latency >= self.round_min:
            self.round_count = round_count
            queueing = self.queueing
        else:
            queueing = self.observe_latency(latency)
        if queueing:
            if self.slow_start:
                # The calls completing now were admitted about a round trip ago, at half the
                # limit: that level already queued, so go back to it.
                self.slow_start = False
                self.limit = max(1, self.limit // 2)
                self.changed_at = now
            return
        if now < self.cooldown_until:
            return  # no growth during cooldown
        limit = self.limit
        emax = self.effective_max
        if limit >= emax:
            self.successes = 0
            self.slow_start = False
            return
        if self.slow_start:
            if limit_bound:
                self.raise_to(limit + 1)
                if limit + 1 >= emax:
                    self.slow_start = False
            return
        self.successes += 1
        needed = settings.successes_until_increase
        ceiling = self.ceiling
        hold = settings.ceiling_hold_rounds
        cautious = ceiling is not None and hold > 0 and limit >= ceiling - 1
        if cautious:
            # Just below the ceiling that produced the last 429: hold about `hold` round trips
            # (and at least ceiling_hold_seconds) per step so the limit sits near the true
            # capacity instead of sawing under it. A huge hold means "stay": the product may
            # overflow to inf, so cap it.
            rounds = hold * limit
            needed = max(needed, math.ceil(rounds) if rounds < _HOLD_FOREVER else _HOLD_FOREVER)
            if now - self.changed_at < settings.ceiling_hold_seconds:
                return
        if self.successes < needed:
            return
        self.successes = 0
        self.changed_at = now
        if ceiling is None or hold <= 0:
            new = min(emax, limit + settings.increase_step)
        elif not cautious:
            new = min(emax, limit + settings.increase_step, ceiling - 1)
        else:
            new = min(emax, limit + 1)
            if new > ceiling:
                # Held above the old ceiling for a full period: it is stale. A higher peak
                # seen before (the level before a dip) becomes the one to approach carefully.
                peak = self.peak_ceiling
                self.ceiling = peak if peak is not None and peak > new else None
                if self.ceiling is None:
                    self.peak_ceiling = None
        self.raise_to(new)
