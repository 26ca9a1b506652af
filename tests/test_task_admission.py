from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg


def task(tid: object, group: str = "g", weight: float = 1.0, **res: int) -> sg.SchedulableTask:
    return sg.SchedulableTask(tid, None, sg.TaskGroupSpec(group, weight), res or {"submission": 1})


def acquire(ctl: sg.TaskAdmissionController, q: sg.FairTaskQueue, t: sg.SchedulableTask):
    return ctl.try_acquire(t, q.view())


def test_capacity_and_unique_leases() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    q = sg.FairTaskQueue()
    a, b = acquire(ctl, q, task(1)), acquire(ctl, q, task(2))
    assert isinstance(a, sg.TaskAdmissionLease) and isinstance(b, sg.TaskAdmissionLease)
    assert a.lease_id != b.lease_id and a.generation == b.generation == ctl.generation
    denied = acquire(ctl, q, task(3))
    assert isinstance(denied, sg.TaskAdmissionDenied)
    assert denied.reason == "no_capacity" and denied.resource == "submission"
    assert ctl.view().in_use == {"submission": 2}
    assert ctl.release(a).released
    assert isinstance(acquire(ctl, q, task(3)), sg.TaskAdmissionLease)


def test_release_diagnostics_never_raise_or_add_capacity() -> None:
    ctl = sg.TaskAdmissionController(capacity=1)
    other = sg.TaskAdmissionController(capacity=1)
    q = sg.FairTaskQueue()
    lease = acquire(ctl, q, task(1))
    assert isinstance(lease, sg.TaskAdmissionLease)
    assert ctl.release(lease).reason == "released"
    dup = ctl.release(lease)
    assert (dup.released, dup.reason) == (False, "duplicate")
    foreign = acquire(other, q, task(2))
    assert isinstance(foreign, sg.TaskAdmissionLease)
    assert ctl.release(foreign).reason == "wrong_generation"
    forged = sg.TaskAdmissionLease(999, task(3), {"submission": 1}, 0.0, ctl.generation)
    assert ctl.release(forged).reason == "unknown_lease"
    held = acquire(ctl, q, task(4))
    assert isinstance(held, sg.TaskAdmissionLease)
    copy = sg.TaskAdmissionLease(held.lease_id, task(5), {"submission": 1}, 0.0, ctl.generation)
    assert ctl.release(copy).reason == "stale_lease"
    view = ctl.view()
    assert view.in_use == {"submission": 1} and view.active_leases == 1
    assert view.release_diagnostics == {
        "duplicate": 1,
        "wrong_generation": 1,
        "unknown_lease": 1,
        "stale_lease": 1,
    }
    # capacity was never inflated: still exactly one unit in use, none free
    denied = acquire(ctl, q, task(6))
    assert isinstance(denied, sg.TaskAdmissionDenied)
    # not even a lease (a denial released by mistake): reported, never raised
    for junk in (denied, None):
        result = ctl.release(junk)  # type: ignore[arg-type]
        assert (result.released, result.reason) == (False, "unknown_lease")
    assert ctl.view().in_use == {"submission": 1}


def test_multiple_resources_and_unknown_resource() -> None:
    ctl = sg.TaskAdmissionController({"submission": 4, "gpu": 1})
    q = sg.FairTaskQueue()
    assert isinstance(acquire(ctl, q, task(1, gpu=1, submission=1)), sg.TaskAdmissionLease)
    d = acquire(ctl, q, task(2, gpu=1, submission=1))
    assert isinstance(d, sg.TaskAdmissionDenied) and d.resource == "gpu"
    assert isinstance(acquire(ctl, q, task(3)), sg.TaskAdmissionLease)
    with pytest.raises(sg.UnknownResourceError, match="tpu") as info:
        acquire(ctl, q, task(4, tpu=1))
    assert "'gpu'" in str(info.value)


@pytest.mark.parametrize("limits", [{"submission": 0}, {"submission": -3}, {}, {"x": 1.5}])
def test_bad_limits_rejected(limits: dict[str, object]) -> None:
    with pytest.raises(sg.ConfigurationError, match="limits"):
        sg.TaskAdmissionController(limits)  # type: ignore[arg-type]


def test_reconfigure_shrink_never_revokes() -> None:
    ctl = sg.TaskAdmissionController(capacity=4)
    q = sg.FairTaskQueue()
    leases = [acquire(ctl, q, task(i)) for i in range(4)]
    ctl.reconfigure({"submission": 2})
    assert ctl.view().active_leases == 4
    for lease in leases[:2]:
        assert ctl.release(lease).released  # type: ignore[arg-type]
    # usage 2 == new limit: still no admission
    assert isinstance(acquire(ctl, q, task(9)), sg.TaskAdmissionDenied)
    ctl.release(leases[2])  # type: ignore[arg-type]
    assert isinstance(acquire(ctl, q, task(10)), sg.TaskAdmissionLease)
    ctl.reconfigure({"submission": 8})
    assert ctl.free_resources == 1
    with pytest.raises(sg.ConfigurationError):
        ctl.reconfigure({"submission": 0})


