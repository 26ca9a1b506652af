"""The occupancy sweep's series of a pipeline run: per column and per row (what the
timeline and progress pictures draw), and a generic scheduler run left as it was."""

from __future__ import annotations

import bisect
from pathlib import Path

import pytest

import sluicegate as sg
from sluicegate.observe import CorrelatedRuntimeView, run_scenario_in_virtual_time
from sluicegate.observe.series import GroupSeries, RunOccupancy
from sluicegate.providers import SimulatedProvider
from sluicegate.testing import run_virtual

ROWS = 20
LATENCY = 0.5


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunOccupancy, sg.RunResult]:
    """Two model columns on one endpoint (one task group: the endpoint's lane) after a sampler."""
    pipeline = sg.Pipeline(
        [
            sg.sampler("topic", ["science", "history"]),
            sg.llm_text("question", "Ask about {topic}", model="w"),
            sg.llm_text("answer", "Answer {question}", model="w"),
        ],
        providers={"simulated": SimulatedProvider(latency_seconds=LATENCY)},
    )
    sink = sg.InMemoryEventSink()
    out = tmp_path_factory.mktemp("pipeline")
    result = run_virtual(pipeline.arun, ROWS, output_dir=str(out), events=sink, buffer_size=5)
    assert result.ok, result.message
    return CorrelatedRuntimeView(sink.events).occupancy, result


def at(series: GroupSeries, state: str, t: float) -> int:
    """The series' count of ``state`` at instant ``t`` (0 before its first sample)."""
    i = bisect.bisect_right(series.times, t) - 1
    return series.counts[state][i] if i >= 0 else 0


def integral(series: GroupSeries, state: str, end: float) -> float:
    """Cell-seconds spent in ``state``, up to ``end``."""
    times = [*series.times, end]
    counts = series.counts[state]
    return sum(counts[i] * (times[i + 1] - times[i]) for i in range(len(counts)))


def test_a_pipeline_run_has_one_series_per_column_not_per_endpoint_lane(
    pipeline_run: tuple[RunOccupancy, sg.RunResult],
) -> None:
    occ, _ = pipeline_run
    # Both model columns run in one task group (the endpoint's lane) ...
    lanes = [g for g in occ.groups.values() if integral(g, "call", occ.ended_at) > 0]
    assert len(lanes) == 1
    lane = lanes[0]
    # ... but the run has a series per column, in pipeline order, naming its endpoint.
    assert list(occ.columns) == ["topic", "question", "answer"]
    assert occ.columns["question"].endpoints == ["w"] == occ.columns["answer"].endpoints
    assert occ.columns["topic"].endpoints == []
    question, answer = occ.columns["question"], occ.columns["answer"]
    # Every cell made one call of LATENCY seconds: each column's share of the lane's calls.
    assert integral(question, "call", occ.ended_at) == pytest.approx(ROWS * LATENCY)
    assert integral(answer, "call", occ.ended_at) == pytest.approx(ROWS * LATENCY)
    assert integral(lane, "call", occ.ended_at) == pytest.approx(2 * ROWS * LATENCY)
    # At every instant the columns split the lane between them.
    for t in sorted({*lane.times, *question.times, *answer.times}):
        for state in ("queued", "wait", "call"):
            assert at(question, state, t) + at(answer, state, t) == at(lane, state, t), (t, state)
    # An answer needs its question: the question column is busy first.
    first_answer = next(t for t in answer.times if at(answer, "call", t))
    first_question = next(t for t in question.times if at(question, "call", t))
    assert first_question < first_answer


def test_a_pipeline_run_counts_rows_not_tasks(
    pipeline_run: tuple[RunOccupancy, sg.RunResult],
) -> None:
    occ, result = pipeline_run
    assert len(occ.completions) == 3 * ROWS  # tasks: one per cell
    rows = occ.rows
    assert rows is not None and rows.columns == 3
    assert len(rows.completed) == ROWS == result.rows_written
    assert rows.completed == sorted(rows.completed)
    # A row is complete when its answer (the last cell) completes: not before LATENCY * 2.
    assert rows.completed[0] >= occ.started_at + 2 * LATENCY
    # Rows written: one checkpoint per row group of 5, each after its rows completed.
    assert [n for _, n in rows.written] == [5, 5, 5, 5]
    for i, (t, _) in enumerate(rows.written):
        assert sorted(rows.completed)[5 * i + 4] <= t


def test_a_generic_scheduler_run_keeps_its_groups_and_tasks() -> None:
    sink = sg.InMemoryEventSink()
    run_scenario_in_virtual_time("rate_limited", sink)
    occ = CorrelatedRuntimeView(sink.events).occupancy
    assert occ.columns == {} and occ.rows is None
    assert occ.groups and len(occ.completions) == 600


def test_timeline_labels_name_the_column_and_its_endpoint() -> None:
    from sluicegate.observe.plots import series_label  # matplotlib is imported only to draw

    assert series_label(GroupSeries(name="answer", endpoints=["w"])) == "answer (w)"
    assert series_label(GroupSeries(name="mixed", endpoints=["a", "b"])) == "mixed (a, b)"
    assert series_label(GroupSeries(name="model:simulated/w")) == "model:simulated/w"


def test_the_pictures_of_a_pipeline_run_show_columns_and_rows(
    pipeline_run: tuple[RunOccupancy, sg.RunResult], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from sluicegate.observe import plots

    occ, _ = pipeline_run
    paths = plots.write_pictures(occ, tmp_path)
    assert sorted(p.name for p in paths) == ["endpoint_limits.png", "progress.png", "timeline.png"]
    timeline = plots._timeline(plt, occ)
    # The sampler's cells took no time: named in the title, not drawn as an empty row.
    assert [ax.get_ylabel() for ax in timeline.axes] == ["question (w)", "answer (w)"]
    assert "no time in any state: topic" in timeline.axes[0].get_title()
    progress = plots._progress(plt, occ)
    assert progress.axes[0].get_ylabel() == "rows completed / written"
    plt.close("all")
