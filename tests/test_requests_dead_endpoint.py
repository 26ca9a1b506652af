"""A dead endpoint fails fast: connection failures open the circuit (not the AIMD limit),
every caller gets one error naming the URL and the cause, and half-open probes let the
endpoint back in when its server returns. Virtual time throughout."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

import sluicegate as sg
from sluicegate.requests import (
    ProviderConnectionError,
    RequestAdmissionDenied,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestReleaseOutcome,
)
from sluicegate.scheduling import AsyncTaskScheduler, DagCompletionTracker

URL = "http://127.0.0.1:9/v1"
CAUSE = "ConnectError: [Errno 111] Connection refused"
KEY = sg.RequestResourceKey("dead", "m", "chat")
REQUEST = sg.ModelRequest(messages=[{"role": "user", "content": "hi"}])


class DeadUntil:
    """Refuses every connection until ``alive_at`` (virtual seconds), then answers."""

    name = "dead"

    def __init__(self, alive_at: float = math.inf) -> None:
        self.alive_at = alive_at
        self.attempts = 0

    async def call(self, model_id: str, request: sg.ModelRequest) -> sg.ModelResponse:
        self.attempts += 1
        await trio.sleep(0.001)  # a refused connect on loopback is fast
        if trio.current_time() < self.alive_at:
            raise ProviderConnectionError(
                f"dead: POST /chat/completions: {CAUSE}", url=URL, cause=CAUSE
            )
        await trio.sleep(0.05)
        return sg.ModelResponse(content="ok")


def stack(provider: DeadUntil, **settings: object) -> sg.ModelRequestExecutor:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="dead", model_id="m", max_parallel_requests=64)],
        sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(**settings)),  # type: ignore[arg-type]
    )
    return sg.ModelRequestExecutor(controller, {"dead": provider})


def test_a_dead_endpoint_ends_a_run_within_seconds_with_one_clear_error() -> None:
    # 100 rows x 4 columns against a stopped server. Before: 119 s and 9,643 connection
    # attempts (connection failures looked like ordinary failures, retried everywhere).
    provider = DeadUntil()
    executor = stack(provider)
    errors: list[BaseException] = []

    async def main() -> float:
        tracker = DagCompletionTracker()
        columns = ("topic", "question", "answer", "judge")
        for row in range(100):
            for i, column in enumerate(columns):
                after = [(row, columns[i - 1])] if i else []
                tracker.add((row, column), None, depends_on=after, group=column)

        async def worker(task: sg.SchedulableTask) -> None:
            try:
                await executor.execute("m", REQUEST, request_group=task.group.key)
            except Exception as exc:
                errors.append(exc)
                raise

        scheduler = AsyncTaskScheduler(
            tracker,
            worker,
            capacity=128,
            # the scheduler's coming default: retry what says it is retryable
            is_retryable=lambda exc: getattr(exc, "retryable", False) is True,
        )
        result = await scheduler.run()
        assert result.counts["succeeded"] == 0
        snapshot = executor_pressure(executor, executor.resolve("m"))
        assert snapshot.circuit == "open" and snapshot.connection_failures >= 5
        assert snapshot.limit == 4  # connection failures never lowered the limit
        return trio.current_time()

    ended = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert ended <= 10.0
    assert provider.attempts <= 20  # the threshold's worth, not thousands
    assert errors
    for error in errors:
        assert isinstance(error, sg.RequestAdmissionError)
        assert URL in str(error) and CAUSE in str(error)  # at the top, not in __cause__
        assert error.retryable is False


def executor_pressure(
    executor: sg.ModelRequestExecutor, key: sg.RequestResourceKey
) -> sg.RequestResourcePressure:
    controller = executor._controller
    assert isinstance(controller, sg.AdaptiveRequestAdmissionController)
    pressure = controller.resource_pressure(key)
    assert pressure is not None
    return pressure


async def test_half_open_probes_let_a_returning_server_back_in(autojump_clock: object) -> None:
    sink = sg.InMemoryEventSink()
    provider = DeadUntil(alive_at=45.0)
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="dead", model_id="m", max_parallel_requests=8)],
        sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(circuit_open_seconds=10.0)),
        sink=sink,
    )
    executor = sg.ModelRequestExecutor(controller, {"dead": provider}, max_attempts=1)
    outcomes: list[str] = []
    while trio.current_time() < 120.0:
        try:
            await executor.execute("m", REQUEST)
            outcomes.append("ok")
        except sg.RequestAdmissionError:
            outcomes.append("fast")
        except sg.ModelRequestError as exc:
            assert URL in str(exc) and exc.retryable
            outcomes.append("refused")
        await trio.sleep(1.0)
    assert outcomes[:5] == ["refused"] * 5  # the threshold
    assert "fast" in outcomes[5:15]
    first_ok = outcomes.index("ok")
    assert all(o == "ok" for o in outcomes[first_ok:])  # closed again for good
    assert trio.current_time() - 120.0 < 2.0
    kinds = sink.kinds()
    for kind in ("request_circuit_opened", "request_circuit_half_open", "request_circuit_closed"):
        assert kind in kinds
    opened = sink.of_kind("request_circuit_opened")[0]
    assert opened.reason == "unreachable" and URL in opened.diagnostics["cause"]
    pressure = controller.resource_pressure(KEY)
    assert pressure is not None and pressure.circuit == "closed"
    # the probes were one call each: 5 to open, then one per half-open
    assert provider.attempts <= 5 + 4 + (120 - 45)


async def test_an_answer_of_any_kind_ends_a_connection_failure_streak() -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="dead", model_id="m", max_parallel_requests=8)],
        sg.RequestAdmissionConfig(
            defaults=sg.RequestResourceSettings(circuit_breaker_threshold=3, slow_start=False)
        ),
    )
    refused = RequestReleaseOutcome("connection_failed", detail=f"{URL}: {CAUSE}")
    for outcome in (refused, refused, RequestReleaseOutcome("provider_failure"), refused, refused):
        lease = controller.try_acquire(RequestAdmissionItem(resource=KEY))
        assert isinstance(lease, RequestAdmissionLease)
        controller.release(lease, outcome)
    pressure = controller.resource_pressure(KEY)
    assert pressure is not None and pressure.circuit == "closed"
    lease = controller.try_acquire(RequestAdmissionItem(resource=KEY))
    assert isinstance(lease, RequestAdmissionLease)
    controller.release(lease, refused)  # the third in a row
    denied = controller.try_acquire(RequestAdmissionItem(resource=KEY))
    assert isinstance(denied, RequestAdmissionDenied)
    assert denied.reason == "circuit_open" and denied.cause is not None and URL in denied.cause


@pytest.mark.parametrize("threshold", [None])
async def test_without_a_breaker_connection_failures_only_fail_the_calls(
    threshold: int | None,
) -> None:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="dead", model_id="m", max_parallel_requests=8)],
        sg.RequestAdmissionConfig(
            defaults=sg.RequestResourceSettings(circuit_breaker_threshold=threshold)
        ),
    )
    for _ in range(20):
        lease = controller.try_acquire(RequestAdmissionItem(resource=KEY))
        assert isinstance(lease, RequestAdmissionLease)
        controller.release(lease, RequestReleaseOutcome("connection_failed"))
    pressure = controller.resource_pressure(KEY)
    assert pressure is not None
    assert (pressure.circuit, pressure.connection_failures, pressure.limit) == ("closed", 20, 4)