def test_group_caps_and_explain_blocked() -> None:
    ctl = sg.TaskAdmissionController(
        capacity=10, policy=sg.StrictFairPolicy({"a": {"submission": 1}})
    )
    q = sg.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("a2", "a"), task("b1", "b")])
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "a1"
    assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.TaskAdmissionLease)
    q.commit(sel)
    # a is capped now, b is served
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "b1"
    summary = ctl.explain_blocked(q.view())
    assert summary.queued == 2
    assert summary.blocked_groups == {"a": "group_capped"}
    assert summary.dominant_reasons[0] == ("group_capped", 1)
    with pytest.raises(sg.ConfigurationError, match="group_caps"):
        sg.StrictFairPolicy({"a": {"submission": 0}})
    with pytest.raises(sg.UnknownResourceError):
        sg.TaskAdmissionController(capacity=1, policy=sg.StrictFairPolicy({"a": {"gpu": 1}}))


def test_shutdown_denies_everything() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    q = sg.FairTaskQueue()
    held = acquire(ctl, q, task(1))
    ctl.begin_shutdown()
    d = acquire(ctl, q, task(2))
    assert isinstance(d, sg.TaskAdmissionDenied) and d.reason == "shutdown"
    assert ctl.release(held).released  # type: ignore[arg-type]


def test_bounded_borrow_alone_uses_everything() -> None:
    ctl = sg.TaskAdmissionController(capacity=8, policy=sg.BoundedBorrowPolicy(max_borrow=0))
    q = sg.FairTaskQueue()
    q.enqueue([task(i, "solo") for i in range(20)])
    granted = 0
    while (sel := q.select_next(ctl.is_eligible)) is not None:
        assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.TaskAdmissionLease)
        q.commit(sel)
        granted += 1
    assert granted == 8  # a single group is its whole share: live


def test_bounded_borrow_ceiling_and_debt() -> None:
    policy = sg.BoundedBorrowPolicy(max_borrow=2)
    ctl = sg.TaskAdmissionController(capacity=8, policy=policy)
    q = sg.FairTaskQueue()
    # b holds one unit (active, idle queue); a borrows beyond its share of 4 up to 4 + 2
    lb = acquire(ctl, q, task("b0", "b"))
    assert isinstance(lb, sg.TaskAdmissionLease)
    q.enqueue([task(i, "a") for i in range(10)])
    a_leases = []
    while (sel := q.select_next(ctl.is_eligible)) is not None:
        lease = ctl.try_acquire(sel.item, sel.view)
        assert isinstance(lease, sg.TaskAdmissionLease)
        q.commit(sel)
        a_leases.append(lease)
    assert len(a_leases) == 6
    assert ctl.view().policy_state.get("borrowed:a:submission") == 2
    d = ctl.try_acquire(q.view().first_candidate("a"), q.view())  # type: ignore[arg-type]
    assert isinstance(d, sg.TaskAdmissionDenied) and d.reason == "borrow_debt"
    # a peer queues work: a (indebted) gets nothing even after releasing below the ceiling
    q.enqueue([task(("b", i), "b") for i in range(5)])
    ctl.release(a_leases.pop())
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.group.key == "b"
    ctl.release(a_leases.pop())
    ctl.release(a_leases.pop())
    assert ctl.view().policy_state.get("borrowed:a:submission") is None
    # a is back at its share (3 of 8 with b also active -> share 4): eligible again
    assert ctl.is_eligible(q.view().first_candidate("a"), q.view())  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(
    max_borrow=st.integers(0, 4),
    capacity=st.integers(2, 16),
    steps=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3)), max_size=120),
)
def test_bounded_borrow_never_exceeds_ceiling_with_peer_queued(
    max_borrow: int, capacity: int, steps: list[tuple[str, int]]
) -> None:
    """Random enqueue/admit/release: a group above its share never gains while a peer waits."""
    policy = sg.BoundedBorrowPolicy(max_borrow=max_borrow)
    ctl = sg.TaskAdmissionController(capacity=capacity, policy=policy)
    q = sg.FairTaskQueue()
    held: list[sg.TaskAdmissionLease] = []
    n = 0
    for group, action in steps:
        if action == 0:
            q.enqueue([task(n, group)])
            n += 1
        elif action in (1, 2):
            sel = q.select_next(ctl.is_eligible)
            if sel is None:
                continue
            g = sel.item.group.key
            view = sel.view
            before = ctl.usage.group_in_use(g, "submission")
            share = policy.fair_share(g, 1.0, "submission", view, ctl.usage)
            peers = view.groups_with_demand("submission") - 1
            lease = ctl.try_acquire(sel.item, view)
            assert isinstance(lease, sg.TaskAdmissionLease)
            q.commit(sel)
            held.append(lease)
            after = before + 1
            assert after <= max(1, share + max_borrow)
            if peers > 0:
                assert after <= share or before == 0
        elif held:
            assert ctl.release(held.pop(0)).released
    for lease in held:
        assert ctl.release(lease).released
    view = ctl.view()
    assert view.active_leases == 0 and view.in_use == {"submission": 0}
    assert not [k for k in view.policy_state if k.startswith("borrowed:")]


