"""Structured output, judges with scores, keep_if and an exact number of passing rows.

The endpoint here is a tiny scripted provider (any object with ``name`` and an async
``call(model_id, request)`` is a Provider): it answers JSON, sometimes invalid, the way a real
model occasionally does. Invalid answers are asked again; rows that never decode are dropped
with the reason, and ``exact=True`` generates more rows until 30 pass.

Run: .venv/bin/python examples/pipeline_structured.py
"""

import hashlib
import tempfile

import msgspec
import trio

import sluicegate as sg
from sluicegate.requests import ModelRequest, ModelResponse


class Recipe(msgspec.Struct):
    title: str
    minutes: int


class ScriptedModel:
    name = "scripted"

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        await trio.sleep(0.001)
        prompt = request.messages[-1]["content"] if request.messages else ""
        n = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:2], "big")
        if model_id == "judge":
            return ModelResponse(content=f'{{"taste": {{"score": {n % 5 + 1}, "reason": "ok"}}}}')
        if n % 7 == 0:
            return ModelResponse(content="Sorry, here is a recipe: pancakes!")  # not JSON
        return ModelResponse(content=f'{{"title": "dish {n}", "minutes": {n % 90}}}')


pipeline = sg.Pipeline(
    [
        sg.sampler("cuisine", ["thai", "italian", "mexican"]),
        sg.llm_structured("recipe", "Invent a {cuisine} recipe.", schema=Recipe, model="cook"),
        sg.judge(
            "rating",
            "Rate this recipe: {recipe.title}",
            model="critic",
            scores={"taste": "1 (bland) to 5 (great)"},
            keep_if=lambda row: row["rating"]["taste"].score >= 3,
        ),
    ],
    endpoints=[
        sg.Endpoint("cook", model="cook", provider="scripted"),
        sg.Endpoint("critic", model="judge", provider="scripted"),
    ],
    providers={"scripted": ScriptedModel()},
)
with tempfile.TemporaryDirectory() as out:
    result = pipeline.run(30, output_dir=out, exact=True, buffer_size=10)
    print(f"{result.status}: {result.rows_written} rows passed out of {result.rows_generated}")
    print(f"filtered by: {result.filtered}, failed: {result.failures}")
    row = next(result.rows())
    print("a row:", row["cuisine"], row["recipe"], row["rating"]["taste"]["score"])
