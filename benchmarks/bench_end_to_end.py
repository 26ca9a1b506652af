"""End to end against the loopback emulator: a 4-column chain, one chat call per cell.

The job: ``rows`` rows of topic -> question -> answer -> judge (each cell one chat call whose
prompt carries the cell before it) against ``sluicegate.testing`` 's emulator with a hidden
capacity of 24 concurrent calls, 50 ms +- 30% latency and 1% injected 500s. The emulator runs
in its own process, so the client's CPU time is measured cleanly. Contenders, interleaved
round after round:

- ``hand``: the fair floor, a hand-written trio + httpx client: a pool of 24 connections, 24
  rows in flight, each row its four calls in order, a simple retry on 429 (after its
  Retry-After) and 5xx.
- ``defaults``: sluicegate as a user would set it up, told nothing about the server's
  capacity: ``AsyncTaskScheduler(capacity=128)`` over a ``DagCompletionTracker``,
  ``ModelRequestExecutor`` and the adaptive controller with default settings under a declared
  cap of 64, and ``OpenAICompatibleProvider`` with its own (owned) HTTP client.
- ``defaults-pool64``: the same with an ``httpx.AsyncClient`` limited to 64 connections (the
  endpoint's cap), as the provider will size its pool.
- ``tuned``: what someone who knows the capacity would write: cap 24, ``initial_limit=24``,
  a pool of 24, scheduler capacity 48.

Reported per contender: wall seconds, client CPU seconds (``time.process_time``), 429s and
other non-200 answers, connections the emulator accepted, failed cells; medians and the
spread (max - min) / median over the repeats. Run::

    .venv/bin/python benchmarks/bench_end_to_end.py --repeats 3
    .venv/bin/python benchmarks/bench_end_to_end.py --rows 500 --contenders hand,defaults

``--dead`` instead runs the dead-endpoint check: the defaults stack against a closed loopback
port (how long until the run ends, how many connection attempts, the error it ends with).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

import sluicegate as sg
from sluicegate.providers import OpenAICompatibleProvider
from sluicegate.requests import ProviderConnectionError, ProviderFailureError
from sluicegate.scheduling import AsyncTaskScheduler, DagCompletionTracker
from sluicegate.testing import EmulatorConfig, serve_emulator

COLUMNS = ("topic", "question", "answer", "judge")
MODEL = "bench-model"


# ------------------------------------------------------------------------ emulator process


def serve(config_json: str) -> None:
    """Child process: serve the emulator, print its URL, answer ``stats`` lines with JSON."""
    config = EmulatorConfig(**json.loads(config_json))

    async def main() -> None:
        async with serve_emulator(config) as emulator:
            print(emulator.base_url, flush=True)
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline)
                if not line or line.strip() == "quit":
                    return
                stats = emulator.stats
                print(
                    json.dumps(
                        {
                            "connections_opened": stats.connections_opened,
                            "responses": {str(k): v for k, v in stats.responses_by_status.items()},
                            "calls": stats.provider.calls,
                            "max_in_flight": stats.provider.max_in_flight,
                        }
                    ),
                    flush=True,
                )

    trio.run(main)


class EmulatorProcess:
    """The emulator in a child process, with a stats query over its stdin/stdout."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-emulator", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self.process.stdout.readline())
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=10)


# ------------------------------------------------------------------------ the job


