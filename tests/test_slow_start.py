"""Slow-start batching (seed 000's acceptance list), in virtual time."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError
from sluicegate.requests import (
    ModelRequestError,
    ProviderRateLimitedError,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestReleaseOutcome,
    RequestResourceKey,
)
from sluicegate.scheduling import (
    BatchStrategy,
    SlowStartBatch,
    SlowStartFailureKind,
    SlowStartWindow,
    classify_failure,
    slow_start,
)

RESOURCE = RequestResourceKey("vllm", "llama")


def denial(reason: Any, available_after: float | None = None) -> RequestAdmissionError:
    item = RequestAdmissionItem(resource=RESOURCE)
    return RequestAdmissionError(
        RequestAdmissionDenied(item=item, reason=reason, available_after=available_after)
    )


class Recorder:
    """Runs items, remembering when each started and finished; fails the scripted ones."""

    def __init__(self, failing: dict[int, Exception] | None = None, seconds: float = 1.0):
        self.failing = failing or {}
        self.seconds = seconds
        self.started: list[tuple[int, float]] = []
        self.finished: list[tuple[int, float]] = []

    async def __call__(self, item: int) -> None:
        self.started.append((item, trio.current_time()))
        await trio.sleep(self.seconds)
        self.finished.append((item, trio.current_time()))
        if item in self.failing:
            raise self.failing[item]

    @property
    def started_items(self) -> list[int]:
        return sorted(item for item, _ in self.started)


async def test_all_succeed_in_geometric_batches(autojump_clock: trio.testing.MockClock) -> None:
    run = Recorder()
    seen: list[SlowStartBatch] = []
    result = await slow_start(range(20), run, on_batch=seen.append)
    assert result.outcome == "completed"
    assert (result.total, result.dispatched, result.succeeded) == (20, 20, 20)
    assert [b.size for b in seen] == [1, 2, 4, 8, 5]  # a non-power-of-two final batch
    assert [b.index for b in seen] == [0, 1, 2, 3, 4]
    assert [b.start for b in seen] == [0, 1, 3, 7, 15]
    assert all(b.outcome == "completed" for b in seen)
    assert result.batches == tuple(seen)
    assert result.pending == ()
    # Each batch starts only when the previous one has finished: five round trips.
    starts = sorted({t for _, t in run.started})
    assert starts == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_a_failure_in_the_first_batch_stops_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    run = Recorder({0: ValueError("bad row")})
    seen: list[SlowStartBatch] = []
    result = await slow_start(range(100), run, on_batch=seen.append)
    assert result.outcome == "halted"
    assert run.started_items == [0]  # later batches never fire
    assert result.dispatched == 1 and result.succeeded == 0
    assert result.reason is not None
    assert "task failure of item 0" in result.reason and "bad row" in result.reason
    assert result.retry_after is None
    assert [(b.index, b.size, b.outcome) for b in seen] == [(0, 1, "halted")]
    assert result.pending == tuple(range(100))


async def test_a_failure_in_a_later_batch_lets_that_batch_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    run = Recorder({4: RuntimeError("boom")})
    result = await slow_start(range(50), run)
    assert result.outcome == "halted"
    assert run.started_items == list(range(7))  # batches 1, 2, 4; item 4 is in the third
    assert sorted(i for i, _ in run.finished) == list(range(7))  # its siblings completed
    assert result.succeeded == 6
    assert [f.index for f in result.failures] == [4]
    assert result.pending == (4, *range(7, 50))


async def test_backpressure_in_batch_one_throttles(autojump_clock: trio.testing.MockClock) -> None:
    run = Recorder({0: ProviderRateLimitedError("429", retry_after=None)})
    result = await slow_start(range(10), run)
    assert result.outcome == "throttled"
    assert run.started_items == [0]  # no batch 2
    assert result.reason is None
    assert result.retry_after == BatchStrategy().base_retry_after
    assert result.failures[0].kind == "backpressure"


async def test_retry_after_is_deterministic_bounded_and_grows_per_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = BatchStrategy(base_retry_after=0.5, backoff_multiplier=3, max_retry_after=10)
    delays = []
    for attempt in range(6):
        run = Recorder({0: denial("queue_full")})
        result = await slow_start(range(4), run, strategy=strategy, attempt=attempt)
        delays.append(result.retry_after)
    assert delays == [0.5, 1.5, 4.5, 10, 10, 10]
    huge = await slow_start([0], Recorder({0: denial("timeout")}), attempt=10**6)
    assert huge.retry_after == BatchStrategy().max_retry_after


async def test_an_errors_own_hint_raises_the_delay_up_to_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = BatchStrategy(base_retry_after=1, max_retry_after=30)
    rate_limited = Recorder({0: ProviderRateLimitedError("429", retry_after=7.0)})
    assert (await slow_start([0], rate_limited, strategy=strategy)).retry_after == 7.0
    absurd = Recorder({0: ProviderRateLimitedError("429", retry_after=1e9)})
    assert (await slow_start([0], absurd, strategy=strategy)).retry_after == 30
    later = trio.current_time() + 12.0
    waiting = Recorder({0: denial("circuit_open", available_after=later)}, seconds=0)
    assert (await slow_start([0], waiting, strategy=strategy)).retry_after == pytest.approx(12.0)
    kept_limiting = ModelRequestError(RESOURCE, 3, RequestReleaseOutcome.rate_limited(4.0))
    run = Recorder({0: kept_limiting})
    result = await slow_start([0], run, strategy=strategy)
    assert (result.outcome, result.retry_after) == ("throttled", 4.0)


async def test_admission_reject_halts_with_the_actionable_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    run = Recorder({0: denial("unknown_resource")})
    result = await slow_start(range(8), run)
    assert result.outcome == "halted"
    assert result.failures[0].kind == "admission"
    assert result.reason is not None
    assert "admission failure of item 0" in result.reason
    assert "Fix: declare a ModelEndpoint" in result.reason
    assert run.started_items == [0]


async def test_terminal_failure_wins_over_backpressure_in_a_mixed_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    run = Recorder({1: ProviderRateLimitedError("429", retry_after=5), 2: ValueError("bad")})
    seen: list[SlowStartBatch] = []
    result = await slow_start(range(10), run, on_batch=seen.append)
    assert result.outcome == "halted"
    assert result.retry_after is None
    assert [f.kind for f in result.failures] == ["backpressure", "task"]
    assert result.reason is not None and "item 2" in result.reason
    assert seen[-1].outcome == "halted"
    assert run.started_items == [0, 1, 2]


async def test_multiplier_one_gives_fixed_batches(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[SlowStartBatch] = []
    strategy = BatchStrategy(initial_batch_size=3, multiplier=1)
    result = await slow_start(range(10), Recorder(), strategy=strategy, on_batch=seen.append)
    assert result.outcome == "completed"
    assert [b.size for b in seen] == [3, 3, 3, 1]


async def test_fractional_multiplier_and_cap(autojump_clock: trio.testing.MockClock) -> None:
    strategy = BatchStrategy(multiplier=1.5, max_batch_size=5)
    assert list(strategy.batch_sizes(30)) == [1, 2, 3, 5, 5, 5, 5, 4]


async def test_no_items_is_a_completed_checkpoint() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await slow_start([], Recorder())
    result = await slow_start([], Recorder())
    assert (result.outcome, result.batches, result.dispatched) == ("completed", (), 0)


async def test_injectable_classifier(autojump_clock: trio.testing.MockClock) -> None:
    def classify(error: Exception) -> SlowStartFailureKind:
        return "backpressure" if isinstance(error, TimeoutError) else classify_failure(error)

    result = await slow_start(range(5), Recorder({0: TimeoutError()}), classify=classify)
    assert result.outcome == "throttled"

    def broken(error: Exception) -> Any:
        return "backpresure"

    with pytest.raises(ConfigurationError) as caught:
        await slow_start(range(5), Recorder({0: TimeoutError()}), classify=broken)
    assert caught.value.field == "slow_start.classify"
    assert "did you mean 'backpressure'" in str(caught.value)


def test_default_classifier() -> None:
    assert classify_failure(ValueError("x")) == "task"
    assert classify_failure(ProviderRateLimitedError()) == "backpressure"
    for reason in ("timeout", "queue_full", "circuit_open", "would_wait"):
        assert classify_failure(denial(reason)) == "backpressure"
    for reason in ("shutdown", "unknown_resource", "too_large"):
        assert classify_failure(denial(reason)) == "admission"
    limited = ModelRequestError(RESOURCE, 3, RequestReleaseOutcome.rate_limited())
    assert classify_failure(limited) == "backpressure"
    failed = ModelRequestError(RESOURCE, 3, RequestReleaseOutcome("provider_failure"))
    assert classify_failure(failed) == "task"

    class Lookalike(Exception):  # not a sluicegate error: never mistaken for one
        status = 429

    assert classify_failure(Lookalike()) == "task"


async def test_cancellation_mid_batch(autojump_clock: trio.testing.MockClock) -> None:
    run = Recorder(seconds=10.0)
    seen: list[SlowStartBatch] = []
    with trio.move_on_after(15.0) as scope:  # inside the second batch (items 1 and 2)
        await slow_start(range(100), run, on_batch=seen.append)
    assert scope.cancelled_caught
    assert run.started_items == [0, 1, 2]
    assert sorted(i for i, _ in run.finished) == [0]  # the second batch was cancelled
    assert [b.index for b in seen] == [0]  # no observation of the interrupted batch
    await trio.sleep(100)
    assert run.started_items == [0, 1, 2]  # nothing outlives the call


async def test_base_exceptions_propagate(autojump_clock: trio.testing.MockClock) -> None:
    async def run(item: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(BaseExceptionGroup) as caught:
        await slow_start(range(3), run)
    assert caught.group_contains(KeyboardInterrupt)


async def test_observer_errors_propagate_and_stop_dispatch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def observe(batch: SlowStartBatch) -> None:
        if batch.index == 1:
            raise RuntimeError("metrics exporter down")

    run = Recorder()
    with pytest.raises(RuntimeError, match="metrics exporter down"):
        await slow_start(range(20), run, on_batch=observe)
    assert run.started_items == [0, 1, 2]


# --- BatchStrategy validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial_batch_size": 0}, "initial_batch_size"),
        ({"initial_batch_size": True}, "initial_batch_size"),
        ({"initial_batch_size": 1.0}, "initial_batch_size"),
        ({"initial_batch_size": 4, "max_batch_size": 2}, "max_batch_size"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": math.nan}, "multiplier"),
        ({"multiplier": math.inf}, "multiplier"),
        ({"multiplier": "2"}, "multiplier"),
        ({"backoff_multiplier": 0.9}, "backoff_multiplier"),
        ({"base_retry_after": 0}, "base_retry_after"),
        ({"base_retry_after": -1}, "base_retry_after"),
        ({"max_retry_after": 0.5}, "max_retry_after"),
        ({"max_retry_after": math.inf}, "max_retry_after"),
    ],
)
def test_invalid_strategy_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        BatchStrategy(**kwargs)
    assert caught.value.field == f"BatchStrategy.{field}"
    assert "Fix:" in str(caught.value)


def test_strategy_from_a_config_mapping() -> None:
    assert BatchStrategy.from_mapping({"multiplier": 3}) == BatchStrategy(multiplier=3)
    with pytest.raises(ConfigurationError) as caught:
        BatchStrategy.from_mapping({"max_batch_sise": 8})
    assert caught.value.field == "BatchStrategy.max_batch_sise"
    assert "did you mean 'max_batch_size'" in str(caught.value)


async def test_invalid_call_arguments() -> None:
    with pytest.raises(ConfigurationError, match=r"slow_start\.attempt"):
        await slow_start([1], Recorder(), attempt=-1)
    with pytest.raises(ConfigurationError, match=r"slow_start\.strategy"):
        await slow_start([1], Recorder(), strategy={"multiplier": 2})  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------

strategies = st.builds(
    BatchStrategy,
    initial_batch_size=st.integers(1, 5),
    multiplier=st.floats(1, 4),
    max_batch_size=st.integers(5, 40),
)


@given(strategy=strategies, total=st.integers(0, 300))
def test_batch_sizes_cover_the_items_under_the_cap(strategy: BatchStrategy, total: int) -> None:
    sizes = list(strategy.batch_sizes(total))
    assert sum(sizes) == total
    assert all(1 <= s <= strategy.max_batch_size for s in sizes)
    assert sizes[:-1] == sorted(sizes[:-1])  # never shrinks, except the final remainder
    if sizes:
        assert sizes[0] == min(strategy.initial_batch_size, total)


@settings(max_examples=60, deadline=None)
@given(
    strategy=strategies,
    total=st.integers(1, 80),
    failing=st.dictionaries(
        st.integers(0, 79), st.sampled_from(["task", "backpressure"]), max_size=4
    ),
)
def test_dispatch_stops_after_the_first_failing_batch(
    strategy: BatchStrategy, total: int, failing: dict[int, str]
) -> None:
    errors = {
        i: (ValueError("x") if kind == "task" else ProviderRateLimitedError())
        for i, kind in failing.items()
        if i < total
    }
    run = Recorder(errors, seconds=0)
    result = trio.run(lambda: slow_start(range(total), run, strategy=strategy))
    sizes = list(strategy.batch_sizes(total))
    ends = [sum(sizes[: k + 1]) for k in range(len(sizes))]
    if not errors:
        assert result.outcome == "completed" and result.dispatched == total
        return
    first_end = next(end for end in ends if end > min(errors))
    assert result.dispatched == first_end
    assert run.started_items == list(range(first_end))
    in_batch = {i for i in errors if i < first_end and i >= first_end - result.batches[-1].size}
    kinds = {failing[i] for i in in_batch}
    assert result.outcome == ("halted" if "task" in kinds else "throttled")
    assert result.succeeded + len(result.failures) == result.dispatched


# -- SlowStartWindow: the same policy for a stream of admitted items ---------------------


def grow(window: SlowStartWindow[int], admitted: list[int]) -> None:
    """Admit items up to the window's limit and report each healthy, step by step."""
    while window.state == "ramping":
        step = []
        while len(admitted) < window.limit and len(step) < window.limit:
            item = len(admitted)
            admitted.append(item)
            window.admitted(item)
            step.append(item)
        for item in step:
            window.healthy(item)


