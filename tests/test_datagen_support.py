"""Test doubles for the datagen tests: a provider whose answers and latency are functions of the
request (so structured output, failures and latency per row can be scripted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from sluicegate.requests import ModelRequest, ModelResponse, ProviderFailureError


def prompt_of(request: ModelRequest) -> str:
    """The last user message of a chat request."""
    assert request.messages is not None
    return str(request.messages[-1]["content"])


@attrs.define(eq=False)
class FunctionProvider:
    """Answers ``answer(model_id, request)`` after ``latency(model_id, request)`` seconds.

    ``answer`` may raise a provider error to script failures. Tracks calls in flight per
    model (``max_in_flight``) and when each model first had ``n`` calls in flight at once.
    """

    name: str = "fn"
    answer: Callable[[str, ModelRequest], Any] = lambda model, request: (
        f"{model}:{prompt_of(request)}"
    )
    latency: Callable[[str, ModelRequest], float] = lambda model, request: 0.01
    calls: int = 0
    in_flight: dict[str, int] = attrs.field(factory=dict)
    max_in_flight: dict[str, int] = attrs.field(factory=dict)
    overlap: list[tuple[float, dict[str, int]]] = attrs.field(factory=list)

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.in_flight[model_id] = self.in_flight.get(model_id, 0) + 1
        self.max_in_flight[model_id] = max(
            self.max_in_flight.get(model_id, 0), self.in_flight[model_id]
        )
        self.overlap.append((trio.current_time(), dict(self.in_flight)))
        try:
            await trio.sleep(self.latency(model_id, request))
            return ModelResponse(content=self.answer(model_id, request), model=model_id)
        finally:
            self.in_flight[model_id] -= 1


def failing(message: str = "boom", *, retryable: bool = True) -> ProviderFailureError:
    return ProviderFailureError(message, status=500 if retryable else 400, retryable=retryable)


async def test_function_provider_answers_and_tracks_overlap(autojump_clock: Any) -> None:
    provider = FunctionProvider()
    request = ModelRequest(messages=[{"role": "user", "content": "hi"}])
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(provider.call, "m", request)
    assert provider.calls == 3
    assert provider.max_in_flight == {"m": 3}
    response = await provider.call("m", request)
    assert response.content == "m:hi"
