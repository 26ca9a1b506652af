"""Row-group slow start: row groups are admitted 1, 2, 4, ... as the first ones show health, a
run whose first row groups fail stops early with the reason, and the output does not change."""

from __future__ import annotations

import itertools
import json
import pathlib
import tempfile
from typing import Any

import pytest
import trio

import sluicegate.datagen as dg
from sluicegate import ConfigurationError
from sluicegate.__main__ import main
from sluicegate.datagen import SETTINGS, RunSettings
from sluicegate.datagen.settings_table import check_value, parse_text
from sluicegate.events import InMemoryEventSink
from sluicegate.providers import SimulatedProvider
from sluicegate.requests import ModelRequest, ProviderFailureError, ProviderRateLimitedError
from sluicegate.testing import run_virtual
from test_cli_support import write_pipeline
from test_datagen_support import FunctionProvider


def qa_pipeline(provider: Any, *, cap: int = 8) -> dg.Pipeline:
    return dg.Pipeline(
        [
            dg.sampler("topic", ["physics", "biology", "history"]),
            dg.llm_text("question", "Ask about {topic}", model="w"),
            dg.llm_text("answer", "Answer {question}", model="w"),
        ],
        endpoints=[dg.Endpoint("w", model="m", provider="p", max_parallel_requests=cap)],
        providers={"p": provider},
    )


def simulated() -> SimulatedProvider:
    return SimulatedProvider(latency_seconds=0.5, latency_jitter=0.5, failure_rate=0.05)


def in_flight(sink: InMemoryEventSink) -> list[tuple[float, int]]:
    """(time, row groups in memory just after) for every row-group admission."""
    out: list[tuple[float, int]] = []
    count = 0
    for event in sink.of_kind("row_group_admitted", "row_group_checkpointed"):
        count += 1 if event.event_kind == "row_group_admitted" else -1
        if event.event_kind == "row_group_admitted":
            out.append((event.captured_at, count))
    return out


def slow_start_of(out: str) -> dict[str, Any]:
    plan = json.loads((pathlib.Path(out) / "capacity_plan.json").read_text())
    snapshot: dict[str, Any] = plan["runtime_snapshot"]
    return snapshot.get("row_group_slow_start", {})


def run_qa(sink: InMemoryEventSink, **options: Any) -> tuple[dg.RunResult, str]:
    out = tempfile.mkdtemp()
    result = run_virtual(
        qa_pipeline(simulated()).arun,
        200,
        output_dir=out,
        events=sink,
        buffer_size=20,
        max_concurrent_row_groups=4,
        seed=3,
        **options,
    )
    assert result.ok, result.message
    return result, out


def test_row_groups_are_admitted_1_then_2_then_4() -> None:
    sink = InMemoryEventSink()
    _, out = run_qa(sink)
    assert slow_start_of(out) == {"state": "completed", "widths": [1, 2, 4]}
    admitted = in_flight(sink)
    assert len(admitted) == 10
    (t0, n0), (t1, n1) = admitted[:2]
    # Group 1 waits until a row of group 0 has passed through its three cells.
    assert n0 == 1 and n1 == 2 and t1 - t0 >= 3 * 0.5 * 0.5
    # Width 2 -> 4 (once a row of group 1 passed) makes room for two groups at one instant.
    grown = [at for (at, n), (later, m) in itertools.pairwise(admitted) if at == later and m == 4]
    assert grown and grown[0] > t1
    assert max(n for _, n in admitted if n) == 4
    # Without slow start the first four are admitted at once.
    sink = InMemoryEventSink()
    _, off = run_qa(sink, row_group_slow_start=False)
    assert [n for at, n in in_flight(sink) if at == 0.0] == [1, 2, 3, 4]
    assert slow_start_of(off) == {}


def test_widths_stop_at_max_concurrent_row_groups() -> None:
    out = tempfile.mkdtemp()
    result = run_virtual(
        qa_pipeline(simulated()).arun,
        300,
        output_dir=out,
        buffer_size=10,
        max_concurrent_row_groups=6,
        seed=1,
    )
    assert result.ok, result.message
    assert slow_start_of(out) == {"state": "completed", "widths": [1, 2, 4, 6]}


def unauthorized(model: str, request: ModelRequest) -> str:
    raise ProviderFailureError("HTTP 401: invalid API key", status=401, retryable=False)


def run_broken(**options: Any) -> tuple[dg.RunResult, FunctionProvider]:
    provider = FunctionProvider(answer=unauthorized, latency=lambda model, request: 0.2)
    result = run_virtual(
        qa_pipeline(provider).arun,
        2000,
        output_dir=tempfile.mkdtemp(),
        buffer_size=100,
        max_concurrent_row_groups=4,
        **options,
    )
    return result, provider


def test_a_column_that_always_fails_stops_the_run_after_the_first_row_group() -> None:
    result, provider = run_broken()
    assert result.status == "failure"
    assert result.message.startswith("stopped early: row-group slow start: 3 rows")
    assert "3 rows of the first row group failed" in result.message
    assert "question: ProviderFailureError: HTTP 401: invalid API key" in result.message
    assert "row_group_slow_start = false" in result.message
    # The endpoint's first calls (its cap of 8) are all it saw: 3 failures stopped the run
    # and the calls already in flight finished within the grace period.
    assert provider.calls <= 8
    assert result.rows_written == 0

    without, unslowed = run_broken(row_group_slow_start=False)
    assert without.status == "failure"
    assert "row-group slow start" not in without.message
    assert unslowed.calls >= 10 * provider.calls  # far fewer cells attempted with slow start


