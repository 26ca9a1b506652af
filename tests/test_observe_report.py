"""The run report: text, JSON and pictures from a run's events file."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pytest

import sluicegate as sg
from sluicegate.observe import run_scenario_in_virtual_time
from sluicegate.observe.report import (
    build_report,
    events_path,
    generate_report,
    render_text,
    report_from_json,
)
from sluicegate.observe.view import CorrelatedRuntimeView


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run")
    with sg.JsonLinesEventSink(path / "events.jsonl") as sink:
        run_scenario_in_virtual_time("rate_limited", sink)
    return path


def test_report_of_a_run_directory_writes_text_json_and_pictures(run_dir: Path) -> None:
    report = generate_report(run_dir)
    out = run_dir / "report"
    text = (out / "report.txt").read_text()
    assert text.startswith("sluicegate run report: rate_limited")
    assert "Verdict: provider cooldown (rate limits)" in text
    assert "set max_parallel_requests=12 for `judge`" in text
    assert "judge (judge/judge, chat; max_parallel_requests 64)" in text
    assert "hidden waiters 0" in text and "limit changes:" in text
    assert report_from_json((out / "report.json").read_bytes()) == report
    assert report.verdict.layer == "provider_cooldown" and report.tasks == 600
    assert report.limits["judge"].rate_limits > 0 and report.limits["generator"].rate_limits == 0
    assert report.limits["judge"].changes[0].kind == "decrease"
    names = sorted(Path(p).name for p in report.pictures)
    assert names == ["endpoint_limits.png", "progress.png", "timeline.png"]
    for picture in report.pictures:
        data = Path(picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert report.notes == []


def test_without_matplotlib_the_report_says_how_to_install_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = generate_report(run_dir / "events.jsonl", out_dir=tmp_path)
    assert report.pictures == []
    assert any("pip install 'sluicegate[plot]'" in note for note in report.notes)
    assert "pip install 'sluicegate[plot]'" in (tmp_path / "report.txt").read_text()
    with pytest.raises(ImportError, match=r"sluicegate\[plot\]"):
        from sluicegate.observe.plots import write_pictures

        write_pictures(CorrelatedRuntimeView([]).occupancy, tmp_path)


def test_the_report_says_each_step_as_it_starts(run_dir: Path, tmp_path: Path) -> None:
    """A large run's report takes seconds; the command shows these steps on a terminal."""
    steps: list[str] = []
    generate_report(run_dir, out_dir=tmp_path, progress=steps.append)
    assert [s.split(" ", 1)[0] for s in steps] == ["reading", "following", "drawing"]
    assert steps[0].startswith(f"reading {run_dir / 'events.jsonl'} (") and "events" in steps[1]


