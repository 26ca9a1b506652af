"""Per-task timelines: both event streams joined into one record per task execution.

The join keys are all in the events: a scheduler event names its task (``task_id``) and, once
the worker exists, its attempt; a request event carries the calling task's correlation
(``task_id`` and ``task_execution_id``, ``"<task_id>#<attempt>"``) and the ``request_id`` of
its logical model request. Events are read in emission order (the order of one sink's file
or list), which is the causal order of the run: one event loop emits both streams.

The timeline fields of :class:`TaskExecution` are the ones ``plans/observability.md`` lists.
For a task that made several model calls the ``request_*`` / ``model_request_*`` fields
describe its first logical request (first attempt's wait, lease and call start; last
attempt's call end and lease release); every request and attempt is in ``requests``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import msgspec

from ..events.correlation import RuntimeCorrelation
from ..events.schema import AnyEvent, RequestEvent, SchedulerEvent

TERMINAL_KINDS = frozenset(
    {"task_completed", "retry_deferred", "non_retryable_dropped", "cancelled"}
)
"""Scheduler event kinds that end a task execution."""

_STATUS_OF = {
    "task_completed": "succeeded",
    "retry_deferred": "retry_deferred",
    "non_retryable_dropped": "failed",
    "cancelled": "cancelled",
}


def task_key(task_id: Any) -> Hashable:
    """A hashable key for a task id that survived a JSON round trip (lists become tuples)."""
    if isinstance(task_id, list):
        return tuple(task_key(v) for v in task_id)
    if isinstance(task_id, dict):
        return tuple(sorted((k, task_key(v)) for k, v in task_id.items()))
    return task_id  # type: ignore[no-any-return]


def endpoint_key(event: RequestEvent) -> tuple[str, str, str]:
    """The request resource an event is about: (provider, model_id, domain)."""
    return (event.provider or "?", event.model_id or "?", event.domain or "chat")


TIMELINE_FIELDS = (
    "dependency_ready_at",
    "ready_enqueued_at",
    "selected_at",
    "task_lease_acquired_at",
    "worker_spawned_at",
    "request_wait_started_at",
    "request_wait_completed_at",
    "request_lease_acquired_at",
    "model_request_started_at",
    "model_request_completed_at",
    "request_lease_released_at",
    "task_completed_at",
    "task_lease_released_at",
)
"""The per-task timeline, in causal order (each one is at or after the one before)."""


class AttemptTimeline(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a logical model request: its admission wait, lease and provider call."""

    attempt: int
    wait_started_at: float | None = None
    wait_completed_at: float | None = None
    lease_acquired_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    lease_released_at: float | None = None
    outcome: str | None = None
    will_retry: bool = False
    retry_after: float | None = None

    @property
    def admission_wait(self) -> float:
        """Seconds spent waiting for the request lease (0 when granted at once)."""
        start = self.wait_started_at
        end = self.wait_completed_at or self.lease_acquired_at
        return 0.0 if start is None or end is None else max(0.0, end - start)

    @property
    def provider_seconds(self) -> float:
        """Seconds inside the provider call."""
        if self.started_at is None or self.completed_at is None:
            return 0.0
        return max(0.0, self.completed_at - self.started_at)

    @property
    def begins_at(self) -> float | None:
        return self.wait_started_at or self.lease_acquired_at or self.started_at


class RequestTimeline(msgspec.Struct, frozen=True, kw_only=True):
    """One logical model request (``ModelRequestExecutor.execute``) and its attempts."""

    request_id: int | None
    endpoint: tuple[str, str, str]
    attempts: tuple[AttemptTimeline, ...]
    outcome: str | None = None
    """Last attempt's outcome, or the admission denial (``admission_<reason>``)."""
    ended_at: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_model: str | None = None

    @property
    def started_at(self) -> float | None:
        return self.attempts[0].begins_at if self.attempts else None

    @property
    def provider_seconds(self) -> float:
        return sum(a.provider_seconds for a in self.attempts)

    @property
    def admission_wait(self) -> float:
        return sum(a.admission_wait for a in self.attempts)

    @property
    def backoff_seconds(self) -> float:
        """Seconds between a failed attempt's end and the next attempt's start."""
        total = 0.0
        for before, after in zip(self.attempts, self.attempts[1:], strict=False):
            begin = after.begins_at
            if before.completed_at is not None and begin is not None:
                total += max(0.0, begin - before.completed_at)
        return total


