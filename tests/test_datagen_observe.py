"""A pipeline run's model calls as observability sees them: the attempts CellCalls makes for one
call (pausing between them itself) are one logical request - one request id, attempt numbers
that continue, ``will_retry`` as it is - so a retried 429 is one CLIENT span without an error,
the runtime view counts requests and attempts apart, and a call that fails on every attempt is
one span with ``error.type``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import sluicegate.datagen as dg
from sluicegate import ConfigurationError
from sluicegate.events import FanOutEventSink, InMemoryEventSink
from sluicegate.observe import CorrelatedRuntimeView, build_report, render_text
from sluicegate.requests import (
    AdaptiveRequestAdmissionController,
    ModelEndpoint,
    ModelRequest,
    ModelRequestError,
    ModelRequestExecutor,
    ProviderConnectionError,
    ProviderRateLimitedError,
)
from sluicegate.testing import run_virtual
from test_datagen_support import FunctionProvider, prompt_of
from test_observe_otel import Otel

ROWS = 12


@pytest.fixture
def otel() -> Iterator[Otel]:
    found = Otel()
    yield found
    found.tracer_provider.shutdown()
    found.meter_provider.shutdown()


def first_call_of_every_third_prompt_is_429() -> Callable[[str, ModelRequest], str]:
    seen: dict[str, int] = {}

    def answer(model: str, request: ModelRequest) -> str:
        prompt = prompt_of(request)
        seen[prompt] = seen.get(prompt, 0) + 1
        if seen[prompt] == 1 and len(seen) % 3 == 1:
            raise ProviderRateLimitedError("HTTP 429: slow down", retry_after=0.5)
        return f"ok {prompt}"

    return answer


def run(answer: Callable[[str, ModelRequest], str], otel: Otel, **options: Any) -> Any:
    """Run a one-model-column pipeline of ``ROWS`` rows (unique prompts) into both sinks."""
    memory = InMemoryEventSink()
    sink = otel.sink()
    pipeline = dg.Pipeline(
        [
            dg.sampler("n", uniform=(0, 10**9), integer=True),  # distinct prompts
            dg.llm_text("q", "Question {n}", model="w"),
        ],
        endpoints=[dg.Endpoint("w", model="m", provider="p", max_parallel_requests=4)],
        providers={"p": FunctionProvider(answer=answer)},
    )
    result = run_virtual(
        pipeline.arun,
        ROWS,
        output_dir=tempfile.mkdtemp(),
        events=FanOutEventSink([memory, sink]),
        seed=1,
        **options,
    )
    sink.close()
    return result, memory


def client_spans(otel: Otel) -> list[ReadableSpan]:
    return [s for s in otel.spans() if s.kind is SpanKind.CLIENT]


def duration_error_types(otel: Otel) -> list[object]:
    metric = otel.metrics()["gen_ai.client.operation.duration"]
    return [dict(p.attributes or {}).get("error.type") for p in metric.data.data_points]


def test_a_retried_429_is_one_client_span_without_error(otel: Otel) -> None:
    result, memory = run(first_call_of_every_third_prompt_is_429(), otel)
    assert result.ok, result.message
    completed = memory.of_kind("model_request_completed")
    assert [e.outcome for e in completed].count("rate_limited") == 4
    spans = client_spans(otel)
    assert len(spans) == ROWS  # one per cell that made a call, not one per attempt
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)
    assert all("error.type" not in (s.attributes or {}) for s in spans)
    attempts = sorted((s.attributes or {})["sluicegate.request.attempts"] for s in spans)
    assert attempts == [1] * (ROWS - 4) + [2] * 4
    retried = [s for s in spans if (s.attributes or {})["sluicegate.request.attempts"] == 2]
    for span in retried:  # the 429 is an attempt event of the request's span
        (event,) = [e for e in span.events if e.name == "sluicegate.request.attempt"]
        assert (event.attributes or {})["sluicegate.attempt.outcome"] == "rate_limited"
        assert (event.attributes or {})["sluicegate.attempt"] == 1
    assert duration_error_types(otel) == [None]  # no point with error.type=rate_limited
    # The events themselves: one request id per call, attempts 1 then 2, the 429 retried.
    by_request: dict[int | None, list[tuple[int | None, bool]]] = {}
    for e in completed:
        assert e.call is not None
        by_request.setdefault(e.request_id, []).append((e.attempt, e.call.will_retry))
    assert len(by_request) == ROWS
    assert (
        sorted(by_request.values()) == [[(1, False)]] * (ROWS - 4) + [[(1, True), (2, False)]] * 4
    )


def test_the_view_and_report_count_logical_requests_and_their_attempts(otel: Otel) -> None:
    result, memory = run(first_call_of_every_third_prompt_is_429(), otel)
    assert result.ok, result.message
    view = CorrelatedRuntimeView(memory.events)
    requests = view.requests
    assert len(requests) == ROWS
    assert sum(len(r.attempts) for r in requests) == ROWS + 4
    endpoint = view.endpoints["w"]
    assert (endpoint.requests, endpoint.attempts) == (ROWS, ROWS + 4)
    # CellCalls' pause between the 429 and the retry is the request's retry backoff.
    backoff = view.layer_waits()["retry_backoff"]
    assert backoff.count == 4 and backoff.max >= 0.5
    assert f"{ROWS} requests, {ROWS + 4} attempts" in render_text(build_report(view))


def test_a_call_failing_on_every_attempt_is_one_span_with_error_type(otel: Otel) -> None:
    doomed: list[str] = []

    def answer(model: str, request: ModelRequest) -> str:
        prompt = prompt_of(request)
        if not doomed:
            doomed.append(prompt)  # the first prompt the endpoint sees never gets an answer
        if prompt == doomed[0]:
            raise ProviderRateLimitedError("HTTP 429: slow down", retry_after=0.5)
        return "ok"

    result, memory = run(
        answer,
        otel,
        request_max_attempts=3,
        cell_max_attempts=1,
        salvage_rounds=0,
        error_rate_threshold=1.0,
    )
    assert result.rows_failed == 1
    spans = client_spans(otel)
    assert len(spans) == ROWS
    (failed,) = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    attributes = failed.attributes or {}
    assert attributes["error.type"] == "rate_limited"
    assert attributes["sluicegate.request.attempts"] == 3
    assert len([e for e in failed.events if e.name == "sluicegate.request.attempt"]) == 2
    assert sorted(duration_error_types(otel), key=str) == [None, "rate_limited"]
    trail = [
        (e.attempt, e.call.will_retry if e.call else None)
        for e in memory.of_kind("model_request_completed")
        if e.outcome == "rate_limited"
    ]
    assert trail == [(1, True), (2, True), (3, False)]
    (request,) = [r for r in CorrelatedRuntimeView(memory.events).requests if len(r.attempts) > 1]
    assert request.outcome == "rate_limited" and len(request.attempts) == 3


# -- the executor's continuation parameters --------------------------------------------------


class Failing:
    name = "fake"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def call(self, model_id: str, request: ModelRequest) -> Any:
        await trio.sleep(0.1)
        raise self.error


def executor(
    sink: InMemoryEventSink, max_attempts: int, error: Exception | None = None
) -> ModelRequestExecutor:
    controller = AdaptiveRequestAdmissionController(
        [ModelEndpoint(name="gen", provider="fake", model_id="m", max_parallel_requests=2)],
        sink=sink,
    )
    provider = Failing(error or ProviderRateLimitedError("HTTP 429", retry_after=None))
    return ModelRequestExecutor(
        controller, {"fake": provider}, max_attempts=max_attempts, backoff_jitter=0.0
    )


REQUEST = ModelRequest(messages=[{"role": "user", "content": "hello"}])


async def test_execute_continues_a_callers_attempts_and_reports_its_retry(
    autojump_clock: Any,
) -> None:
    sink = InMemoryEventSink()
    ex = executor(sink, max_attempts=2)
    with pytest.raises(ModelRequestError) as caught:
        await ex.execute("gen", REQUEST, attempt=3, will_retry=True)
    assert caught.value.attempts == 4  # attempts 3 and 4: this call made two, as configured
    trail = [
        (e.attempt, e.call and e.call.will_retry) for e in sink.of_kind("model_request_completed")
    ]
    assert trail == [(3, True), (4, True)]  # the caller retries after the last one
    # A continuation is no new request, and a failure the caller retries is no failed one.
    assert (ex.stats.requests, ex.stats.attempts, ex.stats.failed) == (0, 2, 0)
    with pytest.raises(ModelRequestError):
        await ex.execute("gen", REQUEST)  # the defaults: unchanged behaviour
    trail = [
        (e.attempt, e.call and e.call.will_retry) for e in sink.of_kind("model_request_completed")
    ]
    assert trail[2:] == [(1, True), (2, False)]
    assert (ex.stats.requests, ex.stats.attempts, ex.stats.failed) == (1, 4, 1)


async def test_a_failed_call_hands_its_request_id_to_the_next(autojump_clock: Any) -> None:
    """``ModelRequestError.request_id`` passed back as ``execute(request_id=)`` continues the
    request in events; without a sink there is no id (nothing is set per call)."""
    sink = InMemoryEventSink()
    ex = executor(sink, max_attempts=1)
    with pytest.raises(ModelRequestError) as first:
        await ex.execute("gen", REQUEST, will_retry=True)
    rid = first.value.request_id
    assert rid is not None
    with pytest.raises(ModelRequestError) as second:
        await ex.execute("gen", REQUEST, attempt=2, request_id=rid)
    assert second.value.request_id == rid
    ids = {e.request_id for e in sink.of_kind("model_request_completed")}
    assert ids == {rid}  # one logical request in the events
    quiet = ModelRequestExecutor(
        AdaptiveRequestAdmissionController(
            [ModelEndpoint(name="gen", provider="fake", model_id="m", max_parallel_requests=2)]
        ),
        {"fake": Failing(ProviderRateLimitedError("HTTP 429", retry_after=None))},
        max_attempts=1,
    )
    with pytest.raises(ModelRequestError) as silent:
        await quiet.execute("gen", REQUEST)
    assert silent.value.request_id is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempt": 0}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"attempt": 1.0}, "attempt"),
        ({"will_retry": 1}, "will_retry"),
        ({"will_retry": None}, "will_retry"),
    ],
)
async def test_execute_rejects_a_bad_attempt_or_will_retry(
    kwargs: dict[str, Any], field: str
) -> None:
    sink = InMemoryEventSink()
    ex = executor(sink, max_attempts=1)
    with pytest.raises(ConfigurationError) as caught:
        await ex.execute("gen", REQUEST, **kwargs)
    assert caught.value.field == f"ModelRequestExecutor.execute({field}=)"
    assert "Fix:" in str(caught.value)
    assert not sink.events  # rejected before anything was admitted


async def test_a_retried_unreachable_endpoint_is_announced_as_retried(autojump_clock: Any) -> None:
    # execute retries a connection failure (and CellCalls retries the ModelRequestError it
    # ends with), so its model_request_completed says will_retry, like a retried 429.
    sink = InMemoryEventSink()
    refused = ProviderConnectionError("refused", url="http://x", cause="refused")
    ex = executor(sink, max_attempts=2, error=refused)
    with pytest.raises(ModelRequestError):
        await ex.execute("gen", REQUEST)
    trail = [
        (e.outcome, e.call.will_retry if e.call else None)
        for e in sink.of_kind("model_request_completed")
    ]
    assert trail == [("connection_failed", True), ("connection_failed", False)]
