"""Was the process busy? The job events carry the process's CPU clocks; the view divides the
CPU a run used by its wall time, and a run whose process was busy for about all of it gets a
verdict that says its CPU was the limit, where the layer's own advice (more in flight, more
capacity, more threads) assumes the run waited and cannot help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.lowlevel
import trio.testing

import sluicegate as sg
from sluicegate.events import SchedulerEvent, read_events, run_events_path
from sluicegate.events.schema import AnyEvent
from sluicegate.observe import SCENARIOS, CorrelatedRuntimeView, run_scenario_in_virtual_time
from sluicegate.observe.report import build_report, generate_report, render_text
from test_observe_support import Step, local_columns_pipeline, scheduler_events, tiny_tasks

PROCESS, LOOP, REAL = "process_cpu_seconds", "loop_cpu_seconds", "perf_counter_seconds"
CPU_BOUND = "the limit is this process's CPU, not a setting"
PER_TASK = "the scheduler's own per-task work set the pace"

# The layers whose advice assumes the run waited, and those an endpoint or failures explain.
WAITING = {"dependency_readiness", "task_admission", "downstream_completion", "ready_queue"}


def with_cpu(events: list[AnyEvent], busy: float, loop: float | None = None) -> list[AnyEvent]:
    """``events`` as if the process had used ``busy`` of the run's wall time on its CPU (and
    its event loop's thread ``loop``), read on a real clock: the job events get readings."""
    started = next(e for e in events if e.event_kind == "scheduler_job_started")
    ended = next(e for e in reversed(events) if e.event_kind == "scheduler_job_completed")
    wall = ended.captured_at - started.captured_at
    readings = {
        id(started): {PROCESS: 100.0, LOOP: 90.0, REAL: 5000.0},
        id(ended): {
            PROCESS: 100.0 + busy * wall,
            LOOP: 90.0 + (busy if loop is None else loop) * wall,
            REAL: 5000.0 + wall,
        },
    }
    return [
        msgspec.structs.replace(e, diagnostics={**(e.diagnostics or {}), **readings[id(e)]})
        if id(e) in readings and isinstance(e, SchedulerEvent)
        else e
        for e in events
    ]


@pytest.fixture(scope="module")
def scenario_events() -> dict[str, list[AnyEvent]]:
    out = {}
    for name in SCENARIOS:
        sink = sg.InMemoryEventSink()
        run_scenario_in_virtual_time(name, sink)
        out[name] = list(sink.events)
    return out


# -- the verdict ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_busy_process_is_the_limit_unless_an_endpoint_or_failures_are(
    name: str, scenario_events: dict[str, list[AnyEvent]]
) -> None:
    """The crafted runs with CPU readings as if the process was busy 97% of the run: the
    waiting layers' advice is replaced; an endpoint's limits and latency keep theirs."""
    plain = CorrelatedRuntimeView(scenario_events[name]).verdict()
    busy = CorrelatedRuntimeView(with_cpu(scenario_events[name], 0.97, 0.9))
    assert busy.cpu_busy_share == pytest.approx(0.97)
    assert busy.loop_cpu_share == pytest.approx(0.9)
    verdict = busy.verdict()
    assert verdict.layer == plain.layer == SCENARIOS[name].expected_layer
    assert verdict.share == plain.share
    if verdict.layer in WAITING:
        assert verdict.cpu_bound
        assert verdict.message.startswith(
            "the process used its CPU for 97% of the run (its event loop's thread 90%): "
        )
        assert CPU_BOUND in verdict.message
        assert verdict.setting is None and verdict.value is None  # no setting helps
        assert verdict.evidence["cpu_busy_share"] == pytest.approx(0.97)
    else:
        assert not verdict.cpu_bound
        assert verdict.message == plain.message and verdict.setting == plain.setting


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_process_that_mostly_waited_keeps_the_layers_advice(
    name: str, scenario_events: dict[str, list[AnyEvent]]
) -> None:
    plain = CorrelatedRuntimeView(scenario_events[name]).verdict()
    view = CorrelatedRuntimeView(with_cpu(scenario_events[name], 0.1))
    assert view.cpu_busy_share == pytest.approx(0.1)
    assert view.verdict() == plain


