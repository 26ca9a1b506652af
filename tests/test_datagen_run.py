"""Running pipelines end to end in virtual time: every column helper, per-cell dispatch,
filters, exact counts, failures, salvage, the error-rate stop, endpoints, events, output."""

from __future__ import annotations

import gzip
import json
import pathlib
import tempfile
from typing import Any

import msgspec
import pytest
import trio

import sluicegate as sg
import sluicegate.datagen as dg
from sluicegate.events import InMemoryEventSink, RequestEvent
from sluicegate.observe import CorrelatedRuntimeView, build_report
from sluicegate.providers import SimulatedProvider
from sluicegate.requests import ModelRequest
from test_datagen_support import FunctionProvider, failing, prompt_of


def read(result: dg.RunResult) -> list[dict[str, Any]]:
    return list(result.rows())


class Verdict(msgspec.Struct):
    score: int
    reason: str


async def test_every_helper_column_runs(autojump_clock: Any, tmp_path: pathlib.Path) -> None:
    def answer_of(model: str, request: ModelRequest) -> str:
        prompt = prompt_of(request)
        if model == "judge-model":
            return '```json\n{"score": 4, "reason": "fine"}\n```'
        if model == "rubric-model":
            return 'Verdict: {"clarity": {"score": 3, "reason": "ok"}, "extra": {"score": 1}}'
        return f"text<{prompt[:20]}>"

    def loud(question: str) -> str:  # sync: runs inline under the virtual clock
        return question.upper()

    async def mixed(row: dg.RowView, ctx: dg.CellContext) -> dict[str, Any]:
        reply = await ctx.call("writer", f"more about {row['topic']}")
        return {"draw": ctx.rng.randint(0, 10**6), "reply": reply.content, "row": ctx.row_index}

    provider = FunctionProvider(answer=answer_of)
    pipeline = dg.Pipeline(
        [
            dg.sampler("topic", ["science", "history"], weights=[3, 1]),
            dg.sampler("level", uniform=(1, 5), integer=True),
            dg.sampler("temperature", normal=(0.7, 0.1)),
            dg.llm_text("question", "Ask about {topic} at level {level}", model="writer"),
            dg.column("shout", loud),
            dg.llm_structured("verdict", "Rate {question}", schema=Verdict, model="judge"),
            dg.judge("rubric", "Judge {question}", model="rubric", scores={"clarity": "1-5"}),
            dg.expression("size", lambda question, shout: len(question) + len(shout)),
            dg.column("mixed", mixed, depends_on=["topic"], model="writer"),
        ],
        endpoints=[
            dg.Endpoint("writer", model="writer-model", provider="fn"),
            dg.Endpoint("judge", model="judge-model", provider="fn"),
            dg.Endpoint("rubric", model="rubric-model", provider="fn"),
        ],
        providers={"fn": provider},
    )
    result = await pipeline.arun(12, output_dir=str(tmp_path), buffer_size=5, seed=7)
    assert result.status == "success", result.message
    rows = read(result)
    assert len(rows) == 12 == result.rows_written == result.rows_passed
    first = rows[0]
    assert set(first) == {
        "topic", "level", "temperature", "question", "shout", "verdict", "rubric", "size", "mixed"
    }  # fmt: skip
    assert first["topic"] in ("science", "history") and 1 <= first["level"] <= 5
    assert isinstance(first["temperature"], float)
    assert first["question"].startswith("text<Ask about")
    assert first["shout"] == first["question"].upper()
    assert first["verdict"] == {"score": 4, "reason": "fine"}
    assert first["rubric"] == {"clarity": {"score": 3.0, "reason": "ok"}}
    assert first["size"] == 2 * len(first["question"])
    assert [r["mixed"]["row"] for r in rows] == list(range(12))
    assert result.files == (
        "data/part-00000.jsonl",
        "data/part-00001.jsonl",
        "data/part-00002.jsonl",
    )


