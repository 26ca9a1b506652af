"""Structured columns ask the server for their schema (response_format) unless told not to."""

from __future__ import annotations

import pathlib
from typing import Any

import msgspec
import pytest

import sluicegate as sg
from sluicegate import datagen as dg


class QA(msgspec.Struct):
    question: str
    difficulty: int


class Recording:
    """A provider that remembers each request and answers like the simulated provider."""

    def __init__(self) -> None:
        self.name = "rec"
        self.inner = sg.SimulatedProvider(name="rec", latency_seconds=0.0, seed=1)
        self.requests: list[sg.ModelRequest] = []

    async def call(self, model_id: str, request: sg.ModelRequest) -> sg.ModelResponse:
        self.requests.append(request)
        return await self.inner.call(model_id, request)


def _pipeline(provider: Recording, how: str) -> sg.Pipeline:
    return sg.Pipeline(
        [
            sg.sampler("topic", ["physics", "art"]),
            sg.llm_structured(
                "qa", "A question about {topic}", schema=QA, model="m", response_format=how
            ),
            sg.judge(
                "verdict",
                "Judge {qa}",
                model="m",
                scores={"accuracy": "is it right"},
                response_format=how,
            ),
        ],
        endpoints=[sg.Endpoint("m", model="m", provider="rec")],
        providers={"rec": provider},
    )


async def test_structured_columns_send_their_schema_and_decode_the_answer(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    provider = Recording()
    result = await _pipeline(provider, "json_schema").arun(4, output_dir=str(tmp_path))
    assert result.ok and result.rows_written == 4
    formats = [r.extra["response_format"] for r in provider.requests if r.extra]
    assert len(formats) == len(provider.requests) == 8
    schemas = {f["json_schema"]["name"]: f["json_schema"]["schema"] for f in formats}
    assert set(schemas) == {"qa", "verdict"}
    assert schemas["verdict"]["required"] == ["accuracy"]
    for row in result.rows():
        assert set(row["qa"]) == {"question", "difficulty"}
        assert isinstance(row["verdict"]["accuracy"]["score"], float | int)


async def test_prompt_mode_sends_no_response_format(
    autojump_clock: Any, tmp_path: pathlib.Path
) -> None:
    provider = Recording()
    result = await _pipeline(provider, "prompt").arun(2, output_dir=str(tmp_path))
    # the simulated server then answers free text, which is not the schema: rows fail
    assert all(r.extra is None for r in provider.requests)
    assert result.rows_written == 0
    assert all("schema" in r.messages[-1]["content"] or "JSON" in r.messages[-1]["content"]
               for r in provider.requests)  # fmt: skip


def test_an_unknown_response_format_names_the_column_and_the_choices() -> None:
    with pytest.raises(dg.PipelineDefinitionError, match=r"'qa'.*response_format.*json_schema"):
        sg.llm_structured("qa", "x", schema=QA, model="m", response_format="json-schema")


def test_pipeline_files_take_response_format(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        """
[endpoints.m]
model = "m"

[[columns]]
name = "topic"
kind = "sampler"
categories = ["a", "b"]

[[columns]]
name = "verdict"
kind = "judge"
prompt = "Judge {topic}"
model = "m"
scores = { accuracy = "is it right" }
response_format = "prompt"
"""
    )
    loaded = dg.load_pipeline_file(path)
    (spec,) = [c for c in loaded.pipeline.describe()["columns"] if c["name"] == "verdict"]
    assert spec["response_format"] == "prompt"
    path.write_text(path.read_text().replace('"prompt"', '"jsonschema"'))
    with pytest.raises(dg.PipelineConfigError, match="response_format"):
        dg.load_pipeline_file(path)