def test_window_widths_follow_the_batch_sizes_as_steps_show_health() -> None:
    window: SlowStartWindow[int] = SlowStartWindow(BatchStrategy(max_batch_size=8))
    assert (window.limit, window.state) == (1, "ramping")
    window.admitted(0)
    assert window.healthy(0) is True  # the step's only item: the width grows
    assert window.limit == 2
    window.admitted(1)
    assert window.healthy(1) is True
    assert window.limit == 4
    window.admitted(2)
    window.admitted(3)
    assert window.healthy(2) is False  # the step waits for every item of it
    assert window.limit == 4
    assert window.healthy(3) is True
    assert window.limit == 8
    for item in range(4, 8):
        window.admitted(item)
    for item in range(4, 8):
        assert window.healthy(item) is False  # at the cap: nothing left to grow
    view = window.view()
    assert (view.state, view.limit, view.widths, view.probing) == ("completed", 8, (1, 2, 4, 8), 0)
    window.admitted(8)
    assert window.failed(8, "task", "late") is False  # completed: reports are ignored
    assert window.limit == 8


@given(
    initial=st.integers(1, 5),
    multiplier=st.floats(1.0, 4.0),
    extra=st.integers(0, 40),
)
def test_window_widths_are_the_distinct_batch_sizes(
    initial: int, multiplier: float, extra: int
) -> None:
    strategy = BatchStrategy(
        initial_batch_size=initial, multiplier=multiplier, max_batch_size=initial + extra
    )
    window: SlowStartWindow[int] = SlowStartWindow(strategy)
    grow(window, [])
    sizes = list(strategy.batch_sizes(10_000))[:-1]  # the last one is what is left
    assert list(window.view().widths) == list(dict.fromkeys(sizes))  # distinct, in order
    assert window.state == "completed"


