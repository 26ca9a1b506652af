"""The OpenTelemetry bridge: span tree, GenAI conventions, bounded attributes, trio traps."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import sluicegate as sg
from sluicegate.observe import (
    METRIC_ATTRIBUTES,
    SPAN_ATTRIBUTES,
    BoundedAttributes,
    OpenTelemetryEventSink,
)

REQUEST = sg.ModelRequest(messages=[{"role": "user", "content": "secret prompt"}], max_tokens=8)


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def sink(self, **kwargs: Any) -> OpenTelemetryEventSink:
        return OpenTelemetryEventSink(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        out = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out[metric.name] = metric
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    found = Otel()
    yield found
    found.tracer_provider.shutdown()
    found.meter_provider.shutdown()


def build(
    sink: sg.EventSink,
    worker_factory: Any,
    *,
    tasks: int = 6,
    capacity: int = 4,
    provider: sg.SimulatedProvider | None = None,
    max_attempts: int = 5,
    retry: sg.RetryPolicy | None = None,
) -> sg.AsyncTaskScheduler:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=8)],
        sink=sink,
    )
    executor = sg.ModelRequestExecutor(
        controller,
        {"sim": provider or sg.SimulatedProvider(name="sim", latency_seconds=0.5, seed=3)},
        max_attempts=max_attempts,
        backoff_seconds=0.1,
    )
    tracker = sg.DagCompletionTracker.from_tasks(
        [
            sg.SchedulableTask(f"task-{i}", None, sg.TaskGroupSpec(f"col{i % 2}"))
            for i in range(tasks)
        ]
    )
    return sg.AsyncTaskScheduler(
        tracker,
        worker_factory(executor),
        capacity=capacity,
        sink=sink,
        run_id="run-7",
        retry=retry,
    )


def calls(n: int) -> Any:
    def factory(executor: sg.ModelRequestExecutor) -> Any:
        async def worker(task: sg.SchedulableTask) -> None:
            with sg.events.correlation_scope(column=task.group.key, row=int(task.task_id[5:])):
                for _ in range(n):
                    await executor.execute("m", REQUEST)

        return worker

    return factory


def by_kind(
    spans: list[ReadableSpan],
) -> tuple[ReadableSpan, list[ReadableSpan], list[ReadableSpan]]:
    runs = [s for s in spans if s.name == "sluicegate.run"]
    tasks = [s for s in spans if s.name.startswith("task")]
    requests = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(runs) == 1 and len(runs) + len(tasks) + len(requests) == len(spans)
    return runs[0], tasks, requests


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def assert_inside(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.start_time is not None and child.end_time is not None
    assert parent.start_time is not None and parent.end_time is not None
    assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time


def run_virtual(fn: Any, *args: Any) -> Any:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


def test_one_trace_per_run_with_cells_and_genai_request_spans(otel: Otel) -> None:
    # hidden capacity 2 behind a cap of 8: some attempts are answered 429 and retried
    provider = sg.SimulatedProvider(
        name="sim", latency_seconds=0.5, capacity=2, retry_after_seconds=0.2, seed=4
    )
    sink = otel.sink()
    result = run_virtual(build(sink, calls(2), tasks=6, provider=provider).run)
    assert result.counts["succeeded"] == 6
    run, tasks, requests = by_kind(otel.spans())
    assert run.parent is None and run.kind == SpanKind.INTERNAL
    assert run.attributes is not None and run.attributes["sluicegate.run.id"] == "run-7"
    assert len(tasks) == 6 and len(requests) == 12
    task_ids = {t.context.span_id: t for t in tasks}
    for task in tasks:
        assert parent_of(task) == run.context.span_id and task.kind == SpanKind.INTERNAL
        assert task.name in ("task col0", "task col1")
        assert (
            task.attributes is not None and task.attributes["sluicegate.task.status"] == "succeeded"
        )
        assert_inside(task, run)
        assert {s.context.trace_id for s in (run, task)} == {run.context.trace_id}
    retried = 0
    for span in requests:
        assert span.name == "chat m"
        parent = task_ids[parent_of(span)]  # every request under its own cell
        assert_inside(span, parent)
        attributes = span.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "sim"
        assert attributes["gen_ai.request.model"] == "m"
        assert attributes["gen_ai.response.model"] == "m"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["sluicegate.column"] in ("col0", "col1")
        # one event per retried attempt; the final attempt is the span's own outcome
        retries = [e for e in span.events if e.name == "sluicegate.request.attempt"]
        outcomes = [(e.attributes or {}).get("sluicegate.attempt.outcome") for e in retries]
        assert attributes["sluicegate.request.outcome"] == "success"
        assert attributes["sluicegate.request.attempts"] == len(retries) + 1
        assert [(e.attributes or {}).get("sluicegate.attempt") for e in retries] == list(
            range(1, len(retries) + 1)
        )
        assert all(o is not None and o != "success" for o in outcomes)
        assert attributes["sluicegate.attempt.duration"] >= 0.0
        if "rate_limited" in outcomes:
            retried += 1
        # a retried 429 is not an error
        assert span.status.status_code == StatusCode.UNSET and "error.type" not in attributes
    assert retried > 0
    per_task = {tid: 0 for tid in task_ids}
    for span in requests:
        per_task[parent_of(span)] += 1  # type: ignore[index]
    assert set(per_task.values()) == {2}


def test_genai_and_sluicegate_metrics(otel: Otel) -> None:
    provider = sg.SimulatedProvider(
        name="sim", latency_seconds=0.5, capacity=2, retry_after_seconds=0.2, seed=4
    )
    run_virtual(build(otel.sink(), calls(1), tasks=8, capacity=6, provider=provider).run)
    metrics = otel.metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert point.count == 8
    assert list(point.explicit_bounds) == [0.01 * 2**i for i in range(14)]
    assert dict(point.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "sim",
        "gen_ai.request.model": "m",
        "gen_ai.response.model": "m",
    }
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    types = {p.attributes["gen_ai.token.type"]: p.count for p in tokens.data.data_points}
    assert types == {"input": 8, "output": 8}
    admissions = metrics["sluicegate.task.admissions"].data.data_points
    assert sum(p.value for p in admissions) == 8
    assert {p.attributes["sluicegate.task.group"] for p in admissions} == {"col0", "col1"}
    assert sum(p.value for p in metrics["sluicegate.request.rate_limits"].data.data_points) > 0
    changes = metrics["sluicegate.request.limit.changes"].data.data_points
    assert {p.attributes["sluicegate.direction"] for p in changes} >= {"decrease"}
    (limit,) = metrics["sluicegate.request.limit"].data.data_points
    assert 1 <= limit.value <= 8
    waited = {
        p.attributes["sluicegate.layer"]: p.value
        for p in metrics["sluicegate.wait.time"].data.data_points
    }
    assert {"task_queue", "request_admission", "retry_backoff"} <= set(waited)
    assert all(seconds > 0 for seconds in waited.values())
    counts = {
        p.attributes["sluicegate.layer"]: p.value
        for p in metrics["sluicegate.waits"].data.data_points
    }
    assert set(counts) == set(waited) and all(n >= 1 for n in counts.values())


def test_attributes_are_bounded_and_never_ids_or_content(otel: Otel) -> None:
    run_virtual(build(otel.sink(), calls(1), tasks=5).run)
    spans = otel.spans()
    for span in spans:
        keys = set(span.attributes or {})
        for event in span.events:
            keys |= set(event.attributes or {})
        assert keys <= SPAN_ATTRIBUTES, keys - SPAN_ATTRIBUTES
        values = [str(v) for v in (span.attributes or {}).values()]
        assert not any("task-" in v or "secret" in v for v in values)
    for metric in otel.metrics().values():
        for point in metric.data.data_points:
            assert set(point.attributes) <= METRIC_ATTRIBUTES


def test_bounded_attributes_refuse_unknown_keys_and_cap_values() -> None:
    labels = BoundedAttributes(METRIC_ATTRIBUTES, max_values_per_key=2)
    with pytest.raises(sg.ConfigurationError, match=r"sluicegate\.task\.id"):
        labels.of({"sluicegate.task.id": "t1"})
    groups = [labels.of({"sluicegate.task.group": g})["sluicegate.task.group"] for g in "abcab"]
    assert groups == ["a", "b", "_OTHER", "a", "b"] and labels.overflowed == {
        "sluicegate.task.group": 1
    }
    assert labels.of({"server.address": None}) == {}


def test_a_child_task_span_parents_to_its_cell_not_to_the_current_span(otel: Otel) -> None:
    """Workers fan out into child tasks; the application has its own span current around
    the run. Requests land under their cell; the run lands under the application's span."""
    tracer = otel.tracer_provider.get_tracer("app")

    def fanout(executor: sg.ModelRequestExecutor) -> Any:
        async def call() -> None:
            await executor.execute("m", REQUEST)

        async def worker(task: sg.SchedulableTask) -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(call)

        return worker

    scheduler = build(otel.sink(), fanout, tasks=4, capacity=2)

    async def main() -> None:
        with tracer.start_as_current_span("application"):
            await scheduler.run()

    run_virtual(main)
    spans = otel.spans()
    app = next(s for s in spans if s.name == "application")
    run, tasks, requests = by_kind([s for s in spans if s is not app])
    assert parent_of(run) == app.context.span_id
    task_ids = {t.context.span_id for t in tasks}
    counts: dict[int | None, int] = {}
    for span in requests:
        counts[parent_of(span)] = counts.get(parent_of(span), 0) + 1
    assert set(counts) == task_ids and set(counts.values()) == {3}


