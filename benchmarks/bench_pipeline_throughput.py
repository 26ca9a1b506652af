"""Real-time overhead of a pipeline run: no-op cells per second and peak memory.

The wide shape (5 independent columns) with zero-latency generators, at 10,000 and 100,000
rows, each size in its own process (so its peak RSS, ``VmHWM``, is its own). Three kinds of
generator: ``async`` (an ``async def`` returning at once: the scheduler's own cost per cell),
``inline`` (an expression: a plain function run in the event loop) and ``thread`` (a sync
function in a worker thread, the default for sync generators). Every cell still goes through
the tracker, task admission, a trio task, the journal and the row-group files.

The floor: the same 5 x N values computed by a hand-written trio program (bounded spawn: a
``trio.Semaphore(64)`` acquired before each cell's task is started and released when it
ends; rows collected in memory and written as one JSON Lines file) -- the least a program that
runs every cell as its own task could cost. It keeps every row in memory, so its RSS grows.

``--row-group-slow-start false`` runs the pipelines with every row group admitted at once (the
default, ``true``, admits 1, 2, 4, ... as the first rows pass; the floor ignores it).

Run: .venv/bin/python benchmarks/bench_pipeline_throughput.py [--rows 10000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(kind: str, rows: int, slow_start: bool = True) -> dict[str, float]:
    import msgspec
    import trio

    import sluicegate as sg

    if kind == "floor":

        async def floor() -> None:
            slots = trio.Semaphore(64)
            values = [[0] * 5 for _ in range(rows)]

            async def cell(row: int, column: int) -> None:
                try:
                    values[row][column] = 1
                finally:
                    slots.release()

            async with trio.open_nursery() as nursery:
                for row in range(rows):
                    for column in range(5):
                        await slots.acquire()  # bounded spawn: at most 64 cell tasks at a time
                        nursery.start_soon(cell, row, column)
            with tempfile.NamedTemporaryFile("wb") as f:
                f.write(
                    msgspec.json.Encoder().encode_lines(
                        [{f"c{i}": v for i, v in enumerate(r)} for r in values]
                    )
                )

        start = time.perf_counter()
        trio.run(floor)
        wall = time.perf_counter() - start
        return {"wall": wall, "cells_per_second": rows * 5 / wall, "peak_rss_mb": peak_rss_mb()}

    async def noop_async(row: sg.datagen.RowView, ctx: sg.CellContext) -> int:
        return 1

    def noop_sync(row: sg.datagen.RowView) -> int:
        return 1

    if kind == "async":
        columns = [sg.column(f"c{i}", noop_async) for i in range(5)]
    elif kind == "inline":
        columns = [sg.expression(f"c{i}", lambda: 1) for i in range(5)]
    else:
        columns = [sg.column(f"c{i}", noop_sync) for i in range(5)]
    pipeline = sg.Pipeline(columns)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = pipeline.run(rows, output_dir=out, row_group_slow_start=slow_start, events=False)
        wall = time.perf_counter() - start
    assert result.ok and result.rows_written == rows, result.message
    return {"wall": wall, "cells_per_second": rows * 5 / wall, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000")
    parser.add_argument("--kinds", default="floor,async,inline,thread")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--row-group-slow-start", choices=("true", "false"), default="true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    slow_start = args.row_group_slow_start
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), slow_start == "true")))
        return
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        for repeat in range(args.repeat):
            for kind in args.kinds.split(","):  # interleaved: the machine is shared and noisy
                command = [sys.executable, __file__, "--child", kind, str(rows)]
                command += ["--row-group-slow-start", slow_start]
                out = subprocess.run(
                    command,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                measured = json.loads(out.strip().splitlines()[-1])
                measured.update(kind=kind, rows=rows, repeat=repeat)
                results.append(measured)
                print(
                    f"{kind:7} {rows:7d} run {repeat}: {measured['cells_per_second']:9.0f} cells/s "
                    f"wall {measured['wall']:6.2f} s peak RSS {measured['peak_rss_mb']:6.1f} MB",
                    flush=True,
                )
    print("\nbest of each (cells/s, peak RSS MB):")
    for kind in args.kinds.split(","):
        line = [kind.ljust(7)]
        for rows in (int(r) for r in args.rows.split(",")):
            mine = [r for r in results if r["kind"] == kind and r["rows"] == rows]
            line.append(
                f"{rows}: {max(r['cells_per_second'] for r in mine):9.0f} cells/s "
                f"{min(r['peak_rss_mb'] for r in mine):6.1f} MB"
            )
        print("  ".join(line))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
