"""The capacity plan of a run (SPEC "Capacity"): what was configured, and what was observed.

Written to the run directory at start (``configured`` and a first ``runtime_snapshot``) and
again at the end with ``observed_maxima``. Every configured value says where it came from
(``source``: ``user``, ``default``, ``derived``), which value it fell back from, and why a
value is missing when it is.
"""

from __future__ import annotations

from typing import Any

import msgspec


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
