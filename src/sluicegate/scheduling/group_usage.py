"""Which groups hold which scheduler resources: kept only once someone reads it.

:class:`GroupUsageBook` is part of :class:`~sluicegate.TaskAdmissionController`. Per-group
usage, the groups holding each resource and their summed weight are what policies such as
``BoundedBorrowPolicy`` or ``StrictFairPolicy`` with group caps decide by; the default
policy without caps never reads them. So the book starts idle, and the first read (through
:class:`~sluicegate.scheduling.TaskAdmissionUsage`) rebuilds it from the live leases, O(live
leases), once; from then on every grant and release keeps it up to date in O(resources)
(the controller does that in its own walk of the request, see ``try_acquire``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .leases import TaskAdmissionLease
from .task import SchedulerResourceKey, SchedulerResourceRequest, TaskGroupSpec


class GroupUsageBook:
    """Per-group usage of one controller's resources (internal to the controller)."""

    __slots__ = ("by_group", "holder_weight", "holders", "leases", "tracking")

    def __init__(
        self,
        leases: Mapping[int, TaskAdmissionLease],
        resources: Mapping[SchedulerResourceKey, int],
    ) -> None:
        self.leases = leases  # the controller's live leases (read to rebuild)
        self.by_group: dict[str, dict[SchedulerResourceKey, int]] = {}
        self.holders: dict[SchedulerResourceKey, dict[str, float]] = {k: {} for k in resources}
        self.holder_weight: dict[SchedulerResourceKey, float] = dict.fromkeys(resources, 0.0)
        self.tracking = False

    def ensure(self) -> None:
        """Start keeping the book (a no-op once it is kept)."""
        if self.tracking:
            return
        self.tracking = True
        for lease in self.leases.values():
            self.add(lease.item.group, lease.resources)

    def add_resource(self, resource: SchedulerResourceKey) -> None:
        """A resource declared by ``reconfigure``."""
        self.holders.setdefault(resource, {})
        self.holder_weight.setdefault(resource, 0.0)

    def add(self, group: TaskGroupSpec, resources: SchedulerResourceRequest) -> None:
        """``group`` now also holds ``resources``."""
        key = group.key
        use = self.by_group.get(key)
        if use is None:
            use = self.by_group[key] = {}
        for res, units in resources.items():
            before = use.get(res, 0)
            use[res] = before + units
            if before == 0:
                self.holders[res][key] = group.weight
                self.holder_weight[res] += group.weight

    def copy_by_group(self) -> dict[str, dict[SchedulerResourceKey, int]]:
        """Group -> resource -> units now, as new dictionaries (without starting the book)."""
        if self.tracking:
            return {k: dict(v) for k, v in self.by_group.items()}
        out: dict[str, dict[SchedulerResourceKey, int]] = {}
        for lease in self.leases.values():
            use = out.setdefault(lease.item.group.key, {})
            for res, units in lease.resources.items():
                use[res] = use.get(res, 0) + units
        return out
