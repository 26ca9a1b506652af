"""The achievable reference: the best *non-clairvoyant* list schedule, simulated exactly.

The lower bound of ``bench_pipeline_virtual.py`` knows every cell's latency in advance; no
online scheduler does, so part of its gap at 10 to 100 rows cannot be closed. This module
simulates, with zero overhead, list schedules that only use what an online scheduler knows
when it decides: the DAG, each column's endpoint and *mean* latency, the row index and when a
cell became ready. Whenever an endpoint has a free slot it starts the ready cell that its
priority rule ranks first; a cell's latency is revealed only by its completion.

Several rules are simulated (:data:`RULES`); the benchmark keeps, per case, the one with the
best mean over the seeds, so the reference is as strong as a fixed policy can be made and does
not flatter the pipeline. It is still not optimal among online policies (none is known for
this problem), only the best of a few sensible ones.

The simulation is event-driven: a heap of completion times; at each distinct time every
completion is processed first (its dependents become ready), then each endpoint fills its free
slots. Ties in time are therefore resolved the way a real scheduler would see them, and with a
fixed latency of 1.0 the schedule runs in rounds (``tests/test_bench_online_schedule.py``
checks it meets the bound wherever the bound is tight).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence

Shape = Sequence[tuple[str, str, Sequence[str]]]  # (column, endpoint, dependencies)
Latency = Callable[[int, str], float]

# A rule maps (row, column position, remaining expected path, ready time, cell feeds another
# endpoint) to a sort key; the smallest key starts first.
Rule = Callable[[int, int, float, float, bool], tuple[float, ...]]

RULES: Mapping[str, Rule] = {
    # longest remaining expected path first, then the oldest row (critical path list scheduling)
    "path-row": lambda row, col, path, ready, feeds: (-path, row, col),
    # longest path first, then column by column (the pipeline's order with exact means)
    "path-column": lambda row, col, path, ready, feeds: (-path, col, row),
    # oldest row first, then longest path (rows finish in order)
    "row-path": lambda row, col, path, ready, feeds: (row, -path, col),
    # first ready, first started (a FIFO queue)
    "fifo": lambda row, col, path, ready, feeds: (ready, row, col),
    # cells whose result another endpoint waits for first, then path, then row
    "feeds-path-row": lambda row, col, path, ready, feeds: (-feeds, -path, row, col),
}


def remaining_paths(shape: Shape, mean: Mapping[str, float]) -> dict[str, float]:
    """Each column's mean latency plus the longest remaining path of its dependents."""
    children: dict[str, list[str]] = {name: [] for name, _, _ in shape}
    for name, _, deps in shape:
        for dep in deps:
            children[dep].append(name)
    path: dict[str, float] = {}

    def visit(name: str) -> float:
        if name not in path:
            path[name] = mean[name] + max((visit(c) for c in children[name]), default=0.0)
        return path[name]

    for name, _, _ in shape:
        visit(name)
    return path


def simulate(
    shape: Shape,
    rows: int,
    latency: Latency,
    cap: int,
    rule: Rule,
    mean: Mapping[str, float] | None = None,
) -> float:
    """Makespan of the list schedule ``rule`` over ``rows`` rows with ``cap`` slots per
    endpoint. ``mean`` is the per-column mean latency the rule may use (default 1.0)."""
    names = [name for name, _, _ in shape]
    position = {name: i for i, name in enumerate(names)}
    endpoint = [e for _, e, _ in shape]
    deps = [[position[d] for d in ds] for _, _, ds in shape]
    children: list[list[int]] = [[] for _ in names]
    for column, ds in enumerate(deps):
        for dep in ds:
            children[dep].append(column)
    path_of = remaining_paths(shape, mean or dict.fromkeys(names, 1.0))
    path = [path_of[name] for name in names]
    feeds = [any(endpoint[c] != endpoint[col] for c in children[col]) for col in range(len(names))]
    free = dict.fromkeys(endpoint, cap)
    ready: dict[str, list[tuple[tuple[float, ...], int, int]]] = {e: [] for e in free}
    unmet = [[len(d) for d in deps] for _ in range(rows)]

    def push(row: int, col: int, now: float) -> None:
        key = rule(row, col, path[col], now, feeds[col])
        heapq.heappush(ready[endpoint[col]], (key, row, col))

    for row in range(rows):
        for col in range(len(names)):
            if not deps[col]:
                push(row, col, 0.0)
    running: list[tuple[float, int, int]] = []
    now = 0.0
    while True:
        for e, waiting in ready.items():
            while free[e] and waiting:
                _, row, col = heapq.heappop(waiting)
                free[e] -= 1
                heapq.heappush(running, (now + latency(row, names[col]), row, col))
        if not running:
            break
        now = running[0][0]
        while running and running[0][0] == now:
            _, row, col = heapq.heappop(running)
            free[endpoint[col]] += 1
            for child in children[col]:
                unmet[row][child] -= 1
                if unmet[row][child] == 0:
                    push(row, child, now)
    return now


def best_online(
    shape: Shape,
    rows: int,
    latencies: Sequence[Latency],
    cap: int,
    mean: Mapping[str, float] | None = None,
) -> tuple[str, list[float]]:
    """The rule with the smallest mean makespan over ``latencies`` (one per seed), and its
    makespans in the same order."""
    best: tuple[float, str, list[float]] | None = None
    for name, rule in RULES.items():
        spans = [simulate(shape, rows, latency, cap, rule, mean) for latency in latencies]
        average = sum(spans) / len(spans)
        if best is None or average < best[0]:
            best = (average, name, spans)
    assert best is not None
    return best[1], best[2]
