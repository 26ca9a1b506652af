"""The capacity plan of a run (SPEC "Capacity"): what was configured, and what was observed.

Written to the run directory at start (``configured`` and a first ``runtime_snapshot``) and
again at the end with ``observed_maxima``. Every configured value says where it came from
(``source``: ``user``, ``default``, ``derived``), which value it fell back from, and why a
value is missing when it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ..requests import ProviderCapPlan, RequestPressureSnapshot

if TYPE_CHECKING:
    from .settings import RunSettings
    from .tracker import Lane


class CapacityValue(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One configured capacity: its value, where it came from and any fallback."""

    value: int | float | None
    source: str
    fallback_from: str | None = None
    missing_reason: str | None = None


class ObservedMaxima(msgspec.Struct, kw_only=True):
    """Peaks seen during the run."""

    row_groups_in_flight: int = 0
    queued_by_group: dict[str, int] = msgspec.field(default_factory=dict)
    leases_by_resource: dict[str, int] = msgspec.field(default_factory=dict)
    request_in_flight_by_resource: dict[str, int] = msgspec.field(default_factory=dict)
    request_waiters_by_resource: dict[str, int] = msgspec.field(default_factory=dict)
    aggregate_in_flight_by_endpoint: dict[str, int] = msgspec.field(default_factory=dict)
    adaptive_limit_by_resource: dict[str, int] = msgspec.field(default_factory=dict)


class AsyncCapacityPlan(msgspec.Struct, kw_only=True):
    """Configured capacities, a runtime snapshot and the observed maxima of one run."""

    run_id: str
    configured: dict[str, CapacityValue]
    runtime_snapshot: dict[str, Any] = msgspec.field(default_factory=dict)
    observed_maxima: ObservedMaxima | None = None


def configured_capacity(
    settings: RunSettings, task_limits: Mapping[str, int], cap_plans: Iterable[ProviderCapPlan]
) -> dict[str, CapacityValue]:
    """The ``configured`` section: run settings, task resources and endpoint caps."""
    configured: dict[str, CapacityValue] = {
        "records": CapacityValue(value=settings.records, source="user"),
        "buffer_size": CapacityValue(value=settings.buffer_size, source="user"),
        "max_concurrent_row_groups": CapacityValue(
            value=settings.max_concurrent_row_groups, source="user"
        ),
        "local_threads": CapacityValue(value=settings.local_threads, source="user"),
    }
    for name, limit in task_limits.items():
        user = name == "submission" and settings.task_capacity is not None
        configured[f"task_resource:{name}"] = CapacityValue(
            value=limit, source="user" if user else "derived"
        )
    for plan in cap_plans:
        shared = len(plan.contributions) > 1
        configured[f"endpoint:{plan.key}.static_cap"] = CapacityValue(
            value=plan.static_cap,
            source="derived" if shared else "user",
            fallback_from="min of "
            + ", ".join(f"{c.alias}={c.raw_cap}" for c in plan.contributions)
            if shared
            else None,
        )
    return configured


def observed_maxima(
    lanes: Iterable[Lane],
    row_groups_in_flight: int,
    pressure: RequestPressureSnapshot,
    ready_by_lane: Mapping[str, int] | None = None,
) -> ObservedMaxima:
    """Peaks from the tracker's lanes and the request controller's pressure counters.

    ``queued_by_group`` is keyed by lane (one per endpoint, ``threads``, ``local``): ready
    cells wait in the tracker's lanes, not in the scheduler's queue (see plans/pipeline.md).
    """
    maxima = ObservedMaxima(row_groups_in_flight=row_groups_in_flight)
    maxima.queued_by_group.update(ready_by_lane or {})
    for lane in lanes:
        maxima.leases_by_resource[lane.name] = lane.max_outstanding
    for resource in pressure.resources:
        name = str(resource.resource)
        maxima.request_in_flight_by_resource[name] = resource.max_in_flight
        maxima.request_waiters_by_resource[name] = resource.max_waiters
        maxima.adaptive_limit_by_resource[name] = resource.max_limit
    for endpoint in pressure.endpoints:
        maxima.aggregate_in_flight_by_endpoint[str(endpoint.key)] = endpoint.max_in_flight
    return maxima
