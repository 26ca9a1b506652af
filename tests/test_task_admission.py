from __future__ import annotations

import collections
from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg


def task(tid: object, group: str = "g", weight: float = 1.0, **res: int) -> sg.SchedulableTask:
    return sg.SchedulableTask(tid, None, sg.TaskGroupSpec(group, weight), res or {"submission": 1})


def acquire(ctl: sg.TaskAdmissionController, q: sg.scheduling.FairTaskQueue, t: sg.SchedulableTask):
    return ctl.try_acquire(t, q.view())


def test_capacity_and_unique_leases() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    q = sg.scheduling.FairTaskQueue()
    a, b = acquire(ctl, q, task(1)), acquire(ctl, q, task(2))
    assert isinstance(a, sg.scheduling.TaskAdmissionLease) and isinstance(
        b, sg.scheduling.TaskAdmissionLease
    )
    assert a.lease_id != b.lease_id and a.generation == b.generation == ctl.generation
    denied = acquire(ctl, q, task(3))
    assert isinstance(denied, sg.scheduling.TaskAdmissionDenied)
    assert denied.reason == "no_capacity" and denied.resource == "submission"
    assert ctl.view().in_use == {"submission": 2}
    assert ctl.release(a).released
    assert isinstance(acquire(ctl, q, task(3)), sg.scheduling.TaskAdmissionLease)


def test_release_diagnostics_never_raise_or_add_capacity() -> None:
    ctl = sg.TaskAdmissionController(capacity=1)
    other = sg.TaskAdmissionController(capacity=1)
    q = sg.scheduling.FairTaskQueue()
    lease = acquire(ctl, q, task(1))
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    assert ctl.release(lease).reason == "released"
    dup = ctl.release(lease)
    assert (dup.released, dup.reason) == (False, "duplicate")
    foreign = acquire(other, q, task(2))
    assert isinstance(foreign, sg.scheduling.TaskAdmissionLease)
    assert ctl.release(foreign).reason == "wrong_generation"
    forged = sg.scheduling.TaskAdmissionLease(999, task(3), {"submission": 1}, 0.0, ctl.generation)
    assert ctl.release(forged).reason == "unknown_lease"
    held = acquire(ctl, q, task(4))
    assert isinstance(held, sg.scheduling.TaskAdmissionLease)
    copy = sg.scheduling.TaskAdmissionLease(
        held.lease_id, task(5), {"submission": 1}, 0.0, ctl.generation
    )
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
    assert isinstance(denied, sg.scheduling.TaskAdmissionDenied)
    # not even a lease (a denial released by mistake): reported, never raised
    for junk in (denied, None):
        result = ctl.release(junk)  # type: ignore[arg-type]
        assert (result.released, result.reason) == (False, "unknown_lease")
    assert ctl.view().in_use == {"submission": 1}


def test_multiple_resources_and_unknown_resource() -> None:
    ctl = sg.TaskAdmissionController({"submission": 4, "gpu": 1})
    q = sg.scheduling.FairTaskQueue()
    assert isinstance(
        acquire(ctl, q, task(1, gpu=1, submission=1)), sg.scheduling.TaskAdmissionLease
    )
    d = acquire(ctl, q, task(2, gpu=1, submission=1))
    assert isinstance(d, sg.scheduling.TaskAdmissionDenied) and d.resource == "gpu"
    assert isinstance(acquire(ctl, q, task(3)), sg.scheduling.TaskAdmissionLease)
    with pytest.raises(sg.errors.UnknownResourceError, match="tpu") as info:
        acquire(ctl, q, task(4, tpu=1))
    assert "'gpu'" in str(info.value)


@pytest.mark.parametrize("limits", [{"submission": 0}, {"submission": -3}, {}, {"x": 1.5}])
def test_bad_limits_rejected(limits: dict[str, object]) -> None:
    with pytest.raises(sg.ConfigurationError, match="limits"):
        sg.TaskAdmissionController(limits)  # type: ignore[arg-type]


