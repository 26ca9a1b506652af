from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg


def task(tid: object, group: str = "g", weight: float = 1.0, **res: int) -> sg.SchedulableTask:
    return sg.SchedulableTask(tid, None, sg.TaskGroupSpec(group, weight), res or {"submission": 1})


def pop(q: sg.scheduling.FairTaskQueue, is_eligible=None) -> sg.SchedulableTask | None:
    sel = q.select_next(is_eligible)
    if sel is None:
        return None
    return q.commit(sel)


def test_fifo_within_group() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(i) for i in range(5)])
    assert [pop(q).task_id for _ in range(5)] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
    assert pop(q) is None


def test_enqueue_is_idempotent_by_task_id() -> None:
    q = sg.scheduling.FairTaskQueue()
    assert q.enqueue([task("a"), task("b")]) == ["a", "b"]
    assert q.enqueue([task("a"), task("c")]) == ["c"]
    assert len(q) == 3


def test_select_next_does_not_mutate() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a"), task("b", "h")])
    before = q.view().snapshot()
    s1 = q.select_next()
    s2 = q.select_next()
    assert s1 is not None and s2 is not None
    assert s1.item is s2.item
    assert q.view().snapshot() == before


def test_commit_detects_stale_selection() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a")])
    sel = q.select_next()
    assert sel is not None
    q.enqueue([task("b")])
    assert q.commit(sel) is None
    assert len(q) == 2
    fresh = q.select_next()
    assert fresh is not None and q.commit(fresh) is not None
    assert q.commit(fresh) is None  # committing twice is stale too


def test_selection_is_stale_when_eligibility_changed_the_queue() -> None:
    """The selection carries the version it was chosen against, not a later one."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("b1", "b")])

    def enqueues(t: sg.SchedulableTask, view: sg.scheduling.QueueView) -> bool:
        q.enqueue([task(("late", t.task_id), "late")])
        return t.task_id == "b1"

    sel = q.select_next(enqueues)
    assert sel is not None and sel.item.task_id == "b1"
    assert sel.sequence_version == sel.view.sequence_version != q.view().sequence_version
    assert q.commit(sel) is None and len(q) == 4


def test_weighted_fairness_three_to_one() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(("a", i), "a", 3.0) for i in range(400)])
    q.enqueue([task(("b", i), "b", 1.0) for i in range(400)])
    order = [pop(q).group.key for _ in range(400)]  # type: ignore[union-attr]
    # every window of 40 admissions is within one task of 3:1
    for start in range(0, 360):
        window = Counter(order[start : start + 40])
        assert abs(window["a"] - 30) <= 1, (start, window)


def test_late_joiner_gets_no_credit_for_idleness() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(("a", i), "a") for i in range(100)])
    for _ in range(50):
        pop(q)
    q.enqueue([task(("b", i), "b") for i in range(100)])
    order = [pop(q).group.key for _ in range(20)]  # type: ignore[union-attr]
    # b alternates with a instead of running 50 in a row
    assert Counter(order) == Counter({"a": 10, "b": 10})


def test_ineligible_head_is_skipped_but_fifo_kept() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("a2", "a"), task("b1", "b"), task("c1", "c")])
    got = pop(q, lambda t, v: t.group.key != "a")
    assert got is not None and got.task_id == "b1"
    # a2 is never chosen ahead of a1 even though a1 is ineligible
    got = pop(q, lambda t, v: t.task_id != "a1")
    assert got is not None and got.task_id == "c1"
    assert pop(q, lambda t, v: t.task_id != "a1") is None
    assert pop(q).task_id == "a1"  # type: ignore[union-attr]


def test_view_reports_demand_and_candidates() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a", "x", gpu=2), task("b", "x", gpu=1, submission=1), task("c", "y")])
    v = q.view()
    assert v.queued_total == 3
    assert v.demand("x", "gpu") == 3
    assert v.groups_with_demand("submission") == 2
    assert v.demand_weight("gpu") == 1.0
    assert v.first_candidate("x").task_id == "a"  # type: ignore[union-attr]
    assert v.count_by_group() == {"x": 2, "y": 1}
    pop(q)
    assert not v.is_current
    snap = q.view().snapshot()
    assert snap.queued_total == 2


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.sampled_from([1.0, 2.0, 3.0, 5.0]), min_size=1, max_size=6),
    ops=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=200),
)
def test_queue_invariants(weights: list[float], ops: list[tuple[int, bool]]) -> None:
    """Random enqueues and pops: nothing lost or duplicated, FIFO per group, counters match."""
    q = sg.scheduling.FairTaskQueue()
    expected: dict[str, list[int]] = {f"g{i}": [] for i in range(len(weights))}
    n = 0
    popped: list[sg.SchedulableTask] = []
    for group_idx, is_push in ops:
        g = f"g{group_idx % len(weights)}"
        if is_push:
            q.enqueue([task(n, g, weights[group_idx % len(weights)])])
            expected[g].append(n)
            n += 1
        else:
            t = pop(q, lambda t, v: t.task_id % 3 != 0 or len(q) < 4)
            if t is not None:
                popped.append(t)
                assert expected[t.group.key].pop(0) == t.task_id
        assert_heap_is_tight(q)
    assert len(q) == sum(len(v) for v in expected.values())
    assert q.view().count_by_group() == {k: len(v) for k, v in expected.items() if v}
    while (t := pop(q)) is not None:
        assert expected[t.group.key].pop(0) == t.task_id
    assert all(not v for v in expected.values())
    assert q.view().groups_with_demand("submission") == 0


def assert_heap_is_tight(q: sg.scheduling.FairTaskQueue) -> None:
    """One heap entry per group with queued tasks, in heap order (what keeps selection cheap)."""
    heap = q._state.heap
    assert sorted(e[2].key for e in heap) == sorted(q.view().active_groups())
    for i in range(1, len(heap)):
        assert heap[(i - 1) // 2][:2] <= heap[i][:2]


def test_a_head_that_stays_ineligible_leaves_no_dead_entries() -> None:
    """Serving the groups behind a blocked head (a capped group, say) must not pile up dead
    heap entries that every later select_next walks through."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(("x", i), "x") for i in range(3)])
    q.enqueue([task((g, i), g) for i in range(200) for g in ("a", "b")])
    served = Counter[str]()
    for _ in range(300):
        t = pop(q, lambda t, v: t.group.key != "x")
        assert t is not None
        served[t.group.key] += 1
        assert_heap_is_tight(q)
    assert served == {"a": 150, "b": 150}
    assert [pop(q).task_id for _ in range(3)] == [("x", 0), ("x", 1), ("x", 2)]  # type: ignore[union-attr]


