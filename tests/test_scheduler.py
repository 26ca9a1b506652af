from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable, Hashable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate import ConfigurationError
from sluicegate.events import EventEmitter


def chain_tracker(n: int, groups: int = 1) -> sg.DagCompletionTracker:
    tr = sg.DagCompletionTracker()
    for i in range(n):
        tr.add(i, group=f"g{i % groups}")
    return tr


async def noop(task: sg.SchedulableTask) -> None:
    await trio.lowlevel.checkpoint()


async def test_runs_dag_in_dependency_order(autojump_clock: trio.testing.MockClock) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("a")
    tr.add("b", depends_on=["a"])
    tr.add("c", depends_on=["a"])
    tr.add("d", depends_on=["b", "c"])
    done: list[Hashable] = []

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(1)
        done.append(task.task_id)

    result = await sg.AsyncTaskScheduler(tr, worker, capacity=4).run()
    assert done[0] == "a" and done[-1] == "d" and set(done[1:3]) == {"b", "c"}
    assert result.counts["succeeded"] == 4
    assert result.admission.active_leases == 0
    assert result.elapsed == pytest.approx(3.0)  # b and c ran in parallel


async def test_capacity_bounds_concurrency(autojump_clock: trio.testing.MockClock) -> None:
    running = 0
    peak = 0

    async def worker(task: sg.SchedulableTask) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    result = await sg.AsyncTaskScheduler(chain_tracker(30), worker, capacity=5).run()
    assert peak == 5
    assert result.elapsed == pytest.approx(6.0)


async def test_retry_with_backoff_then_success(autojump_clock: trio.testing.MockClock) -> None:
    attempts: Counter[Hashable] = Counter()
    times: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        attempts[task.task_id] += 1
        times.append(trio.current_time())
        if attempts[task.task_id] < 3:
            raise sg.RetryableTaskError("flaky")

    sink = sg.InMemoryEventSink()
    retry = sg.RetryPolicy(max_attempts=3, initial_backoff=1.0, multiplier=2.0)
    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker, retry=retry, sink=sink).run()
    assert result.outcomes[0].status == "succeeded" and result.outcomes[0].attempts == 3
    assert times == pytest.approx([0.0, 1.0, 3.0])
    assert sink.kinds().count("retry_deferred") == 2


async def test_retry_after_overrides_backoff(autojump_clock: trio.testing.MockClock) -> None:
    times: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        times.append(trio.current_time())
        if len(times) == 1:
            raise sg.RetryableTaskError("429", retry_after=7.5)

    await sg.AsyncTaskScheduler(chain_tracker(1), worker).run()
    assert times == pytest.approx([0.0, 7.5])


@pytest.mark.parametrize(
    ("second", "retried"),
    [
        (sg.RetryableTaskError("503", retry_after=2.0), True),  # all retryable: retry
        (ValueError("bad input"), False),  # one non-retryable member: the task fails
    ],
)
async def test_a_group_of_failures_from_the_workers_own_nursery(
    autojump_clock: trio.testing.MockClock, second: Exception, retried: bool
) -> None:
    times: list[float] = []

    async def fail(error: Exception) -> None:
        raise error

    async def worker(task: sg.SchedulableTask) -> None:
        times.append(trio.current_time())
        if len(times) == 1:
            async with trio.open_nursery() as nursery:  # two calls in parallel, both fail
                nursery.start_soon(fail, sg.RetryableTaskError("429", retry_after=5.0))
                nursery.start_soon(fail, second)

    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker).run()
    if retried:
        assert times == pytest.approx([0.0, 5.0])  # the latest hint of the group
        assert result.outcomes[0].status == "succeeded" and result.outcomes[0].attempts == 2
    else:
        assert times == [0.0]
        assert result.outcomes[0].status == "failed"
        assert "ExceptionGroup" in (result.outcomes[0].reason or "")
    assert result.admission.active_leases == 0


async def test_attempts_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async def worker(task: sg.SchedulableTask) -> None:
        raise sg.RetryableTaskError("always")

    tr = sg.DagCompletionTracker()
    tr.add("a")
    tr.add("b", depends_on=["a"])
    result = await sg.AsyncTaskScheduler(tr, worker, retry=sg.RetryPolicy(max_attempts=2)).run()
    assert result.outcomes["a"].status == "failed" and result.outcomes["a"].attempts == 2
    assert "attempts exhausted" in (result.outcomes["a"].reason or "")
    assert result.outcomes["b"].status == "dropped"


async def test_non_retryable_drops_downstream_only(autojump_clock: trio.testing.MockClock) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("bad")
    tr.add("child", depends_on=["bad"])
    tr.add("grandchild", depends_on=["child"])
    tr.add("fine")

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == "bad":
            raise ValueError("broken input")

    result = await sg.AsyncTaskScheduler(tr, worker).run()
    statuses = {k: v.status for k, v in result.outcomes.items()}
    assert statuses == {
        "bad": "failed",
        "child": "dropped",
        "grandchild": "dropped",
        "fine": "succeeded",
    }
    assert "ValueError" in (result.outcomes["bad"].reason or "")


async def test_worker_may_return_outcome(autojump_clock: trio.testing.MockClock) -> None:
    async def worker(task: sg.SchedulableTask) -> sg.TaskOutcome | None:
        return sg.TaskOutcome.drop("not needed") if task.task_id == 0 else None

    result = await sg.AsyncTaskScheduler(chain_tracker(2), worker).run()
    assert result.outcomes[0].status == "failed" and result.outcomes[1].status == "succeeded"


async def test_graceful_shutdown_lets_running_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == 0:
            scheduler.shutdown()
        await trio.sleep(5)

    scheduler = sg.AsyncTaskScheduler(chain_tracker(10), worker, capacity=2)
    result = await scheduler.run()
    assert result.shutdown_requested
    assert result.counts["succeeded"] == 2
    assert result.counts["cancelled"] == 8
    assert result.admission.active_leases == 0


async def test_shutdown_deadline_cancels_running(autojump_clock: trio.testing.MockClock) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == 0:
            scheduler.shutdown(grace_period=2.0)
        await trio.sleep(100)

    scheduler = sg.AsyncTaskScheduler(chain_tracker(4), worker, capacity=2)
    result = await scheduler.run()
    assert result.elapsed == pytest.approx(2.0)
    assert result.counts == {"succeeded": 0, "failed": 0, "dropped": 0, "cancelled": 4}
    assert result.admission.active_leases == 0
    assert result.admission.released_total == 2


