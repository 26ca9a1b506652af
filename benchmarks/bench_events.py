"""What observability costs: one cell = one task through the scheduler making one model call
through the ``ModelRequestExecutor`` and the adaptive controller to a zero-latency
``SimulatedProvider`` (the worst case for overhead: no latency hides anything). Time is per cell.

Variants (same run, only the sink differs):

- ``bare_trio_model_call``: the floor, a hand-written program doing the same calls (every task
  spawned at once under one ``trio.CapacityLimiter``, calling the provider directly).
- ``cells[sink=none]``: nothing configured (events are never built).
- ``cells[sink=discard]``: a sink that drops every event (what building them costs).
- ``cells[sink=jsonl]``: ``JsonLinesEventSink`` writing both streams to a file.
- ``cells[sink=otel]``: ``OpenTelemetryEventSink`` with the SDK, spans to a no-op exporter
  through a ``SimpleSpanProcessor``, metrics to an ``InMemoryMetricReader``.
- ``cells[sink=otel,span_sampling=0.1]``: the same tracing one task in ten.
- ``cells[sink=otel,span_sampling=0]``: no spans, the metrics only (the GenAI histograms).
- ``cells[sink=otel,providers=api_noop]``: the bridge with the OpenTelemetry API's own no-op
  providers (what a library user without the SDK pays): every span is non-recording, so the
  bridge skips the attribute work it does only for recorded spans.
- ``cells[sink=otel,providers=null_recording]``: the bridge's own cost for a fully traced run:
  spans that say they record but whose methods do nothing, and the API's no-op meter. The
  bridge does all its work (attribute sets, span events, histogram records); the SDK does
  none. ``otel`` minus this is what the SDK costs for the calls the bridge makes.

Two more, for splitting the JSON Lines sink's cost in time (``--variants``, interleaved only):
``retain`` keeps each batch of 1,024 events in a list and drops it (what holding the events
costs), ``encode`` also encodes each batch with the sink's encoder and writes nothing.
``jsonl`` minus ``encode`` is then the write.

``--latency 0.02`` gives the simulated provider a latency (default 0: the worst case).

Three ways to run it:

    python benchmarks/bench_events.py --fast                  # pyperf, one benchmark per variant
    python benchmarks/bench_events.py --interleaved 9         # rounds of every variant, ratios
    python benchmarks/bench_events.py --interleaved 40 --tasks 2000 \
        --variants none,discard,retain,encode,jsonl             # the JSON Lines cost, split
    python benchmarks/bench_events.py --guards                # cost of the disabled-event checks
    python benchmarks/bench_events.py --sdk                   # the OpenTelemetry SDK alone
    python benchmarks/bench_events.py --replay 9              # the sinks alone, replaying events

The machine these run on is shared: prefer ``--interleaved`` (each round runs every variant
back to back in a rotating order and the ratios come from the same round) and CPU time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import trio
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api

import sluicegate as sg
from sluicegate.events.emitter import EventEmitter
from sluicegate.observe import OpenTelemetryEventSink

REQUEST = sg.ModelRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8)

VARIANTS = (
    "none",
    "discard",
    "jsonl",
    "otel",
    "otel_sampled",
    "otel_metrics",
    "otel_api_noop",
    "otel_null",
)

LATENCY_SECONDS = 0.0
"""The simulated provider's latency (``--latency``)."""


class _DiscardSink:
    """Drops every event: the events are built, nothing is written."""

    def emit(self, event: object) -> None:
        return None


class _BatchSink:
    """Keeps events in batches as ``JsonLinesEventSink`` does; at a full batch, optionally
    encodes it with the same encoder, then drops it (nothing is written)."""

    def __init__(self, encode: bool, batch: int = 1024) -> None:
        self._pending: list[object] = []
        self._batch = batch
        self._encoder = msgspec.json.Encoder(enc_hook=repr) if encode else None

    def emit(self, event: object) -> None:
        pending = self._pending
        pending.append(event)
        if len(pending) >= self._batch:
            if self._encoder is not None:
                self._encoder.encode_lines(pending)
            self._pending = []


def _provider() -> sg.SimulatedProvider:
    return sg.SimulatedProvider(name="sim", latency_seconds=LATENCY_SECONDS, seed=1)