def test_commit_of_a_hand_built_selection() -> None:
    """A selection built without select_next's position hint still commits the right task."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("b1", "b"), task("b2", "b"), task("c1", "c")])
    b1 = q.view().first_candidate("b")
    assert b1 is not None
    assert q.commit(sg.scheduling.QueueSelection(b1, q.view(), q.view().sequence_version)) is b1
    assert_heap_is_tight(q)
    assert [pop(q).task_id for _ in range(3)] == ["a1", "c1", "b2"]  # type: ignore[union-attr]


def test_short_lived_groups_are_forgotten_and_fairness_is_kept() -> None:
    """Many one-task groups (one per request, say) must not grow the queue's memory forever;
    a long-lived group keeps its share while they come and go."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(("main", i), "main") for i in range(20_000)])
    served = Counter[str]()
    for i in range(10_000):
        q.enqueue([task(("eph", i), f"eph{i}")])
        for _ in range(2):
            t = pop(q)
            assert t is not None
            served["main" if t.group.key == "main" else "eph"] += 1
    assert len(q.group_weights()) < 3_000  # not 10,001
    assert served == {"main": 10_000, "eph": 10_000}  # every one-task group was served once


def test_an_idle_group_owes_at_most_one_stride() -> None:
    """What makes forgetting idle groups safe: a comeback gains at most one task's turn."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(f"h{i}", "heavy", 0.01) for i in range(3)])  # stride 100 per task
    q.enqueue([task(f"l{i}", "light", 1.0) for i in range(50)])
    while pop(q) is not None:
        for key, g in q._state.groups.items():
            if not g.tasks:
                assert g.pass_ - q._state.vtime <= g.stride, key


def test_view_answers_for_absent_groups_and_resources() -> None:
    """Policies ask a view about any group or resource: absent ones read as empty, never
    raise, and a group that emptied reads like one that never queued."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a", gpu=2), task("a2", "a", gpu=1), task("b1", "b", 2.0)])
    v = q.view()
    assert v.is_current
    assert v.queued_in_group("a") == 2 and v.queued_in_group("b") == 1
    assert v.queued_in_group("nobody") == 0
    assert v.demand("a", "submission") == 0  # a queues gpu work only
    assert v.demand("nobody", "gpu") == 0
    assert v.groups_with_demand("tpu") == 0
    assert v.demand_weight("tpu") == 0.0
    assert v.demand_weight("submission") == 2.0  # only b (weight 2) wants submission
    assert v.first_candidate("nobody") is None
    b1 = pop(q, lambda t, v: t.group.key == "b")
    assert b1 is not None and b1.task_id == "b1"
    v = q.view()
    assert v.is_current
    assert v.queued_in_group("b") == 0
    assert v.first_candidate("b") is None
    assert v.demand("b", "submission") == 0 and v.demand_weight("submission") == 0.0
    assert v.active_groups() == ["a"] and v.count_by_group() == {"a": 2}


