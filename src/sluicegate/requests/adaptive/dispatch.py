"""Grants, releases and the dispatch loop: how free capacity reaches waiters.

:class:`Dispatcher` is the part of the controller that moves leases: it grants (a lease and
every count that goes with it), takes a held lease back and applies its outcome, hands free
capacity to the fairest admissible waiters, denies waiters that can no longer be served, and
arms the timer when only time can help. It never waits and is never a checkpoint; the
controller's ``acquire`` is the only code that parks.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Final

import outcome as _outcome
import trio

from ..._internal.clock import now as _now
from ..admission import (
    OUTCOME_UNEXPECTED,
    RequestAdmissionDenied,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDenialReason,
    RequestReleaseOutcome,
)
from .circuit import HALF_OPEN
from .denials import unreachable_cause
from .outcomes import apply_outcome, forget_probe, on_success
from .timer import AdmissionTimer
from .waiters import GRANTED, WAITING, FairWaiterQueue, Lane, Waiter

if TYPE_CHECKING:
    from ...events.emitter import EventEmitter
    from ..provider import RateLimitHints
    from .lease_book import Held, LeaseBook
    from .registry import ResourceRegistry
    from .reporting import ResourceEvents
    from .state import EndpointState, ResourceState


_INF: Final = math.inf


class Dispatcher:
    """Moves leases between the lease book, the resources and the waiters."""

    __slots__ = ("_emitter", "_events", "_leases", "_registry", "timer")

    def __init__(
        self,
        registry: ResourceRegistry,
        leases: LeaseBook,
        emitter: EventEmitter,
        events: ResourceEvents,
    ) -> None:
        self._registry = registry
        self._leases = leases
        self._emitter = emitter
        self._events = events
        self.timer: AdmissionTimer[EndpointState] = AdmissionTimer(self._on_timer)

    def grant(
        self, r: ResourceState, item: RequestAdmissionItem, now: float, waited: float
    ) -> RequestAdmissionLease:
        """Issue a lease on ``r`` (the caller checked that ``item`` is admissible)."""
        window = r.window
        if window is None:
            tokens = item.estimated_tokens or 0
            entry = None
        else:
            tokens = r.tokens_for(item.estimated_tokens)
            entry = window.reserve(now, tokens)
        probe = r.circuit.state == HALF_OPEN
        lease = self._leases.issue(r, item, now, tokens, waited, entry, probe)
        if probe:
            r.circuit.probe_lease = lease.lease_id
        r.in_flight += 1
        r.grants += 1
        ep = r.endpoint
        ep.in_flight += 1
        if r.in_flight > r.max_in_flight:
            r.max_in_flight = r.in_flight
        if ep.in_flight > ep.max_in_flight:
            ep.max_in_flight = ep.in_flight
        return lease

    def release_held(
        self,
        lease: RequestAdmissionLease,
        outcome: RequestReleaseOutcome,
        held: Held,
        foldable: bool = True,
    ) -> Exception | None:
        """Free the slot, apply the outcome, hand the slot on. Returns the error of an outcome
        that could not be read (the slot is freed all the same, as ``unexpected_exception``).

        When the lease's item is one whose caller reports its leases (the executor's
        ``model_request_completed`` already said the lease went back, schema 2), no
        ``request_lease_released`` is emitted; ``foldable=False`` (a grant reclaimed before
        any call, reported as acquired) always emits it."""
        r = held[1]
        ep = r.endpoint
        r.in_flight -= 1
        ep.in_flight -= 1
        r.released += 1
        now = _now()
        if r.ramp.active and getattr(outcome, "kind", None) == "rate_limited":
            self.refresh(r, now)  # the cut applies to the ramp's current step
        emit = self._emitter.enabled
        if emit:  # what the events compare against (not needed without a sink)
            aimd = r.aimd
            before = (aimd.limit, r.circuit.state, aimd.ceiling, aimd.slow_start)
            reported = foldable and id(lease.item) in self._emitter.lease_events_folded
        error: Exception | None = None
        try:  # costs nothing unless it raises
            entry = held[2]
            if entry is not None:
                tokens = outcome.actual_tokens
                if tokens is None and outcome.kind == "rate_limited":
                    # A rejected call used no tokens; it still counts as a request (providers
                    # count rejected requests against their per-minute limit).
                    tokens = 0
                entry.window.settle(entry, tokens)
                if outcome.kind == "success":
                    r.learn_tokens(tokens)
            if outcome.kind == "success":
                on_success(r, lease, now)  # the common case, without the dispatch on kind
            elif apply_outcome(r, lease, outcome, now):
                self.deny_waiters_past(r, r.circuit.until)
            quota = outcome.quota
            if quota is not None:
                self._adopt_quota(r, quota)
        except Exception as exc:
            # An outcome that cannot be read (a wrong type, a non-numeric field) must not keep
            # the slot from the next waiter: the call counts as unexpected_exception, AIMD
            # learns nothing from it, and a probe gives no verdict.
            error = exc
            outcome = OUTCOME_UNEXPECTED
            forget_probe(r, lease)
        if ep.waiters.waiting:
            self.dispatch(ep, now)
        if emit and not (  # reported by the caller, and nothing else changed: no event
            reported
            and outcome.kind == "success"
            and r.aimd.limit == before[0]
            and r.circuit.state == before[1]
        ):
            self._events.released(r, lease, outcome, *before, reported=reported)
        return error

    def _adopt_quota(self, r: ResourceState, quota: RateLimitHints) -> None:
        if r.adopt_quota(quota.limit_requests, quota.limit_tokens) and self._emitter.enabled:
            window = r.window
            assert window is not None
            self._events.emit(
                "request_quota_learned",
                r,
                diagnostics={
                    "requests_per_window": window.requests_per_window,
                    "tokens_per_window": window.tokens_per_window,
                    "window_seconds": window.window_seconds,
                },
            )

    def dispatch(self, ep: EndpointState, now: float) -> None:
        """Hand free capacity to waiters, fairest first, until nobody admissible is left.

        Each grant goes straight to the chosen waiter (no herd). Lazily due changes of the
        endpoint's resources are made first, so the check below is a pure query.
        """
        if ep.timed:
            for r in ep.resources:
                if r.timed:
                    self.refresh(r, now)
        waiters = ep.waiters
        while waiters.waiting and ep.in_flight < ep.static_cap:
            lane = waiters.pick(now)
            if lane is None:
                break
            self._grant_head(waiters, lane, now)
        if waiters.waiting and ep.timed:
            self._arm_for(ep, now)

    def dispatch_all(self, now: float) -> None:
        """Dispatch every endpoint with waiters (after a reconfigure)."""
        for ep in self._registry.endpoints.values():
            if ep.waiters.waiting:
                # outside trio nobody can be waiting, but a dispatch may not be possible
                with contextlib.suppress(RuntimeError):
                    self.dispatch(ep, now)

    def _grant_head(
        self, waiters: FairWaiterQueue[ResourceState], lane: Lane[ResourceState], now: float
    ) -> None:
        r = lane.resource
        waiter = waiters.pop_head(lane)
        lease = self.grant(r, waiter.item, now, now - waiter.enqueued_at)
        waiter.state = GRANTED
        waiter.result = lease
        if waiter.parked:
            trio.lowlevel.reschedule(waiter.task, _outcome.Value(lease))
        if not r.waiting and self._emitter.enabled:
            self._events.drained(r)

    def settle(self, r: ResourceState, now: float) -> None:
        """Before a newcomer is considered on ``r`` (whose endpoint is timed): make ``r``'s
        lazily due changes, and grant the waiters that time alone made admissible. The timer
        task may not have run yet at the instant a cooldown, ramp step, reopening or window
        slot came due; without this a newcomer could take the slot they are owed."""
        ep = r.endpoint
        if ep.waiters.waiting:
            self.dispatch(ep, now)
        elif r.timed:
            self.refresh(r, now)

    def refresh(self, r: ResourceState, now: float) -> None:
        """Make ``r``'s lazily due changes and report them."""
        half_opened, ramp_prev = r.refresh(now)
        if (half_opened or ramp_prev) and self._emitter.enabled:
            self._events.refreshed(r, half_opened, ramp_prev)

    def reject(
        self,
        waiter: Waiter[ResourceState],
        reason: RequestDenialReason,
        *,
        blocked_by: str | None = None,
        available_after: float | None = None,
        cause: str | None = None,
    ) -> None:
        """Hand ``waiter`` a denial instead of a lease (if it is still waiting)."""
        if waiter.state != WAITING:
            return
        r = waiter.lane.resource
        r.endpoint.waiters.remove(waiter)
        r.denials += 1
        denied = RequestAdmissionDenied(
            item=waiter.item,
            reason=reason,
            available_after=available_after,
            blocked_by=blocked_by,
            cause=cause,
        )
        waiter.result = denied
        if waiter.parked:
            trio.lowlevel.reschedule(waiter.task, _outcome.Value(denied))
        if self._emitter.enabled:
            self._events.drained(r)

    def deny_waiters_past(self, r: ResourceState, until: float) -> None:
        """Waiters whose deadline comes before the circuit can close learn it now; with the
        endpoint unreachable, every waiter does (waiting would only delay the error)."""
        cause = unreachable_cause(r) if r.circuit.unreachable else None
        for lane in list(r.lanes.values()):
            for waiter in lane.waiting():
                if cause is not None or until == _INF or waiter.deadline < until:
                    self.reject(
                        waiter,
                        "circuit_open",
                        blocked_by="circuit_open",
                        available_after=None if until == _INF else until,
                        cause=cause,
                    )

    def _arm_for(self, ep: EndpointState, now: float) -> None:
        """If time alone can unblock a waiting lane of ``ep``, make the timer fire then."""
        at = _INF
        for lane in ep.waiters.lanes:
            r = lane.resource
            if r.timed:
                at = min(at, r.next_change_at(lane.head().item.estimated_tokens, now))
        if at < _INF:
            self.timer.arm(ep, at, now)

    def _on_timer(self, due: list[EndpointState], now: float) -> None:
        for ep in due:
            self.dispatch(ep, now)  # re-arms if still time-blocked