def prompt(column: str, row: int, before: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{column} for row {row}: {before}"}]


async def hand_written(base_url: str, rows: int, capacity: int) -> dict[str, int]:
    """The floor: trio + httpx, a bounded pool, ``capacity`` rows in flight, simple retry."""
    failed = 0
    limits = httpx.Limits(max_connections=capacity, max_keepalive_connections=capacity)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:

        async def call(messages: list[dict[str, str]]) -> str:
            for _ in range(10):
                response = await client.post(
                    "/v1/chat/completions", json={"model": MODEL, "messages": messages}
                )
                if response.status_code == 200:
                    content: str = response.json()["choices"][0]["message"]["content"]
                    return content
                if response.status_code == 429:
                    await trio.sleep(float(response.headers.get("retry-after", "1")))
                else:
                    await trio.sleep(0.05)
            raise RuntimeError("gave up")

        next_row = 0

        async def row_worker() -> None:
            nonlocal next_row, failed
            while next_row < rows:
                row = next_row
                next_row += 1
                text = ""
                try:
                    for column in COLUMNS:
                        text = await call(prompt(column, row, text))
                except RuntimeError:
                    failed += 1

        async with trio.open_nursery() as nursery:
            for _ in range(capacity):
                nursery.start_soon(row_worker)
    return {"failed": failed}


def _api(pkg: Any, name: str) -> Any:
    """``name`` from a sluicegate package, wherever its layout keeps it (so an older tree
    loaded with ``--baseline-src`` runs the same job)."""
    for where in (pkg, *(getattr(pkg, sub, None) for sub in ("providers", "scheduling"))):
        if where is not None and hasattr(where, name):
            return getattr(where, name)
    raise AttributeError(name)


async def with_sluicegate(
    base_url: str,
    rows: int,
    *,
    cap: int,
    task_capacity: int,
    pool: int | None,
    config: Any = None,
    pkg: Any = sg,
) -> dict[str, Any]:
    """The sluicegate stack: scheduler, executor, adaptive controller, HTTP provider."""
    client = (
        None
        if pool is None
        else httpx.AsyncClient(
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        )
    )
    provider = _api(pkg, "OpenAICompatibleProvider")(
        base_url=base_url, name="emulator", client=client
    )
    controller = pkg.AdaptiveRequestAdmissionController(
        [
            pkg.ModelEndpoint(
                name="m", provider="emulator", model_id=MODEL, max_parallel_requests=cap
            )
        ],
        config,
    )
    executor = pkg.ModelRequestExecutor(controller, {"emulator": provider})
    tracker = _api(pkg, "DagCompletionTracker")()
    texts: dict[tuple[int, str], str] = {}
    for row in range(rows):
        for i, column in enumerate(COLUMNS):
            after = [(row, COLUMNS[i - 1])] if i else []
            tracker.add((row, column), None, depends_on=after, group=column)

    async def worker(task: sg.SchedulableTask) -> None:
        row, column = task.task_id
        i = COLUMNS.index(column)
        before = texts.get((row, COLUMNS[i - 1]), "") if i else ""
        request = pkg.ModelRequest(messages=prompt(column, row, before))
        response = await executor.execute("m", request, request_group=column)
        texts[task.task_id] = str(response.content)

    scheduler = _api(pkg, "AsyncTaskScheduler")(
        tracker,
        worker,
        capacity=task_capacity,
        # the scheduler's coming default: retry what says it is retryable
        is_retryable=lambda exc: getattr(exc, "retryable", False) is True,
    )
    try:
        result = await scheduler.run()
    finally:
        await provider.aclose()
        if client is not None:
            await client.aclose()
    pressure = controller.resource_pressure(pkg.RequestResourceKey("emulator", MODEL, "chat"))
    assert pressure is not None
    return {
        "failed": result.counts["failed"] + result.counts["dropped"],
        "final_limit": pressure.limit,
        "max_limit": pressure.max_limit,
        "max_in_flight": pressure.max_in_flight,
    }


def load_tree(src: str) -> Any:
    """Another tree's ``sluicegate`` package (its ``src`` dir), imported under its own name."""
    import importlib.util
    import pathlib

    init = pathlib.Path(src) / "sluicegate" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "_sg_baseline", init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sg_baseline"] = module
    spec.loader.exec_module(module)
    return module


def contenders(
    capacity: int, baseline: Any = None
) -> dict[str, Callable[[str, int], Awaitable[dict[str, Any]]]]:
    tuned = sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(initial_limit=capacity))
    extra: dict[str, Callable[[str, int], Awaitable[dict[str, Any]]]] = {}
    if baseline is not None:
        extra["baseline-defaults"] = lambda url, rows: with_sluicegate(
            url, rows, cap=64, task_capacity=128, pool=64, pkg=baseline
        )
    return {
        **extra,
        "hand": lambda url, rows: hand_written(url, rows, capacity),
        "defaults": lambda url, rows: with_sluicegate(
            url, rows, cap=64, task_capacity=128, pool=None
        ),
        "defaults-pool64": lambda url, rows: with_sluicegate(
            url, rows, cap=64, task_capacity=128, pool=64
        ),
        "tuned": lambda url, rows: with_sluicegate(
            url, rows, cap=capacity, task_capacity=2 * capacity, pool=capacity, config=tuned
        ),
    }


