"""`sluicegate demo`: a small pipeline on a simulated endpoint, end to end (real time, small)."""

from __future__ import annotations

import json
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

import sluicegate as sg
from sluicegate.__main__ import main


def test_demo_writes_a_run_directory_and_reports_both_layers(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    out = tmp_path / "run"
    args = ["--rows", "40", "--hidden-capacity", "4", "--events", str(events), "--out", str(out)]
    code = main(["demo", *args])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "40 rows x 4 columns = 160 cell tasks" in printed
    assert f"success: 40 of 40 rows written to {out}" in printed
    assert "request admission at the end: 0 calls in flight, 0 waiters" in printed
    assert "hidden capacity 4, static cap 64" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(g["rows_written"] for g in manifest["row_groups"]) == 40
    kinds = {type(e).__name__ for e in sg.read_events(events)}
    assert kinds == {"SchedulerEvent", "RequestEvent"}


def test_demo_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--rows", "many"])


def test_demo_reports_bad_configuration_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--rows", "2", "--capacity", "0"]) == 2
    err = capsys.readouterr().err
    assert "task_capacity" in err and "Fix:" in err and "Traceback" not in err


def test_ctrl_c_prints_one_line_saying_what_was_interrupted(tmp_path: pathlib.Path) -> None:
    """SIGINT to a running demo: a graceful stop, exit status 130 and one summary line
    (finished / cancelled / not started) on stderr, no traceback; running it again resumes."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sluicegate", "demo", "--rows", "20000", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()  # printed before the run starts
        assert "cell tasks" in header
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "SIGINT received: stopping" in stdout
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sluicegate demo: interrupted after ")
    assert re.search(r"[\d,]+ finished, [\d,]+ cancelled while running, [\d,]+ not started", last)
    assert "run the same command again to resume" in last
    assert (out / "manifest.json").is_file()
