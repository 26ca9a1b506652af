"""Run directories survive interruptions: resume gives exactly the rows of an uninterrupted
run, byte for byte, regenerating at most the cells that were in flight."""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from collections import Counter
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sluicegate.datagen as dg
from sluicegate.requests import ModelRequest
from sluicegate.testing import run_virtual
from test_datagen_support import FunctionProvider, prompt_of

ROWS = 23


class Calls:
    """Counts generator invocations per cell and which cells are running right now."""

    def __init__(self) -> None:
        self.started: Counter[tuple[str, int]] = Counter()
        self.running: set[tuple[str, int]] = set()


def build(calls: Calls, *, prompt: str = "Ask about {topic}") -> dg.Pipeline:
    def latency(model: str, request: ModelRequest) -> float:
        return 0.5 + (len(prompt_of(request)) % 7) / 10

    provider = FunctionProvider(latency=latency)

    async def answer(question: str, ctx: dg.CellContext) -> str:
        key = ("answer", ctx.row_index)
        calls.started[key] += 1
        calls.running.add(key)
        try:
            reply = await ctx.call("w", f"answer {question}")
        finally:
            calls.running.discard(key)
        return f"{reply.content}/{ctx.rng.randint(0, 99)}"

    return dg.Pipeline(
        [
            dg.sampler("topic", ["a", "b", "c", "d"]),
            dg.llm_text("question", prompt, model="w"),
            dg.column("answer", answer, model="w"),
            dg.expression("n", lambda answer: len(answer), keep_if=lambda row: row["n"] % 3 != 0),
        ],
        endpoints=[dg.Endpoint("w", model="m", provider="fn", max_parallel_requests=4)],
        providers={"fn": provider},
    )


OPTIONS: dict[str, Any] = {"buffer_size": 5, "max_concurrent_row_groups": 2, "seed": 4}


def files_of(out: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("part-*"))}


_REFERENCE: dict[str, Any] = {}


def reference() -> tuple[dict[str, bytes], dg.RunResult]:
    if not _REFERENCE:
        out = pathlib.Path(tempfile.mkdtemp())
        result = run_virtual(build(Calls()).arun, ROWS, output_dir=str(out), **OPTIONS)
        assert result.ok
        _REFERENCE["files"] = files_of(out)
        _REFERENCE["result"] = result
    return _REFERENCE["files"], _REFERENCE["result"]


async def interrupted_run(
    out: pathlib.Path, calls: Calls, at: float, mode: str
) -> tuple[dg.RunResult, set[tuple[str, int]]]:
    control = dg.RunControl()
    in_flight: set[tuple[str, int]] = set()

    async def interrupt() -> None:
        await trio.sleep(at)
        in_flight.update(calls.running)
        if mode == "cancel":
            control.cancel()
        elif mode == "stop":
            control.stop()
        else:
            control.stop(grace_period=0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt)
        result = await build(calls).arun(ROWS, output_dir=str(out), control=control, **OPTIONS)
        nursery.cancel_scope.cancel()
    return result, in_flight


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    at=st.floats(min_value=0.0, max_value=6.0),
    mode=st.sampled_from(["cancel", "stop", "stop_grace"]),
    torn=st.booleans(),
)
def test_resume_after_an_interruption_gives_the_same_bytes(
    at: float, mode: str, torn: bool
) -> None:
    expected, full = reference()
    out = pathlib.Path(tempfile.mkdtemp())
    calls = Calls()
    first, in_flight = run_virtual(interrupted_run, out, calls, at, mode)
    if first.status != "interrupted":
        assert first.ok and files_of(out) == expected  # finished before the interruption
        return
    if torn:
        for journal in (out / "journal").glob("rg-*.jsonl"):
            with journal.open("ab") as f:
                f.write(b'["c",9')  # a crash in the middle of an append
    resumed = run_virtual(build(calls).arun, ROWS, output_dir=str(out), **OPTIONS)
    assert resumed.ok, resumed.message
    assert resumed.resumed
    assert files_of(out) == expected
    rows = list(resumed.rows())
    assert len(rows) == len({json.dumps(r, sort_keys=True) for r in rows}) == full.rows_written
    regenerated = {cell for cell, count in calls.started.items() if count > 1}
    assert all(count <= 2 for count in calls.started.values())
    if mode == "stop":
        assert not regenerated  # running cells finished and were journaled
    else:
        assert regenerated <= in_flight


