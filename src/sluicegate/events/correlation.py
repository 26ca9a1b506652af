"""Runtime correlation: who is doing what, captured into events at construction.

Two context variables carry it. Both follow trio's rules for ``contextvars``: a task started
with ``nursery.start_soon`` (or ``nursery.start``) copies the context of the task that called
it, and ``trio.to_thread.run_sync`` runs the function in a copy of the caller's context. So a
child task or a worker thread started by a worker sees the worker's correlation, and a value
set inside a child never leaks back to its parent.

- :class:`RuntimeCorrelation` (``current_correlation``): the task execution, set by the
  scheduler when a worker starts and extended with :func:`correlation_scope`.
- the request id (``current_request_id``): the logical model request in progress, set by the
  model-request executor for the duration of one ``execute`` with :func:`request_scope`, so
  that request admission's events (waits, leases) join the attempts of that request.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import msgspec


class RuntimeCorrelation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Identifiers that join scheduler and request events of one task execution.

    Only bounded, non-sensitive identifiers live here: never prompts, row values or secrets.
    ``task_execution_id`` is ``"<task_id>#<attempt>"``.
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


set_correlation = _CURRENT.set
"""Set the correlation for the current context (a trio task has its own context); returns the
token that resets it. The context variable's own method: no Python frame on the hot path."""


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


_REQUEST_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "sluicegate_request_id", default=None
)


current_request_id = _REQUEST_ID.get
"""Return the id of the logical model request in progress in this context, or ``None``."""


_request_ids: Final = itertools.count(1)


new_request_id = _request_ids.__next__
"""A fresh request id, unique within the process (several executors never collide)."""


def set_request_id(request_id: int | None) -> contextvars.Token[int | None]:
    """Mark what follows in this context as part of logical request ``request_id``.

    Returns the token for :func:`reset_request_id`. Not a checkpoint. The executor uses this
    pair (cheaper than a context manager on its hot path); :class:`request_scope` is the same
    as a ``with`` block.
    """
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: contextvars.Token[int | None]) -> None:
    """Undo :func:`set_request_id`."""
    _REQUEST_ID.reset(token)


class request_scope:
    """``with request_scope(request_id):`` marks the block as one logical model request.

    Request events built inside the block carry ``request_id``. Entering and leaving costs a
    context-variable set and reset; the executor enters it only while events are enabled.
    Not a checkpoint.
    """

    __slots__ = ("_token", "request_id")

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._token: contextvars.Token[int | None] | None = None

    def __enter__(self) -> int:
        self._token = _REQUEST_ID.set(self.request_id)
        return self.request_id

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _REQUEST_ID.reset(self._token)
            self._token = None
