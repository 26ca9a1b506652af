"""Task admission: may this task become a running worker now?

:class:`TaskAdmissionController` grants leases over named scheduler resources. The
decision beyond raw capacity belongs to a pluggable :class:`TaskAdmissionPolicy` whose
``evaluate`` is pure; its ``on_acquire``/``on_release`` return :class:`PolicyStateDelta`
values that the controller applies in the same step, so policy state can never drift from
lease state. The controller knows nothing of trio tasks, providers or the queue's insides:
it reads queue facts through a :class:`~sluicegate.QueueView`.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, runtime_checkable

import msgspec

from ._clock import now as _now
from ._errors import ConfigurationError, UnknownResourceError, describe
from ._leases import ReleaseResult
from ._queue import QueueView
from ._task import DEFAULT_RESOURCE, SchedulableTask, SchedulerResourceKey

DenialReason = Literal["no_capacity", "group_capped", "borrow_debt", "shutdown", "policy_denied"]


class TaskAdmissionLease(msgspec.Struct, frozen=True, gc=False):
    """Permission for one task to run, holding ``resources`` until released.

    ``generation`` identifies the controller that issued it; a lease from another
    controller is diagnosed as ``wrong_generation`` on release.
    """

    lease_id: int
    item: SchedulableTask
    resources: Mapping[SchedulerResourceKey, int]
    acquired_at: float
    generation: int


class TaskAdmissionView(msgspec.Struct, frozen=True, kw_only=True):
    """Frozen facts about task admission at one instant (cheap: O(resources + holders))."""

    generation: int
    policy: str
    limits: dict[str, int]
    in_use: dict[str, int]
    active_leases: int
    in_use_by_group: dict[str, dict[str, int]]
    policy_state: dict[str, int]
    acquired_total: int
    released_total: int
    release_diagnostics: dict[str, int]
    shutting_down: bool = False


class TaskAdmissionDenied(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a task may not run now. ``available_after`` is a time hint, when one exists."""

    item: SchedulableTask
    reason: DenialReason
    resource: str | None = None
    available_after: float | None = None
    detail: str | None = None


TaskAdmissionDecision = TaskAdmissionLease | TaskAdmissionDenied


class TaskAdmissionBlockSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Why queued work is not being admitted: counts of denial reasons over group heads."""

    queued: int
    candidates_checked: int
    dominant_reasons: list[tuple[str, int]]
    blocked_groups: dict[str, str]
    available_after: float | None


class TaskAdmissionPolicyDecision(msgspec.Struct, frozen=True, gc=False):
    """A policy's verdict; ``allowed`` with no reason, or a denial reason and hint."""

    allowed: bool
    reason: DenialReason | None = None
    resource: str | None = None
    available_after: float | None = None
    detail: str | None = None


ALLOW: Final = TaskAdmissionPolicyDecision(True)


class PolicyStateDelta(msgspec.Struct, frozen=True, gc=False):
    """Additive changes to the policy's named counters, applied by the controller."""

    changes: tuple[tuple[str, int], ...]


class TaskAdmissionUsage:
    """Read-only live usage counters of a controller, handed to policies.

    Policies read this instead of a frozen :class:`TaskAdmissionView` so that evaluation
    stays O(1); they must not keep it beyond the call.
    """

    __slots__ = ("_c",)

    def __init__(self, controller: TaskAdmissionController) -> None:
        self._c = controller

    def limit(self, resource: SchedulerResourceKey) -> int:
        return self._c._limits[resource]

    def in_use(self, resource: SchedulerResourceKey) -> int:
        return self._c._in_use[resource]

    def group_in_use(self, group_key: str, resource: SchedulerResourceKey) -> int:
        g = self._c._group_use.get(group_key)
        return g.get(resource, 0) if g is not None else 0

    def holders(self, resource: SchedulerResourceKey) -> Mapping[str, float]:
        """Group key -> weight of the groups holding ``resource``."""
        return self._c._holders[resource]

    def holder_weight(self, resource: SchedulerResourceKey) -> float:
        return self._c._holder_weight[resource]

    def policy_counter(self, key: str) -> int:
        return self._c._policy_state.get(key, 0)

    @property
    def policy_counters(self) -> Mapping[str, int]:
        """Every non-zero policy counter (read-only; do not mutate)."""
        return self._c._policy_state

    @property
    def now(self) -> float:
        return _now()