def test_reconfigure_shrink_never_revokes() -> None:
    ctl = sg.TaskAdmissionController(capacity=4)
    q = sg.scheduling.FairTaskQueue()
    leases = [acquire(ctl, q, task(i)) for i in range(4)]
    ctl.reconfigure({"submission": 2})
    assert ctl.view().active_leases == 4
    for lease in leases[:2]:
        assert ctl.release(lease).released  # type: ignore[arg-type]
    # usage 2 == new limit: still no admission
    assert ctl.free_resources == 0
    assert isinstance(acquire(ctl, q, task(9)), sg.scheduling.TaskAdmissionDenied)
    ctl.release(leases[2])  # type: ignore[arg-type]
    assert isinstance(acquire(ctl, q, task(10)), sg.scheduling.TaskAdmissionLease)
    ctl.reconfigure({"submission": 8})
    assert ctl.free_resources == 1
    with pytest.raises(sg.ConfigurationError):
        ctl.reconfigure({"submission": 0})


def test_group_caps_and_explain_blocked() -> None:
    ctl = sg.TaskAdmissionController(
        capacity=10, policy=sg.scheduling.StrictFairPolicy({"a": {"submission": 1}})
    )
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("a2", "a"), task("b1", "b")])
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "a1"
    assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.scheduling.TaskAdmissionLease)
    q.commit(sel)
    # a is capped now, b is served
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "b1"
    summary = ctl.explain_blocked(q.view())
    assert summary.queued == 2 and summary.candidates_checked == 2  # heads of a and b
    assert summary.blocked_groups == {"a": "group_capped"}
    assert summary.dominant_reasons[0] == ("group_capped", 1)
    with pytest.raises(sg.ConfigurationError, match="group_caps"):
        sg.scheduling.StrictFairPolicy({"a": {"submission": 0}})
    with pytest.raises(sg.errors.UnknownResourceError):
        sg.TaskAdmissionController(
            capacity=1, policy=sg.scheduling.StrictFairPolicy({"a": {"gpu": 1}})
        )


def test_shutdown_denies_everything() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    q = sg.scheduling.FairTaskQueue()
    held = acquire(ctl, q, task(1))
    ctl.begin_shutdown()
    d = acquire(ctl, q, task(2))
    assert isinstance(d, sg.scheduling.TaskAdmissionDenied) and d.reason == "shutdown"
    assert ctl.release(held).released  # type: ignore[arg-type]


def test_bounded_borrow_alone_uses_everything() -> None:
    ctl = sg.TaskAdmissionController(
        capacity=8, policy=sg.scheduling.BoundedBorrowPolicy(max_borrow=0)
    )
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(i, "solo") for i in range(20)])
    granted = 0
    while (sel := q.select_next(ctl.is_eligible)) is not None:
        assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.scheduling.TaskAdmissionLease)
        q.commit(sel)
        granted += 1
    assert granted == 8  # a single group is its whole share: live


