"""The OpenTelemetry bridge: an event sink that turns both event streams into spans and metrics.

It uses the OpenTelemetry API only; the application installs the SDK and its exporters (the
``otel`` extra) or passes providers in. Without an SDK every call is a cheap no-op.

Span model (one trace per run)::

    sluicegate.run                                  INTERNAL   scheduler_job_started .. completed
      task {group}                                  INTERNAL   ready_enqueued .. terminal event
        {gen_ai.operation.name} {gen_ai.request.model}   CLIENT   first wait or call .. final answer
          events: sluicegate.request.admission_wait, sluicegate.request.attempt (one per
          retried attempt; the final attempt is the span's own outcome and attributes)

Parents are explicit: every span is started with the context of the span it belongs to, found
through the event's correlation (task id and attempt) and request id, never through the
"current span". So trio's contextvars quirks cannot misparent a span: a child task started with
``start_soon`` from a worker still lands under that worker's task span, and the bridge never
attaches a span to the context, so no span stays current across an ``await`` or an async
generator's ``yield``. Timestamps come from the events (``captured_at``, trio's clock) shifted
onto the wall clock once, at the first event, so virtual-time runs export sensible times too.

Status: a retried 429 is an attempt event, not an error; a request whose last attempt failed
sets ``error.type`` (the outcome, e.g. ``rate_limited`` or ``provider_timeout``) and ERROR; a
cancelled task or request (``trio.Cancelled``) ends UNSET with ``sluicegate.task.status`` /
``sluicegate.request.outcome`` saying ``cancelled`` / ``local_cancelled``: cancellation is not an
error. A cancelled run still ends every span: the scheduler reports the end of a cancelled run,
and :meth:`OpenTelemetryEventSink.close` ends whatever is still open.

Prompts and completions are recorded only when the user opts in: with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (or
``ModelRequestExecutor(capture_content=True)``) the executor puts them in its
``model_request_completed`` event, and the CLIENT span carries them as
``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON, the conventions' message format).
They are set directly on the span, outside the bounded label sets, and never on metrics.
"""

from __future__ import annotations

import importlib.metadata
import re
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._internal.checks import is_number
from ..errors import ConfigurationError
from ..events.correlation import RuntimeCorrelation
from ..events.schema import AnyEvent, ModelCallReport, RequestEvent, SchedulerEvent
from .attributes import (
    ERROR_TYPE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    METRIC_ATTRIBUTES,
    SERVER_ADDRESS,
    SERVER_PORT,
    SPAN_ATTRIBUTES,
    AttributeValue,
    BoundedAttributes,
)
from .otel_metrics import Attrs, EventMetrics
from .timeline import TERMINAL_KINDS, task_key

INSTRUMENTATION_NAME: Final = "sluicegate"

GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"

OPERATION_OF_DOMAIN: Final = {
    "chat": "chat",
    "embedding": "embeddings",
    "image": "generate_content",
    "healthcheck": "healthcheck",
}
"""``gen_ai.operation.name`` per request domain (well-known values where one exists)."""

_TASK_STATUS: Final = {
    "task_completed": "succeeded",
    "retry_deferred": "retry_deferred",
    "non_retryable_dropped": "failed",
    "cancelled": "cancelled",
}

_TASK_KINDS: Final = frozenset({"ready_enqueued", "task_dispatched", "selected"}) | TERMINAL_KINDS
"""Scheduler event kinds that change a task's span or its metrics."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class _Clock:
    """Maps trio's clock (the events' ``captured_at``) onto Unix nanoseconds."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset: float | None = None

    def ns(self, t: float) -> int:
        if self._offset is None:
            self._offset = time.time() - t
        return int((t + self._offset) * 1e9)


class _Endpoint:
    """What one endpoint's requests share, built once: the metric attributes, the span name
    and the span's starting attributes."""

    __slots__ = ("key", "name", "span_attributes")

    def __init__(self, key: Attrs, name: str) -> None:
        self.key = key
        self.name = name
        self.span_attributes: dict[str, AttributeValue] = dict(key)


class _RequestSpan:
    __slots__ = ("attempts", "key", "last_end", "recording", "span", "started_at", "task")

    def __init__(self, span: Span, started_at: float, key: Attrs, task: Hashable | None) -> None:
        self.span = span
        self.recording = span.is_recording()  # asked once: a dropped span stays dropped
        self.started_at = started_at
        self.key = key
        self.task = task
        self.attempts = 0
        self.last_end: float | None = None


