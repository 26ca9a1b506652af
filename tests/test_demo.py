"""`python -m sluicegate demo` runs both admission layers end to end (real time, small)."""

from __future__ import annotations

import pathlib

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
    assert "limits['submission']" in err and "Fix:" in err
