"""Sliding rate windows for published request/token quotas (RPM / TPM).

A :class:`RateWindow` counts the requests and tokens admitted during the last
``window_seconds``. Entries live in a deque in admission order, so pruning pops from the left
and every entry is pushed and popped once: amortised O(1) per admission. Token counts are
reserved from the caller's estimate at admission and corrected to the actual usage on release.
The window never sleeps itself: it says when the next unit frees up (:meth:`available_at`) and
the admission controller does the timed wait.
"""

from __future__ import annotations

import math
from collections import deque

from attrs import define, field

from ..errors import ConfigurationError


@define(slots=True, eq=False)
class RateWindowReservation:
    """One admitted request's entry in a window; handed back to :meth:`RateWindow.settle`.

    ``live`` turns false once the entry has slid out of the window, after which corrections no
    longer change the window's totals (the tokens already stopped counting).
    """

    window: RateWindow
    at: float
    tokens: int
    live: bool = True


@define(slots=True, eq=False)
class RateWindow:
    """Requests and/or tokens allowed per sliding window of ``window_seconds``.

    Not a trio primitive: it holds no waiters and never blocks. All methods are synchronous
    and take the current time explicitly, so the caller decides which clock drives it.
    """

    requests_per_window: int | None = None
    tokens_per_window: int | None = None
    window_seconds: float = 60.0
    _entries: deque[RateWindowReservation] = field(factory=deque, init=False)
    _requests: int = field(default=0, init=False)
    _tokens: int = field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._check(self.requests_per_window, self.tokens_per_window, self.window_seconds)

    @staticmethod
    def _check(requests: int | None, tokens: int | None, seconds: float) -> None:
        if requests is None and tokens is None:
            raise ConfigurationError(
                "RateWindow",
                "a rate window needs a rate",
                "set requests_per_window and/or tokens_per_window",
            )
        for name, value in (("requests_per_window", requests), ("tokens_per_window", tokens)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigurationError(
                    f"RateWindow.{name}",
                    f"must be an integer >= 1, got {value!r}",
                    "use a positive quota or omit it",
                )
        if (
            not isinstance(seconds, (int, float))
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ConfigurationError(
                "RateWindow.window_seconds",
                f"must be a finite number > 0, got {seconds!r}",
                "use the quota's window length in seconds, e.g. 60 for per-minute quotas",
            )

    def reconfigure(
        self,
        *,
        requests_per_window: int | None,
        tokens_per_window: int | None,
        window_seconds: float,
    ) -> None:
        """Change the quota in place; admitted entries keep counting."""
        self._check(requests_per_window, tokens_per_window, window_seconds)
        self.requests_per_window = requests_per_window
        self.tokens_per_window = tokens_per_window
        self.window_seconds = window_seconds

    def prune(self, now: float) -> None:
        """Drop entries that slid out of the window ending at ``now``."""
        entries = self._entries
        seconds = self.window_seconds
        # Same expression as available_at (at + seconds), so the instant it reports is exactly
        # the instant the entry leaves: float rounding must not disagree by one ulp.
        while entries and entries[0].at + seconds <= now:
            entry = entries.popleft()
            entry.live = False
            self._requests -= 1
            self._tokens -= entry.tokens

    def requests_in_window(self, now: float) -> int:
        """Requests admitted during the window ending at ``now``."""
        self.prune(now)
        return self._requests

    def tokens_in_window(self, now: float) -> int:
        """Tokens (reserved or settled) counted in the window ending at ``now``."""
        self.prune(now)
        return self._tokens

    def fits(self, tokens: int) -> bool:
        """Whether a request of ``tokens`` could ever be admitted (a single one exceeding the
        whole token quota never can)."""
        return self.tokens_per_window is None or tokens <= self.tokens_per_window

    def blocked_by(self, now: float, tokens: int = 0) -> str | None:
        """``None`` if one more request of ``tokens`` fits now, else which quota is spent
        (``"rate_window_requests"`` or ``"rate_window_tokens"``)."""
        self.prune(now)
        if self.requests_per_window is not None and self._requests >= self.requests_per_window:
            return "rate_window_requests"
        if self.tokens_per_window is not None and self._tokens + tokens > self.tokens_per_window:
            return "rate_window_tokens"
        return None

    def available_at(self, now: float, tokens: int = 0) -> float:
        """The earliest time at which one more request of ``tokens`` fits.

        ``now`` if it fits already; ``math.inf`` if it can never fit. Assumes no further
        admissions happen in between (admissions only push the time later).
        """
        self.prune(now)
        at = now
        entries = self._entries
        limit = self.requests_per_window
        if limit is not None and self._requests >= limit:
            # The (requests - limit + 1)-th oldest entry has to leave the window.
            at = max(at, entries[self._requests - limit].at + self.window_seconds)
        token_limit = self.tokens_per_window
        if token_limit is not None:
            if tokens > token_limit:
                return math.inf
            excess = self._tokens + tokens - token_limit
            if excess > 0:
                freed = 0
                for entry in entries:
                    freed += entry.tokens
                    if freed >= excess:
                        at = max(at, entry.at + self.window_seconds)
                        break
                else:  # only reachable if settled counts went negative; be safe
                    return math.inf
        return at

    def reserve(self, now: float, tokens: int = 0) -> RateWindowReservation:
        """Count one admitted request and its estimated ``tokens``; returns its entry.

        Does not check the quota: call :meth:`blocked_by` first (admission decides).
        """
        entry = RateWindowReservation(self, now, tokens)
        self._entries.append(entry)
        self._requests += 1
        self._tokens += tokens
        return entry

    def settle(self, entry: RateWindowReservation, actual_tokens: int | None) -> None:
        """Correct an entry's reserved tokens to the ``actual_tokens`` the call used.

        ``None`` keeps the estimate, and so does a value that is not a finite count >= 0 (a
        NaN or infinite total would stop the quota from binding, or never leave the window).
        Entries that already left the window change nothing.
        """
        if actual_tokens is None or not 0 <= actual_tokens < math.inf:
            return
        if entry.live:
            self._tokens += actual_tokens - entry.tokens
        entry.tokens = actual_tokens
