"""Ready ordering: whose turn is it among ready tasks.

:class:`FairTaskQueue` orders ready tasks by weighted fair queuing across groups (stride
scheduling over a virtual time) and FIFO inside a group. It knows nothing about admission:
eligibility is a callback handed to :meth:`FairTaskQueue.select_next`.

Costs: ``enqueue`` is O(log G) per task for a group that becomes active and O(1) otherwise;
``select_next`` is O(1) when the head of the fairest group is eligible and O(k log k) when
it has to look at k groups; ``commit`` is O(log G). G is the number of groups with queued
tasks; nothing scans all queued tasks. The heap holds exactly one entry per group with queued
tasks (no lazily deleted entries), so a head that stays ineligible never makes later
selections pay for the groups served around it.

Virtual time is an integer: a group's stride is ``round(2**40 / weight)``. Integer arithmetic
never absorbs a small stride into a large pass (as floats do once passes grow), so the
weighted order holds for every accepted weight (``TaskGroupSpec`` bounds weights to
[1e-6, 1e6]: strides from about 1.1e6 to 1.1e18, each within one part in a million of the
exact ratio) and for runs of any length.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, Final

import msgspec

from .._internal.checks import describe
from ..errors import ConfigurationError
from .task import SchedulableTask, SchedulerResourceKey

_STRIDE_SCALE: Final = 2**40


"""Virtual time per task of a weight-1 group; a group's stride is this over its weight."""


def _stride(weight: float) -> int:
    return max(1, round(_STRIDE_SCALE / weight))


class QueueSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Frozen copy of the queue's facts, for events, results and diagnostics."""

    sequence_version: int
    queued_total: int
    count_by_group: dict[str, int]
    demand_by_group: dict[str, dict[str, int]]
    first_candidate_by_group: dict[str, Any]
    virtual_time: float


class _Group:
    __slots__ = ("demand", "entry", "key", "pass_", "stride", "tasks", "weight")

    def __init__(self, key: str, weight: float) -> None:
        self.key = key
        self.weight = weight
        self.stride = _stride(weight)
        self.pass_ = 0
        self.tasks: deque[SchedulableTask] = deque()
        self.demand: dict[SchedulerResourceKey, int] = {}
        # The heap entry [pass, seq, group] while the group is active, else None.
        self.entry: list[Any] | None = None


class _QueueState:
    """The live state of one :class:`FairTaskQueue`, shared with its :class:`QueueView` s.

    Plain fields guarded by the single-threaded event loop; only the queue writes them.
    """

    __slots__ = (
        "active",
        "count",
        "demand_groups",
        "demand_weight",
        "forget_at",
        "groups",
        "heap",
        "ids",
        "seq",
        "tracks_demand",
        "version",
        "vtime",
    )

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.forget_at = 0
        self.heap: list[list[Any]] = []
        self.active = 0
        self.ids: set[Hashable] = set()
        self.count = 0
        self.version = 0
        self.vtime = 0
        self.seq = itertools.count()
        self.demand_groups: dict[SchedulerResourceKey, int] = {}
        self.demand_weight: dict[SchedulerResourceKey, float] = {}
        # Demand by group and resource is kept only once someone has asked for it (a policy
        # such as BoundedBorrowPolicy, a snapshot): until then enqueue and commit skip it.
        self.tracks_demand = False

    def track_demand(self) -> None:
        """Start keeping demand up to date: computed once from the queued tasks, O(queued),
        then maintained by every enqueue and commit."""
        if self.tracks_demand:
            return
        self.tracks_demand = True
        for g in self.groups.values():
            for item in g.tasks:
                self.add_demand(g, item.resources)

    def add_demand(self, g: _Group, resources: Mapping[SchedulerResourceKey, int]) -> None:
        """Count ``resources`` as queued demand of ``g``."""
        demand = g.demand
        for res, units in resources.items():
            before = demand.get(res, 0)
            demand[res] = before + units
            if before == 0:
                self.demand_groups[res] = self.demand_groups.get(res, 0) + 1
                self.demand_weight[res] = self.demand_weight.get(res, 0.0) + g.weight

    def remove_demand(self, g: _Group, resources: Mapping[SchedulerResourceKey, int]) -> None:
        """Stop counting ``resources`` as queued demand of ``g``."""
        demand = g.demand
        for res, units in resources.items():
            left = demand[res] - units
            if left:
                demand[res] = left
            else:
                del demand[res]
                left_groups = self.demand_groups[res] - 1
                self.demand_groups[res] = left_groups
                # Exactly 0.0 once no group is left: float sums must not keep a residue.
                self.demand_weight[res] = self.demand_weight[res] - g.weight if left_groups else 0.0


