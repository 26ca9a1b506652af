"""The occupancy sweep's series of a pipeline run: per column and per row (what the
timeline and progress pictures draw), a generic scheduler run left as it was, and ready-idle
gaps and idle capacity when tasks hold several task-admission resources."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import pytest

import sluicegate as sg
from sluicegate.events import SchedulerEvent
from sluicegate.observe import CorrelatedRuntimeView, run_scenario_in_virtual_time
from sluicegate.observe.series import GroupSeries, RunOccupancy
from sluicegate.providers import SimulatedProvider
from sluicegate.testing import run_virtual
from test_observe_support import scheduler_events

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


def test_a_pipeline_run_measures_its_ready_idle_gaps(
    pipeline_run: tuple[RunOccupancy, sg.RunResult],
) -> None:
    """The run names what each task group holds, so the gaps are measured: none, since the
    scheduler admits a ready cell in the instant it is queued."""
    occ, _ = pipeline_run
    assert occ.capacity is None  # several task-admission resources
    assert occ.ready_idle_seconds == 0.0


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
    # The band of layers: one bar collection per layer however many segments (a patch per
    # segment took 11 s to draw for a 10,000-cell run).
    band = progress.axes[1]
    layers = {layer for _, _, layer in occ.segments}
    assert not band.patches
    assert len(band.collections) == len(layers)
    plt.close("all")


# -- ready-idle gaps and idle capacity with several task-admission resources -------------

# A pipeline's layout: the shared total, and a lane resource per endpoint.
LIMITS = {"submission": 4, "endpoint:e": 2}
HOLDS = {"model:e": {"submission": 1, "endpoint:e": 1}, "local:x": {"submission": 1}}


def stream(*steps: tuple[float, str, str, str, int | None], **job: Any) -> list[SchedulerEvent]:
    """A run's scheduler events from ``(t, kind, task, group, lease)`` steps; ``job`` is the
    ``scheduler_job_started`` diagnostics (default: the limits and groups above)."""
    return scheduler_events(steps, job or {"limits": LIMITS, "group_resources": HOLDS})


def run(
    task: str, group: str, lease: int, ready: float, start: float, end: float
) -> list[tuple[float, str, str, str, int | None]]:
    return [
        (ready, "ready_enqueued", task, group, None),
        (start, "task_dispatched", task, group, lease),
        (end, "task_completed", task, group, lease),
    ]


def ordered(
    *runs: list[tuple[float, str, str, str, int | None]],
) -> list[tuple[float, str, str, str, int | None]]:
    return sorted((step for r in runs for step in r), key=lambda step: step[0])


def test_a_queued_task_that_fits_every_resource_is_a_ready_idle_gap() -> None:
    """b's lane has a free unit and so does the total, yet b waits 3 s: a ready-idle gap."""
    events = stream(
        *ordered(run("a", "model:e", 1, 0.0, 0.0, 4.0), run("b", "model:e", 2, 0.0, 3.0, 4.0))
    )
    view = CorrelatedRuntimeView(events)
    assert view.ready_idle_seconds == pytest.approx(3.0)
    verdict = view.verdict()
    assert verdict.layer == "ready_queue" and verdict.share == pytest.approx(0.75)
    assert "3s of ready-idle gaps" in verdict.message


def test_a_queued_task_whose_lane_is_full_is_no_gap_but_another_groups_is() -> None:
    """c waits 3 s for its endpoint's lane (both units held): capacity full, not a gap. A
    local task queued beside it needs only the total, which has room: that is a gap."""
    full = [
        run("a", "model:e", 1, 0.0, 0.0, 3.0),
        run("b", "model:e", 2, 0.0, 0.0, 3.0),
        run("c", "model:e", 3, 0.0, 3.0, 4.0),
    ]
    view = CorrelatedRuntimeView(stream(*ordered(*full)))
    assert view.ready_idle_seconds == 0.0  # measured, and none
    assert view.occupancy.layer_seconds()["ready_queue"] == 0.0
    assert view.verdict().layer == "downstream_completion"  # the holders run local code
    local = run("x", "local:x", 4, 0.0, 3.0, 4.0)
    assert CorrelatedRuntimeView(stream(*ordered(*full, local))).ready_idle_seconds == (
        pytest.approx(3.0)
    )


def test_ready_idle_is_not_measured_where_a_groups_resources_are_unknown() -> None:
    """A queued task of a group the run never described might have fitted: no number, not a
    0 nobody checked. Nor when the run names no group's resources at all."""
    full = [run("a", "model:e", 1, 0.0, 0.0, 3.0), run("b", "model:e", 2, 0.0, 0.0, 3.0)]
    other = run("o", "model:other", 3, 0.0, 3.0, 4.0)
    view = CorrelatedRuntimeView(stream(*ordered(*full, other)))
    assert view.ready_idle_seconds is None
    assert view.occupancy.layer_seconds()["ready_queue"] == 0.0  # no gap claimed either
    undescribed = stream(*ordered(*full), limits=LIMITS)
    assert CorrelatedRuntimeView(undescribed).ready_idle_seconds is None
    one_capacity = stream(*ordered(*full), limits={"submission": 4})
    assert CorrelatedRuntimeView(one_capacity).ready_idle_seconds == 0.0


@pytest.mark.parametrize(("total", "waiting_for_readiness"), [(3, 5.0), (2, 0.0)])
def test_capacity_stands_idle_while_the_total_resource_has_room(
    total: int, waiting_for_readiness: float
) -> None:
    """Two cells run local code while a third is still to come (ready at 5 s). With a unit of
    the total (a pipeline's ``submission``) free, capacity stood idle waiting for readiness;
    with the total full, the running cells set the pace."""
    steps = ordered(
        run("a", "model:e", 1, 0.0, 0.0, 5.0),
        run("b", "local:x", 2, 0.0, 0.0, 5.0),
        run("c", "model:e", 3, 5.0, 5.0, 6.0),
    )
    limits = {"submission": total, "endpoint:e": 4}
    occ = CorrelatedRuntimeView(stream(*steps, limits=limits, group_resources=HOLDS)).occupancy
    seconds = occ.layer_seconds()
    assert seconds["dependency_readiness"] == waiting_for_readiness
    assert seconds["downstream_completion"] == 6.0 - waiting_for_readiness
