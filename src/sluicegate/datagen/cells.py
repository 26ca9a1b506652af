"""Running one cell: the worker the scheduler awaits for every released cell.

:class:`CellWorker` reads the row's upstream values from the tracker, sets the cell's
:class:`~sluicegate.events.RuntimeCorrelation` (so every model call's events carry run id, row
group, row, column and task execution id), calls the generator (async in the scheduler, sync in
a worker thread or inline), checks that the value can be written, applies ``keep_if``, stores
the value and buffers it for the journal. A failure becomes a typed outcome: ``retry`` for what
a later attempt can fix (rate limits and provider failures after the call's own retries,
timeouts, :class:`~sluicegate.errors.RetryableTaskError`, any error whose ``retryable`` is
true), ``drop`` for the rest (generator bugs, invalid structured output, bad configuration).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

import msgspec
import trio

from .._internal.checks import describe
from ..errors import ConfigurationError, RetryableTaskError
from ..events import RuntimeCorrelation, set_correlation
from ..providers import ProviderRateLimitedError, ProviderTimeoutError
from ..requests import ModelRequestError, RequestAdmissionError
from ..scheduling import SchedulableTask, SlowStartFailureKind, TaskOutcome, classify_failure
from .columns import Column
from .context import CellContext, ModelCaller, RowView
from .errors import CellGenerationError, StructuredOutputError
from .rundir import RunDirectory, journal_prefix
from .tracker import CellTracker

_MAX_BACKOFF: Final = 60.0


_RETRYABLE_DENIALS: Final = frozenset({"timeout", "shutdown", "circuit_open", "queue_full"})


_ENCODER: Final = msgspec.json.Encoder()


class ColumnRuntime:
    """What the worker needs about one column, precomputed once per run."""

    __slots__ = (
        "column",
        "filter_reason",
        "group_kind",
        "identity_hash",
        "index",
        "invoke",
        "journal_prefix",
        "keep_if",
        "keep_positions",
        "lane",
        "name",
        "task_type",
    )

    def __init__(
        self,
        column: Column,
        index: int,
        positions: Mapping[str, int],
        *,
        identity_hash: str,
        threaded: bool,
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.column = column
        self.index = index
        self.name = column.name
        self.keep_if = column.keep_if
        self.keep_positions = {**{d: positions[d] for d in column.depends_on}, column.name: index}
        self.filter_reason = f"keep_if of {column.name!r}"
        self.task_type = str(column.spec.__struct_config__.tag)
        self.group_kind = column.scheduling.kind
        self.identity_hash = identity_hash
        self.journal_prefix = journal_prefix(column.name)
        self.lane: object | None = None  # set by the layout: the lane this column's cells use
        self.invoke = _invoker(column, positions, threaded=threaded, limiter=limiter)


def _invoker(
    column: Column, positions: Mapping[str, int], *, threaded: bool, limiter: trio.CapacityLimiter
) -> Callable[[list[Any], CellContext], Any]:
    """An async function (values, ctx) -> value that calls the generator its way."""
    fn = column.generator
    style = column.call_style
    name = column.name
    row_positions = {d: positions[d] for d in column.depends_on}
    keywords = tuple((k, positions[k]) for k in style.keywords)

    if style.is_async and not style.positional and not keywords and style.passes_ctx:
        # The common shape of async generators (and of every built-in model column).
        if style.passes_row:

            async def row_and_ctx(values: list[Any], ctx: CellContext) -> Any:
                return await fn(row=RowView(values, row_positions, name), ctx=ctx)

            return row_and_ctx

        async def ctx_only(values: list[Any], ctx: CellContext) -> Any:
            return await fn(ctx=ctx)

        return ctx_only

    def arguments(values: list[Any], ctx: CellContext) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if style.positional:
            return (RowView(values, row_positions, name), ctx), {}
        kwargs = {k: values[i] for k, i in keywords}
        if style.passes_row:
            kwargs["row"] = RowView(values, row_positions, name)
        if style.passes_ctx:
            kwargs["ctx"] = ctx
        return (), kwargs

    if style.is_async:

        async def call_async(values: list[Any], ctx: CellContext) -> Any:
            args, kwargs = arguments(values, ctx)
            return await fn(*args, **kwargs)

        return call_async
    if threaded:

        async def call_thread(values: list[Any], ctx: CellContext) -> Any:
            args, kwargs = arguments(values, ctx)
            return await trio.to_thread.run_sync(
                partial(fn, *args, **kwargs), limiter=limiter, abandon_on_cancel=True
            )

        return call_thread

    async def call_inline(values: list[Any], ctx: CellContext) -> Any:
        args, kwargs = arguments(values, ctx)
        return fn(*args, **kwargs)

    return call_inline


class ErrorRateMonitor:
    """The share of failed cell attempts among the last ``window`` (a ring of outcomes).

    Successes are only counted on the hot path; they are folded into the ring when the next
    failure arrives (a run of ``window`` successes clears it), so a healthy run pays one
    increment per cell.
    """

    __slots__ = (
        "_count",
        "_failed",
        "_next",
        "_on_trip",
        "_pending",
        "_ring",
        "threshold",
        "tripped",
        "window",
    )

    def __init__(self, window: int, threshold: float, on_trip: Callable[[str], None]) -> None:
        self.window = window
        self.threshold = threshold
        self._ring = bytearray(window)
        self._next = 0
        self._count = 0
        self._failed = 0
        self._pending = 0  # successes not yet folded into the ring
        self._on_trip = on_trip
        self.tripped = False

    def success(self) -> None:
        self._pending += 1

    def failure(self) -> None:
        self._fold()
        self._push(1)
        if (
            not self.tripped
            and self._count == self.window
            and self._failed >= self.threshold * self.window
        ):
            self.tripped = True
            self._on_trip(
                f"{self._failed} of the last {self.window} cell attempts failed "
                f"(error_rate_threshold {self.threshold})"
            )

    def _fold(self) -> None:
        pending = self._pending
        self._pending = 0
        if pending >= self.window:
            self._ring[:] = bytes(self.window)
            self._failed = 0
            self._count = self.window
            return
        for _ in range(pending):
            self._push(0)

    def _push(self, failed: int) -> None:
        ring = self._ring
        position = self._next
        self._failed += failed - ring[position]
        ring[position] = failed
        self._next = position + 1 if position + 1 < self.window else 0
        if self._count < self.window:
            self._count += 1

    @property
    def rate(self) -> float:
        self._fold()
        return self._failed / self._count if self._count else 0.0


class CellWorker:
    """The scheduler's worker for every cell (see the module docstring)."""

    def __init__(
        self,
        *,
        runtimes: tuple[ColumnRuntime, ...],
        tracker: CellTracker,
        rundir: RunDirectory,
        caller: ModelCaller,
        run_id: str,
        seed: int,
        backoff_seconds: float,
        monitor: ErrorRateMonitor,
        correlate: bool,
        on_dead_endpoint: Callable[[str], None] | None = None,
    ) -> None:
        self._runtimes = runtimes
        self._columns = len(runtimes)
        self._tracker = tracker
        self._rundir = rundir
        self._caller = caller
        self._run_id = run_id
        self._seed = seed
        self._backoff = backoff_seconds
        self._monitor = monitor
        self._correlate = correlate
        self._on_dead_endpoint = on_dead_endpoint
        self._now = trio.lowlevel.current_clock().current_time
        self.failure_kind: dict[int, tuple[str, SlowStartFailureKind]] = {}
        """Cell -> the exception type of its last failed attempt (for failure counts) and its
        slow-start kind (:func:`~sluicegate.scheduling.classify_failure`)."""
        self.running = 0

    async def __call__(self, task: SchedulableTask) -> TaskOutcome | None:
        cell: int = task.task_id
        tracker = self._tracker
        values, group, attempt = tracker.cell_input(cell)
        # The execution's number over the run: the scheduler's attempt for this dispatch (the
        # tracker numbers releases as the scheduler numbers dispatches, across salvage rounds
        # and segments). ``attempt`` counts within the salvage round and paces the backoff.
        execution = task.prior_attempts + 1
        row, column = divmod(cell, self._columns)
        rt = self._runtimes[column]
        ctx = CellContext(
            self._caller,
            seed=self._seed,
            row_index=row,
            row_group=group,
            column=rt.name,
            attempt=execution,
            correlation=None,
            run_id=self._run_id,
            holder=rt.lane,
        )
        if self._correlate:
            # Only a sink reads correlation; without one the context builds it on demand.
            set_correlation(self.correlation(rt, cell, row, group, execution))
        self.running += 1
        now = self._now
        started = now()
        try:
            value = await rt.invoke(values, ctx)
            encoded = _encode(rt.name, value)
            filtered = None
            if rt.keep_if is not None:
                values[column] = value
                if not rt.keep_if(RowView(values, rt.keep_positions, rt.name)):
                    filtered = rt.filter_reason
        except Exception as exc:
            self._monitor.failure()
            if self._on_dead_endpoint is not None:
                dead = dead_endpoint(exc)
                if dead is not None:
                    self._on_dead_endpoint(dead)
            return self._failed(rt, cell, attempt, exc)
        finally:
            self.running -= 1
        if row & 7 == 0 or tracker.estimator.observed[column] < 64:
            tracker.observe(column, now() - started)  # a sample is enough once warmed up
        if tracker.record(cell, value, filtered):
            self._rundir.append_encoded(group, rt.journal_prefix, row, encoded)
        if self.failure_kind:
            self.failure_kind.pop(cell, None)
        self._monitor.success()
        return None

    def correlation(
        self, rt: ColumnRuntime, cell: int, row: int, group: int, attempt: int
    ) -> RuntimeCorrelation:
        """The correlation of one cell execution (what its events carry); ``attempt`` is the
        scheduler's attempt number of the dispatch, unique per cell and run."""
        return RuntimeCorrelation(
            run_id=self._run_id,
            row_group=group,
            row=row,
            column=rt.name,
            task_type=rt.task_type,
            group_kind=rt.group_kind,
            group_identity_hash=rt.identity_hash,
            task_execution_id=f"{rt.name}:{row}#{attempt}",
            task_id=cell,
        )

    def _failed(self, rt: ColumnRuntime, cell: int, attempt: int, exc: Exception) -> TaskOutcome:
        kind = type(exc).__name__
        self.failure_kind[cell] = (kind, classify_failure(exc))
        reason = f"{rt.name}: {kind}: {exc}"
        if len(reason) > 500:
            reason = reason[:497] + "..."
        hint = retry_hint(exc)
        if hint is None:
            return TaskOutcome.drop(reason)
        delay = hint if hint >= 0 else min(_MAX_BACKOFF, self._backoff * 2.0 ** (attempt - 1))
        return TaskOutcome.retry(delay, reason)


