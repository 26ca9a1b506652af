"""``sluicegate demo``: a small pipeline on a simulated endpoint, in a few seconds, no network.

topic (sampled) -> question -> answer -> judge: three model columns calling one simulated
endpoint declared with ``max_parallel_requests=64`` that really serves only
``--hidden-capacity`` (24) calls at once and answers the rest with 429s. Request admission
learns that capacity (AIMD) while task admission and the row-group window keep every layer
bounded; the rows land in a run directory (a temporary one unless ``--out``), which the demo
prints. It is ``sluicegate run`` underneath: the same progress view, the same Ctrl-C
handling (one summary line; ``--debug`` adds tracebacks of errors), the same resume.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from rich.console import Console

from ..datagen import (
    Endpoint,
    Pipeline,
    SettingLayer,
    judge,
    llm_text,
    resolve_settings,
    sampler,
)
from ..datagen.profiles import LAYER_FLAGS
from ..providers import SimulatedProvider
from ..requests import RequestAdmissionConfig, RequestResourceSettings
from .exit_codes import EXIT_FAILURE, EXIT_SUCCESS, exit_code_for
from .run import RunOutcome, RunPlan, execute, rows_already_written, summary
from .target import PipelineTarget

MODEL = "demo-model"
STATIC_CAP = 64
"""The endpoint's declared ``max_parallel_requests``: well above what it really takes."""

TOPICS = ("physics", "biology", "history", "economics", "music", "chess", "cooking", "rivers")


def demo_pipeline(provider: SimulatedProvider) -> Pipeline:
    """The demo's four columns on one simulated endpoint served by ``provider``."""
    return Pipeline(
        [
            sampler("topic", TOPICS),
            llm_text("question", "Write one question about {topic}.", model="sim", max_tokens=32),
            llm_text("answer", "Answer briefly: {question}", model="sim", max_tokens=128),
            judge("judge", "Is this answer right?\nQ: {question}\nA: {answer}", model="sim"),
        ],
        [Endpoint("sim", model=MODEL, provider="sim", max_parallel_requests=STATIC_CAP)],
        providers={"sim": provider},
        name="demo",
    )


def _plan(args: argparse.Namespace, pipeline: Pipeline, output_dir: str) -> RunPlan:
    flags = {
        "records": args.rows,
        "task_capacity": args.capacity,
        "seed": args.seed,
        "buffer_size": max(1, min(100, args.rows)),
        "cell_backoff_seconds": 0.05,
        "events": args.events or True,
        "progress_interval": 5.0,
    }
    resolved = resolve_settings(
        [SettingLayer("demo flags", LAYER_FLAGS, flags, {k: f"--{k}" for k in flags})],
        subject="sluicegate demo",
    )
    # A short cooldown: the simulated endpoint's 429s ask to come back after 0.05 s.
    config = RequestAdmissionConfig(defaults=RequestResourceSettings(cooldown_seconds=0.05))
    target = PipelineTarget("demo", pipeline)
    before = rows_already_written(output_dir)
    return RunPlan(target, resolved, output_dir, False, False, before, request_config=config)


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo and print what each layer did; the exit status follows the run."""
    provider = SimulatedProvider(
        name="sim",
        seed=args.seed,
        latency_seconds=0.02,
        latency_jitter=0.5,
        capacity=args.hidden_capacity,
        retry_after_seconds=0.05,
        failure_rate=0.01,
    )
    pipeline = demo_pipeline(provider)
    output_dir = args.out or tempfile.mkdtemp(prefix="sluicegate-demo-")
    plan = _plan(args, pipeline, output_dir)
    columns = len(pipeline.columns)
    print(
        f"sluicegate demo: {args.rows} rows x {columns} columns = {args.rows * columns} cell "
        f"tasks -> {output_dir}",
        flush=True,
    )
    outcome = execute(plan, console=Console(file=sys.stdout))
    return _report(outcome, plan, provider, args)


def _report(
    outcome: RunOutcome, plan: RunPlan, provider: SimulatedProvider, args: argparse.Namespace
) -> int:
    result = outcome.result
    if result.status != "success":
        print(f"sluicegate demo: {summary(outcome, plan)}", file=sys.stderr, flush=True)
        return exit_code_for(result.status)
    stats = provider.stats
    wall = max(result.elapsed_seconds, 1e-9)
    share = stats.rate_limited / max(1, stats.calls)
    print(f"  {summary(outcome, plan)}")
    print(
        f"  {outcome.cells_finished:,} cells in {wall:.2f} s ({outcome.cells_finished / wall:,.0f} "
        f"cells/s), task capacity {args.capacity}"
    )
    print(
        f"  model calls: {stats.calls} attempts, {stats.successes} ok, {stats.rate_limited} rate "
        f"limited ({share:.1%}), {stats.failures} failed and retried"
    )
    endpoint = outcome.endpoints[0] if outcome.endpoints else None
    if endpoint is not None:
        print(
            f"  endpoint 'sim': hidden capacity {args.hidden_capacity}, static cap {STATIC_CAP}; "
            f"AIMD limit now {endpoint.limit}, at most {stats.max_in_flight} in flight"
        )
        print(
            f"  request admission at the end: {endpoint.in_flight} calls in flight, "
            f"{endpoint.waiters} waiters"
        )
    events = args.events or plan.output_dir
    print(f"  why it took this long: sluicegate report {events}")
    print(f"  rows: {plan.output_dir}/data/  (next: sluicegate preview examples/simulated.toml)")
    clean = endpoint is None or (endpoint.in_flight == 0 and endpoint.waiters == 0)
    return EXIT_SUCCESS if clean else EXIT_FAILURE