async def test_a_second_shutdown_can_only_bring_the_deadline_closer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(100)

    async def operator() -> None:
        await trio.sleep(1.0)
        scheduler.shutdown()  # graceful: wait for running tasks however long
        await trio.sleep(1.0)
        scheduler.shutdown(grace_period=30.0)  # "stop within 30 s"
        await trio.sleep(1.0)
        scheduler.shutdown(grace_period=60.0)  # later, longer: ignored
        scheduler.shutdown()  # and so is "no limit"
        await trio.sleep(1.0)
        scheduler.shutdown(grace_period=0.5)  # "now"

    scheduler = sg.AsyncTaskScheduler(chain_tracker(4), worker, capacity=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        result = await scheduler.run()
    assert result.elapsed == pytest.approx(4.5)
    assert result.counts["cancelled"] == 4
    assert result.admission.active_leases == 0


@pytest.mark.parametrize("hard", [False, True])
async def test_worker_with_its_own_nursery_is_recorded_as_cancelled(
    autojump_clock: trio.testing.MockClock, hard: bool
) -> None:
    # A worker making calls in parallel is cancelled as a BaseExceptionGroup of Cancelled: the
    # outcome must still read "Cancelled", not the group's type name.
    async def worker(task: sg.SchedulableTask) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 10)
            nursery.start_soon(trio.sleep, 10)

    sink = sg.InMemoryEventSink()
    scheduler = sg.AsyncTaskScheduler(chain_tracker(2), worker, capacity=2, sink=sink)
    with trio.move_on_after(1) if hard else contextlib.nullcontext():
        async with trio.open_nursery() as nursery:
            if not hard:

                async def operator() -> None:
                    await trio.sleep(1)
                    scheduler.shutdown(grace_period=0.5)

                nursery.start_soon(operator)
            result = await scheduler.run()
            assert result.outcomes == {
                i: sg.scheduling.TaskRunOutcome(status="cancelled", attempts=1, reason="Cancelled")
                for i in range(2)
            }
    assert [e.reason for e in sink.of_kind("cancelled")] == ["Cancelled", "Cancelled"]
    assert scheduler.admission.active_leases == 0


async def test_hard_cancellation_releases_every_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(10)

    scheduler = sg.AsyncTaskScheduler(chain_tracker(50), worker, capacity=8)
    with trio.move_on_after(15):
        await scheduler.run()
    assert scheduler.admission.active_leases == 0
    view = scheduler.admission.view()
    assert view.acquired_total == view.released_total == 16


async def test_unknown_resource_fails_the_run_naming_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("x", resources={"gpu": 1})
    with pytest.raises(sg.errors.UnknownResourceError, match="gpu"):
        await sg.AsyncTaskScheduler(tr, noop).run()


async def test_failing_sink_never_breaks_the_run(autojump_clock: trio.testing.MockClock) -> None:
    class Broken:
        def emit(self, event: object) -> None:
            raise RuntimeError("sink down")

    with pytest.warns(RuntimeWarning, match="sink down"):
        result = await sg.AsyncTaskScheduler(chain_tracker(5), noop, sink=Broken()).run()
    assert result.counts["succeeded"] == 5
    assert result.sink_errors == result.event_count > 0


async def test_scheduler_runs_once(autojump_clock: trio.testing.MockClock) -> None:
    s = sg.AsyncTaskScheduler(chain_tracker(1), noop)
    await s.run()
    with pytest.raises(sg.errors.SchedulerClosedError):
        await s.run()


async def test_stalled_policy_is_reported(autojump_clock: trio.testing.MockClock) -> None:
    class Never:
        name = "never"

        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            return sg.scheduling.TaskAdmissionPolicyDecision(False, "policy_denied")

        def on_acquire(self, lease, usage):  # type: ignore[no-untyped-def]
            return None

        def on_release(self, lease, usage):  # type: ignore[no-untyped-def]
            return None

    adm = sg.TaskAdmissionController(capacity=1, policy=Never())
    with pytest.raises(sg.SchedulerStalledError, match="policy_denied"):
        await sg.AsyncTaskScheduler(chain_tracker(1), noop, admission=adm).run()


async def test_events_are_ordered_and_versioned(autojump_clock: trio.testing.MockClock) -> None:
    sink = sg.InMemoryEventSink()
    await sg.AsyncTaskScheduler(chain_tracker(3), noop, sink=sink, run_id="r1").run()
    events = [e for e in sink.events if isinstance(e, sg.events.SchedulerEvent)]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].event_kind == "scheduler_job_started"
    assert events[-1].event_kind == "scheduler_job_completed"
    assert all(e.schema_version == sg.events.SCHEMA_VERSION for e in events)
    stamps = [e.captured_at for e in events]
    assert stamps == sorted(stamps)
    done = [e for e in events if e.event_kind == "task_completed"]
    assert all(e.correlation is not None and e.correlation.run_id == "r1" for e in done)
    per_task = [e.event_kind for e in sg.events.per_task_events(events) if e.task_id == 1]
    # schema 2: one event per instant (ready and queued; selected, leased and spawned;
    # completed with its lease released); schema 3: the frontier's readiness is one event
    assert per_task == ["ready_enqueued", "task_dispatched", "task_completed"]
    frontier = [e for e in events if e.event_kind == "ready_enqueued"]
    assert [(e.task_ids, e.task_id) for e in frontier] == [([0, 1, 2], None)]
    queued, dispatched, completed = (e for e in sg.events.per_task_events(events) if e.task_id == 1)
    assert queued.group == dispatched.group is not None
    assert dispatched.attempt == 1 and dispatched.lease_id is not None
    assert completed.lease_id == dispatched.lease_id


async def test_fairness_three_to_one_under_contention(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tr = sg.DagCompletionTracker()
    for i in range(300):
        tr.add(("a", i), group="a", weight=3.0)
        tr.add(("b", i), group="b", weight=1.0)
    order: list[str] = []

    async def worker(task: sg.SchedulableTask) -> None:
        order.append(task.group.key)
        await trio.sleep(1)

    await sg.AsyncTaskScheduler(tr, worker, capacity=4).run()
    for start in range(0, 300, 10):
        window = Counter(order[start : start + 40])
        assert abs(window["a"] - 30) <= 2, (start, window)


# -- property test over random DAGs -----------------------------------------------------

dag_strategy = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.lists(st.integers(0, n - 1), max_size=3), min_size=n, max_size=n),
        st.lists(
            st.sampled_from(["ok", "ok", "ok", "retry", "fail", "slow"]), min_size=n, max_size=n
        ),
        st.integers(1, 6),  # capacity
        st.integers(1, 4),  # groups
        st.one_of(st.none(), st.floats(0.5, 30)),  # cancel after
        st.sampled_from(["strict", "borrow", "hard"]),
        st.integers(0, 2**16),
    )
)


