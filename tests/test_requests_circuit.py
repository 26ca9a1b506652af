"""The circuit breaker and the startup ramp on their own: pure, the clock passed in."""

from __future__ import annotations

import math

from sluicegate.requests.adaptive.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from sluicegate.requests.adaptive.ramp import LinearRamp
from sluicegate.requests.config import RequestResourceSettings

SETTINGS = RequestResourceSettings(
    circuit_open_seconds=10.0,
    circuit_backoff_multiplier=2.0,
    circuit_max_open_seconds=25.0,
    circuit_max_reopens=2,
)


def test_opens_after_the_threshold_and_reads_half_open_lazily() -> None:
    circuit = CircuitBreaker(SETTINGS.circuit_open_seconds)
    assert not circuit.count_floor_rate_limit(2)
    assert circuit.count_floor_rate_limit(2)
    circuit.open(now=0.0, retry_after=None, settings=SETTINGS)
    assert circuit.blocked_by(5.0) == "circuit_open" and circuit.reopens_in(5.0) == 5.0
    # at its time the query reports half-open but changes nothing
    assert circuit.state_at(10.0) == HALF_OPEN and circuit.state == OPEN
    assert circuit.blocked_by(10.0) is None
    assert circuit.half_open_due(10.0)
    circuit.to_half_open()
    circuit.probe_lease = 7
    assert circuit.blocked_by(10.0) == "circuit_probe" and circuit.is_probe(7)


def test_a_longer_retry_after_keeps_it_open_longer() -> None:
    circuit = CircuitBreaker(10.0)
    circuit.open(now=0.0, retry_after=40.0, settings=SETTINGS)
    assert circuit.until == 40.0


def test_reopenings_back_off_up_to_the_maximum_then_stay_open() -> None:
    circuit = CircuitBreaker(10.0)
    circuit.open(now=0.0, retry_after=None, settings=SETTINGS)
    circuit.reopen(now=10.0, retry_after=None, settings=SETTINGS)
    assert circuit.until == 30.0  # 20 s
    circuit.reopen(now=30.0, retry_after=None, settings=SETTINGS)
    assert circuit.until == 55.0  # capped at 25 s
    circuit.reopen(now=55.0, retry_after=None, settings=SETTINGS)
    assert circuit.until == math.inf and circuit.reopens_in(1e9) == math.inf
    circuit.close(SETTINGS)
    assert (circuit.state, circuit.reopens, circuit.backoff) == (CLOSED, 0, 10.0)
    assert circuit.blocked_by(0.0) is None


def test_only_the_outstanding_probe_is_a_probe() -> None:
    circuit = CircuitBreaker(10.0)
    assert not circuit.is_probe(0)  # "no probe" is not lease 0's probe
    circuit.probe_lease = 3
    assert circuit.is_probe(3) and not circuit.is_probe(4)


def test_ramp_steps_and_next_step_instants() -> None:
    ramp = LinearRamp(start=0.0, target=5, seconds=4.0)
    assert ramp.active
    assert [ramp.limit_at(t) for t in (0.0, 0.99, 1.0, 2.0, 3.5, 4.0, 9.0)] == [1, 1, 2, 3, 4, 5, 5]
    assert ramp.next_step_at(1, now=0.5) == 1.0
    assert ramp.next_step_at(1, now=1.0) > 1.0  # never an instant already passed
    assert ramp.done_at(4.0) and not ramp.done_at(3.99)
    assert not LinearRamp(0.0, 1, 4.0).active and not LinearRamp(0.0, 5, 0.0).active
