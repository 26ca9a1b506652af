"""CorrelatedRuntimeView: joined timelines, run facts, and the verdict on crafted runs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate.events import RuntimeCorrelation, SchedulerEvent
from sluicegate.observe import (
    SCENARIOS,
    TIMELINE_FIELDS,
    CorrelatedRuntimeView,
    run_scenario_in_virtual_time,
    split_runs,
)

# -- the verdict on crafted runs (virtual time) ------------------------------------------


@pytest.fixture(scope="module")
def views() -> dict[str, CorrelatedRuntimeView]:
    out = {}
    for name in SCENARIOS:
        sink = sg.InMemoryEventSink()
        result = run_scenario_in_virtual_time(name, sink)
        assert result.counts["succeeded"] == len(result.outcomes)
        out[name] = CorrelatedRuntimeView(sink.events)
    return out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_crafted_run_gets_its_layer(
    name: str, views: dict[str, CorrelatedRuntimeView]
) -> None:
    view = views[name]
    verdict = view.verdict()
    assert verdict.layer == SCENARIOS[name].expected_layer, verdict.message
    assert verdict.share > 0.6
    assert abs(sum(verdict.shares.values()) - 1.0) < 0.05  # every instant got one label
    assert view.hidden_waiters == 0
    assert view.ready_idle_seconds == 0.0  # our dispatch loop never idles with work ready


def test_rate_limited_endpoint_names_its_real_capacity(
    views: dict[str, CorrelatedRuntimeView],
) -> None:
    view = views["rate_limited"]
    verdict = view.verdict()
    assert verdict.endpoint == "judge"
    assert verdict.setting == "max_parallel_requests" and verdict.value == 12
    assert "`judge`" in verdict.message and "about 12" in verdict.message
    judge = view.endpoints["judge"]
    assert judge.static_cap == 64 and judge.rate_limits > 0
    assert judge.peak_concurrent_successes == 12  # the provider's hidden capacity
    assert judge.lowest_limit is not None and judge.lowest_limit < 12
    assert view.endpoints["generator"].rate_limits == 0


def test_small_task_capacity_suggests_what_the_endpoint_allows(
    views: dict[str, CorrelatedRuntimeView],
) -> None:
    verdict = views["small_task_capacity"].verdict()
    assert (verdict.setting, verdict.value) == ("capacity", 32)
    assert "capacity=32 (now 4)" in verdict.message
    assert views["small_task_capacity"].layer_waits()["ready_queue_and_task_admission"].p50 > 1


def test_slow_endpoint_and_chain_and_worker_evidence(
    views: dict[str, CorrelatedRuntimeView],
) -> None:
    slow = views["slow_endpoint"].verdict()
    assert slow.endpoint == "slow" and slow.setting == "max_tokens"
    assert views["slow_endpoint"].endpoints["slow"].latency.p50 > 6
    chain = views["dependency_chain"]
    assert chain.chain_depth == 25
    assert chain.verdict().setting == "max_concurrent_row_groups"
    assert chain.occupancy.utilization is not None and chain.occupancy.utilization < 0.1
    local = views["slow_worker"].layer_waits()["worker_local"]
    assert local.p50 == pytest.approx(2.0)


def test_the_view_reads_the_same_run_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    memory = sg.InMemoryEventSink()
    with sg.JsonLinesEventSink(path) as file_sink:
        run_scenario_in_virtual_time("rate_limited", sg.events.FanOutEventSink([memory, file_sink]))
    from_file = CorrelatedRuntimeView.from_file(path)
    from_memory = CorrelatedRuntimeView(memory.events)
    assert from_file.verdict() == from_memory.verdict()
    assert len(from_file.executions) == len(from_memory.executions) == 600
    assert from_file.executions[0].task_id == [0, "question"]  # JSON turned the tuple to a list
    assert from_file.source == str(path) and from_file.torn_tail_bytes == 0


def test_several_runs_in_one_file_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for name in ("slow_endpoint", "dependency_chain"):
        with sg.JsonLinesEventSink(path) as sink:  # a resumed run appends
            run_scenario_in_virtual_time(name, sink)
    events = sg.read_events(path)
    assert [r[0].event_kind for r in split_runs(events)] == ["scheduler_job_started"] * 2
    last = CorrelatedRuntimeView.from_file(path)
    first = CorrelatedRuntimeView.from_file(path, run=0)
    assert last.runs == 2 and last.run_id == "dependency_chain" and first.run_id == "slow_endpoint"
    assert first.verdict().layer == "provider_latency"


# -- timelines ---------------------------------------------------------------------------


def _assert_monotonic(execution: sg.observe.TaskExecution) -> None:
    stamps = execution.timeline()
    times = [t for _, t in stamps]
    assert times == sorted(times), stamps
    names = [name for name, _ in stamps]
    assert names == [name for name in TIMELINE_FIELDS if name in names]
    for request in execution.requests:
        previous_end = None
        for attempt in request.attempts:
            points = [
                attempt.wait_started_at,
                attempt.wait_completed_at,
                attempt.lease_acquired_at,
                attempt.started_at,
                attempt.completed_at,
                attempt.lease_released_at,
            ]
            present = [p for p in points if p is not None]
            assert present == sorted(present), attempt
            if previous_end is not None and present:
                assert present[0] >= previous_end
            if present:
                previous_end = present[-1]
    if execution.worker_spawned_at is not None and execution.ended_at is not None:
        assert execution.worker_spawned_at <= execution.ended_at


def test_a_task_with_two_calls_has_both_requests_and_the_first_in_its_fields() -> None:
    sink = sg.InMemoryEventSink()
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=4)],
        sink=sink,
    )
    executor = sg.ModelRequestExecutor(
        controller, {"sim": sg.SimulatedProvider(name="sim", latency_seconds=1.0)}
    )
    request = sg.ModelRequest(messages=[{"role": "user", "content": "x"}])

    async def worker(task: sg.SchedulableTask) -> None:
        await trio.sleep(0.5)
        await executor.execute("m", request)
        await executor.execute("m", request)

    tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask("t")])
    scheduler = sg.AsyncTaskScheduler(tracker, worker, sink=sink)
    trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))
    (execution,) = CorrelatedRuntimeView(sink.events).executions
    assert len(execution.requests) == 2 and execution.attempts == 2
    first, second = execution.requests
    assert execution.model_request_started_at == first.attempts[0].started_at
    assert execution.model_request_completed_at == first.attempts[-1].completed_at
    assert second.started_at is not None and execution.model_request_completed_at is not None
    assert second.started_at >= execution.model_request_completed_at
    assert execution.provider_seconds == pytest.approx(2.0)
    assert execution.worker_spawned_at is not None and execution.model_request_started_at
    assert execution.model_request_started_at - execution.worker_spawned_at == pytest.approx(0.5)
    assert first.input_tokens and first.output_tokens and first.response_model == "m"
    _assert_monotonic(execution)


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 10))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else [] for i in range(n)]
    return {
        "deps": deps,
        "calls": [draw(st.integers(0, 2)) for _ in range(n)],
        "capacity": draw(st.integers(1, 4)),
        "endpoint_cap": draw(st.integers(1, 3)),
        "hidden": draw(st.one_of(st.none(), st.integers(1, 2))),
        "fail": draw(st.floats(0, 0.4)),
        "seed": draw(st.integers(0, 1000)),
        "concurrent": draw(st.booleans()),
        "cancel_at": draw(st.one_of(st.none(), st.floats(0.1, 3.0))),
    }


@settings(max_examples=40, deadline=None)
@given(runs())
def test_timelines_are_monotonic_and_no_worker_runs_before_its_lease(run: dict[str, Any]) -> None:
    sink = sg.InMemoryEventSink()
    rng = random.Random(run["seed"])
    controller = sg.AdaptiveRequestAdmissionController(
        [
            sg.ModelEndpoint(
                name="m", provider="sim", model_id="m", max_parallel_requests=run["endpoint_cap"]
            )
        ],
        sink=sink,
    )
    provider = sg.SimulatedProvider(
        name="sim",
        latency_seconds=0.3,
        latency_jitter=0.5,
        capacity=run["hidden"],
        retry_after_seconds=0.2,
        failure_rate=run["fail"],
        seed=run["seed"],
    )
    executor = sg.ModelRequestExecutor(controller, {"sim": provider}, max_attempts=2)
    request = sg.ModelRequest(messages=[{"role": "user", "content": "x"}])

    async def worker(task: sg.SchedulableTask) -> None:
        calls = run["calls"][task.task_id]
        if rng.random() < run["fail"]:
            raise sg.RetryableTaskError("flaky")
        if run["concurrent"] and calls > 1:
            async with trio.open_nursery() as nursery:
                for _ in range(calls):
                    nursery.start_soon(executor.execute, "m", request)
        else:
            for _ in range(calls):
                await executor.execute("m", request)

    tracker = sg.DagCompletionTracker()
    for i, deps in enumerate(run["deps"]):
        tracker.add(i, depends_on=deps, group=f"g{i % 2}")
    scheduler = sg.AsyncTaskScheduler(
        tracker,
        worker,
        capacity=run["capacity"],
        sink=sink,
        retry=sg.RetryPolicy(max_attempts=3, initial_backoff=0.1),
        is_retryable=lambda e: not isinstance(e, trio.Cancelled),
    )

    async def main() -> None:
        if run["cancel_at"] is None:
            await scheduler.run()
        else:
            with trio.move_on_after(run["cancel_at"]):
                await scheduler.run()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    view = CorrelatedRuntimeView(sink.events)
    assert view.hidden_waiters == 0
    for execution in view.executions:
        _assert_monotonic(execution)
        assert execution.status in ("succeeded", "retry_deferred", "failed", "cancelled")
    spawned = [e for e in sink.events if e.event_kind == "task_dispatched"]
    assert len(view.executions) == len(spawned)
    occupancy = view.occupancy
    total = sum(occupancy.layer_seconds().values())
    assert total <= occupancy.duration + 1e-9
    if run["cancel_at"] is None:
        assert total == pytest.approx(occupancy.duration)


# -- run facts from hand-made event streams -------------------------------------------------


def _event(kind: str, t: float, seq: int, **fields: Any) -> SchedulerEvent:
    return SchedulerEvent(
        event_kind=kind,  # type: ignore[arg-type]
        sequence=seq,
        captured_at=t,
        schema_version=sg.events.SCHEMA_VERSION,
        **fields,
    )


def test_ready_idle_gaps_and_hidden_waiters_are_detected() -> None:
    """A broken scheduler: task b sat ready for 5 s with capacity free, and its worker ran
    without a lease; task c's worker ran on a lease already returned."""
    corr = RuntimeCorrelation(task_id="a", task_execution_id="a#1")
    events = [
        _event("scheduler_job_started", 0.0, 1, diagnostics={"limits": {"submission": 2}}),
        _event("ready_enqueued", 0.0, 2, task_id="a", group="g"),
        _event("ready_enqueued", 0.0, 3, task_id="b", group="g"),
        _event("task_dispatched", 0.0, 4, task_id="a", group="g", lease_id=1, attempt=1,
               correlation=corr),
        _event("task_dispatched", 5.0, 5, task_id="b", group="g", attempt=1),
        _event("task_completed", 6.0, 6, task_id="a", lease_id=1),
        _event("task_completed", 6.0, 7, task_id="b"),
        _event("ready_enqueued", 6.0, 8, task_id="c", group="g"),
        _event("task_dispatched", 6.0, 9, task_id="c", group="g", lease_id=1, attempt=1),
        _event("task_completed", 6.0, 10, task_id="c", lease_id=1),
        _event("scheduler_job_completed", 6.0, 11),
    ]  # fmt: skip
    view = CorrelatedRuntimeView(events)
    assert view.hidden_waiters == 2
    assert view.ready_idle_seconds == pytest.approx(5.0)
    verdict = view.verdict()
    assert verdict.layer == "ready_queue" and verdict.share == pytest.approx(5 / 6)
    assert "please report" in verdict.message
    assert view.active_capacity_seconds == pytest.approx(6.0)  # b held no lease


