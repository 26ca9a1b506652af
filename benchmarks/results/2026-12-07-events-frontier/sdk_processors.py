import time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOffExemplarFilter
class Noop(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS
N=30000
def bench(name, f):
    best=1e9
    for r in range(3):
        t=time.perf_counter()
        for _ in range(N): f()
        best=min(best,(time.perf_counter()-t)/N*1e6)
    print(f"{name}: {best:.2f} us")
for label, proc in [("simple+noop", SimpleSpanProcessor(Noop())), ("batch+inmemory", BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=1<<20, schedule_delay_millis=60000, max_export_batch_size=1<<19))]:
    tp=TracerProvider(); tp.add_span_processor(proc); tr=tp.get_tracer("x")
    bench(f"span {label}", lambda: tr.start_span("x", start_time=1, attributes={"a":"b","c":1}).end(end_time=2))
a2 = {"gen_ai.provider.name":"sim","gen_ai.request.model":"m","gen_ai.operation.name":"chat","gen_ai.response.model":"m"}
for label, kw in [("default exemplars", {}), ("exemplars off", {"exemplar_filter": AlwaysOffExemplarFilter()})]:
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()], **kw)
    h = mp.get_meter("x").create_histogram("h")
    bench(f"histogram {label}", lambda: h.record(0.1, a2))
