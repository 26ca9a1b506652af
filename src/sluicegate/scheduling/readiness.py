"""Readiness: which tasks have all their inputs.

A :class:`CompletionTracker` owns the dependency state of a run. The scheduler pulls the
ready frontier from it, tells it which tasks it accepted into the queue, and reports every
terminal outcome back. Nothing in this module knows about queues, leases or trio tasks.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Final, Generic, Literal, Protocol, runtime_checkable

import msgspec

from .._internal.checks import describe, did_you_mean, is_number
from .._internal.clock import now as _now
from ..errors import (
    ConfigurationError,
    DependencyCycleError,
    DuplicateTaskError,
    TaskStateError,
    UnknownDependencyError,
)
from .task import (
    DEFAULT_GROUP,
    DEFAULT_RESOURCE_REQUEST,
    PayloadT,
    SchedulableTask,
    SchedulerResourceRequest,
    TaskGroupSpec,
    validate_resource_request,
)

OutcomeKind = Literal["success", "retry", "drop"]


OUTCOME_KINDS: Final[tuple[OutcomeKind, ...]] = ("success", "retry", "drop")


class TaskOutcome(msgspec.Struct, frozen=True, gc=False):
    """How an attempt ended, as far as readiness cares.

    ``success`` releases dependents; ``retry`` makes the task ready again after
    ``delay`` seconds; ``drop`` removes the task and everything downstream of it. Checked at
    construction (an unknown ``kind`` would otherwise read as a drop).
    """

    kind: OutcomeKind
    delay: float = 0.0
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTCOME_KINDS:
            raise ConfigurationError(
                "TaskOutcome.kind",
                f"got {describe(self.kind)}" + did_you_mean(str(self.kind), OUTCOME_KINDS),
                "use TaskOutcome.success(), TaskOutcome.retry(delay) or TaskOutcome.drop(reason)",
            )
        delay = self.delay
        if not (is_number(delay) and 0 <= delay < math.inf):
            raise ConfigurationError(
                "TaskOutcome.delay",
                f"got {describe(delay)}",
                "use a finite number of seconds >= 0",
            )
        if self.reason is not None and not isinstance(self.reason, str):
            raise ConfigurationError(
                "TaskOutcome.reason", f"got {describe(self.reason)}", "use a string or None"
            )

    @classmethod
    def success(cls) -> TaskOutcome:
        """The attempt succeeded."""
        return _SUCCESS

    @classmethod
    def retry(cls, delay: float = 0.0, reason: str | None = None) -> TaskOutcome:
        """Run the task again after ``delay`` seconds (counts as an attempt)."""
        return cls("retry", delay, reason)

    @classmethod
    def drop(cls, reason: str | None = None) -> TaskOutcome:
        """The task failed for good; drop it and everything downstream."""
        return cls("drop", 0.0, reason)


_SUCCESS: Final = TaskOutcome("success")


@runtime_checkable
class CompletionTracker(Protocol[PayloadT]):
    """Owns readiness for one run (generic in the tasks' payload type).

    ``ready_frontier`` returns tasks whose dependencies are complete and that have not yet
    been accepted by the queue; ``mark_enqueued`` records that acceptance. ``mark_complete``
    returns the ids of tasks dropped as a consequence (downstream of a dropped task).
    """

    def ready_frontier(self) -> Sequence[SchedulableTask[PayloadT]]: ...

    def mark_enqueued(self, task_ids: Iterable[Hashable]) -> None: ...

    def mark_complete(
        self, task: SchedulableTask[PayloadT], outcome: TaskOutcome
    ) -> Sequence[Hashable]: ...

    @property
    def is_finished(self) -> bool: ...

    def next_ready_at(self) -> float | None:
        """Earliest time a deferred (retrying) task becomes ready, or ``None``."""
        ...


# Task states inside the DAG tracker.
_PENDING: Final = 0  # waiting for dependencies


_READY: Final = 1  # dependencies met, not yet accepted by the queue


_ENQUEUED: Final = 2  # accepted by the queue (queued or running)


_DEFERRED: Final = 3  # retry scheduled, becomes ready at a given time


_DONE: Final = 4


_DROPPED: Final = 5


class DagCompletionTracker(Generic[PayloadT]):
    """A generic task DAG: tasks with dependencies, groups and resource requests.

    ``DagCompletionTracker[Row]()`` holds tasks whose payload is a ``Row`` (for type checkers;
    unannotated, the payload type is ``Any``).

    Build it incrementally with :meth:`add` (dependencies may be added in any order) and
    :meth:`seal` it, or in one go with :meth:`from_tasks`. Sealing rejects unknown
    dependencies and cycles with errors naming the tasks involved. Tasks added after
    sealing must depend only on tasks already present (so no cycle can appear).

    Every operation costs O(1) per task or dependency edge touched; the frontier is
    maintained incrementally, never recomputed by scanning.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, SchedulableTask[PayloadT]] = {}
        self._deps: dict[Hashable, tuple[Hashable, ...]] = {}
        self._dependents: dict[Hashable, list[Hashable]] = {}
        self._unmet: dict[Hashable, int] = {}
        self._state: dict[Hashable, int] = {}
        self._ready: dict[Hashable, None] = {}  # insertion-ordered set
        self._deferred: list[tuple[float, int, Hashable]] = []
        self._deferred_seq = itertools.count()
        self._unfinished = 0
        self._sealed = False
        self.dropped: dict[Hashable, str] = {}
        """Dropped task id -> reason (its own failure, or the upstream task that failed)."""
        # Dropped downstream task -> the failed task that started the drop.
        self._drop_origin: dict[Hashable, Hashable] = {}

    # -- building -------------------------------------------------------------------------

    def add(
        self,
        task_id: Hashable,
        payload: PayloadT = None,  # type: ignore[assignment]  # None only if PayloadT allows
        *,
        depends_on: Iterable[Hashable] = (),
        group: TaskGroupSpec | str | None = None,
        weight: float | None = None,
        resources: SchedulerResourceRequest = DEFAULT_RESOURCE_REQUEST,
    ) -> SchedulableTask[PayloadT]:
        """Add one task.

        ``group`` is a :class:`TaskGroupSpec`, or a group key with an optional ``weight``
        (default 1.0); without ``group`` the task is in the ``"default"`` group of weight 1.
        A ``weight`` beside a ``TaskGroupSpec`` (which has its own) or without a ``group`` is
        a :class:`~sluicegate.ConfigurationError`: it would otherwise be silently ignored.
        """
        spec = self._group_spec(task_id, group, weight)
        task: SchedulableTask[PayloadT] = SchedulableTask(task_id, payload, spec, resources)
        self.add_task(task, depends_on)
        return task

    @staticmethod
    def _group_spec(
        task_id: Hashable, group: TaskGroupSpec | str | None, weight: float | None
    ) -> TaskGroupSpec:
        if group is None:
            if weight is not None:
                raise ConfigurationError(
                    f"task {task_id!r}.weight",
                    f"weight {describe(weight)} given without a group",
                    "name the group it weighs: add(..., group='name', weight=...)",
                )
            return DEFAULT_GROUP
        if isinstance(group, TaskGroupSpec):
            if weight is not None:
                raise ConfigurationError(
                    f"task {task_id!r}.weight",
                    f"weight {describe(weight)} given beside {group!r}, which has its own",
                    "set the weight in the TaskGroupSpec, or pass the group's key instead",
                )
            return group
        if not isinstance(group, str):
            raise ConfigurationError(
                f"task {task_id!r}.group",
                f"got {describe(group)}",
                "pass a group key (a non-empty string) or a TaskGroupSpec",
            )
        return TaskGroupSpec(group, 1.0 if weight is None else weight)

    def add_task(
        self, task: SchedulableTask[PayloadT], depends_on: Iterable[Hashable] = ()
    ) -> None:
        """Add a prepared :class:`SchedulableTask` with its dependencies."""
        if not isinstance(task, SchedulableTask):
            raise ConfigurationError(
                "DagCompletionTracker.add_task.task",
                f"got {describe(task)}",
                "pass a SchedulableTask, or use add(task_id, payload, ...)",
            )
        task_id = task.task_id
        try:
            known = task_id in self._tasks
        except TypeError:
            raise ConfigurationError(
                "SchedulableTask.task_id",
                f"{describe(task_id)} is not hashable",
                "use a str, an int or a tuple of those as the task id",
            ) from None
        if known:
            raise DuplicateTaskError(task_id)
        validate_resource_request(task_id, task.resources)
        if isinstance(depends_on, (str, bytes)):
            # A lone id would be read as its characters, each one a dependency.
            raise ConfigurationError(
                f"task {task_id!r}.depends_on",
                f"got the string {depends_on!r}",
                f"pass a list of task ids, e.g. [{depends_on!r}]",
            )
        try:
            deps = tuple(dict.fromkeys(depends_on))
        except TypeError:
            raise ConfigurationError(
                f"task {task_id!r}.depends_on",
                f"{describe(depends_on)} is not a collection of hashable task ids",
                "pass a list of task ids",
            ) from None
        if task_id in deps:
            raise DependencyCycleError([task_id])
        if self._sealed:
            missing = [d for d in deps if d not in self._tasks]
            if missing:
                raise UnknownDependencyError(task_id, missing)
        self._tasks[task_id] = task
        self._deps[task_id] = deps
        self._dependents.setdefault(task_id, [])
        self._unfinished += 1
        if self._sealed:
            self._link(task_id)

    @classmethod
    def from_tasks(
        cls,
        tasks: Iterable[
            SchedulableTask[PayloadT] | tuple[SchedulableTask[PayloadT], Iterable[Hashable]]
        ],
    ) -> DagCompletionTracker[PayloadT]:
        """Build and seal a tracker from tasks or ``(task, depends_on)`` pairs."""
        tracker: DagCompletionTracker[PayloadT] = cls()
        for entry in tasks:
            if isinstance(entry, SchedulableTask):
                tracker.add_task(entry)
            else:
                task, deps = entry
                tracker.add_task(task, deps)
        tracker.seal()
        return tracker

    def seal(self) -> None:
        """Validate the graph (unknown dependencies, cycles) and compute the first frontier.

        Idempotent. Called implicitly by the first :meth:`ready_frontier`.
        """
        if self._sealed:
            return
        for task_id, deps in self._deps.items():
            missing = [d for d in deps if d not in self._tasks]
            if missing:
                raise UnknownDependencyError(task_id, missing)
        self._check_acyclic()
        self._sealed = True
        for task_id in self._tasks:
            self._link(task_id)

    def _link(self, task_id: Hashable) -> None:
        unmet = 0
        for dep in self._deps[task_id]:
            self._dependents[dep].append(task_id)
            dep_state = self._state.get(dep, _PENDING)
            if dep_state == _DROPPED:
                # The deps linked so far still list it as a dependent: their completion
                # must find its counter (and leave it dropped).
                self._unmet[task_id] = unmet
                origin = self._drop_origin.get(dep, dep)
                self._drop(task_id, f"upstream {origin!r}", [], origin)
                return
            if dep_state != _DONE:
                unmet += 1
        self._unmet[task_id] = unmet
        if unmet == 0:
            self._state[task_id] = _READY
            self._ready[task_id] = None
        else:
            self._state[task_id] = _PENDING

    def _check_acyclic(self) -> None:
        # Iterative three-colour DFS; on a back edge, report the cycle path.
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self._tasks, white)
        for root in self._tasks:
            if colour[root] != white:
                continue
            stack: list[tuple[Hashable, Iterable[Hashable]]] = [(root, iter(self._deps[root]))]
            path = [root]
            colour[root] = grey
            while stack:
                node, children = stack[-1]
                for child in children:
                    if colour[child] == grey:
                        raise DependencyCycleError(path[path.index(child) :])
                    if colour[child] == white:
                        colour[child] = grey
                        stack.append((child, iter(self._deps[child])))
                        path.append(child)
                        break
                else:
                    colour[node] = black
                    stack.pop()
                    path.pop()

    # -- CompletionTracker ----------------------------------------------------------------

    def ready_frontier(self) -> list[SchedulableTask[PayloadT]]:
        """Ready tasks not yet accepted by the queue, in the order they became ready."""
        if not self._sealed:
            self.seal()
        if self._deferred:
            self._promote_due(_now())
        tasks = self._tasks
        return [tasks[t] for t in self._ready]

    def mark_enqueued(self, task_ids: Iterable[Hashable]) -> None:
        ready = self._ready
        state = self._state
        for task_id in task_ids:
            if ready.pop(task_id, 0) is None:
                state[task_id] = _ENQUEUED
            elif state.get(task_id) != _ENQUEUED:
                raise TaskStateError(task_id, "marked enqueued but it is not ready")

    def mark_complete(
        self, task: SchedulableTask[PayloadT], outcome: TaskOutcome
    ) -> list[Hashable]:
        """Record a terminal or retry outcome of an enqueued task.

        Returns the ids dropped as a consequence (empty unless ``outcome`` is a drop).
        """
        task_id = task.task_id
        if self._state.get(task_id) != _ENQUEUED:
            raise TaskStateError(
                task_id, "completed but it was not enqueued (was it completed twice?)"
            )
        kind = outcome.kind
        if kind == "success":
            self._state[task_id] = _DONE
            self._unfinished -= 1
            unmet = self._unmet
            for child in self._dependents[task_id]:
                left = unmet[child] - 1
                unmet[child] = left
                if left == 0 and self._state[child] == _PENDING:
                    self._state[child] = _READY
                    self._ready[child] = None
            return []
        if kind == "retry":
            if outcome.delay <= 0:
                self._state[task_id] = _READY
                self._ready[task_id] = None
            else:
                self._state[task_id] = _DEFERRED
                ready_at = _now() + outcome.delay
                heapq.heappush(self._deferred, (ready_at, next(self._deferred_seq), task_id))
            return []
        dropped: list[Hashable] = []
        self._drop(task_id, outcome.reason or "dropped", dropped)
        return dropped[1:]

    def _drop(
        self,
        root: Hashable,
        reason: str,
        dropped: list[Hashable],
        origin: Hashable | None = None,
    ) -> None:
        """Drop ``root`` and everything downstream; downstream reasons name ``origin`` (the
        task whose failure started it: ``root`` itself unless given)."""
        if origin is None:
            origin = root
        downstream = f"upstream {origin!r}"
        stack = [(root, reason)]
        while stack:
            task_id, why = stack.pop()
            if self._state.get(task_id) in (_DROPPED, _DONE):
                continue
            self._ready.pop(task_id, None)
            self._state[task_id] = _DROPPED
            self.dropped[task_id] = why
            if task_id != origin:
                self._drop_origin[task_id] = origin
            self._unfinished -= 1
            dropped.append(task_id)
            for child in self._dependents.get(task_id, ()):
                stack.append((child, downstream))

    def _promote_due(self, now: float) -> None:
        deferred = self._deferred
        while deferred and deferred[0][0] <= now:
            _, _, task_id = heapq.heappop(deferred)
            if self._state.get(task_id) == _DEFERRED:
                self._state[task_id] = _READY
                self._ready[task_id] = None

    def next_ready_at(self) -> float | None:
        return self._deferred[0][0] if self._deferred else None

    @property
    def is_finished(self) -> bool:
        """True when every task succeeded or was dropped."""
        return self._unfinished == 0

    # -- inspection -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def tasks(self) -> Mapping[Hashable, SchedulableTask[PayloadT]]:
        return self._tasks

    def dependencies(self, task_id: Hashable) -> tuple[Hashable, ...]:
        return self._deps[task_id]

    def state_of(self, task_id: Hashable) -> str:
        """``pending``, ``ready``, ``enqueued``, ``deferred``, ``done`` or ``dropped``."""
        return _STATE_NAMES[self._state.get(task_id, _PENDING)]


_STATE_NAMES: Final = ("pending", "ready", "enqueued", "deferred", "done", "dropped")