def test_the_busy_verdict_says_what_the_layer_saw_and_what_helps(
    scenario_events: dict[str, list[AnyEvent]],
) -> None:
    chain = CorrelatedRuntimeView(with_cpu(scenario_events["dependency_chain"], 0.99)).verdict()
    assert "stood idle with nothing ready was the process at work" in chain.message
    assert "more rows or row groups in flight add no CPU" in chain.message
    assert "max_concurrent_row_groups" not in chain.message
    assert "more work in each task" in chain.message  # not a pipeline: tasks, not cells
    worker = CorrelatedRuntimeView(with_cpu(scenario_events["slow_worker"], 0.99, 0.2)).verdict()
    assert "neither more threads nor making it async" in worker.message
    # Most CPU outside the loop's thread: the worker threads of synchronous generators.
    assert "more threads will not help" in worker.message


def test_a_virtual_clock_run_has_no_cpu_share(
    scenario_events: dict[str, list[AnyEvent]],
) -> None:
    """The scenarios run on a MockClock: their job events carry real CPU readings, but the
    run's seconds are virtual, so the share is not measured (and the verdict is as before)."""
    events = scenario_events["dependency_chain"]
    started = next(e for e in events if e.event_kind == "scheduler_job_started")
    assert {PROCESS, LOOP, REAL} <= set(started.diagnostics or {})
    view = CorrelatedRuntimeView(events)
    assert view.cpu_busy_share is None and view.loop_cpu_share is None
    assert not view.verdict().cpu_bound


def tiny_run(n: int, *, gap: float, run: float) -> list[AnyEvent]:
    """A scheduler run of ``n`` tasks, each queued ``gap`` seconds before its dispatch (the
    scheduler's own work) and running ``run`` seconds; one task capacity of 4."""
    steps = tiny_tasks(n, gap=gap, run=run)
    end: Step = (n * (gap + run), "scheduler_job_completed", None, None, None)
    return list(scheduler_events([*steps, end], {"limits": {"submission": 4}}))


def test_gaps_of_microseconds_in_a_busy_process_name_the_cpu_and_the_per_task_work() -> None:
    events = tiny_run(3000, gap=20e-6, run=10e-6)
    assert CorrelatedRuntimeView(events).cpu_busy_share is None  # no readings: an older file
    plain = CorrelatedRuntimeView(events).verdict()
    assert plain.layer == "ready_queue" and not plain.cpu_bound
    verdict = CorrelatedRuntimeView(with_cpu(events, 1.0)).verdict()
    assert verdict.layer == "ready_queue" and verdict.cpu_bound
    assert CPU_BOUND in verdict.message and PER_TASK in verdict.message
    assert "about 20 µs per task over 3000 tasks" in verdict.message


def test_a_long_gap_in_a_busy_process_is_still_a_gap_to_report() -> None:
    """A task that waited a second with capacity free may be a lost wakeup even while the
    process was busy with other tasks: the verdict keeps asking for a report."""
    events = tiny_run(3, gap=1.0, run=10e-6)
    plain = CorrelatedRuntimeView(events).verdict()
    verdict = CorrelatedRuntimeView(with_cpu(events, 1.0)).verdict()
    assert "please report it" in verdict.message
    assert verdict == plain


# -- the report -------------------------------------------------------------------------


def test_the_report_prints_the_cpu_share_in_text_and_json(
    scenario_events: dict[str, list[AnyEvent]],
) -> None:
    report = build_report(
        CorrelatedRuntimeView(with_cpu(scenario_events["dependency_chain"], 0.98, 0.93))
    )
    assert report.cpu_busy_share == pytest.approx(0.98)
    assert report.loop_cpu_share == pytest.approx(0.93)
    text = render_text(report)
    assert "process CPU: busy 98% of the wall time (the event loop's thread 93%)" in text
    assert CPU_BOUND in text
    assert "Verdict: this process's CPU (dependency readiness: " in text
    data = json.loads(msgspec.json.encode(report))
    assert data["cpu_busy_share"] == pytest.approx(0.98)
    assert data["verdict"]["cpu_bound"] is True