def test_a_policy_block_is_task_admission_with_its_reason() -> None:
    events = [
        _event("scheduler_job_started", 0.0, 1, diagnostics={"limits": {"submission": 4}}),
        _event("ready_enqueued", 0.0, 2, task_id="a", group="g"),
        _event("group_capped", 0.0, 3, reason="group_capped", available_after=3.0),
        _event("task_dispatched", 3.0, 4, task_id="a", group="g", lease_id=1, attempt=1),
        _event("task_completed", 4.0, 5, task_id="a", lease_id=1),
    ]
    verdict = CorrelatedRuntimeView(events).verdict()
    assert verdict.layer == "task_admission" and verdict.share == pytest.approx(0.75)
    assert verdict.setting == "policy" and "group_capped" in verdict.message


def test_an_empty_stream_has_no_verdict() -> None:
    view = CorrelatedRuntimeView([])
    assert view.verdict().layer is None and view.executions == [] and view.runs == 0


def test_real_capacity_is_the_concurrency_held_not_a_momentary_overlap() -> None:
    """Seen from the client a call holds its slot a little longer than on the server, so a few
    calls overlap for a moment past what the server serves; the sustained level ignores
    overlaps held for less than 1% of the busy time, and an end at t frees before a start."""
    from sluicegate.observe.view import _concurrency

    steady = [(float(i), float(i) + 10.0) for i in range(0, 100, 10) for _ in range(24)]
    spikes = [(float(i) + 9.999, float(i) + 10.001) for i in range(0, 90, 10) for _ in range(3)]
    assert _concurrency(steady) == (24, 24)
    assert _concurrency(steady + spikes) == (27, 24)
    assert _concurrency([(0.0, 1.0), (1.0, 2.0)]) == (1, 1)  # back to back: one at a time
    assert _concurrency([(0.0, 0.0)] * 5) == (0, 0)  # zero-length calls never overlap
    assert _concurrency([]) == (0, 0)
    # a level held for 2% of the busy time counts
    assert _concurrency([(0.0, 100.0)] * 10 + [(50.0, 52.0)] * 2) == (12, 12)