class TaskExecution(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of one task: the timeline of ``plans/observability.md`` and its requests."""

    task_id: Any
    attempt: int
    group: str | None = None
    column: str | None = None
    lease_id: int | None = None
    dependency_ready_at: float | None = None
    ready_enqueued_at: float | None = None
    selected_at: float | None = None
    task_lease_acquired_at: float | None = None
    worker_spawned_at: float | None = None
    request_wait_started_at: float | None = None
    request_wait_completed_at: float | None = None
    request_lease_acquired_at: float | None = None
    model_request_started_at: float | None = None
    model_request_completed_at: float | None = None
    request_lease_released_at: float | None = None
    task_completed_at: float | None = None
    task_lease_released_at: float | None = None
    status: str = "running"
    """``succeeded``, ``retry_deferred``, ``failed``, ``cancelled`` or ``running``."""
    reason: str | None = None
    requests: tuple[RequestTimeline, ...] = ()
    row: int | None = None
    """A pipeline cell's row (from its events' correlation); ``None`` outside a pipeline."""
    row_group: int | None = None

    def timeline(self) -> list[tuple[str, float]]:
        """The timeline fields that are set, in the documented order."""
        out = []
        for name in TIMELINE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out.append((name, value))
        return out

    @property
    def ended_at(self) -> float | None:
        return self.task_completed_at or self.task_lease_released_at

    @property
    def queue_wait(self) -> float:
        """Seconds between entering the ready queue and being admitted."""
        if self.ready_enqueued_at is None or self.task_lease_acquired_at is None:
            return 0.0
        return max(0.0, self.task_lease_acquired_at - self.ready_enqueued_at)

    @property
    def provider_seconds(self) -> float:
        return sum(r.provider_seconds for r in self.requests)

    @property
    def request_wait(self) -> float:
        return sum(r.admission_wait for r in self.requests)

    @property
    def backoff_seconds(self) -> float:
        return sum(r.backoff_seconds for r in self.requests)

    @property
    def attempts(self) -> int:
        """Model-call attempts made by this execution (over all its requests)."""
        return sum(len(r.attempts) for r in self.requests)


class TaskTimeline(msgspec.Struct, frozen=True, kw_only=True):
    """Every execution of one task, oldest first."""

    task_id: Any
    group: str | None
    executions: tuple[TaskExecution, ...]

    @property
    def status(self) -> str:
        return self.executions[-1].status if self.executions else "not_started"

    @property
    def provider_seconds(self) -> float:
        return sum(e.provider_seconds for e in self.executions)


class _Attempt:
    __slots__ = (
        "attempt",
        "completed_at",
        "lease_acquired_at",
        "lease_released_at",
        "outcome",
        "retry_after",
        "started_at",
        "wait_completed_at",
        "wait_started_at",
        "will_retry",
    )

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.wait_started_at: float | None = None
        self.wait_completed_at: float | None = None
        self.lease_acquired_at: float | None = None
        self.started_at: float | None = None
        self.completed_at: float | None = None
        self.lease_released_at: float | None = None
        self.outcome: str | None = None
        self.will_retry = False
        self.retry_after: float | None = None

    def freeze(self) -> AttemptTimeline:
        return AttemptTimeline(
            attempt=self.attempt,
            wait_started_at=self.wait_started_at,
            wait_completed_at=self.wait_completed_at,
            lease_acquired_at=self.lease_acquired_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            lease_released_at=self.lease_released_at,
            outcome=self.outcome,
            will_retry=self.will_retry,
            retry_after=self.retry_after,
        )


class _Request:
    __slots__ = ("attempts", "ended_at", "endpoint", "info", "outcome", "request_id")

    def __init__(self, request_id: int | None, endpoint: tuple[str, str, str]) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.attempts: list[_Attempt] = []
        self.outcome: str | None = None
        self.ended_at: float | None = None
        self.info: dict[str, Any] = {}

    def current(self, *, opening: bool) -> _Attempt:
        """The attempt in progress; ``opening`` events start a new one after a finished one."""
        attempts = self.attempts
        if not attempts or (opening and attempts[-1].completed_at is not None):
            attempts.append(_Attempt(len(attempts) + 1))
        return attempts[-1]

    def freeze(self) -> RequestTimeline:
        return RequestTimeline(
            request_id=self.request_id,
            endpoint=self.endpoint,
            attempts=tuple(a.freeze() for a in self.attempts),
            outcome=self.outcome,
            ended_at=self.ended_at,
            input_tokens=self.info.get("input_tokens"),
            output_tokens=self.info.get("output_tokens"),
            response_model=self.info.get("response_model"),
        )


class _Execution:
    __slots__ = ("fields", "requests")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.requests: list[_Request] = []

    def freeze(self) -> TaskExecution:
        fields = dict(self.fields)
        requests = tuple(r.freeze() for r in self.requests)
        if requests and requests[0].attempts:
            first, last = requests[0].attempts[0], requests[0].attempts[-1]
            fields["request_wait_started_at"] = first.wait_started_at
            fields["request_wait_completed_at"] = first.wait_completed_at
            fields["request_lease_acquired_at"] = first.lease_acquired_at
            fields["model_request_started_at"] = first.started_at
            fields["model_request_completed_at"] = last.completed_at
            fields["request_lease_released_at"] = last.lease_released_at
        return TaskExecution(requests=requests, **fields)


_REQUEST_OPENING = frozenset(
    {"request_wait_started", "request_lease_acquired", "model_request_started"}
)


def _label(execution: _Execution, corr: RuntimeCorrelation | None) -> None:
    """A pipeline cell's column, row and row group, from an event its worker emitted."""
    if corr is None:
        return
    fields = execution.fields
    if corr.column is not None:
        fields.setdefault("column", corr.column)
    if corr.row is not None:
        fields.setdefault("row", corr.row)
    if corr.row_group is not None:
        fields.setdefault("row_group", corr.row_group)