@runtime_checkable
class TaskAdmissionPolicy(Protocol):
    """Decides admission beyond raw capacity. ``evaluate`` must not change any state."""

    name: str

    def evaluate(
        self, item: SchedulableTask, queue_view: QueueView, usage: TaskAdmissionUsage
    ) -> TaskAdmissionPolicyDecision: ...

    def on_acquire(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None: ...

    def on_release(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None: ...


_generations = itertools.count(os.getpid() << 20)


def _check_is_policy(policy: object) -> None:
    if isinstance(policy, type) or not isinstance(policy, TaskAdmissionPolicy):
        raise ConfigurationError(
            "TaskAdmissionController.policy",
            f"{describe(policy)} is not a task admission policy"
            + (" (a class, not an instance)" if isinstance(policy, type) else ""),
            "pass an instance with name, evaluate, on_acquire and on_release, "
            "e.g. StrictFairPolicy()",
        )


def _validate_limits(limits: Mapping[str, int], field: str) -> dict[str, int]:
    if not limits:
        raise ConfigurationError(field, "no resources declared", "declare at least one resource")
    out: dict[str, int] = {}
    for key, value in limits.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(field, f"resource name {key!r}", "use a non-empty string")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigurationError(
                f"{field}[{key!r}]", f"capacity {value!r}", "use a positive integer"
            )
        out[key] = value
    return out


class TaskAdmissionController:
    """Grants unique leases over named scheduler resources.

    ``limits`` maps resource names to capacities; the default is one resource,
    ``"submission"``, of ``capacity`` units. All calls are synchronous and never yield to
    the event loop, so a decision and its state change happen in one step.
    ``release`` never raises and a duplicate release never adds capacity.
    """

    def __init__(
        self,
        limits: Mapping[str, int] | None = None,
        *,
        capacity: int = 64,
        policy: TaskAdmissionPolicy | None = None,
    ) -> None:
        if limits is None:
            limits = {DEFAULT_RESOURCE: capacity}
        self._limits = _validate_limits(limits, "TaskAdmissionController.limits")
        self._in_use: dict[str, int] = dict.fromkeys(self._limits, 0)
        self._group_use: dict[str, dict[str, int]] = {}
        self._holders: dict[str, dict[str, float]] = {k: {} for k in self._limits}
        self._holder_weight: dict[str, float] = dict.fromkeys(self._limits, 0.0)
        self._leases: dict[int, TaskAdmissionLease] = {}
        self._next_id = 1
        self.generation = next(_generations)
        self._policy_state: dict[str, int] = {}
        self._acquired = 0
        self._released = 0
        self._diagnostics: Counter[str] = Counter()
        self._shutting_down = False
        self._free = len(self._limits)  # resources with at least one free unit
        self._mutations = 0
        self.limits_version = 0
        """Bumped by every :meth:`reconfigure` (lets callers cache checks against limits)."""
        self._memo: tuple[SchedulableTask | None, int, int] = (None, -1, -1)
        self.policy: TaskAdmissionPolicy = policy if policy is not None else StrictFairPolicy()
        self._usage = TaskAdmissionUsage(self)
        self._check_policy(self.policy)

    def _check_policy(self, policy: TaskAdmissionPolicy) -> None:
        _check_is_policy(policy)
        check = getattr(policy, "validate_resources", None)
        if check is not None:
            check(self._limits)

    # -- decisions -----------------------------------------------------------------------

    def _capacity_denial(self, item: SchedulableTask) -> TaskAdmissionDenied | None:
        limits = self._limits
        in_use = self._in_use
        for res, units in item.resources.items():
            limit = limits.get(res)
            if limit is None:
                raise UnknownResourceError(f"task {item.task_id!r}.resources", res, sorted(limits))
            if in_use[res] + units > limit:
                return TaskAdmissionDenied(item=item, reason="no_capacity", resource=res)
        return None

    def check_request(self, item: SchedulableTask) -> None:
        """Reject a task that could never be admitted under the current limits.

        Raises :class:`UnknownResourceError` for an undeclared resource and
        :class:`ConfigurationError` for a request larger than a resource's whole limit.
        """
        limits = self._limits
        for res, units in item.resources.items():
            limit = limits.get(res)
            if limit is None:
                raise UnknownResourceError(f"task {item.task_id!r}.resources", res, sorted(limits))
            if units > limit:
                raise ConfigurationError(
                    f"task {item.task_id!r}.resources[{res!r}]",
                    f"requests {units} units but the resource's limit is {limit}",
                    "request at most the limit, or raise the limit with reconfigure()",
                )

    def is_eligible(self, item: SchedulableTask, view: QueueView) -> bool:
        """Whether :meth:`try_acquire` would grant ``item`` now. Pure."""
        if self._shutting_down:
            return False
        limits = self._limits
        in_use = self._in_use
        for res, units in item.resources.items():
            limit = limits.get(res)
            if limit is None:
                raise UnknownResourceError(f"task {item.task_id!r}.resources", res, sorted(limits))
            if in_use[res] + units > limit:
                return False
        if self.policy.evaluate(item, view, self._usage).allowed:
            # try_acquire right after (same step, nothing changed) need not evaluate again
            self._memo = (item, view.sequence_version, self._mutations)
            return True
        return False

    def evaluate(self, item: SchedulableTask, view: QueueView) -> TaskAdmissionDenied | None:
        """The denial :meth:`try_acquire` would return for ``item`` now, or ``None``. Pure."""
        if self._shutting_down:
            return TaskAdmissionDenied(item=item, reason="shutdown")
        denied = self._capacity_denial(item)
        if denied is not None:
            return denied
        decision = self.policy.evaluate(item, view, self._usage)
        if decision.allowed:
            return None
        return TaskAdmissionDenied(
            item=item,
            reason=decision.reason or "policy_denied",
            resource=decision.resource,
            available_after=decision.available_after,
            detail=decision.detail,
        )

    def try_acquire(self, item: SchedulableTask, view: QueueView) -> TaskAdmissionDecision:
        """Grant a lease for ``item`` or say why not. Never blocks, never raises on denial.

        Raises :class:`UnknownResourceError` if ``item`` asks for an undeclared resource.
        """
        memo_item, memo_version, memo_mutations = self._memo
        if not (
            memo_item is item
            and memo_version == view.sequence_version
            and memo_mutations == self._mutations
        ):
            denied = self.evaluate(item, view)
            if denied is not None:
                return denied
        self._mutations += 1
        lease_id = self._next_id
        self._next_id = lease_id + 1
        resources = item.resources
        lease = TaskAdmissionLease(lease_id, item, resources, _now(), self.generation)
        self._leases[lease_id] = lease
        self._acquired += 1
        in_use = self._in_use
        key = item.group.key
        group_use = self._group_use.get(key)
        if group_use is None:
            group_use = self._group_use[key] = {}
        limits = self._limits
        for res, units in resources.items():
            used = in_use[res]
            in_use[res] = used + units
            if used < limits[res] <= used + units:
                self._free -= 1
            before = group_use.get(res, 0)
            group_use[res] = before + units
            if before == 0:
                self._holders[res][key] = item.group.weight
                self._holder_weight[res] += item.group.weight
        try:
            delta = self.policy.on_acquire(lease, self._usage)
        except BaseException:
            # The policy broke: take the grant back so no capacity leaks, then propagate.
            del self._leases[lease_id]
            self._acquired -= 1
            self._return_units(lease)
            raise
        if delta is not None:
            self._apply(delta)
        return lease

    def release(self, lease: TaskAdmissionLease) -> ReleaseResult:
        """Return ``lease``'s resources. Never raises; problems are diagnosed in the result."""
        try:
            lease_id = lease.lease_id
            generation = lease.generation
        except AttributeError:  # not a lease at all (say, a denial): reported, never raised
            return self._diagnose(-1, "unknown_lease", None)
        if generation != self.generation:
            return self._diagnose(lease_id, "wrong_generation", generation)
        held = self._leases.get(lease_id)
        if held is None:
            reason = "duplicate" if 0 < lease_id < self._next_id else "unknown_lease"
            return self._diagnose(lease_id, reason, None)
        if held is not lease and held != lease:
            return self._diagnose(lease_id, "stale_lease", None)
        del self._leases[lease_id]
        self._released += 1
        self._return_units(held)
        try:
            delta = self.policy.on_release(held, self._usage)
        except Exception as exc:
            # Release never raises: the units are back; report the broken policy.
            self._diagnostics["policy_error"] += 1
            return ReleaseResult(
                released=True,
                reason="released",
                lease_id=lease_id,
                diagnostics={"policy_error": f"{type(exc).__name__}: {exc}"[:200]},
            )
        if delta is not None:
            self._apply(delta)
        return ReleaseResult(released=True, reason="released", lease_id=lease_id)

    def _return_units(self, held: TaskAdmissionLease) -> None:
        self._mutations += 1
        in_use = self._in_use
        limits = self._limits
        key = held.item.group.key
        group_use = self._group_use[key]
        for res, units in held.resources.items():
            used = in_use[res]
            in_use[res] = used - units
            if used - units < limits[res] <= used:
                self._free += 1
            left = group_use[res] - units
            if left:
                group_use[res] = left
            else:
                del group_use[res]
                self._holder_weight[res] -= self._holders[res].pop(key)
        if not group_use:
            del self._group_use[key]

    def _diagnose(self, lease_id: int, reason: Any, generation: int | None) -> ReleaseResult:
        self._diagnostics[reason] += 1
        diagnostics: dict[str, Any] = {"controller_generation": self.generation}
        if generation is not None:
            diagnostics["lease_generation"] = generation
        return ReleaseResult(
            released=False, reason=reason, lease_id=lease_id, diagnostics=diagnostics
        )

    def _apply(self, delta: PolicyStateDelta) -> None:
        state = self._policy_state
        for key, change in delta.changes:
            value = state.get(key, 0) + change
            if value:
                state[key] = value
            else:
                state.pop(key, None)

    # -- facts and control ---------------------------------------------------------------

    @property
    def free_resources(self) -> int:
        """How many resources have at least one free unit (0: nothing can be admitted)."""
        return 0 if self._shutting_down else self._free

    @property
    def active_leases(self) -> int:
        return len(self._leases)

    @property
    def limits(self) -> Mapping[str, int]:
        return dict(self._limits)

    @property
    def usage(self) -> TaskAdmissionUsage:
        return self._usage

    def view(self) -> TaskAdmissionView:
        return TaskAdmissionView(
            generation=self.generation,
            policy=self.policy.name,
            limits=dict(self._limits),
            in_use=dict(self._in_use),
            active_leases=len(self._leases),
            in_use_by_group={k: dict(v) for k, v in self._group_use.items()},
            policy_state=dict(self._policy_state),
            acquired_total=self._acquired,
            released_total=self._released,
            release_diagnostics=dict(self._diagnostics),
            shutting_down=self._shutting_down,
        )

    def explain_blocked(self, view: QueueView) -> TaskAdmissionBlockSummary:
        """Why the heads of the queued groups are not admitted (call while work is queued).

        O(groups with queued work); meant for diagnostics and blocked events, not the hot path.
        """
        reasons: Counter[str] = Counter()
        blocked: dict[str, str] = {}
        earliest: float | None = None
        checked = 0
        for key in view.active_groups():
            head = view.first_candidate(key)
            if head is None:
                continue
            checked += 1
            denied = self.evaluate(head, view)
            if denied is None:
                continue
            reasons[denied.reason] += 1
            blocked[key] = denied.reason
            if denied.available_after is not None and (
                earliest is None or denied.available_after < earliest
            ):
                earliest = denied.available_after
        return TaskAdmissionBlockSummary(
            queued=view.queued_total,
            candidates_checked=checked,
            dominant_reasons=reasons.most_common(),
            blocked_groups=blocked,
            available_after=earliest,
        )

    def reconfigure(
        self, limits: Mapping[str, int], *, policy: TaskAdmissionPolicy | None = None
    ) -> None:
        """Resize resources live (and optionally swap the policy).

        ``limits`` is merged into the current limits: listed resources are resized, new ones
        added, unlisted ones kept (resources are never removed). Shrinking never revokes held
        leases: new admissions wait until usage is below the new limit. A new ``policy``
        takes over future decisions; leases granted earlier are released through it too.
        """
        merged = dict(self._limits)
        merged.update(limits)
        new_limits = _validate_limits(merged, "TaskAdmissionController.reconfigure.limits")
        if policy is not None:
            self._check_policy_with(policy, new_limits)
        self._limits = new_limits
        for key in new_limits:
            self._in_use.setdefault(key, 0)
            self._holders.setdefault(key, {})
            self._holder_weight.setdefault(key, 0.0)
        if policy is not None:
            self.policy = policy
        self._free = sum(1 for k, v in new_limits.items() if self._in_use[k] < v)
        self._mutations += 1
        self.limits_version += 1

    def _check_policy_with(self, policy: TaskAdmissionPolicy, limits: Mapping[str, int]) -> None:
        _check_is_policy(policy)
        check = getattr(policy, "validate_resources", None)
        if check is not None:
            check(limits)

    def begin_shutdown(self) -> None:
        """Deny every new admission with reason ``shutdown``; held leases stay valid."""
        self._shutting_down = True
        self._mutations += 1


class StrictFairPolicy:
    """The default policy: capacity only, plus optional per-group caps.

    Fairness itself comes from the queue's weighted order; this policy never lets a group
    hold more than ``group_caps[group][resource]`` units (denial reason ``group_capped``).
    """

    name = "strict_fair"

    def __init__(self, group_caps: Mapping[str, Mapping[str, int]] | None = None) -> None:
        caps: dict[str, dict[str, int]] = {}
        for group, per_res in (group_caps or {}).items():
            if not isinstance(per_res, Mapping):
                raise ConfigurationError(
                    f"StrictFairPolicy.group_caps[{group!r}]",
                    f"got {per_res!r}",
                    "map each group to {resource: cap}, e.g. {'submission': 2}",
                )
            caps[group] = {}
            for res, cap in per_res.items():
                if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
                    raise ConfigurationError(
                        f"StrictFairPolicy.group_caps[{group!r}][{res!r}]",
                        f"cap {cap!r}",
                        "use a positive integer",
                    )
                caps[group][res] = cap
        self.group_caps = caps

    def validate_resources(self, limits: Mapping[str, int]) -> None:
        for group, per_res in self.group_caps.items():
            for res in per_res:
                if res not in limits:
                    raise UnknownResourceError(
                        f"StrictFairPolicy.group_caps[{group!r}]", res, sorted(limits)
                    )

    def evaluate(
        self, item: SchedulableTask, queue_view: QueueView, usage: TaskAdmissionUsage
    ) -> TaskAdmissionPolicyDecision:
        if not self.group_caps:
            return ALLOW
        caps = self.group_caps.get(item.group.key)
        if caps:
            for res, units in item.resources.items():
                cap = caps.get(res)
                if cap is not None and usage.group_in_use(item.group.key, res) + units > cap:
                    return TaskAdmissionPolicyDecision(
                        False, "group_capped", res, detail=f"group cap {cap} on {res!r}"
                    )
        return ALLOW

    def on_acquire(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None:
        return None

    def on_release(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None:
        return None


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
        # Direct reads of the live counters: this runs once per candidate on the hot path.
        controller = usage._c
        queue = queue_view._queue
        group_use = controller._group_use.get(key)
        group = queue._groups.get(key)
        for res, units in item.resources.items():
            held = group_use.get(res, 0) if group_use is not None else 0
            if not held:
                # A share is at least one task: a group holding none of the resource may
                # start one even if it asks for more units than its share (else two such
                # groups would deny each other with nothing running).
                continue
            want = held + units
            own_demand = group.demand.get(res, 0) if group is not None else 0
            peers = queue._demand_groups.get(res, 0) - (1 if own_demand else 0)
            limit = controller._limits[res]
            # Bounds on the active weight W decide most cases without iterating holders:
            # max(demand, holders, own) <= W <= demand + holders + own.
            demand_w = queue._demand_weight.get(res, 0.0)
            holder_w = controller._holder_weight[res]
            share_hi = self._units(limit, weight, max(demand_w, holder_w, weight))
            if peers > 0 and want > share_hi:
                return self._debt(res, share_hi, peers)
            share_lo = self._units(limit, weight, demand_w + holder_w + weight)
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
        for res, units in lease.resources.items():
            held = usage.group_in_use(key, res)
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


__all__ = [
    "ALLOW",
    "BoundedBorrowPolicy",
    "PolicyStateDelta",
    "StrictFairPolicy",
    "TaskAdmissionBlockSummary",
    "TaskAdmissionController",
    "TaskAdmissionDecision",
    "TaskAdmissionDenied",
    "TaskAdmissionLease",
    "TaskAdmissionPolicy",
    "TaskAdmissionPolicyDecision",
    "TaskAdmissionUsage",
    "TaskAdmissionView",
]
