"""A pipeline run is one run for every reader of its events, however many scheduler segments
it takes; runs appended to one file by a resume stay apart, each with its own start."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sluicegate.datagen as dg
from sluicegate.events import InMemoryEventSink, read_events
from sluicegate.observe import CorrelatedRuntimeView, OpenTelemetryEventSink, build_report
from sluicegate.providers import SimulatedProvider
from sluicegate.testing import run_virtual


def pipeline() -> dg.Pipeline:
    return dg.Pipeline(
        [dg.sampler("t", ["a", "b"]), dg.llm_text("q", "about {t}", model="w")],
        providers={"simulated": SimulatedProvider(latency_seconds=0.01)},
    )


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluicegate.datagen import runner

    monkeypatch.setattr(runner, "SEGMENT_TASKS", 5)  # 12 cells: three segments


def test_a_run_of_several_segments_is_one_trace(small_segments: None) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OpenTelemetryEventSink(tracer_provider=provider)
    result = run_virtual(pipeline().arun, 6, events=sink, buffer_size=2)
    sink.close()
    assert result.ok
    spans = list(exporter.get_finished_spans())
    runs = [s for s in spans if s.name == "sluicegate.run"]
    assert len(runs) == 1
    assert {s.context.trace_id for s in spans} == {runs[0].context.trace_id}
    cells = [s for s in spans if s.name.startswith("task")]
    assert len(cells) == 12
    # each cell's span is labelled with its column, row and row group (its ending event's
    # correlation), so a cell is found in a trace by its row
    labels = {
        (a["sluicegate.column"], a["sluicegate.row"], a["sluicegate.row_group"])
        for a in (s.attributes or {} for s in cells)
    }
    assert labels == {(c, r, r // 2) for c in ("t", "q") for r in range(6)}
    provider.shutdown()


def test_resumed_runs_in_one_file_are_read_apart(
    small_segments: None, tmp_path: pathlib.Path
) -> None:
    out = str(tmp_path / "run")
    first = run_virtual(pipeline().arun, 4, output_dir=out, events=True, buffer_size=2)
    assert first.ok
    again: Any = run_virtual(
        pipeline().arun, 6, output_dir=out, events=True, buffer_size=2, force=True
    )
    assert again.ok
    events = read_events(pathlib.Path(out) / "events.jsonl.gz")
    view = CorrelatedRuntimeView(events, run=0)
    assert view.runs == 2
    second = CorrelatedRuntimeView(events)
    for run, cells in ((view, 8), (second, 4)):  # the resume makes only its 2 new rows
        kinds = [e.event_kind for e in run.events]
        assert kinds[0] == "pipeline_started" and kinds.count("pipeline_started") == 1
        assert kinds.count("scheduler_job_started") == 1
        assert "request_resource_registered" in kinds  # its own endpoint, not the other run's
        assert build_report(run).tasks == cells


def test_a_pipeline_short_of_task_capacity_is_told_to_raise_task_capacity() -> None:
    """Blocked on a full task resource ("no_capacity"): the advice is the pipeline's own
    setting with a value, not "see the policy" nor the scheduler's ``capacity``."""
    sink = InMemoryEventSink()
    slow = dg.Pipeline(
        [dg.sampler("t", ["a", "b"]), dg.llm_text("q", "about {t}", model="w")],
        endpoints=[dg.Endpoint("w", model="m", provider="sim", max_parallel_requests=32)],
        providers={"sim": SimulatedProvider(name="sim", latency_seconds=1.0)},
    )
    result = run_virtual(slow.arun, 60, events=sink, buffer_size=20, task_capacity=2)
    assert result.ok
    verdict = CorrelatedRuntimeView(sink.events).verdict()
    assert verdict.layer == "task_admission"
    assert (verdict.setting, verdict.value) == ("task_capacity", 32)  # the endpoint's cap
    assert "set task_capacity=32 (now 2)" in verdict.message


def test_call_retries_back_off_by_request_backoff_seconds_and_the_verdict_names_it() -> None:
    sink = InMemoryEventSink()
    flaky = dg.Pipeline(
        [dg.sampler("t", ["a", "b"]), dg.llm_text("q", "about {t}", model="w")],
        endpoints=[dg.Endpoint("w", model="m", provider="sim", max_parallel_requests=8)],
        providers={
            "sim": SimulatedProvider(name="sim", latency_seconds=0.1, failure_rate=0.3, seed=3)
        },
    )
    result = run_virtual(
        flaky.arun,
        40,
        events=sink,
        buffer_size=40,
        request_max_attempts=5,
        request_backoff_seconds=4.0,
    )
    assert result.ok
    ended: dict[tuple[int, int], float] = {}
    pauses = []
    for e in sink.events:
        if e.event_kind == "model_request_completed" and e.request_id is not None:
            ended[(e.request_id, e.attempt or 0)] = e.captured_at
        elif e.event_kind == "model_request_started" and (e.attempt or 0) > 1:
            pauses.append(e.captured_at - ended[(e.request_id or 0, (e.attempt or 0) - 1)])
    assert pauses and min(pauses) >= 4.0 * 0.9  # the setting, less its -10% jitter
    verdict = CorrelatedRuntimeView(sink.events).verdict()
    assert verdict.layer == "failure_retry"
    assert verdict.setting == "request_backoff_seconds"
    assert "lower request_backoff_seconds" in verdict.message
    # how often and how the endpoint failed, counted from the attempts
    view = CorrelatedRuntimeView(sink.events)
    attempts = [a for r in view.requests for a in r.attempts]
    failed = sum(a.outcome == "provider_failure" for a in attempts)
    assert failed > 0 and all(a.outcome in ("success", "provider_failure") for a in attempts)
    assert (
        f"on endpoint `w` ({failed} of {len(attempts)} attempts failed, "
        f"{failed / len(attempts):.0%}: {failed} provider_failure)"
    ) in verdict.message


def test_request_backoff_seconds_is_checked() -> None:
    from sluicegate.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="request_backoff_seconds"):
        dg.RunSettings(records=1, request_backoff_seconds=-1.0)


def test_the_report_of_each_run_in_one_file_says_which_it_is(
    small_segments: None, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "run"
    assert run_virtual(pipeline().arun, 4, output_dir=str(out), buffer_size=2).ok
    again: Any = run_virtual(pipeline().arun, 6, output_dir=str(out), buffer_size=2, force=True)
    assert again.ok
    from sluicegate import ConfigurationError
    from sluicegate.observe import generate_report, render_text

    first = generate_report(out, pictures=False, run=0)
    last = generate_report(out, pictures=False)
    assert (first.run_number, last.run_number, last.runs_in_source) == (1, 2, 2)
    assert "events.jsonl.gz, run 1 of 2" in render_text(first)
    assert "events.jsonl.gz, run 2 of 2" in render_text(last)
    with pytest.raises(ConfigurationError, match=r"got 2, but the events hold 2 run\(s\)"):
        generate_report(out, pictures=False, run=2)
