"""Run every benchmark of the suite with pyperf's --fast mode and keep the JSON results.

    python benchmarks/run_all.py [--out benchmarks/results] [--full]

Results land in ``<out>/<name>.json`` (compare two runs with ``python -m pyperf compare_to``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPERF_SUITES = ["bench_admission_cycle.py", "bench_scheduler.py", "bench_request_admission.py"]
OPTIONAL_SUITES: list[str] = []
PLAIN = ["bench_memory.py"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--full", action="store_true", help="pyperf's rigorous mode (slow)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    suites = PYPERF_SUITES + [s for s in OPTIONAL_SUITES if (HERE / s).exists()]
    for suite in suites:
        target = out / (Path(suite).stem + ".json")
        target.unlink(missing_ok=True)
        mode = ["--rigorous"] if args.full else ["--fast"]
        cmd = [sys.executable, str(HERE / suite), *mode, "-q", "-o", str(target)]
        print("$", " ".join(cmd), flush=True)
        status |= subprocess.call(cmd)
    for script in PLAIN:
        cmd = [sys.executable, str(HERE / script)]
        print("$", " ".join(cmd), flush=True)
        status |= subprocess.call(cmd)
    return status


if __name__ == "__main__":
    sys.exit(main())
