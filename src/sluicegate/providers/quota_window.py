"""A sliding-window quota (requests or tokens per minute) as a simulated endpoint keeps it.

Pure arithmetic with the clock passed in (``now``), so it is trivially testable in virtual
time. Entries are ``(admitted_at, amount)``; one leaves the window at exactly
``admitted_at + window_seconds`` (the same expression everywhere, so the instant a 429 names
and the instant the entry leaves agree to the last float bit).
"""

from __future__ import annotations

import math
from collections import deque

from attrs import define, field


@define(eq=False)
class QuotaWindow:
    """At most ``limit`` units admitted in any ``window_seconds`` (default 60 s)."""

    limit: int
    window_seconds: float = 60.0
    _entries: deque[tuple[float, int]] = field(init=False, factory=deque)
    _used: int = field(init=False, default=0)

    def used(self, now: float) -> int:
        """Units admitted in the window ending at ``now``."""
        self._prune(now)
        return self._used

    def reset_after(self, now: float) -> float:
        """Seconds until the oldest admission leaves the window (0 when it is empty)."""
        self._prune(now)
        if not self._entries:
            return 0.0
        return max(0.0, self._entries[0][0] + self.window_seconds - now)

    def wait_for(self, amount: int, now: float) -> float | None:
        """``None`` if ``amount`` fits now, else the seconds until it would fit.

        The caller must have checked ``amount <= limit`` (otherwise it never fits). A client
        that sleeps exactly the returned time finds the room freed.
        """
        self._prune(now)
        excess = self._used + amount - self.limit
        if excess <= 0:
            return None
        freed = 0
        frees_at = now
        for admitted_at, units in self._entries:
            freed += units
            frees_at = admitted_at + self.window_seconds
            if freed >= excess:
                break
        delay = frees_at - now
        if now + delay < frees_at:
            # float rounding: a client sleeping exactly `delay` must not come back one ulp
            # before the room frees (and be refused once more)
            delay = math.nextafter(delay, math.inf)
        return max(0.0, delay)

    def admit(self, amount: int, now: float) -> None:
        """Record an admission of ``amount`` units at ``now``."""
        self._entries.append((now, amount))
        self._used += amount

    def _prune(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0][0] + self.window_seconds <= now:
            self._used -= entries.popleft()[1]
