from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

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
    with pytest.raises(sg.errors.DependencyCycleError) as info:
        tr.seal()
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert "'a'" in str(info.value) and "Fix" in str(info.value)


def test_self_dependency_is_a_cycle() -> None:
    tr = sg.DagCompletionTracker()
    with pytest.raises(sg.errors.DependencyCycleError):
        tr.add("a", depends_on=["a"])


def test_unknown_dependency_is_rejected_naming_both() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a", depends_on=["ghost"])
    with pytest.raises(sg.errors.UnknownDependencyError) as info:
        tr.seal()
    assert info.value.task_id == "a"
    assert info.value.missing == ("ghost",)
    assert "'ghost'" in str(info.value)


def test_duplicate_task_rejected() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a")
    with pytest.raises(sg.errors.DuplicateTaskError, match="'a'"):
        tr.add("a")


def test_bad_resources_and_weights_rejected() -> None:
    tr = sg.DagCompletionTracker()
    with pytest.raises(sg.ConfigurationError, match="resources"):
        tr.add("a", resources={"submission": 0})
    with pytest.raises(sg.ConfigurationError, match="weight"):
        tr.add("b", group="g", weight=-1)
    with pytest.raises(sg.ConfigurationError, match="requests no resource"):
        tr.add("c", resources={})


def test_bad_ids_and_dependency_lists_name_the_field() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a")
    tr.add("b")
    with pytest.raises(sg.ConfigurationError) as info:
        tr.add(["x"])
    assert info.value.field == "SchedulableTask.task_id" and info.value.fix
    # a lone id is not a list of ids: "ab" must not mean depends on "a" and "b"
    with pytest.raises(sg.ConfigurationError, match=r"\['ab'\]") as info:
        tr.add("c", depends_on="ab")
    assert info.value.field == "task 'c'.depends_on"
    with pytest.raises(sg.ConfigurationError) as info:
        tr.add("d", depends_on=[["a"]])
    assert info.value.field == "task 'd'.depends_on"
    assert len(tr) == 2


def test_tasks_added_after_seal_must_reference_known_tasks() -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a")
    tr.seal()
    with pytest.raises(sg.errors.UnknownDependencyError):
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
    with pytest.raises(sg.errors.TaskStateError, match="'a'"):
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


@pytest.mark.parametrize("delay", [-1.0, float("nan"), float("inf")])
def test_retry_delay_must_be_a_finite_number_of_seconds(delay: float) -> None:
    """An infinite delay would park the task for good and read as a stall of the run."""
    with pytest.raises(sg.ConfigurationError) as info:
        sg.TaskOutcome.retry(delay)
    assert info.value.field == "TaskOutcome.delay" and "finite" in info.value.fix


def test_retry_with_zero_delay_is_ready_at_once() -> None:
    tr = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("a")])
    tr.mark_enqueued(["a"])
    assert tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.retry(0)) == []
    assert tr.state_of("a") == "ready" and tr.next_ready_at() is None
    assert ids(tr.ready_frontier()) == ["a"]
    tr.mark_enqueued(["a"])
    tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.retry())  # no delay given: none
    assert ids(tr.ready_frontier()) == ["a"] and tr.next_ready_at() is None


def test_task_added_after_seal_below_a_dropped_and_a_running_task() -> None:
    """A late task whose dependencies include a dropped one is dropped at once; the others it
    depends on may still complete afterwards."""
    tr = sg.DagCompletionTracker()
    tr.add("running")
    tr.add("failed")
    tr.mark_enqueued(ids(tr.ready_frontier()))
    tr.mark_complete(tr.tasks["failed"], sg.TaskOutcome.drop("boom"))
    tr.add("late", depends_on=["running", "failed"])
    assert tr.state_of("late") == "dropped"
    assert tr.dropped["late"] == "upstream 'failed'"
    assert tr.mark_complete(tr.tasks["running"], sg.TaskOutcome.success()) == []
    assert tr.ready_frontier() == [] and tr.is_finished


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_operations_keep_readiness_consistent(data: st.DataObject) -> None:
    """Random builds (also after sealing), completions, retries and drops: every state is the
    one the dependencies imply, nothing raises, and the tracker finishes exactly when every
    task is done or dropped."""
    tr = sg.DagCompletionTracker()
    n = 0
    for _ in range(data.draw(st.integers(1, 6), label="initial tasks")):
        deps = data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=3)) if n else set()
        tr.add(n, depends_on=sorted(deps))
        n += 1
    tr.seal()
    running: list[int] = []
    for _ in range(data.draw(st.integers(0, 60), label="steps")):
        op = data.draw(st.sampled_from(["add", "enqueue", "success", "retry", "drop"]))
        if op == "add":
            deps = data.draw(st.sets(st.integers(0, n - 1), max_size=3))
            tr.add(n, depends_on=sorted(deps))
            n += 1
        elif op == "enqueue":
            front = ids(tr.ready_frontier())
            tr.mark_enqueued(front)
            running.extend(front)  # type: ignore[arg-type]
        elif running:
            tid = running.pop(data.draw(st.integers(0, len(running) - 1)))
            outcome = {
                "success": sg.TaskOutcome.success(),
                "retry": sg.TaskOutcome.retry(0.0),
                "drop": sg.TaskOutcome.drop("x"),
            }[op]
            tr.mark_complete(tr.tasks[tid], outcome)
        for tid in range(n):
            state = tr.state_of(tid)
            deps = tr.dependencies(tid)
            if any(tr.state_of(d) == "dropped" for d in deps):
                assert state == "dropped", (tid, state)
            elif state in ("ready", "enqueued", "done"):
                assert all(tr.state_of(d) == "done" for d in deps), (tid, state)
            elif state == "pending":
                assert not all(tr.state_of(d) == "done" for d in deps), tid
        finished = all(tr.state_of(t) in ("done", "dropped") for t in range(n))
        assert tr.is_finished == finished


