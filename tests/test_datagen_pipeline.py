"""Building pipelines: columns, dependencies, templates, endpoints, metadata, settings."""

from __future__ import annotations

import msgspec
import pytest

import sluicegate.datagen as dg
from sluicegate.errors import ConfigurationError


def test_dependencies_come_from_parameters_templates_and_depends_on() -> None:
    def answer(question: str, ctx: dg.CellContext) -> str:
        return question

    def custom(row: dg.RowView, ctx: dg.CellContext) -> int:
        return 1

    pipeline = dg.Pipeline(
        [
            dg.sampler("topic", ["a", "b"]),
            dg.llm_text("question", "About {topic}: {topic!r}", model="w"),
            dg.column("answer", answer),
            dg.column("extra", custom, depends_on=["topic", "answer"]),
            dg.expression("size", lambda answer, topic: len(answer) + len(topic)),
        ]
    )
    deps = {c.name: c.depends_on for c in pipeline.columns}
    assert deps == {
        "topic": (),
        "question": ("topic",),
        "answer": ("question",),
        "extra": ("topic", "answer"),
        "size": ("answer", "topic"),
    }
    assert pipeline.columns[2].call_style.passes_ctx
    assert pipeline.columns[3].call_style.passes_row


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(dg.PipelineDefinitionError, match="declared twice"):
        dg.Pipeline([dg.sampler("a", [1]), dg.sampler("a", [2])])


def test_unknown_dependency_names_the_column_and_suggests() -> None:
    with pytest.raises(dg.PipelineDefinitionError) as info:
        dg.Pipeline([dg.sampler("topic", [1]), dg.column("b", lambda topik: topik)])
    assert info.value.field == "column 'b'.depends_on"
    assert "did you mean 'topic'" in str(info.value)


def test_template_placeholder_without_column_is_a_prompt_error() -> None:
    with pytest.raises(dg.PipelineDefinitionError) as info:
        dg.Pipeline([dg.sampler("topic", [1]), dg.llm_text("q", "About {topc}", model="m")])
    assert info.value.field == "column 'q'.prompt"
    assert "{topc}" in str(info.value) and "did you mean 'topic'" in str(info.value)


@pytest.mark.parametrize("text", ["{}", "{0}", "{ topic}", "unbalanced {"])
def test_bad_templates_are_rejected(text: str) -> None:
    with pytest.raises(dg.PipelineDefinitionError, match="prompt"):
        dg.llm_text("q", text, model="m")


def test_literal_braces_are_not_dependencies() -> None:
    column = dg.llm_text("q", 'Reply as {{"a": 1}} about {topic}', model="m")
    assert column.depends_on == ("topic",)
    assert dg.PromptTemplate('{{"a": {x}}}').render({"x": 2}) == '{"a": 2}'


def test_cycles_are_reported_with_their_path() -> None:
    with pytest.raises(dg.PipelineDefinitionError, match=r"cycle: .*a -> .*b|cycle: .*b -> .*a"):
        dg.Pipeline([dg.column("a", lambda b: b), dg.column("b", lambda a: a)])
    with pytest.raises(dg.PipelineDefinitionError, match="cycle"):
        dg.Pipeline([dg.column("a", lambda a: a)])


def test_unknown_endpoint_alias_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError) as info:
        dg.Pipeline(
            [dg.llm_text("q", "hi", model="writr")],
            endpoints=[dg.Endpoint("writer", model="m")],
        )
    assert info.value.field == "column 'q'.model"
    assert "did you mean 'writer'" in str(info.value)


def test_without_endpoints_every_alias_gets_a_simulated_endpoint() -> None:
    pipeline = dg.Pipeline([dg.llm_text("q", "hi", model="a"), dg.llm_text("r", "{q}", model="b")])
    assert [(e.alias, e.provider_name) for e in pipeline.endpoints] == [
        ("a", "simulated"),
        ("b", "simulated"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "remote"}, "SchedulingMetadata.kind"),
        ({"identity": ["x"]}, "SchedulingMetadata.identity"),
        ({"identity": ("x", 1.5)}, "SchedulingMetadata.identity[1]"),
        ({"identity": (object(),)}, "SchedulingMetadata.identity[0]"),
        ({"weight": 0}, "SchedulingMetadata.weight"),
        ({"weight": float("nan")}, "SchedulingMetadata.weight"),
    ],
)
def test_invalid_scheduling_metadata(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(dg.SchedulingMetadataError) as info:
        dg.SchedulingMetadata(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_scheduling_metadata_names_a_deterministic_group() -> None:
    meta = dg.SchedulingMetadata(kind="model", identity=("openai", "gpt"), weight=2)
    assert meta.group_key(("ignored",)) == "model:openai/gpt"
    assert meta.identity_hash(()) == dg.SchedulingMetadata(
        kind="model", identity=("openai", "gpt")
    ).identity_hash(())
    assert dg.SchedulingMetadata().group_key(("col",)) == "local:col"
    with pytest.raises(dg.SchedulingMetadataError, match="did you mean 'model'"):
        dg.SchedulingMetadata(kind="modle")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"categories": [1], "uniform": (0, 1)}, "exactly one"),
        ({"categories": []}, "empty"),
        ({"categories": "abc"}, "list of values"),
        ({"categories": [1, 2], "weights": [1]}, "2 categories"),
        ({"categories": [1, 2], "weights": [0, 0]}, "all weights are zero"),
        ({"uniform": (2, 1)}, "above high"),
        ({"uniform": (0.5, 2), "integer": True}, "whole-number"),
        ({"normal": (0, -1)}, "negative"),
    ],
)
def test_sampler_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(dg.PipelineDefinitionError, match=match):
        dg.sampler("s", **kwargs)  # type: ignore[arg-type]