@settings(max_examples=120, deadline=None)
@given(dag_strategy)
def test_random_dags_release_every_lease_exactly_once(case: tuple) -> None:  # type: ignore[type-arg]
    n, raw_deps, behaviours, capacity, groups, cancel_after, mode, seed = case
    rng = random.Random(seed)
    tr = sg.DagCompletionTracker()
    for i in range(n):
        deps = sorted({d for d in raw_deps[i] if d < i})  # acyclic by construction
        tr.add(i, depends_on=deps, group=f"g{i % groups}", weight=float(1 + i % groups))
    sink = sg.InMemoryEventSink()
    policy = sg.scheduling.BoundedBorrowPolicy(max_borrow=1) if mode == "borrow" else None
    adm = sg.TaskAdmissionController(capacity=capacity, policy=policy)
    calls: Counter[int] = Counter()
    running = 0
    state: dict[str, object] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        nonlocal running
        calls[task.task_id] += 1
        running += 1
        try:
            assert running <= capacity
            await trio.sleep(rng.uniform(0.1, 3.0))
            kind = behaviours[task.task_id]
            if kind == "retry" and calls[task.task_id] < 3:
                raise sg.RetryableTaskError("transient")
            if kind == "fail":
                raise RuntimeError("bad")
            if kind == "slow":
                await trio.sleep(10)
        finally:
            running -= 1

    async def main() -> None:
        scheduler = sg.AsyncTaskScheduler(
            tr,
            worker,
            admission=adm,
            sink=sink,
            retry=sg.RetryPolicy(max_attempts=3, initial_backoff=0.5),
        )
        state["scheduler"] = scheduler
        async with trio.open_nursery() as nursery:
            if cancel_after is not None:

                async def stop() -> None:
                    await trio.sleep(cancel_after)
                    if mode == "hard":
                        nursery.cancel_scope.cancel()
                    else:
                        scheduler.shutdown(grace_period=rng.choice([None, 1.0]))

                nursery.start_soon(stop)
            state["result"] = await scheduler.run()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    scheduler = state["scheduler"]
    assert isinstance(scheduler, sg.AsyncTaskScheduler)
    view = adm.view()
    assert view.active_leases == 0 and view.in_use == {"submission": 0}
    assert view.acquired_total == view.released_total
    assert view.release_diagnostics == {}
    assert running == 0

    events = [e for e in sink.events if isinstance(e, sg.events.SchedulerEvent)]
    acquired = [e.lease_id for e in events if e.event_kind in ("task_dispatched", "selected")]
    released = [e.lease_id for e in events if _releases_task_lease(e)]
    assert sorted(acquired) == sorted(released) and len(set(acquired)) == len(acquired)
    returned: set[int | None] = set()
    for e in events:
        if _releases_task_lease(e):
            returned.add(e.lease_id)
        if e.event_kind == "task_dispatched":  # never spawned without its lease
            assert e.lease_id is not None and e.lease_id not in returned

    result = state.get("result")
    if isinstance(result, sg.SchedulerRunResult):
        assert set(result.outcomes) == set(range(n))  # exactly one terminal state per task
        assert sum(result.counts.values()) == n
        for tid, outcome in result.outcomes.items():
            if outcome.status == "succeeded":
                assert behaviours[tid] != "fail"
                assert all(result.outcomes[d].status == "succeeded" for d in tr.dependencies(tid))
        if cancel_after is None:
            assert result.counts["cancelled"] == 0
            for tid in range(n):
                if behaviours[tid] in ("ok", "retry", "slow") and all(
                    result.outcomes[d].status == "succeeded" for d in tr.dependencies(tid)
                ):
                    assert result.outcomes[tid].status == "succeeded"


@settings(max_examples=40, deadline=None)
@given(
    durations=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=60),
    capacity=st.integers(1, 8),
)
def test_no_lost_wakeups_work_conserving(durations: list[float], capacity: int) -> None:
    """With independent tasks the dispatcher never idles while work is queued and capacity free."""
    tr = chain_tracker(len(durations), groups=3)
    samples: list[tuple[int, int]] = []
    state: dict[str, sg.AsyncTaskScheduler] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(durations[task.task_id])

    async def probe() -> None:
        # sampled whenever the run is idle in virtual time (all tasks blocked)
        while True:
            await trio.testing.wait_all_tasks_blocked()
            s = state["s"]
            samples.append((s.running, len(s.queue)))
            await trio.sleep(0.05)

    async def main() -> None:
        s = sg.AsyncTaskScheduler(tr, worker, capacity=capacity)
        state["s"] = s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            await s.run()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for running, queued in samples:
        assert not (queued > 0 and running < capacity), (running, queued)


async def test_tasks_added_mid_run_are_picked_up(autojump_clock: trio.testing.MockClock) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("first")
    scheduler: sg.AsyncTaskScheduler
    seen: list[Hashable] = []

    async def worker(task: sg.SchedulableTask) -> None:
        seen.append(task.task_id)
        if task.task_id == "first":
            tr.add("late", depends_on=["first"])
            tr.add("later")
            scheduler.notify()
        await trio.sleep(1)

    scheduler = sg.AsyncTaskScheduler(tr, worker, capacity=4)
    result = await scheduler.run()
    assert seen == ["first", "later", "late"]
    assert result.counts["succeeded"] == 3


async def test_reconfigure_mid_run_grows_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peak = running = 0
    scheduler: sg.AsyncTaskScheduler
    sink = sg.InMemoryEventSink()

    async def worker(task: sg.SchedulableTask) -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        if task.task_id == 0:
            scheduler.reconfigure({"submission": 6})
        await trio.sleep(1)
        running -= 1

    scheduler = sg.AsyncTaskScheduler(chain_tracker(30), worker, capacity=2, sink=sink)
    await scheduler.run()
    assert peak == 6
    assert "config_reloaded" in sink.kinds()


async def test_spawn_failure_releases_lease_and_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class FlakySpawn(sg.AsyncTaskScheduler):
        failures = 0

        def _spawn(self, spawn, run_task, task, lease, attempt):  # type: ignore[no-untyped-def]
            if self.failures == 0:
                self.failures += 1
                raise RuntimeError("nursery refused")
            super()._spawn(spawn, run_task, task, lease, attempt)

    sink = sg.InMemoryEventSink()
    scheduler = FlakySpawn(chain_tracker(3), noop, capacity=1, sink=sink)
    result = await scheduler.run()
    assert result.counts["succeeded"] == 3
    assert result.outcomes[0].attempts == 2
    assert sink.kinds().count("worker_spawn_failed") == 1
    # the unusual path keeps its steps: selected (with the lease), then the failed spawn
    # returning that lease, then the retry
    per_task = [
        e for e in sg.events.per_task_events(sink.events) if getattr(e, "task_id", None) == 0
    ]
    assert [e.event_kind for e in per_task] == [
        "ready_enqueued",
        "selected",
        "worker_spawn_failed",
        "retry_deferred",
        "ready_enqueued",
        "task_dispatched",
        "task_completed",
    ]
    selected, failed, deferred = per_task[1:4]
    assert selected.lease_id is not None and failed.lease_id == selected.lease_id
    assert (failed.reason, failed.attempt, deferred.lease_id) == ("RuntimeError", 1, None)
    assert result.admission.active_leases == 0
    assert result.admission.acquired_total == result.admission.released_total == 4


async def test_policy_available_after_wakes_dispatcher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class OpensAt:
        """Denies everything before t=10 (e.g. a maintenance window)."""

        name = "opens_at"

        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            if usage.now < 10.0:
                return sg.scheduling.TaskAdmissionPolicyDecision(
                    False, "policy_denied", available_after=10.0
                )
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

        def on_acquire(self, lease, usage):  # type: ignore[no-untyped-def]
            return None

        def on_release(self, lease, usage):  # type: ignore[no-untyped-def]
            return None

    started: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append(trio.current_time())

    adm = sg.TaskAdmissionController(capacity=2, policy=OpensAt())
    sink = sg.InMemoryEventSink()
    await sg.AsyncTaskScheduler(chain_tracker(2), worker, admission=adm, sink=sink).run()
    assert started == pytest.approx([10.0, 10.0])
    blocked = sink.of_kind("admission_blocked")
    assert blocked and blocked[0].available_after == 10.0


# -- regressions -------------------------------------------------------------------------


async def test_zero_grace_at_time_zero_cancels_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        scheduler.shutdown(grace_period=0)
        await trio.sleep(100)

    scheduler = sg.AsyncTaskScheduler(chain_tracker(1), worker)
    result = await scheduler.run()
    assert result.elapsed == 0.0
    assert result.counts["cancelled"] == 1


