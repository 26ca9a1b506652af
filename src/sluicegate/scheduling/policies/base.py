"""The task admission policy contract: protocol, typed decision, state deltas, live usage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import msgspec

from ..._internal.clock import now as _now
from ..leases import DenialReason, TaskAdmissionLease
from ..queue import QueueView
from ..task import SchedulableTask, SchedulerResourceKey

if TYPE_CHECKING:
    from ..admission import TaskAdmissionController


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
