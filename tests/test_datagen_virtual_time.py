"""sluicegate.testing.virtual_time: deterministic virtual-time runs."""

from __future__ import annotations

import importlib
import pathlib
import tempfile

import pytest
import trio

import sluicegate.datagen as dg
from sluicegate.events import InMemoryEventSink
from sluicegate.providers import SimulatedProvider
from sluicegate.testing import deterministic_scheduling, run_virtual, virtual_clock


async def interleaving() -> list[tuple[int, int]]:
    trace: list[tuple[int, int]] = []

    async def tracer(name: int) -> None:
        for step in range(20):
            trace.append((name, step))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for name in range(5):
            nursery.start_soon(tracer, name)
    return trace


def test_same_seed_same_scheduling_order() -> None:
    first = run_virtual(interleaving, scheduling_seed=1)
    assert first == run_virtual(interleaving, scheduling_seed=1)
    others = {tuple(run_virtual(interleaving, scheduling_seed=seed)) for seed in range(2, 12)}
    assert len(others) > 1  # the seed matters: it is not a fixed order


def test_trio_state_is_restored() -> None:
    module = importlib.import_module("trio._core._run")
    before = (module._ALLOW_DETERMINISTIC_SCHEDULING, module._r.getstate())
    with deterministic_scheduling(3):
        assert module._ALLOW_DETERMINISTIC_SCHEDULING is True
    assert (module._ALLOW_DETERMINISTIC_SCHEDULING, module._r.getstate()) == before


def test_a_missing_hook_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("trio._core._run")
    monkeypatch.delattr(module, "_ALLOW_DETERMINISTIC_SCHEDULING")
    with (
        pytest.raises(RuntimeError, match="no deterministic scheduling hook"),
        deterministic_scheduling(),
    ):
        pass


def test_a_pipeline_repeats_its_event_sequence_exactly() -> None:
    def once() -> tuple[list[tuple[object, ...]], list[bytes], float]:
        pipeline = dg.Pipeline(
            [
                dg.sampler("topic", ["a", "b", "c"]),
                dg.llm_text("q", "about {topic}", model="w"),
                dg.llm_text("a", "answer {q}", model="w"),
                dg.judge("j", "judge {a}", model="j"),
            ],
            providers={
                "simulated": SimulatedProvider(
                    latency_seconds=0.05, latency_jitter=0.5, failure_rate=0.1, capacity=6
                )
            },
        )
        sink = InMemoryEventSink()
        out = tempfile.mkdtemp()
        clock = virtual_clock()
        run_virtual(
            pipeline.arun, 40, output_dir=out, events=sink, buffer_size=8, seed=2, clock=clock
        )
        trace = [
            (e.event_kind, e.sequence, e.captured_at, getattr(e, "task_id", None))
            for e in sink.events
        ]
        files = [p.read_bytes() for p in sorted(pathlib.Path(out, "data").iterdir())]
        return trace, files, clock.current_time()

    first = once()
    assert first == once()
    assert len(first[0]) > 900