def test_report_of_a_crashed_run_notes_the_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        run_scenario_in_virtual_time("slow_endpoint", sink)
    with path.open("ab") as f:
        f.write(b'{"type":"scheduler","event_kind":"sel')
    report = generate_report(path, out_dir=tmp_path / "out", pictures=False)
    assert report.torn_tail_bytes > 0 and report.pictures == []
    assert "torn end (" in render_text(report)
    assert report.verdict.layer == "provider_latency"


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_a_file_without_a_whole_event_is_an_error_not_an_empty_report(
    tmp_path: Path, name: str
) -> None:
    """Empty, or holding only a first write cut short (a run killed at once): the report says
    so and how to go on, rather than printing "Verdict: none" and empty pictures."""
    path = tmp_path / name
    path.touch()
    with pytest.raises(sg.errors.NoEventsError, match=r"holds no events\. Fix: run"):
        generate_report(path, out_dir=tmp_path / "out")
    torn = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" if name.endswith(".gz") else b'{"type":'
    path.write_bytes(torn)
    with pytest.raises(sg.errors.NoEventsError, match=rf"only {len(torn)} bytes of a first"):
        generate_report(path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a run that is not there


def test_events_path_accepts_a_directory_or_a_file(tmp_path: Path) -> None:
    assert events_path(tmp_path) == tmp_path / "events.jsonl.gz"
    assert events_path(tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
    (tmp_path / "events.jsonl").touch()  # a run directory an earlier sluicegate recorded
    assert events_path(tmp_path) == tmp_path / "events.jsonl"
    (tmp_path / "events.jsonl.gz").touch()  # both: the compressed one is this version's
    assert events_path(tmp_path) == tmp_path / "events.jsonl.gz"


def test_an_empty_run_still_reports() -> None:
    report = build_report(CorrelatedRuntimeView([]))
    assert report.verdict.layer is None and report.tasks == 0
    assert "Verdict: none" in render_text(report)
    assert "Endpoints\n  none (the run made no model calls)" in render_text(report)


def test_the_module_command_prints_the_report_or_names_the_missing_file(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluicegate.observe.report import main

    assert main([str(run_dir), "--out", str(tmp_path), "--no-pictures"]) == 0
    assert "Verdict: provider cooldown (rate limits)" in capsys.readouterr().out
    assert main([str(run_dir), "--out", str(tmp_path), "--no-pictures", "--json"]) == 0
    assert report_from_json(capsys.readouterr().out.encode()).tasks == 600
    assert main([str(run_dir), "--out", str(tmp_path), "--no-pictures", "--format", "json"]) == 0
    assert report_from_json(capsys.readouterr().out.encode()).tasks == 600
    with pytest.raises(SystemExit):  # one or the other
        main([str(run_dir), "--json", "--format", "json"])
    capsys.readouterr()
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no events file" in capsys.readouterr().err


def test_a_pipeline_bound_by_its_endpoint_caps_names_the_endpoint(tmp_path: Path) -> None:
    """A pipeline releases an endpoint's cells only while it has room, so its calls never wait
    in request admission and its task resources are never full: the endpoint being at its
    limit must still be named as what set the pace (not "dependency readiness")."""
    from sluicegate.testing import run_virtual
    from test_datagen_support import FunctionProvider

    async def cell(row: sg.datagen.RowView, ctx: sg.CellContext) -> int:
        await ctx.call("gen", ctx.column)
        return 0

    pipeline = sg.Pipeline(
        [
            sg.column("question", cell, model="gen"),
            sg.column("answer", cell, depends_on=["question"], model="gen"),
        ],
        endpoints=[
            sg.Endpoint("gen", model="g", provider="fn", max_parallel_requests=8, initial_limit=8)
        ],
        providers={"fn": FunctionProvider(latency=lambda model, request: 1.0)},
    )
    sink = sg.InMemoryEventSink()
    result = run_virtual(pipeline.arun, 80, output_dir=str(tmp_path / "out"), events=sink)
    assert result.ok
    verdict = CorrelatedRuntimeView(sink.events).verdict()
    assert verdict.layer == "request_admission", verdict
    assert verdict.endpoint == "gen" and verdict.setting == "max_parallel_requests"
    assert verdict.share > 0.9
    assert "endpoint `gen` set the pace" in verdict.message
    view = CorrelatedRuntimeView(sink.events)
    assert view.chain_depth == 2  # question -> answer, from the pipeline_started event


def test_ready_idle_gaps_of_a_pipeline_are_measured_from_its_group_resources(
    run_dir: Path, tmp_path: Path
) -> None:
    """A pipeline admits tasks on several resources (the total, one per endpoint lane); its
    job event names what each group's cells hold, so the report measures the gaps (none: a
    ready cell is admitted in the instant it is queued). Without that entry it must not
    claim "0 s" for a gap it never looked for. A run with one capacity is measured as before."""
    from sluicegate.testing import run_virtual
    from test_datagen_support import FunctionProvider

    async def cell(row: sg.datagen.RowView, ctx: sg.CellContext) -> int:
        await ctx.call("gen", ctx.column)
        return 0

    pipeline = sg.Pipeline(
        [sg.column("question", cell, model="gen")],
        endpoints=[sg.Endpoint("gen", model="g", provider="fn", max_parallel_requests=4)],
        providers={"fn": FunctionProvider(latency=lambda model, request: 1.0)},
    )
    sink = sg.InMemoryEventSink()
    assert run_virtual(pipeline.arun, 8, output_dir=str(tmp_path / "out"), events=sink).ok
    report = build_report(CorrelatedRuntimeView(sink.events))
    assert report.capacity is None and report.ready_idle_seconds == 0.0
    assert "ready-idle gaps 0 s" in render_text(report)

    job = next(e for e in sink.events if e.event_kind == "scheduler_job_started")
    diagnostics = {k: v for k, v in (job.diagnostics or {}).items() if k != "group_resources"}
    undescribed = [
        msgspec.structs.replace(e, diagnostics=diagnostics) if e is job else e for e in sink.events
    ]
    report = build_report(CorrelatedRuntimeView(undescribed))
    assert report.ready_idle_seconds is None
    assert report_from_json(msgspec.json.encode(report)).ready_idle_seconds is None
    text = render_text(report)
    assert "ready-idle gaps not measured" in text and "ready-idle gaps 0" not in text

    single = generate_report(run_dir, out_dir=tmp_path / "single", pictures=False)
    assert single.capacity is not None
    assert f"ready-idle gaps {single.ready_idle_seconds:.3g} s" in render_text(single)


async def test_the_report_says_how_a_pipeline_run_ended(
    autojump_clock: object, tmp_path: Path
) -> None:
    """A finished run, one stopped part-way (the user pressed Ctrl-C: what ran is reported,
    and the report says it is part of a run), and one whose end was never written (killed)."""
    import trio

    import sluicegate.datagen as dg
    from sluicegate.providers import SimulatedProvider

    def pipeline() -> dg.Pipeline:
        provider = SimulatedProvider(name="sim", latency_seconds=0.05, seed=1)
        return dg.Pipeline(
            [dg.llm_text("q", "hi", model="m")],
            endpoints=[dg.Endpoint("m", model="m", provider="sim")],
            providers={"sim": provider},
        )

    await pipeline().arun(20, output_dir=str(tmp_path / "done"))
    control = dg.RunControl()
    async with trio.open_nursery() as nursery:

        async def stop_soon() -> None:
            await trio.sleep(0.2)
            control.stop(grace_period=0.0)

        nursery.start_soon(stop_soon)
        stopped = await pipeline().arun(
            500, output_dir=str(tmp_path / "stopped"), control=control, buffer_size=50
        )
    assert stopped.status == "interrupted"
    done = generate_report(tmp_path / "done", pictures=False)
    assert done.run_status == "success" and "run ended: success\n" in render_text(done)
    text = render_text(generate_report(tmp_path / "stopped", pictures=False))
    assert "run ended: interrupted (a stop or Ctrl-C before every cell ran" in text
    events = sg.read_events(tmp_path / "done" / "events.jsonl.gz")
    killed = [e for e in events if e.event_kind != "scheduler_job_completed"]
    view = CorrelatedRuntimeView(killed)
    assert view.run_status == "unfinished"
    assert "no end recorded: the process was killed" in render_text(build_report(view))
    assert CorrelatedRuntimeView([]).run_status is None  # not a pipeline: nothing to say


async def test_one_rows_cells_attempt_by_attempt(
    autojump_clock: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sluicegate report RUN --row N``: each cell of the row with its times, waits and calls,
    a failed attempt's reason under them; JSON for machines; a row the run lacks is named."""
    import json
    import re

    import sluicegate.datagen as dg
    from sluicegate.cli.main import main as cli
    from sluicegate.providers import SimulatedProvider

    provider = SimulatedProvider(name="sim", latency_seconds=0.5, failure_rate=0.3, seed=5)
    pipeline = dg.Pipeline(
        [dg.sampler("t", ["a", "b"]), dg.llm_text("q", "about {t}", model="m")],
        endpoints=[dg.Endpoint("m", model="m", provider="sim")],
        providers={"sim": provider},
    )
    out = tmp_path / "run"
    assert (await pipeline.arun(12, output_dir=str(out), request_max_attempts=4)).ok
    view = CorrelatedRuntimeView.from_file(out / "events.jsonl.gz")
    retried = next(
        e.row
        for e in view.executions
        if e.row is not None and any(len(r.attempts) > 1 for r in e.requests)
    )
    cells = view.row_executions(retried)  # the sampler's cell, then q's (a retried cell: more)
    assert cells[0].column == "t" and {e.column for e in cells[1:]} == {"q"}
    assert {e.row for e in cells} == {retried}
    assert cli(["report", str(out), "--row", str(retried)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"row {retried} (row group 0): {len(cells)} cell execution(s)")
    q_lines = [line for line in text.splitlines() if re.match(r"\s+q\s+\d+ ", line)]
    assert len(q_lines) == len(cells) - 1
    # a failed execution's reason follows the table, named by column and attempt
    for e in cells[1:-1]:
        assert f"  q #{e.attempt}: {e.reason}" in text
    assert any("provider_failure" in line for line in q_lines)
    assert "succeeded" in q_lines[-1] and q_lines[-1].endswith("success)")
    assert not (out / "report").exists()  # a query: nothing written
    assert cli(["report", str(out), "--row", str(retried), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["column"] for d in data] == [e.column for e in cells]
    assert data[-1]["requests"][0]["attempts"]
    assert cli(["report", str(out), "--row", "99"]) == 2
    assert "the run has no cell of row 99 (rows 0 to 11)" in capsys.readouterr().err


def test_the_readers_take_a_run_directory_as_the_report_command_does(run_dir: Path) -> None:
    """``read_events(RUN_DIR)`` and ``CorrelatedRuntimeView.from_file(RUN_DIR)`` read the
    directory's events file, as ``sluicegate report RUN_DIR`` does (they raised
    IsADirectoryError)."""
    events = sg.read_events(run_dir)
    assert events == sg.read_events(run_dir / "events.jsonl")
    assert len(list(sg.events.iter_events(run_dir))) == len(events)
    view = CorrelatedRuntimeView.from_file(run_dir)
    assert view.source == str(run_dir / "events.jsonl") and view.verdict().layer is not None


async def test_the_report_counts_each_endpoints_tokens_by_column(
    autojump_clock: object, tmp_path: Path
) -> None:
    import sluicegate.datagen as dg
    from sluicegate.providers import SimulatedProvider

    pipeline = dg.Pipeline(
        [
            dg.sampler("t", ["a", "b"]),
            dg.llm_text("q", "ask about {t}", model="m"),
            dg.llm_text("a", "answer {q}", model="m"),
        ],
        endpoints=[dg.Endpoint("m", model="m", provider="sim")],
        providers={"sim": SimulatedProvider(name="sim", latency_seconds=0.2, seed=2)},
    )
    assert (await pipeline.arun(10, output_dir=str(tmp_path))).ok
    view = CorrelatedRuntimeView.from_file(tmp_path)
    (endpoint,) = view.endpoints.values()
    requests = view.requests
    assert endpoint.input_tokens == sum(r.input_tokens or 0 for r in requests) > 0
    assert endpoint.output_tokens == sum(r.output_tokens or 0 for r in requests) > 0
    by_column = endpoint.tokens_by_column
    assert list(by_column) == ["q", "a"] and [calls for calls, _, _ in by_column.values()] == [
        10,
        10,
    ]
    assert sum(i for _, i, _ in by_column.values()) == endpoint.input_tokens
    text = render_text(build_report(view))
    assert f"tokens: {endpoint.input_tokens:,} in, {endpoint.output_tokens:,} out" in text
    q_in, q_out = by_column["q"][1:]
    assert f"by column (in / out): q {q_in:,} / {q_out:,} (10 requests), a " in text
