"""Slow-start batching: dispatch a fan-out in geometric batches, halting at the first failure.

:func:`slow_start` runs ``items`` in batches of 1, 2, 4, ... (``BatchStrategy``: the first
size, the growth multiplier and a cap), each batch to completion in its own nursery before the
next one starts. The first batch with a failure is the last one: later batches never
dispatch. So a fan-out against a broken endpoint, a wrong configuration or an overloaded
service fails after one call instead of after thousands, and a healthy one reaches full width
after ``log2(cap)`` round trips. (The shape is Kubernetes' ``slowStartBatch`` for creating a
ReplicaSet's pods.)

Failures are classified into three kinds (the classifier is injectable):

=============  ===============================================  ============================
Kind           Typical cause                                    Outcome of the fan-out
=============  ===============================================  ============================
task           the work itself failed                           ``halted`` + ``reason``
admission      a terminal admission refusal (unknown resource,  ``halted`` + ``reason``
               shut down, a request larger than any quota)      (the refusal's own fix)
backpressure   rate limited, no capacity now, circuit open      ``throttled`` + ``retry_after``
=============  ===============================================  ============================

A terminal failure wins over backpressure in a mixed batch: the batch is ``halted``. A
``throttled`` result carries a bounded, deterministic ``retry_after`` so a controller can
requeue the pending items and call :func:`slow_start` again with ``attempt + 1`` (starting
again from the first batch size).

:class:`SlowStartWindow` is the same policy for work admitted as a stream, without a barrier
per batch: a width that grows 1, 2, 4, ... as the items of each step show health, and halts
when a step's first items fail (the data-generation runner admits row groups through it).

This module imports nothing from the request layer: the default classifier recognizes
sluicegate's admission and backpressure errors by their documented attributes (see
:func:`classify_failure`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

import msgspec
import trio
from attrs import frozen

from .._internal.checks import describe, did_you_mean, is_number
from .._internal.clock import now
from ..errors import ConfigurationError, SluicegateError

__all__ = [
    "BatchStrategy",
    "FailureClassifier",
    "SlowStartBatch",
    "SlowStartFailure",
    "SlowStartFailureKind",
    "SlowStartOutcome",
    "SlowStartResult",
    "SlowStartWindow",
    "SlowStartWindowState",
    "SlowStartWindowView",
    "classify_failure",
    "slow_start",
]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

SlowStartFailureKind: TypeAlias = Literal["task", "admission", "backpressure"]
"""How a failed item is treated: ``task`` and ``admission`` halt, ``backpressure`` throttles."""

SlowStartOutcome: TypeAlias = Literal["completed", "halted", "throttled"]
"""How a fan-out (or one batch of it) ended."""

SlowStartWindowState: TypeAlias = Literal["ramping", "completed", "halted"]
"""Where a :class:`SlowStartWindow` is: still watching its items, at full width for good, or
halted."""

FailureClassifier: TypeAlias = Callable[[Exception], SlowStartFailureKind]
"""Maps an item's exception to its failure kind (see :func:`classify_failure`)."""

_KINDS: Final = ("task", "admission", "backpressure")

# RequestAdmissionDenied.reason values that mean "not now" rather than "never".
_BACKPRESSURE_REASONS: Final = frozenset({"timeout", "queue_full", "circuit_open", "would_wait"})


def _config_error(name: str, value: object, fix: str) -> ConfigurationError:
    return ConfigurationError(f"BatchStrategy.{name}", f"got {describe(value)}", fix)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return is_number(value) and math.isfinite(value)  # type: ignore[arg-type]