def test_resume_after_a_crash_snapshot_gives_the_same_bytes(tmp_path: pathlib.Path) -> None:
    """Copy the run directory mid-run (what a killed process leaves), resume the copy."""
    expected, _ = reference()
    for at in (0.7, 1.9, 3.3, 5.0):
        out = tmp_path / f"live-{at}"
        crashed = tmp_path / f"crashed-{at}"

        async def run_and_copy(
            out: pathlib.Path = out, crashed: pathlib.Path = crashed, at: float = at
        ) -> None:
            async with trio.open_nursery() as nursery:

                async def copy_later() -> None:
                    await trio.sleep(at)
                    shutil.copytree(out, crashed)

                nursery.start_soon(copy_later)
                await build(Calls()).arun(
                    ROWS, output_dir=str(out), journal_flush_seconds=0.5, **OPTIONS
                )

        run_virtual(run_and_copy)
        result = run_virtual(build(Calls()).arun, ROWS, output_dir=str(crashed), **OPTIONS)
        assert result.ok
        assert files_of(crashed) == expected, at


def test_a_completed_run_directory_is_not_generated_again(tmp_path: pathlib.Path) -> None:
    calls = Calls()
    first = run_virtual(build(calls).arun, ROWS, output_dir=str(tmp_path), **OPTIONS)
    before = sum(calls.started.values())
    again = run_virtual(build(calls).arun, ROWS, output_dir=str(tmp_path), **OPTIONS)
    assert sum(calls.started.values()) == before
    assert again.ok and again.resumed and again.files == first.files
    assert again.rows_written == first.rows_written


def test_a_changed_pipeline_is_refused_naming_what_changed(tmp_path: pathlib.Path) -> None:
    run_virtual(build(Calls()).arun, ROWS, output_dir=str(tmp_path), **OPTIONS)
    changed = build(Calls(), prompt="Ask something about {topic}")
    with pytest.raises(dg.PipelineChangedError) as info:
        run_virtual(changed.arun, ROWS, output_dir=str(tmp_path), **OPTIONS)
    assert "column 'question': prompt changed" in str(info.value)
    with pytest.raises(dg.PipelineChangedError) as info:
        run_virtual(build(Calls()).arun, ROWS, output_dir=str(tmp_path), **{**OPTIONS, "seed": 5})
    assert "seed 4 -> 5" in str(info.value)
    forced = run_virtual(changed.arun, ROWS, output_dir=str(tmp_path), force=True, **OPTIONS)
    assert forced.ok and forced.resumed
    fresh = run_virtual(changed.arun, ROWS, output_dir=str(tmp_path), overwrite=True, **OPTIONS)
    assert fresh.ok and not fresh.resumed
    assert all("Ask something" in r["question"] for r in fresh.rows())


def test_a_corrupt_journal_line_in_the_middle_is_an_error(tmp_path: pathlib.Path) -> None:
    first = run_virtual(interrupted_run, tmp_path, Calls(), 1.5, "stop")[0]
    assert first.status == "interrupted"
    journals = sorted((tmp_path / "journal").glob("rg-*.jsonl"))
    assert journals
    lines = journals[0].read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2
    journals[0].write_bytes(lines[0] + b"garbage\n" + b"".join(lines[1:]))
    with pytest.raises(dg.RunDirectoryError, match=r"rg-\d+\.jsonl:2: corrupt journal line"):
        run_virtual(build(Calls()).arun, ROWS, output_dir=str(tmp_path), **OPTIONS)


def test_a_missing_or_altered_part_file_is_regenerated(tmp_path: pathlib.Path) -> None:
    expected, _ = reference()
    run_virtual(build(Calls()).arun, ROWS, output_dir=str(tmp_path), **OPTIONS)
    (tmp_path / "data" / "part-00001.jsonl").unlink()
    (tmp_path / "data" / "part-00002.jsonl").write_bytes(b'{"tampered": true}\n')
    calls = Calls()
    result = run_virtual(build(calls).arun, ROWS, output_dir=str(tmp_path), **OPTIONS)
    assert result.ok and files_of(tmp_path) == expected
    assert {row for (_, row) in calls.started} == set(range(5, 15))