def _otel_sink(span_sampling: float) -> tuple[OpenTelemetryEventSink, Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class NoOpExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(NoOpExporter()))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    sink = OpenTelemetryEventSink(
        tracer_provider=tracer_provider, meter_provider=meter_provider, span_sampling=span_sampling
    )

    def finish() -> None:
        sink.close()
        reader.get_metrics_data()  # the collection is part of the cost
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return sink, finish


class _NullSpan(trace_api.Span):
    """A span that says it records and does nothing: the bridge does all its work."""

    _context = trace_api.SpanContext(
        0x1, 0x1, is_remote=False, trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED)
    )

    def end(self, end_time: int | None = None) -> None:
        return None

    def get_span_context(self) -> trace_api.SpanContext:
        return self._context

    def set_attributes(self, attributes: Any) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        return None

    def update_name(self, name: str) -> None:
        return None

    def is_recording(self) -> bool:
        return True

    def set_status(self, status: Any, description: str | None = None) -> None:
        return None

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        return None


class _NullTracer(trace_api.Tracer):
    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace_api.Span:
        return _NullSpan()

    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class _NullTracerProvider(trace_api.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        return _NullTracer()


def _sink(variant: str, folder: Path) -> tuple[sg.EventSink | None, Callable[[], None]]:
    if variant == "none":
        return None, lambda: None
    if variant == "discard":
        return _DiscardSink(), lambda: None
    if variant in ("retain", "encode"):
        return _BatchSink(encode=variant == "encode"), lambda: None
    if variant == "jsonl":
        file_sink = sg.JsonLinesEventSink(folder / "events.jsonl", append=False)
        return file_sink, lambda: None if file_sink.close().healthy else sys.exit("lost events")
    if variant == "otel":
        return _otel_sink(1.0)
    if variant == "otel_sampled":
        return _otel_sink(0.1)
    if variant == "otel_metrics":
        return _otel_sink(0.0)
    if variant == "otel_api_noop":
        noop = OpenTelemetryEventSink(
            tracer_provider=trace_api.NoOpTracerProvider(),
            meter_provider=metrics_api.NoOpMeterProvider(),
        )
        return noop, noop.close
    if variant == "otel_null":
        null = OpenTelemetryEventSink(
            tracer_provider=_NullTracerProvider(), meter_provider=metrics_api.NoOpMeterProvider()
        )
        return null, null.close
    raise ValueError(variant)


def _cells(n: int, capacity: int, sink: sg.EventSink | None) -> sg.AsyncTaskScheduler:
    """A scheduler over ``n`` cells, each making one model call through the executor and the
    adaptive controller to a zero-latency provider, every layer reporting to ``sink``."""
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=capacity)],
        sink=sink,
    )
    executor = sg.ModelRequestExecutor(controller, {"sim": _provider()})

    async def cell(task: sg.SchedulableTask) -> None:
        await executor.execute("m", REQUEST)

    tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask(i) for i in range(n)])
    return sg.AsyncTaskScheduler(tracker, cell, capacity=capacity, sink=sink)


def one_run(n: int, capacity: int, variant: str, folder: Path) -> float:
    """Seconds (wall) for one run of ``n`` cells with the ``variant`` sink, closing included."""
    sink, finish = _sink(variant, folder)
    scheduler = _cells(n, capacity, sink)
    t0 = time.perf_counter()
    result = trio.run(scheduler.run)
    finish()
    elapsed = time.perf_counter() - t0
    assert result.counts["succeeded"] == n
    return elapsed


def bare_trio(n: int, capacity: int) -> float:
    """The floor: every task spawned at once, each entering one ``CapacityLimiter``."""

    async def main() -> None:
        limiter = trio.CapacityLimiter(capacity)
        provider = _provider()

        async def task() -> None:
            async with limiter:
                await provider.call("m", REQUEST)

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(task)

    t0 = time.perf_counter()
    trio.run(main)
    return time.perf_counter() - t0


# -- pyperf ---------------------------------------------------------------------------------


