"""OpenTelemetry metrics from the event streams (API only; the application owns the SDK).

Per request (histograms, as the GenAI semantic conventions ask):

- ``gen_ai.client.operation.duration`` (s): one logical request, first admission wait to final
  answer, with ``error.type`` when it failed.
- ``gen_ai.client.token.usage`` ({token}): input and output tokens (``gen_ai.token.type``).
Counters and the limit gauge are observable instruments read at collection time from local
tallies, so counting an event costs a dictionary update, not an SDK call (a histogram record
costs several microseconds in the Python SDK, once per record; see docs/observability.md):

- ``sluicegate.wait.time`` (s) and ``sluicegate.waits`` ({wait}) by ``sluicegate.layer``
  (``task_queue``, ``request_admission``, ``retry_backoff``): total time waited at each layer
  and how many waits (their ratio is the mean wait; the run report has the percentiles);

- ``sluicegate.task.admissions`` ({task}) by ``sluicegate.task.group``;
- ``sluicegate.task.admission.blocked`` ({event}) by ``sluicegate.reason``;
- ``sluicegate.request.admission.denials`` ({request}) by endpoint and ``sluicegate.reason``;
- ``sluicegate.request.rate_limits`` ({response}) by endpoint;
- ``sluicegate.request.limit.changes`` ({event}) by endpoint and ``sluicegate.direction``;
- ``sluicegate.request.limit`` ({request}, gauge): the current adaptive limit per endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .attributes import (
    ERROR_TYPE,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TOKEN_TYPE,
    AttributeValue,
    BoundedAttributes,
)

DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
"""Boundaries the GenAI conventions give for ``gen_ai.client.operation.duration``."""

TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
"""Boundaries the GenAI conventions give for ``gen_ai.client.token.usage``."""

Attrs = tuple[tuple[str, AttributeValue], ...]


class EventMetrics:
    """The instruments, and the tallies behind the observable ones."""

    def __init__(self, meter: Meter, labels: BoundedAttributes) -> None:
        self._labels = labels
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._layers: dict[str, Attrs] = {}
        self._operation_sets: dict[
            tuple[Attrs, str | None, str | None],
            tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
        ] = {}
        self._wait_time: dict[Attrs, float] = {}
        self._tallies: dict[str, dict[Attrs, int]] = {}
        meter.create_observable_counter(
            "sluicegate.wait.time",
            callbacks=[_observe(self._wait_time)],
            unit="s",
            description="Time tasks and model calls waited at each admission layer.",
        )
        self._limits: dict[Attrs, int] = {}
        for name, unit, description in (
            ("sluicegate.waits", "{wait}", "Waits at each admission layer."),
            ("sluicegate.task.admissions", "{task}", "Tasks admitted (task leases granted)."),
            (
                "sluicegate.task.admission.blocked",
                "{event}",
                "Dispatch rounds that stopped with ready tasks held back, by reason.",
            ),
            (
                "sluicegate.request.admission.denials",
                "{request}",
                "Request admissions that ended without a lease, by reason.",
            ),
            ("sluicegate.request.rate_limits", "{response}", "Rate-limited responses (429)."),
            (
                "sluicegate.request.limit.changes",
                "{event}",
                "Adaptive limit decreases and increases.",
            ),
        ):
            tally: dict[Attrs, int] = {}
            self._tallies[name] = tally
            meter.create_observable_counter(
                name, callbacks=[_observe(tally)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            "sluicegate.request.limit",
            callbacks=[_observe(self._limits)],
            unit="{request}",
            description="Current adaptive concurrency limit per endpoint.",
        )

    def key(self, attributes: dict[str, AttributeValue | None]) -> Attrs:
        """Bounded attributes as a hashable key (build once, reuse per endpoint or group)."""
        return tuple(sorted(self._labels.of(attributes).items()))

    def count(self, name: str, key: Attrs) -> None:
        """Add one to the observable counter ``name`` for the attributes ``key``."""
        tally = self._tallies[name]
        tally[key] = tally.get(key, 0) + 1

    def limit(self, key: Attrs, value: int) -> None:
        """Set the current adaptive limit of the endpoint ``key``."""
        self._limits[key] = value

    def wait(self, layer: str, seconds: float) -> None:
        """Count a wait at ``layer`` (nothing when nothing waited)."""
        if seconds > 0:
            key = self._layers.get(layer)
            if key is None:
                key = self._layers[layer] = self.key({"sluicegate.layer": layer})
            self._wait_time[key] = self._wait_time.get(key, 0.0) + seconds
            self.count("sluicegate.waits", key)

    def operation(
        self,
        key: Attrs,
        seconds: float,
        error_type: str | None,
        response_model: str | None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Record one finished logical request (duration and, when known, token usage).

        The attribute sets are built once per endpoint, model and error class and reused:
        the SDK copies what it keeps, and a record is the hot path of a traced run.
        """
        ident = (key, response_model, error_type)
        sets = self._operation_sets.get(ident)
        if sets is None:
            sets = self._operation_sets[ident] = self._attribute_sets(
                key, response_model, error_type
            )
        self.duration.record(seconds if seconds > 0.0 else 0.0, sets[0])
        if error_type is None:
            if input_tokens is not None:
                self.tokens.record(input_tokens, sets[1])
            if output_tokens is not None:
                self.tokens.record(output_tokens, sets[2])

    def _attribute_sets(
        self, key: Attrs, response_model: str | None, error_type: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        attributes: dict[str, Any] = dict(key)
        if response_model is not None:
            attributes.update(self._labels.of({GEN_AI_RESPONSE_MODEL: response_model}))
        if error_type is not None:
            attributes.update(self._labels.of({ERROR_TYPE: error_type}))
        return (
            attributes,
            {**attributes, GEN_AI_TOKEN_TYPE: "input"},
            {**attributes, GEN_AI_TOKEN_TYPE: "output"},
        )


def _observe(tally: dict[Attrs, int] | dict[Attrs, float]) -> Any:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(key)) for key, value in list(tally.items())]

    return callback