def test_bounded_borrow_ceiling_and_debt() -> None:
    policy = sg.scheduling.BoundedBorrowPolicy(max_borrow=2)
    ctl = sg.TaskAdmissionController(capacity=8, policy=policy)
    q = sg.scheduling.FairTaskQueue()
    # b holds one unit (active, idle queue); a borrows beyond its share of 4 up to 4 + 2
    lb = acquire(ctl, q, task("b0", "b"))
    assert isinstance(lb, sg.scheduling.TaskAdmissionLease)
    q.enqueue([task(i, "a") for i in range(10)])
    a_leases = []
    while (sel := q.select_next(ctl.is_eligible)) is not None:
        lease = ctl.try_acquire(sel.item, sel.view)
        assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
        q.commit(sel)
        a_leases.append(lease)
    assert len(a_leases) == 6
    assert ctl.view().policy_state.get("borrowed:a:submission") == 2
    d = ctl.try_acquire(q.view().first_candidate("a"), q.view())  # type: ignore[arg-type]
    assert isinstance(d, sg.scheduling.TaskAdmissionDenied) and d.reason == "borrow_debt"
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
    policy = sg.scheduling.BoundedBorrowPolicy(max_borrow=max_borrow)
    ctl = sg.TaskAdmissionController(capacity=capacity, policy=policy)
    q = sg.scheduling.FairTaskQueue()
    held: list[sg.scheduling.TaskAdmissionLease] = []
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
            assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
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
    ctl = sg.TaskAdmissionController(capacity=4, policy=sg.scheduling.BoundedBorrowPolicy())
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a", submission=3), task("b1", "b", submission=3)])
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "a1"
    lease = ctl.try_acquire(sel.item, sel.view)
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    q.commit(sel)
    assert q.select_next(ctl.is_eligible) is None  # 1 unit free, b1 needs 3
    ctl.release(lease)
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "b1"
    # a group that already holds units still gets no more than its share while b waits
    q.enqueue([task("a2", "a", submission=2), task("a3", "a", submission=1)])
    held = ctl.try_acquire(task("a0", "a", submission=2), q.view())
    assert isinstance(held, sg.scheduling.TaskAdmissionLease)
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

    admission = sg.TaskAdmissionController(capacity=4, policy=sg.scheduling.BoundedBorrowPolicy())
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
    ctl = sg.TaskAdmissionController(
        capacity=limit, policy=sg.scheduling.BoundedBorrowPolicy(max_borrow)
    )
    q = sg.scheduling.FairTaskQueue()
    q.enqueue(
        [
            task(i, f"g{g}", weights[g], submission=min(units, limit))
            for i, (g, units) in enumerate(tasks)
        ]
    )
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None
    assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.scheduling.TaskAdmissionLease)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (
            lambda: sg.scheduling.BoundedBorrowPolicy(max_borrow=1.5),
            "BoundedBorrowPolicy.max_borrow",
        ),
        (lambda: sg.scheduling.StrictFairPolicy({"a": 3}), "StrictFairPolicy.group_caps['a']"),  # type: ignore[dict-item]
        (lambda: sg.TaskAdmissionController(policy=object()), "TaskAdmissionController.policy"),  # type: ignore[arg-type]
        (
            lambda: sg.TaskAdmissionController(policy=sg.scheduling.StrictFairPolicy),  # type: ignore[arg-type]
            "TaskAdmissionController.policy",
        ),
        (
            lambda: sg.TaskAdmissionController().reconfigure(
                {}, policy=sg.scheduling.BoundedBorrowPolicy
            ),  # type: ignore[arg-type]
            "TaskAdmissionController.policy",
        ),
    ],
)
def test_bad_policy_arguments_name_the_field(make: Callable[[], object], field: str) -> None:
    with pytest.raises(sg.ConfigurationError) as info:
        make()
    assert info.value.field == field and info.value.fix


@pytest.mark.parametrize("limits", [{"": 1}, {1: 1}])
def test_bad_resource_names_rejected(limits: dict[object, int]) -> None:
    with pytest.raises(sg.ConfigurationError, match="resource name"):
        sg.TaskAdmissionController(limits)  # type: ignore[arg-type]


async def test_usage_reads_live_counters_for_custom_policies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What a custom policy sees through TaskAdmissionUsage: live limits and usage per
    resource and group (absent ones read 0), holders with their weights, its own counters,
    and trio's clock."""
    seen: list[dict[str, object]] = []

    class Recording:
        name = "recording"

        def evaluate(
            self,
            item: sg.SchedulableTask,
            queue_view: sg.scheduling.QueueView,
            usage: sg.scheduling.TaskAdmissionUsage,
        ) -> sg.scheduling.TaskAdmissionPolicyDecision:
            seen.append(
                {
                    "limit": usage.limit("gpu"),
                    "in_use": usage.in_use("gpu"),
                    "group_in_use": usage.group_in_use(item.group.key, "gpu"),
                    "nobody": usage.group_in_use("nobody", "gpu"),
                    "other_resource": usage.group_in_use(item.group.key, "submission"),
                    "holders": dict(usage.holders("gpu")),
                    "holder_weight": usage.holder_weight("gpu"),
                    "grants": usage.policy_counter("grants"),
                    "missing": usage.policy_counter("missing"),
                    "now": usage.now,
                }
            )
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

        def on_acquire(
            self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
        ) -> sg.scheduling.PolicyStateDelta:
            return sg.scheduling.PolicyStateDelta((("grants", 1),))

        def on_release(
            self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
        ) -> sg.scheduling.PolicyStateDelta:
            return sg.scheduling.PolicyStateDelta((("grants", -1),))

    ctl = sg.TaskAdmissionController({"gpu": 5, "submission": 3}, policy=Recording())
    q = sg.scheduling.FairTaskQueue()
    await trio.sleep(7)
    first = acquire(ctl, q, task("a1", "a", 2.0, gpu=2))
    assert isinstance(first, sg.scheduling.TaskAdmissionLease)
    second = acquire(ctl, q, task("a2", "a", 2.0, gpu=1))
    assert isinstance(second, sg.scheduling.TaskAdmissionLease)
    assert seen[-1] == {
        "limit": 5,
        "in_use": 2,
        "group_in_use": 2,
        "nobody": 0,
        "other_resource": 0,
        "holders": {"a": 2.0},
        "holder_weight": 2.0,
        "grants": 1,
        "missing": 0,
        "now": trio.current_time(),
    }
    assert first.acquired_at == pytest.approx(7.0)
    ctl.release(first)
    assert ctl.is_eligible(task("b1", "b", 3.0, gpu=1), q.view())
    assert seen[-1]["in_use"] == 1 and seen[-1]["holders"] == {"a": 2.0}
    assert seen[-1]["group_in_use"] == 0 and seen[-1]["grants"] == 1
    ctl.release(second)
    assert ctl.is_eligible(task("b1", "b", 3.0, gpu=1), q.view())
    assert seen[-1]["holders"] == {} and seen[-1]["holder_weight"] == 0.0
    assert seen[-1]["in_use"] == 0 and seen[-1]["grants"] == 0


