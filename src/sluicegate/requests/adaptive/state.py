"""Per-endpoint and per-resource admission state, and the admission check itself.

An :class:`EndpointState` is one concrete endpoint (provider/model): its aggregate static cap,
its aggregate in-flight count and the waiter queue shared by all its resources. A
:class:`ResourceState` is one endpoint + request domain: its AIMD limit, circuit breaker,
startup ramp, optional rate window, cooldown mode, in-flight count and counters.

Queries never change state: :meth:`ResourceState.blocked_by` and
:meth:`ResourceState.next_change_at` read the lazily updated parts (the ramp's current step, an
open circuit whose time is up) as they are at ``now``. :meth:`ResourceState.refresh` is the
update that makes those lazy changes real (the controller calls it before it grants, and
emits what it reports). Everything takes ``now``: nothing here reads a clock.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from ..rate_window import RateWindow
from .aimd import AimdLimit
from .circuit import CLOSED, OPEN, CircuitBreaker
from .ramp import LinearRamp
from .waiters import FairWaiterQueue, Lane

if TYPE_CHECKING:
    from ..config import RequestResourceSettings
    from ..identity import ProviderCapPlan, ProviderModelKey, RequestResourceKey


_INF: Final = math.inf


# x-ratelimit-limit-* headers state per-minute quotas (OpenAI, Azure, vLLM gateways).
_QUOTA_WINDOW_SECONDS: Final = 60.0


def _count_or_none(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


class EndpointState:
    """One concrete endpoint: aggregate cap, aggregate in flight, the shared waiter queue."""

    __slots__ = (
        "in_flight",
        "key",
        "max_in_flight",
        "plan",
        "removed",
        "resources",
        "static_cap",
        "static_cap_override",
        "timed",
        "waiters",
    )

    def __init__(self, key: ProviderModelKey, plan: ProviderCapPlan | None, static_cap: int):
        self.key = key
        self.plan = plan
        self.static_cap = static_cap
        self.static_cap_override: int | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.waiters: FairWaiterQueue[ResourceState] = FairWaiterQueue()
        self.resources: list[ResourceState] = []
        self.removed = False
        self.timed = False  # whether any resource may be unblocked by time alone

    def update_timed(self) -> None:
        self.timed = any(r.timed for r in self.resources)


class ResourceState:
    """One request resource (endpoint + domain) and its admission state."""

    __slots__ = (
        "aimd",
        "cancelled_grants",
        "circuit",
        "coalesced",
        "connection_failures",
        "consecutive_rate_limits",
        "denials",
        "duplicate_releases",
        "endpoint",
        "failures",
        "grants",
        "hard_limits",
        "in_flight",
        "key",
        "lanes",
        "learned_quota",
        "max_in_flight",
        "max_waiters",
        "mean_tokens",
        "pause_in_cooldown",
        "queue_reported",
        "ramp",
        "rate_limits",
        "released",
        "settings",
        "successes_total",
        "timed",
        "unknown_releases",
        "wait_cancellations",
        "wait_timeouts",
        "waiting",
        "window",
    )

    def __init__(
        self,
        key: RequestResourceKey,
        endpoint: EndpointState,
        settings: RequestResourceSettings,
        now: float,
    ) -> None:
        self.key = key
        self.endpoint = endpoint
        self.settings = settings
        self.in_flight = 0
        self.waiting = 0
        self.lanes: dict[str, Lane[Any]] = {}
        self.aimd = AimdLimit(1, endpoint.static_cap)
        self.circuit = CircuitBreaker(settings.circuit_open_seconds)
        self.ramp = LinearRamp(now, 1, 0.0)
        self.window: RateWindow | None = None
        self.learned_quota = False  # the window came from the provider's x-ratelimit-* hints
        # What a request of unknown size reserves in a token window: the running mean of
        # settled actual usage (0 until a call has settled).
        self.mean_tokens = 0
        self.consecutive_rate_limits = 0
        self.pause_in_cooldown = False
        self.timed = False
        # whether a request may be refused before it queues (see Denials.before_queueing)
        self.hard_limits = False
        # request_queue_formed was emitted and request_queue_drained not yet (events only)
        self.queue_reported = False
        # counters
        self.grants = self.successes_total = self.rate_limits = self.coalesced = 0
        self.failures = self.released = self.wait_timeouts = self.wait_cancellations = 0
        self.denials = self.duplicate_releases = self.unknown_releases = 0
        self.cancelled_grants = self.connection_failures = 0
        self.max_in_flight = self.max_waiters = 0

    # ------------------------------------------------------------------------- settings

    def apply_settings(self, settings: RequestResourceSettings, *, fresh: bool) -> None:
        """Adopt (new) settings: effective max, cooldown mode, rate window; a fresh resource
        also gets its starting limit and ramp."""
        self.settings = settings
        self.pause_in_cooldown = settings.cooldown_admission == "paused"
        static_cap = self.endpoint.static_cap
        clamp = settings.clamp
        emax = static_cap if clamp is None else min(static_cap, clamp)
        aimd = self.aimd
        if fresh:
            initial = settings.initial_limit
            target = emax if initial is None else min(initial, emax)
            self.ramp = LinearRamp(self.ramp.start, target, settings.startup_ramp_seconds)
            aimd.effective_max = emax
            if self.ramp.active:
                aimd.limit = 1
            elif initial is None and settings.slow_start:
                aimd.limit = min(settings.slow_start_initial_limit, emax)
                aimd.slow_start = aimd.limit < emax
            else:
                aimd.limit = target
            aimd.max_limit = aimd.limit
        else:
            aimd.set_effective_max(emax)
            if not settings.slow_start:
                aimd.slow_start = False
            ramp = self.ramp
            if ramp.active:
                ramp.seconds = settings.startup_ramp_seconds  # an active ramp follows it
                ramp.target = min(ramp.target, emax)
                if aimd.limit >= ramp.target:
                    ramp.active = False  # a lower effective max ended the ramp
        if settings.has_rate_window:
            seconds = settings.effective_window_seconds
            if self.window is None:
                self.window = RateWindow(
                    settings.requests_per_window, settings.tokens_per_window, seconds
                )
            else:
                self.window.reconfigure(
                    requests_per_window=settings.requests_per_window,
                    tokens_per_window=settings.tokens_per_window,
                    window_seconds=seconds,
                )
        elif not self.learned_quota:  # a quota the provider stated stays until replaced
            self.window = None
        self.update_timed()

    def adopt_quota(self, requests: object, tokens: object) -> bool:
        """Use the quota the provider stated (requests / tokens per minute) as this
        resource's rate window, unless one is configured (explicit wins). ``True`` if the
        window changed; values that are not counts >= 1 are ignored."""
        if self.settings.has_rate_window:
            return False
        rpm = _count_or_none(requests)
        tpm = _count_or_none(tokens)
        if rpm is None and tpm is None:
            return False
        window = self.window
        if window is None:
            self.window = RateWindow(rpm, tpm, _QUOTA_WINDOW_SECONDS)
        elif (window.requests_per_window, window.tokens_per_window) == (rpm, tpm):
            return False
        else:
            window.reconfigure(
                requests_per_window=rpm,
                tokens_per_window=tpm,
                window_seconds=_QUOTA_WINDOW_SECONDS,
            )
        self.learned_quota = True
        self.update_timed()
        return True

    def update_timed(self) -> None:
        """Recompute whether time alone may unblock this resource (and its endpoint), and
        whether a request may be refused before it queues."""
        self.hard_limits = (
            self.circuit.state != CLOSED
            or self.window is not None
            or self.settings.max_waiters is not None
        )
        self.timed = (
            self.ramp.active
            or not self.circuit.closed
            or self.window is not None
            or self.pause_in_cooldown
        )
        ep = self.endpoint
        ep.timed = self.timed or any(other.timed for other in ep.resources)

    def mark_timed(self) -> None:
        self.timed = self.hard_limits = True
        self.endpoint.timed = True

    # ------------------------------------------------------------------------- queries

    def tokens_for(self, estimated: int | None) -> int:
        """Tokens a request reserves: its estimate, or (unknown) the running mean of actual
        usage, never more than the whole token quota."""
        if estimated is not None:
            return estimated
        window = self.window
        mean = self.mean_tokens
        if window is not None and window.tokens_per_window is not None:
            return min(mean, window.tokens_per_window)
        return mean

    def learn_tokens(self, actual: int | None) -> None:
        """Fold one call's actual usage into the mean an unknown estimate reserves."""
        if actual is not None and 0 <= actual < 2**53:
            mean = self.mean_tokens
            self.mean_tokens = actual if mean == 0 else round(mean + (actual - mean) / 8)

    def limit_at(self, now: float) -> int:
        """The limit in force at ``now`` (a ramp step already due counts)."""
        limit = self.aimd.limit
        ramp = self.ramp
        if ramp.active:
            limit = max(limit, min(ramp.limit_at(now), self.aimd.effective_max))
        return limit

    def blocked_by(self, estimated: int | None, now: float) -> str | None:
        """``None`` if a request estimated at ``estimated`` tokens (``None``: unknown) may
        take a lease now, else the binding constraint. A query: lazily due changes are read
        as of ``now``, not made."""
        if not self.timed:  # no circuit, ramp, window or paused cooldown: the common case
            if self.in_flight >= self.aimd.limit:
                return "limit"
            ep = self.endpoint
            return "aggregate_cap" if ep.in_flight >= ep.static_cap else None
        circuit = self.circuit
        if circuit.state != CLOSED:
            blocked = circuit.blocked_by(now)
            if blocked is not None:
                return blocked
        limit = self.aimd.limit if not self.ramp.active else self.limit_at(now)
        if self.in_flight >= limit:
            return "limit"
        ep = self.endpoint
        if ep.in_flight >= ep.static_cap:
            return "aggregate_cap"
        if self.pause_in_cooldown and now < self.aimd.cooldown_until:
            return "cooldown"
        window = self.window
        if window is not None:
            return window.blocked_by(now, self.tokens_for(estimated))
        return None

    def binding_constraint(self, estimated: int | None, now: float) -> str | None:
        """What keeps a request of ``tokens`` waiting: a constraint of this resource, else the
        waiters queued ahead (FIFO within a group, e.g. behind a head whose token estimate
        does not fit yet)."""
        blocked = self.blocked_by(estimated, now)
        if blocked is None and self.waiting:
            return "waiters"
        return blocked

    def next_change_at(self, estimated: int | None, now: float) -> float:
        """The first instant strictly after ``now`` at which time alone may admit a request
        of ``tokens`` (``inf`` if only a release can)."""
        if not self.timed:
            return _INF
        at = _INF
        circuit = self.circuit
        if circuit.state == OPEN and circuit.until > now:
            at = circuit.until
        ramp = self.ramp
        if ramp.active and not ramp.done_at(now):
            limit = self.limit_at(now)
            if self.in_flight >= limit:
                at = min(at, ramp.next_step_at(limit, now))
        if self.pause_in_cooldown and now < self.aimd.cooldown_until:
            at = min(at, self.aimd.cooldown_until)
        window = self.window
        if window is not None:
            tokens = self.tokens_for(estimated)
            if window.blocked_by(now, tokens):
                at = min(at, window.available_at(now, tokens))
        return at

    def available_after(self, estimated: int | None, now: float) -> float | None:
        """When time alone makes a request of ``tokens`` admissible, if it does; ``None`` if
        it needs a release (or is admissible now)."""
        at = self.next_change_at(estimated, now)
        return None if at == _INF else at

    # ------------------------------------------------------------------------- updates

    def refresh(self, now: float) -> tuple[bool, int]:
        """Make lazily due changes real: an open circuit whose time is up turns half-open, a
        due ramp step raises the limit (the ramp ends when its time is up).

        Returns ``(turned half-open, limit before a ramp step or 0)`` for the caller's events.
        """
        half_opened = False
        if self.circuit.half_open_due(now):
            self.circuit.to_half_open()
            half_opened = True
        ramp = self.ramp
        if not ramp.active:
            return half_opened, 0
        aimd = self.aimd
        new = min(ramp.limit_at(now), aimd.effective_max)
        if ramp.done_at(now):
            ramp.active = False
            self.update_timed()
        if new > aimd.limit:
            prev = aimd.limit
            aimd.raise_to(new)
            return half_opened, prev
        return half_opened, 0