async def test_samplers_depend_only_on_seed_row_and_column(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    pipeline = dg.Pipeline([dg.sampler("a", uniform=(0, 1)), dg.sampler("b", uniform=(0, 1))])
    one = await pipeline.arun(30, output_dir=str(tmp_path / "1"), seed=1, buffer_size=7)
    two = await pipeline.arun(30, output_dir=str(tmp_path / "2"), seed=1, buffer_size=30)
    other = await pipeline.arun(30, output_dir=str(tmp_path / "3"), seed=2)
    assert read(one) == read(two)
    assert read(one) != read(other)
    assert len({row["a"] for row in read(one)}) == 30
    assert [row["a"] != row["b"] for row in read(one)].count(True) == 30


async def test_a_downstream_cell_starts_when_its_own_row_is_ready(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    started: dict[tuple[str, int], float] = {}
    finished: dict[tuple[str, int], float] = {}

    def timed(alias: str) -> Any:
        async def generate(row: dg.RowView, ctx: dg.CellContext) -> int:
            started[(ctx.column, ctx.row_index)] = trio.current_time()
            await ctx.call(alias, "x")
            finished[(ctx.column, ctx.row_index)] = trio.current_time()
            return ctx.row_index

        return generate

    provider = FunctionProvider(latency=lambda model, request: 1.0)
    pipeline = dg.Pipeline(
        [
            dg.column("up", timed("a"), model="a"),
            dg.column("down", timed("b"), depends_on=["up"], model="b"),
        ],
        endpoints=[
            dg.Endpoint("a", model="a", provider="fn", max_parallel_requests=4),
            dg.Endpoint("b", model="b", provider="fn", max_parallel_requests=4),
        ],
        providers={"fn": provider},
    )
    result = await pipeline.arun(40, output_dir=str(tmp_path))
    assert result.ok
    last_up = max(finished[("up", r)] for r in range(40))
    assert started[("down", 0)] < finished[("up", 39)] == last_up
    assert started[("down", 0)] == pytest.approx(finished[("up", 0)])


async def test_keep_if_filters_rows_and_counts_them(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    pipeline = dg.Pipeline(
        [
            dg.sampler("n", uniform=(0, 99), integer=True),
            dg.expression("double", lambda n: 2 * n, keep_if=lambda row: row["n"] % 2 == 0),
            dg.expression("after", lambda double: double + 1),
        ]
    )
    result = await pipeline.arun(50, output_dir=str(tmp_path), seed=3)
    rows = read(result)
    assert result.status == "success"
    assert all(r["n"] % 2 == 0 and r["after"] == 2 * r["n"] + 1 for r in rows)
    assert result.rows_filtered == 50 - len(rows) > 0
    assert result.filtered == {"double": result.rows_filtered}
    assert result.rows_generated == 50 and result.rows_dropped == result.rows_filtered


async def test_exact_count_writes_the_first_passing_rows(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    keep_even = dg.expression("n2", lambda n: n, keep_if=lambda row: row["n"] % 2 == 0)
    pipeline = dg.Pipeline([dg.sampler("n", uniform=(0, 999), integer=True), keep_even])
    exact = await pipeline.arun(
        25, output_dir=str(tmp_path / "exact"), exact=True, buffer_size=8, seed=5
    )
    plain = await pipeline.arun(200, output_dir=str(tmp_path / "plain"), buffer_size=8, seed=5)
    assert exact.status == "success", exact.message
    assert exact.rows_written == 25
    assert read(exact) == read(plain)[:25]
    assert exact.rows_generated >= 25 + exact.rows_filtered - 8
    short = await pipeline.arun(
        25, output_dir=str(tmp_path / "short"), exact=True, max_attempts_factor=1.0, seed=5
    )
    assert short.status == "failure"
    assert "of 25 rows passed after generating 25" in short.message
    assert short.rows_written < 25


async def test_failed_rows_are_reported_with_reasons(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    ran: list[int] = []

    def fragile(row: dg.RowView, ctx: dg.CellContext) -> int:
        if ctx.row_index % 5 == 0:
            raise ValueError(f"row {ctx.row_index} is cursed")
        return ctx.row_index

    def downstream(fragile: int) -> int:
        ran.append(fragile)
        return fragile

    pipeline = dg.Pipeline([dg.column("fragile", fragile), dg.column("down", downstream)])
    result = await pipeline.arun(20, output_dir=str(tmp_path))
    assert result.status == "failure"
    assert result.message == "4 row(s) could not be produced"
    assert result.rows_failed == 4 and result.rows_written == 16
    assert result.failures == {"fragile: ValueError": 4}
    assert "is cursed" in result.failure_examples["fragile: ValueError"]
    assert sorted(ran) == [r for r in range(20) if r % 5]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "failure"
    assert manifest["failures"] == {"fragile: ValueError": 4}


async def test_values_that_cannot_be_written_drop_the_row_with_a_fix(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    pipeline = dg.Pipeline([dg.column("bad", lambda row: object(), threaded=False)])
    result = await pipeline.arun(2, output_dir=str(tmp_path))
    assert result.failures == {"bad: CellGenerationError": 2}
    assert "cannot be written as JSON" in result.failure_examples["bad: CellGenerationError"]


async def test_structured_output_is_asked_again_then_dropped(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    def answer(model: str, request: ModelRequest) -> str:
        assert request.messages is not None
        row = int(request.messages[0]["content"].split()[1])
        corrected = len(request.messages) > 1
        if row % 3 == 0:
            return "not json at all"
        if row % 3 == 1 and not corrected:
            return '{"score": "high", "reason": "x"}'  # wrong type: asked again
        return f'{{"score": {row}, "reason": "ok"}}'

    provider = FunctionProvider(answer=answer)
    pipeline = dg.Pipeline(
        [
            dg.column("idx", lambda row, ctx: ctx.row_index, threaded=False),
            dg.llm_structured(
                "verdict", "row {idx}", schema=Verdict, model="m", max_invalid_retries=2
            ),
        ],
        endpoints=[dg.Endpoint("m", model="m", provider="fn")],
        providers={"fn": provider},
    )
    result = await pipeline.arun(9, output_dir=str(tmp_path))
    rows = read(result)
    assert [r["verdict"]["score"] for r in rows] == [1, 2, 4, 5, 7, 8]
    assert result.failures == {"verdict: StructuredOutputError": 3}
    assert "after 3 answer(s)" in result.failure_examples["verdict: StructuredOutputError"]
    # rows 0, 3, 6: 3 answers each; rows 1, 4, 7: 2; rows 2, 5, 8: 1
    assert provider.calls == 3 * 3 + 3 * 2 + 3 * 1


async def test_retryable_failures_are_retried_then_salvaged(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    attempts: dict[int, int] = {}

    async def flaky(row: dg.RowView, ctx: dg.CellContext) -> int:
        attempts[ctx.row_index] = attempts.get(ctx.row_index, 0) + 1
        needed = {0: 1, 1: 2, 2: 4, 3: 100}[ctx.row_index]
        if attempts[ctx.row_index] < needed:
            raise failing("transient")
        return attempts[ctx.row_index]

    sink = InMemoryEventSink()
    pipeline = dg.Pipeline([dg.column("flaky", flaky)])
    result = await pipeline.arun(
        4,
        output_dir=str(tmp_path),
        events=sink,
        cell_max_attempts=2,
        cell_backoff_seconds=0.1,
        salvage_rounds=2,
        salvage_delay_seconds=1.0,
        error_rate_threshold=1.0,
        error_rate_window=1000,
    )
    assert [r["flaky"] for r in read(result)] == [1, 2, 4]
    assert attempts[3] == 6  # 2 attempts, then 2 salvage rounds of 2
    assert result.failures == {"flaky: ProviderFailureError": 1}
    assert "after 2 salvage round(s)" in result.failure_examples["flaky: ProviderFailureError"]
    rounds = [e.diagnostics for e in sink.of_kind("salvage_redispatched")]
    assert rounds == [{"cells": 2, "round": 1}, {"cells": 1, "round": 2}]


async def test_a_sustained_error_rate_stops_the_run_keeping_finished_groups(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    async def breaks_after_row_20(row: dg.RowView, ctx: dg.CellContext) -> int:
        await trio.sleep(0.01)
        if ctx.row_index >= 20:
            raise RuntimeError("endpoint gone")
        return 1

    pipeline = dg.Pipeline([dg.column("x", breaks_after_row_20)])
    result = await pipeline.arun(
        500,
        output_dir=str(tmp_path),
        buffer_size=10,
        max_concurrent_row_groups=2,
        local_concurrency=4,
        error_rate_window=10,
        error_rate_threshold=0.8,
        stop_grace_seconds=5,
    )
    assert result.status == "failure"
    assert result.message.startswith("stopped early: error rate")
    assert result.rows_written == 20
    assert result.files == ("data/part-00000.jsonl", "data/part-00001.jsonl")
    assert result.rows_generated < 100


async def test_two_endpoints_both_stay_busy(autojump_clock: Any, tmp_path: pathlib.Path) -> None:
    provider = FunctionProvider(latency=lambda model, request: 1.0)
    pipeline = dg.Pipeline(
        [
            dg.llm_text("g1", "one", model="A"),
            dg.llm_text("g2", "two", model="A"),
            dg.judge("j1", "judge {g1}", model="B"),
            dg.judge("j2", "judge {g2}", model="B"),
        ],
        # initial_limit = the cap turns slow start off, so the timing below is exact.
        endpoints=[
            dg.Endpoint("A", model="a", provider="fn", max_parallel_requests=8, initial_limit=8),
            dg.Endpoint("B", model="b", provider="fn", max_parallel_requests=8, initial_limit=8),
        ],
        providers={"fn": provider},
    )
    result = await pipeline.arun(100, output_dir=str(tmp_path), events=None)
    assert result.ok
    assert provider.max_in_flight == {"a": 8, "b": 8}
    both_full = [
        t for t, flying in provider.overlap if flying.get("a") == 8 and flying.get("b") == 8
    ]
    assert both_full, "the endpoints were never busy at the same time"
    # 200 calls per endpoint at 8 at a time take 25 s each; B can start after 1 s.
    assert result.elapsed_seconds == pytest.approx(26.0)


async def test_model_call_events_carry_the_cell_correlation(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    sink = InMemoryEventSink()
    pipeline = dg.Pipeline(
        [dg.sampler("t", ["a"]), dg.llm_text("q", "about {t}", model="w")],
        providers={"simulated": SimulatedProvider(latency_seconds=0.01)},
    )
    result = await pipeline.arun(
        6, output_dir=str(tmp_path), events=sink, buffer_size=4, run_id="r1"
    )
    started = [e for e in sink.events if e.event_kind == "model_request_started"]
    assert len(started) == 6
    seen = set()
    for event in started:
        assert isinstance(event, RequestEvent)
        c = event.correlation
        assert c is not None and c.run_id == "r1" and c.column == "q"
        assert c.row is not None and c.row_group == c.row // 4
        assert c.task_execution_id == f"q:{c.row}#1"
        assert c.group_kind == "model" and c.task_type == "llm_text"
        assert event.request_group == "simulated/w"
        seen.add(c.row)
    assert seen == set(range(6))
    kinds = sink.kinds()
    assert kinds.count("row_group_admitted") == 2 and kinds.count("row_group_checkpointed") == 2
    sequences = [
        e.sequence for e in sink.events if e.event_kind in ("row_group_admitted", "selected")
    ]
    assert sequences == sorted(sequences)
    assert result.ok


async def test_every_run_writes_compressed_events_unless_turned_off(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    pipeline = dg.Pipeline([dg.llm_text("q", "hi", model="w")])
    await pipeline.arun(3, output_dir=str(tmp_path / "default"))  # no events= at all
    lines = gzip.decompress((tmp_path / "default" / "events.jsonl.gz").read_bytes()).splitlines()
    kinds = {json.loads(line)["event_kind"] for line in lines}
    assert {"model_request_started", "task_completed", "row_group_checkpointed"} <= kinds
    assert not (tmp_path / "default" / "events.jsonl").exists()
    await pipeline.arun(3, output_dir=str(tmp_path / "off"), events=False)
    assert not list((tmp_path / "off").glob("events*"))


async def test_events_can_go_to_a_file_of_the_callers_choosing(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """``events=PATH`` writes that file (compressed by its name) and closes it at the end;
    a value that is neither a flag, a path nor a sink is refused before anything is written."""
    pipeline = dg.Pipeline([dg.llm_text("q", "hi", model="w")])
    plain, packed = tmp_path / "mine.jsonl", tmp_path / "mine.jsonl.gz"
    await pipeline.arun(3, output_dir=str(tmp_path / "a"), events=str(plain))
    await pipeline.arun(3, output_dir=str(tmp_path / "b"), events=packed)
    assert json.loads(plain.read_bytes().splitlines()[0])["event_kind"] == "pipeline_started"
    assert {e.event_kind for e in sg.read_events(packed)} >= {"task_completed"}
    assert not list((tmp_path / "a").glob("events*"))
    with pytest.raises(sg.ConfigurationError, match="events") as caught:
        await pipeline.arun(3, output_dir=str(tmp_path / "c"), events=42)  # type: ignore[arg-type]
    assert "InMemoryEventSink" in str(caught.value)
    assert not (tmp_path / "c").exists()


async def test_a_run_directory_with_an_uncompressed_events_file_keeps_appending_to_it(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """A run directory an earlier sluicegate recorded (``events.jsonl``) is resumed into the
    file it has, so its runs stay in one file."""
    pipeline = dg.Pipeline([dg.llm_text("q", "hi", model="w")])
    await pipeline.arun(3, output_dir=str(tmp_path), buffer_size=1)
    (tmp_path / "events.jsonl").write_bytes(
        gzip.decompress((tmp_path / "events.jsonl.gz").read_bytes())
    )
    (tmp_path / "events.jsonl.gz").unlink()
    before = len(sg.read_events(tmp_path / "events.jsonl"))
    await pipeline.arun(5, output_dir=str(tmp_path), buffer_size=1, force=True)
    assert not (tmp_path / "events.jsonl.gz").exists()
    events = sg.read_events(tmp_path / "events.jsonl")
    assert len(events) > before
    assert [e.event_kind for e in events].count("pipeline_started") == 2


async def test_events_are_flushed_at_every_checkpoint_and_at_the_end(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    class Recording(InMemoryEventSink):
        """Keeps the events and marks every flush in the same list."""

        def __init__(self) -> None:
            super().__init__()
            self.log: list[str] = []

        def emit(self, event: Any) -> None:
            super().emit(event)
            self.log.append(event.event_kind)

        def flush(self) -> None:
            self.log.append("FLUSH")

    sink = Recording()
    pipeline = dg.Pipeline(
        [dg.sampler("topic", ["a", "b"]), dg.llm_text("q", "Ask about {topic}", model="m")],
        endpoints=[dg.Endpoint("m", model="m", provider="sim")],
        providers={"sim": SimulatedProvider(name="sim", latency_seconds=0.1)},
    )
    result = await pipeline.arun(7, output_dir=str(tmp_path), events=sink, buffer_size=2)
    assert result.ok
    log = sink.log
    checkpoints = [i for i, kind in enumerate(log) if kind == "row_group_checkpointed"]
    assert len(checkpoints) == 4  # 7 rows in groups of 2
    assert all(log[i + 1] == "FLUSH" for i in checkpoints)  # nothing buffered past a checkpoint
    assert log.count("FLUSH") == len(checkpoints) + 1  # and once more when the run ends


async def test_scheduler_events_are_one_gap_free_stream_across_segments(
    autojump_clock: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner runs one scheduler per segment of cells; with the runner's own events
    (row groups) between and during them, the scheduler stream is still numbered 1, 2, ..."""
    from sluicegate.datagen import runner

    monkeypatch.setattr(runner, "SEGMENT_TASKS", 5)  # 12 cells: more than one segment
    sink = InMemoryEventSink()
    pipeline = dg.Pipeline(
        [dg.sampler("t", ["a", "b"]), dg.llm_text("q", "about {t}", model="w")],
        providers={"simulated": SimulatedProvider(latency_seconds=0.01)},
    )
    result = await pipeline.arun(6, output_dir=str(tmp_path), events=sink, buffer_size=2)
    assert result.ok
    scheduler = [e for e in sink.events if not isinstance(e, RequestEvent)]
    assert sum(e.event_kind == "queue_drained" for e in scheduler) >= 2  # several segments
    # ... one run: one job, which the report reads whole (not segment by segment)
    assert [e.event_kind for e in scheduler].count("scheduler_job_started") == 1
    assert [e.event_kind for e in scheduler].count("scheduler_job_completed") == 1
    assert scheduler[-1].event_kind == "scheduler_job_completed" and scheduler[-1].reason is None
    view = CorrelatedRuntimeView(sink.events)
    assert view.runs == 1 and build_report(view).tasks == 12
    assert [e.sequence for e in scheduler] == list(range(1, len(scheduler) + 1))
    # the cell worker's correlation, not a bare one from the scheduler
    completed = [e for e in scheduler if e.event_kind == "task_completed"]
    assert len(completed) == 12
    assert all(e.correlation is not None and e.correlation.column for e in completed)


async def test_the_job_event_says_what_each_groups_cells_hold(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """Once per run, not per cell: each fairness group (as the events name it) -> the
    task-admission resources one of its cells holds, so a report can tell when a queued cell
    would have fitted. A group spread over lanes holding different resources is left out."""

    async def call(row: dg.RowView, ctx: dg.CellContext) -> int:
        await ctx.call("A" if ctx.column == "a_too" else "B", ctx.column)
        return 0

    shared = dg.SchedulingMetadata(kind="custom_model", identity=("shared",))
    pipeline = dg.Pipeline(
        [
            dg.llm_text("q", "one", model="A"),
            dg.expression("n", lambda q: len(q)),
            dg.column("a_too", call, model="A", scheduling=shared),
            dg.column("b_too", call, model="B", scheduling=shared),
        ],
        endpoints=[
            dg.Endpoint("A", model="a", provider="fn", max_parallel_requests=2),
            dg.Endpoint("B", model="b", provider="fn", max_parallel_requests=3),
        ],
        providers={"fn": FunctionProvider(latency=lambda model, request: 1.0)},
    )
    sink = InMemoryEventSink()
    assert (await pipeline.arun(4, output_dir=str(tmp_path), events=sink)).ok
    job = next(e for e in sink.events if e.event_kind == "scheduler_job_started")
    assert job.diagnostics is not None
    assert job.diagnostics["limits"] == {"endpoint:fn/a": 4, "endpoint:fn/b": 6, "submission": 74}
    assert job.diagnostics["group_resources"] == {
        "model:fn/a": {"submission": 1, "endpoint:fn/a": 1},
        "local:n": {"submission": 1},
    }
    queued = {
        e.group for e in sg.events.per_task_events(sink.events) if e.event_kind == "ready_enqueued"
    }
    assert queued == {"model:fn/a", "local:n", "custom_model:shared"}
    assert all(
        e.diagnostics is None or "group_resources" not in e.diagnostics
        for e in sink.events
        if e is not job
    )


@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
async def test_output_opens_with_pandas_and_pyarrow(
    autojump_clock: Any, tmp_path: pathlib.Path, output_format: str
) -> None:
    pd = pytest.importorskip("pandas")
    pa_dataset = pytest.importorskip("pyarrow.dataset")
    pipeline = dg.Pipeline(
        [dg.sampler("topic", ["a", "b"]), dg.expression("n", lambda topic: len(topic) * 2)]
    )
    result = await pipeline.arun(
        25, output_dir=str(tmp_path), buffer_size=10, output_format=output_format
    )
    files = [str(tmp_path / f) for f in result.files]
    if output_format == "jsonl":
        frame = pd.concat([pd.read_json(f, lines=True) for f in files], ignore_index=True)
        table = pa_dataset.dataset(files, format="json").to_table()
    else:
        frame = pd.read_parquet(tmp_path / "data")
        table = pa_dataset.dataset(str(tmp_path / "data"), format="parquet").to_table()
    assert list(frame.columns) == ["topic", "n"] and len(frame) == 25
    assert table.num_rows == 25
    assert frame.to_dict("records") == read(result)


async def test_output_is_byte_identical_whatever_the_timing(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    def build(jitter: float, cap: int, seed: int) -> dg.Pipeline:
        return dg.Pipeline(
            [
                dg.sampler("topic", ["x", "y", "z"]),
                dg.llm_text("q", "about {topic}", model="w"),
                dg.llm_text("a", "answer {q}", model="w"),
                dg.column("ctx_draw", lambda row, ctx: ctx.rng.random(), depends_on=["a"]),
            ],
            endpoints=[dg.Endpoint("w", model="m", max_parallel_requests=cap)],
            providers={
                "simulated": SimulatedProvider(
                    seed=0, latency_seconds=0.05, latency_jitter=jitter, failure_rate=0.05
                )
            },
        )

    outputs = []
    for jitter, cap, group_limit in ((0.0, 16, 4), (0.9, 3, 1), (0.5, 7, 2)):
        out = tmp_path / f"run-{cap}"
        result = await build(jitter, cap, 0).arun(
            30,
            output_dir=str(out),
            buffer_size=8,
            max_concurrent_row_groups=group_limit,
            seed=11,
            cell_backoff_seconds=0.01,
        )
        assert result.ok, result.message
        outputs.append([(out / f).read_bytes() for f in result.files])
    assert outputs[0] == outputs[1] == outputs[2]


async def test_unknown_alias_in_ctx_call_drops_the_row(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    async def wrong(row: dg.RowView, ctx: dg.CellContext) -> str:
        return str((await ctx.call("nope", "hi")).content)

    pipeline = dg.Pipeline(
        [dg.column("x", wrong, model="w")], endpoints=[dg.Endpoint("w", model="m")]
    )
    result = await pipeline.arun(1, output_dir=str(tmp_path))
    assert result.failures == {"x: ConfigurationError": 1}
    assert "unknown model alias 'nope'" in result.failure_examples["x: ConfigurationError"]


def test_run_is_the_sync_entry_point(tmp_path: pathlib.Path) -> None:
    pipeline = dg.Pipeline([dg.sampler("a", [1, 2, 3]), dg.column("b", lambda a: a * 10)])
    result = pipeline.run(5, output_dir=str(tmp_path))
    assert result.ok and [r["b"] for r in result.rows()] == [r["a"] * 10 for r in result.rows()]


async def test_default_output_dir_is_a_temporary_directory(autojump_clock: Any) -> None:
    result = await dg.Pipeline([dg.sampler("a", [1])]).arun(2)
    assert result.output_dir.startswith(tempfile.gettempdir()) and result.rows_written == 2


async def test_zero_records_is_empty(autojump_clock: Any, tmp_path: pathlib.Path) -> None:
    result = await dg.Pipeline([dg.sampler("a", [1])]).arun(0, output_dir=str(tmp_path))
    assert result.status == "empty" and result.files == ()


async def test_against_the_loopback_emulator_over_http(tmp_path: pathlib.Path) -> None:
    from sluicegate.testing import EmulatorConfig, serve_emulator

    config = EmulatorConfig(capacity=4, latency_seconds=0.01, failure_rate=0.2, seed=3)
    async with serve_emulator(config) as emulator:
        pipeline = dg.Pipeline(
            [
                dg.sampler("topic", ["a", "b"]),
                dg.llm_text("question", "About {topic}", model="llm"),
                dg.judge("judge", "Judge {question}", model="llm"),
            ],
            endpoints=[
                dg.Endpoint(
                    "llm", model="demo", base_url=emulator.base_url, max_parallel_requests=6
                )
            ],
        )
        result = await pipeline.arun(
            12, output_dir=str(tmp_path), cell_backoff_seconds=0.01, salvage_delay_seconds=0.01
        )
        stats = emulator.stats
    assert result.ok, result.message
    rows = read(result)
    assert len(rows) == 12
    assert all(r["question"].startswith("simulated completion") for r in rows)
    assert stats.requests >= 24


async def test_the_context_knows_its_correlation_without_a_sink(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    def who(row: dg.RowView, ctx: dg.CellContext) -> list[Any]:
        c = ctx.correlation
        return [c.run_id, c.row_group, c.row, c.column, c.task_execution_id]

    pipeline = dg.Pipeline([dg.column("who", who, threaded=False)])
    result = await pipeline.arun(3, output_dir=str(tmp_path), run_id="rid", buffer_size=2)
    assert [r["who"] for r in read(result)] == [
        ["rid", 0, 0, "who", "who:0#1"],
        ["rid", 0, 1, "who", "who:1#1"],
        ["rid", 1, 2, "who", "who:2#1"],
    ]


async def test_a_retry_pause_lends_the_endpoint_to_another_cell(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    calls: list[tuple[float, str]] = []

    def answer(model: str, request: ModelRequest) -> str:
        prompt = prompt_of(request)
        calls.append((trio.current_time(), prompt))
        if prompt == "row 0" and sum(p == "row 0" for _, p in calls) == 1:
            raise failing("transient")
        return prompt

    provider = FunctionProvider(answer=answer, latency=lambda model, request: 0.1)
    pipeline = dg.Pipeline(
        [
            dg.column("i", lambda row, ctx: ctx.row_index, threaded=False),
            dg.llm_text("x", "row {i}", model="m"),
        ],
        endpoints=[dg.Endpoint("m", model="m", provider="fn", max_parallel_requests=1)],
        providers={"fn": provider},
    )
    result = await pipeline.arun(3, output_dir=str(tmp_path))
    assert result.ok
    # row 0 fails at 0.1 s and backs off ~0.5 s; rows 1 and 2 use the endpoint meanwhile
    order = [prompt for _, prompt in calls]
    assert order == ["row 0", "row 1", "row 2", "row 0"]
    assert provider.max_in_flight == {"m": 1}
    assert [r["x"] for r in read(result)] == ["row 0", "row 1", "row 2"]


async def test_abandoned_row_groups_end_cleanly(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """Exact mode: group 0 passes 1 row of 5, so groups 1-3 are admitted at that pass rate;
    group 1 alone then completes the count, and groups 2 and 3, still running (and retrying),
    are abandoned: their running cells end, nothing of them is written or left behind."""

    async def slow(row: dg.RowView, ctx: dg.CellContext) -> int:
        if ctx.column == "a":
            await trio.sleep(0.1)
        else:  # the last cell of a row: still running (or retrying) in group 2 at the end
            await trio.sleep(1.0 if ctx.row_index < 10 else 5.0 + ctx.row_index % 3)
            if ctx.row_index >= 10 and ctx.row_index % 2:
                raise failing("flaky")
        return ctx.row_index

    keep = dg.column(
        "b", slow, depends_on=["a"], keep_if=lambda row: row["a"] == 0 or row["a"] >= 5
    )
    pipeline = dg.Pipeline([dg.column("a", slow), keep])
    sink = InMemoryEventSink()
    result = await pipeline.arun(
        5,
        output_dir=str(tmp_path),
        exact=True,
        buffer_size=5,
        max_concurrent_row_groups=3,
        cell_backoff_seconds=0.1,
        events=sink,
    )
    assert result.status == "success", result.message
    assert [r["a"] for r in read(result)] == [0, 5, 6, 7, 8]
    admitted = [e.correlation.row_group for e in sink.of_kind("row_group_admitted")]
    assert admitted == [0, 1, 2]  # 2 was running (and retrying) when the count was complete
    assert result.files == ("data/part-00000.jsonl", "data/part-00001.jsonl")
    assert not list((tmp_path / "journal").iterdir())


async def test_an_endpoint_that_never_answers_stops_the_run_at_once(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """A wrong URL: every call is refused, the circuit opens, and the run stops with the
    endpoint's URL and cause instead of retrying each cell through the circuit's probes
    (30 s, 60 s, ... apart: minutes of "circuit open" before the rows failed)."""
    from sluicegate.requests import ProviderConnectionError

    def refused(model: str, request: ModelRequest) -> str:
        raise ProviderConnectionError(
            "refused", url="http://127.0.0.1:9/v1/chat/completions", cause="connection refused"
        )

    pipeline = dg.Pipeline(
        [dg.llm_text("q", "hi", model="m")],
        endpoints=[dg.Endpoint("m", model="m", provider="fn")],
        providers={"fn": FunctionProvider(answer=refused)},
    )
    start = trio.current_time()
    result = await pipeline.arun(20, output_dir=str(tmp_path))
    assert result.status == "failure"
    assert "is unreachable and never answered in this run" in result.message
    assert "http://127.0.0.1:9/v1/chat/completions: connection refused" in result.message
    assert trio.current_time() - start < 30  # before the circuit's first probe


async def test_an_endpoint_that_answered_then_went_down_is_waited_for(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    """An outage after answers: the run does not stop for a dead endpoint; its cells wait
    for the circuit's probe, which the endpoint (back up) answers."""
    from sluicegate.requests import ProviderConnectionError

    down = (5.0, 40.0)  # refused in this window of virtual time

    def flaky(model: str, request: ModelRequest) -> str:
        if down[0] <= trio.current_time() < down[1]:
            raise ProviderConnectionError("refused", url="http://x/v1", cause="connection refused")
        return "ok"

    provider = FunctionProvider(answer=flaky, latency=lambda m, r: 0.5)
    pipeline = dg.Pipeline(
        [dg.llm_text("q", "hi {n}", model="m"), dg.column("n", lambda row, ctx: ctx.row_index)],
        endpoints=[dg.Endpoint("m", model="m", provider="fn", max_parallel_requests=2)],
        providers={"fn": provider},
    )
    result = await pipeline.arun(40, output_dir=str(tmp_path), buffer_size=40)
    assert result.ok, result.message
    assert "never answered" not in (result.message or "")
    assert provider.calls > 40  # the outage was met: some calls were refused and retried
    assert trio.current_time() >= down[1]  # and waited out
