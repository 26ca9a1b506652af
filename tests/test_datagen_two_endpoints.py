"""Task capacity and request capacity do not starve each other.

Generators g1..g3 call endpoint A, judges j1..j3 call endpoint B (j_i judges g_i), 100 rows,
16 parallel requests per endpoint. At the start 300 generator cells are ready and no judge is.
Released without a bound into a task capacity of 32 (the sum of the caps), generators take
task slots beyond A's cap (waiting there for A's request slots) and the judges they unlock
wait behind them: with the lanes' bound removed, B is below its cap for 4 of the 19 s it has
a cap's worth of work at fixed latency, 13 of 19 s at lognormal latency, and this test fails.
The tracker's lanes release at most A's cap of A cells, so B stays at its cap whenever it has
that much work. (With the default capacity, twice the caps, the scheduler's fair queue across
the endpoints' groups keeps B busy even without the lanes; the test runs both.)
"""

from __future__ import annotations

import hashlib
import math
import pathlib
from collections.abc import Callable

import attrs
import pytest
import trio

import sluicegate.datagen as dg
from sluicegate.requests import ModelRequest, ModelResponse
from sluicegate.testing import run_virtual

CAP = 16
ROWS = 100
SHAPE = [(f"g{i}", "A", []) for i in (1, 2, 3)] + [(f"j{i}", "B", [f"g{i}"]) for i in (1, 2, 3)]


def fixed(row: int, column: str) -> float:
    return 1.0


def lognormal(row: int, column: str) -> float:
    """Mean 1 s, sigma 0.5, a pure function of the cell."""
    digest = hashlib.blake2b(f"{row}:{column}".encode(), digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    u2 = (int.from_bytes(digest[8:], "big") + 0.5) / 2**64
    z = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
    return math.exp(-0.125 + 0.5 * z)


@attrs.define
class Timeline:
    """Per endpoint: calls in flight, and work it could run (ready or running cells).

    A's work is every generator not yet finished; B's is every judge whose generator finished
    and that has not finished itself (one judge per generator). Each change is logged with its
    time, so the test can integrate over intervals (changes at one instant weigh nothing).
    """

    latency: Callable[[int, str], float]
    in_flight: dict[str, int] = attrs.field(factory=lambda: {"A": 0, "B": 0})
    done: dict[str, int] = attrs.field(factory=lambda: {"A": 0, "B": 0})
    log: list[tuple[float, int, int, int, int]] = attrs.field(factory=list)
    name: str = "timeline"

    def work(self) -> tuple[int, int]:
        return 3 * ROWS - self.done["A"], self.done["A"] - self.done["B"]

    def note(self) -> None:
        a_work, b_work = self.work()
        now = trio.current_time()
        self.log.append((now, self.in_flight["A"], a_work, self.in_flight["B"], b_work))

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        assert request.messages is not None
        column, _, row = str(request.messages[-1]["content"]).partition(":")
        self.in_flight[model_id] += 1
        self.note()
        try:
            await trio.sleep(self.latency(int(row), column))
        finally:
            self.in_flight[model_id] -= 1
            self.done[model_id] += 1
            self.note()
        return ModelResponse(content="x")

    def starved(self, endpoint: str) -> tuple[float, float]:
        """(seconds with at least CAP cells of work for ``endpoint``, of those the seconds
        with fewer than CAP calls in flight)."""
        at = 1 if endpoint == "A" else 3
        loaded = short = 0.0
        for before, after in zip(self.log, self.log[1:], strict=False):
            flying, work = before[at], before[at + 1]
            if work >= CAP:
                loaded += after[0] - before[0]
                if flying < CAP:
                    short += after[0] - before[0]
        return loaded, short


async def run_pipeline(timeline: Timeline, out: str, task_capacity: int | None) -> float:
    async def cell(row: dg.RowView, ctx: dg.CellContext) -> int:
        await ctx.call(endpoint_of[ctx.column], f"{ctx.column}:{ctx.row_index}")
        return 0

    endpoint_of = {name: e for name, e, _ in SHAPE}
    pipeline = dg.Pipeline(
        [dg.column(name, cell, depends_on=deps, model=e) for name, e, deps in SHAPE],
        # initial_limit = the cap: no slow start, so every shortfall below is the ordering's.
        endpoints=[
            dg.Endpoint(e, model=e, provider="t", max_parallel_requests=CAP, initial_limit=CAP)
            for e in ("A", "B")
        ],
        providers={"t": timeline},
    )
    start = trio.current_time()
    result = await pipeline.arun(ROWS, output_dir=out, task_capacity=task_capacity, events=None)
    assert result.ok, result.message
    return trio.current_time() - start


@pytest.mark.parametrize("latency", [fixed, lognormal], ids=["fixed", "lognormal"])
@pytest.mark.parametrize("task_capacity", [2 * CAP, None], ids=["capacity-32", "default"])
def test_both_endpoints_stay_at_their_caps_while_they_have_work(
    tmp_path: pathlib.Path, latency: Callable[[int, str], float], task_capacity: int | None
) -> None:
    timeline = Timeline(latency)
    elapsed = run_virtual(run_pipeline, timeline, str(tmp_path), task_capacity)
    for endpoint in ("A", "B"):
        loaded, short = timeline.starved(endpoint)
        # Each endpoint has a full cap of work for a good part of the run (with random
        # latencies B keeps up with A, so its backlog hovers around the cap).
        assert loaded > 0.4 * elapsed, (endpoint, loaded, elapsed)
        # Below the cap only for the instants between a call ending and the next starting.
        assert short <= 0.02 * loaded, (endpoint, short, loaded)
    if latency is fixed:
        # 300 calls per endpoint at 16 at a time: 19 rounds on A, B one round behind.
        assert elapsed == pytest.approx(20.0)
