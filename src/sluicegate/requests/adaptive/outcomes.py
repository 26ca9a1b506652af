"""How one released call's outcome changes its resource: AIMD, cooldown, circuit, counters.

Only ``rate_limited`` drives the decrease and the cooldown; ``success`` feeds the increase
and closes an open circuit; ``connection_failed`` counts toward the circuit breaker (never
toward the limit: a dead endpoint says nothing about its capacity); a provider failure ends a
rate-limit streak; other outcomes only free the slot. Pure with respect to time (``now`` is
passed in) and free of events and waiters: :func:`apply_outcome` reports whether the circuit
opened, and the controller denies the waiters that can no longer be served in time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from .circuit import CLOSED

if TYPE_CHECKING:
    from ..admission import RequestAdmissionLease, RequestReleaseOutcome
    from .state import ResourceState


_INF: Final = math.inf


def apply_outcome(
    r: ResourceState, lease: RequestAdmissionLease, outcome: RequestReleaseOutcome, now: float
) -> bool:
    """Apply ``outcome`` of ``lease`` to ``r``; ``True`` if the circuit (re)opened.

    Raises if ``outcome`` cannot be read (a wrong type, a non-numeric field) before anything
    changed that the caller would have to undo, except the token settlement.
    """
    kind = outcome.kind
    if kind == "success":
        on_success(r, lease, now)
        return False
    if kind == "rate_limited":
        return _on_rate_limited(r, lease, outcome.retry_after_seconds, now)
    if kind == "connection_failed":
        return _on_connection_failed(r, lease, outcome.detail, now)
    circuit = r.circuit
    if kind == "provider_failure":
        # A non-429 answer ends a rate-limit streak (429 -> 500 -> 429: two streaks).
        r.failures += 1
        r.consecutive_rate_limits = 0
        circuit.floor_rate_limits = 0
        circuit.answered()
    elif kind == "provider_timeout":
        r.failures += 1
    if circuit.is_probe(lease.lease_id):
        circuit.probe_lease = 0  # no verdict: let another probe go
    return False


def forget_probe(r: ResourceState, lease: RequestAdmissionLease) -> None:
    """A probe whose outcome could not be read gives no verdict."""
    if r.circuit.is_probe(lease.lease_id):
        r.circuit.probe_lease = 0


def on_success(r: ResourceState, lease: RequestAdmissionLease, now: float) -> None:
    """A call succeeded: streaks end, an open circuit closes, the limit may grow."""
    r.successes_total += 1
    r.consecutive_rate_limits = 0
    circuit = r.circuit
    circuit.floor_rate_limits = 0
    circuit.connection_failures = 0
    if circuit.state != CLOSED:
        circuit.close(r.settings)
        r.update_timed()
    if r.ramp.active:
        return  # the ramp owns the limit
    aimd = r.aimd
    # Calls fill the limit: someone waits, or at least half the limit is in flight (this
    # call included). Slow start grows only then.
    limit_bound = r.waiting > 0 or 2 * (r.in_flight + 1) >= aimd.limit
    aimd.on_success(now, r.settings, limit_bound, now - lease.acquired_at)


def _on_connection_failed(
    r: ResourceState, lease: RequestAdmissionLease, detail: str | None, now: float
) -> bool:
    r.failures += 1
    r.connection_failures += 1
    settings = r.settings
    circuit = r.circuit
    if circuit.is_probe(lease.lease_id):
        circuit.count_connection_failure(None, detail)
        circuit.reopen(now, None, settings, unreachable=True)
        r.mark_timed()
        return True
    if not circuit.closed:
        circuit.count_connection_failure(None, detail)
        return False  # a straggler from before the circuit opened
    if circuit.count_connection_failure(settings.circuit_breaker_threshold, detail):
        circuit.open(now, None, settings, unreachable=True)
        r.mark_timed()
        return True
    return False


def _on_rate_limited(
    r: ResourceState, lease: RequestAdmissionLease, retry_after: float | None, now: float
) -> bool:
    # Read (and check) the hint before anything changes: a malformed one raises here.
    if retry_after is not None and not 0 < retry_after < _INF:
        retry_after = None
    r.rate_limits += 1
    r.consecutive_rate_limits += 1
    settings = r.settings
    aimd = r.aimd
    aimd.start_cooldown(now, retry_after if retry_after is not None else settings.cooldown_seconds)
    if r.pause_in_cooldown:
        r.mark_timed()
    circuit = r.circuit
    circuit.answered()
    if circuit.is_probe(lease.lease_id):
        # Only the current probe gives a verdict: a probe from before the circuit closed
        # (a success or reset_circuit) is an ordinary 429 of a closed circuit.
        circuit.reopen(now, retry_after, settings)
        r.mark_timed()
        return True
    if not circuit.closed:
        return False  # a straggler from before the circuit opened: the circuit already reacted
    if settings.coalesce_rate_limits and aimd.same_storm(lease.rate_limit_epoch):
        r.coalesced += 1  # admitted before the last decrease: same storm, no second cut
        return False
    ramp = r.ramp
    if ramp.active:
        aimd.raise_to(max(aimd.limit, min(ramp.limit_at(now), aimd.effective_max)))
        ramp.active = False  # a rate limit aborts the startup ramp
        r.update_timed()
    prev = aimd.decrease(settings.decrease_factor, now, lease.limit)
    threshold = settings.circuit_breaker_threshold
    if prev == 1 and threshold is not None and circuit.count_floor_rate_limit(threshold):
        circuit.open(now, retry_after, settings)
        r.mark_timed()
        return True
    return False