def test_no_span_is_current_across_awaits_or_async_generator_yields(otel: Otel) -> None:
    seen: list[trace.Span] = []
    tracer = otel.tracer_provider.get_tracer("app")

    def streaming(executor: sg.ModelRequestExecutor) -> Any:
        async def answers() -> AsyncIterator[str]:
            for _ in range(3):
                response = await executor.execute("m", REQUEST)
                seen.append(trace.get_current_span())
                yield response.content
                seen.append(trace.get_current_span())

        async def worker(task: sg.SchedulableTask) -> None:
            async for _ in answers():
                seen.append(trace.get_current_span())

        return worker

    scheduler = build(otel.sink(), streaming, tasks=3)

    async def main() -> None:
        with tracer.start_as_current_span("application"):
            await scheduler.run()

    run_virtual(main)
    spans = otel.spans()
    app = next(s for s in spans if s.name == "application")
    # the bridge never made one of its spans current: user code always sees its own span
    assert seen and {s.get_span_context().span_id for s in seen} == {app.context.span_id}
    _, tasks, requests = by_kind([s for s in spans if s is not app])
    assert len(tasks) == 3 and len(requests) == 9
    assert all(s.end_time is not None for s in spans)


def test_cancellation_ends_spans_as_cancelled_not_as_errors_and_still_exports(
    otel: Otel,
) -> None:
    provider = sg.SimulatedProvider(name="sim", latency_seconds=10.0, seed=1)
    sink = otel.sink()
    scheduler = build(sink, calls(1), tasks=6, capacity=3, provider=provider)

    async def main() -> None:
        with trio.move_on_after(3.0):  # cancels the run mid-call
            await scheduler.run()

    run_virtual(main)
    spans = otel.spans()  # no close(): the run's own end already ended every span
    run, tasks, requests = by_kind(spans)
    assert len(tasks) == 3 and len(requests) == 3
    for span in [run, *tasks, *requests]:
        assert span.status.status_code == StatusCode.UNSET, span.name
        assert "error.type" not in (span.attributes or {})
    assert {(t.attributes or {})["sluicegate.task.status"] for t in tasks} == {"cancelled"}
    assert {(r.attributes or {})["sluicegate.request.outcome"] for r in requests} == {
        "local_cancelled"
    }
    assert (run.attributes or {})["sluicegate.task.status"] == "cancelled"
    duration = otel.metrics().get("gen_ai.client.operation.duration")
    assert duration is None or not duration.data.data_points  # cancelled calls are not timed


