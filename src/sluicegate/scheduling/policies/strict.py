"""StrictFairPolicy: the default policy (capacity only, optional per-group caps)."""

from __future__ import annotations

from collections.abc import Mapping

from ..._internal.checks import describe
from ...errors import ConfigurationError, UnknownResourceError
from ..leases import TaskAdmissionLease
from ..queue import QueueView
from ..task import SchedulableTask
from .base import ALLOW, PolicyStateDelta, TaskAdmissionPolicyDecision, TaskAdmissionUsage


class StrictFairPolicy:
    """The default policy: capacity only, plus optional per-group caps.

    Fairness itself comes from the queue's weighted order; this policy never lets a group
    hold more than ``group_caps[group][resource]`` units (denial reason ``group_capped``).
    """

    name = "strict_fair"

    def __init__(self, group_caps: Mapping[str, Mapping[str, int]] | None = None) -> None:
        caps: dict[str, dict[str, int]] = {}
        if group_caps is not None and not isinstance(group_caps, Mapping):
            raise ConfigurationError(
                "StrictFairPolicy.group_caps",
                f"got {describe(group_caps)}, not a mapping",
                "map group keys to {resource: cap}, e.g. {'judge': {'submission': 2}}",
            )
        for group, per_res in (group_caps or {}).items():
            if not isinstance(group, str) or not group:
                raise ConfigurationError(
                    "StrictFairPolicy.group_caps",
                    f"group key {describe(group)}",
                    "key caps by group key (a non-empty string)",
                )
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