def test_a_new_group_joins_at_the_current_virtual_time_not_behind_it() -> None:
    """A group that arrives after another has been served once is next: it joins at the
    current virtual time, which the served group has already moved past."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("a2", "a")])
    assert pop(q).task_id == "a1"  # type: ignore[union-attr]
    q.enqueue([task("b1", "b")])
    assert [pop(q).task_id for _ in range(2)] == ["b1", "a2"]  # type: ignore[union-attr]


def fairest_eligible(q: sg.scheduling.FairTaskQueue, eligible: set[str]) -> str | None:
    """Oracle: the eligible group that is due first (lowest pass; ties: first due)."""
    groups = q._state.groups.items()
    due = [(g.entry[:2], k) for k, g in groups if g.entry is not None and k in eligible]
    return min(due)[1] if due else None


@settings(max_examples=80, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=4, max_size=12),
    rounds=st.lists(st.sets(st.integers(0, 11)), min_size=1, max_size=40),
)
def test_select_next_finds_the_fairest_eligible_head_among_many_groups(
    weights: list[float], rounds: list[set[int]]
) -> None:
    """With many groups and any subset of heads eligible, select_next returns the eligible
    head that is due first (even deep in the queue's order), and commits at any position
    keep the order exact."""
    q = sg.scheduling.FairTaskQueue()
    keys = [f"g{i}" for i in range(len(weights))]
    # 1 to 3 tasks per group, so groups empty (and leave the order) at every position
    q.enqueue(
        [
            task((k, j), k, w)
            for j in range(3)
            for i, (k, w) in enumerate(zip(keys, weights, strict=True))
            if j <= i % 3
        ]
    )
    for picks in rounds:
        eligible = {keys[i % len(keys)] for i in picks}
        expected = fairest_eligible(q, eligible)
        sel = q.select_next(lambda t, v, eligible=eligible: t.group.key in eligible)
        assert (sel.item.group.key if sel is not None else None) == expected
        if sel is not None:
            head = q.view().first_candidate(sel.item.group.key)
            assert q.commit(sel) is head
        assert_heap_is_tight(q)
        assert len(q) == sum(q.view().count_by_group().values())


def test_an_idle_group_takes_its_new_weight_when_it_comes_back() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("b0", "b", 1.0)])
    assert pop(q).task_id == "b0"  # type: ignore[union-attr]
    q.enqueue([task(("a", i), "a", 1.0) for i in range(40)])
    q.enqueue([task(("b", i), "b", 3.0) for i in range(40)])  # b idle: weight 3 now
    assert q.group_weights() == {"a": 1.0, "b": 3.0}
    order = Counter(pop(q).group.key for _ in range(40))  # type: ignore[union-attr]
    assert abs(order["b"] - 30) <= 1, order
    q.enqueue([task("b-late", "b", 1.0)])  # b busy: its weight does not change mid-run
    assert q.group_weights()["b"] == 3.0


def test_membership_emptiness_and_drain() -> None:
    q = sg.scheduling.FairTaskQueue()
    assert q.is_empty() and "a" not in q
    q.enqueue([task("a", "x", gpu=1), task("b", "y"), task("c", "x")])
    assert not q.is_empty() and "a" in q and "zzz" not in q
    before = q.view()
    drained = q.drain()
    assert sorted(t.task_id for t in drained) == ["a", "b", "c"]
    assert not before.is_current
    assert q.is_empty() and len(q) == 0 and "a" not in q
    assert q.select_next() is None
    v = q.view()
    assert v.count_by_group() == {} and v.groups_with_demand("gpu") == 0
    assert v.demand_weight("submission") == 0.0 and v.demand("x", "gpu") == 0
    # the drained ids may be queued again, and the queue works as before
    assert q.enqueue([task("a", "x"), task("b", "y")]) == ["a", "b"]
    assert [pop(q).task_id for _ in range(2)] == ["a", "b"]  # type: ignore[union-attr]
    assert q.is_empty()


def test_a_selection_stays_stale_after_other_changes_and_commits() -> None:
    """Once the queue changed after a selection, no later sequence of changes makes that
    selection committable again."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a1", "a"), task("b1", "b")])
    old = q.select_next()
    assert old is not None and old.item.task_id == "a1"
    q.enqueue([task("c1", "c")])
    other = q.select_next(lambda t, v: t.group.key == "b")
    assert other is not None and q.commit(other) is not None
    assert q.commit(old) is None
    assert "a1" in q and len(q) == 2