def test_scattered_failures_of_a_working_column_do_not_stop_the_run() -> None:
    answers = 0

    def answer(model: str, request: ModelRequest) -> str:
        nonlocal answers
        prompt = str(request.messages[-1]["content"]) if request.messages else ""
        if prompt.startswith("Answer"):
            answers += 1
            if answers % 3 == 2:  # the second answer, then every third
                raise ProviderFailureError("HTTP 400: content filter", status=400, retryable=False)
        return f"ok {prompt}"

    provider = FunctionProvider(answer=answer, latency=lambda model, request: 0.2)
    out = tempfile.mkdtemp()
    result = run_virtual(
        qa_pipeline(provider).arun,
        200,
        output_dir=out,
        buffer_size=20,
        error_rate_threshold=1.0,
        seed=5,
    )
    assert result.rows_failed >= 60  # many rows failed ...
    assert result.rows_generated == 200  # ... but the run went to the end
    assert "slow start" not in result.message
    assert slow_start_of(out)["state"] == "completed"


def files_of(out: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((pathlib.Path(out) / "data").glob("part-*"))}


@pytest.mark.parametrize("exact", [False, True])
def test_output_is_byte_identical_with_and_without_slow_start(exact: bool) -> None:
    outputs = []
    for slow in (True, False):
        out = tempfile.mkdtemp()
        result = run_virtual(
            qa_pipeline(simulated()).arun,
            150,
            output_dir=out,
            buffer_size=10,
            max_concurrent_row_groups=4,
            seed=11,
            exact=exact,
            row_group_slow_start=slow,
        )
        assert result.ok, result.message
        outputs.append(files_of(out))
    assert len(outputs[0]) == 15
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_setting_must_be_a_bool(value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        RunSettings(records=10, row_group_slow_start=value)
    assert info.value.field == "row_group_slow_start"
    assert "True or False" in info.value.fix


def test_the_setting_reads_from_toml_the_environment_and_flags() -> None:
    setting = SETTINGS["row_group_slow_start"]
    assert setting.default is True
    assert setting.env == "SLUICEGATE_ROW_GROUP_SLOW_START"
    assert setting.flag == "--row-group-slow-start"
    assert check_value(setting, False) is False
    assert parse_text(setting, "off") is False
    with pytest.raises(ConfigurationError) as info:
        check_value(setting, 1)  # TOML `row_group_slow_start = 1`
    assert info.value.field == "row_group_slow_start"
    with pytest.raises(ConfigurationError):
        parse_text(setting, "maybe")
    assert (
        RunSettings.from_options(10, {"row_group_slow_start": False}).row_group_slow_start is False
    )


def test_show_config_lists_the_setting_and_a_bad_toml_value_names_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path, run_extra="row_group_slow_start = false")
    assert main(["run", path, "--show-config"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    row = next(line for line in lines if line and line[0] == "row_group_slow_start")
    assert row[1:3] == ["false", "file"]
    assert main(["run", path, "--row-group-slow-start", "true", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert any(
        line.split()[:3] == ["row_group_slow_start", "true", "--row-group-slow-start"]
        for line in out.splitlines()
    )
    bad = write_pipeline(tmp_path, name="bad.toml", run_extra='row_group_slow_start = "yes"')
    assert main(["validate", bad]) == 1
    out = capsys.readouterr().out
    assert "run.row_group_slow_start" in out and "true or false" in out


def test_a_resumed_run_slow_starts_again_and_gives_the_same_bytes() -> None:
    fresh = tempfile.mkdtemp()
    run_virtual(qa_pipeline(simulated()).arun, 200, output_dir=fresh, buffer_size=20, seed=3)

    async def stopped_midway(out: str) -> dg.RunResult:
        control = dg.RunControl()

        async def stop() -> None:
            await trio.sleep(8.0)
            control.stop(grace_period=0.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            result = await qa_pipeline(simulated()).arun(
                200, output_dir=out, buffer_size=20, seed=3, control=control
            )
            nursery.cancel_scope.cancel()
        return result

    out = tempfile.mkdtemp()
    first = run_virtual(stopped_midway, out)
    assert first.status == "interrupted"
    assert 0 < first.row_groups_written < 10
    journaled = list((pathlib.Path(out) / "journal").glob("rg-*"))
    assert journaled  # groups in flight at the stop left finished cells behind

    sink = InMemoryEventSink()
    resumed = run_virtual(
        qa_pipeline(simulated()).arun, 200, output_dir=out, buffer_size=20, seed=3, events=sink
    )
    assert resumed.ok and resumed.resumed, resumed.message
    assert files_of(out) == files_of(fresh)
    admitted = in_flight(sink)
    assert admitted[0][1] == 1 and admitted[1][0] > admitted[0][0]  # one group first
    assert slow_start_of(out) == {"state": "completed", "widths": [1, 2, 4]}


def test_backpressure_holds_the_width_instead_of_stopping_the_run() -> None:
    def throttled(model: str, request: ModelRequest) -> str:
        raise ProviderRateLimitedError("HTTP 429: slow down", retry_after=0.5)

    provider = FunctionProvider(answer=throttled, latency=lambda model, request: 0.05)
    out = tempfile.mkdtemp()
    result = run_virtual(
        qa_pipeline(provider).arun,
        40,
        output_dir=out,
        buffer_size=10,
        cell_max_attempts=1,
        request_max_attempts=1,
        salvage_rounds=0,
        error_rate_threshold=1.0,
    )
    # Every row failed, but as backpressure (rate limited through its retries): the window
    # never counted them, so the run went to the end, one row group at a time.
    assert result.rows_failed == 40
    assert result.message == "40 row(s) could not be produced"
    assert slow_start_of(out) == {"state": "ramping", "widths": [1]}
