from __future__ import annotations

import warnings

import pytest

import sluicegate as sg
from sluicegate.events.emitter import EventEmitter


class FlakySink:
    """Raises on every second event; keeps the others."""

    def __init__(self) -> None:
        self.calls = 0
        self.kept: list[sg.events.SchedulerEvent | sg.events.RequestEvent] = []

    def emit(self, event: sg.events.SchedulerEvent | sg.events.RequestEvent) -> None:
        self.calls += 1
        if self.calls % 2 == 0:
            raise OSError("disk full")
        self.kept.append(event)


def test_both_streams_count_sink_errors_and_warn_once() -> None:
    sink = FlakySink()
    em = EventEmitter(sink)
    with pytest.warns(RuntimeWarning, match="disk full") as caught:
        for i in range(3):
            em.scheduler("selected", task_id=i, group="g")
            em.request("request_lease_acquired", provider="p", model_id="m", lease_id=i)
    assert len(caught) == 1
    assert sink.calls == 6 and len(sink.kept) == 3  # every event offered exactly once
    assert em.sink_errors == 3 and em.count == 6
    assert [e.sequence for e in sink.kept] == [1, 3, 5]


def test_fields_reach_the_event() -> None:
    sink = sg.InMemoryEventSink()
    em = EventEmitter(sink)
    em.scheduler(
        "admission_denied",
        task_id="t",
        group="g",
        lease_id=4,
        attempt=2,
        reason="no_capacity",
        available_after=1.5,
        diagnostics={"x": 1},
    )
    em.request("request_limit_decreased", provider="p", limit=3, previous_limit=6, retry_after=2.0)
    first, second = sink.events
    assert isinstance(first, sg.events.SchedulerEvent) and isinstance(
        second, sg.events.RequestEvent
    )
    assert (first.task_id, first.group, first.lease_id, first.attempt) == ("t", "g", 4, 2)
    assert (first.reason, first.available_after, first.diagnostics) == (
        "no_capacity",
        1.5,
        {"x": 1},
    )
    assert (second.provider, second.limit, second.previous_limit, second.retry_after) == (
        "p",
        3,
        6,
        2.0,
    )
    assert [first.schema_version, second.schema_version] == [sg.events.SCHEMA_VERSION] * 2


def test_no_sink_means_disabled() -> None:
    assert EventEmitter(None).enabled is False
    assert EventEmitter(sg.events.NullEventSink()).enabled is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EventEmitter(sg.InMemoryEventSink()).enabled is True