def test_commit_of_a_task_that_is_not_its_groups_head_is_refused() -> None:
    q = sg.scheduling.FairTaskQueue()
    a1, a2 = task("a1", "a"), task("a2", "a")
    q.enqueue([a1, a2])
    assert q.commit(sg.scheduling.QueueSelection(a2, q.view(), q.view().sequence_version)) is None
    assert len(q) == 2 and [pop(q), pop(q)] == [a1, a2]


def test_a_committed_task_id_can_be_queued_again() -> None:
    """A retried task comes back with the same id: once committed, it is accepted again."""
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task("a")])
    assert pop(q) is not None and "a" not in q
    assert q.enqueue([task("a")]) == ["a"] and len(q) == 1


def test_ties_go_to_the_group_that_became_due_first() -> None:
    q = sg.scheduling.FairTaskQueue()
    q.enqueue([task(("a", i), "a", 2.0) for i in range(6)])
    q.enqueue([task(("b", i), "b", 1.0) for i in range(3)])
    order = "".join(pop(q).group.key for _ in range(9))  # type: ignore[union-attr]
    # after a, b, a both are due at 1.0: b got there first (at its commit), so b goes next
    assert order == "ababaabaa"


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=1, max_size=12),
    served=st.integers(0, 30),
    limit=st.integers(0, 14),
)
def test_heads_in_fair_order_is_the_fair_order_and_bounded(
    weights: list[float], served: int, limit: int
) -> None:
    """The bounded accessor lists group heads exactly in the order select_next would serve
    them (lowest pass first, ties to the group due first), and never more than ``limit``."""
    q = sg.scheduling.FairTaskQueue()
    keys = [f"g{i}" for i in range(len(weights))]
    q.enqueue([task((k, j), k, w) for j in range(4) for k, w in zip(keys, weights, strict=True)])
    for _ in range(served):
        pop(q)
    view = q.view()
    heads = list(view.heads_in_fair_order(limit))
    due = sorted((g.entry[:2], g.tasks[0]) for g in q._state.groups.values() if g.entry is not None)
    assert heads == [t for _, t in due][:limit]
    if heads:
        assert heads[0] is q.select_next().item  # type: ignore[union-attr]


def served_counts(weights: list[float], commits: int) -> list[int]:
    """Every group permanently backlogged; how many tasks each got in ``commits`` commits."""
    q = sg.scheduling.FairTaskQueue()
    specs = [sg.TaskGroupSpec(f"g{i}", w) for i, w in enumerate(weights)]
    q.enqueue(
        [
            sg.SchedulableTask((i, j), None, spec)
            for j in range(commits)
            for i, spec in enumerate(specs)
        ]
    )
    served = [0] * len(weights)
    for _ in range(commits):
        t = pop(q)
        assert t is not None
        served[t.task_id[0]] += 1
    return served


