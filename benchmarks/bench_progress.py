"""What the live progress panel costs a run: the same zero-latency run with and without it.

A 100,000-row pipeline (a sampler, a model column on a zero-latency ``SimulatedProvider`` and
an expression: 300,000 cells) run the way ``sluicegate run`` runs it: a ``RunControl``, the
pipeline in one task, and - for the ``panel`` variant - the :class:`TerminalProgress` task
redrawing a rich ``Live`` panel 4 times a second from snapshots (a forced terminal writing
to /dev/null, so the full render and write happen). ``lines`` prints a plain line every
second (10x the default rate). ``off`` has no view at all: the floor.

The variants run interleaved (off, panel, lines, off, panel, lines, ...) in one process so a
noisy machine slows them alike; the result is the per-round ratio to ``off`` (median and
spread) plus wall and CPU times. Each run writes a fresh run directory.

Run: .venv/bin/python benchmarks/bench_progress.py [--records 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import trio
from rich.console import Console

import sluicegate as sg
from sluicegate.cli import TerminalProgress
from sluicegate.datagen import RunControl

VARIANTS = ("off", "panel", "lines")


def pipeline() -> sg.Pipeline:
    return sg.Pipeline(
        [
            sg.sampler("topic", ["a", "b", "c", "d"]),
            sg.llm_text("question", "Ask about {topic}.", model="llm"),
            sg.expression("length", lambda question: len(question)),
        ],
        [sg.Endpoint("llm", model="m", provider="sim", max_parallel_requests=64)],
        providers={"sim": sg.SimulatedProvider(name="sim", latency_seconds=0.0)},
        name="bench",
    )


class TimedProgress(TerminalProgress):
    """The terminal view, also counting the seconds spent taking snapshots and drawing."""

    spent = 0.0

    def sample(self, control: RunControl) -> object:
        started = time.perf_counter()
        try:
            return super().sample(control)
        finally:
            self.spent += time.perf_counter() - started

    def draw(self, control: RunControl) -> object:
        started = time.perf_counter()
        spent = self.spent
        try:
            return super().draw(control)
        finally:  # draw() calls sample(): count its time once
            self.spent = spent + time.perf_counter() - started


def view_for(variant: str) -> TimedProgress | None:
    if variant == "off":
        return None
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed after the run
    console = Console(file=devnull, force_terminal=True, width=100)
    return TimedProgress(
        "panel" if variant == "panel" else "lines",
        console=console,
        stream=devnull,
        line_interval=1.0,
    )


async def one_run(variant: str, records: int, out: str) -> sg.RunResult:
    control = RunControl()
    view = view_for(variant)
    async with trio.open_nursery() as nursery:
        if view is not None:
            await nursery.start(view.run, control)
        try:
            result = await pipeline().arun(
                records,
                output_dir=out,
                control=control,
                progress=view,
                buffer_size=1000,
                events=False,  # the view's cost, not the events file's
            )
        finally:
            nursery.cancel_scope.cancel()
    if view is not None:
        view.console.file.close()
        SPENT[variant].append(view.spent)
        print(
            f"    {variant}: {view.frames} frames, {view.spent:.3f} s in the view", file=sys.stderr
        )
    return result


SPENT: dict[str, list[float]] = {v: [] for v in VARIANTS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {' '.join(platform.uname())}")
    print(f"# nproc {os.cpu_count()}, python {platform.python_version()}")
    print(f"# command: {' '.join([sys.executable, *sys.argv])}")
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            # Alternate the order so a slow drift of the machine does not favour one variant.
            order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                out = f"{tmp}/{variant}-{round_index}"
                wall0, cpu0 = time.perf_counter(), time.process_time()
                result = trio.run(one_run, variant, args.records, out)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                assert result.status == "success" and result.rows_written == args.records
                walls[variant].append(wall)
                cpus[variant].append(cpu)
                print(f"round {round_index} {variant:<6} wall {wall:7.2f} s  cpu {cpu:7.2f} s")
    print()
    print(
        "| variant | wall s (median) | cpu s (median) | wall / off per round | median | "
        "cpu / off per round | median | in the view, share of wall (median) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in VARIANTS:
        walled = [w / o for w, o in zip(walls[variant], walls["off"], strict=True)]
        cpued = [c / o for c, o in zip(cpus[variant], cpus["off"], strict=True)]
        shares = [s / w for s, w in zip(SPENT[variant], walls[variant], strict=False)]
        share = f"{statistics.median(shares):.2%}" if shares else "-"
        print(
            f"| {variant} | {statistics.median(walls[variant]):.2f} | "
            f"{statistics.median(cpus[variant]):.2f} | "
            + ", ".join(f"{r:.3f}" for r in walled)
            + f" | {statistics.median(walled):.3f} | "
            + ", ".join(f"{r:.3f}" for r in cpued)
            + f" | {statistics.median(cpued):.3f} | {share} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
