"""HTTP client cost: sluicegate's provider path vs plain httpx vs raw trio sockets.

The same chat request is sent ``--requests`` times at each concurrency (default 24, 64, 128)
to the loopback emulator, which runs in a separate process (so ``time.process_time()`` of
this process is the client's CPU alone) with no capacity limit (it never answers 429).
Variants, each with ``C`` worker tasks looping over a shared request counter:

- ``sluicegate``: ``ModelRequestExecutor`` + ``AdaptiveRequestAdmissionController`` (static
  cap ``C``) + ``OpenAICompatibleProvider(max_connections=C)``: the whole model-call path.
- ``sluicegate-unbounded``: the same with the provider's former default client (unbounded
  pool, 100 keep-alive connections), to show what the sized pool changed.
- ``httpx``: plain ``httpx.AsyncClient`` with a bounded pool (``max_connections=C``, all kept
  alive), posting the prebuilt body and decoding the JSON answer. The fair floor for an
  httpx-based client.
- ``raw``: one hand-written HTTP/1.1 keep-alive connection per worker on trio sockets
  (prebuilt request bytes, minimal response parsing, JSON decoded). The floor below any HTTP
  library.

Every run is a fresh ``trio.run`` with a warm-up (``2 * C`` requests: connections opened, the
adaptive limit ramped to ``C``) before the timed phase. Runs are interleaved (every repeat
runs every concurrency, the variants in a shuffled order) and the report gives medians and
the median of the per-repeat ratios to plain httpx. Run::

    .venv/bin/python benchmarks/bench_http_client.py
    .venv/bin/python benchmarks/bench_http_client.py --requests 4000 --repeats 7 \\
        --json benchmarks/results/http-client.json

Targets: sluicegate >= 0.9x plain httpx throughput and <= 1.2x its client CPU per call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import trio

from sluicegate import (
    AdaptiveRequestAdmissionController,
    ModelEndpoint,
    ModelRequest,
    ModelRequestExecutor,
    OpenAICompatibleProvider,
    RequestAdmissionConfig,
    RequestResourceKey,
    RequestResourceSettings,
)

VARIANTS = ("sluicegate", "sluicegate-unbounded", "httpx", "raw")
PROMPT = [{"role": "user", "content": "Write one sentence about sluice gates."}]
BODY = msgspec.json.encode({"model": "m", "messages": PROMPT, "max_tokens": 16})


def start_emulator(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluicegate.testing.emulator",
            "--port",
            "0",
            "--latency",
            str(latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


async def drive(concurrency: int, count: int, one: Callable[[], Awaitable[object]]) -> None:
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)


async def timed(
    concurrency: int, count: int, one: Callable[[], Awaitable[object]]
) -> tuple[float, float]:
    await drive(concurrency, 2 * concurrency, one)  # warm-up: connections, AIMD ramp
    wall, cpu = time.perf_counter(), time.process_time()
    await drive(concurrency, count, one)
    return time.perf_counter() - wall, time.process_time() - cpu


async def run_sluicegate(url: str, concurrency: int, count: int, unbounded: bool) -> Any:
    endpoint = ModelEndpoint(
        name="emu", provider="emu", model_id="m", max_parallel_requests=concurrency
    )
    # The limit starts at the cap: this measures the HTTP path, not the slow start (which stops
    # growing once calls queue, and would not reach C within the warm-up).
    config = RequestAdmissionConfig(defaults=RequestResourceSettings(initial_limit=concurrency))
    controller = AdaptiveRequestAdmissionController([endpoint], config=config)
    client = None
    if unbounded:  # the provider's former default
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        provider = OpenAICompatibleProvider(
            base_url=url,
            name="emu",
            client=client,
            max_connections=64 if unbounded else concurrency,
        )
    executor = ModelRequestExecutor(controller, {"emu": provider})
    request = ModelRequest(messages=PROMPT, max_tokens=16)

    async def one() -> object:
        return await executor.execute("emu", request)

    async with provider:
        result = await timed(concurrency, count, one)
    if client is not None:
        await client.aclose()
    pressure = controller.resource_pressure(RequestResourceKey("emu", "m", "chat"))
    assert pressure is not None and pressure.limit == concurrency, pressure
    assert executor.stats.failed == 0
    return result


async def run_httpx(url: str, concurrency: int, count: int) -> Any:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    target = url + "/v1/chat/completions"
    async with httpx.AsyncClient(limits=limits) as client:

        async def one() -> object:
            response = await client.post(target, content=BODY, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)
            return msgspec.json.decode(response.content)

        return await timed(concurrency, count, one)


async def run_raw(url: str, concurrency: int, count: int) -> Any:
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s:%d\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (host.encode(), port, len(BODY), BODY)
    )
    streams = [await trio.open_tcp_stream(host, port) for _ in range(concurrency)]
    free = list(streams)
    buffers: dict[int, bytearray] = {id(s): bytearray() for s in streams}

    async def one() -> object:
        stream = free.pop()
        buffer = buffers[id(stream)]
        try:
            await stream.send_all(request)
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                buffer += await stream.receive_some(65536)
            head = bytes(buffer[:end]).lower()
            if not head.startswith(b"http/1.1 200"):
                raise RuntimeError(head[:40])
            start = head.index(b"content-length:") + 15
            length = int(head[start : head.index(b"\r\n", start)])
            total = end + 4 + length
            while len(buffer) < total:
                buffer += await stream.receive_some(65536)
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            return msgspec.json.decode(body)
        finally:
            free.append(stream)

    try:
        return await timed(concurrency, count, one)
    finally:
        for stream in streams:
            await stream.aclose()


def run_one(variant: str, url: str, concurrency: int, count: int) -> tuple[float, float]:
    if variant == "sluicegate":
        return trio.run(run_sluicegate, url, concurrency, count, False)  # type: ignore[no-any-return]
    if variant == "sluicegate-unbounded":
        return trio.run(run_sluicegate, url, concurrency, count, True)  # type: ignore[no-any-return]
    if variant == "httpx":
        return trio.run(run_httpx, url, concurrency, count)  # type: ignore[no-any-return]
    return trio.run(run_raw, url, concurrency, count)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[24, 64, 128])
    parser.add_argument("--latency", type=float, default=0.005, help="emulator latency (s)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0, help="seed of the variant order")
    parser.add_argument("--json", default=None, help="write raw samples and medians here")
    args = parser.parse_args()

    order = random.Random(args.seed)
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {}
    process, url = start_emulator(args.latency)
    try:
        for repeat in range(args.repeats):
            for concurrency in args.concurrency:
                variants = list(args.variants)
                order.shuffle(variants)
                for variant in variants:
                    wall, cpu = run_one(variant, url, concurrency, args.requests)
                    samples.setdefault((concurrency, variant), []).append((wall, cpu))
                    print(
                        f"repeat {repeat} C={concurrency:<4} {variant:<21} "
                        f"{args.requests / wall:8.0f} req/s  "
                        f"{cpu / args.requests * 1e6:7.1f} us CPU/call",
                        flush=True,
                    )
    finally:
        process.terminate()
        process.wait(timeout=10)
    report(args, samples)


def report(args: argparse.Namespace, samples: dict[tuple[int, str], list[Any]]) -> None:
    n = args.requests
    rows = []
    print("\nmedians (ratios: median over repeats of variant / httpx in the same repeat)")
    print(f"{'C':>4} {'variant':<21} {'req/s':>8} {'CPU us/call':>12} {'thr x':>7} {'cpu x':>7}")
    for concurrency in args.concurrency:
        base = samples.get((concurrency, "httpx"))
        for variant in args.variants:
            runs = samples[(concurrency, variant)]
            throughput = statistics.median(n / wall for wall, _ in runs)
            cpu_us = statistics.median(cpu / n * 1e6 for _, cpu in runs)
            thr_x = cpu_x = None
            if base is not None:
                thr_x = statistics.median(
                    b[0] / r[0] for r, b in zip(runs, base, strict=True)
                )  # time ratio inverted: throughput ratio
                cpu_x = statistics.median(r[1] / b[1] for r, b in zip(runs, base, strict=True))
            rows.append(
                {
                    "concurrency": concurrency,
                    "variant": variant,
                    "throughput_rps": throughput,
                    "cpu_us_per_call": cpu_us,
                    "throughput_vs_httpx": thr_x,
                    "cpu_vs_httpx": cpu_x,
                    "samples_wall_cpu_seconds": runs,
                }
            )
            print(
                f"{concurrency:>4} {variant:<21} {throughput:8.0f} {cpu_us:12.1f} "
                f"{'' if thr_x is None else f'{thr_x:7.2f}'} "
                f"{'' if cpu_x is None else f'{cpu_x:7.2f}'}"
            )
    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": platform.uname()._asdict(),
            "nproc": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": sys.version,
            "command": " ".join(sys.argv),
            "requests": n,
            "repeats": args.repeats,
            "emulator_latency": args.latency,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
