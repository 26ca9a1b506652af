"""Request-admission overhead, side by side with trio's own CapacityLimiter (the floor).

Run::

    .venv/bin/python benchmarks/bench_request_admission.py --fast
    .venv/bin/python benchmarks/bench_request_admission.py -o request_admission.json

Scenarios (each timing is per acquire+release pair, real time):

- ``uncontended``: one task, acquire then release, never waits. Target: <= 8 us.
- ``uncontended+sink``: the same with an event sink attached (shows what events cost, and
  therefore what the no-sink path skips).
- ``contended-N``: N tasks share a cap of 16; each loops acquire, checkpoint, release, so
  N - 16 are always queued. Target: <= 1.5x CapacityLimiter; flat from N = 100 to 10,000.

The request controller runs with default settings (AIMD on, no rate window, no sink); the
numbers measure the admission machinery alone, with no provider in the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyperf
import trio
import trio.testing

from sluicegate import AdaptiveRequestAdmissionController, ModelEndpoint, RequestResourceKey
from sluicegate.requests import RequestAdmissionItem, RequestReleaseOutcome

CAP = 16
KEY = RequestResourceKey("bench", "model", "chat")
ITEM = RequestAdmissionItem(resource=KEY)
SUCCESS = RequestReleaseOutcome("success")


class DiscardingSink:
    """A real sink (so events are built) that keeps nothing."""

    def emit(self, event: Any) -> None:
        return None


def controller(sink: Any = None) -> AdaptiveRequestAdmissionController:
    return AdaptiveRequestAdmissionController(
        [
            ModelEndpoint(
                name="bench", provider="bench", model_id="model", max_parallel_requests=CAP
            )
        ],
        sink=sink,
    )


def uncontended_sluicegate(loops: int, sink: Any = None) -> float:
    async def main() -> float:
        admission = controller(sink)
        acquire, release = admission.acquire, admission.release
        start = time.perf_counter()
        for _ in range(loops):
            release(await acquire(ITEM), SUCCESS)
        return time.perf_counter() - start

    return trio.run(main)


def uncontended_with_sink(loops: int) -> float:
    return uncontended_sluicegate(loops, DiscardingSink())


def uncontended_limiter(loops: int) -> float:
    async def main() -> float:
        limiter = trio.CapacityLimiter(CAP)
        start = time.perf_counter()
        for _ in range(loops):
            await limiter.acquire()
            limiter.release()
        return time.perf_counter() - start

    return trio.run(main)


def _contended(loops: int, tasks: int, make_step: Callable[[], Callable[[], Any]]) -> float:
    """``tasks`` workers run ``tasks`` warm-up steps then ``loops`` timed steps in total.

    Timing starts once every worker has finished one step, so the start-up wake-up of all
    tasks is not measured and the queue holds ``tasks - CAP`` waiters throughout.
    """

    async def main() -> float:
        step = make_step()
        total = tasks + loops
        remaining = total
        done = 0
        started_at = finished_at = 0.0

        async def worker() -> None:
            nonlocal remaining, done, started_at, finished_at
            while remaining > 0:
                remaining -= 1
                await step()
                done += 1
                if done == tasks:
                    started_at = time.perf_counter()
                elif done == total:
                    finished_at = time.perf_counter()

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)
        return finished_at - started_at

    return trio.run(main)


def sluicegate_step() -> Callable[[], Any]:
    admission = controller()
    acquire, release = admission.acquire, admission.release
    checkpoint = trio.lowlevel.checkpoint

    async def step() -> None:
        lease = await acquire(ITEM)
        await checkpoint()
        release(lease, SUCCESS)

    return step


def limiter_step() -> Callable[[], Any]:
    limiter = trio.CapacityLimiter(CAP)
    checkpoint = trio.lowlevel.checkpoint

    async def step() -> None:
        await limiter.acquire()
        await checkpoint()
        limiter.release()

    return step


def contended(loops: int, tasks: int, implementation: str) -> float:
    make = sluicegate_step if implementation == "sluicegate" else limiter_step
    return _contended(loops, tasks, make)


def main() -> None:
    runner = pyperf.Runner()
    runner.metadata["description"] = "request admission acquire+release cost per call"
    runner.bench_time_func("uncontended: sluicegate", uncontended_sluicegate)
    runner.bench_time_func("uncontended: trio.CapacityLimiter", uncontended_limiter)
    runner.bench_time_func("uncontended+sink: sluicegate", uncontended_with_sink)
    for tasks in (100, 1_000, 10_000):
        for implementation in ("sluicegate", "trio.CapacityLimiter"):
            runner.bench_time_func(
                f"contended-{tasks} cap {CAP}: {implementation}",
                contended,
                tasks,
                implementation,
            )


if __name__ == "__main__":
    main()
