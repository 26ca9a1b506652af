"""The 2,000-row topic -> question -> answer -> judge pipeline against the loopback emulator.

Starts ``python -m sluicegate.testing.emulator --capacity 24 --latency 0.05 --jitter 0.3
--failure-rate 0.01`` in its own process, then runs, interleaved ``--repeat`` times:

- ``examples/pipeline_emulator.py`` (sluicegate, default settings, 24 requests in parallel;
  since 2026-12-07 the defaults write the events file too, which the floor does not);
- ``benchmarks/bench_pipeline_handwritten.py`` (the fair floor: trio + httpx, a 24-connection
  pool, a ``trio.CapacityLimiter(24)``, retries on errors).

Each is a fresh process; wall time is measured around it and client CPU is the child's
user + system time. Both outputs are checked for every row. The ideal is
``rows * 4 calls * 0.05 s / 24``: 16.7 s for 2,000 rows.

Run: .venv/bin/python benchmarks/bench_pipeline_emulator.py [--rows 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode:
        raise SystemExit(f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, cpu, done.stdout.strip()


def count_rows(paths: list[pathlib.Path]) -> int:
    return sum(sum(1 for line in p.open() if line.strip()) for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    port = free_port()
    emulator = subprocess.Popen(
        [
            sys.executable, "-m", "sluicegate.testing.emulator", "--port", str(port),
            "--capacity", "24", "--latency", "0.05", "--jitter", "0.3", "--failure-rate", "0.01",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        print(emulator.stdout.readline().strip())
        url = f"http://127.0.0.1:{port}/v1"
        results = []
        for repeat in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                out = pathlib.Path(tmp)
                env = dict(os.environ, SLUICEGATE_BASE_URL=url, SLUICEGATE_OUTPUT=str(out / "sg"))
                if args.rows != 2000:
                    env["SLUICEGATE_RECORDS"] = str(args.rows)
                wall, cpu, text = timed(
                    [sys.executable, str(ROOT / "examples" / "pipeline_emulator.py")], env
                )
                rows = count_rows(sorted((out / "sg" / "data").glob("part-*.jsonl")))
                results.append(
                    {
                        "system": "sluicegate",
                        "repeat": repeat,
                        "wall": wall,
                        "cpu": cpu,
                        "rows": rows,
                    }
                )
                print(f"sluicegate  run {repeat}: wall {wall:6.2f} s cpu {cpu:5.2f} s rows {rows}")
                print(f"  {text}")
                hand = out / "hand.jsonl"
                wall, cpu, text = timed(
                    [
                        sys.executable,
                        str(ROOT / "benchmarks" / "bench_pipeline_handwritten.py"),
                        url,
                        str(args.rows),
                        str(hand),
                    ],
                    dict(os.environ),
                )
                rows = count_rows([hand])
                results.append(
                    {
                        "system": "handwritten",
                        "repeat": repeat,
                        "wall": wall,
                        "cpu": cpu,
                        "rows": rows,
                    }
                )
                print(f"handwritten run {repeat}: wall {wall:6.2f} s cpu {cpu:5.2f} s rows {rows}")
        ideal = args.rows * 4 * 0.05 / 24
        best = {
            s: min(r["wall"] for r in results if r["system"] == s)
            for s in ("sluicegate", "handwritten")
        }
        ratios = [a["wall"] / b["wall"] for a, b in zip(results[0::2], results[1::2], strict=True)]
        print(
            f"ideal {ideal:.1f} s; best sluicegate {best['sluicegate']:.2f} s, best handwritten "
            f"{best['handwritten']:.2f} s; per-round ratios sluicegate/handwritten: "
            + ", ".join(f"{r:.3f}" for r in ratios)
        )
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