def test_close_ends_what_a_killed_run_left_open(otel: Otel) -> None:
    sink = otel.sink()
    em = sg.events.EventEmitter(sink)
    em.scheduler("scheduler_job_started", diagnostics={"run_id": "r"})
    em.scheduler("ready_enqueued", task_id="task-1", group="g")
    em.scheduler("task_dispatched", task_id="task-1", group="g", lease_id=1, attempt=1)
    assert otel.spans() == []
    sink.close()
    sink.close()  # idempotent
    run, (task,), _ = by_kind(otel.spans())
    assert (task.attributes or {})["sluicegate.incomplete"] is True
    assert (run.attributes or {})["sluicegate.incomplete"] is True


def test_a_final_failure_sets_error_type(otel: Otel) -> None:
    provider = sg.SimulatedProvider(name="sim", latency_seconds=0.1, failure_rate=1.0, seed=1)
    # One task attempt: the model error is retryable, so the scheduler would otherwise retry
    # the task and only its last execution would be the final failure.
    result = run_virtual(
        build(
            otel.sink(),
            calls(1),
            tasks=2,
            provider=provider,
            max_attempts=2,
            retry=sg.RetryPolicy(max_attempts=1),
        ).run
    )
    assert result.counts["failed"] == 2
    _, tasks, requests = by_kind(otel.spans())
    for span in requests:
        assert span.status.status_code == StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "provider_failure"
        # two attempts: the first is a span event, the last is the span's outcome
        (retried,) = [e for e in span.events if e.name == "sluicegate.request.attempt"]
        assert (retried.attributes or {})["sluicegate.attempt.outcome"] == "provider_failure"
        assert (span.attributes or {})["sluicegate.request.attempts"] == 2
        assert (span.attributes or {})["sluicegate.request.outcome"] == "provider_failure"
    for span in tasks:
        assert span.status.status_code == StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "ModelRequestError"
    (point,) = otel.metrics()["gen_ai.client.operation.duration"].data.data_points
    assert point.attributes["error.type"] == "provider_failure" and point.count == 2


