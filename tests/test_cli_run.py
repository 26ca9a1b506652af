"""`sluicegate run`, `preview`, `validate` and `report` end to end: exit codes, resume after
Ctrl-C at random moments (no duplicate, no lost row), --fresh, previews that write nothing."""

from __future__ import annotations

import json
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from sluicegate.__main__ import main
from test_cli_support import cli_env, data_files, run_cli, write_pipeline

FAILING = """
[[columns]]
name = "loud"
kind = "custom"
generator = "cli_gens:shout"
"""

FILTERING = """
[[columns]]
name = "kept"
kind = "expression"
function = "cli_gens:word_count"
keep_if = "cli_gens:never"
"""


@pytest.mark.parametrize(
    ("extra", "code", "stream", "text"),
    [
        ("", 0, "stdout", "success: 20 of 20 rows written to runs/t in "),
        (FAILING, 1, "stderr", "1 rows failed: loud: ValueError: row 3 is broken"),
        (FILTERING, 3, "stderr", "empty: no row was written; 0 of 20 rows written"),
        ("colour = 1\n", 2, "stderr", "colour: unknown key"),
    ],
    ids=["success", "failure", "empty", "usage"],
)
def test_exit_codes_in_a_subprocess(
    tmp_path: pathlib.Path, extra: str, code: int, stream: str, text: str
) -> None:
    path = write_pipeline(tmp_path, extra=extra)
    done = run_cli("run", path, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert text in getattr(done, stream)
    assert "Traceback" not in done.stderr


def _interrupted_run(
    path: str,
    out: pathlib.Path,
    tmp_path: pathlib.Path,
    delay: float,
    signals: int,
    signum: int = signal.SIGINT,
    wait_for: pathlib.Path | None = None,
) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "sluicegate", "run", path, "--out", str(out)]
    command += ["--progress", "lines", "--progress-interval", "0.2"]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first progress line: the run is going
        assert first.startswith("[0:0"), first
        deadline = time.monotonic() + 30
        while wait_for is not None and not wait_for.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # until a cell is surely running
        time.sleep(delay)
        for _ in range(signals):
            proc.send_signal(signum)
            time.sleep(0.2)  # a second signal pending beside the first would be merged
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, first + rest, err


def test_resume_after_an_interrupt_at_random_moments_gives_the_uninterrupted_files(
    tmp_path: pathlib.Path,
) -> None:
    path = write_pipeline(tmp_path, records=200, buffer_size=10, latency=0.04)
    baseline = tmp_path / "baseline"
    assert main(["run", path, "--out", str(baseline), "--progress", "off"]) == 0
    expected = data_files(baseline)
    assert len(expected) == 20
    rng = random.Random(12)
    interrupted = 0
    for attempt, signum in enumerate((signal.SIGINT, signal.SIGTERM, signal.SIGINT)):
        out = tmp_path / f"run{attempt}"
        delay = rng.uniform(0, 0.5)
        code, stdout, err = _interrupted_run(path, out, tmp_path, delay, 1, signum)
        assert "Traceback" not in err
        if code == 130:
            interrupted += 1
            name = signal.Signals(signum).name
            assert f"{name} received: stopping" in stdout
            summary, report = err.strip().splitlines()[-2:]
            assert report == f"report: sluicegate report {out}"  # a stopped run is explained too
            assert summary.startswith("interrupted after ") and f"({name})" in summary
            assert "run the same command again to resume" in summary
            partial = data_files(out)
            assert len(partial) < 20 and all(expected[n] == b for n, b in partial.items())
        else:
            assert code == 0, err  # the run finished before the signal arrived
        assert main(["run", path, "--out", str(out), "--progress", "off"]) == 0
        assert data_files(out) == expected
        rows = [line for data in data_files(out).values() for line in data.splitlines()]
        assert len(rows) == 200  # with the files equal: no duplicate, no lost row
    assert interrupted >= 2


SLOW = """
[[columns]]
name = "index"
kind = "custom"
generator = "cli_gens:slow"
"""