def test_an_events_file_without_cpu_readings_says_not_measured(tmp_path: Path) -> None:
    """An events file from before the readings: no share, the report says so, the verdict
    is the layer's own."""
    events = tiny_run(3000, gap=20e-6, run=10e-6)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in events))
    report = generate_report(path, pictures=False)
    assert report.cpu_busy_share is None and report.loop_cpu_share is None
    text = (tmp_path / "report" / "report.txt").read_text()
    assert "process CPU: not measured" in text
    assert not report.verdict.cpu_bound and PER_TASK in report.verdict.message
    assert json.loads((tmp_path / "report" / "report.json").read_text())["cpu_busy_share"] is None


# -- recording the readings -------------------------------------------------------------


def dag(n: int) -> sg.DagCompletionTracker[None]:
    tracker: sg.DagCompletionTracker[None] = sg.DagCompletionTracker()
    for i in range(n):
        tracker.add(i)
    return tracker


async def spin(task: sg.SchedulableTask[None]) -> None:
    await trio.lowlevel.checkpoint()


def job_events(events: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    started = next(e for e in events if e.event_kind == "scheduler_job_started")
    ended = next(e for e in events if e.event_kind == "scheduler_job_completed")
    return started.diagnostics or {}, ended.diagnostics or {}


def test_a_scheduler_run_records_its_cpu_at_start_and_end() -> None:
    sink = sg.InMemoryEventSink()
    trio.run(sg.AsyncTaskScheduler(dag(2000), spin, sink=sink).run)
    before, after = job_events(sink.events)
    for key in (PROCESS, LOOP, REAL):
        assert isinstance(before[key], float) and after[key] >= before[key]
    assert before["limits"] == {"submission": 64}  # what the event said before stays
    view = CorrelatedRuntimeView(sink.events)
    assert view.cpu_busy_share is not None and 0.0 < view.cpu_busy_share < 2.5
    assert view.loop_cpu_share is not None
    assert view.loop_cpu_share <= view.cpu_busy_share + 0.01  # one thread of the process


def test_a_cancelled_scheduler_run_records_its_cpu_at_the_end_too() -> None:
    sink = sg.InMemoryEventSink()

    async def sleep(task: sg.SchedulableTask[None]) -> None:
        await trio.sleep(10.0)

    async def main() -> None:
        with trio.move_on_after(0.01):
            await sg.AsyncTaskScheduler(dag(3), sleep, sink=sink).run()

    trio.run(main)
    ended = next(e for e in sink.events if e.event_kind == "scheduler_job_completed")
    assert ended.reason == "Cancelled"
    assert {PROCESS, LOOP, REAL} <= set(ended.diagnostics or {})


def test_a_run_on_a_virtual_clock_has_no_cpu_share() -> None:
    sink = sg.InMemoryEventSink()

    async def sleep(task: sg.SchedulableTask[None]) -> None:
        await trio.sleep(10.0)

    scheduler = sg.AsyncTaskScheduler(dag(4), sleep, sink=sink)
    trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))
    view = CorrelatedRuntimeView(sink.events)
    assert view.duration == pytest.approx(10.0)  # virtual seconds, real milliseconds
    assert view.cpu_busy_share is None


def test_a_real_pipeline_of_local_columns_reports_its_cpu(tmp_path: Path) -> None:
    """Samplers and expressions (cells of µs) on a real clock keep the process busy; which
    share a machine measures varies, so the message is checked when it is high."""
    out = tmp_path / "run"
    assert local_columns_pipeline().run(2000, output_dir=str(out), events=True).ok
    before, after = job_events(list(read_events(run_events_path(out))))
    assert {PROCESS, LOOP, REAL} <= set(before) and {PROCESS, LOOP, REAL} <= set(after)
    report = generate_report(out, pictures=False)
    share = report.cpu_busy_share
    assert share is not None and 0.0 < share < 2.5
    assert report.loop_cpu_share is not None and report.loop_cpu_share <= share + 0.01
    text = (out / "report" / "report.txt").read_text()
    assert f"process CPU: busy {share:.0%} of the wall time" in text
    verdict = report.verdict
    assert verdict.cpu_bound == (CPU_BOUND in verdict.message)
    if share < 0.9:
        assert not verdict.cpu_bound
    elif verdict.layer in WAITING - {"ready_queue"}:  # a ready queue's long gap keeps its own
        assert verdict.cpu_bound and verdict.setting is None