def test_requests_of_each_endpoint_and_server_get_their_own_names_and_attributes(
    otel: Otel,
) -> None:
    # the bridge caches attribute sets per endpoint and per response server: each must keep
    # its own (emitted directly, with the calls' server and token fields)
    sink = otel.sink()
    em = sg.events.EventEmitter(sink)
    em.scheduler("scheduler_job_started", diagnostics={"run_id": "r"})
    calls_made = [
        ("sim", "a", "chat", "host-1", 443, 11),
        ("sim", "b", "embedding", "host-2", 8443, 12),
        ("sim", "a", "chat", "host-2", 8443, 13),
        ("sim", "a", "chat", None, None, 14),
    ]
    for rid, (provider, model, domain, address, port, tokens) in enumerate(calls_made, 1):
        where = {"provider": provider, "model_id": model, "domain": domain, "request_id": rid}
        em.request("model_request_started", attempt=1, **where)  # type: ignore[arg-type]
        report = sg.events.ModelCallReport(
            duration_seconds=0.25,
            input_tokens=tokens,
            output_tokens=2 * tokens,
            response_model=f"{model}-v1",
            server_address=address,
            server_port=port,
        )
        em.request(
            "model_request_completed",
            attempt=1,
            outcome="success",
            call=report,
            **where,  # type: ignore[arg-type]
        )
    em.scheduler("scheduler_job_completed")
    sink.close()
    _, _, requests = by_kind(otel.spans())
    got = [
        (
            s.name,
            (s.attributes or {}).get("server.address"),
            (s.attributes or {}).get("server.port"),
            (s.attributes or {})["gen_ai.usage.input_tokens"],
            (s.attributes or {})["gen_ai.response.model"],
            (s.attributes or {})["gen_ai.operation.name"],
        )
        for s in requests
    ]
    assert sorted(got, key=str) == sorted(
        [
            ("chat a", "host-1", 443, 11, "a-v1", "chat"),
            ("embeddings b", "host-2", 8443, 12, "b-v1", "embeddings"),
            ("chat a", "host-2", 8443, 13, "a-v1", "chat"),
            ("chat a", None, None, 14, "a-v1", "chat"),
        ],
        key=str,
    )
    for span in requests:
        assert not span.events  # one attempt each: nothing retried
        assert (span.attributes or {})["sluicegate.attempt.duration"] == 0.25
    points = otel.metrics()["gen_ai.client.operation.duration"].data.data_points
    by_server = {
        (p.attributes["gen_ai.request.model"], p.attributes.get("server.address")): p.count
        for p in points
    }
    assert by_server == {("a", "host-1"): 1, ("b", "host-2"): 1, ("a", "host-2"): 1, ("a", None): 1}


def test_a_failed_request_span_names_its_server_too(otel: Otel) -> None:
    sink = otel.sink()
    em = sg.events.EventEmitter(sink)
    em.scheduler("scheduler_job_started", diagnostics={"run_id": "r"})
    where = {"provider": "p", "model_id": "m", "domain": "chat", "request_id": 1}
    em.request("model_request_started", attempt=1, **where)  # type: ignore[arg-type]
    report = sg.events.ModelCallReport(
        duration_seconds=0.5,
        error_type="ProviderFailureError",
        http_status=500,
        server_address="llm.internal",
        server_port=8000,
    )
    em.request(
        "model_request_completed",
        attempt=1,
        outcome="provider_failure",
        call=report,
        **where,  # type: ignore[arg-type]
    )
    em.scheduler("scheduler_job_completed")
    sink.close()
    _, _, (span,) = by_kind(otel.spans())
    attributes = span.attributes or {}
    assert span.status.status_code == StatusCode.ERROR
    assert attributes["error.type"] == "provider_failure"
    assert (attributes["server.address"], attributes["server.port"]) == ("llm.internal", 8000)


def test_admission_waits_are_span_events_and_counted(otel: Otel) -> None:
    # twelve cells at once behind an endpoint cap of 8: some requests wait for admission
    run_virtual(build(otel.sink(), calls(1), tasks=12, capacity=12).run)
    _, _, requests = by_kind(otel.spans())
    waits = [
        (e.attributes or {})["sluicegate.request.admission_wait"]
        for span in requests
        for e in span.events
        if e.name == "sluicegate.request.admission_wait"
    ]
    assert waits and all(w > 0 for w in waits)
    (points,) = [m.data.data_points for n, m in otel.metrics().items() if n == "sluicegate.waits"]
    counted = {p.attributes["sluicegate.layer"]: p.value for p in points}
    assert counted["request_admission"] == len(waits)


