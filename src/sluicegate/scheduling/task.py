"""The readiness vocabulary: what a schedulable task is."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any, Final, Generic, TypeAlias

import msgspec
from typing_extensions import TypeVar

from ..errors import ConfigurationError

SchedulerResourceKey: TypeAlias = str


"""Name of a scheduler resource (``"submission"`` unless configured otherwise)."""


SchedulerResourceRequest: TypeAlias = Mapping[SchedulerResourceKey, int]


"""How many units of each scheduler resource a task holds while it runs."""


TaskId: TypeAlias = Hashable


PayloadT = TypeVar("PayloadT", default=Any)
"""The type of a task's payload; ``Any`` unless a tracker or task says otherwise."""


DEFAULT_RESOURCE: Final[SchedulerResourceKey] = "submission"


DEFAULT_RESOURCE_REQUEST: Final[SchedulerResourceRequest] = MappingProxyType({DEFAULT_RESOURCE: 1})


class TaskGroupSpec(msgspec.Struct, frozen=True, gc=False):
    """The fairness group of a task: a key and a positive weight.

    Groups with weights 3 and 1 receive admissions in a 3:1 ratio while both have work.
    """

    key: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigurationError(
                "TaskGroupSpec.key",
                f"must be a non-empty string, got {self.key!r}",
                "name the group",
            )
        w = self.weight
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w <= 0:
            raise ConfigurationError(
                "TaskGroupSpec.weight",
                f"group {self.key!r} has weight {w!r}",
                "use a finite number greater than 0",
            )


DEFAULT_GROUP: Final = TaskGroupSpec("default", 1.0)


class SchedulableTask(msgspec.Struct, Generic[PayloadT], frozen=True):
    """A unit of work the scheduler can admit.

    ``task_id`` is stable and unique within a run; ``payload`` is opaque to every layer;
    ``resources`` maps scheduler resource names to the units the task holds while running.
    Generic in the payload type: a ``DagCompletionTracker[Row]`` hands its worker
    ``SchedulableTask[Row]`` (a static-typing aid only; nothing is checked at runtime).
    """

    task_id: Any
    payload: PayloadT = None  # type: ignore[assignment]  # None only when PayloadT allows it
    group: TaskGroupSpec = DEFAULT_GROUP
    resources: SchedulerResourceRequest = DEFAULT_RESOURCE_REQUEST


def validate_resource_request(task_id: Any, resources: SchedulerResourceRequest) -> None:
    """Reject empty requests and non-positive or non-integer amounts."""
    if not resources:
        raise ConfigurationError(
            f"task {task_id!r}.resources",
            "requests no resource",
            f"request at least one unit, e.g. {{{DEFAULT_RESOURCE!r}: 1}}",
        )
    for key, amount in resources.items():
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ConfigurationError(
                f"task {task_id!r}.resources[{key!r}]",
                f"amount {amount!r} is not a positive integer",
                "request a whole number of units, at least 1",
            )
