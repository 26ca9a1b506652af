"""Frozen pressure snapshots of the controller's state (read-only, built on demand)."""

from __future__ import annotations

from ..pressure import RequestEndpointPressure, RequestResourcePressure
from .circuit import CIRCUIT_NAMES
from .state import EndpointState, ResourceState


def resource_pressure(r: ResourceState, now: float) -> RequestResourcePressure:
    """``r`` as it is at ``now`` (lazily due ramp steps and half-open circuits included)."""
    limit = r.limit_at(now)
    aimd = r.aimd
    circuit = r.circuit
    window = r.window
    ramp = r.ramp
    return RequestResourcePressure(
        resource=r.key,
        captured_at=now,
        limit=limit,
        effective_max=aimd.effective_max,
        static_cap=r.endpoint.static_cap,
        clamp=r.settings.clamp,
        in_flight=r.in_flight,
        endpoint_in_flight=r.endpoint.in_flight,
        waiters=r.waiting,
        cooldown_remaining=aimd.cooldown_remaining(now),
        last_rate_limit_ceiling=aimd.ceiling,
        consecutive_rate_limits=r.consecutive_rate_limits,
        ramping=ramp.active and limit < ramp.target,
        circuit=CIRCUIT_NAMES[circuit.state_at(now)],
        circuit_reopens_in=circuit.reopens_in(now),
        window_requests=None if window is None else window.requests_in_window(now),
        window_tokens=None if window is None else window.tokens_in_window(now),
        grants=r.grants,
        successes=r.successes_total,
        rate_limits=r.rate_limits,
        coalesced_rate_limits=r.coalesced,
        failures=r.failures,
        released=r.released,
        wait_timeouts=r.wait_timeouts,
        wait_cancellations=r.wait_cancellations,
        denials=r.denials,
        duplicate_releases=r.duplicate_releases,
        unknown_releases=r.unknown_releases,
        cancelled_grants=r.cancelled_grants,
        max_in_flight=r.max_in_flight,
        max_waiters=r.max_waiters,
        max_limit=max(aimd.max_limit, limit),
        slow_start=aimd.slow_start,
        connection_failures=r.connection_failures,
    )


def endpoint_pressure(ep: EndpointState) -> RequestEndpointPressure:
    """``ep`` as it is now."""
    plan = ep.plan
    return RequestEndpointPressure(
        key=ep.key,
        static_cap=ep.static_cap,
        aliases=plan.aliases if plan is not None else (),
        raw_caps=tuple(c.raw_cap for c in plan.contributions) if plan is not None else (),
        in_flight=ep.in_flight,
        waiters=ep.waiters.waiting,
        max_in_flight=ep.max_in_flight,
        resources=tuple(r.key for r in ep.resources),
    )