def _pyperf_main(argv: list[str]) -> None:
    import pyperf

    def forward(cmd: list[str], args: Any) -> None:
        cmd.extend(["--tasks", str(args.tasks), "--capacity", str(args.capacity)])
        cmd.extend(["--latency", str(LATENCY_SECONDS)])

    runner = pyperf.Runner(add_cmdline_args=forward)
    runner.argparser.add_argument("--tasks", type=int, default=20000)
    runner.argparser.add_argument("--capacity", type=int, default=64)
    args = runner.parse_args(argv)
    n, cap = args.tasks, args.capacity
    folder = Path(tempfile.mkdtemp(prefix="sluicegate-bench-events-"))

    def timed(variant: str) -> Callable[[int], float]:
        def loops(count: int) -> float:
            total = 0.0
            for _ in range(count):
                total += (
                    bare_trio(n, cap) if variant == "floor" else one_run(n, cap, variant, folder)
                )
                gc.collect()
            return total

        return loops

    runner.bench_time_func(f"bare_trio_model_call[tasks={n}]", timed("floor"), inner_loops=n)
    names = {
        "none": "sink=none",
        "discard": "sink=discard",
        "jsonl": "sink=jsonl",
        "otel": "sink=otel",
        "otel_sampled": "sink=otel,span_sampling=0.1",
        "otel_metrics": "sink=otel,span_sampling=0",
        "otel_api_noop": "sink=otel,providers=api_noop",
        "otel_null": "sink=otel,providers=null_recording",
    }
    for variant in VARIANTS:
        runner.bench_time_func(f"cells[{names[variant]},tasks={n}]", timed(variant), inner_loops=n)


# -- interleaved ratios ---------------------------------------------------------------------


def interleaved(
    rounds: int, n: int, capacity: int, variants: Sequence[str] = ("floor", *VARIANTS)
) -> dict[str, dict[str, float]]:
    """Run every variant once per round (rotating the order); return per variant the CPU
    and wall microseconds per cell (median) and three CPU-time ratios to ``none``:

    - ``cpu_ratio_to_none``: the median of the per-round ratios;
    - ``min_ratio``: fastest run to fastest run;
    - ``p10_ratio``: 10th percentile to 10th percentile.

    On a shared machine the slow side of the distribution is other tenants; the fast side
    is the program. Many short rounds with the ratio of minima and of 10th percentiles move
    least between repeat runs; the median pair ratio is kept for comparison with older
    records.
    """
    if "none" not in variants:
        raise SystemExit("--variants must include none (the ratios are to it)")
    folder = Path(tempfile.mkdtemp(prefix="sluicegate-bench-events-"))
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    for variant in variants:  # warm-up: first-run allocations, caches
        if variant == "floor":
            bare_trio(min(n, 500), capacity)
        else:
            one_run(min(n, 500), capacity, variant, folder)
    for r in range(rounds):
        order = list(variants[r % len(variants) :]) + list(variants[: r % len(variants)])
        for variant in order:
            gc.collect()
            c0 = time.process_time()
            w = (
                bare_trio(n, capacity)
                if variant == "floor"
                else one_run(n, capacity, variant, folder)
            )
            cpu[variant].append(time.process_time() - c0)
            wall[variant].append(w)
    base = sorted(cpu["none"])
    tenth = rounds // 10
    out = {}
    for variant in variants:
        ordered = sorted(cpu[variant])
        out[variant] = {
            "cpu_us_per_cell": statistics.median(cpu[variant]) / n * 1e6,
            "wall_us_per_cell": statistics.median(wall[variant]) / n * 1e6,
            "cpu_ratio_to_none": statistics.median(
                a / b for a, b in zip(cpu[variant], cpu["none"], strict=True)
            ),
            "wall_ratio_to_none": statistics.median(
                a / b for a, b in zip(wall[variant], wall["none"], strict=True)
            ),
            "min_ratio": ordered[0] / base[0],
            "p10_ratio": ordered[tenth] / base[tenth],
        }
    return out


# -- the sink alone, replaying captured events ---------------------------------------------

REPLAY_VARIANTS = ("otel", "otel_sampled", "otel_metrics", "otel_api_noop", "otel_null")


def captured(n: int, capacity: int) -> list[Any]:
    """The events of one run of ``n`` cells (kept in memory), to replay into sinks."""
    sink = sg.events.InMemoryEventSink()
    result = trio.run(_cells(n, capacity, sink).run)
    assert result.counts["succeeded"] == n
    return list(sink.events)