async def test_returned_retry_is_bounded_by_max_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def worker(task: sg.SchedulableTask) -> sg.TaskOutcome:
        nonlocal calls
        calls += 1
        return sg.TaskOutcome.retry(1.0, "not yet")

    result = await sg.AsyncTaskScheduler(
        chain_tracker(1), worker, retry=sg.RetryPolicy(max_attempts=3)
    ).run()
    assert calls == 3
    assert result.outcomes[0].status == "failed"


async def test_task_awaiting_retry_at_shutdown_keeps_its_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == 0:
            raise sg.RetryableTaskError("later", retry_after=50)
        await trio.sleep(5)
        scheduler.shutdown()

    scheduler = sg.AsyncTaskScheduler(chain_tracker(2), worker, capacity=2)
    result = await scheduler.run()
    assert result.outcomes[0].status == "cancelled"
    assert result.outcomes[0].attempts == 1
    assert result.outcomes[0].reason == "awaiting_retry"


async def test_a_retryable_failure_during_shutdown_never_spends_the_last_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        scheduler.shutdown()
        raise sg.RetryableTaskError("request admission is shutting down")

    tracker = sg.DagCompletionTracker()
    tracker.add("a")
    tracker.add("b", depends_on=["a"])
    retry = sg.RetryPolicy(max_attempts=1)  # this attempt is the last one
    scheduler = sg.AsyncTaskScheduler(tracker, worker, retry=retry)
    result = await scheduler.run()
    a, b = result.outcomes["a"], result.outcomes["b"]
    assert (a.status, a.reason, a.attempts) == ("cancelled", "awaiting_retry", 1)
    assert (b.status, b.reason) == ("cancelled", "not_started")  # not dropped
    assert result.admission.active_leases == 0


async def test_the_last_attempt_still_fails_outside_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def worker(task: sg.SchedulableTask) -> None:
        raise sg.RetryableTaskError("flaky")

    retry = sg.RetryPolicy(max_attempts=1)
    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker, retry=retry).run()
    assert result.outcomes[0].status == "failed"


async def test_tracker_errors_surface_unwrapped(autojump_clock: trio.testing.MockClock) -> None:
    class BadTracker(sg.DagCompletionTracker):
        def ready_frontier(self) -> list[sg.SchedulableTask]:
            raise KeyError("tracker bug")

    tr = BadTracker()
    tr.add("a")
    with pytest.raises(KeyError, match="tracker bug"):
        await sg.AsyncTaskScheduler(tr, noop).run()


async def test_past_available_after_does_not_spin(autojump_clock: trio.testing.MockClock) -> None:
    evaluations = 0

    class Stale:
        name = "stale"

        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            nonlocal evaluations
            evaluations += 1
            if usage.now < 1.0:
                return sg.scheduling.TaskAdmissionPolicyDecision(
                    False, "policy_denied", available_after=0.0
                )
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

        def on_acquire(self, lease, usage):  # type: ignore[no-untyped-def]
            return None

        def on_release(self, lease, usage):  # type: ignore[no-untyped-def]
            return None

    adm = sg.TaskAdmissionController(capacity=1, policy=Stale())
    result = await sg.AsyncTaskScheduler(chain_tracker(1), noop, admission=adm).run()
    assert result.counts["succeeded"] == 1
    assert evaluations < 3100  # polled at most once per millisecond for one second


async def test_oversized_request_rejected_before_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("huge", resources={"submission": 9})
    with pytest.raises(sg.ConfigurationError, match="requests 9 units") as info:
        await sg.AsyncTaskScheduler(tr, noop, capacity=4).run()
    assert info.value.field == "task 'huge'.resources['submission']"


async def test_shutdown_before_run_cancels_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler = sg.AsyncTaskScheduler(chain_tracker(3), noop)
    scheduler.shutdown()
    result = await scheduler.run()
    assert result.counts["cancelled"] == 3 and result.shutdown_requested


async def test_schema_version_is_written_to_jsonl(
    autojump_clock: trio.testing.MockClock, tmp_path: object
) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        await sg.AsyncTaskScheduler(chain_tracker(2), noop, sink=sink).run()
    first = path.read_text().splitlines()[0]
    assert f'"schema_version":{sg.events.SCHEMA_VERSION}' in first
    events = sg.read_events(path)
    assert {e.schema_version for e in events} == {sg.events.SCHEMA_VERSION}
    assert "queue_empty" in [e.event_kind for e in events]


class _PolicyBase:
    name = "test_policy"

    def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
        return sg.scheduling.TaskAdmissionPolicyDecision(True)

    def on_acquire(self, lease, usage):  # type: ignore[no-untyped-def]
        return None

    def on_release(self, lease, usage):  # type: ignore[no-untyped-def]
        return None


async def test_policy_always_past_hint_is_a_stall(autojump_clock: trio.testing.MockClock) -> None:
    class NeverOpens(_PolicyBase):
        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            return sg.scheduling.TaskAdmissionPolicyDecision(
                False, "policy_denied", available_after=0.0
            )

    adm = sg.TaskAdmissionController(capacity=1, policy=NeverOpens())
    with pytest.raises(sg.SchedulerStalledError, match="policy_denied"):
        await sg.AsyncTaskScheduler(chain_tracker(1), noop, admission=adm).run()
    assert 5.0 < trio.current_time() < 5.1
    assert adm.view().active_leases == 0


def test_on_acquire_raising_takes_the_grant_back() -> None:
    class Broken(_PolicyBase):
        def on_acquire(self, lease, usage):  # type: ignore[no-untyped-def]
            raise RuntimeError("policy bug")

    adm = sg.TaskAdmissionController(capacity=2, policy=Broken())
    q = sg.scheduling.FairTaskQueue()
    task = sg.SchedulableTask("t")
    q.enqueue([task])
    with pytest.raises(RuntimeError, match="policy bug"):
        adm.try_acquire(task, q.view())
    view = adm.view()
    assert view.active_leases == 0 and view.in_use["submission"] == 0
    assert view.acquired_total == 0 and adm.free_resources == 1


def test_on_release_raising_still_releases_and_never_raises() -> None:
    class Broken(_PolicyBase):
        def on_release(self, lease, usage):  # type: ignore[no-untyped-def]
            raise RuntimeError("policy bug")

    adm = sg.TaskAdmissionController(capacity=1, policy=Broken())
    q = sg.scheduling.FairTaskQueue()
    task = sg.SchedulableTask("t")
    q.enqueue([task])
    lease = adm.try_acquire(task, q.view())
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    result = adm.release(lease)
    assert result.released and result.diagnostics is not None
    assert "policy bug" in result.diagnostics["policy_error"]
    view = adm.view()
    assert view.active_leases == 0 and view.release_diagnostics == {"policy_error": 1}
    assert adm.release(lease).reason == "duplicate"


async def test_policy_error_in_dispatch_surfaces_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken(_PolicyBase):
        def on_acquire(self, lease, usage):  # type: ignore[no-untyped-def]
            if lease.item.task_id == 1:
                raise RuntimeError("policy bug")

    adm = sg.TaskAdmissionController(capacity=1, policy=Broken())
    with pytest.raises(RuntimeError, match="policy bug"):
        await sg.AsyncTaskScheduler(chain_tracker(3), noop, admission=adm).run()
    assert adm.view().active_leases == 0