def test_default_controller_is_one_submission_resource_of_64() -> None:
    assert sg.TaskAdmissionController().limits == {"submission": 64}
    assert sg.TaskAdmissionController(capacity=3).limits == {"submission": 3}


def test_a_positive_check_is_not_reused_once_state_or_item_changed() -> None:
    """is_eligible lets the try_acquire right after it skip re-evaluation; that shortcut must
    never admit a different task, the same task after another grant, or against a newer
    queue view."""
    ctl = sg.TaskAdmissionController(capacity=1)
    q = sg.scheduling.FairTaskQueue()
    t1, t2 = task(1), task(2)
    view = q.view()
    assert ctl.is_eligible(t1, view)
    too_big = task("big", submission=2)
    denied = ctl.try_acquire(too_big, view)
    assert isinstance(denied, sg.scheduling.TaskAdmissionDenied) and denied.reason == "no_capacity"
    assert isinstance(ctl.try_acquire(t2, view), sg.scheduling.TaskAdmissionLease)
    assert isinstance(ctl.try_acquire(t1, view), sg.scheduling.TaskAdmissionDenied)
    # the same task twice in one step: the second grant would exceed the capacity
    ctl = sg.TaskAdmissionController(capacity=1)
    assert ctl.is_eligible(t1, view)
    assert isinstance(ctl.try_acquire(t1, view), sg.scheduling.TaskAdmissionLease)
    assert isinstance(ctl.try_acquire(t1, view), sg.scheduling.TaskAdmissionDenied)
    assert ctl.view().in_use == {"submission": 1}


def test_a_positive_check_against_an_older_queue_view_is_not_reused() -> None:
    """A peer that queues work between is_eligible and try_acquire changes the answer."""
    ctl = sg.TaskAdmissionController(capacity=2, policy=sg.scheduling.BoundedBorrowPolicy())
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("a2", "a")])
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None
    assert isinstance(ctl.try_acquire(sel.item, sel.view), sg.scheduling.TaskAdmissionLease)
    q.commit(sel)
    a2 = q.view().first_candidate("a")
    assert a2 is not None and ctl.is_eligible(a2, q.view())  # alone: its share is 2
    q.enqueue([task("b1", "b")])
    denied = ctl.try_acquire(a2, q.view())  # b waits: a's share is 1, a holds 1
    assert isinstance(denied, sg.scheduling.TaskAdmissionDenied) and denied.reason == "borrow_debt"


def test_free_resources_and_totals_follow_grants_and_releases() -> None:
    """free_resources (how many resources have a free unit) is what the dispatch loop checks
    before trying to admit anything; it must be exact through grants, releases and
    shutdown."""
    ctl = sg.TaskAdmissionController({"submission": 2, "gpu": 1})
    q = sg.scheduling.FairTaskQueue()
    assert ctl.free_resources == 2
    gpu = acquire(ctl, q, task("g", gpu=1))
    assert isinstance(gpu, sg.scheduling.TaskAdmissionLease)
    assert ctl.free_resources == 1
    big = acquire(ctl, q, task("s", submission=2))
    assert isinstance(big, sg.scheduling.TaskAdmissionLease)
    assert ctl.free_resources == 0 and ctl.active_leases == 2
    assert ctl.release(big).released
    assert ctl.free_resources == 1
    assert ctl.release(gpu).released
    assert ctl.free_resources == 2 and ctl.active_leases == 0
    small = acquire(ctl, q, task("s1"))
    assert isinstance(small, sg.scheduling.TaskAdmissionLease)
    assert ctl.free_resources == 2  # one of two submission units left
    view = ctl.view()
    assert (view.acquired_total, view.released_total) == (3, 2)
    assert view.in_use_by_group == {"g": {"submission": 1}}
    ctl.release(small)
    assert ctl.view().in_use_by_group == {} and ctl.view().released_total == 3
    ctl.begin_shutdown()
    assert ctl.free_resources == 0
    assert not ctl.is_eligible(task("late"), q.view())
    assert ctl.limits == {"submission": 2, "gpu": 1}