class OpenTelemetryEventSink:
    """An :class:`~sluicegate.events.EventSink` that exports runs as OpenTelemetry spans
    and metrics (see the module documentation for the span and metric model).

    ``tracer_provider`` / ``meter_provider`` default to the global ones. ``span_sampling``
    (0..1) traces that share of task executions, chosen evenly (metrics always count
    everything): on huge fan-outs the SDK's cost per span dominates, see
    ``docs/observability.md``. Call :meth:`close` after the run (or use ``with``).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        span_sampling: float = 1.0,
        max_values_per_attribute: int = 100,
    ) -> None:
        if not (is_number(span_sampling) and 0.0 <= span_sampling <= 1.0):
            raise ConfigurationError(
                "OpenTelemetryEventSink.span_sampling",
                f"must be a number in [0, 1], got {span_sampling!r}",
                "use 1.0 to trace every task, 0.1 for one in ten, 0 for metrics only",
            )
        version = _version()
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, version, tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, version, meter_provider)
        self._span_labels = BoundedAttributes(
            SPAN_ATTRIBUTES, max_values_per_key=max_values_per_attribute
        )
        self.metrics = EventMetrics(
            meter, BoundedAttributes(METRIC_ATTRIBUTES, max_values_per_key=max_values_per_attribute)
        )
        self.span_sampling = float(span_sampling)
        self._sampled = 0.0
        self._clock = _Clock()
        self._run: Span | None = None
        self._run_context: Context | None = None
        self._ready_at: dict[Hashable, float] = {}
        self._tasks: dict[Hashable, tuple[Span, Context] | None] = {}
        self._requests: dict[int, _RequestSpan] = {}
        # Per task, the request ids it opened: ending a task ends what it left open without
        # scanning every open request (that scan was O(concurrency) per task).
        self._task_requests: dict[Hashable, list[int]] = {}
        # Attribute sets built once and reused (the SDK copies what it keeps): per endpoint
        # and server (metrics), per endpoint (span name and starting attributes), per
        # response model and server (a successful span's end), per task group.
        self._server_keys: dict[tuple[Attrs, str | None, int | None], Attrs] = {}
        self._task_names: dict[str | None, tuple[str, dict[str, AttributeValue]]] = {}
        self._endpoints: dict[tuple[str | None, str | None, str | None], _Endpoint] = {}
        self._responses: dict[tuple[str | None, str | None, int | None], dict[str, Any]] = {}
        self._servers: dict[tuple[str | None, int | None], dict[str, Any]] = {}
        self._group_keys: dict[str | None, Attrs] = {}
        self._on_request: dict[str, Callable[[RequestEvent], object]] = {
            "model_request_started": self._model_request_started,
            "model_request_completed": self._model_request_completed,
            "request_wait_started": self._open,
            "request_wait_completed": self._wait_completed,
            "request_wait_cancelled": self._wait_cancelled,
            "request_lease_acquired": self._lease_acquired,
            "request_acquire_denied": self._acquire_denied,
            "request_wait_timeout": self._wait_timeout,
            "request_resource_registered": self._set_limit,
            "request_rate_limited": self._rate_limited,
            "request_limit_decreased": self._limit_changed,
            "request_limit_increased": self._limit_changed,
        }
        self._last_time: float | None = None

    # -- EventSink ------------------------------------------------------------------------

    def emit(self, event: AnyEvent) -> None:
        """Turn one event into span and metric updates (synchronous, never awaits)."""
        self._last_time = event.captured_at
        if type(event) is SchedulerEvent:
            self._scheduler(event)
        else:
            assert isinstance(event, RequestEvent)
            handler = self._on_request.get(event.event_kind)
            if handler is not None:
                handler(event)

    def close(self) -> None:
        """End every span still open (a run cut short) at the last event's time. Idempotent.

        Ends spans only: flushing and shutting down exporters is the application's (it owns
        the SDK), e.g. ``tracer_provider.force_flush()``.
        """
        t = self._last_time
        if t is None:
            return
        for rid in list(self._requests):
            self._end_request(rid, t, outcome=None, incomplete=True)
        for key in list(self._tasks):
            self._end_task(key, t, "incomplete", None)
        if self._run is not None:
            self._run.set_attribute("sluicegate.incomplete", True)
            self._run.end(end_time=self._clock.ns(t))
            self._run = self._run_context = None

    def __enter__(self) -> OpenTelemetryEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scheduler stream -----------------------------------------------------------------

    def _scheduler(self, e: SchedulerEvent) -> None:
        kind = e.event_kind
        t = e.captured_at
        task_id = e.task_id
        if e.task_ids is not None:  # a frontier queued in one instant (schema 3)
            ready_at = self._ready_at
            for task_id in e.task_ids:
                ready_at[task_key(task_id) if isinstance(task_id, (list, dict)) else task_id] = t
            return
        if task_id is not None and kind in _TASK_KINDS:
            key = task_key(task_id) if isinstance(task_id, (list, dict)) else task_id
            if kind == "ready_enqueued":
                self._ready_at[key] = t
            elif kind == "task_dispatched" or kind == "selected":  # a task lease granted
                self._dispatched(key, e, kind, t)
            else:
                failed = kind == "non_retryable_dropped"
                self._end_task(
                    key,
                    t,
                    _TASK_STATUS[kind],
                    e.reason if failed else None,
                    (e.diagnostics or {}).get("error_type") if failed else None,
                    e.correlation,
                )
        elif kind == "scheduler_job_started":
            run_id = (e.diagnostics or {}).get("run_id")
            # The run's parent is whatever span is current where the run starts (the
            # application's own span around it), read once here, in the run's own task.
            self._run = self._tracer.start_span(
                "sluicegate.run",
                kind=SpanKind.INTERNAL,
                start_time=self._clock.ns(t),
                attributes=self._span_labels.of(
                    {"sluicegate.run.id": run_id if isinstance(run_id, str) else None}
                ),
            )
            self._run_context = trace.set_span_in_context(self._run)
        elif kind == "scheduler_job_completed":
            self._end_run(e)
        elif kind in ("admission_blocked", "group_capped", "admission_denied"):
            self.metrics.count(
                "sluicegate.task.admission.blocked",
                self.metrics.key({"sluicegate.reason": e.reason or kind}),
            )

    def _dispatched(self, key: Hashable, e: SchedulerEvent, kind: str, t: float) -> None:
        group = e.group
        group_key = self._group_keys.get(group)
        if group_key is None:
            group_key = self._group_keys[group] = self.metrics.key({"sluicegate.task.group": group})
        self.metrics.count("sluicegate.task.admissions", group_key)
        if kind == "task_dispatched":
            ready = self._ready_at.pop(key, None)
        else:
            ready = self._ready_at.get(key)
        if ready is None:
            ready = t
        else:
            self.metrics.wait("task_queue", t - ready)
        if kind == "task_dispatched":
            self._start_task(key, e, ready, t)

    def _start_task(self, key: Hashable, e: SchedulerEvent, ready: float, t: float) -> None:
        group = e.group
        if self.span_sampling < 1.0 and not self._sample():
            self._tasks[key] = None
            return
        named = self._task_names.get(group)
        if named is None:
            named = self._task_names[group] = (
                f"task {group}" if group is not None else "task",
                self._span_labels.of({"sluicegate.task.group": group}),
            )
        attributes = {**named[1], "sluicegate.task.queue_wait": t - ready if t > ready else 0.0}
        if e.attempt is not None:
            attributes["sluicegate.task.attempt"] = e.attempt
        run_context = self._run_context
        span = self._tracer.start_span(
            named[0],
            context=run_context if run_context is not None else Context(),
            kind=SpanKind.INTERNAL,
            start_time=self._clock.ns(ready),
            attributes=attributes,
        )
        self._tasks[key] = (span, trace.set_span_in_context(span))

    def _sample(self) -> bool:
        rate = self.span_sampling
        before = self._sampled
        self._sampled += rate
        return int(self._sampled) > int(before)

    def _parent(self) -> Context:
        return self._run_context if self._run_context is not None else Context()

    def _end_task(
        self,
        key: Hashable,
        t: float,
        status: str,
        reason: str | None,
        error_type: object = None,
        corr: RuntimeCorrelation | None = None,
    ) -> None:
        """End the task's span; the ending event's correlation (a pipeline cell's column,
        row and row group: the worker's context) labels it, so a cell is found by its row."""
        for rid in self._task_requests.pop(key, ()):
            if rid in self._requests:  # left open: cancelled during a backoff, or never ended
                self._end_request(rid, t, outcome="local_cancelled", incomplete=False)
        entry = self._tasks.pop(key, None)
        if entry is None:
            return
        span = entry[0]
        labels = (
            self._span_labels.of(_correlation_attributes(corr))
            if corr is not None and _has_labels(corr)
            else None
        )
        if status == "failed":
            kind = error_type if isinstance(error_type, str) else _error_type(reason)
            attributes = self._span_labels.of({ERROR_TYPE: kind})
            attributes["sluicegate.task.status"] = status
            if labels:
                attributes.update(labels)
            span.set_attributes(attributes)
            span.set_status(Status(StatusCode.ERROR, reason))
        elif status == "incomplete":
            span.set_attributes({"sluicegate.task.status": status, "sluicegate.incomplete": True})
        elif labels:  # one SDK call (each takes the span's lock)
            labels["sluicegate.task.status"] = status
            span.set_attributes(labels)
        else:
            span.set_attribute("sluicegate.task.status", status)
        span.end(end_time=self._clock.ns(t))

    def _end_run(self, e: SchedulerEvent) -> None:
        t = e.captured_at
        for rid in list(self._requests):
            self._end_request(rid, t, outcome=None, incomplete=True)
        for key in list(self._tasks):
            self._end_task(key, t, "incomplete", None)
        run = self._run
        if run is None:
            return
        reason = e.reason
        if reason in ("Cancelled", "KeyboardInterrupt"):
            run.set_attribute("sluicegate.task.status", "cancelled")
        elif reason is not None:
            run.set_attributes(self._span_labels.of({ERROR_TYPE: _error_type(reason)}))
            run.set_status(Status(StatusCode.ERROR, reason))
        run.end(end_time=self._clock.ns(t))
        self._run = self._run_context = None

    # -- request stream -------------------------------------------------------------------

    def _set_limit(self, e: RequestEvent) -> None:
        if e.limit is not None:
            self.metrics.limit(self._endpoint(e).key, e.limit)

    def _open(self, e: RequestEvent) -> _RequestSpan | None:
        """The request's span, started at its first wait or call."""
        rid = e.request_id
        if rid is None:
            return None
        request = self._requests.get(rid)
        if request is None:
            request = self._start_request(rid, e, e.captured_at)
        return request

    def _lease_acquired(self, e: RequestEvent) -> None:
        self._set_limit(e)
        self._open(e)

    def _model_request_started(self, e: RequestEvent) -> None:
        self._set_limit(e)
        request = self._open(e)
        if request is not None and request.last_end is not None:
            self.metrics.wait("retry_backoff", e.captured_at - request.last_end)

    def _model_request_completed(self, e: RequestEvent) -> None:
        rid = e.request_id
        request = self._requests.get(rid) if rid is not None else None
        if rid is not None and request is not None:
            self._attempt_done(rid, request, e, e.captured_at)

    def _wait_completed(self, e: RequestEvent) -> None:
        rid = e.request_id
        request = self._requests.get(rid) if rid is not None else None
        if request is None:
            return
        waited = _float((e.diagnostics or {}).get("waited"))
        if waited is not None:
            if request.recording:
                request.span.add_event(
                    "sluicegate.request.admission_wait",
                    {"sluicegate.request.admission_wait": waited},
                    timestamp=self._clock.ns(e.captured_at),
                )
            self.metrics.wait("request_admission", waited)

    def _wait_cancelled(self, e: RequestEvent) -> None:
        if e.request_id is not None:
            self._end_request(e.request_id, e.captured_at, outcome="local_cancelled")

    def _acquire_denied(self, e: RequestEvent) -> None:
        self._denied(e, e.reason)
        if self._open(e) is not None:
            assert e.request_id is not None
            self._end_request(e.request_id, e.captured_at, outcome=f"admission_{e.reason}")

    def _wait_timeout(self, e: RequestEvent) -> None:
        self._denied(e, "timeout")
        if e.request_id is not None:
            self._end_request(e.request_id, e.captured_at, outcome="admission_timeout")

    def _denied(self, e: RequestEvent, reason: str | None) -> None:
        self.metrics.count(
            "sluicegate.request.admission.denials",
            self._with(self._endpoint(e).key, {"sluicegate.reason": reason}),
        )

    def _start_request(self, rid: int, e: RequestEvent, t: float) -> _RequestSpan:
        corr = e.correlation
        owner = corr.task_id if corr is not None else None
        if isinstance(owner, (list, dict)):
            owner = task_key(owner)
        endpoint = self._endpoint(e)
        key = endpoint.key
        entry = self._tasks.get(owner) if owner is not None else None
        if owner is not None and entry is None:  # a task outside the sampled share
            span: Span = trace.INVALID_SPAN
        else:
            parent = entry[1] if entry is not None else self._parent()
            attributes = endpoint.span_attributes
            if corr is not None and _has_labels(corr):
                attributes = {**attributes, **self._span_labels.of(_correlation_attributes(corr))}
            span = self._tracer.start_span(
                endpoint.name,
                context=parent,
                kind=SpanKind.CLIENT,
                start_time=self._clock.ns(t),
                attributes=attributes,
            )
        request = self._requests[rid] = _RequestSpan(span, t, key, owner)
        if owner is not None:
            opened = self._task_requests.get(owner)
            if opened is None:
                self._task_requests[owner] = [rid]
            else:
                opened.append(rid)
        return request

    def _attempt_done(self, rid: int, request: _RequestSpan, e: RequestEvent, t: float) -> None:
        call = e.call
        will_retry = call is not None and call.will_retry
        request.attempts += 1
        request.last_end = t
        if not will_retry:  # the final attempt: its outcome is the request's
            self._end_request(rid, t, outcome=e.outcome, call=call, retry_after=e.retry_after)
        elif request.recording:  # a retried attempt: one span event
            request.span.add_event(
                "sluicegate.request.attempt",
                self._span_labels.of(
                    {
                        "sluicegate.attempt": e.attempt,
                        "sluicegate.attempt.outcome": e.outcome,
                        "sluicegate.attempt.duration": (
                            None if call is None else call.duration_seconds
                        ),
                        "sluicegate.attempt.retry_after": e.retry_after,
                    }
                ),
                timestamp=self._clock.ns(t),
            )

    def _end_request(
        self,
        rid: int,
        t: float,
        *,
        outcome: str | None,
        incomplete: bool = False,
        call: ModelCallReport | None = None,
        retry_after: float | None = None,
    ) -> None:
        request = self._requests.pop(rid, None)
        if request is None:
            return
        if request.recording:
            self._end_request_span(request, t, outcome, incomplete, call, retry_after)
        if incomplete or outcome == "local_cancelled":
            return
        error_type = outcome if outcome is not None and outcome != "success" else None
        if call is None:
            self.metrics.operation(request.key, t - request.started_at, error_type, None)
            return
        self.metrics.operation(
            self._server_key(request.key, call),
            t - request.started_at,
            error_type,
            call.response_model,
            call.input_tokens,
            call.output_tokens,
        )

    def _end_request_span(
        self,
        request: _RequestSpan,
        t: float,
        outcome: str | None,
        incomplete: bool,
        call: ModelCallReport | None,
        retry_after: float | None,
    ) -> None:
        """One ``set_attributes`` call, then ``end`` (each SDK call takes the span's lock)."""
        span = request.span
        if outcome == "success" and call is not None and not incomplete:
            attributes = {
                "sluicegate.request.attempts": request.attempts,
                "sluicegate.request.outcome": outcome,
                **self._response(call),
            }
            if call.input_tokens is not None:
                attributes[GEN_AI_USAGE_INPUT_TOKENS] = call.input_tokens
            if call.output_tokens is not None:
                attributes[GEN_AI_USAGE_OUTPUT_TOKENS] = call.output_tokens
            if call.input_messages is not None:  # only when the user opted in (see module doc)
                attributes[GEN_AI_INPUT_MESSAGES] = call.input_messages
                if call.output_messages is not None:
                    attributes[GEN_AI_OUTPUT_MESSAGES] = call.output_messages
        else:
            attributes = {"sluicegate.request.attempts": request.attempts}
            if outcome is not None:
                attributes["sluicegate.request.outcome"] = outcome
            if incomplete:
                attributes["sluicegate.incomplete"] = True
            elif outcome is not None and outcome not in ("local_cancelled", "success"):
                attributes.update(self._span_labels.of({ERROR_TYPE: outcome}))
                span.set_status(Status(StatusCode.ERROR, outcome))
            if retry_after is not None:
                attributes["sluicegate.attempt.retry_after"] = retry_after
            if call is not None and call.server_address is not None:
                attributes.update(self._server(call))  # where the failed call went
            if call is not None and call.input_messages is not None:  # opted in
                attributes[GEN_AI_INPUT_MESSAGES] = call.input_messages
        if call is not None:  # the final attempt's own time (the span also covers waits)
            attributes["sluicegate.attempt.duration"] = call.duration_seconds
        span.set_attributes(attributes)
        span.end(end_time=self._clock.ns(t))

    def _response(self, call: ModelCallReport) -> dict[str, Any]:
        """A successful call's response model and server as span attributes (cached)."""
        ident = (call.response_model, call.server_address, call.server_port)
        found = self._responses.get(ident)
        if found is None:
            found = self._responses[ident] = self._span_labels.of(
                {
                    GEN_AI_RESPONSE_MODEL: call.response_model,
                    SERVER_ADDRESS: call.server_address,
                    SERVER_PORT: call.server_port,
                }
            )
        return found

    def _server(self, call: ModelCallReport) -> dict[str, Any]:
        """A call's server as span attributes (cached per server)."""
        ident = (call.server_address, call.server_port)
        found = self._servers.get(ident)
        if found is None:
            found = self._servers[ident] = self._span_labels.of(
                {SERVER_ADDRESS: call.server_address, SERVER_PORT: call.server_port}
            )
        return found

    def _server_key(self, key: Attrs, call: ModelCallReport) -> Attrs:
        """The endpoint's metric attributes with the call's server (cached per server)."""
        address, port = call.server_address, call.server_port
        if address is None and port is None:
            return key
        ident = (key, address, port)
        found = self._server_keys.get(ident)
        if found is None:
            found = self._server_keys[ident] = self._with(
                key, {SERVER_ADDRESS: address, SERVER_PORT: port}
            )
        return found

    def _rate_limited(self, e: RequestEvent) -> None:
        self.metrics.count("sluicegate.request.rate_limits", self._endpoint(e).key)

    def _limit_changed(self, e: RequestEvent) -> None:
        key = self._endpoint(e).key
        direction = "decrease" if e.event_kind == "request_limit_decreased" else "increase"
        self.metrics.count(
            "sluicegate.request.limit.changes",
            self._with(key, {"sluicegate.direction": direction}),
        )
        if e.limit is not None:
            self.metrics.limit(key, e.limit)

    def _endpoint(self, e: RequestEvent) -> _Endpoint:
        ident = (e.provider, e.model_id, e.domain)
        found = self._endpoints.get(ident)
        if found is None:
            domain = e.domain or "chat"
            operation = OPERATION_OF_DOMAIN.get(domain, domain)
            key = self.metrics.key(
                {
                    GEN_AI_OPERATION_NAME: operation,
                    GEN_AI_PROVIDER_NAME: e.provider,
                    GEN_AI_REQUEST_MODEL: e.model_id,
                }
            )
            found = self._endpoints[ident] = _Endpoint(key, f"{operation} {e.model_id}")
        return found

    def _with(self, key: Attrs, extra: dict[str, AttributeValue | None]) -> Attrs:
        return tuple(sorted({**dict(key), **dict(self.metrics.key(extra))}.items()))


def _version() -> str:
    try:
        return importlib.metadata.version("sluicegate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _correlation_attributes(corr: RuntimeCorrelation | None) -> dict[str, AttributeValue | None]:
    if corr is None:
        return {}
    return {
        "sluicegate.column": corr.column,
        "sluicegate.row": corr.row,
        "sluicegate.row_group": corr.row_group,
        "sluicegate.task_type": corr.task_type,
        "sluicegate.group_kind": corr.group_kind,
    }


def _has_labels(corr: RuntimeCorrelation) -> bool:
    """Whether the correlation carries any field that becomes a span attribute."""
    return not (
        corr.column is None
        and corr.row is None
        and corr.row_group is None
        and corr.task_type is None
        and corr.group_kind is None
    )


def _error_type(reason: str | None) -> str:
    """A low-cardinality error class from a scheduler reason (``"Name: message"``)."""
    if not reason:
        return "task_failed"
    if reason.startswith("attempts exhausted"):
        return "attempts_exhausted"
    head = reason.split(":", 1)[0].strip()
    return head if _IDENTIFIER.fullmatch(head) else "task_failed"


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