def test_a_sampler_that_drops_every_span_still_counts_every_request() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    otel = Otel()
    otel.tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    otel.tracer_provider.add_span_processor(SimpleSpanProcessor(otel.exporter))
    provider = sg.SimulatedProvider(
        name="sim", latency_seconds=0.5, capacity=2, retry_after_seconds=0.2, seed=4
    )
    result = run_virtual(build(otel.sink(), calls(1), tasks=6, provider=provider).run)
    assert result.counts["succeeded"] == 6 and result.sink_errors == 0
    assert otel.spans() == []
    (point,) = otel.metrics()["gen_ai.client.operation.duration"].data.data_points
    assert point.count == 6
    otel.tracer_provider.shutdown()
    otel.meter_provider.shutdown()


def test_span_sampling_traces_a_share_of_tasks_but_counts_all(otel: Otel) -> None:
    run_virtual(build(otel.sink(span_sampling=0.25), calls(1), tasks=8).run)
    _, tasks, requests = by_kind(otel.spans())
    assert len(tasks) == 2 and len(requests) == 2
    (point,) = otel.metrics()["gen_ai.client.operation.duration"].data.data_points
    assert point.count == 8
    with pytest.raises(sg.ConfigurationError, match="span_sampling"):
        OpenTelemetryEventSink(span_sampling=1.5)


@pytest.mark.parametrize("opted_in", [False, True])
def test_message_content_is_recorded_only_when_the_user_opts_in(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, opted_in: bool
) -> None:
    if opted_in:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    else:
        monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    events = sg.InMemoryEventSink()
    sink = sg.events.FanOutEventSink([otel.sink(), events])
    result = run_virtual(build(sink, calls(1), tasks=2).run)
    sink.close()
    assert result.counts["succeeded"] == 2
    _, _, requests = by_kind(otel.spans())
    completed = [e for e in events.events if e.event_kind == "model_request_completed"]
    assert len(requests) == 2 and len(completed) == 2
    for span, event in zip(requests, completed, strict=True):
        attributes = span.attributes or {}
        assert event.call is not None
        if not opted_in:
            assert "gen_ai.input.messages" not in attributes
            assert "gen_ai.output.messages" not in attributes
            assert event.call.input_messages is None and event.call.output_messages is None
            continue
        sent = json.loads(str(attributes["gen_ai.input.messages"]))
        assert sent == [{"role": "user", "parts": [{"type": "text", "content": "secret prompt"}]}]
        (answer,) = json.loads(str(attributes["gen_ai.output.messages"]))
        assert answer["role"] == "assistant" and answer["parts"][0]["type"] == "text"
        assert answer["parts"][0]["content"]
        assert event.call.input_messages == attributes["gen_ai.input.messages"]
    # never on metrics, whatever the setting
    for metric in otel.metrics().values():
        for point in metric.data.data_points:
            assert "secret prompt" not in str(dict(point.attributes or {}))


def test_capture_content_must_be_a_bool_or_none() -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=8)]
    )
    with pytest.raises(sg.ConfigurationError, match="capture_content"):
        sg.ModelRequestExecutor(
            controller,
            {"sim": sg.SimulatedProvider(name="sim")},
            capture_content="yes",  # type: ignore[arg-type]
        )


def test_without_an_sdk_the_bridge_is_a_no_op() -> None:
    sink = OpenTelemetryEventSink()  # global providers: the API's no-op ones in this process
    result = run_virtual(build(sink, calls(1), tasks=3).run)
    assert result.counts["succeeded"] == 3 and result.sink_errors == 0


# Modules allowed to import the SDK: the CLI's `--otel console|otlp` setup, once it exists
# (paths relative to src/sluicegate). The import-linter cannot express this contract because
# `opentelemetry` is a namespace package shared by the API and the SDK.
SDK_IMPORTERS_ALLOWED: tuple[str, ...] = ("cli/otel_setup.py",)


def test_the_library_never_imports_the_opentelemetry_sdk() -> None:
    src = Path(sg.__file__).parent
    for path in src.rglob("*.py"):
        if str(path.relative_to(src)) in SDK_IMPORTERS_ALLOWED:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.startswith("opentelemetry.sdk") for n in names), path
    probe = (
        "import sys, sluicegate, sluicegate.observe, sluicegate.observe.otel; "
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')]"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