def test_a_policy_failing_in_on_acquire_takes_the_grant_back() -> None:
    class Broken(sg.scheduling.StrictFairPolicy):
        def on_acquire(
            self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
        ) -> sg.scheduling.PolicyStateDelta | None:
            raise RuntimeError("broken policy")

    ctl = sg.TaskAdmissionController(capacity=1, policy=Broken())
    q = sg.scheduling.FairTaskQueue()
    with pytest.raises(RuntimeError, match="broken policy"):
        acquire(ctl, q, task(1))
    view = ctl.view()
    assert view.in_use == {"submission": 0} and view.active_leases == 0
    assert view.acquired_total == 0 and view.in_use_by_group == {}
    assert ctl.free_resources == 1


def test_a_policy_failing_in_on_release_still_releases() -> None:
    class Broken(sg.scheduling.StrictFairPolicy):
        def on_release(
            self, lease: sg.scheduling.TaskAdmissionLease, usage: sg.scheduling.TaskAdmissionUsage
        ) -> sg.scheduling.PolicyStateDelta | None:
            raise RuntimeError("broken policy")

    ctl = sg.TaskAdmissionController(capacity=1, policy=Broken())
    q = sg.scheduling.FairTaskQueue()
    lease = acquire(ctl, q, task(1))
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    result = ctl.release(lease)
    assert (result.released, result.reason) == (True, "released")
    assert result.diagnostics == {"policy_error": "RuntimeError: broken policy"}
    view = ctl.view()
    assert view.in_use == {"submission": 0} and view.release_diagnostics == {"policy_error": 1}
    assert isinstance(acquire(ctl, q, task(2)), sg.scheduling.TaskAdmissionLease)


def test_release_diagnostics_name_the_generations_and_accept_an_equal_copy() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    other = sg.TaskAdmissionController(capacity=1)
    q = sg.scheduling.FairTaskQueue()
    foreign = acquire(other, q, task(1))
    assert isinstance(foreign, sg.scheduling.TaskAdmissionLease)
    result = ctl.release(foreign)
    assert result.diagnostics == {
        "controller_generation": ctl.generation,
        "lease_generation": other.generation,
    }
    lease = acquire(ctl, q, task(2))
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    # ids not issued yet (the next one, or 0) are unknown, not duplicates
    for lease_id in (0, lease.lease_id + 1):
        forged = sg.scheduling.TaskAdmissionLease(
            lease_id, task(3), {"submission": 1}, 0.0, ctl.generation
        )
        assert ctl.release(forged).reason == "unknown_lease"
    # a lease that round-tripped (an equal copy, not the same object) releases normally
    copy = sg.scheduling.TaskAdmissionLease(
        lease.lease_id, lease.item, dict(lease.resources), lease.acquired_at, lease.generation
    )
    assert ctl.release(copy).released
    assert ctl.view().in_use == {"submission": 0}


