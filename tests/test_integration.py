"""The layers together, the way a data-generation run uses them.

Workers of an ``AsyncTaskScheduler`` make model calls through one ``ModelRequestExecutor``,
which is admitted by one ``AdaptiveRequestAdmissionController`` and served by simulated
providers: a "tight" endpoint that really takes fewer calls than its declared cap (so it
answers 429 and AIMD has to learn), and a "flaky" one with injected failures and timeouts.
Everything runs in virtual time. At the end of every run both layers must be quiescent
(no lease, no waiter, grants == releases) and the shared event stream must tell a consistent
story across the layers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate.observe.timeline import TERMINAL_KINDS

WRITER = sg.RequestResourceKey("tight", "writer-model")
JUDGE = sg.RequestResourceKey("flaky", "judge-model")
EMBED = sg.RequestResourceKey("tight", "writer-model", "embedding")
TIGHT_STATIC_CAP = 6  # the smaller of the two writer aliases' declared caps
TIGHT_HIDDEN_CAP = 2  # what the tight endpoint really takes: beyond it, 429
# writer and writer-b are one endpoint; "embed" calls its embedding domain (another resource
# with its own limit, under the same aggregate cap, served by the same provider)
ALIASES = ("writer", "writer-b", "judge", "embed")
ENDPOINT_OF_ALIAS = {"writer": WRITER, "writer-b": WRITER, "judge": JUDGE, "embed": EMBED}
RETRYABLE_DENIALS = frozenset({"timeout", "shutdown", "circuit_open", "queue_full"})
BOUNDARY = {
    "request_lease_acquired": "A",
    "model_request_started": "S",
    "model_request_completed": "C",
    "request_lease_released": "R",
}


def endpoints() -> list[sg.ModelEndpoint]:
    return [
        sg.ModelEndpoint(
            name="writer",
            provider="tight",
            model_id="writer-model",
            max_parallel_requests=TIGHT_STATIC_CAP,
        ),
        sg.ModelEndpoint(
            name="writer-b", provider="tight", model_id="writer-model", max_parallel_requests=8
        ),
        sg.ModelEndpoint(
            name="judge", provider="flaky", model_id="judge-model", max_parallel_requests=4
        ),
    ]


class Stack:
    """Request admission, executor and providers of one run (what a pipeline builds once)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        sink: sg.EventSink | None = None,
        executor_sink: bool = False,
        settings: sg.RequestResourceSettings | None = None,
        latency: float = 0.2,
        failure_rate: float = 0.15,
        timeout_rate: float = 0.1,
        max_attempts: int = 3,
        backoff_seconds: float = 0.05,
        attempt_timeout: float | None = 1.0,
        admission_timeout: float | None = None,
        tight_rpm: int | None = None,
    ) -> None:
        self.tight = sg.SimulatedProvider(
            name="tight",
            seed=seed,
            latency_seconds=latency,
            latency_jitter=0.5,
            capacity=TIGHT_HIDDEN_CAP,
            requests_per_minute=tight_rpm,  # a hidden quota: 429s even at limit 1
            retry_after_seconds=0.1,
        )
        self.flaky = sg.SimulatedProvider(
            name="flaky",
            seed=seed + 1,
            latency_seconds=latency * 1.5,
            latency_jitter=0.5,
            failure_rate=failure_rate,
            timeout_rate=timeout_rate,
            timeout_seconds=5.0,  # beyond attempt_timeout: the executor's deadline ends it
        )
        self.controller = sg.AdaptiveRequestAdmissionController(
            endpoints(),
            sg.RequestAdmissionConfig(
                defaults=settings or sg.RequestResourceSettings(cooldown_seconds=0.2)
            ),
            sink=sink,
        )
        # executor_sink passes the controller's sink to the executor too, as the demo does:
        # it must still be one request stream (one gap-free sequence), as without it.
        self.executor = sg.ModelRequestExecutor(
            self.controller,
            {"tight": self.tight, "flaky": self.flaky},
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
            attempt_timeout=attempt_timeout,
            admission_timeout=admission_timeout,
            seed=seed,
            sink=sink if executor_sink else None,
        )

    @property
    def providers(self) -> tuple[sg.SimulatedProvider, ...]:
        return (self.tight, self.flaky)


class Cell(msgspec.Struct, frozen=True):
    """A cell's plan: local work, then model calls (alias, short request timeout), one after
    the other or in parallel; ``fail_first``: the first attempt's result is rejected (retry)."""

    local: float = 0.0
    calls: tuple[tuple[str, bool], ...] = ()
    parallel: bool = False
    fail_first: bool = False


def as_task_error(exc: Exception) -> Exception:
    """How a generator maps model-call failures onto task outcomes."""
    if isinstance(exc, sg.ModelRequestError):
        return sg.RetryableTaskError(f"model call failed: {exc.outcome.kind}")
    if isinstance(exc, sg.RequestAdmissionError) and exc.reason in RETRYABLE_DENIALS:
        return sg.RetryableTaskError(f"request admission: {exc.reason}")
    return exc


