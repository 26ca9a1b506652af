"""Task-level retries: one rule for returned and raised retries, the default classifier, and
task outcomes that keep the cause of a failure."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg


class DuckRetryable(Exception):
    """Like ``sluicegate.requests.ModelRequestError``: says ``retryable`` and ``retry_after``
    itself, without being a ``RetryableTaskError``."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def ending(form: str, delay: float) -> Any:
    """What a worker does to ask for a retry after ``delay`` seconds, in each form."""
    if form == "returned":
        return sg.TaskOutcome.retry(delay, "not yet")
    if form == "raised":
        raise sg.RetryableTaskError("not yet", retry_after=delay)
    if form == "duck":
        raise DuckRetryable("not yet", retryable=True, retry_after=delay)
    raise ExceptionGroup("calls", [sg.RetryableTaskError("not yet", retry_after=delay)])


def run_one(
    form: str, *, max_attempts: int, failures: int, delay: float, shutdown_at: float | None
) -> tuple[sg.scheduling.TaskRunOutcome, list[float], sg.scheduling.TaskRunOutcome]:
    """One task that asks for a retry on its first ``failures`` attempts (1 s each), with a
    child task; optionally a shutdown (no grace limit) at ``shutdown_at``."""
    tracker = sg.DagCompletionTracker()
    tracker.add("t")
    tracker.add("child", depends_on=["t"])
    starts: list[float] = []

    async def worker(task: sg.SchedulableTask) -> Any:
        if task.task_id != "t":
            return None
        starts.append(trio.current_time())
        await trio.sleep(1)
        if len(starts) <= failures:
            return ending(form, delay)
        return None

    scheduler = sg.AsyncTaskScheduler(
        tracker, worker, retry=sg.RetryPolicy(max_attempts=max_attempts, initial_backoff=9.0)
    )

    async def main() -> sg.SchedulerRunResult:
        async with trio.open_nursery() as nursery:
            if shutdown_at is not None:

                async def stop() -> None:
                    await trio.sleep(shutdown_at)
                    scheduler.shutdown()

                nursery.start_soon(stop)
            result = await scheduler.run()
            nursery.cancel_scope.cancel()
        return result

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return result.outcomes["t"], starts, result.outcomes["child"]


def shape(outcome: sg.scheduling.TaskRunOutcome) -> tuple[str, int, str]:
    """What must not depend on how the retry was asked for (reasons quote the error)."""
    reason = outcome.reason or ""
    kind = "exhausted" if reason.startswith("attempts exhausted") else reason
    if outcome.status == "failed" and kind != "exhausted":
        kind = "failed"
    return outcome.status, outcome.attempts, kind


@settings(max_examples=60, deadline=None)
@given(
    max_attempts=st.integers(1, 4),
    failures=st.integers(0, 5),
    delay=st.sampled_from([0.0, 0.25, 2.0]),
    # never at the instant an attempt ends: trio orders same-instant wake-ups at random
    shutdown_at=st.one_of(st.none(), st.sampled_from([0.5, 1.1, 1.6, 2.6, 3.6, 5.1])),
)
def test_returned_and_raised_retries_are_the_same_in_every_state(
    max_attempts: int, failures: int, delay: float, shutdown_at: float | None
) -> None:
    """First attempt, last attempt, during a shutdown: a returned ``TaskOutcome.retry``, a
    raised ``RetryableTaskError``, an error saying ``retryable = True`` and a group of retryable
    errors all end the same way, at the same times."""
    runs = {
        form: run_one(
            form,
            max_attempts=max_attempts,
            failures=failures,
            delay=delay,
            shutdown_at=shutdown_at,
        )
        for form in ("returned", "raised", "duck", "group")
    }
    (outcome, starts, child) = runs["returned"]
    for form, (other, other_starts, other_child) in runs.items():
        assert shape(other) == shape(outcome), (form, other, outcome)
        assert other_starts == starts, form
        assert other_child.status == child.status, form
    if shutdown_at is not None and outcome.status == "cancelled":
        # a task waiting for a retry at the end of a shutdown keeps its downstream
        assert outcome.reason == "awaiting_retry" and child.reason == "not_started"


