from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError, InMemoryEventSink
from sluicegate.requests.adaptive import AdaptiveRequestAdmissionController
from sluicegate.requests.admission import RequestAdmissionError
from sluicegate.requests.config import RequestAdmissionConfig, RequestResourceSettings
from sluicegate.requests.executor import ModelRequestError, ModelRequestExecutor
from sluicegate.requests.identity import (
    ModelEndpoint,
    ProviderModelKey,
    RequestResourceKey,
    RequestResourceResolver,
)
from sluicegate.requests.provider import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    TokenUsage,
)

KEY = RequestResourceKey("fake", "m", "chat")
REQUEST = ModelRequest(messages=[{"role": "user", "content": "hello"}], estimated_tokens=20)


def guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Turn a hang (a lost wakeup or a leaked waiter) into a failure, in virtual time."""

    @functools.wraps(test)
    async def wrapper(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(1_000):
            await test(*args, **kwargs)

    return wrapper


class ScriptedProvider:
    """Answers each call with the next scripted step (an exception, "hang" or "ok")."""

    name = "fake"

    def __init__(self, *script: Any, latency: float = 0.5) -> None:
        self.script = list(script)
        self.latency = latency
        self.calls = 0
        self.started: list[float] = []

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.started.append(trio.current_time())
        step = self.script.pop(0) if self.script else "ok"
        if step == "hang":
            await trio.sleep_forever()
        await trio.sleep(self.latency)
        if isinstance(step, BaseException):
            raise step
        return ModelResponse(content="x", usage=TokenUsage(prompt_tokens=3, completion_tokens=4))


def setup(
    *script: Any,
    sink: Any = None,
    cap: int = 4,
    executor_kwargs: dict[str, Any] | None = None,
    **settings: Any,
) -> tuple[AdaptiveRequestAdmissionController, ModelRequestExecutor, ScriptedProvider]:
    controller = AdaptiveRequestAdmissionController(
        [ModelEndpoint(name="gen", provider="fake", model_id="m", max_parallel_requests=cap)],
        RequestAdmissionConfig(defaults=RequestResourceSettings(**settings)),
        sink=sink,
    )
    provider = ScriptedProvider(*script)
    kwargs: dict[str, Any] = {"backoff_seconds": 1.0, "backoff_jitter": 0.0}
    kwargs.update(executor_kwargs or {})
    executor = ModelRequestExecutor(controller, {"fake": provider}, **kwargs)
    return controller, executor, provider


def pressure(controller: AdaptiveRequestAdmissionController):
    snapshot = controller.resource_pressure(KEY)
    assert snapshot is not None
    return snapshot


def released_outcomes(sink: InMemoryEventSink) -> list[str | None]:
    # schema 2: a call's completion reports its lease's release (same instant)
    return [e.outcome for e in sink.of_kind("request_lease_released", "model_request_completed")]


def assert_exactly_once(
    controller: AdaptiveRequestAdmissionController, sink: InMemoryEventSink | None = None
) -> None:
    snapshot = controller.resource_pressure(KEY)
    if snapshot is None:  # cancelled before its first acquire: nothing was ever admitted
        assert sink is None or not sink.of_kind("request_lease_acquired")
        return
    assert (snapshot.in_flight, snapshot.waiters) == (0, 0)
    assert snapshot.grants == snapshot.released
    assert snapshot.duplicate_releases == snapshot.unknown_releases == 0
    if sink is not None:
        releases = sink.of_kind("request_lease_released", "model_request_completed")
        per_lease = Counter(e.lease_id for e in releases)
        assert set(per_lease.values()) <= {1}
        acquired = [
            e.lease_id for e in sink.of_kind("request_lease_acquired", "model_request_started")
        ]
        assert len(acquired) == len(set(acquired)) and set(per_lease) == set(acquired)
        # per lease: started (acquired with it) -> completed (released with it); a lease
        # granted in the instant its caller was cancelled never reaches the provider:
        # acquired -> released
        trails: dict[int | None, str] = {}
        for event in sink.events:
            if event.lease_id is not None and event.event_kind in BOUNDARY_KINDS:
                letter = BOUNDARY_KINDS[event.event_kind]
                trails[event.lease_id] = trails.get(event.lease_id, "") + letter
        assert set(trails.values()) <= {"SC", "AR"}, trails


@guarded
async def test_success_releases_with_actual_usage(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller, executor, provider = setup(sink=sink, tokens_per_window=1000)
    response = await executor.execute("gen", REQUEST, request_group="col")
    assert response.content == "x"
    assert provider.calls == 1
    assert released_outcomes(sink) == ["success"]
    # 20 tokens were reserved at acquire and settled to the 7 actually used
    assert pressure(controller).window_tokens == 7
    started = sink.of_kind("model_request_started")[0]
    completed = sink.of_kind("model_request_completed")[0]
    assert (started.attempt, completed.attempt, completed.outcome) == (1, 1, "success")
    assert started.request_group == "col" and started.lease_id == completed.lease_id
    assert completed.call is not None and completed.call.duration_seconds == 0.5
    # one event per boundary: the lease is taken and returned with the call (schema 2)
    assert sink.kinds() == [
        "request_resource_registered",
        "model_request_started",
        "model_request_completed",
    ]
    # the executor shares the controller's stream: one gap-free sequence
    assert [e.sequence for e in sink.events] == list(range(1, len(sink.events) + 1))
    assert executor.stats.succeeded == 1
    assert_exactly_once(controller, sink)


@guarded
async def test_the_controllers_sink_passed_again_keeps_one_sequence(autojump_clock) -> None:
    # The demo wiring: the same sink given to the controller and to the executor is one request
    # stream, not two numbered from 1 each (duplicate sequences in the event file).
    sink = InMemoryEventSink()
    controller, _, provider = setup(sink=sink)
    executor = ModelRequestExecutor(controller, {"fake": provider}, sink=sink)
    await executor.execute("gen", REQUEST)
    # controller and executor events interleave (the lease events fold into the call's)
    assert sink.kinds() == [
        "request_resource_registered",
        "model_request_started",
        "model_request_completed",
    ]
    assert [e.sequence for e in sink.events] == list(range(1, len(sink.events) + 1))
    # another sink is another stream, numbered on its own
    own = InMemoryEventSink()
    separate = ModelRequestExecutor(controller, {"fake": provider}, sink=own)
    await separate.execute("gen", REQUEST)
    assert [e.event_kind for e in own.events] == [
        "model_request_started",
        "model_request_completed",
    ]
    assert [e.sequence for e in own.events] == [1, 2]
    # on another stream the call events cannot stand for the lease: the controller reports it
    lease_id = own.events[0].lease_id
    assert [e.event_kind for e in sink.events if e.lease_id == lease_id] == [
        "request_lease_acquired",
        "request_lease_released",
    ]


BOUNDARY_KINDS = {
    "request_wait_started": "W",
    "request_lease_acquired": "A",
    "model_request_started": "S",
    "model_request_completed": "C",
    "request_lease_released": "R",
}


@guarded
async def test_every_attempt_emits_its_events_in_boundary_order(autojump_clock) -> None:
    # wait -> lease and call -> call ended and lease released, for every attempt of every
    # request, including a waited one, a retried one and a cancelled one. The completion
    # used to be reported after the release (and after the release had handed the slot on).
    sink = InMemoryEventSink()
    controller, executor, _ = setup(
        ProviderRateLimitedError(retry_after=1.0), "ok", "hang", sink=sink, cap=1
    )
    async with trio.open_nursery() as nursery:
        for group in ("first", "second", "third"):
            nursery.start_soon(
                functools.partial(executor.execute, request_group=group), "gen", REQUEST
            )
            await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(10)
        nursery.cancel_scope.cancel()  # "third" hangs in its call, "first" waits to retry
    for group in ("first", "second", "third"):
        trail = "".join(
            BOUNDARY_KINDS[e.event_kind]
            for e in sink.events
            if e.event_kind in BOUNDARY_KINDS and e.request_group == group
        )
        assert re.fullmatch(r"(W?SC)+W?", trail), (group, trail)  # a wait may be cancelled
    assert_exactly_once(controller, sink)


@guarded
async def test_rate_limit_is_retried_after_retry_after_and_admitted_again(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller, executor, provider = setup(
        ProviderRateLimitedError(retry_after=3.0),
        sink=sink,
        initial_limit=4,
        decrease_factor=0.5,
    )
    await executor.execute("gen", REQUEST)
    assert provider.calls == 2
    # first call ends at 0.5, the retry waits max(backoff 1.0, retry_after 3.0)
    assert provider.started == [0.0, 3.5]
    assert released_outcomes(sink) == ["rate_limited", "success"]
    assert [e.attempt for e in sink.of_kind("model_request_started")] == [1, 2]
    snapshot = pressure(controller)
    assert snapshot.grants == 2 and snapshot.limit == 2
    assert_exactly_once(controller, sink)


@guarded
async def test_infinite_retry_after_does_not_stall_the_retry(autojump_clock) -> None:
    # An unusable hint is no hint: the retry used to sleep forever.
    controller, executor, provider = setup(ProviderRateLimitedError(retry_after=math.inf))
    await executor.execute("gen", REQUEST)
    assert provider.started == [0.0, 1.5]  # the plain 1 s backoff after the 0.5 s call
    assert_exactly_once(controller)


@guarded
async def test_failure_with_retry_after_waits_without_lowering_the_limit(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller, executor, provider = setup(
        ProviderFailureError("overloaded", status=503, retry_after=6.0),
        sink=sink,
        initial_limit=4,
    )
    await executor.execute("gen", REQUEST)
    assert provider.started == [0.0, 6.5]  # max(backoff 1.0, retry_after 6.0) after 0.5
    assert released_outcomes(sink) == ["provider_failure", "success"]
    completed = sink.of_kind("model_request_completed")[0]
    assert completed.retry_after == 6.0
    assert pressure(controller).limit == 4  # a failure is not a rate limit
    assert_exactly_once(controller, sink)


@guarded
async def test_retries_run_out_with_typed_error(autojump_clock) -> None:
    sink = InMemoryEventSink()
    failure = ProviderFailureError("boom", status=503)
    controller, executor, provider = setup(
        failure,
        ProviderTimeoutError("slow"),
        failure,
        sink=sink,
        executor_kwargs={"max_attempts": 3},
    )
    with pytest.raises(ModelRequestError) as info:
        await executor.execute("gen", REQUEST)
    assert info.value.attempts == 3
    assert info.value.outcome.kind == "provider_failure"
    assert info.value.__cause__ is failure
    assert released_outcomes(sink) == ["provider_failure", "provider_timeout", "provider_failure"]
    # backoff 1 then 2 between attempts (each call takes 0.5)
    assert provider.started == [0.0, 1.5, 4.0]
    assert executor.stats.failed == 1 and executor.stats.attempts == 3
    assert_exactly_once(controller, sink)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ProviderRateLimitedError(), "rate_limited"),
        (ProviderError("connection reset"), "provider_failure"),
    ],
)
@guarded
async def test_the_last_provider_error_is_the_cause(
    error: ProviderError, kind: str, autojump_clock
) -> None:
    controller, executor, _ = setup(error, error, executor_kwargs={"max_attempts": 2})
    with pytest.raises(ModelRequestError) as info:
        await executor.execute("gen", REQUEST)
    assert (info.value.outcome.kind, info.value.attempts) == (kind, 2)
    assert info.value.__cause__ is error
    assert_exactly_once(controller)


@guarded
async def test_jitter_spreads_pauses_both_ways_within_the_fraction(autojump_clock) -> None:
    failure = ProviderFailureError("boom", status=503)
    controller, executor, provider = setup(
        *([failure] * 39),
        executor_kwargs={
            "max_attempts": 40,
            "backoff_seconds": 2.0,
            "backoff_multiplier": 1.0,
            "backoff_jitter": 0.25,
            "seed": 11,
        },
    )
    await executor.execute("gen", REQUEST)
    pauses = [b - a - 0.5 for a, b in itertools.pairwise(provider.started)]
    assert len(pauses) == 39
    # every pause is the nominal 2 s +/- 25%, and the jitter goes both ways
    assert all(1.5 - 1e-9 <= p <= 2.5 + 1e-9 for p in pauses), pauses
    assert min(pauses) < 1.75 and max(pauses) > 2.25, pauses
    assert_exactly_once(controller)


@guarded
async def test_jittered_backoff_never_exceeds_the_cap(autojump_clock) -> None:
    failure = ProviderFailureError("boom", status=503)
    controller, executor, provider = setup(
        *([failure] * 7),
        executor_kwargs={
            "max_attempts": 8,
            "backoff_seconds": 1.0,
            "backoff_multiplier": 4.0,
            "max_backoff_seconds": 5.0,
            "backoff_jitter": 0.5,
            "seed": 3,
        },
    )
    await executor.execute("gen", REQUEST)
    # each call takes 0.5 s; the pause before each retry is what is left between starts
    pauses = [b - a - 0.5 for a, b in itertools.pairwise(provider.started)]
    assert len(pauses) == 7
    assert all(0.0 < p <= 5.0 + 1e-9 for p in pauses), pauses
    assert len({round(p, 6) for p in pauses[2:]}) > 1  # still spread out at the cap
    assert_exactly_once(controller)


@guarded
async def test_non_retryable_failure_propagates_at_once(autojump_clock) -> None:
    sink = InMemoryEventSink()
    bad_request = ProviderFailureError("bad request", status=400, retryable=False)
    controller, executor, provider = setup(bad_request, sink=sink)
    with pytest.raises(ProviderFailureError) as info:
        await executor.execute("gen", REQUEST)
    assert info.value is bad_request
    assert provider.calls == 1
    assert (executor.stats.requests, executor.stats.failed, executor.stats.succeeded) == (1, 1, 0)
    assert released_outcomes(sink) == ["provider_failure"]
    assert_exactly_once(controller, sink)


@guarded
async def test_unexpected_exception_propagates_and_is_released_as_such(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller, executor, provider = setup(ValueError("bug"), sink=sink)
    with pytest.raises(ValueError, match="bug"):
        await executor.execute("gen", REQUEST)
    assert provider.calls == 1
    assert released_outcomes(sink) == ["unexpected_exception"]
    assert_exactly_once(controller, sink)


@guarded
async def test_own_attempt_deadline_is_local_timeout(autojump_clock) -> None:
    sink = InMemoryEventSink()
    controller, executor, provider = setup(
        "hang", "hang", sink=sink, executor_kwargs={"attempt_timeout": 2.0, "max_attempts": 2}
    )
    with pytest.raises(ModelRequestError) as info:
        await executor.execute("gen", REQUEST)
    assert info.value.outcome.kind == "local_timeout"
    assert released_outcomes(sink) == ["local_timeout", "local_timeout"]
    assert provider.started == [0.0, 3.0]  # 2 s deadline, 1 s backoff
    # the request's own timeout wins over the executor default
    controller2, executor2, provider2 = setup("hang", executor_kwargs={"attempt_timeout": 50.0})
    start = trio.current_time()
    await executor2.execute("gen", ModelRequest(messages=[], timeout=1.0))
    assert provider2.started[1] - start == pytest.approx(2.0)
    assert_exactly_once(controller, sink)
    assert_exactly_once(controller2)


@pytest.mark.parametrize("max_attempts", [1, 3])
@guarded
async def test_cancellation_mid_call_releases_local_cancelled(
    max_attempts: int, autojump_clock
) -> None:
    # Cancelled, not a ModelRequestError, even when it was the last allowed attempt.
    sink = InMemoryEventSink()
    controller, executor, provider = setup(
        "hang", sink=sink, executor_kwargs={"max_attempts": max_attempts}
    )
    with trio.move_on_after(5.0) as scope:
        await executor.execute("gen", REQUEST)
    assert scope.cancelled_caught and provider.calls == 1
    assert (executor.stats.attempts, executor.stats.failed) == (1, 1)
    assert released_outcomes(sink) == ["local_cancelled"]
    assert sink.of_kind("model_request_completed")[0].outcome == "local_cancelled"
    assert_exactly_once(controller, sink)


@guarded
async def test_cancellation_while_waiting_for_admission_holds_nothing(autojump_clock) -> None:
    controller, executor, provider = setup("hang", cap=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(executor.execute, "gen", REQUEST)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(2.0):
            await executor.execute("gen", REQUEST)  # queued behind the hanging call
        assert pressure(controller).waiters == 0
        assert pressure(controller).wait_cancellations == 1
        nursery.cancel_scope.cancel()
    assert provider.calls == 1
    assert_exactly_once(controller)


@guarded
async def test_cancellation_during_backoff_holds_nothing(autojump_clock) -> None:
    controller, executor, provider = setup(ProviderRateLimitedError(retry_after=10.0))
    with trio.move_on_after(5.0) as scope:
        await executor.execute("gen", REQUEST)
    assert scope.cancelled_caught and provider.calls == 1
    assert_exactly_once(controller)


@guarded
async def test_request_cancelled_during_backoff_is_counted_as_ended(autojump_clock) -> None:
    _, executor, _ = setup(ProviderRateLimitedError(retry_after=10.0))
    with trio.move_on_after(5.0):
        await executor.execute("gen", REQUEST)
    stats = executor.stats
    # every request ends as succeeded or failed; a cancelled backoff used to count as neither
    assert (stats.requests, stats.succeeded, stats.failed) == (1, 0, 1)
    assert stats.outcomes == {"rate_limited": 1}


@guarded
async def test_admission_errors_propagate(autojump_clock) -> None:
    controller, executor, _ = setup()
    controller.shutdown()
    with pytest.raises(RequestAdmissionError, match="shutdown"):
        await executor.execute("gen", REQUEST)
    stats = executor.stats
    assert (stats.requests, stats.attempts, stats.failed, stats.succeeded) == (1, 0, 1, 0)


async def test_unknown_names_are_configuration_errors() -> None:
    controller, executor, _ = setup()
    with pytest.raises(ConfigurationError, match="did you mean 'gen'"):
        await executor.execute("gne", REQUEST)
    other = ModelRequestExecutor(controller, {"faek": ScriptedProvider()})
    with pytest.raises(ConfigurationError, match=r"no provider named 'fake'.*did you mean 'faek'"):
        await other.execute("gen", REQUEST)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        ModelRequestExecutor(controller, {}, max_attempts=0)


class BareController:
    """A RequestAdmissionController with no resolver: the protocol and nothing more."""

    def __init__(self, inner: AdaptiveRequestAdmissionController) -> None:
        self._inner = inner
        self.try_acquire = inner.try_acquire
        self.acquire = inner.acquire
        self.release = inner.release
        self.reconfigure = inner.reconfigure

    @property
    def pressure(self) -> Any:
        return self._inner.pressure


def test_a_resource_key_under_a_provider_alias_is_made_canonical() -> None:
    controller = AdaptiveRequestAdmissionController(
        [
            ModelEndpoint(
                name="gen",
                provider="fake",
                model_id="m",
                max_parallel_requests=2,
                provider_alias="fk",
            )
        ]
    )
    executor = ModelRequestExecutor(controller, {"fake": ScriptedProvider()})
    assert executor.resolve(RequestResourceKey("fk", "m", "embedding")) == RequestResourceKey(
        "fake", "m", "embedding"
    )


@guarded
async def test_a_controller_without_a_resolver_takes_keys_but_not_aliases(autojump_clock) -> None:
    controller, _, provider = setup()
    executor = ModelRequestExecutor(BareController(controller), {"fake": provider})
    # a ProviderModelKey needs no declarations: the domain comes from the request
    embedding = ModelRequest(domain="embedding", input="text")
    assert executor.resolve(ProviderModelKey("fake", "m"), domain="embedding") == (
        RequestResourceKey("fake", "m", "embedding")
    )
    await executor.execute(ProviderModelKey("fake", "m"), embedding)
    embed = controller.resource_pressure(RequestResourceKey("fake", "m", "embedding"))
    assert embed is not None and embed.grants == embed.released == 1
    assert executor.resolve(KEY) == KEY  # a full key is taken as it is
    await executor.execute(KEY, REQUEST)
    assert pressure(controller).released == 1
    # an alias cannot be resolved without endpoint declarations: told before any call
    with pytest.raises(ConfigurationError, match="without endpoint declarations"):
        await executor.execute("gen", REQUEST)
    assert provider.calls == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backoff_jitter", "0.1"),
        ("backoff_jitter", 1.0),
        ("attempt_timeout", "5"),
        ("admission_timeout", [1]),
        ("admission_timeout", 0),
        ("backoff_seconds", True),
        ("max_backoff_seconds", float("inf")),
    ],
)
def test_bad_executor_options_name_the_field(field: str, value: object) -> None:
    controller, _, _ = setup()
    with pytest.raises(ConfigurationError) as caught:
        ModelRequestExecutor(controller, {}, **{field: value})  # type: ignore[arg-type]
    assert caught.value.field == f"ModelRequestExecutor.{field}"


@guarded
async def test_domain_comes_from_the_request_and_providers_can_be_a_function(
    autojump_clock,
) -> None:
    controller, _, provider = setup()
    executor = ModelRequestExecutor(controller, lambda key: provider)
    await executor.execute("gen", ModelRequest(domain="embedding", input="text"))
    embed = controller.resource_pressure(RequestResourceKey("fake", "m", "embedding"))
    assert embed is not None and embed.grants == 1


@guarded
async def test_aliases_follow_a_live_endpoint_reconfigure(autojump_clock) -> None:
    # A reload re-points "gen" at model m2 and adds "critic": the executor resolves with the
    # controller's current declarations, not with the ones it was built with.
    controller, executor, provider = setup()
    await executor.execute("gen", REQUEST)
    controller.reconfigure(
        endpoints=[
            ModelEndpoint(name="gen", provider="fake", model_id="m2", max_parallel_requests=2),
            ModelEndpoint(name="critic", provider="fake", model_id="m3", max_parallel_requests=2),
        ]
    )
    assert executor.resolve("gen") == RequestResourceKey("fake", "m2")
    await executor.execute("gen", REQUEST)
    await executor.execute("critic", REQUEST)
    for model in ("m2", "m3"):
        snapshot = controller.resource_pressure(RequestResourceKey("fake", model))
        assert snapshot is not None and snapshot.grants == 1
    assert provider.calls == 3
    # an explicit resolver stays the executor's own
    pinned = ModelRequestExecutor(
        controller,
        {"fake": provider},
        resolver=RequestResourceResolver(
            [ModelEndpoint(name="gen", provider="fake", model_id="m2", max_parallel_requests=2)]
        ),
    )
    controller.reconfigure(
        endpoints=[
            ModelEndpoint(name="gen", provider="fake", model_id="m3", max_parallel_requests=2)
        ]
    )
    assert pinned.resolve("gen") == RequestResourceKey("fake", "m2")
    assert executor.resolve("gen") == RequestResourceKey("fake", "m3")


# ------------------------------------------------------------------------------ property


step = st.sampled_from(["ok", "hang", "429", "500", "400", "timeout", "bug"])


def make_step(name: str) -> Any:
    return {
        "ok": "ok",
        "hang": "hang",
        "429": ProviderRateLimitedError(retry_after=0.5),
        "500": ProviderFailureError("x", status=500),
        "400": ProviderFailureError("x", status=400, retryable=False),
        "timeout": ProviderTimeoutError("x"),
        "bug": RuntimeError("bug"),
    }[name]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(
        st.tuples(st.lists(step, max_size=4), st.none() | st.integers(0, 12), st.integers(0, 6)),
        min_size=1,
        max_size=8,
    ),
    cap=st.integers(1, 3),
)
def test_every_attempt_is_released_exactly_once(calls, cap) -> None:
    sink = InMemoryEventSink()
    controller = AdaptiveRequestAdmissionController(
        [ModelEndpoint(name="gen", provider="fake", model_id="m", max_parallel_requests=cap)],
        sink=sink,
    )
    providers: list[ScriptedProvider] = []

    async def one(script: list[str], cancel_after: int | None, arrive: int) -> None:
        provider = ScriptedProvider(*(make_step(s) for s in script))
        providers.append(provider)
        executor = ModelRequestExecutor(
            controller, {"fake": provider}, max_attempts=3, backoff_seconds=0.5, attempt_timeout=3.0
        )
        await trio.sleep(arrive / 2)
        with trio.move_on_after(10_000 if cancel_after is None else cancel_after / 2):
            with contextlib.suppress(ModelRequestError, ProviderFailureError, RuntimeError):
                await executor.execute("gen", REQUEST)

    async def main() -> None:
        with trio.fail_after(10_000):
            async with trio.open_nursery() as nursery:
                for script, cancel_after, arrive in calls:
                    nursery.start_soon(one, script, cancel_after, arrive)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert_exactly_once(controller, sink)
    if controller.resource_pressure(KEY) is None:
        assert sum(p.calls for p in providers) == 0
        return
    snapshot = pressure(controller)
    # a lease granted in the very instant its caller was cancelled never reaches the provider
    assert snapshot.grants == sum(p.calls for p in providers) + snapshot.cancelled_grants
    assert snapshot.max_in_flight <= cap


@guarded
async def test_a_resource_of_another_domain_is_refused_before_any_call(autojump_clock) -> None:
    controller, executor, provider = setup()
    embedding = RequestResourceKey("fake", "m", "embedding")
    with pytest.raises(ConfigurationError) as caught:
        await executor.execute(embedding, REQUEST)  # a chat request
    assert caught.value.field == "model" and "'embedding'" in str(caught.value)
    assert provider.calls == 0
    assert_exactly_once(controller)