@pytest.mark.parametrize("where", ["is_retryable", "mark_complete"])
async def test_cleanup_errors_surface_unwrapped_with_zero_leases(
    autojump_clock: trio.testing.MockClock, where: str
) -> None:
    class BadTracker(sg.DagCompletionTracker):
        def mark_complete(self, task, outcome):  # type: ignore[no-untyped-def]
            if where == "mark_complete" and task.task_id == 0:
                raise KeyError("tracker bug")
            return super().mark_complete(task, outcome)

    def is_retryable(error: BaseException) -> bool:
        raise KeyError("classifier bug")

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == 0:
            await trio.sleep(1)
            if where == "is_retryable":
                raise ValueError("boom")
        else:
            await trio.sleep(100)

    tr = BadTracker()
    tr.add(0)
    tr.add(1)
    adm = sg.TaskAdmissionController(capacity=2)
    with pytest.raises(KeyError, match="bug"):
        await sg.AsyncTaskScheduler(tr, worker, admission=adm, is_retryable=is_retryable).run()
    assert trio.current_time() == 1.0  # the other worker was cancelled, not awaited
    assert adm.view().active_leases == 0


async def test_requeued_retry_drained_at_shutdown_says_awaiting_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == 0:
            raise sg.RetryableTaskError("later", retry_after=1)
        await trio.sleep(5)  # task 0 is re-queued at t=1 but capacity is full
        scheduler.shutdown()

    scheduler = sg.AsyncTaskScheduler(chain_tracker(2), worker, capacity=1)
    result = await scheduler.run()
    assert result.outcomes[0].status == "cancelled"
    assert result.outcomes[0].reason == "awaiting_retry"
    assert result.outcomes[0].attempts == 1


async def test_shutdown_grace_before_run_starts_on_the_run_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler = sg.AsyncTaskScheduler(chain_tracker(1), noop)
    scheduler.shutdown(grace_period=3)
    result = await scheduler.run()
    assert result.counts["cancelled"] == 1


def test_shutdown_outside_trio_and_bad_grace() -> None:
    scheduler = sg.AsyncTaskScheduler(chain_tracker(1), noop)
    with pytest.raises(sg.ConfigurationError, match="grace_period"):
        scheduler.shutdown(grace_period=-1)
    scheduler.shutdown(grace_period=2)  # no trio run needed

    async def main() -> sg.SchedulerRunResult:
        return await scheduler.run()

    assert trio.run(main).counts["cancelled"] == 1


async def test_read_events_names_the_bad_line(
    autojump_clock: trio.testing.MockClock, tmp_path: object
) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        await sg.AsyncTaskScheduler(chain_tracker(1), noop, sink=sink).run()
    lines = path.read_bytes().splitlines(keepends=True)
    good = lines[0]
    # A damaged line in the middle is named (a torn last line is tolerated: test_events.py).
    path.write_bytes(good + b"\n" + b'{"schema_version":2,"event_ki\n' + good)
    with pytest.raises(sg.errors.EventDecodeError, match=r"events.jsonl:3: not a sluicegate event"):
        sg.read_events(path)
    # A newer writer that only added fields still reads; one that changed a field is named.
    assert b'"schema_version":3' in good
    newer = good.replace(b'"schema_version":3', b'"schema_version":7,"new_field":1')
    path.write_bytes(good + newer)
    assert len(sg.read_events(path)) == 2
    path.write_bytes(good + newer.replace(b'"sequence":', b'"sequence":"x","_old":'))
    with pytest.raises(sg.errors.EventDecodeError, match="schema_version 7 is newer"):
        sg.read_events(path)
    # A file of schema 1 (before same-instant events were folded) is refused by name.
    older = good.replace(b'"schema_version":3', b'"schema_version":1')
    path.write_bytes(good + older)
    with pytest.raises(sg.errors.EventSchemaVersionError, match=r"events.jsonl:2: .*1 is older"):
        sg.read_events(path)
    old_kind = older.replace(b'"scheduler_job_started"', b'"dependency_ready"')
    path.write_bytes(old_kind)
    with pytest.raises(sg.errors.EventSchemaVersionError, match="re-run the pipeline") as info:
        sg.read_events(path)
    assert (info.value.found, info.value.expected) == (1, sg.events.SCHEMA_VERSION)
    path.write_bytes(b"".join(lines))
    assert len(sg.read_events(path)) == len(lines)


# -- review: lost wakeups, bad retry hints, awkward lease paths -----------------------------


class _FailFirstSpawn(sg.AsyncTaskScheduler):
    """Its first spawn fails (e.g. a nursery refusing new tasks)."""

    failures = 0

    def _spawn(self, spawn, run_task, task, lease, attempt):  # type: ignore[no-untyped-def]
        if self.failures == 0:
            self.failures += 1
            raise RuntimeError("nursery refused")
        super()._spawn(spawn, run_task, task, lease, attempt)


async def test_spawn_failure_with_zero_backoff_is_retried_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task made ready again by a spawn failure (no backoff) must wake the dispatch loop: it
    is neither deferred nor running, so nothing else would."""
    started: list[tuple[Hashable, float]] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append((task.task_id, trio.current_time()))
        await trio.sleep(1)

    retry = sg.RetryPolicy(initial_backoff=0.0)
    result = await _FailFirstSpawn(chain_tracker(1), worker, retry=retry).run()
    assert result.counts["succeeded"] == 1 and started == [(0, 0.0)]
    # with other work running, the retried task still starts at once, not when that ends
    started.clear()
    tr = sg.DagCompletionTracker()
    tr.add("long")
    tr.add("flaky")

    class FailSecondSpawn(_FailFirstSpawn):
        def _spawn(self, spawn, run_task, task, lease, attempt):  # type: ignore[no-untyped-def]
            if task.task_id == "long":
                sg.AsyncTaskScheduler._spawn(self, spawn, run_task, task, lease, attempt)
            else:
                super()._spawn(spawn, run_task, task, lease, attempt)

    async def slow_first(task: sg.SchedulableTask) -> None:
        started.append((task.task_id, trio.current_time()))
        await trio.sleep(10 if task.task_id == "long" else 1)

    t0 = trio.current_time()
    result = await FailSecondSpawn(tr, slow_first, capacity=2, retry=retry).run()
    assert result.counts["succeeded"] == 2
    assert sorted(started) == [("flaky", t0), ("long", t0)]
    assert result.admission.active_leases == 0


@pytest.mark.parametrize(
    ("retry_after", "second_attempt_at"),
    [(-1.0, 0.0), (float("nan"), 0.5), (float("inf"), 0.5)],
)
async def test_bad_retry_after_never_breaks_the_run(
    autojump_clock: trio.testing.MockClock, retry_after: float, second_attempt_at: float
) -> None:
    """A hint in the past means "now"; a hint that is not a finite number is ignored (the
    backoff applies). Neither may stop the run or stall it."""
    times: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        times.append(trio.current_time())
        if len(times) == 1:
            raise sg.RetryableTaskError("429", retry_after=retry_after)

    retry = sg.RetryPolicy(initial_backoff=0.5)
    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker, retry=retry).run()
    assert result.counts["succeeded"] == 1
    assert times == pytest.approx([0.0, second_attempt_at])


async def test_lease_released_when_the_worker_fails_before_its_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Even the worker's own setup (correlation for its events) failing releases the lease."""

    class BadId:
        def __str__(self) -> str:
            raise ValueError("unprintable id")

    bad = BadId()
    tr = sg.DagCompletionTracker()
    tr.add(bad)
    tr.add("fine")
    sink = sg.InMemoryEventSink()
    result = await sg.AsyncTaskScheduler(tr, noop, sink=sink).run()
    assert result.outcomes["fine"].status == "succeeded"
    assert result.outcomes[bad].status == "failed"
    assert result.admission.active_leases == 0
    assert sum(map(_releases_task_lease, sink.events)) == len(
        sink.of_kind("task_dispatched", "selected")
    )


