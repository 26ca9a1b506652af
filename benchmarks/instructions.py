"""Executed instructions per cell: overhead ratios that a noisy machine cannot blur.

On a shared 2-core VM the same CPU-bound loop can take 15% longer from one second to the next,
so a time ratio cannot tell 1.15x from 1.30x without a quiet machine. The number of
instructions a run executes does not depend on the machine's load. This script counts them
with valgrind (callgrind) for two run sizes and reports the difference per cell, so start-up
and imports cancel out:

    per cell = (instructions at --large cells - instructions at --small cells) / (large - small)

It runs the programs of ``bench_events.py`` (one scheduler task making one model call, under
trio's ``MockClock`` so adaptive admission decides the same way in every run) and of
``bench_pipeline_events.py`` (a sampler, a zero-latency model column and an expression: the
unit is one record of three cells; run with ``sluicegate.testing.run_virtual``), with the hash
seed fixed and, where ``setarch`` exists, address-space randomisation off. Repeat runs of one
tree agree within about 1%.

Instructions are not time: memory traffic, kernel time for writes and the CPU's
instructions-per-cycle are left out. Use this to compare code (before/after, in the same
way), and time on a quiet machine for the absolute budget.

Run (valgrind must be installed; about a minute per variant and tree)::

    .venv/bin/python benchmarks/instructions.py events none,discard,jsonl
    .venv/bin/python benchmarks/instructions.py pipeline off,jsonl,gzip \
        --trees before=/tmp/old/src now=src
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SIZES = {"events": (1000, 3000), "pipeline": (1000, 4000)}


def child(kind: str, variant: str, size: int) -> None:
    """The measured program: one run of ``size`` cells (records) with ``variant``."""
    import random

    import trio
    import trio.testing

    sys.path.insert(0, str(HERE))
    trio._core._run._r.seed(0)  # trio's scheduling order (it shuffles batches)
    random.seed(0)
    if kind == "events":
        import bench_events

        real_run = trio.run

        class _Trio:  # bench_events calls trio.run(scheduler.run): give it a MockClock
            def __getattr__(self, name: str) -> object:
                return getattr(trio, name)

            @staticmethod
            def run(fn: object, *args: object) -> object:
                return real_run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))

        bench_events.trio = _Trio()  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory() as folder:
            bench_events.one_run(size, 64, variant, pathlib.Path(folder))
    else:
        from bench_pipeline_events import events_option
        from bench_progress import pipeline
        from sluicegate.events import JsonLinesEventSink
        from sluicegate.testing import run_virtual

        # On the virtual clock (and its deterministic scheduling), so the runner's timed
        # behaviour (journal flushes, checkpoints, adaptive admission) is the same in every
        # run; the runner then does its file I/O inline instead of in a worker thread.
        # off: no events; jsonl: an uncompressed events.jsonl; gzip: the default file
        with tempfile.TemporaryDirectory() as folder:
            option = events_option(variant, folder)
            sink = JsonLinesEventSink(option) if isinstance(option, str) else None
            result = run_virtual(
                pipeline().arun,
                size,
                output_dir=folder,
                events=sink if sink is not None else option,
                buffer_size=1000,
            )
            if sink is not None:
                sink.close()
            assert result.ok and result.rows_written == size, result.message


def count(kind: str, variant: str, size: int, src: str | None) -> int:
    """Instructions executed by one child run (callgrind's "Collected" total)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if src is not None:
        env["PYTHONPATH"] = src
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        kind,
        variant,
        str(size),
    ]
    if shutil.which("setarch"):
        command = ["setarch", "-R", *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"valgrind run failed ({variant}, {size}):\n{done.stderr[-2000:]}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kind", choices=sorted(SIZES))
    parser.add_argument("variants", help="comma-separated; the first is the ratios' base")
    parser.add_argument("--trees", nargs="*", default=[], metavar="NAME=SRC_DIR")
    parser.add_argument("--json", help="also write the counts to this file")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind (Debian/Ubuntu)")
    small, large = SIZES[args.kind]
    trees = dict(t.split("=", 1) for t in args.trees) or {"this": None}
    variants = args.variants.split(",")
    results: dict[str, dict[str, float]] = {}
    unit = "cell" if args.kind == "events" else "record"
    for name, src in trees.items():
        per = {}
        for variant in variants:
            a = count(args.kind, variant, small, src)
            b = count(args.kind, variant, large, src)
            per[variant] = (b - a) / (large - small)
        results[name] = per
        base = per[variants[0]]
        for variant in variants:
            print(
                f"{name:10s} {variant:10s} {per[variant]:12,.0f} instructions/{unit}"
                f"  {per[variant] / base:.3f}x {variants[0]}"
            )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