def test_column_names_must_be_identifiers() -> None:
    with pytest.raises(dg.PipelineDefinitionError, match="valid column name"):
        dg.sampler("my column", [1])


def test_structured_schema_must_be_decodable() -> None:
    with pytest.raises(dg.PipelineDefinitionError, match="schema"):
        dg.llm_structured("s", "hi", schema=object, model="m")


def test_run_settings_reject_unknown_options_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError) as info:
        dg.RunSettings.from_options(10, {"bufer_size": 5})
    assert "did you mean 'buffer_size'" in str(info.value)
    with pytest.raises(ConfigurationError, match="buffer_size"):
        dg.RunSettings(records=1, buffer_size=0)
    with pytest.raises(ConfigurationError, match="output_format"):
        dg.RunSettings(records=1, output_format="csv")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="records"):
        dg.RunSettings(records=-1)


def test_endpoint_validation() -> None:
    with pytest.raises(ConfigurationError, match="max_parallel_requests"):
        dg.Endpoint("a", model="m", max_parallel_requests=0)
    with pytest.raises(ConfigurationError, match="base_url"):
        dg.Endpoint("a", model="m", base_url="ftp://x")
    with pytest.raises(ConfigurationError, match="api_key_env"):
        dg.Endpoint("a", model="m", api_key_env="KEY")
    with pytest.raises(ConfigurationError, match="declared twice"):
        dg.Pipeline(
            [dg.llm_text("q", "hi", model="a")],
            endpoints=[dg.Endpoint("a", model="m"), dg.Endpoint("b", model="m", aliases=("a",))],
        )
    assert dg.Endpoint("a", model="m", base_url="http://127.0.0.1:9/v1").provider_name == (
        "127.0.0.1:9"
    )


class Verdict(msgspec.Struct):
    score: int


def test_description_is_serializable_and_names_generators() -> None:
    def shout(topic: str) -> str:
        return topic.upper()

    pipeline = dg.Pipeline(
        [
            dg.sampler("topic", {"a": 2.0, "b": 1.0}),
            dg.column("loud", shout, keep_if=lambda row: True),
            dg.llm_structured("v", "Rate {loud}", schema=Verdict, model="m"),
            dg.judge("j", "Judge {loud}", model="m", scores={"clarity": "1-5"}),
        ]
    )
    text = msgspec.json.encode(pipeline.describe())
    described = msgspec.json.decode(text)
    columns = {c["name"]: c for c in described["columns"]}
    assert columns["topic"] == {
        "kind": "sampler",
        "name": "topic",
        "categories": ["a", "b"],
        "weights": [2.0, 1.0],
    }
    assert columns["loud"]["generator"].endswith(
        ":test_description_is_serializable_and_names_generators.<locals>.shout"
    )
    assert columns["v"]["schema"] == f"{__name__}:Verdict"
    assert columns["j"]["scores"] == {"clarity": "1-5"}
    decoded = msgspec.convert(columns["v"], dg.AnyColumnSpec)
    assert isinstance(decoded, dg.LLMStructuredColumnSpec)


def test_fingerprint_changes_with_output_relevant_settings_only() -> None:
    pipeline = dg.Pipeline([dg.sampler("a", [1, 2])])
    base = pipeline.fingerprint_parts(dg.RunSettings(records=10))
    assert base == pipeline.fingerprint_parts(dg.RunSettings(records=10, local_threads=3))
    assert (
        base["settings"]
        != pipeline.fingerprint_parts(dg.RunSettings(records=10, seed=1))["settings"]
    )
    other = dg.Pipeline([dg.sampler("a", [1, 3])]).fingerprint_parts(dg.RunSettings(records=10))
    assert other["column:a"] != base["column:a"]


def test_extract_json_strips_fences_and_prose() -> None:
    assert dg.extract_json('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert dg.extract_json('Sure! {"a": 1} hope it helps') == '{"a": 1}'
    assert dg.extract_json("[1, 2]") == "[1, 2]"
    assert dg.extract_json("no json") == "no json"
