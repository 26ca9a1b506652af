"""What the events file costs a pipeline run: the same zero-latency run with and without it.

The product-level counterpart of ``bench_events.py`` (which times the leanest path: one
scheduler task making one model call, nothing else). Here a pipeline of a sampler, a model
column on a zero-latency ``SimulatedProvider`` and an expression (3 cells per row, 1 model
call) runs the way ``sluicegate run --events`` runs it: tracker, row groups, journal and
output files, with ``events=True`` (``RUN_DIR/events.jsonl``, a ``JsonLinesEventSink``) or
without. Variants run interleaved in one process (off, jsonl, off, jsonl, ..., the order
alternating per round); the result is the per-round ratio of CPU time (``time.process_time``)
and wall time to ``off``, median and range, and the ratio of the fastest runs and of the
10th percentiles (on a shared machine the slow side of the distribution is other tenants;
many short rounds and these two ratios move least between repeat runs).

Run: .venv/bin/python benchmarks/bench_pipeline_events.py [--records 20000] [--rounds 7]
     .venv/bin/python benchmarks/bench_pipeline_events.py --records 2000 --rounds 40
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import sys
import tempfile
import time

from bench_progress import pipeline  # the same pipeline as the progress benchmark

VARIANTS = ("off", "jsonl")


def one_run(variant: str, records: int) -> tuple[float, float, int]:
    """CPU seconds, wall seconds and events-file bytes of one run in a fresh directory."""
    with tempfile.TemporaryDirectory() as out:
        cpu, wall = time.process_time(), time.perf_counter()
        result = pipeline().run(
            records, output_dir=out, events=variant == "jsonl", buffer_size=1000
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert result.ok and result.rows_written == records, result.message
        events = sum(p.stat().st_size for p in pathlib.Path(out).rglob("events*.jsonl"))
        if variant == "jsonl":
            assert events > 0, "no events file was written"
    return cpu, wall, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{platform.platform()}, Python {platform.python_version()}, {args.records} records")
    one_run("off", 1000)  # warm-up: imports, first-run allocations
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    size = 0
    for round_ in range(args.rounds):
        order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            c, w, b = one_run(variant, args.records)
            cpu[variant].append(c)
            wall[variant].append(w)
            size = max(size, b)
    cells = 3 * args.records
    for variant in VARIANTS:
        c = statistics.median(cpu[variant])
        w = statistics.median(wall[variant])
        print(f"{variant:6} CPU {c:.3f} s ({1e6 * c / cells:.1f} µs/cell), wall {w:.3f} s")
    ratios = [j / o for j, o in zip(cpu["jsonl"], cpu["off"], strict=True)]
    wall_ratios = [j / o for j, o in zip(wall["jsonl"], wall["off"], strict=True)]
    fast_jsonl, fast_off = sorted(cpu["jsonl"]), sorted(cpu["off"])
    tenth = args.rounds // 10
    print(
        f"jsonl/off CPU ratio: median {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f}); wall ratio median "
        f"{statistics.median(wall_ratios):.3f}; events file {size / 1e6:.1f} MB"
    )
    print(
        f"jsonl/off CPU, fastest to fastest {fast_jsonl[0] / fast_off[0]:.3f}, "
        f"10th percentile to 10th percentile {fast_jsonl[tenth] / fast_off[tenth]:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