class QueueView:
    """Read-only facts about the queue at one dispatch step; no eligibility.

    A view reads the queue's live counters (so taking one is O(1), and so is every query
    below unless it says otherwise); it describes the queue as of ``sequence_version``. Use
    :meth:`snapshot` for a frozen copy that outlives the step.
    """

    __slots__ = ("_state", "sequence_version")

    def __init__(self, state: _QueueState, sequence_version: int) -> None:
        self._state = state
        self.sequence_version = sequence_version

    @property
    def is_current(self) -> bool:
        """False once the queue has changed since this view was taken."""
        return self._state.version == self.sequence_version

    @property
    def queued_total(self) -> int:
        """Tasks queued, over every group."""
        return self._state.count

    def queued_in_group(self, group_key: str) -> int:
        """Tasks queued in ``group_key`` (0 for an unknown group)."""
        g = self._state.groups.get(group_key)
        return len(g.tasks) if g is not None else 0

    def demand(self, group_key: str, resource: SchedulerResourceKey) -> int:
        """Units of ``resource`` requested by the queued tasks of ``group_key``.

        The demand queries are O(1), except the very first one on a queue: it makes the
        queue start keeping demand (O(queued tasks), once).
        """
        s = self._state
        if not s.tracks_demand:
            s.track_demand()
        g = s.groups.get(group_key)
        return g.demand.get(resource, 0) if g is not None else 0

    def groups_with_demand(self, resource: SchedulerResourceKey) -> int:
        """How many groups have queued tasks requesting ``resource``."""
        s = self._state
        if not s.tracks_demand:
            s.track_demand()
        return s.demand_groups.get(resource, 0)

    def demand_weight(self, resource: SchedulerResourceKey) -> float:
        """Sum of the weights of the groups with queued demand for ``resource``."""
        s = self._state
        if not s.tracks_demand:
            s.track_demand()
        return s.demand_weight.get(resource, 0.0)

    def first_candidate(self, group_key: str) -> SchedulableTask | None:
        """The head (oldest queued task) of ``group_key``, or ``None``."""
        g = self._state.groups.get(group_key)
        return g.tasks[0] if g is not None and g.tasks else None

    def heads_in_fair_order(self, limit: int) -> Iterator[SchedulableTask]:
        """The heads of at most ``limit`` groups with queued tasks, fairest group first.

        Lazy and bounded: yielding k heads costs O(k log k), whatever the number of groups
        (the order is read from the queue's heap without changing it). Meant for policies
        that look at a few peers; valid while :attr:`is_current`.
        """
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise ConfigurationError(
                "QueueView.heads_in_fair_order.limit", f"got {limit!r}", "use an integer"
            )
        heap = self._state.heap
        size = len(heap)
        if limit <= 0 or not size:
            return
        yield heap[0][2].tasks[0]
        found = 1
        frontier: list[tuple[int, int, int]] = []
        push, pop = heapq.heappush, heapq.heappop
        for child in (1, 2):
            if child < size:
                e = heap[child]
                push(frontier, (e[0], e[1], child))
        while frontier and found < limit:
            _, _, idx = pop(frontier)
            yield heap[idx][2].tasks[0]
            found += 1
            for child in (2 * idx + 1, 2 * idx + 2):
                if child < size:
                    e = heap[child]
                    push(frontier, (e[0], e[1], child))

    def active_groups(self) -> list[str]:
        """Keys of the groups with queued tasks, in no particular order. O(groups)."""
        return [k for k, g in self._state.groups.items() if g.tasks]

    def count_by_group(self) -> dict[str, int]:
        """Group key -> tasks queued, for the groups with queued tasks. O(groups)."""
        return {k: len(g.tasks) for k, g in self._state.groups.items() if g.tasks}

    def snapshot(self) -> QueueSnapshot:
        """A frozen copy of the queue's facts now. O(groups)."""
        s = self._state
        s.track_demand()
        active = [(k, g) for k, g in s.groups.items() if g.tasks]
        return QueueSnapshot(
            sequence_version=s.version,
            queued_total=s.count,
            count_by_group={k: len(g.tasks) for k, g in active},
            demand_by_group={k: dict(g.demand) for k, g in active},
            first_candidate_by_group={k: g.tasks[0].task_id for k, g in active},
            virtual_time=s.vtime / _STRIDE_SCALE,
        )


