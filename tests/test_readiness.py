from __future__ import annotations

import pytest
import trio

import sluicegate as sg


def ids(tasks: list[sg.SchedulableTask]) -> list[object]:
    return [t.task_id for t in tasks]


def test_frontier_follows_dependencies() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("c", depends_on=["a", "b"])
    tr.add("a")
    tr.add("b", depends_on=["a"])
    tr.seal()
    front = tr.ready_frontier()
    assert ids(front) == ["a"]
    tr.mark_enqueued(["a"])
    assert tr.ready_frontier() == []
    tr.mark_complete(front[0], sg.TaskOutcome.success())
    assert ids(tr.ready_frontier()) == ["b"]
    tr.mark_enqueued(["b"])
    tr.mark_complete(tr.tasks["b"], sg.TaskOutcome.success())
    assert ids(tr.ready_frontier()) == ["c"]
    tr.mark_enqueued(["c"])
    assert not tr.is_finished
    tr.mark_complete(tr.tasks["c"], sg.TaskOutcome.success())
    assert tr.is_finished


def test_frontier_lists_ready_tasks_until_enqueued() -> None:
    tr = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask(i) for i in range(3)])
    assert ids(tr.ready_frontier()) == [0, 1, 2]
    tr.mark_enqueued([1])
    assert ids(tr.ready_frontier()) == [0, 2]
    tr.mark_enqueued([1])  # idempotent
    assert tr.state_of(1) == "enqueued"


def test_cycle_is_rejected_naming_the_tasks() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a", depends_on=["c"])
    tr.add("b", depends_on=["a"])
    tr.add("c", depends_on=["b"])
    tr.add("d")
    with pytest.raises(sg.DependencyCycleError) as info:
        tr.seal()
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert "'a'" in str(info.value) and "Fix" in str(info.value)


def test_self_dependency_is_a_cycle() -> None:
    tr = sg.DagCompletionTracker()
    with pytest.raises(sg.DependencyCycleError):
        tr.add("a", depends_on=["a"])


def test_unknown_dependency_is_rejected_naming_both() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a", depends_on=["ghost"])
    with pytest.raises(sg.UnknownDependencyError) as info:
        tr.seal()
    assert info.value.task_id == "a"
    assert info.value.missing == ("ghost",)
    assert "'ghost'" in str(info.value)


def test_duplicate_task_rejected() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a")
    with pytest.raises(sg.DuplicateTaskError, match="'a'"):
        tr.add("a")


def test_bad_resources_and_weights_rejected() -> None:
    tr = sg.DagCompletionTracker()
    with pytest.raises(sg.ConfigurationError, match="resources"):
        tr.add("a", resources={"submission": 0})
    with pytest.raises(sg.ConfigurationError, match="weight"):
        tr.add("b", group="g", weight=-1)
    with pytest.raises(sg.ConfigurationError, match="requests no resource"):
        tr.add("c", resources={})


def test_tasks_added_after_seal_must_reference_known_tasks() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a")
    tr.seal()
    with pytest.raises(sg.UnknownDependencyError):
        tr.add("b", depends_on=["zzz"])
    tr.add("b", depends_on=["a"])
    assert ids(tr.ready_frontier()) == ["a"]


def test_drop_removes_downstream_and_reports_it() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("root")
    tr.add("mid", depends_on=["root"])
    tr.add("leaf", depends_on=["mid"])
    tr.add("other")
    front = tr.ready_frontier()
    tr.mark_enqueued(ids(front))
    dropped = tr.mark_complete(tr.tasks["root"], sg.TaskOutcome.drop("boom"))
    assert sorted(dropped) == ["leaf", "mid"]
    assert tr.dropped["root"] == "boom"
    assert not tr.is_finished
    tr.mark_complete(tr.tasks["other"], sg.TaskOutcome.success())
    assert tr.is_finished


def test_completing_twice_is_an_error() -> None:
    tr = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("a")])
    tr.mark_enqueued(["a"])
    tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.success())
    with pytest.raises(sg.TaskStateError, match="'a'"):
        tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.success())


async def test_retry_becomes_ready_after_delay(autojump_clock: trio.testing.MockClock) -> None:
    tr = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("a")])
    tr.mark_enqueued(["a"])
    tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.retry(5.0))
    assert tr.ready_frontier() == []
    assert tr.next_ready_at() == pytest.approx(trio.current_time() + 5.0)
    await trio.sleep(4.9)
    assert tr.ready_frontier() == []
    await trio.sleep(0.2)
    assert ids(tr.ready_frontier()) == ["a"]
    assert tr.state_of("a") == "ready"


def test_retry_with_zero_delay_is_ready_at_once() -> None:
    tr = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("a")])
    tr.mark_enqueued(["a"])
    tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.retry(0))
    assert ids(tr.ready_frontier()) == ["a"]
