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
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any, NoReturn

import trio

from .._internal.checks import describe, did_you_mean, is_number
from .._internal.clock import now as _now
from .._internal.leases import ReleaseResult
from ..errors import ConfigurationError, UnknownResourceError
from .group_usage import GroupUsageBook
from .leases import (
    DENIAL_REASONS,
    TaskAdmissionBlockSummary,
    TaskAdmissionDecision,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)
from .policies.base import (
    PolicyStateDelta,
    TaskAdmissionPolicy,
    TaskAdmissionPolicyDecision,
    TaskAdmissionUsage,
)
from .policies.strict import StrictFairPolicy
from .queue import QueueView
from .task import DEFAULT_RESOURCE, SchedulableTask

_generations = itertools.count(os.getpid() << 20)


_current_time = trio.current_time


_REASONS: frozenset[object] = frozenset((None, *DENIAL_REASONS))


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
    if not isinstance(limits, Mapping):
        raise ConfigurationError(
            field,
            f"got {describe(limits)}, not a mapping",
            "map resource names to capacities, e.g. {'submission': 64}",
        )
    if not limits:
        raise ConfigurationError(field, "no resources declared", "declare at least one resource")
    out: dict[str, int] = {}
    for key, value in limits.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                field, f"resource name {describe(key)}", "use a non-empty string"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigurationError(
                f"{field}[{key!r}]", f"capacity {describe(value)}", "use a positive integer"
            )
        out[key] = value
    return out


def _reject_decision(policy: TaskAdmissionPolicy, decision: object) -> NoReturn:
    """Raise the ConfigurationError for a policy decision of the wrong shape."""
    field = f"{policy.name}.evaluate"
    if not isinstance(decision, TaskAdmissionPolicyDecision):
        raise ConfigurationError(
            field,
            f"returned {describe(decision)}",
            "return a TaskAdmissionPolicyDecision (allow(), deny(reason, ...), skip_for(...))",
        )
    if decision.reason not in _REASONS:
        raise ConfigurationError(
            field,
            f"denied with reason {describe(decision.reason)}"
            + did_you_mean(str(decision.reason), DENIAL_REASONS),
            f"use one of {', '.join(DENIAL_REASONS)} (or leave it None: policy_denied)",
        )
    raise ConfigurationError(
        field,
        f"returned available_after={describe(decision.available_after)}",
        "use an absolute time on the trio clock (usage.now + delay), or None",
    )


class TaskAdmissionController:
    """Grants unique leases over named scheduler resources.

    ``limits`` maps resource names to capacities; the default is one resource,
    ``"submission"``, of ``capacity`` units. All calls are synchronous and never yield to
    the event loop, so a decision and its state change happen in one step; the calls that
    change state are KI-protected (like trio's own primitives), so a Ctrl-C cannot land
    half-way through a grant or a release.
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
            if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
                raise ConfigurationError(
                    "TaskAdmissionController.capacity",
                    f"got {describe(capacity)}",
                    "use a positive integer (tasks running at once)",
                )
            limits = {DEFAULT_RESOURCE: capacity}
        self._limits = _validate_limits(limits, "TaskAdmissionController.limits")
        self._in_use: dict[str, int] = dict.fromkeys(self._limits, 0)
        self._leases: dict[int, TaskAdmissionLease] = {}
        self._groups = GroupUsageBook(self._leases, self._limits)
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
        self._usage = TaskAdmissionUsage(
            self._limits,
            self._in_use,
            self._groups,
            self._policy_state,
        )
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
        try:
            allowed = self.policy.evaluate(item, view, self._usage).allowed
        except AttributeError:
            _reject_decision(self.policy, self.policy.evaluate(item, view, self._usage))
        if allowed:
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
        if not isinstance(decision, TaskAdmissionPolicyDecision):
            _reject_decision(self.policy, decision)
        if decision.allowed:
            return None
        hint = decision.available_after
        if decision.reason not in _REASONS or not (
            hint is None or (is_number(hint) and hint == hint)  # a number, not NaN
        ):
            _reject_decision(self.policy, decision)
        return TaskAdmissionDenied(
            item=item,
            reason=decision.reason or "policy_denied",
            resource=decision.resource,
            available_after=decision.available_after,
            detail=decision.detail,
            skip=decision.skip,
        )

    @trio.lowlevel.enable_ki_protection
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
        try:  # inline rather than _now(): this runs once per task
            acquired_at = _current_time()
        except RuntimeError:  # outside trio.run (a script or a notebook)
            acquired_at = _now()
        lease = TaskAdmissionLease(lease_id, item, resources, acquired_at, self.generation)
        self._leases[lease_id] = lease
        self._acquired += 1
        in_use = self._in_use
        limits = self._limits
        groups = self._groups
        if not groups.tracking:
            for res, units in resources.items():
                used = in_use[res]
                in_use[res] = used + units
                if used < limits[res] <= used + units:
                    self._free -= 1
        else:
            # GroupUsageBook.add, inlined into the same walk of the request: this is the
            # per-task path of every policy that reads group usage.
            group = item.group
            key = group.key
            use = groups.by_group.get(key)
            if use is None:
                use = groups.by_group[key] = {}
            for res, units in resources.items():
                used = in_use[res]
                in_use[res] = used + units
                if used < limits[res] <= used + units:
                    self._free -= 1
                before = use.get(res, 0)
                use[res] = before + units
                if before == 0:
                    groups.holders[res][key] = group.weight
                    groups.holder_weight[res] += group.weight
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

    @trio.lowlevel.enable_ki_protection
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
        groups = self._groups
        if not groups.tracking:
            for res, units in held.resources.items():
                used = in_use[res]
                in_use[res] = used - units
                if used - units < limits[res] <= used:
                    self._free += 1
            return
        # GroupUsageBook.remove, inlined into the same walk (see try_acquire).
        key = held.item.group.key
        use = groups.by_group[key]
        for res, units in held.resources.items():
            used = in_use[res]
            in_use[res] = used - units
            if used - units < limits[res] <= used:
                self._free += 1
            left = use[res] - units
            if left:
                use[res] = left
            else:
                del use[res]
                holders = groups.holders[res]
                weight = holders.pop(key)
                # Exactly 0.0 once nobody holds it: float sums must not keep a residue.
                groups.holder_weight[res] = groups.holder_weight[res] - weight if holders else 0.0
        if not use:
            del groups.by_group[key]

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
            in_use_by_group=self._groups.copy_by_group(),
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

    @trio.lowlevel.enable_ki_protection
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
        # In place: the usage view handed to policies reads these very dictionaries.
        self._limits.update(new_limits)
        for key in new_limits:
            self._in_use.setdefault(key, 0)
            self._groups.add_resource(key)
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

    @trio.lowlevel.enable_ki_protection
    def begin_shutdown(self) -> None:
        """Deny every new admission with reason ``shutdown``; held leases stay valid."""
        self._shutting_down = True
        self._mutations += 1