def cell_worker(
    stack: Stack, *, map_errors: bool = True
) -> Callable[[sg.SchedulableTask], Awaitable[None]]:
    executor = stack.executor
    tries: Counter[Any] = Counter()

    async def call(task: sg.SchedulableTask, alias: str, short: bool) -> None:
        timeout = 0.25 if short else None
        if alias == "embed":
            alias = "writer"
            request = sg.ModelRequest(
                domain="embedding", input=[str(task.task_id)], estimated_tokens=8, timeout=timeout
            )
        else:
            request = sg.ModelRequest(
                messages=[{"role": "user", "content": f"{task.task_id} via {alias}"}],
                max_tokens=16,
                estimated_tokens=32,
                timeout=timeout,
            )
        await executor.execute(alias, request, request_group=task.group.key)

    async def worker(task: sg.SchedulableTask) -> None:
        cell: Cell = task.payload
        tries[task.task_id] += 1
        if cell.local:
            await trio.sleep(cell.local)
        try:
            if cell.parallel and len(cell.calls) > 1:
                errors: list[Exception] = []

                async def collecting(alias: str, short: bool) -> None:
                    try:
                        await call(task, alias, short)
                    except Exception as exc:  # the sibling calls go on
                        errors.append(exc)

                async with trio.open_nursery() as nursery:
                    for alias, short in cell.calls:
                        nursery.start_soon(collecting, alias, short)
                if errors:
                    raise errors[0]
            else:
                for alias, short in cell.calls:
                    await call(task, alias, short)
        except Exception as exc:
            mapped = as_task_error(exc) if map_errors else exc
            if mapped is exc:
                raise
            raise mapped from exc
        if cell.fail_first and tries[task.task_id] == 1:
            raise sg.RetryableTaskError("first result rejected")

    return worker


# -- invariants ---------------------------------------------------------------------------


def assert_quiescent(stack: Stack, admission: sg.TaskAdmissionController) -> None:
    """Zero leases and zero waiters in both layers; every grant released exactly once."""
    view = admission.view()
    assert view.active_leases == 0
    assert set(view.in_use.values()) <= {0}
    assert view.acquired_total == view.released_total
    assert view.release_diagnostics == {}
    snapshot = stack.controller.pressure.snapshot()
    assert snapshot.unknown_releases == 0
    for r in snapshot.resources:
        assert (r.in_flight, r.waiters, r.endpoint_in_flight) == (0, 0, 0), r.resource
        assert r.grants == r.released, r.resource
        assert r.duplicate_releases == r.unknown_releases == 0, r.resource
        assert r.max_in_flight <= r.static_cap
    for ep in snapshot.endpoints:
        assert (ep.in_flight, ep.waiters) == (0, 0), ep.key
        assert ep.max_in_flight <= ep.static_cap
    for provider in stack.providers:
        assert provider.stats.in_flight == 0
    assert stack.tight.stats.max_in_flight <= TIGHT_HIDDEN_CAP


def _tuple_id(task_id: Any) -> Any:
    """A task id as the run saw it (a JSON round trip turns tuples into lists)."""
    return tuple(task_id) if isinstance(task_id, list) else task_id


def assert_consistent_events(
    events: list[Any], stack: Stack, *, cancellations: bool
) -> dict[int, str]:
    """Both streams gap-free and in order; task leases acquired/released once each; every
    request lease reads started (acquired with it) -> completed (released with it), or
    acquired -> released for a grant reclaimed from a cancelled waiter (schema 2), all inside
    one task attempt."""
    sched = [e for e in events if isinstance(e, sg.events.SchedulerEvent)]
    req = [e for e in events if isinstance(e, sg.events.RequestEvent)]
    assert [e.sequence for e in sched] == list(range(1, len(sched) + 1))
    assert [e.sequence for e in req] == list(range(1, len(req) + 1))

    acquired = Counter(e.lease_id for e in sched if e.event_kind in ("task_dispatched", "selected"))
    released = Counter(
        e.lease_id
        for e in sched
        if e.event_kind in sg.events.TASK_LEASE_RELEASING_KINDS and e.lease_id is not None
    )
    assert acquired == released and set(acquired.values()) <= {1}
    attempts = {
        f"{_tuple_id(e.task_id)}#{e.attempt}" for e in sched if e.event_kind == "task_dispatched"
    }

    trails: dict[int, str] = {}
    owners: dict[int, set[str | None]] = {}
    for e in req:
        letter = BOUNDARY.get(e.event_kind)
        if letter is None or e.lease_id is None:
            continue
        trails[e.lease_id] = trails.get(e.lease_id, "") + letter
        owner = e.correlation.task_execution_id if e.correlation is not None else None
        owners.setdefault(e.lease_id, set()).add(owner)
    allowed = {"SC", "AR"} if cancellations else {"SC"}
    assert set(trails.values()) <= allowed, {k: v for k, v in trails.items() if v not in allowed}
    for lease_id, owner_ids in owners.items():
        assert len(owner_ids) == 1, (lease_id, owner_ids)
        (owner,) = owner_ids
        assert owner in attempts, (lease_id, owner)

    # across the layers: an attempt's request events come after its worker was spawned and
    # before its task lease went back
    spawned_at: dict[str, int] = {}
    attempt_of_lease: dict[int | None, str] = {}
    released_at: dict[str, int] = {}
    for index, e in enumerate(events):
        if isinstance(e, sg.events.SchedulerEvent):
            if e.event_kind == "task_dispatched":
                key = f"{_tuple_id(e.task_id)}#{e.attempt}"
                spawned_at[key] = index
                attempt_of_lease[e.lease_id] = key
            elif e.event_kind in TERMINAL_KINDS and e.lease_id in attempt_of_lease:
                released_at[attempt_of_lease[e.lease_id]] = index
        elif e.correlation is not None and e.correlation.task_execution_id is not None:
            key = e.correlation.task_execution_id
            assert spawned_at[key] < index < released_at.get(key, len(events)), (key, e)

    snapshot = stack.controller.pressure.snapshot()
    assert len(trails) == sum(r.grants for r in snapshot.resources)
    assert sum(v == "AR" for v in trails.values()) == sum(
        r.cancelled_grants for r in snapshot.resources
    )
    timeouts = sum(e.event_kind == "request_wait_timeout" for e in req)
    assert timeouts == sum(r.wait_timeouts for r in snapshot.resources)
    return trails


