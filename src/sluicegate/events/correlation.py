"""Runtime correlation: who is doing what, captured into events at construction."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec


class RuntimeCorrelation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Identifiers that join scheduler and request events of one task execution.

    Only bounded, non-sensitive identifiers live here: never prompts, row values or secrets.
    """

    run_id: str | None = None
    row_group: int | None = None
    row: int | None = None
    column: str | None = None
    task_type: str | None = None
    group_kind: str | None = None
    group_identity_hash: str | None = None
    task_execution_id: str | None = None
    task_id: Any = None


_CURRENT: contextvars.ContextVar[RuntimeCorrelation | None] = contextvars.ContextVar(
    "sluicegate_runtime_correlation", default=None
)


current_correlation = _CURRENT.get
"""Return the correlation of the running task, or ``None`` outside any task."""


def set_correlation(
    value: RuntimeCorrelation | None,
) -> contextvars.Token[RuntimeCorrelation | None]:
    """Set the correlation for the current context (a trio task has its own context)."""
    return _CURRENT.set(value)


@contextmanager
def correlation_scope(**fields: Any) -> Iterator[RuntimeCorrelation]:
    """Extend the current correlation with ``fields`` for the duration of the block."""
    base = _CURRENT.get()
    value = msgspec.structs.replace(base, **fields) if base else RuntimeCorrelation(**fields)
    token = _CURRENT.set(value)
    try:
        yield value
    finally:
        _CURRENT.reset(token)