class TimelineBuilder:
    """Consumes events in emission order and assembles task and request timelines.

    Use :func:`build_timelines` unless events arrive one at a time.
    """

    def __init__(self) -> None:
        self._pending: dict[Hashable, dict[str, Any]] = {}
        self._current: dict[Hashable, _Execution] = {}
        self._executions: dict[tuple[Hashable, int], _Execution] = {}
        self._order: list[tuple[Hashable, int]] = []
        self._task_ids: dict[Hashable, Any] = {}
        self._requests: dict[int, _Request] = {}
        self._orphans: list[_Request] = []

    def add(self, event: AnyEvent) -> None:
        """Fold one event into the timelines."""
        if type(event) is SchedulerEvent:
            self._scheduler(event)
        else:
            assert isinstance(event, RequestEvent)
            self._request(event)

    # -- scheduler stream ---------------------------------------------------------------

    def _scheduler(self, e: SchedulerEvent) -> None:
        kind = e.event_kind
        if e.task_id is None:
            return
        key = task_key(e.task_id)
        t = e.captured_at
        if kind == "ready_enqueued":  # readiness and queueing: one instant (schema 2)
            self._task_ids.setdefault(key, e.task_id)
            self._pending[key] = {
                "dependency_ready_at": t,
                "ready_enqueued_at": t,
                "group": e.group,
            }
        elif kind == "task_dispatched":  # selected, leased and spawned: one instant
            fields = self._pending.pop(key, {})
            if e.group is not None:
                fields["group"] = e.group
            fields.update(
                task_id=e.task_id,
                attempt=e.attempt or 1,
                lease_id=e.lease_id,
                selected_at=t,
                task_lease_acquired_at=t,
                worker_spawned_at=t,
            )
            execution = _Execution(fields)
            ident = (key, fields["attempt"])
            self._executions[ident] = execution
            self._order.append(ident)
            self._current[key] = execution
        elif kind in TERMINAL_KINDS:
            ended = self._current.pop(key, None)
            if ended is not None:
                if e.lease_id is not None and ended.fields.get("lease_id") == e.lease_id:
                    ended.fields["task_lease_released_at"] = t
                ended.fields["task_completed_at"] = t
                ended.fields["status"] = _STATUS_OF[kind]
                ended.fields["reason"] = e.reason
                _label(ended, e.correlation)

    # -- request stream -----------------------------------------------------------------

    def _execution_of(self, e: RequestEvent) -> _Execution | None:
        corr = e.correlation
        if corr is None or corr.task_id is None:
            return None
        key = task_key(corr.task_id)
        ident = corr.task_execution_id
        if ident is not None and "#" in ident:
            try:
                attempt = int(ident.rsplit("#", 1)[1])
            except ValueError:
                attempt = 0
            found = self._executions.get((key, attempt))
            if found is not None:
                return found
        return self._current.get(key)

    def _request(self, e: RequestEvent) -> None:
        rid = e.request_id
        if rid is None:
            return
        kind = e.event_kind
        request = self._requests.get(rid)
        if request is None:
            if kind not in _REQUEST_OPENING and kind != "request_acquire_denied":
                return
            request = self._requests[rid] = _Request(rid, endpoint_key(e))
            execution = self._execution_of(e)
            if execution is None:
                self._orphans.append(request)
            else:
                execution.requests.append(request)
                _label(execution, e.correlation)
        t = e.captured_at
        if kind == "request_wait_started":
            request.current(opening=True).wait_started_at = t
        elif kind == "request_wait_completed":
            request.current(opening=False).wait_completed_at = t
        elif kind == "request_lease_acquired":
            request.current(opening=True).lease_acquired_at = t
        elif kind == "model_request_started":
            attempt = request.current(opening=True)
            attempt.started_at = t
            if attempt.lease_acquired_at is None:  # folded: the lease was taken now
                attempt.lease_acquired_at = t
            if e.attempt is not None:
                attempt.attempt = e.attempt
        elif kind == "model_request_completed":
            self._completed(request, e)
        elif kind == "request_lease_released":
            if request.attempts:
                request.attempts[-1].lease_released_at = t
        elif kind in ("request_acquire_denied", "request_wait_timeout"):
            request.outcome = f"admission_{e.reason or kind}"
            request.ended_at = t
        elif kind == "request_wait_cancelled":
            request.outcome = "local_cancelled"
            request.ended_at = t

    @staticmethod
    def _completed(request: _Request, e: RequestEvent) -> None:
        attempt = request.current(opening=False)
        attempt.completed_at = e.captured_at
        attempt.outcome = e.outcome
        attempt.retry_after = e.retry_after
        # The lease goes back in this instant (a separate request_lease_released, when the
        # controller reports to another stream, overwrites it with the same time).
        attempt.lease_released_at = e.captured_at
        call = e.call
        attempt.will_retry = call is not None and call.will_retry
        request.outcome = e.outcome
        if not attempt.will_retry:
            request.ended_at = e.captured_at
        if call is not None:
            info = request.info
            for name, value in (
                ("input_tokens", call.input_tokens),
                ("output_tokens", call.output_tokens),
                ("response_model", call.response_model),
            ):
                if value is not None:
                    info[name] = value

    # -- results ------------------------------------------------------------------------

    def executions(self) -> list[TaskExecution]:
        """Every task execution seen so far, in spawn order."""
        return [self._executions[ident].freeze() for ident in self._order]

    def tasks(self) -> list[TaskTimeline]:
        """Every task that became ready, with its executions (none if it never started)."""
        by_task: dict[Hashable, list[TaskExecution]] = {}
        groups: dict[Hashable, str | None] = {}
        for ident in self._order:
            by_task.setdefault(ident[0], []).append(self._executions[ident].freeze())
        for key, fields in self._pending.items():
            groups.setdefault(key, fields.get("group"))
        out = []
        for key, task_id in self._task_ids.items():
            executions = by_task.get(key, [])
            group = executions[0].group if executions else groups.get(key)
            out.append(TaskTimeline(task_id=task_id, group=group, executions=tuple(executions)))
        return out

    def orphan_requests(self) -> list[RequestTimeline]:
        """Logical requests made outside any scheduler task (no task correlation)."""
        return [r.freeze() for r in self._orphans]


def build_timelines(events: Iterable[AnyEvent]) -> TimelineBuilder:
    """Fold ``events`` (emission order) into a :class:`TimelineBuilder`."""
    builder = TimelineBuilder()
    add = builder.add
    for event in events:
        add(event)
    return builder