def assert_outcomes_consistent(
    tracker: sg.DagCompletionTracker, result: sg.SchedulerRunResult
) -> None:
    """Every task in exactly one terminal state, agreeing with its dependencies."""
    assert set(result.outcomes) == set(tracker.tasks)
    assert sum(result.counts.values()) == len(tracker)
    for task_id, outcome in result.outcomes.items():
        deps = tracker.dependencies(task_id)
        if outcome.status == "succeeded":
            assert all(result.outcomes[d].status == "succeeded" for d in deps)
            assert tracker.state_of(task_id) == "done"
        elif outcome.status == "dropped":
            assert outcome.attempts == 0
            assert any(result.outcomes[d].status in ("failed", "dropped") for d in deps)


def assert_attempts_add_up(stack: Stack, trails: dict[int, str]) -> None:
    stats = stack.executor.stats
    assert stats.attempts == sum(p.stats.calls for p in stack.providers)
    assert stats.attempts == sum(stats.outcomes.values())
    assert stats.attempts == sum(t == "SC" for t in trails.values())
    assert stats.outcomes.get("rate_limited", 0) == stack.tight.stats.rate_limited


# -- workloads ------------------------------------------------------------------------------

call_strategy = st.tuples(st.sampled_from(ALIASES), st.booleans())
cell_strategy = st.builds(
    Cell,
    local=st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0]),
    calls=st.lists(call_strategy, max_size=3).map(tuple),
    parallel=st.booleans(),
    fail_first=st.sampled_from([False, False, False, True]),
)