def test_backoff_saturates_at_the_cap_for_any_attempt() -> None:
    """Many allowed attempts must not overflow the exponential (which would abort the run
    from a worker's cleanup); the delay simply stays at max_backoff."""
    retry = sg.RetryPolicy(max_attempts=10_000, initial_backoff=0.5, max_backoff=30.0)
    assert retry.backoff(1) == 0.5 and retry.backoff(3) == 2.0
    assert retry.backoff(1_100) == retry.backoff(9_999) == 30.0
    assert sg.RetryPolicy(multiplier=3).backoff(2_000) == 30.0  # int ** int: too big a float
    with pytest.raises(sg.ConfigurationError) as info:
        sg.RetryPolicy(multiplier=float("inf"))
    assert info.value.field == "RetryPolicy.multiplier"


async def test_many_attempts_run_past_the_float_range(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def worker(task: sg.SchedulableTask) -> None:
        nonlocal calls
        calls += 1
        if calls < 1_100:
            raise sg.RetryableTaskError("flaky")

    retry = sg.RetryPolicy(max_attempts=2_000, initial_backoff=0.001, max_backoff=0.01)
    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker, retry=retry).run()
    assert result.outcomes[0].status == "succeeded" and result.outcomes[0].attempts == 1_100


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: sg.AsyncTaskScheduler([], noop), "AsyncTaskScheduler.tracker"),  # type: ignore[arg-type]
        (lambda: sg.AsyncTaskScheduler(chain_tracker(1), None), "AsyncTaskScheduler.worker"),  # type: ignore[arg-type]
        (lambda: sg.RetryPolicy(max_attempts=True), "RetryPolicy.max_attempts"),
        (
            lambda: sg.AsyncTaskScheduler(
                chain_tracker(1), noop, capacity=8, admission=sg.TaskAdmissionController()
            ),
            "AsyncTaskScheduler.capacity",
        ),
    ],
)
def test_bad_scheduler_arguments_name_the_field(make: Callable[[], object], field: str) -> None:
    with pytest.raises(sg.ConfigurationError) as info:
        make()
    assert info.value.field == field and info.value.fix


async def test_elapsed_is_measured_from_the_start_of_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(10)  # the run does not start at time zero

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(1)

    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker).run()
    assert result.started_at == pytest.approx(10.0)
    assert result.finished_at == pytest.approx(11.0)
    assert result.elapsed == pytest.approx(1.0)


async def test_default_capacity_is_64(autojump_clock: trio.testing.MockClock) -> None:
    running = peak = 0

    async def worker(task: sg.SchedulableTask) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    scheduler = sg.AsyncTaskScheduler(chain_tracker(100), worker)
    result = await scheduler.run()
    assert peak == 64
    assert result.admission.limits == {"submission": 64}
    assert result.elapsed == pytest.approx(2.0)


async def test_notify_starts_tasks_added_from_outside_a_worker_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("long")
    started: dict[Hashable, float] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        started[task.task_id] = trio.current_time()
        await trio.sleep(10 if task.task_id == "long" else 1)

    scheduler = sg.AsyncTaskScheduler(tr, worker, capacity=4)

    async def operator() -> None:
        await trio.sleep(2)
        tr.add("extra")  # not from a worker: no worker ending will wake the loop for it
        scheduler.notify()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        result = await scheduler.run()
    assert started == {"long": 0.0, "extra": pytest.approx(2.0)}
    assert result.counts["succeeded"] == 2
    assert result.elapsed == pytest.approx(10.0)


async def test_reconfigure_from_outside_a_worker_uses_new_capacity_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append(trio.current_time())
        await trio.sleep(10)

    scheduler = sg.AsyncTaskScheduler(chain_tracker(3), worker, capacity=1)

    async def operator() -> None:
        await trio.sleep(1)
        scheduler.reconfigure({"submission": 3})  # grown while the only worker still runs

    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        result = await scheduler.run()
    assert started == pytest.approx([0.0, 1.0, 1.0])
    assert result.elapsed == pytest.approx(11.0)


async def test_queued_tasks_never_started_at_shutdown_are_not_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        scheduler.shutdown()
        await trio.sleep(1)

    # Capacity 1: task 0 runs, tasks 1 and 2 wait in the queue and are drained at shutdown.
    scheduler = sg.AsyncTaskScheduler(chain_tracker(3), worker, capacity=1)
    result = await scheduler.run()
    assert result.outcomes[0] == sg.scheduling.TaskRunOutcome(status="succeeded", attempts=1)
    for task_id in (1, 2):
        assert result.outcomes[task_id] == sg.scheduling.TaskRunOutcome(
            status="cancelled", attempts=0, reason="not_started"
        )
    assert result.admission.shutting_down  # task admission was told to stop admitting
    assert result.admission.active_leases == 0


@pytest.mark.parametrize("failed", [False, True])
async def test_shutdown_after_the_run_is_a_no_op(
    autojump_clock: trio.testing.MockClock, failed: bool
) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("task", resources={"submission": 9 if failed else 1})  # 9 > capacity: run fails
    scheduler = sg.AsyncTaskScheduler(tr, noop, capacity=4)
    if failed:
        with pytest.raises(sg.ConfigurationError):
            await scheduler.run()
    else:
        await scheduler.run()
    scheduler.shutdown(grace_period=1)  # the run is over: nothing left to stop
    assert not scheduler.admission.view().shutting_down


async def test_task_added_under_a_failed_task_is_reported_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("bad")
    tr.add("later", depends_on=["bad"])  # keeps nothing alive; dropped with "bad"
    tr.add("slow")

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == "bad":
            raise ValueError("broken")
        await trio.sleep(1)
        # "bad" has failed by now: a task added under it is dropped as it is added,
        # without ever reaching the scheduler.
        tr.add("late", depends_on=["bad"])

    result = await sg.AsyncTaskScheduler(tr, worker, capacity=2).run()
    assert result.outcomes["late"] == sg.scheduling.TaskRunOutcome(
        status="dropped", reason="upstream 'bad'"
    )
    assert result.outcomes["later"] == sg.scheduling.TaskRunOutcome(
        status="dropped", reason="upstream 'bad'"
    )
    assert result.counts == {"succeeded": 1, "failed": 1, "dropped": 2, "cancelled": 0}