class BatchStrategy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How :func:`slow_start` grows its batches and backs off when throttled. Validated.

    - ``initial_batch_size`` (int >= 1, default 1): the first batch.
    - ``multiplier`` (finite number >= 1, default 2): each batch is
      ``ceil(previous * multiplier)`` items; ``1`` gives fixed-size batches.
    - ``max_batch_size`` (int >= ``initial_batch_size``, default 64): the cap.
    - ``base_retry_after`` (finite seconds > 0, default 1), ``backoff_multiplier`` (finite
      number >= 1, default 2) and ``max_retry_after`` (finite seconds >=
      ``base_retry_after``, default 60): the delay a throttled fan-out reports for attempt
      ``n`` is ``min(max_retry_after, base_retry_after * backoff_multiplier ** n)`` (see
      :meth:`retry_after`).

    A bad value raises :class:`ConfigurationError` naming the field (``BatchStrategy.<name>``)
    and the accepted range. From a config mapping (TOML), use :meth:`from_mapping`, which also
    rejects unknown keys with a did-you-mean.
    """

    initial_batch_size: int = 1
    multiplier: float = 2.0
    max_batch_size: int = 64
    base_retry_after: float = 1.0
    backoff_multiplier: float = 2.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not _is_int(self.initial_batch_size) or self.initial_batch_size < 1:
            raise _config_error("initial_batch_size", self.initial_batch_size, "use an int >= 1")
        if not _is_int(self.max_batch_size) or self.max_batch_size < self.initial_batch_size:
            raise _config_error(
                "max_batch_size",
                self.max_batch_size,
                f"use an int >= initial_batch_size ({self.initial_batch_size})",
            )
        for name in ("multiplier", "backoff_multiplier"):
            value = getattr(self, name)
            if not _is_finite(value) or value < 1:
                raise _config_error(
                    name, value, "use a finite number >= 1 (1 keeps the size/delay constant)"
                )
        if not _is_finite(self.base_retry_after) or self.base_retry_after <= 0:
            raise _config_error(
                "base_retry_after", self.base_retry_after, "use a finite number of seconds > 0"
            )
        if not _is_finite(self.max_retry_after) or self.max_retry_after < self.base_retry_after:
            raise _config_error(
                "max_retry_after",
                self.max_retry_after,
                f"use a finite number of seconds >= base_retry_after ({self.base_retry_after})",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BatchStrategy:
        """A strategy from a config table; unknown keys raise with a did-you-mean."""
        known = cls.__struct_fields__
        for key in values:
            if key not in known:
                raise ConfigurationError(
                    f"BatchStrategy.{key}",
                    f"unknown key{did_you_mean(str(key), known)}",
                    "use one of " + ", ".join(known),
                )
        return cls(**values)

    def batch_sizes(self, total: int) -> Iterator[int]:
        """The sizes of the batches for ``total`` items (the last one may be smaller)."""
        left = total
        size = self.initial_batch_size
        while left > 0:
            batch = min(size, left)
            yield batch
            left -= batch
            size = self.next_batch_size(size)

    def next_batch_size(self, size: int) -> int:
        """The batch (or window width) after one of ``size``: ``ceil(size * multiplier)``,
        at most ``max_batch_size``."""
        return min(self.max_batch_size, math.ceil(size * self.multiplier))

    def retry_after(self, attempt: int) -> float:
        """The delay a fan-out throttled on its ``attempt``-th try (0-based) reports."""
        try:
            delay = self.base_retry_after * self.backoff_multiplier**attempt
        except OverflowError:  # past the float range, so past any cap
            return self.max_retry_after
        return min(self.max_retry_after, delay)


@frozen
class SlowStartFailure:
    """One failed item: its ``index`` in ``items``, its ``kind`` and the ``error`` it raised."""

    index: int
    kind: SlowStartFailureKind
    error: Exception


@frozen
class SlowStartBatch:
    """One finished batch, as the ``on_batch`` observer sees it.

    ``index`` counts batches from 0; ``start`` is the index of its first item in ``items``;
    ``size`` is how many items it dispatched; ``outcome`` is ``completed`` (every item
    succeeded), ``halted`` or ``throttled``; ``failures`` are its failed items in item order.
    """

    index: int
    start: int
    size: int
    outcome: SlowStartOutcome
    failures: tuple[SlowStartFailure, ...] = ()


@frozen
class SlowStartResult:
    """How a :func:`slow_start` fan-out ended.

    ``outcome``: ``completed`` (every item succeeded), ``halted`` (a task or admission
    failure; ``reason`` says which item failed, how, and the error's own fix) or
    ``throttled`` (backpressure only; ``retry_after`` seconds, bounded by
    ``BatchStrategy.max_retry_after``). ``dispatched`` items were started (always a prefix of
    ``items``); ``succeeded`` of them returned. ``pending`` lists the indices of the items to
    requeue: the failed ones, then every item never dispatched.
    """

    outcome: SlowStartOutcome
    total: int
    dispatched: int
    succeeded: int
    batches: tuple[SlowStartBatch, ...]
    failures: tuple[SlowStartFailure, ...]
    reason: str | None = None
    retry_after: float | None = None

    @property
    def pending(self) -> tuple[int, ...]:
        """Indices of the items that did not succeed (failed, then never dispatched)."""
        return (*(f.index for f in self.failures), *range(self.dispatched, self.total))


def classify_failure(error: Exception) -> SlowStartFailureKind:
    """The default classifier: sluicegate's admission and backpressure errors, else ``task``.

    Recognized by their documented attributes, so the scheduling layer needs no import from
    the request layer (and a user error with the same attributes is treated alike):

    - ``backpressure``: a sluicegate error with ``status == 429`` (a provider rate limit),
      with ``denied.reason`` in ``timeout``, ``queue_full``, ``circuit_open``, ``would_wait``
      (request admission had no capacity in time), or with ``outcome.kind == "rate_limited"``
      (a model request that kept being rate limited through its retries).
    - ``admission``: any other sluicegate error carrying a ``denied`` admission decision
      (``shutdown``, ``unknown_resource``, ``too_large``: waiting cannot help).
    - ``task``: everything else, including every exception that is not a
      :class:`~sluicegate.errors.SluicegateError`.
    """
    if not isinstance(error, SluicegateError):
        return "task"
    if getattr(error, "status", None) == 429:
        return "backpressure"
    denied = getattr(error, "denied", None)
    if denied is not None:
        reason = getattr(denied, "reason", None)
        return "backpressure" if reason in _BACKPRESSURE_REASONS else "admission"
    outcome = getattr(error, "outcome", None)
    if getattr(outcome, "kind", None) == "rate_limited":
        return "backpressure"
    return "task"


def _hinted_delay(error: Exception) -> float | None:
    """The error's own idea of when to come back, in seconds from now, if it has one."""
    hint: object = getattr(error, "retry_after", None)
    if hint is None:
        hint = getattr(getattr(error, "outcome", None), "retry_after_seconds", None)
    if hint is None:
        available_after: object = getattr(getattr(error, "denied", None), "available_after", None)
        if isinstance(available_after, (int, float)) and _is_finite(available_after):
            hint = available_after - now()
    if not isinstance(hint, (int, float)) or not _is_finite(hint):
        return None
    return max(0.0, float(hint))


def _classify(classify: FailureClassifier, error: Exception) -> SlowStartFailureKind:
    kind = classify(error)
    if kind not in _KINDS:
        raise ConfigurationError(
            "slow_start.classify",
            f"returned {describe(kind)}{did_you_mean(str(kind), _KINDS)}",
            "return one of 'task', 'admission', 'backpressure'",
        )
    return kind


def _halt_reason(batch: SlowStartBatch, failure: SlowStartFailure) -> str:
    error = failure.error
    return (
        f"batch {batch.index} (items {batch.start}..{batch.start + batch.size - 1}): "
        f"{failure.kind} failure of item {failure.index}: {type(error).__name__}: {error}"
    )


async def _run_batch(
    items: Sequence[T],
    run: Callable[[T], Awaitable[object]],
    start: int,
    size: int,
    classify: FailureClassifier,
) -> tuple[int, list[SlowStartFailure]]:
    errors: list[tuple[int, Exception]] = []
    succeeded = 0

    async def one(index: int) -> None:
        nonlocal succeeded
        try:
            await run(items[index])
        except Exception as error:  # trio.Cancelled is a BaseException and propagates
            errors.append((index, error))
        else:
            succeeded += 1

    async with trio.open_nursery() as nursery:
        for index in range(start, start + size):
            nursery.start_soon(one, index)
    # Classified here, outside the nursery, so a broken classifier raises plainly.
    errors.sort(key=lambda pair: pair[0])
    failures = [SlowStartFailure(i, _classify(classify, error), error) for i, error in errors]
    return succeeded, failures


async def slow_start(
    items: Sequence[T],
    run: Callable[[T], Awaitable[object]],
    *,
    strategy: BatchStrategy | None = None,
    classify: FailureClassifier = classify_failure,
    on_batch: Callable[[SlowStartBatch], object] | None = None,
    attempt: int = 0,
) -> SlowStartResult:
    """Run ``run(item)`` for every item, in geometric batches, stopping at the first failure.

    Each batch runs in its own nursery and finishes completely (its other items are not
    cancelled when one fails) before the next batch is dispatched; after a batch with a
    failure no further item is dispatched. An item fails when ``run`` raises an
    ``Exception``; ``classify`` (default :func:`classify_failure`) decides its kind. The
    result is ``halted`` if any failure of the batch is a ``task`` or ``admission`` failure
    (``reason`` names the first, by item order), else ``throttled`` with
    ``retry_after = min(max_retry_after, max(strategy.retry_after(attempt), hint))`` where
    ``hint`` is the largest delay the backpressure errors asked for themselves (their
    ``retry_after``, or an admission denial's ``available_after``). ``attempt`` (int >= 0)
    counts how often this fan-out was throttled before.

    ``on_batch`` is called once per finished batch, in order, with a :class:`SlowStartBatch`;
    an exception it raises propagates and no later batch is dispatched.

    Cancellation: like trio's primitives, this is a checkpoint (even for no items). If the
    caller is cancelled while a batch runs, the batch's tasks are cancelled, no later batch is
    dispatched, ``on_batch`` is not called for the interrupted batch, and ``trio.Cancelled``
    propagates. ``BaseException`` raised by ``run`` (``KeyboardInterrupt``, ...) is not a
    failure: it cancels the batch and propagates, as from any nursery. A classifier that
    returns something other than a kind raises :class:`ConfigurationError` the same way.
    """
    strategy = BatchStrategy() if strategy is None else strategy
    if not isinstance(strategy, BatchStrategy):
        raise ConfigurationError(
            "slow_start.strategy", f"got {describe(strategy)}", "pass a BatchStrategy or None"
        )
    if not _is_int(attempt) or attempt < 0:
        raise ConfigurationError(
            "slow_start.attempt",
            f"got {describe(attempt)}",
            "use an int >= 0: how often this fan-out was throttled before",
        )
    await trio.lowlevel.checkpoint()
    total = len(items)
    batches: list[SlowStartBatch] = []
    dispatched = succeeded = 0
    for index, size in enumerate(strategy.batch_sizes(total)):
        ok, failures = await _run_batch(items, run, dispatched, size, classify)
        succeeded += ok
        terminal = [f for f in failures if f.kind != "backpressure"]
        outcome: SlowStartOutcome = (
            "halted" if terminal else "throttled" if failures else "completed"
        )
        batch = SlowStartBatch(index, dispatched, size, outcome, tuple(failures))
        batches.append(batch)
        dispatched += size
        if on_batch is not None:
            on_batch(batch)
        if outcome == "completed":
            continue
        reason = retry_after = None
        if terminal:
            reason = _halt_reason(batch, terminal[0])
        else:
            hints = [h for h in map(_hinted_delay, (f.error for f in failures)) if h is not None]
            delay = max([strategy.retry_after(attempt), *hints])
            retry_after = min(strategy.max_retry_after, delay)
        return SlowStartResult(
            outcome=outcome,
            total=total,
            dispatched=dispatched,
            succeeded=succeeded,
            batches=tuple(batches),
            failures=tuple(failures),
            reason=reason,
            retry_after=retry_after,
        )
    return SlowStartResult(
        outcome="completed",
        total=total,
        dispatched=dispatched,
        succeeded=succeeded,
        batches=tuple(batches),
        failures=(),
    )


@frozen
class SlowStartWindowView:
    """A :class:`SlowStartWindow` at one moment (frozen; cheap to take).

    ``state``; ``limit``: how many items may be in the window now (0 once halted);
    ``widths``: every width so far, in order (``(1, 2, 4)``: the step is ``len(widths) - 1``);
    ``probing``: items of the step's batch that have not shown health; ``failures``: terminal
    failures counted against the step; ``reason``: why it halted.
    """

    state: SlowStartWindowState
    limit: int
    widths: tuple[int, ...]
    probing: int
    failures: int
    reason: str | None = None


class SlowStartWindow(Generic[K]):
    """Slow start for items admitted as a stream: a width that grows as each batch shows health.

    :func:`slow_start` needs the whole fan-out up front and runs each batch to its end before
    the next one: a barrier per batch. Long-lived items admitted one at a time whose lifetimes
    overlap (the row groups of a run: a new group starts while older ones finish) need the
    same policy without the barrier. The caller admits while it holds fewer than
    :attr:`limit` items and reports what it sees:

    - :meth:`admitted`: an item entered the window. The first ``initial_batch_size`` items, and
      after each growth the items that fill the new room (``new width - old width``), are the
      step's *batch*: they are watched (the call returns True). An item admitted in place of
      one that left (the window was full) is not.
    - :meth:`healthy`: a watched item showed that its work works (a first unit of it
      succeeded). When every item of the batch has, the width grows to
      ``strategy.next_batch_size(width)`` and a new step starts. Once a batch cannot grow the
      width (at ``max_batch_size``, or with a ``multiplier`` of 1), the window is
      ``completed`` and reports are ignored from then on.
    - :meth:`failed`: a unit of a watched item's work failed, with its kind (from
      :func:`classify_failure` or any classifier). ``task`` and ``admission`` failures count
      against the step until one of its batch shows health; the ``tolerance``-th halts the
      window (``limit`` 0, ``reason`` set) and the caller stops. ``backpressure`` counts for
      nothing: the width holds until health shows (the streaming form of ``throttled``: the
      item's own retries go on).
    - :meth:`left`: a watched item left without showing health (it had nothing left to run,
      or was abandoned): the next item admitted takes its place in the batch.

    The widths are the batch sizes of ``strategy`` (``initial_batch_size``, ``multiplier``,
    ``max_batch_size``); its retry fields are not used. A bad ``strategy`` or ``tolerance``
    (int >= 1) raises :class:`ConfigurationError`. Pure and synchronous (no clock, no
    checkpoint, no lock: the caller's event loop serializes the calls); each costs O(1).
    """

    __slots__ = (
        "_failures",
        "_probing",
        "_proven",
        "_reason",
        "_state",
        "_strategy",
        "_tolerance",
        "_unwatched",
        "_widths",
    )

    def __init__(self, strategy: BatchStrategy | None = None, *, tolerance: int = 1) -> None:
        strategy = BatchStrategy() if strategy is None else strategy
        if not isinstance(strategy, BatchStrategy):
            raise ConfigurationError(
                "SlowStartWindow.strategy",
                f"got {describe(strategy)}",
                "pass a BatchStrategy or None",
            )
        if not _is_int(tolerance) or tolerance < 1:
            raise ConfigurationError(
                "SlowStartWindow.tolerance",
                f"got {describe(tolerance)}",
                "use an int >= 1: the terminal failures a step may see before any health "
                "(1: the first one halts)",
            )
        self._strategy = strategy
        self._tolerance = tolerance
        self._widths = [strategy.initial_batch_size]
        self._unwatched = strategy.initial_batch_size  # places of the batch not yet filled
        self._probing: set[K] = set()  # items of the batch that have not shown health
        self._proven = 0  # items of the batch that showed health
        self._failures = 0  # terminal failures counted against the step
        self._state: SlowStartWindowState = "ramping"
        self._reason: str | None = None

    @property
    def limit(self) -> int:
        """How many items may be in the window now (0 once halted)."""
        return 0 if self._state == "halted" else self._widths[-1]

    @property
    def state(self) -> SlowStartWindowState:
        return self._state

    @property
    def reason(self) -> str | None:
        """Why the window halted (``None`` unless halted)."""
        return self._reason

    def admitted(self, item: K) -> bool:
        """``item`` entered the window; True when it joins the step's batch (watched)."""
        if self._state != "ramping" or not self._unwatched:
            return False
        self._unwatched -= 1
        self._probing.add(item)
        return True

    def healthy(self, item: K) -> bool:
        """Watched ``item`` showed health; True when this grew the width."""
        if self._state != "ramping" or item not in self._probing:
            return False
        self._probing.remove(item)
        self._proven += 1
        return self._advance()

    def failed(self, item: K, kind: SlowStartFailureKind, reason: str) -> bool:
        """A unit of watched ``item``'s work failed (``kind``, ``reason``); True when this
        halted the window (a ``task`` or ``admission`` failure, the ``tolerance``-th of a step
        none of whose batch has shown health)."""
        if kind not in _KINDS:
            raise ConfigurationError(
                "SlowStartWindow.failed.kind",
                f"got {describe(kind)}{did_you_mean(str(kind), _KINDS)}",
                "use one of 'task', 'admission', 'backpressure'",
            )
        if (
            self._state != "ramping"
            or item not in self._probing
            or kind == "backpressure"
            or self._proven
        ):
            return False
        self._failures += 1
        if self._failures < self._tolerance:
            return False
        self._state = "halted"
        self._reason = (
            f"step {len(self._widths) - 1} (width {self._widths[-1]}): {self._failures} "
            f"failure(s) before any item showed health; the last, a {kind} failure of item "
            f"{item!r}: {reason}"
        )
        return True

    def left(self, item: K) -> None:
        """Watched ``item`` left without showing health: the next admitted item takes its
        place in the batch."""
        if self._state != "ramping" or item not in self._probing:
            return
        self._probing.remove(item)
        self._unwatched += 1

    def view(self) -> SlowStartWindowView:
        """A frozen snapshot (see :class:`SlowStartWindowView`)."""
        return SlowStartWindowView(
            state=self._state,
            limit=self.limit,
            widths=tuple(self._widths),
            probing=len(self._probing),
            failures=self._failures,
            reason=self._reason,
        )

    def _advance(self) -> bool:
        if self._probing or self._unwatched:
            return False
        width = self._widths[-1]
        wider = self._strategy.next_batch_size(width)
        if wider <= width:  # at max_batch_size, or a multiplier of 1: the width stays
            self._state = "completed"
            return False
        self._widths.append(wider)
        self._unwatched = wider - width
        self._proven = 0
        self._failures = 0
        return True