def assert_pairwise_fair(weights: list[float], served: list[int]) -> None:
    """Weighted fair queuing's lag bound: no group gets more than one task ahead of any other
    group's weighted share (n_i / w_i <= n_j / w_j + 1 / w_i), up to the one-in-a-million
    rounding of strides."""
    for i, (wi, ni) in enumerate(zip(weights, served, strict=True)):
        for j, (wj, nj) in enumerate(zip(weights, served, strict=True)):
            if i != j:
                lhs, rhs = ni / wi, nj / wj + 1 / wi
                assert lhs <= rhs * (1 + 1e-6), (i, j, weights, served)


@settings(max_examples=80, deadline=None)
@given(
    exponents=st.lists(st.floats(-6.0, 6.0), min_size=2, max_size=5),
    extremes=st.sets(st.sampled_from([0, 1]), max_size=2),
    commits=st.integers(1, 400),
)
def test_fairness_holds_for_every_accepted_weight(
    exponents: list[float], extremes: set[int], commits: int
) -> None:
    """Weights anywhere in the accepted range, the bounds themselves included."""
    weights = [min(max(10.0**e, 1e-6), 1e6) for e in exponents]
    bounds = (sg.scheduling.MIN_GROUP_WEIGHT, sg.scheduling.MAX_GROUP_WEIGHT)
    for k in extremes:
        weights[k] = bounds[k]
    assert_pairwise_fair(weights, served_counts(weights, commits))


def ratio_after_virtual_time_moved(push: float, p: float, q: float) -> Counter[str]:
    """A group of weight ``push`` is served alone twice (moving the virtual time by one of
    its strides); then groups of weights ``p`` and ``q`` compete for 30 commits."""
    queue = sg.scheduling.FairTaskQueue()
    queue.enqueue([task(("x", i), "x", push) for i in range(2)])
    assert pop(queue) is not None and pop(queue) is not None
    queue.enqueue([task(("p", i), "p", p) for i in range(30)])
    queue.enqueue([task(("q", i), "q", q) for i in range(30)])
    return Counter(pop(queue).group.key for _ in range(30))  # type: ignore[union-attr]


@pytest.mark.parametrize("weight", [1e-300, 5e-324, 1e300, 1e-7, 2e6, 1e-6, 1e6, 3.7e-5, 4.2e5])
def test_every_accepted_weight_keeps_fairness_after_the_virtual_time_moved(
    weight: float,
) -> None:
    """A weight is either refused up front, or fairness holds around it. With float virtual
    time, a group of weight 1e-300 moved the virtual time to 1e300, where the strides of
    groups weighted 1 and 2 vanished (1e300 + 1 == 1e300): they were then served 1:1."""
    try:
        sg.TaskGroupSpec("x", weight)
        if weight > 1:
            sg.TaskGroupSpec("p", weight / 2)
    except sg.ConfigurationError as exc:
        assert exc.field == "TaskGroupSpec.weight"
        assert "1e-06 to 1e+06" in exc.fix
        return
    if weight < 1:  # a tiny stride pushes the virtual time far ahead of weight-1 groups
        served = ratio_after_virtual_time_moved(weight, 1.0, 2.0)
    else:  # a weight-1 group pushes it far ahead of huge weights' strides
        served = ratio_after_virtual_time_moved(1.0, weight / 2, weight)
    assert abs(served["q"] - 20) <= 1, served


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=80),
    read_at=st.integers(0, 80),
)
def test_demand_kept_lazily_matches_the_queued_tasks(
    ops: list[tuple[int, bool]], read_at: int
) -> None:
    """Demand is kept only once someone asks (computed from the queued tasks, then
    maintained): from the first question on, every answer equals a recount."""
    q = sg.scheduling.FairTaskQueue()
    n = 0
    for step, (g, push) in enumerate(ops):
        if push:
            res = {"submission": 1, "gpu": 2} if g % 2 else {"submission": 1}
            q.enqueue([task(n, f"g{g}", 1.0 + g, **res)])
            n += 1
        else:
            pop(q)
        if step >= read_at:
            view = q.view()
            queued = [t for g_ in q._state.groups.values() for t in g_.tasks]
            for res in ("submission", "gpu"):
                groups = {t.group.key for t in queued if res in t.resources}
                assert view.groups_with_demand(res) == len(groups)
                assert view.demand_weight(res) == pytest.approx(
                    sum(1.0 + int(k[1:]) for k in groups)
                )
                for key in [f"g{i}" for i in range(4)]:
                    assert view.demand(key, res) == sum(
                        t.resources.get(res, 0) for t in queued if t.group.key == key
                    )
