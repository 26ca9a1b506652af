"""The readiness vocabulary: what a schedulable task is."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any, Final, Generic, TypeAlias

import msgspec
from typing_extensions import TypeVar

from .._internal.checks import describe, is_number
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


MIN_GROUP_WEIGHT: Final = 1e-6


MAX_GROUP_WEIGHT: Final = 1e6


"""The accepted range of :attr:`TaskGroupSpec.weight`, inclusive. Within it the fair queue's
integer virtual time serves every pair of groups in the ratio of their weights (to within one
part in a million); outside it no arithmetic could keep both ends fair."""


class TaskGroupSpec(msgspec.Struct, frozen=True, gc=False):
    """The fairness group of a task: a key and a positive weight.

    Groups with weights 3 and 1 receive admissions in a 3:1 ratio while both have work. The
    weight is a finite number from :data:`MIN_GROUP_WEIGHT` (1e-6) to
    :data:`MAX_GROUP_WEIGHT` (1e6).
    """

    key: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigurationError(
                "TaskGroupSpec.key",
                f"must be a non-empty string, got {describe(self.key)}",
                "name the group",
            )
        w = self.weight
        if not (is_number(w) and MIN_GROUP_WEIGHT <= w <= MAX_GROUP_WEIGHT):
            raise ConfigurationError(
                "TaskGroupSpec.weight",
                f"group {self.key!r} has weight {describe(w)}",
                f"use a number from {MIN_GROUP_WEIGHT:g} to {MAX_GROUP_WEIGHT:g} "
                "(only ratios between groups matter: scale them into that range)",
            )


DEFAULT_GROUP: Final = TaskGroupSpec("default", 1.0)


class SchedulableTask(msgspec.Struct, Generic[PayloadT], frozen=True):
    """A unit of work the scheduler can admit.

    ``task_id`` is stable and unique within a run (hashable); ``payload`` is opaque to every
    layer; ``group`` is a :class:`TaskGroupSpec`; ``resources`` maps scheduler resource names
    to the whole, positive number of units the task holds while running. ``prior_attempts``
    (default 0) is how many attempts the task already had before this release, counted by a
    tracker that outlives one scheduler (a pipeline runs one scheduler per segment of cells):
    the scheduler numbers the dispatch at least ``prior_attempts + 1``, so attempt numbers
    (events, outcomes, ``RetryPolicy.max_attempts``) continue instead of restarting. Checked
    at construction (:class:`~sluicegate.ConfigurationError` naming the field).

    Generic in the payload type: a ``DagCompletionTracker[Row]`` hands its worker
    ``SchedulableTask[Row]`` (a static-typing aid only; nothing is checked at runtime).
    """

    task_id: Any
    payload: PayloadT = None  # type: ignore[assignment]  # None only when PayloadT allows it
    group: TaskGroupSpec = DEFAULT_GROUP
    resources: SchedulerResourceRequest = DEFAULT_RESOURCE_REQUEST
    prior_attempts: int = 0

    def __post_init__(self) -> None:
        task_id = self.task_id
        prior = self.prior_attempts
        if prior != 0 and (type(prior) is not int or prior < 0):
            raise ConfigurationError(
                f"task {task_id!r}.prior_attempts",
                f"got {describe(prior)}, not a whole number >= 0",
                "pass the number of attempts the task already had (0 for a new task)",
            )
        try:
            hash(task_id)
        except TypeError:
            raise ConfigurationError(
                "SchedulableTask.task_id",
                f"{describe(task_id)} is not hashable",
                "use a str, an int or a tuple of those as the task id",
            ) from None
        if type(self.group) is not TaskGroupSpec:
            group = self.group
            raise ConfigurationError(
                f"task {task_id!r}.group",
                f"got {describe(group)}, not a TaskGroupSpec",
                f"pass TaskGroupSpec({group!r}, weight)"
                if isinstance(group, str)
                else "pass a TaskGroupSpec(key, weight)",
            )
        if self.resources is not DEFAULT_RESOURCE_REQUEST:
            validate_resource_request(task_id, self.resources)


def validate_resource_request(task_id: Any, resources: object) -> None:
    """Reject a request that is not a non-empty mapping of names to positive integers."""
    if not isinstance(resources, Mapping):
        raise ConfigurationError(
            f"task {task_id!r}.resources",
            f"got {describe(resources)}, not a mapping",
            f"map resource names to units, e.g. {{{DEFAULT_RESOURCE!r}: 1}}",
        )
    if not resources:
        raise ConfigurationError(
            f"task {task_id!r}.resources",
            "requests no resource",
            f"request at least one unit, e.g. {{{DEFAULT_RESOURCE!r}: 1}}",
        )
    for key, amount in resources.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"task {task_id!r}.resources",
                f"resource name {describe(key)}",
                "name resources with non-empty strings",
            )
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ConfigurationError(
                f"task {task_id!r}.resources[{key!r}]",
                f"amount {describe(amount)} is not a positive integer",
                "request a whole number of units, at least 1",
            )
