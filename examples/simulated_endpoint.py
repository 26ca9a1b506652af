"""A realistic simulated endpoint: log-normal latency, a token quota and scripted faults.

Runs in virtual time (``MockClock``), so a minute of simulated traffic takes milliseconds.
"""

from __future__ import annotations

import statistics

import trio
import trio.testing

from sluicegate.providers import (
    Fault,
    FaultRule,
    LogNormalLatency,
    ModelRequest,
    ProviderError,
    SimulatedProvider,
)


async def main() -> None:
    provider = SimulatedProvider(
        seed=7,
        latency=LogNormalLatency(median=0.4, sigma=0.5),
        tokens_per_minute=800,
        faults=(
            FaultRule(first_call=10, last_call=12, fault=Fault.failure(500)),
            FaultRule(first_call=5, model="judge", fault=Fault.timeout(hang_seconds=5.0)),
        ),
        publish_rate_limit_hints=True,
    )
    latencies: list[float] = []
    for i in range(40):
        model = "judge" if i % 4 == 3 else "writer"
        request = ModelRequest(messages=[{"role": "user", "content": f"row {i}"}], max_tokens=32)
        start = trio.current_time()
        try:
            response = await provider.call(model, request)
        except ProviderError as exc:
            print(f"call {i + 1:2} to {model}: {type(exc).__name__} {exc}")
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                await trio.sleep(retry_after)  # a token quota 429 says how long to wait
        else:
            latencies.append(trio.current_time() - start)
            hints = response.rate_limits
            assert hints is not None
            if i % 10 == 0:
                print(f"call {i + 1:2}: {hints.remaining_tokens} tokens left this minute")
    print(f"median latency {statistics.median(latencies):.2f}s, max {max(latencies):.2f}s")
    print(provider.stats)


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