def _encode(column: str, value: object) -> bytes:
    try:
        return _ENCODER.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise CellGenerationError(
            f"column {column!r} returned {describe(value)} ({type(value).__name__}), which "
            f"cannot be written as JSON ({exc}). Fix: return str, int, float, bool, None, "
            "lists, dicts or msgspec Structs"
        ) from None


def dead_endpoint(exc: BaseException) -> str | None:
    """Why the run should stop, when ``exc`` says an endpoint is unreachable and has never
    answered in this run (a wrong URL, a server that is not running); ``None`` otherwise.

    Its circuit opened on connection failures before any success or rate limit. Waiting for
    the circuit's probes would retry every cell through open periods of 30 s, 60 s, ...,
    minutes before the rows fail. An endpoint that answered before and went down is an
    outage: its cells keep waiting for the probes, as before.
    """
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = dead_endpoint(inner)
            if found is not None:
                return found
        return None
    if not isinstance(exc, RequestAdmissionError) or exc.denied.cause is None:
        return None
    pressure = exc.denied.snapshot
    if pressure is None or pressure.successes or pressure.rate_limits:
        return None
    return (
        f"endpoint {exc.denied.item.resource} is unreachable and never answered in this run: "
        f"{exc.denied.cause}. Fix: check the endpoint's base_url and that its server is "
        "running, then run the same command again"
    )


def retry_hint(exc: BaseException) -> float | None:
    """``None`` when a later attempt cannot help; else the provider's wait hint in seconds,
    or -1 for "use the backoff"."""
    if isinstance(exc, (StructuredOutputError, CellGenerationError, ConfigurationError)):
        return None
    if isinstance(exc, RequestAdmissionError):
        if exc.reason not in _RETRYABLE_DENIALS:
            return None
        after = exc.denied.available_after
        return max(0.0, after - trio.current_time()) if after is not None else -1.0
    hint = getattr(exc, "retry_after", None)
    usable = hint if isinstance(hint, (int, float)) and math.isfinite(hint) and hint >= 0 else -1.0
    if isinstance(exc, RetryableTaskError) or getattr(exc, "retryable", None) is True:
        return float(usable)
    if isinstance(exc, (ModelRequestError, ProviderRateLimitedError, ProviderTimeoutError)):
        return float(usable)
    if isinstance(exc, trio.TooSlowError):
        return -1.0
    if isinstance(exc, BaseExceptionGroup):
        hints = [retry_hint(e) for e in exc.exceptions]
        if hints and all(h is not None for h in hints):
            return max(h for h in hints if h is not None)
    return None
