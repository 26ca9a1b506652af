"""Structured output in simulation: JSON documents that follow the request's schema."""

from __future__ import annotations

import random
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate.providers.json_instances import instance_of, json_schema_of
from sluicegate.testing import EmulatorConfig, serve_emulator


class Address(msgspec.Struct):
    city: str
    zip_code: str


class Person(msgspec.Struct):
    name: str
    age: int
    height: float
    member: bool
    role: Literal["admin", "user", "guest"]
    tags: list[str]
    address: Address
    nickname: str | None = None
    scores: dict[str, int] = {}


def _schema(kind: Any) -> dict[str, Any]:
    return msgspec.json.schema(kind)


@pytest.mark.parametrize("seed", range(20))
def test_documents_decode_into_the_struct_they_were_drawn_for(seed: int) -> None:
    document = instance_of(_schema(Person), random.Random(seed))
    person = msgspec.convert(document, Person)
    assert person.role in ("admin", "user", "guest")
    assert isinstance(person.address, Address)


@settings(max_examples=60, deadline=None)
@given(
    low=st.integers(-50, 50),
    span=st.integers(0, 30),
    items=st.integers(0, 3),
    seed=st.integers(0, 2**32),
)
def test_numeric_and_length_bounds_hold(low: int, span: int, items: int, seed: int) -> None:
    from typing import Annotated

    kind = msgspec.defstruct(
        "Shaped",
        [
            ("n", Annotated[int, msgspec.Meta(ge=low, le=low + span)]),
            ("x", Annotated[float, msgspec.Meta(gt=low, lt=low + span + 1)]),
            ("s", Annotated[str, msgspec.Meta(min_length=3, max_length=12)]),
            ("xs", Annotated[list[int], msgspec.Meta(min_length=items, max_length=items + 2)]),
        ],
    )
    document = instance_of(_schema(kind), random.Random(seed))
    msgspec.convert(document, kind)  # raises if any bound is broken


def test_the_same_seed_gives_the_same_document() -> None:
    schema = _schema(Person)
    assert instance_of(schema, random.Random(7)) == instance_of(schema, random.Random(7))


def test_response_formats_are_recognized() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    wrapped = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert json_schema_of({"response_format": wrapped}) == schema
    assert json_schema_of({"guided_json": schema}) == schema
    assert json_schema_of({"response_format": {"type": "json_object"}}) == {"type": "object"}
    assert json_schema_of({"response_format": {"type": "text"}}) is None
    assert json_schema_of({"seed": 3}) is None
    assert json_schema_of(None) is None


def _request(schema: dict[str, Any] | None) -> sg.ModelRequest:
    wrapped = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    extra = None if schema is None else {"response_format": wrapped}
    return sg.ModelRequest(messages=[{"role": "user", "content": "a person"}], extra=extra)


async def test_the_simulated_provider_answers_json_when_asked_for_a_schema() -> None:
    provider = sg.SimulatedProvider(name="sim", latency_seconds=0.0, seed=3)
    structured = await provider.call("m", _request(_schema(Person)))
    assert isinstance(structured.content, str)
    msgspec.json.decode(structured.content, type=Person)
    plain = await provider.call("m", _request(None))
    assert isinstance(plain.content, str) and plain.content.startswith("simulated completion")


async def test_the_emulator_passes_the_schema_through_http() -> None:
    config = EmulatorConfig(capacity=4, latency_seconds=0.0)
    async with (
        serve_emulator(config) as emulator,
        sg.OpenAICompatibleProvider(base_url=emulator.base_url) as provider,
    ):
        response = await provider.call("m", _request(_schema(Person)))
    assert isinstance(response.content, str)
    msgspec.json.decode(response.content, type=Person)