async def test_a_policy_polling_with_future_hints_is_a_wait_not_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class PollsUntil20(_PolicyBase):
        """Denies until t=20, always saying "look again in one second"."""

        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            if usage.now < 20.0:
                return sg.scheduling.TaskAdmissionPolicyDecision(
                    False, "policy_denied", available_after=usage.now + 1.0
                )
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

    started: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append(trio.current_time())

    adm = sg.TaskAdmissionController(capacity=1, policy=PollsUntil20())
    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker, admission=adm).run()
    assert started == pytest.approx([20.0])  # nothing ran for 20 s, yet no stall
    assert result.counts["succeeded"] == 1


async def test_a_past_hint_while_a_worker_runs_is_not_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class OneAtATimeForGroupB(_PolicyBase):
        """Group "b" waits while anything runs, with a hint that is already past."""

        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            if item.group.key == "b" and usage.in_use("submission"):
                return sg.scheduling.TaskAdmissionPolicyDecision(
                    False, "policy_denied", available_after=usage.now
                )
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

    tr = sg.DagCompletionTracker()
    tr.add("long", group="a")
    tr.add("short", group="b")
    started: dict[Hashable, float] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        started[task.task_id] = trio.current_time()
        if task.task_id == "long":
            await trio.sleep(10)  # far past the 5 s stall grace

    adm = sg.TaskAdmissionController(capacity=2, policy=OneAtATimeForGroupB())
    result = await sg.AsyncTaskScheduler(tr, worker, admission=adm).run()
    assert started == {"long": 0.0, "short": pytest.approx(10.0)}
    assert result.counts["succeeded"] == 2


async def test_short_past_hint_waits_do_not_add_up_to_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(100)  # the stall grace counts from when the wait began, not from zero
    t0 = trio.current_time()

    class TwoShortWaits(_PolicyBase):
        """Denies everything for 3 s, then "b" for 3 s after "a" ends; hints always past."""

        def evaluate(self, item, queue_view, usage):  # type: ignore[no-untyped-def]
            elapsed = usage.now - t0
            if elapsed < 3.0 or (item.task_id == "b" and elapsed < 7.0):
                return sg.scheduling.TaskAdmissionPolicyDecision(
                    False, "policy_denied", available_after=usage.now
                )
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

    tr = sg.DagCompletionTracker()
    tr.add("a")
    tr.add("b")
    started: dict[Hashable, float] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        started[task.task_id] = trio.current_time() - t0
        if task.task_id == "a":
            await trio.sleep(1)  # runs from 3 to 4; "b" then waits 3 s with nothing running

    adm = sg.TaskAdmissionController(capacity=2, policy=TwoShortWaits())
    result = await sg.AsyncTaskScheduler(tr, worker, admission=adm).run()
    assert started == {"a": pytest.approx(3.0), "b": pytest.approx(7.0)}
    assert result.counts["succeeded"] == 2


async def test_a_request_is_checked_again_after_limits_shrink(
    autojump_clock: trio.testing.MockClock,
) -> None:
    big = {"submission": 3}  # one mapping shared by both tasks: checked once per limits
    tr = sg.DagCompletionTracker()
    tr.add("first", resources=big)
    tr.add("second", depends_on=["first"], resources=big)
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        scheduler.reconfigure({"submission": 2})  # "second" can never fit any more

    scheduler = sg.AsyncTaskScheduler(tr, worker, capacity=4)
    with pytest.raises(sg.ConfigurationError, match="requests 3 units") as info:
        await scheduler.run()
    assert info.value.field == "task 'second'.resources['submission']"
    assert scheduler.admission.view().active_leases == 0


async def test_a_stale_selection_releases_its_lease_and_dispatch_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class StaleOnce(sg.scheduling.FairTaskQueue):
        """The first commit finds the queue changed since the selection was made."""

        stale = 0

        def commit(self, selection):  # type: ignore[no-untyped-def]
            if not self.stale:
                self.stale += 1
                return None
            return super().commit(selection)

    started: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        started.append(trio.current_time())
        await trio.sleep(1)

    sink = sg.InMemoryEventSink()
    scheduler = sg.AsyncTaskScheduler(
        chain_tracker(2), worker, capacity=2, queue=StaleOnce(), sink=sink
    )
    result = await scheduler.run()
    assert started == [0.0, 0.0]  # both start at once: the stale pick was retried
    assert result.counts["succeeded"] == 2
    assert sink.kinds().count("stale_selection") == 1
    (selected,) = sink.of_kind("selected")
    (stale,) = sink.of_kind("stale_selection")
    assert stale.lease_id == selected.lease_id is not None  # released in the same instant
    assert result.admission.acquired_total == result.admission.released_total == 3
    assert result.admission.active_leases == 0


async def test_a_returned_outcome_keeps_its_reason_or_names_its_kind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def worker(task: sg.SchedulableTask) -> sg.TaskOutcome:
        if task.task_id == "given":
            return sg.TaskOutcome.drop("nothing to do")
        if task.task_id == "unnamed_drop":
            return sg.TaskOutcome.drop()
        return sg.TaskOutcome.retry(0.5)

    tr = sg.DagCompletionTracker()
    for task_id in ("given", "unnamed_drop", "unnamed_retry"):
        tr.add(task_id)
    retry = sg.RetryPolicy(max_attempts=2)
    result = await sg.AsyncTaskScheduler(tr, worker, retry=retry).run()
    assert result.outcomes["given"].reason == "nothing to do"
    assert result.outcomes["unnamed_drop"].reason == "worker_requested_drop"
    assert result.outcomes["unnamed_retry"] == sg.scheduling.TaskRunOutcome(
        status="failed", attempts=2, reason="attempts exhausted (2): worker_requested_retry"
    )


async def test_a_failure_reason_is_capped_at_200_characters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def worker(task: sg.SchedulableTask) -> None:
        raise ValueError("x" * 500)

    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker).run()
    reason = result.outcomes[0].reason
    assert reason is not None and reason.startswith("ValueError: xxx")
    assert len(reason) == 200


async def test_a_group_where_only_some_failures_give_a_hint_uses_that_hint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    times: list[float] = []

    async def fail(error: Exception) -> None:
        raise error

    async def worker(task: sg.SchedulableTask) -> None:
        times.append(trio.current_time())
        if len(times) == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fail, sg.RetryableTaskError("no hint"))
                nursery.start_soon(fail, sg.RetryableTaskError("429", retry_after=3.0))

    result = await sg.AsyncTaskScheduler(chain_tracker(1), worker).run()
    assert times == pytest.approx([0.0, 3.0])
    assert result.outcomes[0] == sg.scheduling.TaskRunOutcome(status="succeeded", attempts=2)


class _TwoStepTracker:
    """A minimal CompletionTracker of its own: "b" depends on "a"; no ``tasks``/``dropped``."""

    def __init__(self) -> None:
        self.a = sg.SchedulableTask("a", None, sg.TaskGroupSpec("default", 1.0), {"submission": 1})
        self.b = sg.SchedulableTask("b", None, sg.TaskGroupSpec("default", 1.0), {"submission": 1})
        self.ready = [self.a]
        self.open = {"a", "b"}

    def ready_frontier(self) -> list[sg.SchedulableTask]:
        ready, self.ready = self.ready, []
        return ready

    def mark_enqueued(self, task_ids: object) -> None:
        pass

    def mark_complete(self, task: sg.SchedulableTask, outcome: sg.TaskOutcome) -> list[Hashable]:
        self.open.discard(task.task_id)
        if outcome.kind == "drop" and task.task_id == "a":
            self.open.discard("b")
            return ["b"]
        if task.task_id == "a":
            self.ready = [self.b]
        return []

    @property
    def is_finished(self) -> bool:
        return not self.open

    def next_ready_at(self) -> float | None:
        return None