def test_reconfigure_adds_resources_swaps_the_policy_and_invalidates_checks() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    q = sg.scheduling.FairTaskQueue()
    held = acquire(ctl, q, task("s1", "a"))
    assert isinstance(held, sg.scheduling.TaskAdmissionLease)
    t2 = task("s2", "a")
    assert ctl.is_eligible(t2, q.view())
    ctl.reconfigure({"submission": 1})  # between the check and the grant
    denied = ctl.try_acquire(t2, q.view())
    assert isinstance(denied, sg.scheduling.TaskAdmissionDenied) and denied.reason == "no_capacity"
    assert ctl.limits_version == 1 and ctl.free_resources == 0
    # a new resource and a policy capping it; the held lease is released through it
    ctl.reconfigure({"gpu": 2}, policy=sg.scheduling.StrictFairPolicy({"a": {"gpu": 1}}))
    assert ctl.limits == {"submission": 1, "gpu": 2} and ctl.limits_version == 2
    assert ctl.free_resources == 1 and ctl.view().policy == "strict_fair"
    gpu = acquire(ctl, q, task("g1", "a", gpu=1))
    assert isinstance(gpu, sg.scheduling.TaskAdmissionLease)
    capped = acquire(ctl, q, task("g2", "a", gpu=1))
    assert isinstance(capped, sg.scheduling.TaskAdmissionDenied) and capped.reason == "group_capped"
    assert isinstance(acquire(ctl, q, task("g3", "b", gpu=1)), sg.scheduling.TaskAdmissionLease)
    assert ctl.view().in_use == {"submission": 1, "gpu": 2} and ctl.free_resources == 0
    assert ctl.release(held).released and ctl.free_resources == 1
    # a policy that does not fit the limits changes nothing
    with pytest.raises(sg.errors.UnknownResourceError):
        ctl.reconfigure({"submission": 5}, policy=sg.scheduling.StrictFairPolicy({"a": {"tpu": 1}}))
    assert ctl.limits == {"submission": 1, "gpu": 2} and ctl.limits_version == 2
    assert ctl.view().policy == "strict_fair"


def test_shutdown_between_check_and_grant_denies() -> None:
    ctl = sg.TaskAdmissionController(capacity=2)
    q = sg.scheduling.FairTaskQueue()
    t = task(1)
    assert ctl.is_eligible(t, q.view())
    ctl.begin_shutdown()
    denied = ctl.try_acquire(t, q.view())
    assert isinstance(denied, sg.scheduling.TaskAdmissionDenied) and denied.reason == "shutdown"
    assert ctl.view().shutting_down and ctl.active_leases == 0


def test_explain_blocked_reports_the_earliest_hint() -> None:
    hints = {"a": 5.0, "b": 3.0, "c": None}

    class Waits(sg.scheduling.StrictFairPolicy):
        def evaluate(
            self,
            item: sg.SchedulableTask,
            queue_view: sg.scheduling.QueueView,
            usage: sg.scheduling.TaskAdmissionUsage,
        ) -> sg.scheduling.TaskAdmissionPolicyDecision:
            if item.group.key == "free":
                return sg.scheduling.TaskAdmissionPolicyDecision(True)
            return sg.scheduling.TaskAdmissionPolicyDecision(
                False, "policy_denied", available_after=hints[item.group.key]
            )

    ctl = sg.TaskAdmissionController(capacity=4, policy=Waits())
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("c1", "c"), task("a1", "a"), task("free1", "free"), task("b1", "b")])
    summary = ctl.explain_blocked(q.view())
    assert summary.available_after == 3.0
    assert summary.candidates_checked == 4
    assert summary.blocked_groups == {
        "a": "policy_denied",
        "b": "policy_denied",
        "c": "policy_denied",
    }
    assert summary.dominant_reasons == [("policy_denied", 3)]


def test_bounded_borrow_max_borrow_per_resource() -> None:
    assert sg.scheduling.BoundedBorrowPolicy().max_borrow("submission") == 0
    per_resource = sg.scheduling.BoundedBorrowPolicy({"gpu": 2})
    assert per_resource.max_borrow("gpu") == 2 and per_resource.max_borrow("submission") == 0
    with pytest.raises(sg.errors.UnknownResourceError):
        sg.TaskAdmissionController(capacity=2, policy=per_resource)


def test_fair_share_counts_the_asking_group_and_its_weight() -> None:
    ctl = sg.TaskAdmissionController(capacity=8, policy=sg.scheduling.BoundedBorrowPolicy())
    policy = ctl.policy
    assert isinstance(policy, sg.scheduling.BoundedBorrowPolicy)
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a")])
    view, usage = q.view(), ctl.usage
    assert policy.fair_share("a", 1.0, "submission", view, usage) == 8  # alone
    # a group neither queued nor holding joins the count with its own weight
    assert policy.fair_share("c", 1.0, "submission", view, usage) == 4
    assert policy.fair_share("c", 3.0, "submission", view, usage) == 6
    q.enqueue([task((g, 1), g) for g in "bcdefghij"])  # ten groups share 8 units
    assert policy.fair_share("a", 1.0, "submission", q.view(), usage) == 1


