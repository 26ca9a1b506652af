"""Export a run to OpenTelemetry: spans per run, task and model request, and GenAI metrics.

Needs the SDK (the `otel` extra: pip install 'sluicegate[otel]'); the library itself only uses
the OpenTelemetry API. Here the SDK keeps spans and metrics in memory; an application would
configure its exporters (OTLP, console) instead.
"""

import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sluicegate as sg
from sluicegate.observe import OpenTelemetryEventSink

exporter = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
reader = InMemoryMetricReader()
meter_provider = MeterProvider(metric_readers=[reader])

otel = OpenTelemetryEventSink(tracer_provider=tracer_provider, meter_provider=meter_provider)
controller = sg.AdaptiveRequestAdmissionController(
    [sg.ModelEndpoint(name="writer", provider="sim", model_id="writer-1", max_parallel_requests=4)],
    sink=otel,
)
executor = sg.ModelRequestExecutor(
    controller, {"sim": sg.SimulatedProvider(name="sim", latency_seconds=0.2, capacity=2)}
)


async def cell(task: sg.SchedulableTask) -> None:
    with sg.events.correlation_scope(column="summary", row=task.task_id):
        request = sg.ModelRequest(messages=[{"role": "user", "content": "summarize"}])
        await executor.execute("writer", request)


tracker = sg.DagCompletionTracker.from_tasks(
    [sg.SchedulableTask(i, group=sg.TaskGroupSpec("summary")) for i in range(6)]
)
scheduler = sg.AsyncTaskScheduler(tracker, cell, capacity=6, sink=otel, run_id="demo")
trio.run(scheduler.run, clock=trio.testing.MockClock(autojump_threshold=0))
otel.close()

spans = exporter.get_finished_spans()
children: dict[int | None, list] = {}
for span in spans:
    parent = span.parent.span_id if span.parent is not None else None
    children.setdefault(parent, []).append(span)


def show(parent: int | None, depth: int) -> None:
    for span in children.get(parent, []):
        # retried attempts are span events; the last attempt is the span's own outcome
        retried = [e for e in span.events if e.name == "sluicegate.request.attempt"]
        final = (span.attributes or {}).get("sluicegate.request.outcome")
        outcomes = [str((e.attributes or {}).get("sluicegate.attempt.outcome")) for e in retried]
        extra = f"  attempts: {','.join([*outcomes, str(final)])}" if final else ""
        print(f"{'  ' * depth}{span.kind.name:<8} {span.name}{extra}")
        show(span.context.span_id, depth + 1)


show(None, 0)
data = reader.get_metrics_data()
for metric in data.resource_metrics[0].scope_metrics[0].metrics:
    print("metric:", metric.name, metric.unit)
