"""Row-group slow start in virtual time: what it costs a healthy run, what it saves a broken one.

Healthy: pipelines of model columns (16 parallel requests per endpoint, latency per cell a
function of (row, column): ``fixed`` 1.0 s or ``lognormal`` with mean 1.0 s, sigma 0.5) run
with several row groups in memory, once with ``row_group_slow_start`` on and once off; the
makespan ratio on/off is the cost of admitting 1, 2, 4, ... groups instead of all at once.
Small ``buffer_size`` values are the hard case: a group of 10 rows holds fewer ready cells
than the endpoint's 16 slots, so the run needs several groups at once to keep it busy.

Broken: a pipeline whose first model column always fails non-retryably (HTTP 401), at the
default ``buffer_size`` (1,000) and ``max_concurrent_row_groups`` (4). Counted: cells
attempted (the local column before it included), model calls, and virtual seconds until the
run ended, with slow start on and off (off, the error-rate stop ends the run).

Run: .venv/bin/python benchmarks/bench_row_group_slow_start.py [--rows 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from typing import Any

import trio

import sluicegate as sg
from bench_pipeline_virtual import CAP, Shape, latency_of
from bench_pipeline_virtual import SHAPES as ALL_SHAPES
from sluicegate.requests import ModelRequest, ModelResponse, ProviderFailureError
from sluicegate.testing import run_virtual

# The virtual-time benchmark's shapes and per-cell latencies (the same cells, the same seeds).
SHAPES: dict[str, Shape] = {name: ALL_SHAPES[name] for name in ("narrow", "wide", "dual")}


class LatencyProvider:
    """Answers a call ``"column:row"`` after that cell's latency (or fails every call)."""

    name = "bench"

    def __init__(self, latency: Callable[[int, str], float], broken: bool = False) -> None:
        self.latency = latency
        self.broken = broken
        self.calls = 0

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        assert request.messages is not None
        self.calls += 1
        column, _, row = str(request.messages[-1]["content"]).partition(":")
        await trio.sleep(self.latency(int(row), column))
        if self.broken:
            raise ProviderFailureError("HTTP 401: invalid API key", status=401, retryable=False)
        return ModelResponse(content="x")


def pipeline_of(
    shape: Shape, provider: LatencyProvider, counted: list[int], first: Any = None
) -> sg.Pipeline:
    async def cell(row: sg.datagen.RowView, ctx: sg.CellContext) -> int:
        counted[0] += 1
        await ctx.call(alias_of[ctx.column], f"{ctx.column}:{ctx.row_index}")
        return 0

    alias_of = {name: e for name, e, _ in shape}
    return sg.Pipeline(
        [
            *([first] if first is not None else []),
            *(sg.column(name, cell, depends_on=deps, model=e) for name, e, deps in shape),
        ],
        endpoints=[
            sg.Endpoint(e, model=e, provider="bench", max_parallel_requests=CAP, initial_limit=CAP)
            for e in sorted({e for _, e, _ in shape})
        ],
        providers={"bench": provider},
    )


async def healthy(
    shape: Shape, rows: int, kind: str, seed: int, buffer: int, groups: int, slow: bool
) -> float:
    provider = LatencyProvider(latency_of(kind, seed))
    pipeline = pipeline_of(shape, provider, [0])
    with tempfile.TemporaryDirectory() as out:
        start = trio.current_time()
        result = await pipeline.arun(
            rows,
            output_dir=out,
            buffer_size=buffer,
            max_concurrent_row_groups=groups,
            row_group_slow_start=slow,
            events=False,
        )
        assert result.ok, result.message
        return trio.current_time() - start


async def broken(rows: int, slow: bool) -> dict[str, Any]:
    provider = LatencyProvider(latency_of("lognormal"), broken=True)
    counted = [0]

    async def topic(ctx: sg.CellContext) -> int:
        counted[0] += 1
        return ctx.row_index

    shape: Shape = [("c1", "A", ["topic"]), ("c2", "A", ["c1"])]
    pipeline = pipeline_of(shape, provider, counted, sg.column("topic", topic))
    with tempfile.TemporaryDirectory() as out:
        start = trio.current_time()
        result = await pipeline.arun(rows, output_dir=out, row_group_slow_start=slow, events=False)
        return {
            "slow_start": slow,
            "status": result.status,
            "message": result.message[:160],
            "cells_attempted": counted[0],
            "model_calls": provider.calls,
            "virtual_seconds": round(trio.current_time() - start, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3, help="latency seeds per lognormal case")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    print(f"{'shape':7} {'latency':9} {'buffer':>6} {'groups':>6} {'on s':>9} {'off s':>9} ratio")
    for shape in SHAPES:
        for kind in ("fixed", "lognormal"):
            for buffer, groups in ((10, 4), (10, 8), (25, 4), (100, 4)):
                for seed in range(args.seeds if kind == "lognormal" else 1):
                    on, off = (
                        run_virtual(
                            healthy, SHAPES[shape], args.rows, kind, seed, buffer, groups, slow
                        )
                        for slow in (True, False)
                    )
                    row = {
                        "shape": shape,
                        "latency": kind,
                        "seed": seed,
                        "rows": args.rows,
                        "buffer_size": buffer,
                        "max_concurrent_row_groups": groups,
                        "on": round(on, 3),
                        "off": round(off, 3),
                        "ratio": round(on / off, 4),
                    }
                    results.append(row)
                    print(
                        f"{shape:7} {kind:9} {buffer:6d} {groups:6d} {on:9.2f} {off:9.2f} "
                        f"{on / off:.4f}",
                        flush=True,
                    )
    ratios = [r["ratio"] for r in results]
    print(f"ratio on/off: mean {sum(ratios) / len(ratios):.4f}, worst {max(ratios):.4f}")
    print("\nbroken (every call of the first model column fails with HTTP 401), 10,000 rows:")
    for slow in (True, False):
        measured = run_virtual(broken, 10_000, slow)
        results.append({"broken": True, **measured})
        print(json.dumps(measured))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
