"""The task admission policy contract: protocol, typed decision, state deltas, live usage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol, runtime_checkable

import msgspec

from ..._internal.clock import now as _now
from ..group_usage import GroupUsageBook
from ..leases import DenialReason, PeerSkip, TaskAdmissionLease
from ..queue import QueueView
from ..task import SchedulableTask, SchedulerResourceKey


class TaskAdmissionPolicyDecision(msgspec.Struct, frozen=True, gc=False):
    """A policy's verdict, as a typed value (the scheduler reads its fields, never ``detail``).

    - allow: ``allowed`` true and nothing else (use :data:`ALLOW` or :meth:`allow`);
    - deny: ``allowed`` false with a ``reason``, optionally the ``resource`` that blocked, an
      ``available_after`` time hint and a human-readable ``detail`` (:meth:`deny`);
    - skip: a denial (reason ``policy_denied``) that holds the task back in favour of a named
      peer group; ``skip`` says which peer, endpoint and signal (:meth:`skip_for`).
    """

    allowed: bool
    reason: DenialReason | None = None
    resource: str | None = None
    available_after: float | None = None
    detail: str | None = None
    skip: PeerSkip | None = None

    @classmethod
    def allow(cls) -> TaskAdmissionPolicyDecision:
        """The task may run (as far as this policy cares)."""
        return ALLOW

    @classmethod
    def deny(
        cls,
        reason: DenialReason = "policy_denied",
        *,
        resource: str | None = None,
        available_after: float | None = None,
        detail: str | None = None,
    ) -> TaskAdmissionPolicyDecision:
        """The task may not run now, for ``reason``."""
        return cls(False, reason, resource, available_after, detail)

    @classmethod
    def skip_for(cls, skip: PeerSkip) -> TaskAdmissionPolicyDecision:
        """Hold the task back so that ``skip.peer_group``'s head runs instead."""
        return cls(False, "policy_denied", detail=skip.describe(), skip=skip)


ALLOW: Final = TaskAdmissionPolicyDecision(True)


class PolicyStateDelta(msgspec.Struct, frozen=True, gc=False):
    """Additive changes to the policy's named counters, applied by the controller."""

    changes: tuple[tuple[str, int], ...]


class TaskAdmissionUsage:
    """Read-only live usage counters of a controller, handed to policies.

    Policies read this instead of a frozen :class:`TaskAdmissionView` so that evaluation
    stays O(1): every accessor is a dictionary lookup on the controller's live state. Do not
    keep it (or a mapping it returns) beyond the call, and never mutate what it returns.
    """

    __slots__ = ("_groups", "_in_use", "_limits", "_policy_state")

    def __init__(
        self,
        limits: Mapping[SchedulerResourceKey, int],
        in_use: Mapping[SchedulerResourceKey, int],
        groups: GroupUsageBook,
        policy_state: Mapping[str, int],
    ) -> None:
        # The controller's own state: it mutates it in place, this only reads.
        self._limits = limits
        self._in_use = in_use
        self._groups = groups
        self._policy_state = policy_state

    def limit(self, resource: SchedulerResourceKey) -> int:
        """The capacity of ``resource``; ``KeyError`` for an undeclared resource."""
        return self._limits[resource]

    def in_use(self, resource: SchedulerResourceKey) -> int:
        """Units of ``resource`` held by live leases."""
        return self._in_use[resource]

    # Per-group facts: the controller keeps them only once a policy reads one (the first read
    # costs O(live leases), each one after it O(1)); see group_usage.GroupUsageBook.

    def group_in_use(self, group_key: str, resource: SchedulerResourceKey) -> int:
        """Units of ``resource`` held by the live leases of ``group_key``."""
        groups = self._groups
        if not groups.tracking:
            groups.ensure()
        g = groups.by_group.get(group_key)
        return g.get(resource, 0) if g is not None else 0

    def group_usage(self, group_key: str) -> Mapping[SchedulerResourceKey, int] | None:
        """Resource -> units held by ``group_key`` (live; ``None`` if it holds nothing)."""
        groups = self._groups
        if not groups.tracking:
            groups.ensure()
        return groups.by_group.get(group_key)

    def holders(self, resource: SchedulerResourceKey) -> Mapping[str, float]:
        """Group key -> weight of the groups holding ``resource`` (live)."""
        groups = self._groups
        if not groups.tracking:
            groups.ensure()
        return groups.holders[resource]

    def holder_weight(self, resource: SchedulerResourceKey) -> float:
        """Sum of the weights of the groups holding ``resource``."""
        groups = self._groups
        if not groups.tracking:
            groups.ensure()
        return groups.holder_weight[resource]

    def policy_counter(self, key: str) -> int:
        """The policy counter ``key`` (0 when never set)."""
        return self._policy_state.get(key, 0)

    @property
    def policy_counters(self) -> Mapping[str, int]:
        """Every non-zero policy counter (live, read-only)."""
        return self._policy_state

    @property
    def now(self) -> float:
        """The run's clock (trio's, so virtual clocks are honoured)."""
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
