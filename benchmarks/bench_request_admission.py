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

Comparing code trees (before/after a change) on a noisy machine::

    .venv/bin/python benchmarks/bench_request_admission.py --trees \
        before=/tmp/trees/before after=src --rounds 15

loads each tree's ``sluicegate`` package under its own name in this one process and
alternates short timed runs of every scenario (each tree, then ``trio.CapacityLimiter``)
round after round, timing the thread's CPU time (time.thread_time) rather than wall time.
It prints medians and, per tree, the median of the per-round ratios to the limiter: slow
drift in the machine's load hits all contenders of a round alike.
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


def _contended(
    loops: int,
    tasks: int,
    make_step: Callable[[], Callable[[], Any]],
    clock: Callable[[], float] = time.perf_counter,
) -> float:
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
                    started_at = clock()
                elif done == total:
                    finished_at = clock()

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


def _load_tree(name: str, root: str) -> Any:
    """The ``sluicegate`` package under ``root`` (a ``src`` dir) imported as ``name``."""
    import importlib.util
    import pathlib
    import sys

    init = pathlib.Path(root) / "sluicegate" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _tree_step(package: Any) -> Callable[[], Callable[[], Any]]:
    requests = getattr(package, "requests", package)  # the layout moved the item types

    def make() -> Callable[[], Any]:
        key = package.RequestResourceKey("bench", "model", "chat")
        item = requests.RequestAdmissionItem(resource=key)
        success = requests.RequestReleaseOutcome("success")
        admission = package.AdaptiveRequestAdmissionController(
            [
                package.ModelEndpoint(
                    name="bench", provider="bench", model_id="model", max_parallel_requests=CAP
                )
            ]
        )
        acquire, release = admission.acquire, admission.release
        checkpoint = trio.lowlevel.checkpoint

        async def step() -> None:
            lease = await acquire(item)
            await checkpoint()
            release(lease, success)

        return step

    return make


def compare_trees(trees: list[str], rounds: int, loops: int) -> None:
    """Interleaved rounds of every scenario for every tree and the limiter (see module doc)."""
    import statistics

    contenders: dict[str, Callable[[], Callable[[], Any]]] = {"trio.CapacityLimiter": limiter_step}
    for spec in trees:
        name, _, root = spec.partition("=")
        contenders[name] = _tree_step(_load_tree(f"_sg_tree_{name}", root))
    for tasks in (100, 1_000, 10_000):
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, make in contenders.items():
                # CPU time of this thread: being descheduled on a loaded machine is not
                # charged to whichever contender happened to be running
                elapsed = _contended(loops, tasks, make, time.thread_time)
                times[name].append(elapsed / loops * 1e6)
        floor = times["trio.CapacityLimiter"]
        print(f"contended-{tasks} cap {CAP} ({rounds} rounds of {loops} steps):")
        for name, values in times.items():
            ratios = [v / f for v, f in zip(values, floor, strict=True)]
            print(
                f"  {name:22s} median {statistics.median(values):7.2f} us"
                f"  (min {min(values):6.2f})  ratio to limiter {statistics.median(ratios):.3f}"
            )


def main() -> None:
    import sys

    if "--trees" in sys.argv:
        args = sys.argv[sys.argv.index("--trees") + 1 :]
        rounds = 15
        if "--rounds" in args:
            at = args.index("--rounds")
            rounds = int(args[at + 1])
            del args[at : at + 2]
        compare_trees(args, rounds, loops=20_000)
        return
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