@st.composite
def workloads(draw: st.DrawFn, min_tasks: int = 1, max_tasks: int = 16) -> sg.DagCompletionTracker:
    n = draw(st.integers(min_tasks, max_tasks))
    cells = draw(st.lists(cell_strategy, min_size=n, max_size=n))
    tracker = sg.DagCompletionTracker()
    for i, cell in enumerate(cells):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        column = i % 3
        tracker.add(
            (i // 3, f"c{column}"),
            cell,
            depends_on=[(d // 3, f"c{d % 3}") for d in deps],
            group=f"c{column}",
            weight=(1.0, 3.0, 1.0)[column],
        )
    return tracker


@st.composite
def settings_strategy(draw: st.DrawFn) -> sg.RequestResourceSettings:
    """Request admission settings: AIMD knobs, paused cooldowns, ramps, circuit breakers,
    rate windows, bounded queues and queue timeouts."""
    kwargs: dict[str, Any] = {
        "initial_limit": draw(st.sampled_from([None, None, 1, 2])),
        "cooldown_seconds": draw(st.sampled_from([0.05, 0.2, 1.0])),
        "cooldown_admission": draw(st.sampled_from(["within_limit", "paused"])),
        "startup_ramp_seconds": draw(st.sampled_from([0.0, 0.0, 1.0])),
        "successes_until_increase": draw(st.sampled_from([1, 5])),
        "ceiling_hold_rounds": draw(st.sampled_from([0.0, 10.0])),
        "circuit_breaker_threshold": draw(st.sampled_from([None, 2, 5])),
        "circuit_open_seconds": draw(st.sampled_from([0.5, 2.0])),
        "max_waiters": draw(st.sampled_from([None, None, 3])),
        "queue_timeout_seconds": draw(st.sampled_from([None, None, 1.0])),
    }
    requests = draw(st.sampled_from([None, None, 8]))
    tokens = draw(st.sampled_from([None, None, 400]))
    if requests is not None or tokens is not None:
        kwargs.update(
            requests_per_window=requests,
            tokens_per_window=tokens,
            window_seconds=draw(st.sampled_from([1.0, 5.0])),
        )
    return sg.RequestResourceSettings(**kwargs)


def run_virtual(main: Callable[[], Awaitable[None]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def endpoint_of_cell(task: sg.SchedulableTask) -> sg.RequestResourceKey | None:
    """Where a cell's (first) model call goes, for the advisory policy."""
    cell: Cell = task.payload
    return ENDPOINT_OF_ALIAS[cell.calls[0][0]] if cell.calls else None


def task_admission(policy: str, capacity: int, stack: Stack) -> sg.TaskAdmissionController:
    chosen: sg.scheduling.TaskAdmissionPolicy
    if policy == "advisory":
        chosen = sg.scheduling.RequestPressureAdvisoryPolicy(
            stack.controller.pressure, endpoint_of_cell
        )
    elif policy == "borrow":
        chosen = sg.scheduling.BoundedBorrowPolicy(max_borrow=1)
    else:
        chosen = sg.scheduling.StrictFairPolicy()
    return sg.TaskAdmissionController(capacity=capacity, policy=chosen)


# -- a full mixed run -----------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    tracker=workloads(max_tasks=24),
    request_settings=settings_strategy(),
    capacity=st.integers(1, 8),
    policy=st.sampled_from(["strict", "borrow", "advisory"]),
    scheduler_attempts=st.integers(1, 3),
    admission_timeout=st.sampled_from([None, None, 0.3, 2.0]),
    tight_rpm=st.sampled_from([None, None, 20]),
    executor_sink=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_mixed_dag_through_both_layers_leaves_nothing_behind(
    tracker: sg.DagCompletionTracker,
    request_settings: sg.RequestResourceSettings,
    capacity: int,
    policy: str,
    scheduler_attempts: int,
    admission_timeout: float | None,
    tight_rpm: int | None,
    executor_sink: bool,
    seed: int,
) -> None:
    sink = sg.InMemoryEventSink()
    stack = Stack(
        seed=seed,
        sink=sink,
        executor_sink=executor_sink,
        settings=request_settings,
        admission_timeout=admission_timeout,
        tight_rpm=tight_rpm,
    )
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack),
        admission=task_admission(policy, capacity, stack),
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=scheduler_attempts, initial_backoff=0.1),
        run_id="mixed",
    )
    results: list[sg.SchedulerRunResult] = []

    async def main() -> None:
        results.append(await scheduler.run())

    run_virtual(main)
    (result,) = results
    event(f"tasks: {len(tracker) // 5 * 5}+, attempts: {stack.executor.stats.attempts // 10 * 10}+")
    event(f"429s: {stack.tight.stats.rate_limited > 0}")
    snapshot = stack.controller.pressure.snapshot()
    event(f"circuits opened: {sum(e.reason == 'circuit_opened' for e in sink.events) > 0}")
    event(f"wait timeouts: {sum(r.wait_timeouts for r in snapshot.resources) > 0}")
    event(f"failed tasks: {result.counts['failed'] > 0}")
    assert result.counts["cancelled"] == 0 and not result.shutdown_requested
    assert_outcomes_consistent(tracker, result)
    for task_id, outcome in result.outcomes.items():
        cell: Cell = tracker.tasks[task_id].payload
        if outcome.status == "failed":
            # every model-call failure was mapped to a retry: only exhaustion fails a task
            assert outcome.reason is not None
            assert outcome.reason.startswith(f"attempts exhausted ({scheduler_attempts})")
            assert cell.calls or (cell.fail_first and scheduler_attempts == 1)
        deps_ok = all(
            result.outcomes[d].status == "succeeded" for d in tracker.dependencies(task_id)
        )
        if deps_ok and not cell.calls and not (cell.fail_first and scheduler_attempts == 1):
            assert outcome.status == "succeeded"
        assert outcome.attempts <= scheduler_attempts
    assert_quiescent(stack, scheduler.admission)
    trails = assert_consistent_events(sink.events, stack, cancellations=False)
    assert_attempts_add_up(stack, trails)
    skips = assert_skips_name_real_endpoints(sink, tracker, endpoint_of_cell)
    assert policy == "advisory" or skips == 0
    event(f"advisory skips: {skips > 0}")
    stats = stack.executor.stats
    assert stats.requests == stats.succeeded + stats.failed
    # the executor's events ran inside the workers: the correlation names the run
    started = sink.of_kind("model_request_started")
    assert all(e.correlation is not None and e.correlation.run_id == "mixed" for e in started)


async def test_table_run_learns_the_hidden_capacity_without_leaks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Demo-shaped: rows x columns, one call per cell, 429s from the tight endpoint."""
    sink = sg.InMemoryEventSink()
    stack = Stack(seed=3, sink=sink, executor_sink=True, failure_rate=0.05, timeout_rate=0.02)
    tracker = sg.DagCompletionTracker()
    for row in range(30):
        tracker.add((row, "question"), Cell(calls=(("writer", False),)), group="question")
        tracker.add(
            (row, "answer"),
            Cell(calls=(("writer-b", False),)),
            depends_on=[(row, "question")],
            group="answer",
            weight=3,
        )
        tracker.add(
            (row, "judge"),
            Cell(calls=(("judge", False), ("writer", False)), parallel=True),
            depends_on=[(row, "answer")],
            group="judge",
        )
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack),
        capacity=16,
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=5, initial_backoff=0.1),
    )
    result = await scheduler.run()
    assert result.counts["succeeded"] == len(tracker) == 90
    assert stack.tight.stats.rate_limited > 0  # the declared cap was too high: 429s
    writer = stack.controller.pressure.resource(WRITER)
    assert writer is not None and writer.limit < TIGHT_STATIC_CAP  # AIMD came down
    assert_quiescent(stack, scheduler.admission)
    trails = assert_consistent_events(sink.events, stack, cancellations=False)
    assert_attempts_add_up(stack, trails)
    # both aliases of the writer endpoint were admitted against one resource
    assert {r.resource for r in stack.controller.pressure.snapshot().resources} == {WRITER, JUDGE}


# -- shutdown and cancellation ------------------------------------------------------------

STOP_MODES = ("graceful", "grace", "escalate", "hard", "both_layers")


async def stop_run(
    mode: str, scheduler: sg.AsyncTaskScheduler, stack: Stack, cancel: trio.CancelScope
) -> float | None:
    """Stop the run the way ``mode`` says; returns the deadline it set, if any."""
    now = trio.current_time()
    if mode == "graceful":
        scheduler.shutdown()
    elif mode == "grace":
        scheduler.shutdown(grace_period=0.5)
        return now + 0.5
    elif mode == "escalate":
        scheduler.shutdown()  # first Ctrl-C: let running tasks finish
        await trio.sleep(0.25)
        scheduler.shutdown(grace_period=10.0)  # "within 10 s": closer than no deadline
        scheduler.shutdown(grace_period=0.0)  # second Ctrl-C: now
        return now + 0.25
    elif mode == "both_layers":
        scheduler.shutdown()
        stack.controller.shutdown()  # waiting and later calls are denied "shutdown"
    else:
        cancel.cancel()
    return None


@settings(max_examples=150, deadline=None)
@given(
    tracker=workloads(min_tasks=6, max_tasks=30),
    mode=st.sampled_from(STOP_MODES),
    stop_at=st.floats(0.0, 3.0),
    capacity=st.integers(2, 16),
    policy=st.sampled_from(["strict", "borrow", "advisory"]),
    request_settings=settings_strategy(),
    tight_rpm=st.sampled_from([None, None, 20]),
    backoff=st.sampled_from([0.05, 0.5, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_stopping_at_random_moments_leaves_both_layers_clean(
    tracker: sg.DagCompletionTracker,
    mode: str,
    stop_at: float,
    capacity: int,
    policy: str,
    request_settings: sg.RequestResourceSettings,
    tight_rpm: int | None,
    backoff: float,
    seed: int,
) -> None:
    sink = sg.InMemoryEventSink()
    stack = Stack(
        seed=seed,
        sink=sink,
        latency=0.4,
        failure_rate=0.3,
        backoff_seconds=backoff,
        settings=request_settings,
        tight_rpm=tight_rpm,
    )
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack),
        admission=task_admission(policy, capacity, stack),
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=3, initial_backoff=0.2),
    )
    results: list[sg.SchedulerRunResult] = []
    stopped: list[float] = []
    deadlines: list[float | None] = []  # set once stop_run is done (escalate takes 0.25 s)

    async def main() -> None:
        with trio.CancelScope() as cancel:
            async with trio.open_nursery() as nursery:

                async def stopper() -> None:
                    await trio.sleep(stop_at)
                    if results:  # the run ended in this same instant: nothing to stop
                        return
                    stopped.append(trio.current_time())
                    resources = stack.controller.pressure.snapshot().resources
                    event(f"stopped with calls waiting: {any(r.waiters for r in resources)}")
                    event(f"stopped with calls in flight: {any(r.in_flight for r in resources)}")
                    deadlines.append(await stop_run(mode, scheduler, stack, cancel))

                nursery.start_soon(stopper)
                results.append(await scheduler.run())
                nursery.cancel_scope.cancel()  # the run ended first: no stop

    run_virtual(main)
    assert scheduler.running == 0
    assert_quiescent(stack, scheduler.admission)
    assert_consistent_events(sink.events, stack, cancellations=True)
    assert_skips_name_real_endpoints(sink, tracker, endpoint_of_cell)
    if mode == "hard" and stopped:
        assert not results  # run() raised Cancelled
        return
    (result,) = results
    assert_outcomes_consistent(tracker, result)
    assert result.shutdown_requested == bool(stopped)
    for outcome in result.outcomes.values():
        # shutdown denials were mapped to retries: they fail a task only as its last attempt
        if "shutdown" in (outcome.reason or ""):
            assert mode == "both_layers" and outcome.status == "failed"
            assert outcome.reason == (
                "attempts exhausted (3): RetryableTaskError: request admission: shutdown"
            )
        if outcome.status == "cancelled":
            if mode in ("graceful", "both_layers"):  # no running worker was cancelled
                assert outcome.reason in ("not_started", "awaiting_retry")
            else:
                assert outcome.reason in ("not_started", "awaiting_retry", "Cancelled")
    if deadlines and deadlines[0] is not None:
        assert result.finished_at <= deadlines[0] + 1e-9


def phase_stack(sink: sg.InMemoryEventSink, phase: str) -> Stack:
    """One endpoint, deterministic: cap 1 (queued), calls of 2 s, or always failing with a
    5 s backoff between attempts (in backoff at t=3)."""
    stack = Stack(
        sink=sink,
        latency=2.0,
        failure_rate=1.0 if phase == "backoff" else 0.0,
        timeout_rate=0.0,
        backoff_seconds=5.0,
        attempt_timeout=None,
    )
    stack.flaky.latency_seconds = 1.0 if phase == "backoff" else 2.0
    stack.flaky.latency_jitter = 0.0
    stack.executor.backoff_jitter = 0.0
    cap = 1 if phase == "queued" else 4
    stack.controller.reconfigure(static_caps={JUDGE.provider_model: cap})
    return stack


@pytest.mark.parametrize("phase", ["queued", "in_flight", "backoff"])
@pytest.mark.parametrize("mode", STOP_MODES)
async def test_stop_while_calls_wait_run_or_back_off(
    autojump_clock: trio.testing.MockClock, phase: str, mode: str
) -> None:
    sink = sg.InMemoryEventSink()
    stack = phase_stack(sink, phase)
    tracker = sg.DagCompletionTracker()
    callers = 3 if phase == "queued" else 1
    for i in range(callers):
        tracker.add(i, Cell(calls=(("judge", False),)))
    tracker.add("downstream", Cell(), depends_on=list(range(callers)))
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack),
        capacity=4,
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=2, initial_backoff=1.0),
    )
    stop_at = 3.0 if phase == "backoff" else 1.0
    results: list[sg.SchedulerRunResult] = []

    async def stopper(cancel: trio.CancelScope) -> None:
        await trio.sleep(stop_at)
        p = stack.controller.pressure.resource(JUDGE)
        assert p is not None
        # the run is where this case says it is
        assert (p.in_flight, p.waiters) == {"queued": (1, 2), "in_flight": (1, 0)}.get(
            phase, (0, 0)
        )
        assert scheduler.running == callers
        await stop_run(mode, scheduler, stack, cancel)

    with trio.CancelScope() as cancel:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stopper, cancel)
            results.append(await scheduler.run())
    assert_quiescent(stack, scheduler.admission)
    assert_consistent_events(sink.events, stack, cancellations=True)
    if mode == "hard":
        assert not results
        assert trio.current_time() == stop_at
        assert stack.executor.stats.failed == callers  # every request ended with its task
        return
    (result,) = results
    assert result.shutdown_requested
    statuses = sorted(
        (result.outcomes[i].status, result.outcomes[i].reason) for i in range(callers)
    )
    downstream = result.outcomes["downstream"]
    assert (downstream.status, downstream.reason) == ("cancelled", "not_started")
    done = ("succeeded", None)
    waiting = ("cancelled", "awaiting_retry")  # a retry the stopped run never made
    if mode in ("grace", "escalate"):
        # everything still running at the deadline (a call ends at 2.0, a backoff at 6.0)
        # is cancelled there
        assert result.elapsed == pytest.approx(stop_at + (0.5 if mode == "grace" else 0.25))
        assert statuses == [("cancelled", "Cancelled")] * callers
    elif phase == "backoff":
        # graceful: the worker makes its last attempts (17.0 -> 18.0) and the exhausted call
        # becomes a task retry; with both layers stopped the next acquire (6.0) is denied
        assert result.elapsed == pytest.approx(18.0 if mode == "graceful" else 6.0)
        assert statuses == [waiting]
    elif mode == "graceful":
        assert result.elapsed == pytest.approx(2.0 * callers)  # queued calls got through
        assert statuses == [done] * callers
    else:  # both layers stopped: the call in flight finished, queued ones were denied
        assert result.elapsed == pytest.approx(2.0)
        assert statuses == sorted([done, *[waiting] * (callers - 1)])


# -- live reconfiguration of both layers ------------------------------------------------

WRITER_B2 = sg.RequestResourceKey("tight", "writer-model-2")


def reloaded_endpoints() -> list[sg.ModelEndpoint]:
    """The same declarations, except that writer-b now names a model of its own."""
    return [
        *(e for e in endpoints() if e.name != "writer-b"),
        sg.ModelEndpoint(
            name="writer-b", provider="tight", model_id="writer-model-2", max_parallel_requests=3
        ),
    ]


reload_step = st.tuples(
    st.sampled_from([0.05, 0.3, 1.0]),
    st.sampled_from(["capacity", "caps", "limits", "config", "reset", "endpoints"]),
    st.integers(1, 8),
)


@settings(max_examples=60, deadline=None)
@given(
    tracker=workloads(min_tasks=4, max_tasks=24),
    steps=st.lists(reload_step, max_size=8),
    request_settings=settings_strategy(),
    new_settings=settings_strategy(),
    capacity=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_live_reconfiguration_of_both_layers_keeps_every_lease_exact(
    tracker: sg.DagCompletionTracker,
    steps: list[tuple[float, str, int]],
    request_settings: sg.RequestResourceSettings,
    new_settings: sg.RequestResourceSettings,
    capacity: int,
    seed: int,
) -> None:
    """A reload mid-run (task capacity, endpoint caps, limits, settings, circuits, endpoint
    declarations) never revokes or leaks a lease in either layer."""
    sink = sg.InMemoryEventSink()
    stack = Stack(seed=seed, sink=sink, settings=request_settings, latency=0.3)
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack),
        capacity=capacity,
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=3, initial_backoff=0.1),
    )
    controller = stack.controller
    results: list[sg.SchedulerRunResult] = []

    async def operator() -> None:
        for delay, what, value in steps:
            await trio.sleep(delay)
            if what == "capacity":
                scheduler.reconfigure({"submission": value})
            elif what == "caps":
                controller.reconfigure(static_caps={WRITER.provider_model: value})
            elif what == "limits":
                controller.reconfigure(limits={WRITER: value, JUDGE: max(1, value // 2)})
            elif what == "config":
                controller.reconfigure(sg.RequestAdmissionConfig(defaults=new_settings))
            elif what == "reset":
                controller.reset_circuit(WRITER)
            else:  # re-point writer-b (no endpoint is retired: every counter stays visible)
                controller.reconfigure(endpoints=reloaded_endpoints())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(operator)
            results.append(await scheduler.run())
            nursery.cancel_scope.cancel()

    run_virtual(main)
    (result,) = results
    assert result.counts["cancelled"] == 0
    assert_outcomes_consistent(tracker, result)
    view = scheduler.admission.view()
    assert view.active_leases == 0 and view.acquired_total == view.released_total
    snapshot = controller.pressure.snapshot()
    for r in snapshot.resources:
        assert (r.in_flight, r.waiters) == (0, 0) and r.grants == r.released, r.resource
        assert r.duplicate_releases == r.unknown_releases == 0
    assert {r.resource for r in snapshot.resources} <= {WRITER, WRITER_B2, JUDGE, EMBED}
    assert all((ep.in_flight, ep.waiters) == (0, 0) for ep in snapshot.endpoints)
    assert snapshot.unknown_releases == 0
    trails = assert_consistent_events(sink.events, stack, cancellations=False)
    assert_attempts_add_up(stack, trails)
    # a call goes to the endpoint its alias named when it was made (the executor follows the
    # controller's declarations)
    for e in sink.of_kind("model_request_started"):
        assert (e.provider, e.model_id) in {
            ("tight", "writer-model"),
            ("tight", "writer-model-2"),
            ("flaky", "judge-model"),
        }


# -- request admission timeouts ------------------------------------------------------------


@pytest.mark.parametrize(
    "policy", ["retried", "default_classifier", "not_retryable", "mapped_by_worker"]
)
async def test_admission_timeouts_follow_the_scheduler_retry_policy(
    autojump_clock: trio.testing.MockClock, policy: str
) -> None:
    """Cap 1, calls of 1 s, 0.5 s admission timeout: two of three callers time out at 0.5."""
    sink = sg.InMemoryEventSink()
    stack = Stack(
        sink=sink,
        latency=1.0,
        failure_rate=0.0,
        timeout_rate=0.0,
        attempt_timeout=None,
        admission_timeout=0.5,
    )
    stack.flaky.latency_seconds, stack.flaky.latency_jitter = 1.0, 0.0
    stack.controller.reconfigure(static_caps={JUDGE.provider_model: 1})
    tracker = sg.DagCompletionTracker()
    for i in range(3):
        tracker.add(i, Cell(calls=(("judge", False),)))
        tracker.add(f"after{i}", Cell(), depends_on=[i])

    def is_retryable(exc: BaseException) -> bool:
        return isinstance(exc, sg.RetryableTaskError) or (
            isinstance(exc, sg.RequestAdmissionError) and exc.reason == "timeout"
        )

    def only_explicit(exc: BaseException) -> bool:
        return isinstance(exc, sg.RetryableTaskError)

    # The default classifier retries what says it is retryable: a timed-out admission wait
    # (RequestAdmissionError.retryable) is retried like the explicit classifier does.
    classifiers = {"default_classifier": None, "not_retryable": only_explicit}
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack, map_errors=policy == "mapped_by_worker"),
        capacity=8,
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=2, initial_backoff=1.0),
        is_retryable=classifiers.get(policy, is_retryable),
    )
    result = await scheduler.run()
    outcomes = sorted((result.outcomes[i] for i in range(3)), key=lambda o: o.status)
    if policy == "not_retryable":
        # a timed-out wait fails its task at once and drops its downstream
        assert [o.status for o in outcomes] == ["failed", "failed", "succeeded"]
        for o in outcomes[:2]:
            assert o.attempts == 1
            assert o.reason is not None and o.reason.startswith("RequestAdmissionError:")
            assert "timeout" in o.reason
        assert result.counts == {"succeeded": 2, "failed": 2, "dropped": 2, "cancelled": 0}
        assert result.elapsed == pytest.approx(1.0)
        expected_timeouts = 2
    else:
        # t=0.5 two time out and retry at 1.5; one of them gets the slot, the other times
        # out again at 2.0 on its last attempt
        assert [o.status for o in outcomes] == ["failed", "succeeded", "succeeded"]
        assert sorted(o.attempts for o in outcomes) == [1, 2, 2]
        reason = outcomes[0].reason
        assert reason is not None and reason.startswith("attempts exhausted (2): ")
        assert "timeout" in reason
        assert result.counts == {"succeeded": 4, "failed": 1, "dropped": 1, "cancelled": 0}
        assert result.elapsed == pytest.approx(2.5)
        assert len(sink.of_kind("retry_deferred")) == 2
        expected_timeouts = 3
    assert len(sink.of_kind("request_wait_timeout")) == expected_timeouts
    assert stack.executor.stats.failed == expected_timeouts
    assert_quiescent(stack, scheduler.admission)
    assert_consistent_events(sink.events, stack, cancellations=False)


# -- the advisory policy over real request pressure ------------------------------------------


def advisory_tracker(writes: int, judges: int, locals_: int) -> sg.DagCompletionTracker:
    tracker = sg.DagCompletionTracker()
    for i in range(writes):
        tracker.add(f"write{i}", Cell(calls=(("writer", False),)), group="write")
    for i in range(judges):
        tracker.add(f"judge{i}", Cell(calls=(("judge", False),)), group="judge")
    for i in range(locals_):
        tracker.add(f"local{i}", Cell(local=0.1), group="local")
    return tracker


def endpoint_by_resource(task: sg.SchedulableTask) -> sg.RequestResourceKey | None:
    cell: Cell = task.payload
    return ENDPOINT_OF_ALIAS[cell.calls[0][0]] if cell.calls else None


def endpoint_by_provider_model(task: sg.SchedulableTask) -> sg.ProviderModelKey | None:
    key = endpoint_by_resource(task)
    return None if key is None else key.provider_model


async def run_advisory(
    tracker: sg.DagCompletionTracker,
    *,
    seed: int,
    capacity: int,
    endpoint_of: Callable[[sg.SchedulableTask], Any],
    admit_idle_groups: bool = False,
) -> tuple[sg.SchedulerRunResult, sg.InMemoryEventSink, Stack]:
    sink = sg.InMemoryEventSink()
    stack = Stack(
        seed=seed,
        sink=sink,
        failure_rate=0.0,
        timeout_rate=0.0,
        max_attempts=10,
        settings=sg.RequestResourceSettings(
            cooldown_seconds=0.5, cooldown_admission="paused", circuit_breaker_threshold=None
        ),
    )
    policy = sg.scheduling.RequestPressureAdvisoryPolicy(
        stack.controller.pressure, endpoint_of, admit_idle_groups=admit_idle_groups
    )
    admission = sg.TaskAdmissionController(capacity=capacity, policy=policy)
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        cell_worker(stack),
        admission=admission,
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=10, initial_backoff=0.1),
    )
    result = await scheduler.run()
    assert_quiescent(stack, admission)
    assert_consistent_events(sink.events, stack, cancellations=False)
    assert result.counts["succeeded"] == len(tracker)
    return result, sink, stack


def assert_skips_name_real_endpoints(
    sink: sg.InMemoryEventSink,
    tracker: sg.DagCompletionTracker,
    endpoint_of: Callable[[sg.SchedulableTask], Any],
) -> int:
    known = {
        str(key) for key in (WRITER, JUDGE, EMBED, WRITER.provider_model, JUDGE.provider_model)
    }
    skips = sink.of_kind("request_pressure_advisory_skipped")
    groups = {t.group.key for t in tracker.tasks.values()}
    for skip in skips:
        assert isinstance(skip, sg.events.SchedulerEvent)
        assert skip.reason == "policy_denied"
        d = skip.diagnostics
        assert d is not None
        assert d["endpoint"] in known
        assert d["endpoint"] == str(endpoint_of(tracker.tasks[_tuple_id(skip.task_id)]))
        assert d["signal"] in sg.scheduling.RequestPressureAdvisoryPolicy.SIGNALS
        assert d["peer_group"] in groups and d["peer_group"] != skip.group
        if "admitted_instead" in d:
            assert _tuple_id(d["admitted_instead"]) in tracker.tasks
    return len(skips)


@pytest.mark.parametrize("endpoint_of", [endpoint_by_resource, endpoint_by_provider_model])
async def test_advisory_policy_over_real_pressure_prefers_the_idle_endpoint(
    autojump_clock: trio.testing.MockClock,
    endpoint_of: Callable[[sg.SchedulableTask], Any],
) -> None:
    tracker = advisory_tracker(writes=12, judges=12, locals_=4)
    _, sink, stack = await run_advisory(tracker, seed=1, capacity=6, endpoint_of=endpoint_of)
    assert stack.tight.stats.rate_limited > 0  # the writer endpoint got pressured
    assert assert_skips_name_real_endpoints(sink, tracker, endpoint_of) > 0


@settings(max_examples=50, deadline=None)
@given(
    writes=st.integers(0, 12),
    judges=st.integers(0, 12),
    locals_=st.integers(0, 4),
    capacity=st.integers(1, 8),
    admit_idle_groups=st.booleans(),
    by_provider_model=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_advisory_policy_runs_complete_without_leaks(
    writes: int,
    judges: int,
    locals_: int,
    capacity: int,
    admit_idle_groups: bool,
    by_provider_model: bool,
    seed: int,
) -> None:
    tracker = advisory_tracker(writes, judges, locals_)
    endpoint_of = endpoint_by_provider_model if by_provider_model else endpoint_by_resource

    async def main() -> None:
        _, sink, _ = await run_advisory(
            tracker,
            seed=seed,
            capacity=capacity,
            endpoint_of=endpoint_of,
            admit_idle_groups=admit_idle_groups,
        )
        assert_skips_name_real_endpoints(sink, tracker, endpoint_of)

    if len(tracker):
        run_virtual(main)


# -- the JSON Lines round trip ------------------------------------------------------------


async def test_json_lines_round_trip_of_a_whole_mixed_run(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    memory = sg.InMemoryEventSink()
    with sg.JsonLinesEventSink(path) as file_sink:
        sink = sg.events.FanOutEventSink([memory, file_sink])
        stack = Stack(seed=11, sink=sink, executor_sink=True, admission_timeout=1.5)
        tracker = sg.DagCompletionTracker()
        for row in range(12):
            tracker.add((row, "a"), Cell(calls=(("writer", row % 2 == 0),)), group="a")
            tracker.add(
                (row, "b"),
                Cell(local=0.1, calls=(("judge", True), ("writer-b", False)), parallel=True),
                depends_on=[(row, "a")],
                group="b",
                weight=2,
            )
            # rejected once, then slow: retried for sure, and running at the shutdown deadline
            tracker.add(
                (row, "c"),
                Cell(local=2.0, fail_first=row % 3 == 0),
                depends_on=[(row, "b")] if row % 3 else [],
                group="c",
            )
        policy = sg.scheduling.RequestPressureAdvisoryPolicy(
            stack.controller.pressure, endpoint_by_resource
        )
        admission = sg.TaskAdmissionController(capacity=8, policy=policy)
        scheduler = sg.AsyncTaskScheduler(
            tracker,
            cell_worker(stack),
            admission=admission,
            sink=sink,
            retry=sg.RetryPolicy(max_attempts=2, initial_backoff=0.1),
            run_id="round-trip",
        )

        async def stop_later() -> None:
            await trio.sleep(2.0)
            scheduler.shutdown(grace_period=0.3)  # some calls cancelled mid-flight

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_later)
            result = await scheduler.run()
            nursery.cancel_scope.cancel()
    assert sink.errors == 0 and result.sink_errors == 0
    from_file = sg.read_events(path)
    assert len(from_file) == len(memory.events)
    # JSON has no tuples (tuple task ids come back as lists): compare the encoded forms
    for back, original in zip(from_file, memory.events, strict=True):
        assert type(back) is type(original)
        assert msgspec.json.encode(back) == msgspec.json.encode(original)
    assert_consistent_events(from_file, stack, cancellations=True)
    kinds = Counter(e.event_kind for e in from_file)
    for kind in (
        "task_dispatched",
        "retry_deferred",
        "cancelled",
        "model_request_started",
        "request_rate_limited",
        "model_request_completed",
        "scheduler_job_completed",
    ):
        assert kinds[kind] > 0, kind
    assert_quiescent(stack, admission)
