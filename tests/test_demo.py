"""`python -m sluicegate demo` runs both admission layers end to end (real time, small)."""

from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

import sluicegate as sg
from sluicegate.__main__ import main


def test_demo_runs_both_layers_and_writes_events(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    assert main(["demo", "--rows", "20", "--hidden-capacity", "4", "--events", str(events)]) == 0
    out = capsys.readouterr().out
    assert "outcomes: succeeded=80, failed=0, dropped=0, cancelled=0" in out
    assert "request admission: 0 leases held, 0 waiters" in out
    assert "task admission: 0 leases held" in out
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
    assert "AsyncTaskScheduler.capacity" in err and "Fix:" in err and "Traceback" not in err


@pytest.mark.parametrize("debug", [False, True])
def test_ctrl_c_prints_one_line_saying_what_was_interrupted(debug: bool) -> None:
    """SIGINT to a running demo: exit status 130 and one line (finished / cancelled / not
    started counts) instead of a long exception group; --debug adds the traceback."""
    cmd = [sys.executable, "-m", "sluicegate", "demo", "--rows", "5000"]
    proc = subprocess.Popen(
        [*cmd, "--debug"] if debug else cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()  # printed from inside the run
        assert "cell tasks" in header
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sluicegate demo: interrupted after ")
    assert re.search(r"\d+ finished .* \d+ cancelled while running, \d+ not started", last)
    if debug:
        assert "Traceback" in err and "KeyboardInterrupt" in err
    else:
        assert err.strip() == last and last.endswith("(--debug for the traceback)")