def test_a_second_ctrl_c_cancels_running_cells_and_the_run_still_resumes(
    tmp_path: pathlib.Path,
) -> None:
    path = write_pipeline(tmp_path, records=40, buffer_size=10, extra=SLOW)
    out = tmp_path / "out"
    code, stdout, err = _interrupted_run(
        path, out, tmp_path, 0.1, signals=2, wait_for=tmp_path / "slow-cell-started"
    )
    assert code == 130, err
    assert "SIGINT received: stopping" in stdout
    assert "SIGINT received again: cancelling running cells now" in stdout
    summary = err.strip().splitlines()[-2]  # the last line names the report command
    cancelled = re.search(r"([\d,]+) cancelled while running", summary)
    assert cancelled is not None and int(cancelled.group(1)) > 0, summary
    assert main(["run", path, "--out", str(out), "--progress", "off"]) == 0
    rows = [json.loads(line) for data in data_files(out).values() for line in data.splitlines()]
    assert [row["index"] for row in rows] == list(range(40))


def test_resume_is_said_fresh_starts_over_and_a_changed_pipeline_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path)
    out = str(tmp_path / "out")
    assert main(["run", path, "--resume", "--out", out]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    assert main(["run", path, "--out", out, "--progress", "off"]) == 0
    first = json.loads((tmp_path / "out" / "manifest.json").read_text())["run_id"]
    assert main(["run", path, "--out", out, "--progress", "off"]) == 0
    assert "(resumed: 20 rows were already written)" in capsys.readouterr().out
    assert main(["run", path, "--out", out, "--seed", "4"]) == 2
    err = capsys.readouterr().err
    assert "holds a run of a different pipeline or settings:\n  - seed 3 -> 4" in err
    assert "Fix: --fresh to start over" in err and "Traceback" not in err
    assert main(["run", path, "--out", out, "--seed", "4", "--fresh", "--progress", "off"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["run_id"] != first and manifest["settings"]["seed"] == 4
    assert "resumed" not in capsys.readouterr().out


def test_preview_prints_rows_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    path = write_pipeline(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run_cli("preview", path, "--rows", "3", cwd=tmp_path, env=cli_env(TMPDIR=str(scratch)))
    assert done.returncode == 0, done.stderr
    assert "3 of 3 rows" in done.stdout
    for column in ("topic", "question", "n", "answer"):
        assert column in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(scratch.iterdir()) == []


def test_validate_in_a_subprocess_lists_every_problem(tmp_path: pathlib.Path) -> None:
    path = write_pipeline(
        tmp_path,
        extra='[[columns]]\nname = "x"\nkind = "llm_text"\nprompt = "{nope}"\nmodel = "lm"\n',
        run_extra="buffer_sise = 3\nrate_window_seconds = 2",
    )
    done = run_cli("validate", path, cwd=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4, done.stdout  # each once, not again for every profile
    assert "run.buffer_sise: unknown setting (did you mean 'buffer_size'?)" in lines[0]
    assert "rate_window_seconds + rate_limit" in done.stdout
    assert "columns[4].prompt: placeholder {nope} names no column" in done.stdout
    assert "columns[4].model: unknown endpoint alias 'lm' (did you mean 'llm'?)" in done.stdout
    ok = run_cli("validate", write_pipeline(tmp_path, name="ok.toml"), cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ")


def test_report_reads_the_events_of_a_run(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path)
    out = str(tmp_path / "out")
    assert main(["run", path, "--out", out, "--progress", "off"]) == 0  # events by default
    assert f"report: sluicegate report {out}" in capsys.readouterr().out
    assert (tmp_path / "out" / "events.jsonl.gz").is_file()
    assert main(["report", out, "--no-pictures"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("sluicegate run report: ") and "Verdict: " in text
    assert (tmp_path / "out" / "report" / "report.json").is_file()
    assert main(["report", out, "--json", "--no-pictures"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] > 0
    assert main(["report", out, "--format", "json", "--no-pictures"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] > 0
    assert main(["report", out, "--format", "text", "--no-pictures"]) == 0
    assert capsys.readouterr().out.startswith("sluicegate run report: ")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no events file at" in err and "with --events FILE wrote them to FILE" in err
    off = str(tmp_path / "off")
    assert main(["run", path, "--out", off, "--events=false", "--progress", "off"]) == 0
    assert "sluicegate report" not in capsys.readouterr().out
    assert not list((tmp_path / "off").glob("events*"))
    assert main(["report", off]) == 2
    assert "unless it was run with --events=false" in capsys.readouterr().err


def test_a_python_pipeline_by_module_and_attribute(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_pipeline.py").write_text(
        "import sluicegate as sg\n"
        "pipeline = sg.Pipeline([sg.sampler('a', ['x']), sg.llm_text('b', '{a}?', model='m')])\n"
        "def build():\n    return pipeline\n"
        "not_a_pipeline = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "my_pipeline:pipeline", "--records", "4", "--progress", "off"]) == 0
    assert "success: 4 of 4 rows written to runs/pipeline" in capsys.readouterr().out
    assert main(["run", "my_pipeline:build", "--profile", "smoke", "--progress", "off"]) == 0
    assert "10 of 10 rows written to runs/pipeline-smoke" in capsys.readouterr().out
    assert main(["run", "my_pipeline:pipeline"]) == 2
    assert "records: not set" in capsys.readouterr().err
    assert main(["run", "my_pipeline:not_a_pipeline", "--records", "1"]) == 2
    assert "is a int, not a Pipeline" in capsys.readouterr().err
    assert main(["validate", "my_pipeline:build"]) == 0
    assert capsys.readouterr().out.startswith("ok: my_pipeline:build: pipeline 'pipeline'")
    assert main(["validate", "my_pipeline:missing"]) == 1
    assert "has no 'missing'" in capsys.readouterr().out


def test_the_deadline_stops_the_run_gracefully(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path, records=200, buffer_size=10, latency=0.05)
    out = str(tmp_path / "out")
    code = main(["run", path, "--out", out, "--deadline-seconds", "0.3", "--progress", "off"])
    assert code == 130
    captured = capsys.readouterr()
    assert "deadline reached: stopping" in captured.out
    assert "interrupted after 0:0" in captured.err and "(deadline)" in captured.err
    assert main(["run", path, "--out", out, "--deadline-seconds", "none", "--progress", "off"]) == 0


def test_otel_console_exports_spans_and_a_missing_exporter_says_how_to_install(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_pipeline(tmp_path, records=4, buffer_size=2)
    out = str(tmp_path / "out")
    assert (
        main(["run", path, "--out", out, "--otel", "console", "--events", "--progress", "off"]) == 0
    )
    err = capsys.readouterr().err
    assert '"name": "chat m"' in err  # a GenAI span per model request
    assert (tmp_path / "out" / "events.jsonl.gz").stat().st_size > 0  # and the events file too
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    assert main(["run", path, "--out", out, "--otel", "otlp"]) == 2
    err = capsys.readouterr().err
    assert "the OTLP/HTTP exporter is not installed" in err
    assert "pip install 'sluicegate[otel]'" in err


def test_otel_otlp_exports_to_a_collector_and_refuses_to_run_without_one(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a collector listening (a loopback HTTP server standing in), the run's spans and
    metrics reach it; with nothing listening, the run stops before it starts (exit 2, no run
    directory) instead of losing everything and retrying for seconds at exit."""
    import http.server
    import threading

    received: list[str] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = write_pipeline(tmp_path, records=4, buffer_size=2)
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        out = str(tmp_path / "out")
        assert main(["run", path, "--out", out, "--otel", "otlp", "--progress", "off"]) == 0
        assert "/v1/traces" in received and "/v1/metrics" in received
    finally:
        server.shutdown()
        server.server_close()
    capsys.readouterr()
    assert main(["run", path, "--out", str(tmp_path / "none"), "--otel", "otlp"]) == 2
    err = capsys.readouterr().err
    assert f"no OTLP collector answers at {endpoint}/v1/traces" in err
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in err and "--otel console" in err
    assert not (tmp_path / "none").exists()


def test_help_of_every_command_and_the_documented_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("run", "preview", "validate", "report", "demo"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        text = capsys.readouterr().out
        assert "usage: " in text and command in text.split("\n", 1)[0]
        if command == "run":
            for flag in ("--records", "--profile", "--out", "--seed", "--resume", "--fresh"):
                assert flag in text
            for flag in ("--events", "--otel", "--show-config", "--debug", "--rate-limit"):
                assert flag in text
            assert "SLUICEGATE_BUFFER_SIZE" in text and "130 interrupted" in text


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: pathlib.Path) -> None:
    """``sluicegate report RUN_DIR | head``: when the pipe closes, the command stops with the
    status of a Unix tool stopped by SIGPIPE, not with an "unexpected error"."""
    path = write_pipeline(tmp_path, records=4, buffer_size=2)
    out = tmp_path / "out"
    assert (
        run_cli("run", path, "--out", str(out), "--progress", "off", cwd=tmp_path).returncode == 0
    )
    reader = subprocess.Popen(
        [sys.executable, "-m", "sluicegate", "report", str(out), "--no-pictures"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # the reader is gone before the report is printed
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141, err
    assert "unexpected error" not in err and "Traceback" not in err


def test_events_to_a_file_of_ones_choice_compressed_by_its_name(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path, records=4, buffer_size=2)
    for name, compressed in (("ev.jsonl", False), ("ev.jsonl.gz", True)):
        events = tmp_path / name
        out = str(tmp_path / f"out-{name}")
        assert main(["run", path, "--out", out, f"--events={events}", "--progress", "off"]) == 0
        assert (events.read_bytes()[:2] == b"\x1f\x8b") is compressed
        assert not list(pathlib.Path(out).glob("events*"))  # not in the run directory too
        capsys.readouterr()
        assert main(["report", str(events), "--no-pictures"]) == 0
        assert "Verdict: " in capsys.readouterr().out


def test_an_events_file_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(tmp_path, records=4, buffer_size=2)
    folder = tmp_path / "a-folder.jsonl"
    folder.mkdir()
    out = tmp_path / "out"
    assert main(["run", path, "--out", str(out), "--events", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--events: {folder} is a directory. Fix: name a file, e.g. {folder}" in err
    (tmp_path / "a-file").touch()
    assert main(["run", path, "--out", str(out), "--events", str(tmp_path / "a-file/x.jsonl")]) == 2
    assert f"--events: {tmp_path / 'a-file'} is not a directory" in capsys.readouterr().err
    assert not out.exists()  # nothing was generated
    deep = tmp_path / "new" / "folders" / "ev.jsonl.gz"  # folders still to make are fine
    assert main(["run", path, "--out", str(out), "--events", str(deep), "--progress", "off"]) == 0
    assert deep.stat().st_size > 0


@pytest.mark.skipif(not pathlib.Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_under_the_events_file_warns_in_one_line_and_says_what_was_lost(
    tmp_path: pathlib.Path,
) -> None:
    """The run goes on (rows are written), the warning is one line in the command's words
    (no Python source line), and the end says how many events were lost and why."""
    import subprocess

    path = write_pipeline(tmp_path, records=4, buffer_size=2)
    command = [sys.executable, "-m", "sluicegate", "run", path, "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "--events", "/dev/full", "--progress", "off"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "success: 4 of 4 rows written" in done.stdout
    assert "sluicegate run: warning: event sink /dev/full: OSError" in done.stderr
    assert "RuntimeWarning" not in done.stderr and ".py:" not in done.stderr
    assert "sluicegate run: events: 0 events written to /dev/full;" in done.stderr
    assert "No space left on device" in done.stderr