def test_a_retry_returned_on_the_last_attempt_during_shutdown_awaits_a_retry() -> None:
    """The case that differed: shutdown while the last attempt runs, which then asks for a
    retry. Raised, it was deferred (awaiting_retry, downstream kept); returned, it failed the
    task and dropped its downstream."""
    for form in ("returned", "raised"):
        outcome, starts, child = run_one(
            form, max_attempts=2, failures=5, delay=0.25, shutdown_at=1.5
        )
        assert starts == [0.0, 1.25]
        assert (outcome.status, outcome.reason, outcome.attempts) == (
            "cancelled",
            "awaiting_retry",
            2,
        ), form
        assert (child.status, child.reason) == ("cancelled", "not_started"), form


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (DuckRetryable("429", retryable=True, retry_after=3.0), True),
        (DuckRetryable("400", retryable=False, retry_after=None), False),
        (ValueError("bad"), False),
        (ExceptionGroup("calls", [DuckRetryable("a", retryable=True, retry_after=1.0)]), True),
        (
            ExceptionGroup(
                "calls", [DuckRetryable("a", retryable=True, retry_after=1), KeyError()]
            ),
            False,
        ),
    ],
)
async def test_default_classifier_retries_errors_that_say_they_are_retryable(
    autojump_clock: trio.testing.MockClock, error: Exception, retried: bool
) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("t")
    starts: list[float] = []

    async def worker(task: sg.SchedulableTask) -> None:
        starts.append(trio.current_time())
        if len(starts) == 1:
            raise error

    assert sg.scheduling.default_is_retryable(error) is retried
    result = await sg.AsyncTaskScheduler(tracker, worker).run()
    if retried:
        # the error's own retry_after, not the policy's backoff (0.5 s)
        hint = 3.0 if isinstance(error, DuckRetryable) else 1.0
        assert starts == [0.0, hint] and result.outcomes["t"].status == "succeeded"
    else:
        assert starts == [0.0] and result.outcomes["t"].status == "failed"


async def test_the_classifier_can_be_replaced(autojump_clock: trio.testing.MockClock) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("duck")
    tracker.add("timeout")
    tries: dict[str, int] = {}

    async def worker(task: sg.SchedulableTask) -> None:
        tries[task.task_id] = tries.get(task.task_id, 0) + 1
        if tries[task.task_id] == 1:
            if task.task_id == "duck":
                raise DuckRetryable("429", retryable=True, retry_after=1.0)
            raise TimeoutError("slow")

    result = await sg.AsyncTaskScheduler(
        tracker, worker, is_retryable=lambda e: isinstance(e, TimeoutError)
    ).run()
    assert result.outcomes["duck"].status == "failed"  # no longer retryable
    assert result.outcomes["timeout"].status == "succeeded"


@pytest.mark.parametrize(
    ("error", "error_type", "message"),
    [
        (ValueError("malformed row 7"), "ValueError", "malformed row 7"),
        (
            ExceptionGroup("calls", [ExceptionGroup("inner", [KeyError("k")])]),
            "KeyError",
            "'k'",
        ),
        (
            ExceptionGroup("calls", [ValueError("a"), TypeError("b")]),
            "ExceptionGroup",
            "ValueError: a; TypeError: b",
        ),
    ],
)
async def test_a_failed_task_keeps_the_cause(
    autojump_clock: trio.testing.MockClock, error: Exception, error_type: str, message: str
) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("t")

    async def worker(task: sg.SchedulableTask) -> None:
        raise error

    outcome = (await sg.AsyncTaskScheduler(tracker, worker).run()).outcomes["t"]
    assert (outcome.status, outcome.error_type, outcome.error) == ("failed", error_type, message)
    assert outcome.reason == f"{error_type}: {message}"


async def test_exhausted_retries_keep_the_last_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = sg.DagCompletionTracker()
    tracker.add("t")

    async def worker(task: sg.SchedulableTask) -> None:
        raise DuckRetryable("endpoint kept rate limiting", retryable=True, retry_after=0.1)

    retry = sg.RetryPolicy(max_attempts=2)
    outcome = (await sg.AsyncTaskScheduler(tracker, worker, retry=retry).run()).outcomes["t"]
    assert outcome.status == "failed" and outcome.attempts == 2
    assert outcome.error_type == "DuckRetryable"
    assert outcome.error == "endpoint kept rate limiting"
    assert outcome.reason == "attempts exhausted (2): DuckRetryable: endpoint kept rate limiting"
