"""The controller's tables: declared endpoints, registered resources, and live changes to them.

Resources (endpoint + domain) are registered on first use with the settings the config gives
them. :meth:`ResourceRegistry.check_changes` validates a reconfigure completely before
:meth:`ResourceRegistry.apply_changes` changes anything; the apply step reports what the
controller still has to do (waiters to deny, circuits it closed, limits that moved) instead
of doing it, so the registry never touches waiters or events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from attrs import define, field

from ...errors import ConfigurationError
from ..identity import (
    REQUEST_DOMAINS,
    ModelEndpoint,
    ProviderModelKey,
    RequestResourceKey,
    RequestResourceResolver,
)
from .state import EndpointState, ResourceState
from .waiters import Waiter

if TYPE_CHECKING:
    from ..admission import RequestDenialReason
    from ..config import RequestAdmissionConfig


def as_resolver(
    endpoints: RequestResourceResolver | Sequence[ModelEndpoint] | object,
) -> RequestResourceResolver:
    """A resolver, or one built from a sequence of :class:`ModelEndpoint`."""
    if isinstance(endpoints, RequestResourceResolver):
        return endpoints
    return RequestResourceResolver(endpoints)  # type: ignore[arg-type]


@define
class AppliedChanges:
    """What a reconfigure changed that the controller must act on or report."""

    before: dict[RequestResourceKey, tuple[int, int]]
    circuits_closed: list[ResourceState] = field(factory=list)
    rejected: list[tuple[Waiter[ResourceState], RequestDenialReason, str | None]] = field(
        factory=list
    )


class ResourceRegistry:
    """Endpoints by key and resources by key, built from a resolver and a config."""

    __slots__ = ("config", "endpoints", "resolver", "resources")

    def __init__(self, resolver: RequestResourceResolver, config: RequestAdmissionConfig):
        config.check_selectors(resolver)
        self.resolver = resolver
        self.config = config
        self.endpoints: dict[ProviderModelKey, EndpointState] = {
            plan.key: EndpointState(plan.key, plan, plan.static_cap)
            for plan in resolver.cap_plans()
        }
        self.resources: dict[RequestResourceKey, ResourceState] = {}

    def register(self, key: object, now: float) -> ResourceState | None:
        """The state of a declared resource, created with its settings; ``None`` if ``key``
        is not a resource of a declared (and not removed) endpoint."""
        if not isinstance(key, RequestResourceKey) or key.domain not in REQUEST_DOMAINS:
            return None
        ep = self.endpoints.get(key.provider_model)
        if ep is None or ep.removed:
            return None
        settings = self.config.settings_for(key, self.resolver)
        r = ResourceState(key, ep, settings, now)
        r.apply_settings(settings, fresh=True)
        self.resources[key] = r
        ep.resources.append(r)
        return r

    def all_waiters(self) -> Iterator[Waiter[ResourceState]]:
        """Every waiting waiter of every endpoint (a copy)."""
        return iter([w for ep in self.endpoints.values() for w in ep.waiters.waiting_waiters()])

    def stranded_waiters(self, now: float) -> tuple[RequestResourceKey, ...]:
        """Resources whose queued head is admissible at ``now`` under a free cap (a query)."""
        stranded: list[RequestResourceKey] = []
        for ep in self.endpoints.values():
            if ep.waiters.waiting and ep.in_flight < ep.static_cap:
                for lane in ep.waiters.lanes:
                    r = lane.resource
                    if r.blocked_by(lane.head().item.estimated_tokens, now) is None:
                        stranded.append(r.key)
        return tuple(stranded)

    def check_changes(
        self,
        config: RequestAdmissionConfig | None,
        endpoints: Sequence[ModelEndpoint] | RequestResourceResolver | None,
        static_caps: Mapping[ProviderModelKey, int] | None,
        limits: Mapping[RequestResourceKey, int] | None,
    ) -> tuple[RequestResourceResolver, RequestAdmissionConfig]:
        """Validate a reconfigure; raise :class:`ConfigurationError` naming the bad value."""
        resolver = self.resolver if endpoints is None else as_resolver(endpoints)
        new_config = config if config is not None else self.config
        new_config.check_selectors(resolver)
        for key, cap in (static_caps or {}).items():
            if key not in resolver:
                raise ConfigurationError(
                    f"static_caps[{key}]",
                    "unknown endpoint",
                    "use a provider/model declared by a ModelEndpoint",
                )
            _check_count(f"static_caps[{key}]", cap, "use a cap of at least 1")
        for rkey, value in (limits or {}).items():
            if rkey not in self.resources and rkey not in resolver:
                raise ConfigurationError(
                    f"limits[{rkey}]", "unknown resource", "use a resource of a declared endpoint"
                )
            _check_count(f"limits[{rkey}]", value, "use a limit of at least 1")
        return resolver, new_config

    def apply_changes(
        self,
        resolver: RequestResourceResolver,
        config: RequestAdmissionConfig,
        *,
        endpoints_changed: bool,
        static_caps: Mapping[ProviderModelKey, int] | None,
        limits: Mapping[RequestResourceKey, int] | None,
        now: float,
    ) -> AppliedChanges:
        """Apply validated changes; report what the controller must still do."""
        changes = AppliedChanges(
            before={r.key: (r.aimd.effective_max, r.aimd.limit) for r in self.resources.values()}
        )
        if endpoints_changed:
            self._replace_endpoints(resolver)
        for key, cap in (static_caps or {}).items():
            self.endpoints[resolver.resolve_endpoint(key)].static_cap_override = cap
        for ep in self.endpoints.values():
            base = ep.plan.static_cap if ep.plan is not None else ep.static_cap
            ep.static_cap = ep.static_cap_override or base
        self.config = config
        for r in self.resources.values():
            r.apply_settings(config.settings_for(r.key, resolver), fresh=False)
            circuit = r.circuit
            if not circuit.closed and (
                circuit.until == float("inf") or r.settings.circuit_breaker_threshold is None
            ):
                # Open for good (max reopens reached) or the breaker is now disabled: a
                # reconfigure is the operator's signal to try again.
                circuit.close(r.settings)
                r.update_timed()
                changes.circuits_closed.append(r)
            window = r.window
            if r.waiting and window is not None and window.tokens_per_window is not None:
                # A lowered token quota must not strand waiters that can never fit any more.
                for lane in list(r.lanes.values()):
                    for waiter in lane.waiting():
                        if not window.fits(r.tokens_for(waiter.item.estimated_tokens)):
                            changes.rejected.append((waiter, "too_large", "rate_window_tokens"))
        for rkey, value in (limits or {}).items():
            r_or_none = self.resources.get(rkey) or self.register(rkey, now)
            if r_or_none is not None:
                r_or_none.ramp.active = False
                aimd = r_or_none.aimd
                aimd.successes = 0
                aimd.slow_start = False  # an operator's limit is not a starting guess
                aimd.raise_to(max(1, min(value, aimd.effective_max)))
                r_or_none.update_timed()
        self._retire_removed(changes)
        return changes

    def _replace_endpoints(self, resolver: RequestResourceResolver) -> None:
        self.resolver = resolver
        plans = {plan.key: plan for plan in resolver.cap_plans()}
        for key, ep in self.endpoints.items():
            plan = plans.get(key)
            ep.removed = plan is None
            if plan is not None:
                ep.plan = plan
        for key, plan in plans.items():
            if key not in self.endpoints:
                self.endpoints[key] = EndpointState(key, plan, plan.static_cap)

    def _retire_removed(self, changes: AppliedChanges) -> None:
        """Endpoints no longer declared: new acquires no longer find their resources
        (unknown_resource), while leases in flight still release through their state."""
        for ep in self.endpoints.values():
            if ep.removed and ep.resources:
                for r in ep.resources:
                    del self.resources[r.key]
                    for lane in list(r.lanes.values()):
                        for waiter in lane.waiting():
                            changes.rejected.append((waiter, "unknown_resource", None))
                ep.resources = []


def _check_count(name: str, value: object, fix: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(name, f"must be an integer >= 1, got {value!r}", fix)
