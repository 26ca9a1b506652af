"""Interrupts: a KeyboardInterrupt (or any BaseException) at any step of a run leaks no lease.

Each hook the scheduler calls (event sink, admission policy, completion tracker, worker)
raises at its k-th call, for every k an uninterrupted run reaches; every run must end with
zero task leases and acquired == released, and an interrupt must come out of ``run()`` as one
``SchedulerInterrupted`` (a ``KeyboardInterrupt``) with a one-line summary, not as a group.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import pytest
import trio
import trio.testing

import sluicegate as sg


class Trigger:
    """Counts hook calls; raises ``exc_type`` on call number ``at`` (never when ``at`` is 0)."""

    def __init__(self, at: int, exc_type: type[BaseException] = KeyboardInterrupt) -> None:
        self.at = at
        self.calls = 0
        self.exc_type = exc_type

    def tick(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise self.exc_type(f"injected at call {self.at}")


class RaisingSink:
    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger

    def emit(self, event: Any) -> None:
        self.trigger.tick()


class RaisingPolicy:
    """StrictFairPolicy with caps, raising from any of its hooks at the trigger's call."""

    name = "raising"

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.inner = sg.scheduling.StrictFairPolicy(group_caps={"b": {"submission": 1}})

    def evaluate(self, item: Any, queue_view: Any, usage: Any) -> Any:
        self.trigger.tick()
        return self.inner.evaluate(item, queue_view, usage)

    def on_acquire(self, lease: Any, usage: Any) -> Any:
        self.trigger.tick()
        return None

    def on_release(self, lease: Any, usage: Any) -> Any:
        self.trigger.tick()
        return None


class RaisingTracker:
    """A DagCompletionTracker whose every method raises at the trigger's call."""

    def __init__(self, inner: sg.DagCompletionTracker, trigger: Trigger) -> None:
        self.inner = inner
        self.trigger = trigger

    def ready_frontier(self) -> Sequence[sg.SchedulableTask]:
        self.trigger.tick()
        return self.inner.ready_frontier()

    def mark_enqueued(self, task_ids: Iterable[Hashable]) -> None:
        self.trigger.tick()
        self.inner.mark_enqueued(task_ids)

    def mark_complete(self, task: sg.SchedulableTask, outcome: sg.TaskOutcome) -> Sequence[Any]:
        self.trigger.tick()
        return self.inner.mark_complete(task, outcome)

    @property
    def is_finished(self) -> bool:
        self.trigger.tick()
        return self.inner.is_finished

    def next_ready_at(self) -> float | None:
        self.trigger.tick()
        return self.inner.next_ready_at()


def small_dag() -> sg.DagCompletionTracker:
    """Two groups, a chain and a retry: every dispatch path is exercised."""
    tracker = sg.DagCompletionTracker()
    for i in range(3):
        tracker.add(("a", i), group="a", depends_on=[("a", i - 1)] if i else [])
        tracker.add(("b", i), group="b")
    tracker.add("flaky", group="a")
    return tracker


def make_worker(trigger: Trigger | None) -> Callable[[sg.SchedulableTask], Any]:
    tries: dict[Hashable, int] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        if trigger is not None:
            trigger.tick()
        await trio.sleep(1)
        tries[task.task_id] = tries.get(task.task_id, 0) + 1
        if task.task_id == "flaky" and tries["flaky"] == 1:
            raise sg.RetryableTaskError("once", retry_after=0.5)

    return worker


def run_with(
    hook: str, trigger: Trigger
) -> tuple[sg.TaskAdmissionController, BaseException | None]:
    tracker: Any = small_dag()
    sink: Any = None
    policy: Any = RaisingPolicy(Trigger(0))
    worker_trigger = None
    if hook == "sink":
        sink = RaisingSink(trigger)
    elif hook == "policy":
        policy = RaisingPolicy(trigger)
    elif hook == "tracker":
        tracker = RaisingTracker(tracker, trigger)
    else:
        worker_trigger = trigger
    admission = sg.TaskAdmissionController(capacity=2, policy=policy)
    try:
        # (isinstance against the tracker protocol reads is_finished: a hook call too)
        scheduler = sg.AsyncTaskScheduler(
            tracker, make_worker(worker_trigger), admission=admission, sink=sink
        )
        trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))
    except BaseException as exc:
        return admission, exc
    return admission, None