def test_window_halts_at_the_tolerance_th_terminal_failure_of_a_step() -> None:
    window: SlowStartWindow[str] = SlowStartWindow(tolerance=3)
    window.admitted("g0")
    assert window.failed("g0", "task", "answer: ValueError: bad template") is False
    assert window.failed("g0", "backpressure", "429") is False  # never counted
    assert window.failed("g0", "admission", "unknown resource") is False
    assert window.view().failures == 2
    assert window.failed("g0", "task", "answer: ProviderFailureError: HTTP 401") is True
    assert (window.state, window.limit) == ("halted", 0)
    assert window.reason is not None
    assert "3 failure(s) before any item showed health" in window.reason
    assert "'g0'" in window.reason and "HTTP 401" in window.reason
    assert window.failed("g0", "task", "again") is False  # halted once
    assert window.healthy("g0") is False
    assert window.limit == 0


def test_window_with_tolerance_1_halts_at_the_first_failure_even_at_full_width() -> None:
    window: SlowStartWindow[int] = SlowStartWindow(BatchStrategy(max_batch_size=1))
    window.admitted(0)
    assert window.failed(0, "task", "boom") is True
    assert window.state == "halted"


def test_backpressure_holds_the_width_until_health_shows() -> None:
    window: SlowStartWindow[int] = SlowStartWindow(tolerance=1)
    window.admitted(0)
    for _ in range(10):
        assert window.failed(0, "backpressure", "rate limited") is False
    assert (window.state, window.limit) == ("ramping", 1)
    assert window.healthy(0) is True
    assert window.limit == 2


