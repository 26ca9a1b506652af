"""Read-only request pressure: frozen per-resource and per-endpoint snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from .identity import ProviderModelKey, RequestResourceKey

CircuitState: TypeAlias = Literal["closed", "open", "half_open"]

if TYPE_CHECKING:
    pass


class RequestResourcePressure(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Read-only state of one request resource, consistent at ``captured_at``.

    ``cooldown_remaining`` is in seconds; ``last_rate_limit_ceiling`` is the limit at the last
    rate limit that decreased the limit (``None`` once the controller climbed past it).
    ``duplicate_releases``, ``unknown_releases`` and ``cancelled_grants`` are leak counters.
    ``max_*`` fields are the observed maxima since the resource was registered.
    ``slow_start`` is true while the limit still grows by one per success (no rate limit
    seen yet, ``effective_max`` not reached). ``connection_failures`` counts calls that never
    reached the endpoint (they feed the circuit breaker, not the limit).
    """

    resource: RequestResourceKey
    captured_at: float
    limit: int
    effective_max: int
    static_cap: int
    clamp: int | None
    in_flight: int
    endpoint_in_flight: int
    waiters: int
    cooldown_remaining: float
    last_rate_limit_ceiling: int | None
    consecutive_rate_limits: int
    ramping: bool
    circuit: CircuitState
    circuit_reopens_in: float | None
    window_requests: int | None
    window_tokens: int | None
    grants: int
    successes: int
    rate_limits: int
    coalesced_rate_limits: int
    failures: int
    released: int
    wait_timeouts: int
    wait_cancellations: int
    denials: int
    duplicate_releases: int
    unknown_releases: int
    cancelled_grants: int
    max_in_flight: int
    max_waiters: int
    max_limit: int
    slow_start: bool = False
    connection_failures: int = 0


class RequestEndpointPressure(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Read-only state of one concrete endpoint (provider/model) across domains and aliases."""

    key: ProviderModelKey
    static_cap: int
    aliases: tuple[str, ...]
    raw_caps: tuple[int, ...]
    in_flight: int
    waiters: int
    max_in_flight: int
    resources: tuple[RequestResourceKey, ...]


class RequestPressureSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Every resource and endpoint of a controller, captured at one instant."""

    captured_at: float
    resources: tuple[RequestResourcePressure, ...]
    endpoints: tuple[RequestEndpointPressure, ...]
    unknown_releases: int
    closed: bool

    def resource(self, key: RequestResourceKey) -> RequestResourcePressure | None:
        """The snapshot of ``key``, if registered."""
        for entry in self.resources:
            if entry.resource == key:
                return entry
        return None

    def endpoint(self, key: ProviderModelKey) -> RequestEndpointPressure | None:
        """The snapshot of endpoint ``key``, if declared."""
        for entry in self.endpoints:
            if entry.key == key:
                return entry
        return None


@runtime_checkable
class RequestPressureSource(Protocol):
    """Read-only request pressure, for diagnostics, telemetry and advisory task policies."""

    def snapshot(self) -> RequestPressureSnapshot: ...

    def resource(self, key: RequestResourceKey) -> RequestResourcePressure | None: ...
