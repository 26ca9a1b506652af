"""Denials: why a request gets no lease, and releases that free nothing.

:class:`Denials` builds :class:`RequestAdmissionDenied` values (counting them and reporting
``request_acquire_denied``), decides the denials that waiting cannot fix before a request
queues, and diagnoses bad releases (duplicate, stale, foreign, unknown) into a
:class:`ReleaseResult`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from ..._internal.leases import ReleaseResult
from ..admission import RequestAdmissionDenied, RequestAdmissionItem, RequestDenialReason
from ..identity import RequestResourceKey
from .circuit import CLOSED, OPEN

if TYPE_CHECKING:
    from ...events.emitter import EventEmitter
    from ..pressure import RequestPressureSource
    from .lease_book import BadRelease
    from .registry import ResourceRegistry
    from .reporting import ResourceEvents
    from .state import ResourceState


_INF: Final = math.inf


def finite(value: float) -> float | None:
    """``None`` for an infinite instant (never), else the instant."""
    return None if value == _INF else value


def unreachable_cause(r: ResourceState) -> str:
    """The cause a circuit-open denial of an unreachable endpoint carries (URL and words)."""
    circuit = r.circuit
    detail = circuit.detail or "the endpoint could not be reached"
    return f"{detail} ({circuit.connection_failures} consecutive connection failures)"


class Denials:
    """Builds denials and release diagnostics, with their counters and events."""

    __slots__ = (
        "_emitter",
        "_events",
        "_generation",
        "_pressure",
        "_registry",
        "unknown_releases",
    )

    def __init__(
        self,
        registry: ResourceRegistry,
        emitter: EventEmitter,
        events: ResourceEvents,
        generation: int,
        pressure: RequestPressureSource,
    ) -> None:
        self._pressure = pressure  # a denial's snapshot is read from here, when asked
        self._registry = registry
        self._emitter = emitter
        self._events = events
        self._generation = generation
        self.unknown_releases = 0  # bad releases not attributable to a resource

    def deny(
        self,
        r: ResourceState,
        item: RequestAdmissionItem,
        reason: RequestDenialReason,
        *,
        blocked_by: str | None = None,
        queued: int = 0,
        available_after: float | None = None,
        count: bool = True,
    ) -> RequestAdmissionDenied:
        """A denial of ``item`` on ``r`` (counted and reported unless ``count`` is false)."""
        if count:
            r.denials += 1
        cause = None
        if reason == "circuit_open" and r.circuit.fails_fast:
            cause = unreachable_cause(r)
        denied = RequestAdmissionDenied(
            item=item,
            reason=reason,
            available_after=available_after,
            queued_waiters_ahead=queued,
            blocked_by=blocked_by,
            cause=cause,
            pressure_source=self._pressure,
        )
        if count and self._emitter.enabled:
            self._events.emit(
                "request_acquire_denied",
                r,
                request_group=item.request_group,
                request_id=item.request_id,
                reason=reason,
                diagnostics={"blocked_by": blocked_by, "queued_waiters_ahead": queued},
            )
        return denied

    def timeout(
        self, r: ResourceState, item: RequestAdmissionItem, now: float, *, count: bool
    ) -> RequestAdmissionDenied:
        """The queue wait ran out: names the binding constraint and when time may help."""
        estimated = item.estimated_tokens
        return self.deny(
            r,
            item,
            "timeout",
            blocked_by=r.binding_constraint(estimated, now),
            available_after=r.available_after(estimated, now),
            count=count,
        )

    def would_wait(
        self, r: ResourceState, item: RequestAdmissionItem, blocked: str, now: float
    ) -> RequestAdmissionDenied:
        """Why ``try_acquire`` gets nothing now although the item is admissible in principle."""
        if blocked == "circuit_open":
            return self.deny(
                r,
                item,
                "circuit_open",
                blocked_by=blocked,
                available_after=finite(r.circuit.until),
            )
        window = r.window
        if window is not None and not window.fits(r.tokens_for(item.estimated_tokens)):
            return self.deny(r, item, "too_large", blocked_by=blocked)
        return self.deny(
            r,
            item,
            "would_wait",
            blocked_by=blocked,
            available_after=r.available_after(item.estimated_tokens, now),
        )

    def before_queueing(
        self, r: ResourceState, item: RequestAdmissionItem, now: float, deadline: float
    ) -> RequestAdmissionDenied | None:
        """Denials that waiting cannot fix, decided before queueing."""
        circuit = r.circuit
        if (
            circuit.state != CLOSED
            and circuit.state_at(now) == OPEN
            and (circuit.unreachable or circuit.until == _INF or circuit.until > deadline)
        ):
            return self.deny(
                r,
                item,
                "circuit_open",
                blocked_by="circuit_open",
                available_after=finite(circuit.until),
            )
        window = r.window
        if window is not None and not window.fits(r.tokens_for(item.estimated_tokens)):
            return self.deny(r, item, "too_large", blocked_by="rate_window_tokens")
        max_waiters = r.settings.max_waiters
        if max_waiters is not None and r.waiting >= max_waiters:
            return self.deny(r, item, "queue_full", blocked_by="waiters", queued=r.waiting)
        return None

    def unregistered(self, item: RequestAdmissionItem, *, closed: bool) -> RequestAdmissionDenied:
        """A request for no declared resource (or any request after shutdown)."""
        reason: RequestDenialReason = "shutdown" if closed else "unknown_resource"
        if self._emitter.enabled:
            self._events.emit_for(
                "request_acquire_denied",
                item.resource,
                request_group=item.request_group,
                request_id=item.request_id,
                reason=reason,
            )
        return RequestAdmissionDenied(item=item, reason=reason)

    def bad_release(self, lease: Any, reason: BadRelease) -> ReleaseResult:
        """A release that frees nothing: count it and say why."""
        item = getattr(lease, "item", None)
        key = getattr(item, "resource", None)
        resources = self._registry.resources
        r = resources.get(key) if isinstance(key, RequestResourceKey) else None
        generation = self._generation
        if r is not None and lease.generation == generation:
            if reason == "duplicate":
                r.duplicate_releases += 1
            else:
                r.unknown_releases += 1
        else:
            self.unknown_releases += 1
        lease_id = getattr(lease, "lease_id", -1)
        lease_id = lease_id if isinstance(lease_id, int) else -1
        diagnostics: dict[str, Any] = {
            "lease_generation": getattr(lease, "generation", None),
            "controller_generation": generation,
        }
        if self._emitter.enabled:
            self._events.emit_for(
                "request_release_diagnostic",
                key,
                lease_id=lease_id if lease_id != -1 else None,
                reason=reason,
                diagnostics=diagnostics,
            )
        return ReleaseResult(
            released=False, reason=reason, lease_id=lease_id, diagnostics=diagnostics
        )
