"""Every execution of a cell is numbered once per run: the scheduler's attempt (its events),
the cell's ``task_execution_id`` (its requests' correlation) and ``ctx.attempt`` agree across
retries, salvage rounds and scheduler segments, so the runtime view attaches every request to
the execution that made it."""

from __future__ import annotations

import pathlib
import random
from typing import Any

import pytest

import sluicegate.datagen as dg
from sluicegate.events import InMemoryEventSink, RequestEvent, SchedulerEvent
from sluicegate.observe.timeline import TERMINAL_KINDS, build_timelines
from sluicegate.requests import ModelRequest
from test_datagen_support import FunctionProvider, failing

_OPENING = ("request_wait_started", "request_lease_acquired", "model_request_started")


def _attempt_of(execution_id: str) -> int:
    return int(execution_id.rsplit("#", 1)[1])


async def _flaky_run(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, segment: int | None
) -> InMemoryEventSink:
    """40 rows whose model column fails 20% of its calls (no call retries, one attempt per
    cell and salvage round, three rounds), optionally in scheduler segments of ``segment``."""
    if segment is not None:
        from sluicegate.datagen import runner

        monkeypatch.setattr(runner, "SEGMENT_TASKS", segment)
    draws = random.Random(3)

    def answer(model: str, request: ModelRequest) -> str:
        if draws.random() < 0.2:
            raise failing("transient")
        return "ok"

    sink = InMemoryEventSink()
    pipeline = dg.Pipeline(
        [dg.sampler("t", ["a", "b"]), dg.llm_text("q", "about {t}", model="w")],
        endpoints=[dg.Endpoint("w", model="w-model", provider="fn")],
        providers={"fn": FunctionProvider(answer=answer, latency=lambda m, r: 0.1)},
    )
    result = await pipeline.arun(
        40,
        output_dir=str(tmp_path),
        events=sink,
        buffer_size=10,
        request_max_attempts=1,
        cell_max_attempts=1,
        cell_backoff_seconds=0.1,
        salvage_rounds=3,
        salvage_delay_seconds=1.0,
        error_rate_threshold=1.0,
        error_rate_window=1000,
    )
    assert result.status == "success", result.message
    assert sink.of_kind("salvage_redispatched")  # the scenario salvages cells
    return sink


@pytest.mark.parametrize("segment", [None, 7], ids=["one-segment", "segments-of-7"])
async def test_every_request_belongs_to_the_dispatch_of_its_attempt(
    autojump_clock: Any,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    segment: int | None,
) -> None:
    sink = await _flaky_run(tmp_path, monkeypatch, segment)
    # Each dispatch: (task, attempt) -> [dispatched at, ended at, segment, task_execution_id]
    executions: dict[tuple[Any, int], list[Any]] = {}
    running: dict[Any, tuple[int, list[Any]]] = {}
    segments = 0
    for e in sink.events:
        if not isinstance(e, SchedulerEvent):
            continue
        if e.event_kind == "queue_drained":  # a segment's scheduler ends (one job per run)
            segments += 1
        elif e.event_kind == "task_dispatched":
            assert e.attempt is not None
            key = (e.task_id, e.attempt)
            assert key not in executions, f"task {e.task_id} dispatched twice as {e.attempt}"
            executions[key] = [e.captured_at, None, segments, None]
            running[e.task_id] = (e.attempt, executions[key])
        elif e.event_kind in TERMINAL_KINDS and e.task_id in running:
            attempt, execution = running.pop(e.task_id)
            execution[1] = e.captured_at
            assert e.correlation is not None  # the terminal event carries the worker's
            execution[3] = e.correlation.task_execution_id
            assert _attempt_of(execution[3]) == attempt
    assert not running
    if segment is not None:
        assert segments >= 2
        by_task: dict[Any, set[int]] = {}
        for (task_id, _), (_, _, seg, _) in executions.items():
            by_task.setdefault(task_id, set()).add(seg)
        assert any(len(s) > 1 for s in by_task.values())  # a cell ran in two segments
    ids = [x[3] for x in executions.values()]
    assert len(ids) == len(set(ids)), "a task_execution_id repeats within the run"

    requests = 0
    for e in sink.events:
        if isinstance(e, RequestEvent) and e.event_kind in _OPENING:
            correlation = e.correlation
            assert correlation is not None and correlation.task_execution_id is not None
            attempt = _attempt_of(correlation.task_execution_id)
            found = executions.get((correlation.task_id, attempt))
            assert found is not None, (correlation.task_execution_id, e.captured_at)
            started, ended, _, _ = found
            assert started <= e.captured_at <= ended, (
                f"{correlation.task_execution_id} at {e.captured_at}: its dispatch ran "
                f"{started}..{ended}"
            )
            requests += 1
    assert requests > 40


@pytest.mark.parametrize("segment", [None, 7], ids=["one-segment", "segments-of-7"])
async def test_the_view_attaches_every_request_to_the_execution_that_made_it(
    autojump_clock: Any,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    segment: int | None,
) -> None:
    sink = await _flaky_run(tmp_path, monkeypatch, segment)
    builder = build_timelines(sink.events)
    executions = builder.executions()
    assert len(executions) == len(sink.of_kind("task_dispatched"))
    assert len({(x.task_id, x.attempt) for x in executions}) == len(executions)
    assert not builder.orphan_requests()
    model_executions = [x for x in executions if x.column == "q"]
    assert sum(len(x.requests) for x in model_executions) == len(
        {e.request_id for e in sink.events if isinstance(e, RequestEvent)} - {None}
    )
    for x in model_executions:
        assert len(x.requests) == 1, (x.task_id, x.attempt, len(x.requests))
        assert x.selected_at is not None and x.task_completed_at is not None
        for request in x.requests:
            for attempt in request.attempts:
                assert attempt.started_at is not None
                assert x.selected_at <= attempt.started_at <= x.task_completed_at


async def test_ctx_attempt_counts_every_execution_of_the_cell(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """Salvage rounds refresh the attempt budget, not the count: a generator sees the same
    number as the scheduler's events and the correlation."""
    seen: dict[int, list[int]] = {}

    async def flaky(row: dg.RowView, ctx: dg.CellContext) -> int:
        seen.setdefault(ctx.row_index, []).append(ctx.attempt)
        assert ctx.correlation.task_execution_id == f"flaky:{ctx.row_index}#{ctx.attempt}"
        if ctx.row_index == 1:
            raise failing("transient")
        return ctx.attempt

    sink = InMemoryEventSink()
    result = await dg.Pipeline([dg.column("flaky", flaky)]).arun(
        2,
        output_dir=str(tmp_path),
        events=sink,
        cell_max_attempts=2,
        cell_backoff_seconds=0.1,
        salvage_rounds=2,
        salvage_delay_seconds=1.0,
        error_rate_threshold=1.0,
        error_rate_window=1000,
    )
    assert seen == {0: [1], 1: [1, 2, 3, 4, 5, 6]}  # 2 attempts, then 2 salvage rounds of 2
    assert result.failures == {"flaky: ProviderFailureError": 1}
    row_1 = [e.attempt for e in sink.of_kind("task_dispatched") if e.task_id == 1]
    assert row_1 == [1, 2, 3, 4, 5, 6]
