"""Resource state: the admission check is a query; refresh is the update."""

from __future__ import annotations

from sluicegate.requests.adaptive.circuit import HALF_OPEN, OPEN
from sluicegate.requests.adaptive.snapshots import resource_pressure
from sluicegate.requests.adaptive.state import EndpointState, ResourceState
from sluicegate.requests.config import RequestResourceSettings
from sluicegate.requests.identity import ProviderModelKey, RequestResourceKey

KEY = RequestResourceKey("p", "m")


def resource(cap: int = 10, **settings: object) -> ResourceState:
    ep = EndpointState(ProviderModelKey("p", "m"), None, cap)
    r = ResourceState(KEY, ep, RequestResourceSettings(**settings), now=0.0)  # type: ignore[arg-type]
    r.apply_settings(r.settings, fresh=True)
    ep.resources.append(r)
    return r


def test_blocked_by_reads_a_due_ramp_step_without_making_it() -> None:
    r = resource(initial_limit=5, startup_ramp_seconds=4.0)
    r.in_flight = 1
    assert r.blocked_by(0, now=0.5) == "limit"
    assert r.blocked_by(0, now=1.0) is None  # the step due at t=1 counts...
    assert r.aimd.limit == 1  # ...but was not made by the query
    assert r.next_change_at(0, now=0.5) == 1.0
    assert r.refresh(now=1.0) == (False, 1)  # the update makes it and reports the old limit
    assert r.aimd.limit == 2
    assert r.refresh(now=4.0) == (False, 2) and not r.ramp.active


def test_a_due_half_open_is_read_by_queries_and_made_by_refresh() -> None:
    r = resource(circuit_open_seconds=5.0)
    r.circuit.open(now=0.0, retry_after=None, settings=r.settings)
    r.mark_timed()
    assert r.blocked_by(0, now=1.0) == "circuit_open"
    assert r.blocked_by(0, now=5.0) is None
    assert resource_pressure(r, 5.0).circuit == "half_open"
    assert r.circuit.state == OPEN
    assert r.refresh(now=5.0) == (True, 0) and r.circuit.state == HALF_OPEN
    assert r.circuit.state == HALF_OPEN


def test_constraints_in_order() -> None:
    r = resource(cap=2, initial_limit=1, requests_per_window=1, window_seconds=10.0)
    assert r.blocked_by(0, 0.0) is None
    r.window.reserve(0.0)  # type: ignore[union-attr]
    assert r.blocked_by(0, 0.0) == "rate_window_requests"
    assert r.available_after(0, 0.0) == 10.0
    r.in_flight = 1
    assert r.blocked_by(0, 0.0) == "limit"
    r.endpoint.in_flight = 2
    r.aimd.limit = 2
    assert r.blocked_by(0, 0.0) == "aggregate_cap"
    r.waiting = 1
    r.endpoint.in_flight = 0
    r.in_flight = 0
    r.window = None
    assert r.binding_constraint(0, 0.0) == "waiters"
