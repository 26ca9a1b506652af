"""How the scheduler retries a task: attempts and backoff (``RetryPolicy``)."""

from __future__ import annotations

import math

import msgspec

from ..errors import ConfigurationError, RetryableTaskError


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Bounded attempts with exponential backoff (deterministic; no jitter).

    The delay before attempt ``n + 1`` is ``initial_backoff * multiplier ** (n - 1)``,
    capped at ``max_backoff``; a :class:`RetryableTaskError` with ``retry_after`` overrides it.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ConfigurationError(
                "RetryPolicy.max_attempts", f"got {self.max_attempts!r}", "use an integer >= 1"
            )
        for name in ("initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(
                    f"RetryPolicy.{name}", f"got {value!r}", "use a number >= 0"
                )
        m = self.multiplier
        if not (isinstance(m, (int, float)) and math.isfinite(m) and m >= 1):
            raise ConfigurationError(
                "RetryPolicy.multiplier", f"got {m!r}", "use a finite number >= 1"
            )

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based)."""
        try:
            delay = self.initial_backoff * self.multiplier ** (attempt - 1)
        except OverflowError:  # beyond the float range: far past any cap
            return self.max_backoff
        return min(self.max_backoff, delay)


def default_is_retryable(error: BaseException) -> bool:
    """The scheduler's default retry classifier.

    A :class:`RetryableTaskError`, or a group made only of them (a worker that ran calls
    in its own nursery and every one of them failed in a retryable way).
    """
    if isinstance(error, RetryableTaskError):
        return True
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(RetryableTaskError)
        return rest is None
    return False


def retry_hint(error: BaseException) -> object:
    """The error's ``retry_after``; for a group, the latest hint among its members."""
    if isinstance(error, BaseExceptionGroup):
        hints = [retry_hint(e) for e in error.exceptions]
        usable = [h for h in hints if isinstance(h, (int, float)) and math.isfinite(h)]
        return max(usable) if usable else None
    return getattr(error, "retry_after", None)
