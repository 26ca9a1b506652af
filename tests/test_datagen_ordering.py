"""Critical-path ordering, the row-group planner's exact mode, and the error-rate monitor."""

from __future__ import annotations

import pathlib
from collections import deque
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate.datagen as dg
from sluicegate.datagen.cells import ErrorRateMonitor
from sluicegate.datagen.ordering import CriticalPathEstimator
from sluicegate.datagen.rowgroups import RowGroupPlanner
from sluicegate.scheduling import (
    AsyncTaskScheduler,
    DagCompletionTracker,
    SchedulableTask,
    TaskAdmissionController,
)
from test_datagen_support import FunctionProvider

DEEP = [("c1", []), ("c2", ["c1"]), ("c3", ["c2"]), ("c4", ["c3"]), ("b", [])]


async def test_a_long_chain_starts_first(autojump_clock: Any, tmp_path: pathlib.Path) -> None:
    """4-column chain + independent branch, 10 rows, 16 slots, 1 s per call: the critical
    path is 4 s, and 50 cells on 16 slots need 4 rounds: the bound is 4 s."""

    async def cell(row: dg.RowView, ctx: dg.CellContext) -> int:
        await ctx.call("A", ctx.column)
        return 0

    pipeline = dg.Pipeline(
        [dg.column(name, cell, depends_on=deps, model="A") for name, deps in DEEP],
        # initial_limit = the cap turns slow start off: this test measures ordering alone.
        endpoints=[
            dg.Endpoint("A", model="a", provider="fn", max_parallel_requests=16, initial_limit=16)
        ],
        providers={"fn": FunctionProvider(latency=lambda model, request: 1.0)},
    )
    start = trio.current_time()
    result = await pipeline.arun(10, output_dir=str(tmp_path))
    assert result.ok
    assert trio.current_time() - start == 4.0


async def test_fair_shares_alone_take_longer(autojump_clock: Any) -> None:
    """The same cells with one fairness group per column and no ordering: 5 s (1.25x)."""
    tracker = DagCompletionTracker()
    for row in range(10):
        for name, deps in DEEP:
            tracker.add((row, name), depends_on=[(row, d) for d in deps], group=name)

    async def worker(task: SchedulableTask) -> None:
        await trio.sleep(1.0)

    start = trio.current_time()
    admission = TaskAdmissionController(capacity=16)
    await AsyncTaskScheduler(tracker, worker, admission=admission).run()
    assert trio.current_time() - start == 5.0


def test_estimator_ranks_by_remaining_path() -> None:
    # 0 -> 1 -> 2 and 3 alone; 3 is a model column, the chain is local at first
    estimator = CriticalPathEstimator(
        dependents=[[1], [2], [], []], is_model=[False, False, False, True], order=[0, 1, 2, 3]
    )
    assert estimator.rank[3] == 0  # 1 s prior beats three 10 ms priors
    estimator.observe(0, 2.0)
    estimator.observe(1, 2.0)
    assert estimator.remaining[0] > estimator.remaining[1] > estimator.remaining[3]
    assert [estimator.rank[c] for c in (0, 1, 3, 2)] == [0, 1, 2, 3]
    for _ in range(100):
        estimator.observe(3, 10.0)
    assert estimator.rank[3] == 0
    assert 9.0 < estimator.estimate(3) <= 10.0


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(1, 12),
    threshold=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    outcomes=st.lists(st.booleans(), max_size=120),
)
def test_error_rate_monitor_matches_a_sliding_window(
    window: int, threshold: float, outcomes: list[bool]
) -> None:
    tripped: list[str] = []
    monitor = ErrorRateMonitor(window, threshold, tripped.append)
    model: deque[bool] = deque(maxlen=window)
    expected_trip = None
    for index, failed in enumerate(outcomes):
        model.append(failed)
        if failed:
            monitor.failure()
        else:
            monitor.success()
        full = len(model) == window
        if expected_trip is None and failed and full and sum(model) >= threshold * window:
            expected_trip = index
        assert monitor.rate == sum(model) / len(model)
    assert (len(tripped) == 1) == (expected_trip is not None)


@settings(max_examples=300, deadline=None)
@given(
    records=st.integers(0, 40),
    buffer=st.integers(1, 9),
    passing=st.lists(st.integers(0, 9), min_size=30, max_size=30),
    order_seed=st.randoms(use_true_random=False),
)
def test_exact_mode_writes_the_first_passing_rows_in_any_finish_order(
    records: int, buffer: int, passing: list[int], order_seed: Any
) -> None:
    planner = RowGroupPlanner(records, buffer, exact=True, max_attempts_factor=3.0)
    written: dict[int, int] = {}
    in_flight: list[int] = []
    passing_of = {
        g: min(passing[g % 30], planner.group_range(g)[1]) for g in range(planner.group_count)
    }
    for _ in range(10_000):
        if planner.done and not in_flight:
            break
        while len(in_flight) < 3 and planner.wants_more():
            in_flight.append(planner.admit())
        if not in_flight:
            break
        group = in_flight.pop(order_seed.randrange(len(in_flight)))
        if group not in planner.in_flight:
            continue  # abandoned
        for index, limit in planner.finish(group, passing_of[group]):
            written[index] = passing_of[index] if limit is None else limit
        for index in planner.abandoned():
            planner.finish_abandoned(index)
            in_flight.remove(index)
    # the reference: groups in order, passing rows until `records`
    expected: dict[int, int] = {}
    total = 0
    for g in range(planner.group_count):
        if total >= records:
            break
        take = min(passing_of[g], records - total)
        expected[g] = take
        total += take
    assert {g: n for g, n in written.items() if n} == {g: n for g, n in expected.items() if n}
    assert sum(written.values()) == min(records, sum(passing_of.values()))