class QueueSelection(msgspec.Struct, frozen=True, gc=False):
    """The result of :meth:`FairTaskQueue.select_next`: a candidate, not a removal.

    ``sequence_version`` lets :meth:`FairTaskQueue.commit` detect that the queue changed
    between selection and commit. ``heap_index`` is where the selected group sits in the
    queue's heap (valid while ``sequence_version`` is current); it lets ``commit`` update that
    entry in place.
    """

    item: SchedulableTask
    view: QueueView
    sequence_version: int
    heap_index: int = 0


Eligibility = Callable[[SchedulableTask, QueueView], bool]


# Idle groups remembered beyond twice the active ones before the forgettable are dropped.
_IDLE_GROUPS_KEPT: Final = 1024


class FairTaskQueue:
    """Weighted fair queue of ready tasks.

    - ``enqueue`` is idempotent by ``task_id``: a task already queued is not accepted twice.
    - ``select_next`` never mutates; ``commit`` is the only removal.
    - A group that becomes active joins at the current virtual time, so idleness earns no
      credit; while groups stay active they are served in proportion to their weights.

    Not thread-safe; like every sluicegate primitive it lives in one trio event loop.
    """

    def __init__(self) -> None:
        self._state = _QueueState()

    # -- mutation ------------------------------------------------------------------------

    def enqueue(self, items: Iterable[SchedulableTask]) -> list[Hashable]:
        """Queue ``items`` (FIFO within each group); returns the ids actually accepted."""
        if isinstance(items, (SchedulableTask, str, bytes, Mapping)):
            raise ConfigurationError(
                "FairTaskQueue.enqueue.items",
                f"got {type(items).__name__}, not a collection of tasks",
                "pass a list of SchedulableTask (e.g. [task])",
            )
        s = self._state
        accepted: list[Hashable] = []
        ids = s.ids
        groups = s.groups
        for item in items:
            if type(item) is not SchedulableTask and not isinstance(item, SchedulableTask):
                s.count += len(accepted)  # what was accepted before it stays consistent
                s.version += 1
                raise ConfigurationError(
                    "FairTaskQueue.enqueue.items",
                    f"holds {describe(item)}, not a SchedulableTask",
                    "queue SchedulableTask values",
                )
            task_id = item.task_id
            if task_id in ids:
                continue
            ids.add(task_id)
            spec = item.group
            g = groups.get(spec.key)
            if g is None:
                g = groups[spec.key] = _Group(spec.key, spec.weight)
            elif g.weight != spec.weight and not g.tasks:
                g.weight = spec.weight
                g.stride = _stride(spec.weight)
            if s.tracks_demand:
                s.add_demand(g, item.resources)
            g.tasks.append(item)
            if g.entry is None:
                self._activate(g)
            accepted.append(task_id)
        if accepted:
            s.count += len(accepted)
            s.version += 1
        return accepted

    def _activate(self, g: _Group) -> None:
        s = self._state
        # No credit for idleness: an arriving group starts at the current virtual time.
        if g.pass_ < s.vtime:
            g.pass_ = s.vtime
        entry = [g.pass_, next(s.seq), g]
        g.entry = entry
        heapq.heappush(s.heap, entry)
        s.active += 1

    def commit(self, selection: QueueSelection) -> SchedulableTask | None:
        """Remove the selected task; ``None`` if the selection is stale (queue changed)."""
        s = self._state
        if selection.sequence_version != s.version:
            return None
        item = selection.item
        g = s.groups[item.group.key]
        tasks = g.tasks
        if not tasks or tasks[0] is not item:
            return None
        tasks.popleft()
        s.ids.discard(item.task_id)
        s.count -= 1
        s.version += 1
        if s.tracks_demand:
            s.remove_demand(g, item.resources)
        if g.pass_ > s.vtime:
            s.vtime = g.pass_
        g.pass_ += g.stride
        heap = s.heap
        entry = g.entry
        assert entry is not None
        index = selection.heap_index
        if index >= len(heap) or heap[index] is not entry:
            index = heap.index(entry)  # a selection not made by select_next
        # Update or remove the group's own entry where it sits. (Leaving a dead entry behind
        # instead would pile such entries up around a head that stays ineligible, and every
        # later select_next would walk them.)
        if tasks:
            entry[0] = g.pass_
            entry[1] = next(s.seq)
            if index == 0:
                heapq.heapreplace(heap, entry)
            else:
                _sift(heap, index)
        else:
            g.entry = None
            s.active -= 1
            if index == 0:
                heapq.heappop(heap)
            else:
                last = heap.pop()
                if index < len(heap):
                    heap[index] = last
                    _sift(heap, index)
            known = len(s.groups)
            if known > s.forget_at and known > 2 * s.active + _IDLE_GROUPS_KEPT:
                self._forget_idle_groups()
        return item

    def _forget_idle_groups(self) -> None:
        """Drop the state of idle groups, so many short-lived groups do not grow memory.

        An idle group owes at most one stride (``commit`` sets the virtual time to the served
        group's pass before adding its stride), so a forgotten group that comes back, joining
        at the current virtual time like a new one, gains at most one task's turn. Runs only
        when idle groups outnumber active ones by a wide margin and the table has doubled
        since the last sweep, so its O(groups) cost is amortised over that many commits.
        """
        s = self._state
        s.groups = {k: g for k, g in s.groups.items() if g.entry is not None}
        # Next sweep only after the table doubles: kept groups never make sweeps back-to-back.
        s.forget_at = 2 * len(s.groups)

    # -- selection -----------------------------------------------------------------------

    def select_next(self, is_eligible: Eligibility | None = None) -> QueueSelection | None:
        """The fairest eligible candidate, without removing it.

        Groups are visited in virtual-time order (ties: the group that became due first)
        and only each group's head task is considered, so FIFO holds inside a group.
        Returns ``None`` when the queue is empty or no head is eligible.
        """
        s = self._state
        heap = s.heap
        if not heap:
            return None
        # The version the choice is made against: if ``is_eligible`` changes the queue (it
        # should not), ``commit`` then sees the selection as stale.
        version = s.version
        view = QueueView(s, version)
        head = heap[0][2].tasks[0]
        if is_eligible is None or is_eligible(head, view):
            return QueueSelection(head, view, version)
        if len(heap) == 1:
            return None
        # Visit the heap in order without mutating it: a frontier of heap indices.
        frontier: list[tuple[int, int, int]] = []
        push, pop = heapq.heappush, heapq.heappop
        size = len(heap)
        for child in (1, 2):
            if child < size:
                e = heap[child]
                push(frontier, (e[0], e[1], child))
        while frontier:
            _, _, idx = pop(frontier)
            cand = heap[idx][2].tasks[0]
            if is_eligible(cand, view):
                return QueueSelection(cand, view, version, idx)
            for child in (2 * idx + 1, 2 * idx + 2):
                if child < size:
                    e = heap[child]
                    push(frontier, (e[0], e[1], child))
        return None

    # -- facts ---------------------------------------------------------------------------

    def view(self) -> QueueView:
        """Live read-only facts as of now (O(1)); see :class:`QueueView`."""
        return QueueView(self._state, self._state.version)

    def __len__(self) -> int:
        return self._state.count

    def is_empty(self) -> bool:
        """True when no task is queued."""
        return self._state.count == 0

    def __contains__(self, task_id: Hashable) -> bool:
        return task_id in self._state.ids

    @property
    def virtual_time(self) -> float:
        """The queue's virtual time (the pass of the group served last), in tasks of a
        weight-1 group."""
        return self._state.vtime / _STRIDE_SCALE

    def drain(self) -> list[SchedulableTask]:
        """Remove and return every queued task (used when a run shuts down)."""
        s = self._state
        out = [t for g in s.groups.values() for t in g.tasks]
        for g in s.groups.values():
            g.tasks.clear()
            g.demand.clear()
            g.entry = None
        s.heap.clear()
        s.ids.clear()
        s.demand_groups.clear()
        s.demand_weight.clear()
        s.active = 0
        s.count = 0
        s.version += 1
        return out

    def group_weights(self) -> Mapping[str, float]:
        """Group key -> weight, for every group the queue remembers."""
        return {k: g.weight for k, g in self._state.groups.items()}


def _sift(heap: list[list[Any]], pos: int) -> None:
    """Restore the heap order after the key of ``heap[pos]`` changed (moves it up or down)."""
    item = heap[pos]
    while pos:
        parent = (pos - 1) >> 1
        above = heap[parent]
        if not item < above:
            break
        heap[pos] = above
        pos = parent
    end = len(heap)
    child = 2 * pos + 1
    while child < end:
        right = child + 1
        if right < end and heap[right] < heap[child]:
            child = right
        below = heap[child]
        if not below < item:
            break
        heap[pos] = below
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