def test_bounded_borrow_a_group_holding_another_resource_holds_none_of_this_one() -> None:
    """The at-least-one-task rule is per resource: holding a gpu does not count as holding
    submission units."""
    ctl = sg.TaskAdmissionController(
        {"submission": 2, "gpu": 1}, policy=sg.scheduling.BoundedBorrowPolicy()
    )
    q = sg.scheduling.FairTaskQueue()
    assert isinstance(acquire(ctl, q, task("a-gpu", "a", gpu=1)), sg.scheduling.TaskAdmissionLease)
    q.enqueue([task("a1", "a", submission=2), task("b1", "b", submission=2)])
    a1 = q.view().first_candidate("a")
    assert a1 is not None and ctl.is_eligible(a1, q.view())


def test_bounded_borrow_debt_with_one_peer_queued_ignores_the_borrow_ceiling() -> None:
    """With a single peer waiting, a group at its exact share gets nothing more, even though
    max_borrow would allow it while peers are idle."""
    ctl = sg.TaskAdmissionController(
        capacity=8, policy=sg.scheduling.BoundedBorrowPolicy(max_borrow=2)
    )
    q = sg.scheduling.FairTaskQueue()
    for i in range(3):
        assert isinstance(acquire(ctl, q, task(("a", i), "a")), sg.scheduling.TaskAdmissionLease)
    for i in range(2):
        assert isinstance(acquire(ctl, q, task(("c", i), "c")), sg.scheduling.TaskAdmissionLease)
    q.enqueue([task("a3", "a"), task("b0", "b")])
    # active groups a, b (queued) and c (holding): a's share is ceil(8 / 3) = 3, a holds 3
    share = ctl.policy.fair_share("a", 1.0, "submission", q.view(), ctl.usage)  # type: ignore[attr-defined]
    assert share == 3
    denied = ctl.evaluate(q.view().first_candidate("a"), q.view())  # type: ignore[arg-type]
    assert denied is not None and denied.reason == "borrow_debt"
    sel = q.select_next(ctl.is_eligible)
    assert sel is not None and sel.item.task_id == "b0"


def test_check_request_accepts_up_to_the_whole_limit() -> None:
    ctl = sg.TaskAdmissionController({"submission": 2, "gpu": 1})
    ctl.check_request(task("fits", submission=2, gpu=1))
    with pytest.raises(sg.ConfigurationError, match="requests 3 units"):
        ctl.check_request(task("too-big", submission=3))
    with pytest.raises(sg.errors.UnknownResourceError):
        ctl.check_request(task("unknown", tpu=1))


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=60),
    read_at=st.integers(0, 60),
)
def test_group_usage_kept_lazily_matches_the_live_leases(
    ops: list[tuple[int, bool]], read_at: int
) -> None:
    """Per-group usage is kept only once a policy reads it (rebuilt from the live leases,
    then maintained): whenever it is first read, and at every step after, it equals what
    the live leases say, and view() agrees whether or not it is kept."""

    ctl = sg.TaskAdmissionController({"submission": 6, "gpu": 3})
    view = sg.scheduling.FairTaskQueue().view()
    held: list[sg.scheduling.TaskAdmissionLease] = []
    n = 0
    for step, (g, grant) in enumerate(ops):
        if grant:
            res = {"submission": 1, "gpu": 1} if g % 2 else {"submission": 2}
            task = sg.SchedulableTask(n, None, sg.TaskGroupSpec(f"g{g}", 1.0 + g), res)
            n += 1
            lease = ctl.try_acquire(task, view)
            if isinstance(lease, sg.scheduling.TaskAdmissionLease):
                held.append(lease)
        elif held:
            assert ctl.release(held.pop(g % len(held))).released
        expected: dict[str, collections.Counter[str]] = {}
        for lease in held:
            expected.setdefault(lease.item.group.key, collections.Counter()).update(lease.resources)
        assert ctl.view().in_use_by_group == {k: dict(v) for k, v in expected.items()}
        if step >= read_at:
            usage = ctl.usage
            for key in [f"g{i}" for i in range(4)]:
                for res in ("submission", "gpu"):
                    assert usage.group_in_use(key, res) == expected.get(key, {}).get(res, 0)
            for res in ("submission", "gpu"):
                holders = {k for k, c in expected.items() if c.get(res)}
                assert set(usage.holders(res)) == holders
                weights = sum(1.0 + int(k[1:]) for k in holders)
                assert usage.holder_weight(res) == pytest.approx(weights)
