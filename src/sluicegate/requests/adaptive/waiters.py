"""The weighted fair waiter queue of one endpoint: stride scheduling across request groups.

Invariants (all kept by this module; the controller only asks and parks):

- A waiting :class:`Waiter` sits in exactly one :class:`Lane`: the FIFO of one request group
  on one resource. Waiters that left (cancelled, timed out, denied) are marked ``GONE`` and
  skipped lazily when they reach the head; a lane compacts itself when the dead outnumber
  the live.
- A lane with live waiters is listed in :attr:`FairWaiterQueue.lanes`; an empty one is not.
- Each request group has a stride *pass value* shared by its lanes. Serving a group advances
  its pass by ``1 / weight``; the next grant goes to the admissible lane head whose group has
  the lowest pass, the oldest waiter first on ties. A group that becomes active again joins
  at the endpoint's virtual time (the pass of the last served group): no credit for idleness.
- Pass values stay near the virtual time: once it passes :data:`REBASE_AT` every pass is
  shifted down by it (order and differences unchanged), so adding a small stride to a large
  pass never rounds away and fairness holds over arbitrarily long runs.

Why not ``trio.lowlevel.ParkingLot``: a grant hands a lease (a value) to one chosen waiter
of one chosen lane, and a cancelled waiter must leave every count in the abort callback
itself, so that no dispatch in between can grant to it. A ParkingLot wakes its lots FIFO
with no value and updates only its own queue on abort. The controller therefore parks with
``trio.lowlevel.wait_task_rescheduled`` (what ParkingLot does inside) and this module keeps
the bookkeeping that makes the abort synchronous.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from trio.lowlevel import Task

    from ..admission import RequestAdmissionDenied, RequestAdmissionItem, RequestAdmissionLease


WAITING: Final = 0


GRANTED: Final = 1


GONE: Final = 2


# Compact a lane once this many gone waiters sit in it (and they outnumber the live ones).
_COMPACT_AFTER: Final = 32


# Request groups a queue remembers before idle ones are forgotten (see forget_idle_groups).
IDLE_GROUPS_KEPT: Final = 1024


# Virtual time beyond which pass values are shifted back towards zero. At 2**24 a double
# still resolves 2e-9, three orders below the smallest stride (1 / MAX_WEIGHT).
REBASE_AT: Final = float(2**24)


class LaneOwner(Protocol):
    """What a lane belongs to (a request resource): its lanes, its waiter counts, and the
    admission check for a lane's head."""

    waiting: int
    max_waiters: int
    lanes: dict[str, Lane[Any]]

    def blocked_by(self, estimated: int | None, now: float) -> str | None:
        """``None`` if a request of ``estimated`` tokens may take a lease at ``now``."""
        ...


R = TypeVar("R", bound=LaneOwner)