def test_bounded_borrow_admits_a_group_holding_nothing_even_above_its_share() -> None:
    """Tasks asking for more units than a share must not deadlock: with nothing held, each
    group's head is above its share while the other group is queued, yet one must run."""
    ctl = sg.TaskAdmissionController(capacity=4, policy=sg.BoundedBorrowPolicy())
    q = sg.FairTaskQueue()
    q.enqueue([task("a1", "a", submission=3), task("b1", "b", submission=3)])
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "a1"
    lease = ctl.try_acquire(sel.item, sel.view)
    assert isinstance(lease, sg.TaskAdmissionLease)
    q.commit(sel)
    assert q.select_next(ctl.is_eligible) is None  # 1 unit free, b1 needs 3
    ctl.release(lease)
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "b1"
    # a group that already holds units still gets no more than its share while b waits
    q.enqueue([task("a2", "a", submission=2), task("a3", "a", submission=1)])
    held = ctl.try_acquire(task("a0", "a", submission=2), q.view())
    assert isinstance(held, sg.TaskAdmissionLease)
    denied = ctl.evaluate(q.view().first_candidate("a"), q.view())  # type: ignore[arg-type]
    assert denied is not None and denied.reason == "borrow_debt"


async def test_bounded_borrow_run_with_tasks_larger_than_a_share_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = sg.DagCompletionTracker()
    for i in range(3):
        tracker.add(("a", i), group="a", resources={"submission": 3})
        tracker.add(("b", i), group="b", resources={"submission": 3})

    async def worker(t: sg.SchedulableTask) -> None:
        await trio.sleep(1)

    admission = sg.TaskAdmissionController(capacity=4, policy=sg.BoundedBorrowPolicy())
    result = await sg.AsyncTaskScheduler(tracker, worker, admission=admission).run()
    assert result.counts["succeeded"] == 6
    assert result.elapsed == pytest.approx(6.0)  # one at a time, never idle
    assert result.admission.active_leases == 0


@settings(max_examples=150, deadline=None)
@given(
    max_borrow=st.integers(0, 3),
    limit=st.integers(1, 6),
    weights=st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=3, max_size=3),
    tasks=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6)), min_size=1, max_size=8),
)
def test_bounded_borrow_never_stalls_with_nothing_held(
    max_borrow: int, limit: int, weights: list[float], tasks: list[tuple[int, int]]
) -> None:
    """Whatever the task sizes and group weights, with nothing held some queued task runs."""
    ctl = sg.TaskAdmissionController(capacity=limit, policy=sg.BoundedBorrowPolicy(max_borrow))
    q = sg.FairTaskQueue()
    q.enqueue(
        [
            task(i, f"g{g}", weights[g], submission=min(units, limit))
            for i, (g, units) in enumerate(tasks)
        ]
    )
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None
    assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.TaskAdmissionLease)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: sg.BoundedBorrowPolicy(max_borrow=1.5), "BoundedBorrowPolicy.max_borrow"),
        (lambda: sg.StrictFairPolicy({"a": 3}), "StrictFairPolicy.group_caps['a']"),  # type: ignore[dict-item]
        (lambda: sg.TaskAdmissionController(policy=object()), "TaskAdmissionController.policy"),  # type: ignore[arg-type]
        (
            lambda: sg.TaskAdmissionController(policy=sg.StrictFairPolicy),  # type: ignore[arg-type]
            "TaskAdmissionController.policy",
        ),
        (
            lambda: sg.TaskAdmissionController().reconfigure({}, policy=sg.BoundedBorrowPolicy),  # type: ignore[arg-type]
            "TaskAdmissionController.policy",
        ),
    ],
)
def test_bad_policy_arguments_name_the_field(make: Callable[[], object], field: str) -> None:
    with pytest.raises(sg.ConfigurationError) as info:
        make()
    assert info.value.field == field and info.value.fix
