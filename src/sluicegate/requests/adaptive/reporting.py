"""Request events of the adaptive controller, built only when a sink listens.

Every method here is called after the state change it describes is complete, and only when
``emitter.enabled`` (the caller checks, so a run without a sink builds nothing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .circuit import CLOSED, HALF_OPEN, OPEN

if TYPE_CHECKING:
    from ...events.emitter import EventEmitter
    from ...events.schema import RequestEventKind
    from ..admission import RequestAdmissionItem, RequestAdmissionLease, RequestReleaseOutcome
    from ..identity import RequestResourceKey
    from .state import ResourceState


def _finite(value: float) -> float | None:
    return None if value == math.inf else value


class ResourceEvents:
    """Builds the request events that concern one resource."""

    __slots__ = ("emitter",)

    def __init__(self, emitter: EventEmitter) -> None:
        self.emitter = emitter

    # Explicit parameters, no ``**fields`` relay: a relay builds two dictionaries per event.

    def emit(
        self,
        kind: RequestEventKind,
        r: ResourceState,
        *,
        request_group: str | None = None,
        lease_id: int | None = None,
        request_id: int | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
        previous_limit: int | None = None,
        retry_after: float | None = None,
        diagnostics: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        key = r.key
        self.emitter.request(
            kind,
            provider=key.provider,
            model_id=key.model_id,
            domain=key.domain,
            request_group=request_group,
            lease_id=lease_id,
            request_id=request_id,
            outcome=outcome,
            reason=reason,
            limit=limit,
            previous_limit=previous_limit,
            retry_after=retry_after,
            diagnostics=diagnostics,
            now=now,
        )

    def emit_for(
        self,
        kind: RequestEventKind,
        key: object,
        *,
        request_group: str | None = None,
        lease_id: int | None = None,
        request_id: int | None = None,
        reason: str | None = None,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        """An event about something that may not be a registered resource (or a key at all)."""
        self.emitter.request(
            kind,
            provider=getattr(key, "provider", None),
            model_id=getattr(key, "model_id", None),
            domain=getattr(key, "domain", None),
            request_group=request_group,
            lease_id=lease_id,
            request_id=request_id,
            reason=reason,
            diagnostics=diagnostics,
        )

    def registered(self, r: ResourceState) -> None:
        ep = r.endpoint
        diagnostics: dict[str, Any] = {
            "effective_max": r.aimd.effective_max,
            "static_cap": ep.static_cap,
            "aliases": list(ep.plan.aliases) if ep.plan else [],
        }
        window = r.window
        if window is not None:  # what a report names when the window set the pace
            diagnostics["rate_window"] = {
                "requests": window.requests_per_window,
                "tokens": window.tokens_per_window,
                "seconds": window.window_seconds,
            }
        self.emit("request_resource_registered", r, limit=r.aimd.limit, diagnostics=diagnostics)

    def reconfigured(
        self,
        circuits_closed: Iterable[ResourceState],
        before: Mapping[RequestResourceKey, tuple[int, int]],
        resources: Iterable[ResourceState],
    ) -> None:
        """What a reconfigure changed: closed circuits, effective maxima, limits."""
        for r in circuits_closed:
            self.circuit_closed(r)
        for r in resources:
            aimd = r.aimd
            old_max, old_limit = before.get(r.key, (aimd.effective_max, aimd.limit))
            if old_max != aimd.effective_max:
                self.emit(
                    "request_effective_cap_changed",
                    r,
                    limit=aimd.effective_max,
                    previous_limit=old_max,
                    reason="reconfigured",
                )
            if old_limit != aimd.limit:
                kind: RequestEventKind = (
                    "request_limit_increased"
                    if aimd.limit > old_limit
                    else "request_limit_decreased"
                )
                self.emit(
                    kind, r, limit=aimd.limit, previous_limit=old_limit, reason="reconfigured"
                )

    def drained(self, r: ResourceState) -> None:
        if r.queue_reported and not r.waiting:
            r.queue_reported = False
            self.emit("request_queue_drained", r)

    def wait_started(self, r: ResourceState, item: RequestAdmissionItem) -> None:
        if not r.queue_reported:
            # Not "r.waiting == 1": a waiter that left by cancellation is taken out of the
            # queue at once, but the queue is reported drained only when its task runs.
            r.queue_reported = True
            self.emit(
                "request_queue_formed",
                r,
                request_group=item.request_group,
                request_id=item.request_id,
            )
        self.emit(
            "request_wait_started",
            r,
            request_group=item.request_group,
            request_id=item.request_id,
            diagnostics={"waiters": r.waiting, "in_flight": r.in_flight, "limit": r.aimd.limit},
        )

    def acquired(
        self, r: ResourceState, lease: RequestAdmissionLease, now: float | None = None
    ) -> None:
        self.emit(
            "request_lease_acquired",
            r,
            request_group=lease.item.request_group,
            lease_id=lease.lease_id,
            request_id=lease.item.request_id,
            limit=lease.limit,
            diagnostics={"in_flight": r.in_flight, "probe": lease.probe} if lease.probe else None,
            now=now,
        )

    def refreshed(self, r: ResourceState, half_opened: bool, ramp_prev: int) -> None:
        """What :meth:`ResourceState.refresh` changed."""
        if half_opened:
            self.emit("request_effective_cap_changed", r, limit=1, reason="circuit_half_open")
            self.emit("request_circuit_half_open", r, limit=1)
        if ramp_prev:
            self.emit(
                "request_limit_increased",
                r,
                limit=r.aimd.limit,
                previous_limit=ramp_prev,
                reason="startup_ramp",
            )

    def circuit_closed(self, r: ResourceState) -> None:
        self.emit("request_effective_cap_changed", r, limit=r.aimd.limit, reason="circuit_closed")
        self.emit("request_circuit_closed", r, limit=r.aimd.limit)

    def released(
        self,
        r: ResourceState,
        lease: RequestAdmissionLease,
        outcome: RequestReleaseOutcome,
        prev_limit: int,
        prev_circuit: int,
        prev_ceiling: int | None,
        prev_slow_start: bool = False,
        *,
        reported: bool = False,
    ) -> None:
        """The release of ``lease`` and every AIMD / circuit change it caused.

        ``reported``: the caller's ``model_request_completed`` already said the lease went
        back (same instant, schema 2), so only what the release changed is emitted here.
        """
        group = lease.item.request_group
        request_id = lease.item.request_id
        limit = r.aimd.limit
        if not reported:
            self.emit(
                "request_lease_released",
                r,
                request_group=group,
                lease_id=lease.lease_id,
                request_id=request_id,
                outcome=outcome.kind,
                limit=limit,
            )
        if outcome.kind == "rate_limited":
            self.emit(
                "request_rate_limited",
                r,
                request_group=group,
                lease_id=lease.lease_id,
                request_id=request_id,
                retry_after=outcome.retry_after_seconds,
                limit=limit,
                diagnostics={
                    "consecutive_rate_limits": r.consecutive_rate_limits,
                    "cooldown_until": r.aimd.cooldown_until,
                },
            )
        if limit < prev_limit:
            self.emit(
                "request_limit_decreased",
                r,
                limit=limit,
                previous_limit=prev_limit,
                reason="rate_limited",
                diagnostics={"ceiling": r.aimd.ceiling},
            )
        elif limit > prev_limit:
            self._increased(r, limit, prev_limit, prev_ceiling, prev_slow_start)
        self._circuit_changed(r, prev_circuit)

    def _increased(
        self,
        r: ResourceState,
        limit: int,
        prev_limit: int,
        prev_ceiling: int | None,
        slow_start: bool,
    ) -> None:
        self.emit(
            "request_limit_increased",
            r,
            limit=limit,
            previous_limit=prev_limit,
            reason="slow_start" if slow_start else "additive_increase",
        )
        ceiling = prev_ceiling
        if ceiling is not None and prev_limit < ceiling - 1 <= limit:
            self.emit(
                "request_soft_ceiling_recovered", r, limit=limit, diagnostics={"ceiling": ceiling}
            )
        if limit >= r.aimd.effective_max:
            self.emit("request_fully_recovered", r, limit=limit)

    def _circuit_changed(self, r: ResourceState, prev_circuit: int) -> None:
        circuit = r.circuit
        if circuit.state == OPEN and prev_circuit != OPEN:
            self.emit(
                "request_effective_cap_changed",
                r,
                limit=0,
                reason="circuit_reopened" if prev_circuit == HALF_OPEN else "circuit_opened",
                diagnostics={"reopens_at": _finite(circuit.until), "reopens": circuit.reopens},
            )
            self.emit(
                "request_circuit_opened",
                r,
                limit=0,
                reason="unreachable" if circuit.unreachable else "rate_limited",
                diagnostics={
                    "reopens_at": _finite(circuit.until),
                    "reopens": circuit.reopens,
                    "cause": circuit.detail if circuit.unreachable else None,
                },
            )
        elif circuit.state == CLOSED and prev_circuit != CLOSED:
            self.circuit_closed(r)
