"""Every public constructor and value of scheduling is checked where it enters.

A bad value raises ``ConfigurationError`` naming the field at once; what is accepted works.
The property tests feed arbitrary values (NaN, inf, bools, strings, lists, mappings, ...)
into each field and require exactly that: a ``ConfigurationError`` up front, or an object
that then runs without any other error (no ``AttributeError`` ten calls later).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate.scheduling import (
    BoundedBorrowPolicy,
    FairTaskQueue,
    StrictFairPolicy,
)

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300, 5e-324]),
    st.text(max_size=4),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["submission", "gpu", ""]), st.integers(-1, 3), max_size=2),
    st.dictionaries(
        st.sampled_from(["a", "b"]),
        st.dictionaries(st.sampled_from(["submission", "x"]), st.integers(-1, 3), max_size=2),
        max_size=2,
    ),
)


async def _noop(task: sg.SchedulableTask) -> None:
    await trio.lowlevel.checkpoint()


def run_tasks(*tasks: sg.SchedulableTask, **scheduler_options: Any) -> sg.SchedulerRunResult:
    tracker = sg.DagCompletionTracker.from_tasks(tasks or [sg.SchedulableTask("t")])
    scheduler = sg.AsyncTaskScheduler(tracker, _noop, **scheduler_options)
    return trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))


def enters(build: Callable[[], Any], use: Callable[[Any], object], *fields: str) -> None:
    """``build()`` rejects with a ConfigurationError naming one of ``fields``, or ``use``
    works."""
    try:
        value = build()
    except sg.ConfigurationError as exc:
        assert any(field in exc.field for field in fields), (exc.field, fields)
        assert exc.fix
        return
    # An undeclared resource, say, is reported by name before anything runs.
    with contextlib.suppress(sg.ConfigurationError):
        use(value)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(key=JUNK, weight=JUNK)
def test_group_spec(key: Any, weight: Any) -> None:
    enters(
        lambda: sg.TaskGroupSpec(key, weight),
        lambda spec: run_tasks(sg.SchedulableTask(1, None, spec)),
        "TaskGroupSpec",
    )


@SETTINGS
@given(value=JUNK, field=st.sampled_from(["task_id", "group", "resources"]))
def test_schedulable_task(value: Any, field: str) -> None:
    kwargs: dict[str, Any] = {"task_id": "t", field: value}
    enters(lambda: sg.SchedulableTask(**kwargs), run_tasks, field)


@SETTINGS
@given(
    value=JUNK,
    field=st.sampled_from(["max_attempts", "initial_backoff", "multiplier", "max_backoff"]),
)
def test_retry_policy(value: Any, field: str) -> None:
    enters(
        lambda: sg.RetryPolicy(**{field: value}),
        lambda retry: run_tasks(retry=retry),
        f"RetryPolicy.{field}",
    )


@SETTINGS
@given(kind=st.one_of(JUNK, st.sampled_from(["success", "retry", "drop", "sucess"])), delay=JUNK)
def test_task_outcome(kind: Any, delay: Any) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("t")

    def use(outcome: sg.TaskOutcome) -> None:
        tracker.ready_frontier()
        tracker.mark_enqueued(["t"])
        tracker.mark_complete(tracker.tasks["t"], outcome)

    enters(lambda: sg.TaskOutcome(kind, delay), use, "TaskOutcome")


@SETTINGS
@given(limits=JUNK, capacity=JUNK, use_limits=st.booleans())
def test_admission_controller(limits: Any, capacity: Any, use_limits: bool) -> None:
    def build() -> sg.TaskAdmissionController:
        if use_limits:
            return sg.TaskAdmissionController(limits)
        return sg.TaskAdmissionController(capacity=capacity)

    enters(build, lambda admission: run_tasks(admission=admission), "TaskAdmissionController")


@SETTINGS
@given(caps=JUNK, borrow=JUNK)
def test_policies(caps: Any, borrow: Any) -> None:
    def use(policy: Any) -> None:
        admission = sg.TaskAdmissionController({"submission": 2, "x": 1}, policy=policy)
        run_tasks(sg.SchedulableTask(1, None, sg.TaskGroupSpec("a")), admission=admission)

    enters(lambda: StrictFairPolicy(group_caps=caps), use, "StrictFairPolicy.group_caps")
    enters(lambda: BoundedBorrowPolicy(max_borrow=borrow), use, "BoundedBorrowPolicy.max_borrow")


@SETTINGS
@given(
    value=JUNK,
    option=st.sampled_from(
        ["admission", "capacity", "queue", "sink", "retry", "is_retryable", "run_id"]
    ),
)
def test_scheduler_options(value: Any, option: str) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("t")
    enters(
        lambda: sg.AsyncTaskScheduler(tracker, _noop, **{option: value}),
        lambda scheduler: trio.run(
            scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0)
        ),
        f"AsyncTaskScheduler.{option}",
    )


@SETTINGS
@given(
    group=st.one_of(JUNK, st.just(sg.TaskGroupSpec("g", 2.0))),
    weight=JUNK,
    depends_on=JUNK,
    resources=JUNK,
)
def test_tracker_add(group: Any, weight: Any, depends_on: Any, resources: Any) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add(0)
    tracker.add(1)

    def build() -> sg.DagCompletionTracker:
        tracker.add(
            "t", None, depends_on=depends_on, group=group, weight=weight, resources=resources
        )
        return tracker

    def use(tr: sg.DagCompletionTracker) -> None:
        try:
            tr.seal()
        except sg.errors.TaskGraphError:
            return  # e.g. depends_on=[3]: an unknown dependency, reported by name
        trio.run(
            sg.AsyncTaskScheduler(tr, _noop).run,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )

    enters(build, use, "task 't'", "TaskGroupSpec")


@SETTINGS
@given(grace=JUNK)
def test_shutdown_grace_period(grace: Any) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("t")
    scheduler = sg.AsyncTaskScheduler(tracker, _noop)
    enters(
        lambda: scheduler.shutdown(grace),
        lambda _: trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0)),
        "shutdown.grace_period",
    )


# -- the specific cases, with their messages ----------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field", "problem"),
    [
        (lambda: sg.TaskGroupSpec("g", True), "TaskGroupSpec.weight", "True"),
        (lambda: sg.TaskGroupSpec("g", math.nan), "TaskGroupSpec.weight", "nan"),
        (lambda: sg.TaskGroupSpec("g", 1e-300), "TaskGroupSpec.weight", "1e-300"),
        (
            lambda: sg.SchedulableTask("t", resources="submission"),
            "task 't'.resources",
            "not a mapping",
        ),
        (lambda: sg.SchedulableTask("t", group="g"), "task 't'.group", "not a TaskGroupSpec"),
        (lambda: sg.SchedulableTask(["t"]), "SchedulableTask.task_id", "not hashable"),
        (lambda: sg.RetryPolicy(initial_backoff=True), "RetryPolicy.initial_backoff", "True"),
        (lambda: sg.RetryPolicy(max_backoff=math.inf), "RetryPolicy.max_backoff", "inf"),
        (lambda: sg.TaskOutcome("sucess"), "TaskOutcome.kind", "did you mean 'success'"),
        (lambda: sg.TaskOutcome("retry", math.nan), "TaskOutcome.delay", "nan"),
        (
            lambda: sg.TaskAdmissionController(["submission"]),
            "TaskAdmissionController.limits",
            "not a mapping",
        ),
        (
            lambda: sg.TaskAdmissionController(capacity=2.5),
            "TaskAdmissionController.capacity",
            "2.5",
        ),
        (
            lambda: sg.TaskAdmissionController(capacity=True),
            "TaskAdmissionController.capacity",
            "True",
        ),
        (
            lambda: StrictFairPolicy(group_caps=["a"]),
            "StrictFairPolicy.group_caps",
            "not a mapping",
        ),
        (lambda: BoundedBorrowPolicy(max_borrow={1: 2}), "BoundedBorrowPolicy.max_borrow", "1"),
        (
            lambda: FairTaskQueue().enqueue(sg.SchedulableTask("t")),
            "FairTaskQueue.enqueue.items",
            "SchedulableTask",
        ),
        (
            lambda: FairTaskQueue().enqueue([{"task_id": 1}]),
            "FairTaskQueue.enqueue.items",
            "not a SchedulableTask",
        ),
        (
            lambda: sg.DagCompletionTracker().add("t", weight=3),
            "task 't'.weight",
            "without a group",
        ),
        (
            lambda: sg.DagCompletionTracker().add("t", group=sg.TaskGroupSpec("g"), weight=3),
            "task 't'.weight",
            "has its own",
        ),
        (lambda: sg.DagCompletionTracker().add("t", group=3), "task 't'.group", "3"),
        (
            lambda: sg.DagCompletionTracker().add_task("t"),
            "DagCompletionTracker.add_task.task",
            "'t'",
        ),
        (
            lambda: sg.AsyncTaskScheduler(sg.DagCompletionTracker(), _noop, retry=3),
            "AsyncTaskScheduler.retry",
            "3",
        ),
        (
            lambda: sg.AsyncTaskScheduler(sg.DagCompletionTracker(), _noop, sink=[]),
            "AsyncTaskScheduler.sink",
            "no emit",
        ),
        (
            lambda: sg.AsyncTaskScheduler(sg.DagCompletionTracker(), _noop, capacity=0),
            "AsyncTaskScheduler.capacity",
            "0",
        ),
    ],
)
def test_bad_values_name_their_field(build: Callable[[], object], field: str, problem: str) -> None:
    with pytest.raises(sg.ConfigurationError) as info:
        build()
    assert info.value.field == field
    assert problem in str(info.value)


def test_a_weight_without_a_group_used_to_be_ignored() -> None:
    """``add(weight=3)`` put the task in the default group of weight 1, silently."""
    tracker = sg.DagCompletionTracker()
    task = tracker.add("t", group="g", weight=3)
    assert task.group == sg.TaskGroupSpec("g", 3.0)
    assert tracker.add("u").group == sg.TaskGroupSpec("default", 1.0)


class _ReturnsBool:
    name = "returns_bool"

    def evaluate(self, item: Any, queue_view: Any, usage: Any) -> Any:
        return True

    def on_acquire(self, lease: Any, usage: Any) -> None:
        return None

    def on_release(self, lease: Any, usage: Any) -> None:
        return None


class _BadReason(_ReturnsBool):
    name = "bad_reason"

    def evaluate(self, item: Any, queue_view: Any, usage: Any) -> Any:
        return sg.scheduling.TaskAdmissionPolicyDecision(False, "group_caped")  # type: ignore[arg-type]


class _NanHint(_ReturnsBool):
    name = "nan_hint"

    def evaluate(self, item: Any, queue_view: Any, usage: Any) -> Any:
        return sg.scheduling.TaskAdmissionPolicyDecision.deny(available_after=math.nan)


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (_ReturnsBool(), "returned True"),
        (_BadReason(), "did you mean 'group_capped'"),
        (_NanHint(), "available_after=nan"),
    ],
)
def test_a_policy_decision_is_checked_where_it_enters(policy: Any, problem: str) -> None:
    admission = sg.TaskAdmissionController(capacity=1, policy=policy)
    with pytest.raises(sg.ConfigurationError) as info:
        run_tasks(admission=admission)
    assert info.value.field == f"{policy.name}.evaluate"
    assert problem in str(info.value)
    assert admission.view().active_leases == 0