async def test_downstream_drops_reported_by_any_tracker_are_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def worker(task: sg.SchedulableTask) -> None:
        raise ValueError("broken")

    result = await sg.AsyncTaskScheduler(_TwoStepTracker(), worker).run()
    assert result.outcomes == {
        "a": sg.scheduling.TaskRunOutcome(
            status="failed",
            attempts=1,
            reason="ValueError: broken",
            error_type="ValueError",
            error="broken",
        ),
        "b": sg.scheduling.TaskRunOutcome(status="dropped", reason="upstream 'a'"),
    }
    assert result.counts == {"succeeded": 0, "failed": 1, "dropped": 1, "cancelled": 0}


async def test_an_error_in_dispatch_cancels_running_workers_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tr = sg.DagCompletionTracker()
    tr.add("long")
    tr.add("adder")
    scheduler: sg.AsyncTaskScheduler

    async def worker(task: sg.SchedulableTask) -> None:
        if task.task_id == "long":
            await trio.sleep(100)
        else:
            await trio.sleep(1)
            tr.add("huge", resources={"submission": 9})  # can never fit: fails the run

    scheduler = sg.AsyncTaskScheduler(tr, worker, capacity=4)
    with pytest.raises(sg.ConfigurationError, match="requests 9 units"):
        await scheduler.run()
    assert trio.current_time() == pytest.approx(1.0)  # "long" was cancelled, not awaited
    assert scheduler.admission.view().active_leases == 0


def _releases_task_lease(e: object) -> bool:
    """A scheduler event that returns a task lease in its instant (schema 2)."""
    return (
        isinstance(e, sg.events.SchedulerEvent)
        and e.event_kind in sg.events.TASK_LEASE_RELEASING_KINDS
        and e.lease_id is not None
    )


async def test_a_finished_scheduler_is_freed_without_the_cyclic_collector() -> None:
    """A pipeline runs one scheduler per segment of cells, each keeping an outcome per task:
    a reference cycle left behind by a finished run kept them all alive until a rare full
    collection, so memory grew with the table (twice the peak RSS at 100k rows)."""
    import gc
    import weakref

    tracker = sg.DagCompletionTracker()
    for i in range(10):
        tracker.add(i)

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.lowlevel.checkpoint()

    scheduler = sg.AsyncTaskScheduler(tracker, worker, capacity=4)
    result = await scheduler.run()
    assert result.counts["succeeded"] == 10
    ref = weakref.ref(scheduler)
    gc.disable()
    try:
        del scheduler
        assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]
    finally:
        gc.enable()


async def test_task_correlation_is_set_unless_the_worker_sets_its_own() -> None:
    seen: dict[bool, object] = {}

    for correlate in (True, False):

        async def worker(task: sg.SchedulableTask, correlate: bool = correlate) -> None:
            seen[correlate] = sg.events.current_correlation()

        tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask(7)])
        scheduler = sg.AsyncTaskScheduler(
            tracker, worker, capacity=1, run_id="r", task_correlation=correlate
        )
        await scheduler.run()
    mine = seen[True]
    assert isinstance(mine, sg.events.RuntimeCorrelation)
    assert (mine.run_id, mine.task_id, mine.task_execution_id) == ("r", 7, "7#1")
    assert seen[False] is None
    with pytest.raises(ConfigurationError, match="task_correlation"):
        sg.AsyncTaskScheduler(
            sg.DagCompletionTracker(),
            worker,
            task_correlation=1,  # type: ignore[arg-type]
        )


async def test_job_events_can_be_left_to_the_caller() -> None:
    """``job_events=False``: no ``scheduler_job_started`` / ``_completed`` (the caller's)."""
    for job_events, expected in ((True, 1), (False, 0)):
        sink = sg.InMemoryEventSink()
        tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask(i) for i in range(3)])
        scheduler = sg.AsyncTaskScheduler(
            tracker, noop, capacity=2, sink=sink, job_events=job_events
        )
        await scheduler.run()
        kinds = [e.event_kind for e in sink.events]
        assert kinds.count("scheduler_job_started") == expected
        assert kinds.count("scheduler_job_completed") == expected
        assert kinds.count("task_completed") == 3
    with pytest.raises(ConfigurationError, match="job_events"):
        sg.AsyncTaskScheduler(
            sg.DagCompletionTracker(),
            noop,
            job_events="no",  # type: ignore[arg-type]
        )


async def test_schedulers_in_a_row_continue_one_event_stream() -> None:
    """``events=``: a second scheduler numbers on from the first (one gap-free stream)."""
    sink = sg.InMemoryEventSink()
    stream = EventEmitter(sink)

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.lowlevel.checkpoint()

    for first in (0, 10):
        tracker = sg.DagCompletionTracker.from_tasks(
            [sg.SchedulableTask(first + i) for i in range(3)]
        )
        await sg.AsyncTaskScheduler(tracker, worker, capacity=2, events=stream).run()
    sequences = [e.sequence for e in sink.events]
    assert sequences == list(range(1, len(sequences) + 1))
    assert sum(e.event_kind == "scheduler_job_started" for e in sink.events) == 2
    with pytest.raises(ConfigurationError, match="not both"):
        sg.AsyncTaskScheduler(sg.DagCompletionTracker(), worker, sink=sink, events=stream)
    with pytest.raises(ConfigurationError, match="EventEmitter"):
        sg.AsyncTaskScheduler(sg.DagCompletionTracker(), worker, events=sink)  # type: ignore[arg-type]


async def test_a_task_carried_over_from_an_earlier_scheduler_continues_its_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A tracker that outlives one scheduler (a pipeline runs one per segment of cells) says
    how many attempts a task already had: the new scheduler continues the count, so (task,
    attempt) stays unique over the run instead of restarting at 1."""
    seen: list[str | None] = []

    async def worker(task: sg.SchedulableTask) -> None:
        correlation = sg.events.current_correlation()
        seen.append(None if correlation is None else correlation.task_execution_id)
        if len(seen) == 1:
            raise sg.RetryableTaskError("flaky")

    sink = sg.InMemoryEventSink()
    tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("t", prior_attempts=2)])
    retry = sg.RetryPolicy(max_attempts=4)  # counts the earlier attempts too
    result = await sg.AsyncTaskScheduler(tracker, worker, retry=retry, sink=sink).run()
    dispatched = [e.attempt for e in sink.of_kind("task_dispatched")]
    assert dispatched == [3, 4]
    assert seen == ["t#3", "t#4"]
    assert result.outcomes["t"].status == "succeeded" and result.outcomes["t"].attempts == 4


@pytest.mark.parametrize("prior", [-1, 1.5, "2"])
def test_prior_attempts_must_be_a_whole_number(prior: object) -> None:
    with pytest.raises(ConfigurationError, match=r"prior_attempts.*Fix: pass the number"):
        sg.SchedulableTask("t", prior_attempts=prior)  # type: ignore[arg-type]
