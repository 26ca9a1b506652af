"""Telemetry attribute names and the allow-list that keeps their cardinality bounded.

Attributes reach OpenTelemetry only through :class:`BoundedAttributes`, which refuses any key
that is not listed here. Raw task ids, lease ids, request ids, task execution ids and row
values are not listed, so they can never become attributes. Metric attributes are a smaller
list than span attributes: no row or row-group index, no attempt numbers, no run id. Each key
also has a cap on distinct values (default 100): past it, new values are reported as
``"_OTHER"`` (the convention of the semantic conventions for unknown values).

Names follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai.*``, ``server.*``, ``error.type``); sluicegate's own use the ``sluicegate.`` prefix.
"""

from __future__ import annotations

from typing import Final

from ..errors import ConfigurationError

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

OTHER: Final = "_OTHER"
"""Stands in for values past a key's distinct-value cap."""

METRIC_ATTRIBUTES: Final = frozenset(
    {
        GEN_AI_OPERATION_NAME,
        GEN_AI_PROVIDER_NAME,
        GEN_AI_REQUEST_MODEL,
        GEN_AI_RESPONSE_MODEL,
        GEN_AI_TOKEN_TYPE,
        SERVER_ADDRESS,
        SERVER_PORT,
        ERROR_TYPE,
        "sluicegate.endpoint",
        "sluicegate.request.domain",
        "sluicegate.request.group",
        "sluicegate.task.group",
        "sluicegate.column",
        "sluicegate.reason",
        "sluicegate.layer",
        "sluicegate.direction",
    }
)
"""Keys allowed on metrics: each one has few values in any run."""

SPAN_ATTRIBUTES: Final = METRIC_ATTRIBUTES | frozenset(
    {
        GEN_AI_USAGE_INPUT_TOKENS,
        GEN_AI_USAGE_OUTPUT_TOKENS,
        "sluicegate.run.id",
        "sluicegate.row_group",
        "sluicegate.row",
        "sluicegate.task_type",
        "sluicegate.group_kind",
        "sluicegate.task.attempt",
        "sluicegate.task.status",
        "sluicegate.task.queue_wait",
        "sluicegate.request.attempts",
        "sluicegate.request.outcome",
        "sluicegate.request.admission_wait",
        "sluicegate.attempt",
        "sluicegate.attempt.outcome",
        "sluicegate.attempt.duration",
        "sluicegate.attempt.retry_after",
        "sluicegate.incomplete",
    }
)
"""Keys allowed on spans and span events: the metric keys plus per-execution numbers."""

AttributeValue = str | bool | int | float


class BoundedAttributes:
    """Builds attribute mappings from an allow-list, capping distinct values per key.

    :meth:`of` raises :class:`ConfigurationError` for a key outside the allow-list: that is a
    programming error in sluicegate, caught by the tests, never a runtime surprise for users.
    ``None`` values are left out; string values past the per-key cap become ``"_OTHER"``.
    """

    __slots__ = ("_allowed", "_max_values", "_seen", "overflowed")

    def __init__(self, allowed: frozenset[str], *, max_values_per_key: int = 100) -> None:
        self._allowed = allowed
        self._max_values = max_values_per_key
        self._seen: dict[str, set[AttributeValue]] = {}
        self.overflowed: dict[str, int] = {}
        """Per key, how many values were replaced by ``"_OTHER"``."""

    def of(self, pairs: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
        """Attributes from a mapping of dotted keys (``None`` values are left out)."""
        out: dict[str, AttributeValue] = {}
        for key, value in pairs.items():
            if value is None:
                continue
            if key not in self._allowed:
                raise ConfigurationError(
                    f"telemetry attribute {key!r}",
                    "is not on the attribute allow-list",
                    "add it to sluicegate.observe.attributes if its values are bounded; ids "
                    "and row values never become attributes",
                )
            out[key] = self._bounded(key, value)
        return out

    def _bounded(self, key: str, value: AttributeValue) -> AttributeValue:
        if not isinstance(value, str):
            return value  # numbers are measurements or small enumerations, not open labels
        seen = self._seen.setdefault(key, set())
        if value in seen:
            return value
        if len(seen) >= self._max_values:
            self.overflowed[key] = self.overflowed.get(key, 0) + 1
            return OTHER
        seen.add(value)
        return value
