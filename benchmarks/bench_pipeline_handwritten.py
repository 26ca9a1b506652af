"""The fair floor for bench_pipeline_emulator.py: the same topic -> question -> answer ->
judge dataset written by hand with trio + httpx (bounded pool, ``trio.CapacityLimiter``,
retries on 5xx/429, one JSON Lines file).

Run: python benchmarks/bench_pipeline_handwritten.py URL ROWS OUT.jsonl
"""

from __future__ import annotations

import json
import random
import sys
import time

import httpx
import trio

FIELDS = ["physics", "biology", "history", "economics"]


async def chat(
    client: httpx.AsyncClient, limiter: trio.CapacityLimiter, url: str, prompt: str
) -> str:
    body = {"model": "demo", "messages": [{"role": "user", "content": prompt}]}
    for attempt in range(6):
        async with limiter:
            response = await client.post(f"{url}/chat/completions", json=body)
        if response.status_code == 200:
            return str(response.json()["choices"][0]["message"]["content"])
        await trio.sleep(0.5 * 2**attempt)
    raise RuntimeError(f"gave up after HTTP {response.status_code}")


async def main(url: str, rows: int, out: str) -> None:
    limiter = trio.CapacityLimiter(24)
    limits = httpx.Limits(max_connections=24, max_keepalive_connections=24)
    results: list[dict[str, str] | None] = [None] * rows
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def row(i: int) -> None:
            field = random.Random(i).choice(FIELDS)
            topic = await chat(client, limiter, url, f"Name one topic in {field}.")
            question = await chat(client, limiter, url, f"Write one question about {topic}.")
            answer = await chat(client, limiter, url, f"Answer in two sentences: {question}")
            judge = await chat(client, limiter, url, f"Rate 1-10.\nQ: {question}\nA: {answer}")
            results[i] = {
                "field": field,
                "topic": topic,
                "question": question,
                "answer": answer,
                "judge": judge,
            }

        async with trio.open_nursery() as nursery:
            for i in range(rows):
                nursery.start_soon(row, i)
    await trio.Path(out).write_text("".join(json.dumps(r) + "\n" for r in results))


if __name__ == "__main__":
    url, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    wall, cpu = time.perf_counter(), time.process_time()
    trio.run(main, url, rows, out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"handwritten: {rows} rows, wall {wall:.2f} s, cpu {cpu:.2f} s")
