"""Slow-start batching: ramp a fan-out up 1, 2, 4, ... and stop at the first failing batch.

Forty calls go to a simulated endpoint that can only take 6 at once. The first fan-out grows
1, 2, 4, 8: the batch of 8 meets 429s and the fan-out is *throttled*. The loop below waits the
reported ``retry_after``, caps the batches at the largest size that went through, and
dispatches the pending items again.
"""

from __future__ import annotations

import msgspec
import trio

from sluicegate.providers import ModelRequest, SimulatedProvider
from sluicegate.scheduling import BatchStrategy, SlowStartBatch, slow_start


async def main() -> None:
    provider = SimulatedProvider(seed=1, latency_seconds=0.01, capacity=6, retry_after_seconds=0.05)
    prompts = [f"describe row {i}" for i in range(40)]
    answers: dict[str, str] = {}

    async def generate(prompt: str) -> None:
        request = ModelRequest(messages=[{"role": "user", "content": prompt}])
        response = await provider.call("llama", request)
        answers[prompt] = response.content

    def report(batch: SlowStartBatch) -> None:
        print(f"  batch {batch.index}: {batch.size} item(s) from #{batch.start}: {batch.outcome}")

    strategy = BatchStrategy(max_batch_size=16, base_retry_after=0.05, max_retry_after=1.0)
    pending, attempt = prompts, 0
    while pending:
        print(f"fan-out attempt {attempt}: {len(pending)} items, cap {strategy.max_batch_size}")
        result = await slow_start(
            pending, generate, strategy=strategy, on_batch=report, attempt=attempt
        )
        if result.outcome == "completed":
            break
        if result.outcome == "halted":
            raise SystemExit(f"stopped: {result.reason}")
        assert result.retry_after is not None
        print(f"throttled: {len(result.pending)} items wait {result.retry_after:.2f}s")
        # Go on no wider than the widest batch that went through without a 429.
        widest = max((b.size for b in result.batches if b.outcome == "completed"), default=1)
        strategy = msgspec.structs.replace(strategy, max_batch_size=widest)
        await trio.sleep(result.retry_after)
        pending = [pending[i] for i in result.pending]
        attempt += 1
    print(f"{len(answers)} answers; the endpoint saw {provider.stats.rate_limited} 429(s)")


if __name__ == "__main__":
    trio.run(main)
