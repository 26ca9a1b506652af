"""BoundedBorrowPolicy: a group may run ahead of its weighted fair share only up to a ceiling."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError, UnknownResourceError
from ..leases import TaskAdmissionLease
from ..queue import QueueView
from ..task import SchedulableTask
from .base import ALLOW, PolicyStateDelta, TaskAdmissionPolicyDecision, TaskAdmissionUsage


class BoundedBorrowPolicy:
    """Lets a group run ahead of its weighted fair share, within a ceiling, while peers idle.

    A group's fair share of a resource is ``ceil(limit * weight / W)`` units (at least one),
    where ``W`` sums the weights of the active groups: those with queued demand for the
    resource or holding some of it. Rounding up keeps the shares covering the whole limit, so
    the policy never strands capacity. A group may hold more than its share (borrow) only
    while no peer has queued demand for that resource, and never more than
    ``share + max_borrow``. Once a peer queues work, a group at or above its share gets no
    more of that resource (denial ``borrow_debt``) until releases bring it back under its
    share; the queue's fair order then serves the peer. A group alone is its whole share, so
    single-group runs stay live. A share is also at least one task: a group holding none of a
    resource may always start one task on it, whatever its size (the borrowing rules above
    apply from its second task on), so tasks asking for more units than a share never leave
    every group denied with nothing running.

    Policy state (via deltas, diagnostics only): ``borrowed:<group>:<resource>`` counts units
    granted beyond the share at grant time, repaid on release; ``borrow_grants`` counts such
    grants. Decisions always use live usage, so the counters cannot skew them.
    """

    name = "bounded_borrow"

    def __init__(self, max_borrow: int | Mapping[str, int] = 0) -> None:
        if not isinstance(max_borrow, Mapping):
            self._default = self._check(max_borrow, "BoundedBorrowPolicy.max_borrow")
            self._per_resource: dict[str, int] = {}
        else:
            self._default = 0
            for res in max_borrow:
                if not isinstance(res, str) or not res:
                    raise ConfigurationError(
                        "BoundedBorrowPolicy.max_borrow",
                        f"resource name {res!r}",
                        "key max_borrow by resource name (a non-empty string)",
                    )
            self._per_resource = {
                res: self._check(v, f"BoundedBorrowPolicy.max_borrow[{res!r}]")
                for res, v in max_borrow.items()
            }

    @staticmethod
    def _check(value: Any, field: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigurationError(field, f"got {value!r}", "use an integer >= 0")
        return value

    def validate_resources(self, limits: Mapping[str, int]) -> None:
        for res in self._per_resource:
            if res not in limits:
                raise UnknownResourceError("BoundedBorrowPolicy.max_borrow", res, sorted(limits))

    def max_borrow(self, resource: str) -> int:
        return self._per_resource.get(resource, self._default)

    @staticmethod
    def _units(limit: int, weight: float, total: float) -> int:
        return max(1, math.ceil(limit * weight / total - 1e-9))

    def fair_share(
        self,
        group_key: str,
        weight: float,
        resource: str,
        view: QueueView,
        usage: TaskAdmissionUsage,
    ) -> int:
        """Units of ``resource`` that are ``group_key``'s weighted fair share now (>= 1).

        O(groups holding the resource); :meth:`evaluate` avoids it in most cases.
        """
        holders = usage.holders(resource)
        total = view.demand_weight(resource)
        for holder, w in holders.items():
            if view.demand(holder, resource) == 0:
                total += w
        if view.demand(group_key, resource) == 0 and group_key not in holders:
            total += weight
        return self._units(usage.limit(resource), weight, total)

    def evaluate(
        self, item: SchedulableTask, queue_view: QueueView, usage: TaskAdmissionUsage
    ) -> TaskAdmissionPolicyDecision:
        key = item.group.key
        weight = item.group.weight
        group_use = usage.group_usage(key)
        if group_use is None:
            return ALLOW  # a group holding nothing may always start one task (see below)
        for res, units in item.resources.items():
            held = group_use.get(res, 0)
            if not held:
                # A share is at least one task: a group holding none of the resource may
                # start one even if it asks for more units than its share (else two such
                # groups would deny each other with nothing running).
                continue
            want = held + units
            own_demand = queue_view.demand(key, res)
            peers = queue_view.groups_with_demand(res) - (1 if own_demand else 0)
            limit = usage.limit(res)
            # Bounds on the active weight W decide most cases without iterating holders:
            # max(demand, holders, own) <= W <= demand + holders - own-if-counted-twice. (The
            # group holds the resource here, so it is among the holders; if it also has
            # queued demand, both sums count its weight.)
            demand_w = queue_view.demand_weight(res)
            holder_w = usage.holder_weight(res)
            if peers > 0:
                share_hi = self._units(limit, weight, max(demand_w, holder_w, weight))
                if want > share_hi:
                    return self._debt(res, share_hi, peers)
            upper_w = demand_w + holder_w - (weight if own_demand else 0.0)
            share_lo = self._units(limit, weight, max(upper_w, weight))
            if want <= share_lo:
                continue
            share = self.fair_share(key, weight, res, queue_view, usage)
            if want <= share:
                continue
            if peers > 0:
                return self._debt(res, share, peers)
            ceiling = share + self.max_borrow(res)
            if want > ceiling:
                return TaskAdmissionPolicyDecision(
                    False, "borrow_debt", res, detail=f"borrow ceiling {ceiling} on {res!r}"
                )
        return ALLOW

    @staticmethod
    def _debt(res: str, share: int, peers: int) -> TaskAdmissionPolicyDecision:
        return TaskAdmissionPolicyDecision(
            False, "borrow_debt", res, detail=f"at share {share} with {peers} peer(s) queued"
        )

    def on_acquire(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None:
        key = lease.item.group.key
        weight = lease.item.group.weight
        changes: list[tuple[str, int]] = []
        use = usage.group_usage(key) or {}
        for res, units in lease.resources.items():
            held = use.get(res, 0)
            if held <= units:
                continue  # the group's only task on it: a share is at least one task
            share = self._units(usage.limit(res), weight, max(usage.holder_weight(res), weight))
            over = min(units, held - share)
            if over > 0:
                changes.append((f"borrowed:{key}:{res}", over))
        if not changes:
            return None
        changes.append(("borrow_grants", 1))
        return PolicyStateDelta(tuple(changes))

    def on_release(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None:
        counters = usage.policy_counters
        if len(counters) <= 1:  # at most "borrow_grants": nothing is owed
            return None
        key = lease.item.group.key
        changes = []
        for res, units in lease.resources.items():
            owed = counters.get(f"borrowed:{key}:{res}", 0)
            if owed:
                changes.append((f"borrowed:{key}:{res}", -min(owed, units)))
        return PolicyStateDelta(tuple(changes)) if changes else None