def test_drop_reasons_name_the_task_that_failed() -> None:
    """Downstream tasks, added before or after the failure, all name the failed task."""
    tr = sg.DagCompletionTracker()
    tr.add("root")
    tr.add("child", depends_on=["root"])
    tr.mark_enqueued(ids(tr.ready_frontier()))
    assert tr.mark_complete(tr.tasks["root"], sg.TaskOutcome.drop("boom")) == ["child"]
    tr.add("late", depends_on=["child"])  # depends on a dropped, not the failed, task
    tr.add("later", depends_on=["late"])
    assert tr.dropped == {
        "root": "boom",
        "child": "upstream 'root'",
        "late": "upstream 'root'",
        "later": "upstream 'root'",
    }


def test_retry_delay_must_be_a_number() -> None:
    for bad in ("1", None, True, -1.0, float("inf"), float("nan")):
        with pytest.raises(sg.ConfigurationError) as caught:
            sg.TaskOutcome.retry(bad)  # type: ignore[arg-type]
        assert caught.value.field == "TaskOutcome.delay"


def test_add_returns_the_task_it_built_with_default_group_and_resources() -> None:
    tr = sg.DagCompletionTracker()
    plain = tr.add("plain")
    grouped = tr.add("grouped", "payload", group="g")
    assert plain is tr.tasks["plain"] and grouped is tr.tasks["grouped"]
    assert grouped.payload == "payload"
    assert grouped.group == sg.TaskGroupSpec("g", 1.0)  # weight 1 unless given
    assert plain.resources == {"submission": 1}


def test_from_tasks_takes_task_and_dependency_pairs() -> None:
    a, b, c = (sg.SchedulableTask(t) for t in "abc")
    tr = sg.DagCompletionTracker.from_tasks([(c, ["a", "b"]), a, (b, ["a"])])
    assert tr.dependencies("c") == ("a", "b") and tr.dependencies("b") == ("a",)
    assert ids(tr.ready_frontier()) == ["a"]


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        # an already visited task comes first in insertion order; the cycle comes later
        ({"b": ["a"], "a": [], "c": ["d"], "d": ["c"]}, {"c", "d"}),
        # the cycle does not pass through the task the search started from
        ({"r": ["x"], "x": ["y"], "y": ["x"]}, {"x", "y"}),
        # a finished side branch inside the cycle's path is not part of the cycle
        ({"r": ["x"], "x": ["leaf", "y"], "y": ["x"], "leaf": []}, {"x", "y"}),
    ],
)
def test_every_cycle_is_found_and_named_exactly(
    graph: dict[str, list[str]], cycle: set[str]
) -> None:
    tr = sg.DagCompletionTracker()
    for task_id, deps in graph.items():
        tr.add(task_id, depends_on=deps)
    with pytest.raises(sg.errors.DependencyCycleError) as info:
        tr.seal()
    assert set(info.value.cycle) == cycle and len(info.value.cycle) == len(cycle)


async def test_retry_is_ready_exactly_when_its_delay_has_passed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The scheduler sleeps until next_ready_at() and then asks for the frontier: the task
    must be ready at that instant, not one tick later; a short delay is still a delay."""
    tr = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("a")])
    tr.mark_enqueued(["a"])
    assert tr.mark_complete(tr.tasks["a"], sg.TaskOutcome.retry(0.5)) == []
    assert tr.ready_frontier() == [] and tr.state_of("a") == "deferred"
    ready_at = tr.next_ready_at()
    assert ready_at is not None
    await trio.sleep_until(ready_at)
    assert ids(tr.ready_frontier()) == ["a"]
    assert tr.state_of("a") == "ready" and tr.next_ready_at() is None
