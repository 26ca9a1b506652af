"""What task admission held and had free, lease by lease, as far as a run's events say.

The occupancy sweep asks two questions of it: could a queued task have been admitted now (a
ready-idle gap when nothing was), and does task capacity stand idle. With one task-admission
resource the answer is the leases held against its limit. With several (a pipeline: the shared
``submission`` plus one resource per endpoint lane and for worker threads) each task holds its
group's resources, which the run names once in ``scheduler_job_started`` (``group_resources``,
group key -> resource -> units), so no per-task event has to carry them. Where the events do not
say what a task holds, the answer is "unknown" rather than a guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


class TaskResources:
    """The run's task-admission limits and the resources its held leases take."""

    __slots__ = (
        "capacity",
        "group_lanes",
        "group_resources",
        "in_use",
        "lane_windows",
        "leases",
        "limits",
        "shared",
        "unknown",
    )

    def __init__(self) -> None:
        self.capacity: int | None = None
        """The limit when the run has one task-admission resource."""
        self.limits: dict[str, int] | None = None
        self.group_resources: dict[str, dict[str, int]] = {}
        self.shared: tuple[str, ...] = ()
        """Resources every declared group holds (a pipeline's ``submission``): the total."""
        self.leases: dict[int | None, Mapping[str, int] | None] = {}
        """Lease id -> the resources it holds (``None``: its group's are unknown)."""
        self.in_use: Counter[str] = Counter()
        """Units held per resource, by leases whose resources are known."""
        self.unknown = 0
        """Leases held whose resources are unknown."""
        self.lane_windows: dict[str, int] = {}
        """A pipeline's lanes: how many of a lane's cells run at once at most (``lanes``)."""
        self.group_lanes: dict[str, str] = {}
        """A pipeline's fairness group key -> the lane its cells go through."""

    def configure(self, diagnostics: Mapping[str, Any]) -> None:
        """Read ``limits`` and ``group_resources`` of ``scheduler_job_started`` or
        ``config_reloaded``; a missing or malformed entry leaves what was known."""
        limits = diagnostics.get("limits")
        if isinstance(limits, dict):
            values = list(limits.values())
            self.capacity = values[0] if len(values) == 1 and isinstance(values[0], int) else None
            self.limits = {str(k): v for k, v in limits.items() if isinstance(v, int)}
        groups = diagnostics.get("group_resources")
        if isinstance(groups, dict):
            self.group_resources = {
                str(group): {str(r): n for r, n in needs.items()}
                for group, needs in groups.items()
                if isinstance(needs, dict) and all(isinstance(n, int) for n in needs.values())
            }
        lanes = diagnostics.get("lanes")
        if isinstance(lanes, dict):
            self.lane_windows = {str(k): v for k, v in lanes.items() if isinstance(v, int)}
        group_lanes = diagnostics.get("group_lanes")
        if isinstance(group_lanes, dict):
            self.group_lanes = {str(k): str(v) for k, v in group_lanes.items()}
        needs_sets = [set(needs) for needs in self.group_resources.values()]
        self.shared = tuple(sorted(set.intersection(*needs_sets))) if needs_sets else ()

    @property
    def declared(self) -> bool:
        """The run said enough to check for free capacity: one capacity, or each group's
        resources and every resource's limit."""
        return self.capacity is not None or (self.limits is not None and bool(self.group_resources))

    def hold(self, lease_id: int | None, group: str) -> None:
        """A lease was granted to a task of ``group`` (granting a held id again moves it)."""
        self.release(lease_id)
        needs = self.group_resources.get(group)
        self.leases[lease_id] = needs
        if needs is None:
            self.unknown += 1
        else:
            self.in_use.update(needs)

    def release(self, lease_id: int | None) -> None:
        """The lease went back (an id not held is ignored)."""
        if lease_id not in self.leases:
            return
        needs = self.leases.pop(lease_id)
        if needs is None:
            self.unknown -= 1
        else:
            self.in_use.subtract(needs)

    def fits(self, queued_groups: Iterable[str]) -> bool | None:
        """Whether a task of one of ``queued_groups`` could be admitted now: with one
        capacity, a lease is free (tasks of any group); otherwise every resource its group
        holds has the units free. ``None``: the events do not say (a group's resources, a
        held lease's or a limit unknown, and no queued group known to fit)."""
        if self.capacity is not None:
            return len(self.leases) < self.capacity
        limits = self.limits
        if limits is None or not self.group_resources or self.unknown:
            return None
        unknown = False
        for group in queued_groups:
            needs = self.group_resources.get(group)
            if needs is None or any(r not in limits for r in needs):
                unknown = True
            elif all(self.in_use[r] + n <= limits[r] for r, n in needs.items()):
                return True
        return None if unknown else False

    def idle(self) -> bool:
        """Task capacity has a free unit: the one capacity, or each resource every group
        holds (a pipeline's ``submission``, its total). Idle when the events do not say."""
        if self.capacity is not None:
            return len(self.leases) < self.capacity
        limits = self.limits
        if limits is None or self.unknown or not self.shared:
            return True
        return all(r not in limits or self.in_use[r] < limits[r] for r in self.shared)
