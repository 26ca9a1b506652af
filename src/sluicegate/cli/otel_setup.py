"""``--otel console|otlp``: the OpenTelemetry SDK configured around the run's event sink.

The library only uses the OpenTelemetry API; this module is the application side the
command line owns (the one module of sluicegate allowed to import the SDK, listed in
``tests/test_observe_otel.py``). It builds a tracer provider and a meter provider with

- ``console``: the SDK's console exporters, writing JSON to stderr (stdout keeps the panel);
- ``otlp``: the OTLP/HTTP exporters of ``opentelemetry-exporter-otlp-proto-http``, configured
  by the standard ``OTEL_EXPORTER_OTLP_*`` environment variables (endpoint, headers...).

and hands them to :class:`~sluicegate.observe.OpenTelemetryEventSink`. Both extras come with
``pip install 'sluicegate[otel]'``; when they are missing the error says so. Before the run,
``otlp`` checks that something listens where the exporters will send (a TCP connect, at most
2 s): without a collector the run itself would succeed and then spend about 13 s retrying at
exit while every span and metric was lost.
"""

from __future__ import annotations

import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from attrs import define

from ..errors import ConfigurationError
from ..observe import OpenTelemetryEventSink

INSTALL_HINT = "pip install 'sluicegate[otel]'"


@define
class OtelSetup:
    """The configured SDK providers and the sink; :meth:`shutdown` flushes and stops them."""

    sink: OpenTelemetryEventSink
    tracer_provider: Any
    meter_provider: Any

    def shutdown(self) -> None:
        """Close the sink (ending open spans), then flush and stop the exporters."""
        self.sink.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _missing(what: str, exc: ImportError) -> ConfigurationError:
    return ConfigurationError(
        "--otel", f"{what} is not installed ({exc.name or exc})", f"install it: {INSTALL_HINT}"
    )


COLLECTOR_CONNECT_TIMEOUT = 2.0
"""Seconds ``check_collector`` waits for the collector's TCP port."""


def check_collector(endpoint: str | None) -> None:
    """Raise :class:`ConfigurationError` unless something accepts TCP connections at the
    OTLP ``endpoint`` URL (``None``, or a URL without a host: nothing to check)."""
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return  # a malformed port: the exporter reports it in its own words
    try:
        with socket.create_connection((parts.hostname, port), timeout=COLLECTOR_CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ConfigurationError(
            "--otel otlp",
            f"no OTLP collector answers at {endpoint} ({type(exc).__name__}: "
            f"{exc.strerror or exc}), so every span and metric of the run would be lost",
            "start a collector there (e.g. the OpenTelemetry Collector or Jaeger with OTLP/HTTP "
            "on port 4318), point OTEL_EXPORTER_OTLP_ENDPOINT at yours, or use --otel console",
        ) from None


def setup_otel(mode: str) -> OtelSetup:
    """Configure the SDK for ``mode`` (``console`` or ``otlp``) and build the event sink."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            MetricExporter,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as exc:
        raise _missing("the OpenTelemetry SDK", exc) from None
    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    if mode == "console":
        span_exporter = ConsoleSpanExporter(out=sys.stderr)
        metric_exporter = ConsoleMetricExporter(out=sys.stderr)
    elif mode == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise _missing("the OTLP/HTTP exporter", exc) from None
        span_exporter = OTLPSpanExporter()
        metric_exporter = OTLPMetricExporter()
        # One connect per collector (traces and metrics usually go to the same one).
        endpoints = (getattr(e, "_endpoint", None) for e in (span_exporter, metric_exporter))
        checked: set[str] = set()
        for endpoint in endpoints:
            where = urlsplit(endpoint).netloc if endpoint else ""
            if where not in checked:
                checked.add(where)
                check_collector(endpoint)
    else:
        raise ConfigurationError("--otel", f"unknown mode {mode!r}", "use console or otlp")
    resource = Resource.create({"service.name": "sluicegate"})
    tracer_provider = TracerProvider(resource=resource)
    # The SDK's exporter threads only read finished spans and metric points, never run state.
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=10_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    sink = OpenTelemetryEventSink(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return OtelSetup(sink, tracer_provider, meter_provider)