def test_a_schema_2_file_reads_as_its_schema_3_twin(tmp_path: Path) -> None:
    """Schema 3 reports a frontier's readiness in one event; a schema-2 file (one event per
    task) is still read, and both give the same report and the same task spans."""
    import msgspec
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sluicegate.observe import OpenTelemetryEventSink, build_report

    now = sg.events.SCHEMA_VERSION
    path = tmp_path / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        run_scenario_in_virtual_time("small_task_capacity", sink)  # cells queue for a slot
    events = sg.read_events(path)
    frontiers = [e for e in events if e.event_kind == "ready_enqueued"]
    assert frontiers and all(e.task_id is None and e.task_ids for e in frontiers)
    assert max(len(e.task_ids or ()) for e in frontiers) > 1
    older = [
        msgspec.structs.replace(e, schema_version=2) for e in sg.events.per_task_events(events)
    ]
    assert len(older) == len(events) + sum(len(e.task_ids or ()) - 1 for e in frontiers)
    old_path = tmp_path / "schema2.jsonl"
    old_path.write_bytes(msgspec.json.Encoder().encode_lines(older))
    old_events = sg.read_events(old_path)
    assert {e.schema_version for e in old_events} == {2} and now == 3
    new, old = (
        build_report(CorrelatedRuntimeView(events)),
        build_report(CorrelatedRuntimeView(old_events)),
    )
    assert (new.verdict, new.waits, new.tasks) == (old.verdict, old.waits, old.tasks)
    assert new.waits["ready_queue_and_task_admission"].p50 > 1.0  # the queue waits are read

    def task_spans(stream: list[Any]) -> list[tuple[str, int]]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        bridge = OpenTelemetryEventSink(tracer_provider=provider)
        for event in stream:
            bridge.emit(event)
        bridge.close()
        spans = [s for s in exporter.get_finished_spans() if s.name.startswith("task")]
        return sorted((s.name, (s.end_time or 0) - (s.start_time or 0)) for s in spans)

    twins = list(zip(task_spans(events), task_spans(old_events), strict=True))
    assert all(a[0] == b[0] for a, b in twins)
    # each bridge shifts onto the wall clock by its own offset: float dust of a microsecond
    assert max(abs(a[1] - b[1]) for a, b in twins) < 1_000


