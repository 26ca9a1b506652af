"""Model calls through request admission: two aliases of one endpoint share one cap, and the
adaptive limit learns the endpoint's hidden capacity from its 429 answers.

Run: .venv/bin/python examples/model_calls.py
"""

import trio

import sluicegate as sg

provider = sg.SimulatedProvider(
    name="sim", seed=1, latency_seconds=0.01, capacity=6, retry_after_seconds=0.02
)
endpoints = [
    sg.ModelEndpoint(name="writer", provider="sim", model_id="m", max_parallel_requests=32),
    sg.ModelEndpoint(name="judge", provider="sim", model_id="m", max_parallel_requests=16),
]
config = sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(cooldown_seconds=0.02))
controller = sg.AdaptiveRequestAdmissionController(endpoints, config)
executor = sg.ModelRequestExecutor(controller, {"sim": provider}, backoff_seconds=0.01)


async def call(alias: str, group: str, weight: float) -> None:
    request = sg.ModelRequest(messages=[{"role": "user", "content": "hello"}])
    await executor.execute(alias, request, request_group=group, weight=weight)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(150):
            nursery.start_soon(call, "writer", "answers", 3.0)
            nursery.start_soon(call, "judge", "judgements", 1.0)


trio.run(main)
(plan,) = controller.resolver.cap_plans()
pressure = controller.resource_pressure(sg.RequestResourceKey("sim", "m", "chat"))
assert pressure is not None
stats = provider.stats
print(f"one endpoint {plan.key}, static cap {plan.static_cap} (min of 32 and 16)")
print(f"{stats.successes} calls ok, {stats.rate_limited} answered 429 on the way")
print(f"learned limit {pressure.limit} for a hidden capacity of 6; peak {stats.max_in_flight}")
print(f"leases in flight {pressure.in_flight}, waiters {pressure.waiters}")