def replay(rounds: int, n: int, capacity: int) -> dict[str, float]:
    """CPU microseconds per cell that each OpenTelemetry variant's sink spends on the events
    of one ``n``-cell run, replayed outside trio (the events are built once, beforehand; the
    scheduler and the provider are not in the measurement). Median over ``rounds``, rotating
    the order; closing and the metric collection included."""
    events = captured(n, capacity)
    folder = Path(tempfile.mkdtemp(prefix="sluicegate-bench-events-"))
    cpu: dict[str, list[float]] = {v: [] for v in REPLAY_VARIANTS}
    for r in range(rounds):
        shift = r % len(REPLAY_VARIANTS)
        for variant in REPLAY_VARIANTS[shift:] + REPLAY_VARIANTS[:shift]:
            sink, finish = _sink(variant, folder)
            assert sink is not None
            emit = sink.emit
            gc.collect()
            c0 = time.process_time()
            for event in events:
                emit(event)
            finish()
            cpu[variant].append(time.process_time() - c0)
    return {v: statistics.median(cpu[v]) / n * 1e6 for v in REPLAY_VARIANTS}


# -- the disabled guards ----------------------------------------------------------------------


class _CountingEmitter(EventEmitter):
    """An emitter with no sink that counts how often code asks whether events are on."""

    reads = 0

    @property  # type: ignore[misc]
    def enabled(self) -> bool:
        _CountingEmitter.reads += 1
        return False

    @enabled.setter
    def enabled(self, value: bool) -> None:
        return None


def guards(n: int, capacity: int) -> dict[str, float]:
    """How many ``enabled`` checks one cell makes with no sink, and what they cost."""
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=capacity)]
    )
    counting = _CountingEmitter(None)
    controller._emitter = counting
    executor = sg.ModelRequestExecutor(controller, {"sim": _provider()})
    executor._emitter = counting

    async def cell(task: sg.SchedulableTask) -> None:
        await executor.execute("m", REQUEST)

    tracker = sg.DagCompletionTracker.from_tasks([sg.SchedulableTask(i) for i in range(n)])
    scheduler = sg.AsyncTaskScheduler(tracker, cell, capacity=capacity)
    scheduler.events = counting
    trio.run(scheduler.run)
    per_cell = _CountingEmitter.reads / n
    plain = EventEmitter(None)
    loops = 2_000_000
    t0 = time.perf_counter()
    for _ in range(loops):
        if plain.enabled:
            pass
    checked = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(loops):
        pass
    empty = time.perf_counter() - t0
    check_ns = max(0.0, checked - empty) / loops * 1e9
    return {
        "checks_per_cell": per_cell,
        "ns_per_check": check_ns,
        "ns_per_cell": per_cell * check_ns,
    }


