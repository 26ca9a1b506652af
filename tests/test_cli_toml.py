"""The TOML loader builds the same pipeline as the Python API: same fingerprint, same bytes."""

from __future__ import annotations

import importlib
import pathlib
import sys
import textwrap

import pytest

import sluicegate as sg
from sluicegate.datagen import PipelineConfigError, load_pipeline_file
from test_cli_support import GENERATORS, data_files

EVERY_KIND = """
name = "every-kind"

[run]
records = 30
buffer_size = 8
seed = 11

[providers.sim]
latency_seconds = 0.0

[providers.json]
kind = "factory"
factory = "cli_gens:json_provider"
options = { name = "json" }

[endpoints.llm]
model = "m"
provider = "sim"
max_parallel_requests = 8

[endpoints.structured]
model = "s"
provider = "json"
max_parallel_requests = 4
aliases = ["grader"]

[[columns]]
name = "topic"
kind = "sampler"
categories = ["a", "b", "c"]
weights = [1, 2, 3]

[[columns]]
name = "age"
kind = "sampler"
uniform = [18, 80]
integer = true

[[columns]]
name = "noise"
kind = "sampler"
normal = [0, 1]
drop = true

[[columns]]
name = "question"
kind = "llm_text"
prompt = "Ask a {age}-year-old about {topic} ({noise})."
model = "llm"
system = "Be brief."
max_tokens = 32
temperature = 0.5
weight = 2.0

[[columns]]
name = "verdict"
kind = "llm_structured"
prompt = "Grade: {question}"
model = "structured"
schema = "cli_gens:Verdict"
max_invalid_retries = 1

[[columns]]
name = "rubric"
kind = "judge"
prompt = "Judge {question}"
model = "grader"
scores = { clarity = "1 (muddled) to 5 (crisp)" }

[[columns]]
name = "opinion"
kind = "judge"
prompt = "Opinion on {question}?"
model = "llm"

[[columns]]
name = "n"
kind = "expression"
function = "cli_gens:word_count"

[[columns]]
name = "loud"
kind = "custom"
generator = "cli_gens:shout"
depends_on = ["n"]
scheduling = { kind = "local", identity = ["loud", 1], weight = 3 }
threaded = false
"""


@pytest.fixture
def gens(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> object:
    (tmp_path / "cli_gens.py").write_text(GENERATORS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cli_gens", None)
    return importlib.import_module("cli_gens")


def python_pipeline(g: object) -> sg.Pipeline:
    """The same pipeline, written with the Python API."""
    m = g.__dict__
    return sg.Pipeline(
        [
            sg.sampler("topic", ["a", "b", "c"], weights=[1, 2, 3]),
            sg.sampler("age", uniform=(18, 80), integer=True),
            sg.sampler("noise", normal=(0, 1), drop=True),
            sg.llm_text(
                "question",
                "Ask a {age}-year-old about {topic} ({noise}).",
                model="llm",
                system="Be brief.",
                max_tokens=32,
                temperature=0.5,
                weight=2.0,
            ),
            sg.llm_structured(
                "verdict",
                "Grade: {question}",
                schema=m["Verdict"],
                model="structured",
                max_invalid_retries=1,
            ),
            sg.judge(
                "rubric",
                "Judge {question}",
                model="grader",
                scores={"clarity": "1 (muddled) to 5 (crisp)"},
            ),
            sg.judge("opinion", "Opinion on {question}?", model="llm"),
            sg.expression("n", m["word_count"]),
            sg.column(
                "loud",
                m["shout"],
                depends_on=["n"],
                scheduling=sg.SchedulingMetadata(kind="local", identity=("loud", 1), weight=3),
                threaded=False,
            ),
        ],
        [
            sg.Endpoint("llm", model="m", provider="sim", max_parallel_requests=8),
            sg.Endpoint(
                "structured", model="s", provider="json", max_parallel_requests=4,
                aliases=("grader",),
            ),
        ],
        providers={
            "sim": sg.SimulatedProvider(name="sim", latency_seconds=0.0),
            "json": m["json_provider"]("json"),
        },
        name="every-kind",
    )  # fmt: skip


def test_toml_and_python_give_the_same_pipeline_and_the_same_bytes(
    tmp_path: pathlib.Path, gens: object
) -> None:
    path = tmp_path / "every.toml"
    path.write_text(EVERY_KIND)
    file = load_pipeline_file(path)
    by_python = python_pipeline(gens)
    settings = file.resolve().run_settings()
    assert file.pipeline.describe() == by_python.describe()
    assert file.pipeline.fingerprint_parts(settings) == by_python.fingerprint_parts(settings)
    options = file.resolve().run_options()
    from_toml = file.pipeline.run(30, output_dir=str(tmp_path / "toml"), **options)
    from_python = by_python.run(30, output_dir=str(tmp_path / "python"), **options)
    assert from_toml.status == from_python.status == "failure"  # row 3 of 'loud' raises
    assert from_toml.rows_written == from_python.rows_written == 29
    files = data_files(tmp_path / "toml")
    assert len(files) == 4 and files == data_files(tmp_path / "python")
    row = next(from_toml.rows())
    assert set(row) == {"topic", "age", "question", "verdict", "rubric", "opinion", "n", "loud"}
    assert row["verdict"]["reason"] == "ok" and set(row["rubric"]) == {"clarity"}


def test_the_file_runs_itself_with_its_settings(tmp_path: pathlib.Path, gens: object) -> None:
    path = tmp_path / "every.toml"
    path.write_text(EVERY_KIND)
    result = load_pipeline_file(path).run(output_dir=str(tmp_path / "out"), records=5)
    assert result.rows_generated == 5 and result.rows_written == 4  # row 3 raises
    assert result.row_groups_written == 1  # buffer_size 8 capped to the 5 records


def test_environment_references_in_endpoint_urls(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = textwrap.dedent(
        """
        [endpoints.a]
        model = "m"
        base_url = "${TEST_SG_URL:-http://127.0.0.1:9/v1}"

        [endpoints.b]
        model = "m2"
        base_url = "${TEST_SG_MISSING}"

        [[columns]]
        name = "q"
        kind = "llm_text"
        prompt = "hi"
        model = "a"
        """
    )
    path = tmp_path / "env.toml"
    path.write_text(text)
    monkeypatch.delenv("TEST_SG_MISSING", raising=False)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline_file(path)
    (problem,) = caught.value.problems
    assert problem.field == "endpoints.b.base_url" and problem.line == 8
    assert "TEST_SG_MISSING is not set" in problem.problem
    monkeypatch.setenv("TEST_SG_MISSING", "http://example.test/v1")
    monkeypatch.setenv("TEST_SG_URL", "http://127.0.0.1:8123/v1")
    endpoints = load_pipeline_file(path).pipeline.endpoints
    assert [e.base_url for e in endpoints] == ["http://127.0.0.1:8123/v1", "http://example.test/v1"]
