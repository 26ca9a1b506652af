"""The fair waiter queue on its own: stride order, ties, lazy removal, forgetting, rebasing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.requests.adaptive.waiters import (
    GONE,
    REBASE_AT,
    FairWaiterQueue,
    Lane,
)
from sluicegate.requests.admission import RequestAdmissionItem
from sluicegate.requests.identity import RequestResourceKey

KEY = RequestResourceKey("p", "m", "chat")


class Owner:
    """A stand-in resource: what a lane needs of the thing it belongs to."""

    def __init__(self, blocked: str | None = None) -> None:
        self.waiting = 0
        self.max_waiters = 0
        self.lanes: dict[str, Lane[Any]] = {}
        self.blocked = blocked

    def blocked_by(self, estimated: int | None, now: float) -> str | None:
        return self.blocked


def item(group: str, weight: float = 1.0) -> RequestAdmissionItem:
    return RequestAdmissionItem(resource=KEY, request_group=group, weight=weight)


def enqueue(queue: FairWaiterQueue[Any], owner: Owner, group: str, weight: float = 1.0) -> Any:
    return queue.enqueue(owner, item(group, weight), None, 0.0, float("inf"), [owner])  # type: ignore[arg-type]


def serve(queue: FairWaiterQueue[Any], n: int) -> list[str]:
    order = []
    for _ in range(n):
        lane = queue.pick(0.0)
        assert lane is not None
        order.append(queue.pop_head(lane).item.request_group)
    return order


def test_fifo_within_a_group_and_counts() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    first = enqueue(queue, owner, "a")
    second = enqueue(queue, owner, "a")
    assert (queue.waiting, owner.waiting, owner.max_waiters) == (2, 2, 2)
    lane = queue.pick(0.0)
    assert lane is not None and queue.pop_head(lane) is first
    lane = queue.pick(0.0)
    assert lane is not None and queue.pop_head(lane) is second
    assert (queue.waiting, owner.waiting, queue.lanes) == (0, 0, [])


def test_weights_three_to_one() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    for _ in range(40):
        enqueue(queue, owner, "heavy", 3.0)
        enqueue(queue, owner, "light", 1.0)
    order = serve(queue, 40)
    assert order.count("heavy") == 30


def test_oldest_head_wins_a_tie() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    a1 = enqueue(queue, owner, "a")
    enqueue(queue, owner, "b")
    enqueue(queue, owner, "a")
    queue.remove(a1)  # lane a stays listed first, but its head is now younger than b's
    assert serve(queue, 2) == ["b", "a"]


def test_a_head_that_is_not_admitted_lets_another_lane_go() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    blocked, free = Owner(blocked="limit"), Owner()
    enqueue(queue, blocked, "a")
    enqueue(queue, free, "b")
    lane = queue.pick(0.0)
    assert lane is not None and lane.group.name == "b"
    free.blocked = "limit"
    assert queue.pick(0.0) is None


def test_removed_waiters_are_skipped_and_compacted() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    waiters = [enqueue(queue, owner, "a") for _ in range(100)]
    for w in waiters[:-1]:
        queue.remove(w)
        assert w.state == GONE
    lane = owner.lanes["a"]
    assert len(lane.queue) < 40  # compacted, not 100 entries for one live waiter
    assert serve(queue, 1) == ["a"] and queue.waiting == 0


def test_an_idle_group_gets_no_credit() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    for _ in range(10):
        enqueue(queue, owner, "busy")
    serve(queue, 5)
    for _ in range(5):
        enqueue(queue, owner, "late")
    # the late group joins at the current virtual time: alternation, not five in a row
    assert serve(queue, 4) in (["busy", "late", "busy", "late"], ["late", "busy", "late", "busy"])


def test_forgetting_idle_groups_bounds_memory() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    for i in range(5_000):
        enqueue(queue, owner, f"g{i}")
        serve(queue, 1)
    assert len(queue.groups) <= 2_048 and len(owner.lanes) <= 2_048


def test_rebasing_keeps_order_and_precision() -> None:
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    queue.vclock = REBASE_AT * 4  # as after a very long run
    for _ in range(300):
        enqueue(queue, owner, "small", 1e-6)
        enqueue(queue, owner, "big", 1e6)
        enqueue(queue, owner, "one", 1.0)
    order = serve(queue, 300)
    assert queue.vclock < REBASE_AT
    # the tiny-weight group is served once at most, the others share by weight
    assert order.count("small") <= 1
    assert order.count("big") >= 298


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1e6), min_size=2, max_size=4), st.integers(50, 400))
def test_every_accepted_weight_gets_its_share(weights: list[float], grants: int) -> None:
    # Stride scheduling: while every group waits, each group's grants stay within one grant
    # per group of its weighted share, whatever the weights in the accepted range.
    queue: FairWaiterQueue[Any] = FairWaiterQueue()
    owner = Owner()
    names = [f"g{i}" for i in range(len(weights))]
    for name, weight in zip(names, weights, strict=True):
        for _ in range(grants):
            enqueue(queue, owner, name, weight)
    order = serve(queue, grants)
    total = sum(weights)
    for name, weight in zip(names, weights, strict=True):
        assert abs(order.count(name) - grants * weight / total) <= len(weights), (name, weights)
