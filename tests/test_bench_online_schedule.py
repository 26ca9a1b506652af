"""The benchmark's online reference (``benchmarks/online_schedule.py``) simulates correctly.

It is the yardstick the pipeline's makespans are compared with, so it must respect slots and
dependencies, never beat the clairvoyant lower bound, and meet that bound where the bound is
tight (fixed latency). The idle meter beside it must see a slot left free while work waits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sluicegate.testing import run_virtual

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_pipeline_virtual as bench
import online_schedule as online

PATH_ROW = online.RULES["path-row"]


def test_one_row_chain_takes_the_sum_of_its_latencies() -> None:
    shape = [("a", "E", []), ("b", "E", ["a"]), ("c", "F", ["b"])]
    latency = {"a": 0.3, "b": 0.5, "c": 0.25}
    span = online.simulate(shape, 1, lambda row, column: latency[column], 4, PATH_ROW)
    assert span == pytest.approx(1.05)


@pytest.mark.parametrize(("cap", "expected"), [(1, 6.0), (2, 4.0), (3, 3.0)])
def test_slots_limit_parallel_cells(cap: int, expected: float) -> None:
    """Cells of 1, 2 and 3 s (rows 0, 1, 2) on one endpoint: in sequence 6 s; on two slots
    rows 0 and 1 start first (the rule cannot know row 2 is the long one) and row 2 starts at
    1 s, so 4 s where a clairvoyant schedule needs 3; on three slots the longest cell."""
    shape = [("x", "E", [])]
    span = online.simulate(shape, 3, lambda row, column: float(row + 1), cap, PATH_ROW)
    assert span == expected


def test_endpoints_have_their_own_slots() -> None:
    shape = [("g", "A", []), ("j", "B", ["g"])]
    # one slot each: g of row 1 runs while j of row 0 does; 3 rounds, not 4
    assert online.simulate(shape, 2, lambda row, column: 1.0, 1, PATH_ROW) == 3.0


def test_the_rule_decides_the_order() -> None:
    """Chain c1 -> c2 -> c3 -> c4 plus an independent b, 10 rows, 16 slots, 1 s each: the
    longest path first meets the 4 s bound; oldest row first leaves the chain's tail for a
    fifth round."""
    shape = bench.SHAPES["deep"]
    assert online.simulate(shape, 10, bench.latency_of("fixed"), 16, PATH_ROW) == 4.0
    assert online.simulate(shape, 10, bench.latency_of("fixed"), 16, online.RULES["fifo"]) == 5.0


UNIFORM = [name for name in bench.SHAPES if name != "heavy"]  # every cell takes 1 s


@pytest.mark.parametrize("rows", [10, 100])
@pytest.mark.parametrize("shape", UNIFORM)
def test_fixed_latency_meets_the_tight_bound(shape: str, rows: int) -> None:
    latency = bench.latency_of("fixed")
    bound = bench.lower_bound(bench.SHAPES[shape], rows, latency, "fixed")
    rule, spans = online.best_online(bench.SHAPES[shape], rows, [latency], bench.CAP)
    assert spans == [bound], rule


def test_heavy_root_bound_counts_the_cells_that_wait_for_the_root() -> None:
    """10 roots of 3 s, then 30 dependents of 1 s on 16 slots: the dependents cannot start
    before 3 s and need two rounds, so 5 s (head + work + tail alone would say 4 s). At 100
    rows the work is 37.5 slot-rounds and the best schedule, in whole rounds, takes 38 s."""
    shape = bench.SHAPES["heavy"]
    latency = bench.latency_of("fixed")
    mean = {name: bench.SCALE.get(name, 1.0) for name, _, _ in shape}
    assert bench.lower_bound(shape, 10, latency, "fixed") == 5.0
    assert online.best_online(shape, 10, [latency], bench.CAP, mean)[1] == [5.0]
    assert bench.lower_bound(shape, 100, latency, "fixed") == 37.5
    assert online.best_online(shape, 100, [latency], bench.CAP, mean)[1] == [38.0]


@pytest.mark.parametrize("shape", list(bench.SHAPES))
def test_random_latency_never_beats_the_clairvoyant_bound(shape: str) -> None:
    for seed in range(5):
        latency = bench.latency_of("lognormal", seed)
        bound = bench.lower_bound(bench.SHAPES[shape], 30, latency, "lognormal")
        for rule in online.RULES.values():
            assert online.simulate(bench.SHAPES[shape], 30, latency, bench.CAP, rule) >= bound


def test_idle_meter_sees_slots_left_free_while_work_waits() -> None:
    """The meter behind the bench's ``idle`` column: zero for a run at the endpoint's cap,
    positive when the request layer's slow start holds slots back from ready cells."""
    shape = bench.SHAPES["wide"]
    latency = bench.latency_of("fixed")
    at_cap = bench.IdleMeter(shape, 100)
    run_virtual(bench.run_sluicegate, shape, 100, latency, True, at_cap)
    slow_start = bench.IdleMeter(shape, 100)
    run_virtual(bench.run_sluicegate, shape, 100, latency, False, slow_start)
    assert at_cap.idle == 0.0
    assert slow_start.idle > 1.0
    assert all(n == 0 for n in (*at_cap.ready.values(), *at_cap.flying.values()))