def run_once(
    emulator: EmulatorProcess,
    contender: Callable[[str, int], Awaitable[dict[str, Any]]],
    rows: int,
) -> dict[str, Any]:
    before = emulator.stats()
    cpu, wall = time.process_time(), time.perf_counter()
    extra = trio.run(contender, emulator.base_url, rows)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = emulator.stats()
    responses = {
        k: after["responses"].get(k, 0) - before["responses"].get(k, 0) for k in after["responses"]
    }
    return {
        "wall": wall,
        "cpu": cpu,
        "calls": after["calls"] - before["calls"],
        "rate_limited": responses.get("429", 0),
        "server_errors": sum(v for k, v in responses.items() if k.startswith("5")),
        "connections": after["connections_opened"] - before["connections_opened"],
        **extra,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall"] for r in runs]
    median = statistics.median(walls)
    return {
        "wall_median": median,
        "wall_spread": (max(walls) - min(walls)) / median,
        "cpu_median": statistics.median(r["cpu"] for r in runs),
        "rate_limited_median": statistics.median(r["rate_limited"] for r in runs),
        "calls_median": statistics.median(r["calls"] for r in runs),
        "connections_median": statistics.median(r["connections"] for r in runs),
        "failed_max": max(r.get("failed", 0) for r in runs),
        "runs": runs,
    }


# ------------------------------------------------------------------------ dead endpoint


def dead_endpoint(rows: int) -> dict[str, Any]:
    """The defaults stack against a closed loopback port."""
    attempts = 0

    class Counting:
        """Counts connection attempts; maps a refused connect to ProviderConnectionError if
        the provider does not do it itself yet."""

        name = "emulator"

        def __init__(self, inner: OpenAICompatibleProvider) -> None:
            self.inner = inner

        async def call(self, model_id: str, request: sg.ModelRequest) -> sg.ModelResponse:
            nonlocal attempts
            attempts += 1
            try:
                return await self.inner.call(model_id, request)
            except ProviderConnectionError:
                raise
            except ProviderFailureError as exc:
                cause = exc.__cause__
                if isinstance(cause, httpx.ConnectError):
                    url = self.inner.base_url
                    raise ProviderConnectionError(
                        str(exc), url=url, cause=f"{type(cause).__name__}: {cause}"
                    ) from cause
                raise

    errors: list[str] = []

    async def main() -> float:
        provider = OpenAICompatibleProvider(base_url="http://127.0.0.1:9/v1", name="emulator")
        controller = sg.AdaptiveRequestAdmissionController(
            [
                sg.ModelEndpoint(
                    name="m", provider="emulator", model_id=MODEL, max_parallel_requests=64
                )
            ]
        )
        executor = sg.ModelRequestExecutor(controller, {"emulator": Counting(provider)})
        tracker = DagCompletionTracker()
        for row in range(rows):
            for i, column in enumerate(COLUMNS):
                after = [(row, COLUMNS[i - 1])] if i else []
                tracker.add((row, column), None, depends_on=after, group=column)

        async def worker(task: sg.SchedulableTask) -> None:
            try:
                await executor.execute("m", sg.ModelRequest(messages=[]), request_group="x")
            except Exception as exc:
                errors.append(str(exc))
                raise

        scheduler = AsyncTaskScheduler(
            tracker,
            worker,
            capacity=128,
            is_retryable=lambda exc: getattr(exc, "retryable", False) is True,
        )
        started = time.perf_counter()
        await scheduler.run()
        await provider.aclose()
        return time.perf_counter() - started

    seconds = trio.run(main)
    distinct = sorted(set(errors))
    return {"seconds": seconds, "attempts": attempts, "errors": len(errors), "distinct": distinct}


# ------------------------------------------------------------------------ main


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-emulator":
        serve(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=24)
    parser.add_argument("--failure-rate", type=float, default=0.01)
    parser.add_argument("--contenders", default="hand,defaults,defaults-pool64,tuned")
    parser.add_argument("--dead", action="store_true", help="run the dead-endpoint check")
    parser.add_argument(
        "--baseline-src", help="another tree's src dir: adds a 'baseline-defaults' contender"
    )
    parser.add_argument("-o", "--output", help="write the results as JSON here")
    args = parser.parse_args()
    machine = {"uname": " ".join(platform.uname()), "nproc": os.cpu_count()}
    if args.dead:
        result: dict[str, Any] = {"dead_endpoint": dead_endpoint(args.rows), "machine": machine}
        print(json.dumps(result, indent=2))
        return
    config = {
        "capacity": args.capacity,
        "latency_seconds": 0.05,
        "latency_jitter": 0.3,
        "failure_rate": args.failure_rate,
        "seed": 1,
    }
    baseline = load_tree(args.baseline_src) if args.baseline_src else None
    names = args.contenders.split(",") + (["baseline-defaults"] if baseline is not None else [])
    chosen = {k: v for k, v in contenders(args.capacity, baseline).items() if k in names}
    emulator = EmulatorProcess(config)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    try:
        for repeat in range(args.repeats):
            for name, contender in chosen.items():
                run = run_once(emulator, contender, args.rows)
                runs[name].append(run)
                print(
                    f"[{repeat + 1}/{args.repeats}] {name:16s} wall {run['wall']:6.2f} s  "
                    f"cpu {run['cpu']:6.2f} s  429s {run['rate_limited']:4d}  "
                    f"conns {run['connections']:4d}  failed {run.get('failed', 0)}  "
                    + (
                        f"limit {run['final_limit']} max {run['max_limit']}"
                        if "max_limit" in run
                        else ""
                    ),
                    flush=True,
                )
    finally:
        emulator.close()
    ideal = args.rows * len(COLUMNS) * 0.05 / args.capacity
    summary = {name: summarize(r) for name, r in runs.items()}
    floor = summary.get("hand")
    print(
        f"\nideal {ideal:.1f} s ({args.rows} rows x {len(COLUMNS)} calls, capacity {args.capacity})"
    )
    for name, s in summary.items():
        ratio = f"  {s['wall_median'] / floor['wall_median']:.2f}x wall, " if floor else "  "
        ratio += f"{s['cpu_median'] / floor['cpu_median']:.2f}x cpu" if floor else ""
        print(
            f"{name:16s} wall {s['wall_median']:6.2f} s (spread {s['wall_spread']:.0%})  "
            f"cpu {s['cpu_median']:6.2f} s  429s {s['rate_limited_median']:.0f} "
            f"({s['rate_limited_median'] / max(1, s['calls_median']):.1%})  "
            f"conns {s['connections_median']:.0f}  failed<= {s['failed_max']}{ratio}"
        )
    if args.output:
        with open(args.output, "w") as out:
            json.dump(
                {
                    "machine": machine,
                    "command": " ".join(sys.argv),
                    "emulator": config,
                    "rows": args.rows,
                    "ideal_seconds": ideal,
                    "summary": summary,
                },
                out,
                indent=2,
            )


if __name__ == "__main__":
    main()