def test_failures_after_a_step_showed_health_do_not_halt() -> None:
    window: SlowStartWindow[int] = SlowStartWindow(BatchStrategy(max_batch_size=8))
    grow_to_4 = [0, 1]
    for item in grow_to_4:
        window.admitted(item)
        window.healthy(item)
    window.admitted(2)
    window.admitted(3)
    window.healthy(2)
    for _ in range(5):
        assert window.failed(3, "task", "unlucky row") is False  # item 2 proved the step
    assert window.state == "ramping"
    assert window.healthy(3) is True
    assert window.limit == 8


def test_only_the_batch_of_a_step_is_watched_and_one_that_leaves_is_replaced() -> None:
    window: SlowStartWindow[int] = SlowStartWindow()
    assert window.admitted(0) is True  # the first batch: one item
    window.left(0)  # e.g. every row came from a journal: no evidence either way
    assert window.limit == 1
    assert window.admitted(1) is True  # takes its place in the batch
    assert window.healthy(1) is True
    assert window.limit == 2
    assert window.admitted(2) is True  # the new room: one place
    assert window.admitted(3) is False  # in place of an item that finished: not watched
    assert window.healthy(3) is False
    assert window.failed(3, "task", "not watched") is False
    assert window.healthy(2) is True
    assert window.limit == 4
    assert [window.admitted(i) for i in (4, 5, 6)] == [True, True, False]  # 2 new places
    assert window.view().probing == 2


def test_reports_about_items_outside_the_step_are_ignored() -> None:
    window: SlowStartWindow[int] = SlowStartWindow(tolerance=1)
    assert window.healthy(7) is False
    window.left(7)
    assert window.failed(7, "task", "not admitted") is False
    assert window.view() == SlowStartWindow().view()


@pytest.mark.parametrize("tolerance", [0, -1, True, 1.5, "3"])
def test_window_tolerance_is_validated(tolerance: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        SlowStartWindow(tolerance=tolerance)
    assert info.value.field == "SlowStartWindow.tolerance"
    assert "int >= 1" in info.value.fix


def test_window_strategy_and_failure_kind_are_validated() -> None:
    with pytest.raises(ConfigurationError) as info:
        SlowStartWindow({"max_batch_size": 4})  # type: ignore[arg-type]
    assert info.value.field == "SlowStartWindow.strategy"
    window: SlowStartWindow[int] = SlowStartWindow()
    window.admitted(0)
    with pytest.raises(ConfigurationError, match="did you mean 'backpressure'"):
        window.failed(0, "backpresure", "x")  # type: ignore[arg-type]
