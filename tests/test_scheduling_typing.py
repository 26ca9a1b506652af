"""Static typing of the scheduling API, checked with mypy --strict on a small program.

Lines marked ``# error`` must be rejected and every other line accepted: the payload type
flows from the tracker to the worker, and request admission's read-only pressure satisfies
the protocol task admission reads it through (the two layers never import each other).
"""

from __future__ import annotations

import pathlib
import re

import pytest

mypy_api = pytest.importorskip("mypy.api")

PROGRAM = """
from typing import NamedTuple

import sluicegate as sg
from sluicegate.requests import RequestResourcePressure
from sluicegate.scheduling import RequestPressureAdvisoryPolicy, RequestPressureLookup


class Row(NamedTuple):
    n: int


tracker: sg.DagCompletionTracker[Row] = sg.DagCompletionTracker()
tracker.add("a", Row(1))
tracker.add("b", "not a row")  # error


async def good(task: sg.SchedulableTask[Row]) -> None:
    print(task.payload.n + 1)


async def wrong_payload(task: sg.SchedulableTask[str]) -> None:
    print(task.payload.upper())


sg.AsyncTaskScheduler(tracker, good)
sg.AsyncTaskScheduler(tracker, wrong_payload)  # error

untyped = sg.DagCompletionTracker()  # no annotation needed: the payload is Any
untyped.add("x", {"any": "thing"})
sg.AsyncTaskScheduler(untyped, good)

requests = sg.AdaptiveRequestAdmissionController([])
lookup: RequestPressureLookup[sg.RequestResourceKey, RequestResourcePressure] = requests.pressure
by_name: RequestPressureLookup[str, RequestResourcePressure] = requests.pressure  # error
RequestPressureAdvisoryPolicy(
    requests.pressure,
    lambda t: sg.RequestResourceKey("sim", "a"),
    is_pressured=lambda p: p.limit < p.static_cap,
)
RequestPressureAdvisoryPolicy(requests.pressure, lambda t: sg.ProviderModelKey("sim", "a"))
RequestPressureAdvisoryPolicy(requests.pressure, lambda t: "sim/a")  # error
"""


def test_mypy_accepts_and_rejects_exactly_the_marked_lines(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "typed_program.py"
    source.write_text(PROGRAM)
    expected = {i for i, line in enumerate(PROGRAM.splitlines(), 1) if line.endswith("# error")}
    # The project's cache (make typecheck fills it) keeps this at about a second.
    cache = pathlib.Path(__file__).resolve().parent.parent / ".mypy_cache"
    out, err, _ = mypy_api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(cache), str(source)]
    )
    assert not err, err
    flagged = {int(m.group(1)) for m in re.finditer(r"typed_program\.py:(\d+): error", out)}
    assert flagged == expected, out