def sdk(loops: int = 20000) -> dict[str, float]:
    """The OpenTelemetry SDK alone, as the bridge calls it (microseconds per call, best of
    three): a span started and ended with explicit timestamps, parent and attributes (no-op
    exporter through a ``SimpleSpanProcessor``), ``set_attribute`` and ``set_attributes`` on
    a live span, a span event, histogram records (in-memory reader) with the bridge's
    attribute sets and with none."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    sink, finish = _otel_sink(1.0)
    tracer = sink._tracer
    histogram = sink.metrics.duration
    parent = trace.set_span_in_context(tracer.start_span("parent"))
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "sim",
        "gen_ai.request.model": "m",
        "sluicegate.task.group": "g",
    }
    duration_set = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "sim",
        "gen_ai.request.model": "m",
        "gen_ai.response.model": "m",
    }
    token_set = {**duration_set, "gen_ai.token.type": "input"}
    end_set: dict[str, Any] = {  # what a successful request span gets at its end
        "sluicegate.request.attempts": 1,
        "sluicegate.request.outcome": "success",
        "gen_ai.response.model": "m",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 8,
        "sluicegate.attempt.duration": 0.001,
    }

    def best(fn: Callable[[], None]) -> float:
        times = []
        for _ in range(3):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return min(times) / loops * 1e6

    def spans() -> None:
        for i in range(loops):
            span = tracer.start_span(
                "chat m", context=parent, kind=SpanKind.CLIENT, start_time=i, attributes=attributes
            )
            span.end(end_time=i + 1)

    def sets(one: bool) -> Callable[[], None]:
        def run() -> None:  # on one live span: the same keys, overwritten
            span = tracer.start_span("chat m", context=parent, attributes=attributes)
            for _ in range(loops):
                if one:
                    span.set_attribute("sluicegate.task.status", "succeeded")
                else:
                    span.set_attributes(end_set)
            span.end()

        return run

    def events() -> None:
        span = tracer.start_span("chat m", context=parent, attributes=attributes)
        for i in range(loops):
            span.add_event("sluicegate.request.attempt", attributes, timestamp=i)
            if i % 100 == 99:  # keep the span's event list bounded like a real span
                span = tracer.start_span("chat m", context=parent, attributes=attributes)

    def records(attrs: dict[str, Any] | None) -> Callable[[], None]:
        def run() -> None:
            for _ in range(loops):
                histogram.record(0.5, attrs)

        return run

    out = {
        "span_start_end_us": best(spans),
        "span_set_attribute_us": best(sets(True)),
        "span_set_attributes_6_us": best(sets(False)),
        "span_event_us": best(events),
        "histogram_record_us": best(records(attributes)),
        "histogram_record_duration_set_us": best(records(duration_set)),
        "histogram_record_token_set_us": best(records(token_set)),
        "histogram_record_no_attributes_us": best(records(None)),
    }
    # one cell traced in full: 2 spans, one set_attribute (the task's status), one
    # set_attributes (the request's answer), 3 histogram records (duration, 2 token counts);
    # before 2026-12-07 also one span event per cell (the final attempt's)
    out["per_cell_us"] = (
        2 * out["span_start_end_us"]
        + out["span_set_attribute_us"]
        + out["span_set_attributes_6_us"]
        + out["histogram_record_duration_set_us"]
        + 2 * out["histogram_record_token_set_us"]
    )
    out["per_cell_before_us"] = out["per_cell_us"] + out["span_event_us"]
    # the metrics alone (span_sampling=0): the three histogram records
    out["per_cell_metrics_only_us"] = (
        out["histogram_record_duration_set_us"] + 2 * out["histogram_record_token_set_us"]
    )
    finish()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--interleaved", type=int, default=0)
    parser.add_argument("--guards", action="store_true")
    parser.add_argument("--sdk", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--replay", type=int, default=0)
    parser.add_argument("--variants", default="floor," + ",".join(VARIANTS))
    known, rest = parser.parse_known_args()
    global LATENCY_SECONDS
    LATENCY_SECONDS = known.latency
    if known.sdk:
        print({k: round(v, 2) for k, v in sdk().items()})
        return
    if not known.interleaved and not known.guards and not known.replay:
        _pyperf_main(rest)
        return
    extra = argparse.ArgumentParser()
    extra.add_argument("--tasks", type=int, default=20000)
    extra.add_argument("--capacity", type=int, default=64)
    args = extra.parse_args(rest)
    if known.guards:
        print(guards(args.tasks, args.capacity))
    if known.replay:
        print("sink alone, replaying one run's events: CPU us per cell (median)")
        for variant, us in replay(known.replay, args.tasks, args.capacity).items():
            print(f"{variant:<14}{us:>8.1f}")
    if known.interleaved:
        variants = known.variants.split(",")
        unknown = set(variants) - {"floor", "retain", "encode", *VARIANTS}
        if unknown:
            raise SystemExit(f"--variants: unknown {sorted(unknown)}")
        results = interleaved(known.interleaved, args.tasks, args.capacity, variants)
        head = ("variant", "cpu us/cell", "wall us/cell", "cpu/none", "wall/none", "min", "p10")
        print(
            f"{head[0]:<14}{head[1]:>12}{head[2]:>13}{head[3]:>10}{head[4]:>10}"
            f"{head[5]:>8}{head[6]:>8}"
        )
        for variant, row in results.items():
            print(
                f"{variant:<14}{row['cpu_us_per_cell']:>12.1f}{row['wall_us_per_cell']:>13.1f}"
                f"{row['cpu_ratio_to_none']:>10.3f}{row['wall_ratio_to_none']:>10.3f}"
                f"{row['min_ratio']:>8.3f}{row['p10_ratio']:>8.3f}"
            )
        print("ratios are CPU time to none: median of per-round ratios (cpu/none, wall/none),")
        print("fastest to fastest (min), 10th percentile to 10th percentile (p10)")


if __name__ == "__main__":
    main()