@pytest.mark.parametrize("hook", ["sink", "policy", "tracker", "worker"])
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_an_exception_at_every_step_leaks_no_lease(
    hook: str, exc_type: type[BaseException]
) -> None:
    counter = Trigger(0)
    admission, error = run_with(hook, counter)
    assert error is None and counter.calls > 5, (hook, counter.calls)
    for k in range(1, counter.calls + 1):
        admission, error = run_with(hook, Trigger(k, exc_type))
        view = admission.view()
        assert view.active_leases == 0, (hook, k)
        assert view.acquired_total == view.released_total, (hook, k)
        assert error is not None, (hook, k)
        # never a group: the error itself, or the interrupt with its summary
        assert not isinstance(error, BaseExceptionGroup), (hook, k, error)
        if exc_type is KeyboardInterrupt:
            assert isinstance(error, KeyboardInterrupt), (hook, k, error)
        else:
            assert isinstance(error, SystemExit), (hook, k, error)


def test_interrupt_in_a_worker_reports_one_line() -> None:
    tracker = sg.DagCompletionTracker()
    for i in range(10):
        tracker.add(i)
    started: list[int] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append(task.task_id)
        if task.task_id == 2:
            raise KeyboardInterrupt
        await trio.sleep(1)

    scheduler = sg.AsyncTaskScheduler(tracker, worker, capacity=3)
    with pytest.raises(sg.scheduling.SchedulerInterrupted) as info:
        trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))
    exc = info.value
    assert isinstance(exc, KeyboardInterrupt)
    result = exc.result
    assert result.interrupted and result.admission.active_leases == 0
    assert result.outcomes[2].status == "cancelled"
    assert result.outcomes[2].reason == "KeyboardInterrupt"
    assert result.outcomes[0].reason == "Cancelled"  # running when the interrupt came
    assert result.outcomes[9].reason == "not_started"
    assert str(exc) == (
        "interrupted after 0.0s: 0 finished (0 succeeded, 0 failed or dropped), "
        "3 cancelled while running, 7 not started"
    )
    assert isinstance(exc.__context__, BaseExceptionGroup)  # the full trace stays reachable
    assert exc.__suppress_context__


def _raise_sigint() -> None:
    signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("where", ["worker", "policy"])
def test_a_real_sigint_winds_the_run_down(where: str) -> None:
    """A real SIGINT, delivered by trio's handler: inside a worker (unprotected code) or in
    the middle of an admission decision (KI-protected: delivered at the next checkpoint)."""
    tracker = sg.DagCompletionTracker()
    for i in range(20):
        tracker.add(i, depends_on=[i - 1] if i >= 4 else [])
    fired = Trigger(0)

    class SignallingPolicy:
        name = "signalling"

        def evaluate(self, item: Any, queue_view: Any, usage: Any) -> Any:
            fired.tick()
            if fired.calls == 6:
                _raise_sigint()  # lands inside the dispatch round
            return sg.scheduling.TaskAdmissionPolicyDecision.allow()

        def on_acquire(self, lease: Any, usage: Any) -> None:
            return None

        def on_release(self, lease: Any, usage: Any) -> None:
            return None

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(1)
        if where == "worker" and task.task_id == 5:
            _raise_sigint()
            await trio.sleep(1)  # unreachable: the interrupt is raised right here

    admission = sg.TaskAdmissionController(
        capacity=3, policy=SignallingPolicy() if where == "policy" else None
    )
    scheduler = sg.AsyncTaskScheduler(tracker, worker, admission=admission)
    with pytest.raises(sg.scheduling.SchedulerInterrupted) as info:
        trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))
    result = info.value.result
    assert result.admission.active_leases == 0
    assert result.admission.acquired_total == result.admission.released_total
    assert sum(result.counts.values()) == 20
    assert 0 < result.counts["cancelled"] < 20


async def test_an_interrupted_run_inside_a_nursery_still_surfaces_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run() awaited inside the caller's own code: the interrupt comes out of run() as one
    SchedulerInterrupted, which the caller may handle."""
    tracker = sg.DagCompletionTracker()
    tracker.add("a")
    tracker.add("b")

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == "b":
            raise KeyboardInterrupt
        await trio.sleep(5)

    scheduler = sg.AsyncTaskScheduler(tracker, worker)
    with pytest.raises(sg.scheduling.SchedulerInterrupted) as info:
        await scheduler.run()
    assert info.value.result.counts == {"succeeded": 0, "failed": 0, "dropped": 0, "cancelled": 2}