def test_task_failures_are_classed_by_column_and_exception_with_an_example() -> None:
    from sluicegate.observe.view import _reason_class

    assert _reason_class("x: ValueError: bad input for row 3") == "x (ValueError)"
    assert _reason_class("RuntimeError: boom") == "RuntimeError"
    assert _reason_class("q: ModelRequestError: failed after 3 attempt(s)") == (
        "q (ModelRequestError)"
    )
    assert _reason_class("attempts exhausted (3): x: KeyError: 'k'") == (
        "attempts exhausted: x (KeyError)"
    )
    assert _reason_class("worker_requested_drop") == "worker_requested_drop"
    assert _reason_class(None) == _reason_class("") == "unknown"
    assert _reason_class("x: the value was 42") == "x"  # no class named: the column only


async def test_the_report_lists_failed_cells_by_column_and_error_with_an_example(
    autojump_clock: object, tmp_path: Path
) -> None:
    import sluicegate.datagen as dg
    from sluicegate.observe import build_report
    from sluicegate.observe.report import render_text

    def boom(n: str) -> str:
        raise ValueError(f"cannot use {n}")

    sink = sg.InMemoryEventSink()
    pipeline = dg.Pipeline([dg.sampler("n", ["a"]), dg.expression("x", boom)])
    result = await pipeline.arun(
        6, output_dir=str(tmp_path), events=sink, buffer_size=3, row_group_slow_start=False
    )
    assert not result.ok
    report = build_report(CorrelatedRuntimeView(sink.events))
    assert report.failures == {"task_failed:x (ValueError)": 6}
    assert report.failure_examples == {"task_failed:x (ValueError)": "x: ValueError: cannot use a"}
    assert "  task_failed:x (ValueError): 6\n    e.g. x: ValueError: cannot use a" in render_text(
        report
    )