class Reporter:
    """A progress reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.checkpoints: list[dg.CheckpointProgress] = []
        self.terminal: list[dg.RunResult] = []

    def checkpoint(self, progress: dg.CheckpointProgress) -> None:
        self.checkpoints.append(progress)

    def finished(self, result: dg.RunResult) -> None:
        self.terminal.append(result)


@pytest.mark.parametrize("mode", ["complete", "cancel", "error"])
def test_progress_has_one_terminal_report(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    reporter = Reporter()
    assert isinstance(reporter, dg.ProgressReporter)
    if mode == "error":

        def disk_full(*args: Any) -> Any:
            raise OSError("disk full")

        import sluicegate.datagen.rundir as rundir

        monkeypatch.setattr(rundir.RunDirectory, "write_part", disk_full)

    async def main() -> None:
        control = dg.RunControl()
        async with trio.open_nursery() as nursery:
            if mode == "cancel":

                async def cancel_later() -> None:
                    await trio.sleep(2.0)
                    control.cancel()

                nursery.start_soon(cancel_later)
            await build(Calls()).arun(
                ROWS, output_dir=str(tmp_path), progress=reporter, control=control, **OPTIONS
            )
            nursery.cancel_scope.cancel()

    if mode == "error":
        with pytest.raises(BaseExceptionGroup) as info:
            run_virtual(main)
        assert info.group_contains(OSError, match="disk full", depth=1)
    else:
        run_virtual(main)
    assert len(reporter.terminal) == 1
    result = reporter.terminal[0]
    assert (
        result.status == {"complete": "success", "cancel": "interrupted", "error": "failure"}[mode]
    )
    if mode == "complete":
        assert len(reporter.checkpoints) == 5
        assert reporter.checkpoints[-1].rows_written == result.rows_written
    if mode == "error":
        assert "disk full" in result.message


def test_snapshot_and_capacity_plan(tmp_path: pathlib.Path) -> None:
    snapshots: list[dg.RunSnapshot] = []

    async def main() -> dg.RunResult:
        control = dg.RunControl()
        assert control.snapshot() is None
        async with trio.open_nursery() as nursery:

            async def poll() -> None:
                while True:
                    await trio.sleep(0.5)
                    snapshot = control.snapshot()
                    if snapshot is not None:
                        snapshots.append(snapshot)

            nursery.start_soon(poll)
            result = await build(Calls()).arun(
                ROWS, output_dir=str(tmp_path), control=control, **OPTIONS
            )
            nursery.cancel_scope.cancel()
        return result

    result = run_virtual(main)
    assert result.ok
    busy = [s for s in snapshots if s.phase == "running" and s.cells_running]
    assert busy
    endpoint = busy[0].endpoints[0]
    assert endpoint.endpoint == "fn/m" and endpoint.static_cap == 4 and endpoint.aliases == ("w",)
    assert max(s.endpoints[0].in_flight for s in snapshots) == 4
    assert snapshots[-1].rows_done <= ROWS
    assert set(busy[0].columns_done) == {"topic", "question", "answer", "n"}
    plan = json.loads((tmp_path / "capacity_plan.json").read_text())
    assert plan["configured"]["task_resource:endpoint:fn/m"] == {"value": 8, "source": "derived"}
    maxima = plan["observed_maxima"]
    assert maxima["row_groups_in_flight"] == 2
    assert maxima["leases_by_resource"]["endpoint:fn/m"] == 4
    assert maxima["aggregate_in_flight_by_endpoint"]["fn/m"] == 4
    assert maxima["queued_by_group"]["local"] > 0


def test_a_crashed_run_has_its_events_up_to_the_last_checkpoint(tmp_path: pathlib.Path) -> None:
    """Copy the run directory mid-run (what a killed process leaves): every row group its
    manifest lists has its checkpoint event in the events file, and the report reads it."""
    from sluicegate.events import read_events
    from sluicegate.observe import generate_report

    out, crashed = tmp_path / "live", tmp_path / "crashed"

    async def run_and_copy() -> None:
        async with trio.open_nursery() as nursery:

            async def copy_later() -> None:
                await trio.sleep(3.3)
                shutil.copytree(out, crashed)

            nursery.start_soon(copy_later)
            await build(Calls()).arun(ROWS, output_dir=str(out), events=True, **OPTIONS)

    run_virtual(run_and_copy)
    manifest = json.loads((crashed / "manifest.json").read_bytes())
    listed = {group["index"] for group in manifest["row_groups"]}
    assert listed, "the copy was taken before the first checkpoint: copy later"
    checkpointed = {
        e.correlation.row_group
        for e in read_events(crashed / "events.jsonl.gz")
        if e.event_kind == "row_group_checkpointed" and e.correlation is not None
    }
    assert listed <= checkpointed
    report = generate_report(crashed, pictures=False)
    assert report.tasks > 0 and report.verdict.message  # what ran before the crash, explained