class Group:
    """A request group's place in an endpoint's stride scheduler."""

    __slots__ = ("live", "name", "pass_value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pass_value = 0.0
        self.live = 0  # live waiters over all lanes of this group


class Waiter(Generic[R]):
    """One parked ``acquire``: its task, item, lane and (once decided) its result."""

    __slots__ = (
        "deadline",
        "enqueued_at",
        "item",
        "lane",
        "parked",
        "result",
        "seq",
        "state",
        "task",
    )

    def __init__(
        self,
        task: Task,
        item: RequestAdmissionItem,
        lane: Lane[R],
        seq: int,
        enqueued_at: float,
        deadline: float,
    ) -> None:
        self.task = task
        self.item = item
        self.lane = lane
        self.seq = seq
        self.enqueued_at = enqueued_at
        self.deadline = deadline
        self.state = WAITING
        self.parked = False
        self.result: RequestAdmissionLease | RequestAdmissionDenied | None = None


class Lane(Generic[R]):
    """FIFO of one request group's waiters on one resource (lazy deletion of gone ones)."""

    __slots__ = ("dead", "group", "live", "queue", "resource")

    def __init__(self, group: Group, resource: R) -> None:
        self.group = group
        self.resource = resource
        self.queue: deque[Waiter[R]] = deque()
        self.live = 0
        self.dead = 0

    def head(self) -> Waiter[R]:
        """The oldest waiting waiter (the lane must have one)."""
        queue = self.queue
        while queue[0].state != WAITING:
            queue.popleft()
            self.dead -= 1
        return queue[0]

    def waiting(self) -> Iterator[Waiter[R]]:
        """The waiting waiters, oldest first (a copy: safe while waiters leave)."""
        return iter([w for w in self.queue if w.state == WAITING])


class FairWaiterQueue(Generic[R]):
    """The waiters of one endpoint, across its resources and request groups.

    Synchronous and never a checkpoint; :meth:`remove` is safe inside a trio abort callback.
    """

    __slots__ = ("_seq", "forget_at", "groups", "lanes", "vclock", "waiting")

    def __init__(self) -> None:
        self.lanes: list[Lane[R]] = []  # lanes with live waiters, in activation order
        self.groups: dict[str, Group] = {}
        self.forget_at = IDLE_GROUPS_KEPT  # group count that triggers forget_idle_groups
        self.vclock = 0.0
        self.waiting = 0
        self._seq = 0

    def enqueue(
        self,
        owner: R,
        item: RequestAdmissionItem,
        task: Task,
        now: float,
        deadline: float,
        owners: Iterable[R],
    ) -> Waiter[R]:
        """Append a waiter for ``item`` to its group's lane on ``owner``.

        ``owners`` lists every resource of the endpoint, for the sweep of idle groups.
        """
        name = item.request_group
        lane = owner.lanes.get(name)
        if lane is None:
            group = self.groups.get(name)
            if group is None:
                if len(self.groups) >= self.forget_at:
                    self.forget_idle_groups(owners)
                group = self.groups[name] = Group(name)
            lane = owner.lanes[name] = Lane(group, owner)
        group = lane.group
        if group.live == 0 and group.pass_value < self.vclock:
            group.pass_value = self.vclock  # a group that was idle gets no credit for it
        if lane.live == 0:
            self.lanes.append(lane)
        self._seq += 1
        waiter = Waiter(task, item, lane, self._seq, now, deadline)
        lane.queue.append(waiter)
        lane.live += 1
        group.live += 1
        owner.waiting += 1
        self.waiting += 1
        if owner.waiting > owner.max_waiters:
            owner.max_waiters = owner.waiting
        return waiter

    def remove(self, waiter: Waiter[R]) -> None:
        """Take a waiting waiter out of its lane (lazily: it is skipped when it reaches the
        head). Synchronous and event-free, so it is safe inside a trio abort callback."""
        waiter.state = GONE
        lane = waiter.lane
        lane.live -= 1
        lane.group.live -= 1
        lane.resource.waiting -= 1
        self.waiting -= 1
        if lane.live == 0:
            lane.queue.clear()
            lane.dead = 0
            self.lanes.remove(lane)
        else:
            lane.dead += 1
            if lane.dead > _COMPACT_AFTER and lane.dead > lane.live:
                lane.queue = deque(w for w in lane.queue if w.state == WAITING)
                lane.dead = 0

    def pick(self, now: float) -> Lane[R] | None:
        """The lane to serve next: among lanes whose head its resource admits at ``now``,
        the group with the lowest pass, the oldest head on ties; ``None`` if no head is
        admissible. Only lanes that could win are checked, fairest first."""
        lanes = self.lanes
        if len(lanes) == 1:
            only = lanes[0]
            blocked = only.resource.blocked_by(only.head().item.estimated_tokens, now)
            return only if blocked is None else None
        best: Lane[R] | None = None
        best_pass = 0.0
        best_seq = 0
        for lane in lanes:
            head = lane.head()
            pass_value = lane.group.pass_value
            if best is not None and (
                pass_value > best_pass or (pass_value == best_pass and head.seq > best_seq)
            ):
                continue
            if lane.resource.blocked_by(head.item.estimated_tokens, now) is not None:
                continue
            best, best_pass, best_seq = lane, pass_value, head.seq
        return best

    def pop_head(self, lane: Lane[R]) -> Waiter[R]:
        """Take ``lane``'s head out to be served and advance its group's pass."""
        waiter = lane.head()
        lane.queue.popleft()
        group = lane.group
        lane.live -= 1
        group.live -= 1
        lane.resource.waiting -= 1
        self.waiting -= 1
        if group.pass_value > self.vclock:
            self.vclock = group.pass_value
            if self.vclock > REBASE_AT:
                self._rebase()
        group.pass_value += 1.0 / waiter.item.weight
        if lane.live == 0:
            lane.queue.clear()
            lane.dead = 0
            self.lanes.remove(lane)
        return waiter

    def _rebase(self) -> None:
        """Shift every pass value and the virtual time down by the virtual time."""
        shift = self.vclock
        for group in self.groups.values():
            group.pass_value -= shift
        self.vclock = 0.0

    def waiting_waiters(self) -> Iterator[Waiter[R]]:
        """Every waiting waiter (a copy: safe while waiters leave)."""
        return iter([w for lane in self.lanes for w in lane.queue if w.state == WAITING])

    def forget_idle_groups(self, owners: Iterable[R]) -> None:
        """Drop the lanes and groups of request groups with nothing waiting.

        Keeps memory bounded when callers use many short-lived request-group names. A
        forgotten group owes at most one stride (the virtual clock is set to a served group's
        pass before its stride is added), so coming back as a new group gains it at most one
        turn. Runs when a new name arrives and the table has doubled since the last sweep:
        amortised O(1).
        """
        for owner in owners:
            owner.lanes = {name: lane for name, lane in owner.lanes.items() if lane.live}
        # a group with live waiters has a live lane, so no kept lane points at a dropped group
        self.groups = {name: group for name, group in self.groups.items() if group.live}
        self.forget_at = max(IDLE_GROUPS_KEPT, 2 * len(self.groups))
