"""Helpers for the CLI tests: small pipeline files on the simulated provider, and running the
``sluicegate`` command in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

GENERATORS = '''
"""Generators the test pipeline files name as module:function."""

import time

import msgspec

from sluicegate.requests import ModelResponse


def word_count(question):
    return len(question.split())


def shout(topic, ctx):
    if ctx.row_index == 3:
        raise ValueError("row 3 is broken")
    return topic.upper()


def never(row):
    return False


def slow(topic, ctx):
    # In a worker thread: a cell that takes a while to finish. The marker file (in the run's
    # working directory) tells a test that cells are running, whatever the machine's load.
    open("slow-cell-started", "a").close()
    time.sleep(1.5)
    return ctx.row_index


class Verdict(msgspec.Struct):
    score: int
    reason: str


class JsonProvider:
    name = "json"

    async def call(self, model_id, request):
        text = request.messages[-1]["content"]
        score = '{"score": %d, "reason": "ok"}' % (len(text) % 7)
        if "Score these criteria" in text:
            return ModelResponse(content='{"clarity": %s}' % score)
        return ModelResponse(content=score)


def json_provider(name="json"):
    provider = JsonProvider()
    provider.name = name
    return provider
'''


def pipeline_text(
    *,
    records: int = 20,
    buffer_size: int = 5,
    latency: float = 0.0,
    extra: str = "",
    run_extra: str = "",
) -> str:
    """A four-column pipeline (sampler, two model columns, an expression) plus ``extra``."""
    return textwrap.dedent(
        f"""
        name = "t"

        [run]
        records = {records}
        buffer_size = {buffer_size}
        seed = 3
        {run_extra}

        [providers.sim]
        latency_seconds = {latency}

        [endpoints.llm]
        model = "m"
        provider = "sim"
        max_parallel_requests = 16

        [[columns]]
        name = "topic"
        kind = "sampler"
        categories = ["a", "b", "c"]

        [[columns]]
        name = "question"
        kind = "llm_text"
        prompt = "Ask about {{topic}}."
        model = "llm"

        [[columns]]
        name = "n"
        kind = "expression"
        function = "cli_gens:word_count"

        [[columns]]
        name = "answer"
        kind = "llm_text"
        prompt = "Answer {{question}}"
        model = "llm"
        """
    ) + textwrap.dedent(extra)


def write_pipeline(folder: pathlib.Path, name: str = "pipeline.toml", **options: object) -> str:
    """Write the generators module and a pipeline file into ``folder``; the file's path."""
    (folder / "cli_gens.py").write_text(GENERATORS)
    path = folder / name
    path.write_text(pipeline_text(**options))  # type: ignore[arg-type]
    return str(path)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: no SLUICEGATE_* settings leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: pathlib.Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m sluicegate ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "sluicegate", *args],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def data_files(run_dir: pathlib.Path) -> dict[str, bytes]:
    """The row-group files of a run directory, by name."""
    return {p.name: p.read_bytes() for p in sorted((run_dir / "data").glob("part-*"))}
