"""The adaptive limit of one request resource: AIMD arithmetic, pure, clock passed in.

:class:`AimdLimit` holds the limit in ``[1, effective_max]``, the success streak, the
cooldown, the last rate-limit ceiling and the rate-limit epoch. It never reads a clock, never
emits and never touches waiters: every method takes ``now`` (and the settings) and changes
only its own fields, so it is tested with plain numbers.

- Slow start (the default start): one more per success while calls fill the limit, so the
  limit doubles per round trip, until the first rate limit or ``effective_max``.
- Decrease (a rate limit that is not part of a storm already answered):
  ``limit = max(1, floor(limit * decrease_factor))``; the limit before the cut is remembered
  as the ceiling and a new epoch starts (leases carry the epoch they were admitted in).
- Cooldown: no additive increase while ``now < cooldown_until``.
- Increase: after ``successes_until_increase`` successes outside cooldown,
  ``limit = min(effective_max, limit + increase_step)``; near the last ceiling each step of
  one needs ``ceiling_hold_rounds * limit`` successes (the cautious zone).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..config import RequestResourceSettings


_INF: Final = math.inf


# More successes than any run will see: a cautious zone this long holds the limit for good.
_HOLD_FOREVER: Final = 2**62


class AimdLimit:
    """One resource's additive-increase / multiplicative-decrease limit."""

    __slots__ = (
        "ceiling",
        "cooldown_until",
        "effective_max",
        "epoch",
        "limit",
        "max_limit",
        "slow_start",
        "successes",
    )

    def __init__(self, limit: int, effective_max: int) -> None:
        self.limit = limit
        self.effective_max = effective_max
        self.max_limit = limit
        self.successes = 0  # streak towards the next additive increase
        self.cooldown_until = -_INF
        self.ceiling: int | None = None
        self.epoch = 0
        self.slow_start = False  # growing by one per success until a rate limit or the max

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

    def decrease(self, decrease_factor: float) -> int:
        """Cut the limit; returns the limit before the cut (now the ceiling)."""
        prev = self.limit
        self.slow_start = False
        # The epsilon keeps decimal factors exact: 90 * 0.7 is 62.99999999999999 in binary.
        self.limit = max(1, math.floor(prev * decrease_factor + 1e-9))
        self.ceiling = prev
        self.epoch += 1
        return prev

    def on_success(
        self, now: float, settings: RequestResourceSettings, limit_bound: bool = True
    ) -> None:
        """Count one success outside cooldown towards the next increase.

        ``limit_bound`` says whether calls are filling the limit; slow start grows only then
        (an idle limit proves nothing about the endpoint).
        """
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
            # per step so the limit sits near the true capacity instead of sawing under it.
            # A huge hold means "stay": the product may overflow to inf, so cap it.
            rounds = hold * limit
            needed = max(needed, math.ceil(rounds) if rounds < _HOLD_FOREVER else _HOLD_FOREVER)
        if self.successes < needed:
            return
        self.successes = 0
        if ceiling is None or hold <= 0:
            new = min(emax, limit + settings.increase_step)
        elif not cautious:
            new = min(emax, limit + settings.increase_step, ceiling - 1)
        else:
            new = min(emax, limit + 1)
            if new > ceiling:
                self.ceiling = None  # held above the old ceiling for a full period: it is stale
        self.raise_to(new)
