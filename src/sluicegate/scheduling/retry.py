"""How the scheduler retries a task: attempts and backoff, and which errors are retryable."""

from __future__ import annotations

import math

import msgspec

from .._internal.checks import describe, is_number
from ..errors import ConfigurationError, RetryableTaskError


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Bounded attempts with exponential backoff (deterministic; no jitter).

    The delay before attempt ``n + 1`` is ``initial_backoff * multiplier ** (n - 1)``,
    capped at ``max_backoff``; a retryable error's ``retry_after`` overrides it.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ConfigurationError(
                "RetryPolicy.max_attempts",
                f"got {describe(attempts)}",
                "use an integer >= 1 (1 means no retry)",
            )
        for name in ("initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not (is_number(value) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(
                    f"RetryPolicy.{name}",
                    f"got {describe(value)}",
                    "use a finite number of seconds >= 0",
                )
        m = self.multiplier
        if not (is_number(m) and math.isfinite(m) and m >= 1):
            raise ConfigurationError(
                "RetryPolicy.multiplier", f"got {describe(m)}", "use a finite number >= 1"
            )

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based)."""
        try:
            delay = self.initial_backoff * self.multiplier ** (attempt - 1)
        except OverflowError:  # beyond the float range: far past any cap
            return self.max_backoff
        return min(self.max_backoff, delay)


def _retryable_leaf(error: BaseException) -> bool:
    # Duck-typed so that scheduling need not import the layers whose errors it retries:
    # ``sluicegate.requests.ModelRequestError`` (and anyone's error) says ``retryable = True``.
    return isinstance(error, RetryableTaskError) or getattr(error, "retryable", None) is True


def default_is_retryable(error: BaseException) -> bool:
    """The scheduler's default retry classifier.

    Retryable: a :class:`~sluicegate.RetryableTaskError`; any exception whose ``retryable``
    attribute is ``True`` (for example ``sluicegate.requests.ModelRequestError`` when its
    attempts at the request layer ran out on a retryable outcome); and an exception group
    made only of those (a worker that ran calls in its own nursery and every one of them
    failed in a retryable way). Pass ``is_retryable=`` to the scheduler to replace it, e.g.
    ``lambda e: default_is_retryable(e) or isinstance(e, TimeoutError)``.
    """
    if isinstance(error, BaseExceptionGroup):
        return all(_retryable_leaf(e) for e in _leaves(error))
    return _retryable_leaf(error)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e))
        else:
            out.append(e)
    return out


def retry_hint(error: BaseException) -> object:
    """The error's ``retry_after``; for a group, the latest hint among its members."""
    if isinstance(error, BaseExceptionGroup):
        hints = [retry_hint(e) for e in error.exceptions]
        usable = [h for h in hints if is_number(h) and math.isfinite(h)]  # type: ignore[arg-type]
        return max(usable) if usable else None  # type: ignore[type-var]
    return getattr(error, "retry_after", None)


def error_cause(error: BaseException) -> tuple[str, str]:
    """``(type name, message)`` of ``error``; for a group, of its only leaf when it has one,
    else ``ExceptionGroup`` and every leaf's ``Type: message`` (messages cut at 200 chars)."""
    if isinstance(error, BaseExceptionGroup):
        leaves = _leaves(error)
        if len(leaves) == 1:
            return error_cause(leaves[0])
        joined = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
        return type(error).__name__, joined[:200]
    return type(error).__name__, str(error)[:200]
