"""The linear startup ramp of one request resource. Pure, clock passed in.

With ``startup_ramp_seconds > 0`` the limit starts at 1 and is
``1 + floor((target - 1) * elapsed / startup_ramp_seconds)`` until the ramp ends; each step
is a timed wake-up (the controller asks :meth:`LinearRamp.next_step_at`). A rate limit or a
lowered maximum ends it early.
"""

from __future__ import annotations


class LinearRamp:
    """From 1 to ``target`` over ``seconds``, starting at ``start``."""

    __slots__ = ("active", "seconds", "start", "target")

    def __init__(self, start: float, target: int, seconds: float) -> None:
        self.start = start
        self.target = target
        self.seconds = seconds
        self.active = seconds > 0 and target > 1

    def limit_at(self, now: float) -> int:
        """The ramp's limit at ``now`` (``target`` once the ramp's time is up)."""
        elapsed = now - self.start
        if elapsed >= self.seconds:
            return self.target
        # tiny epsilon: the timer fires at the computed step instant, float rounding must not
        # leave the limit one below and re-arm the timer at the same time
        return 1 + int((self.target - 1) * elapsed / self.seconds + 1e-9)

    def done_at(self, now: float) -> bool:
        """Whether the ramp's time is up at ``now``."""
        return now - self.start >= self.seconds

    def next_step_at(self, limit: int, now: float) -> float:
        """When the ramp's limit next passes ``limit`` (strictly after ``now``)."""
        at = self.start + self.seconds * limit / (self.target - 1)
        return at if at > now else now + 1e-6
