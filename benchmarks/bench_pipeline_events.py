"""What the events file costs a pipeline run: the same zero-latency run with and without it.

The product-level counterpart of ``bench_events.py`` (which times the leanest path: one
scheduler task making one model call, nothing else). Here a pipeline of a sampler, a model
column on a zero-latency ``SimulatedProvider`` and an expression (3 cells per row, 1 model
call) runs the way ``sluicegate run`` runs it: tracker, row groups, journal and output files.
Variants: ``off`` (``events=False``), ``jsonl`` (an uncompressed ``events.jsonl``, a
``JsonLinesEventSink``) and ``gzip`` (the default, ``RUN_DIR/events.jsonl.gz``: one gzip
member per batch). Variants run interleaved in one process (the order reversed every other
round); the result is the per-round ratio of CPU time (``time.process_time``) and wall time
to the first variant, median and range, and the ratio of the fastest runs and of the 10th
percentiles (on a shared machine the slow side of the distribution is other tenants; many
short rounds and these two ratios move least between repeat runs), and each file's size.

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
from sluicegate.events import JsonLinesEventSink

VARIANTS = ("off", "jsonl", "gzip")


def events_option(variant: str, out: str) -> bool | str:
    """``Pipeline.run(events=...)`` of a variant: none, an uncompressed file, the default."""
    if variant == "off":
        return False
    if variant == "jsonl":
        return str(pathlib.Path(out) / "events.jsonl")  # a path: the sink the run owns
    return True  # the default: RUN_DIR/events.jsonl.gz


def one_run(variant: str, records: int) -> tuple[float, float, int]:
    """CPU seconds, wall seconds and events-file bytes of one run in a fresh directory."""
    with tempfile.TemporaryDirectory() as out:
        option = events_option(variant, out)
        sink = JsonLinesEventSink(option) if isinstance(option, str) else None
        cpu, wall = time.process_time(), time.perf_counter()
        result = pipeline().run(
            records, output_dir=out, events=sink if sink is not None else option, buffer_size=1000
        )
        if sink is not None:
            sink.close()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert result.ok and result.rows_written == records, result.message
        events = sum(p.stat().st_size for p in pathlib.Path(out).glob("events.jsonl*"))
        assert (events > 0) == (variant != "off"), f"{variant}: events file of {events} bytes"
    return cpu, wall, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="the first is the base")
    args = parser.parse_args()
    variants = args.variants.split(",")
    print(f"{platform.platform()}, Python {platform.python_version()}, {args.records} records")
    one_run("off", 1000)  # warm-up: imports, first-run allocations
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    size = dict.fromkeys(variants, 0)
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for variant in order:
            c, w, b = one_run(variant, args.records)
            cpu[variant].append(c)
            wall[variant].append(w)
            size[variant] = max(size[variant], b)
    cells = 3 * args.records
    base = variants[0]
    tenth = args.rounds // 10
    for variant in variants:
        c = statistics.median(cpu[variant])
        w = statistics.median(wall[variant])
        print(
            f"{variant:6} CPU {c:.3f} s ({1e6 * c / cells:.1f} µs/cell), wall {w:.3f} s, "
            f"events file {size[variant] / 1e6:.2f} MB ({size[variant] / args.records:.0f} "
            "B/record)"
        )
    for variant in variants[1:]:
        ratios = [v / o for v, o in zip(cpu[variant], cpu[base], strict=True)]
        wall_ratios = [v / o for v, o in zip(wall[variant], wall[base], strict=True)]
        fast, fast_base = sorted(cpu[variant]), sorted(cpu[base])
        print(
            f"{variant}/{base} CPU ratio: median {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f}), fastest to fastest "
            f"{fast[0] / fast_base[0]:.3f}, 10th percentile to 10th percentile "
            f"{fast[tenth] / fast_base[tenth]:.3f}; wall ratio median "
            f"{statistics.median(wall_ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
