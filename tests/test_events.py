from __future__ import annotations

import gzip
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate.events import (
    EventFile,
    RequestEvent,
    SchedulerEvent,
    current_correlation,
    current_request_id,
    read_event_file,
)
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


def test_emitter_flush_reaches_sinks_that_buffer_and_never_raises() -> None:
    class Buffering:
        def __init__(self, fail: bool) -> None:
            self.fail = fail
            self.flushes = 0

        def emit(self, event: object) -> None:
            return None

        def flush(self) -> None:
            self.flushes += 1
            if self.fail:
                raise OSError("disk full")

    ok = Buffering(fail=False)
    em = EventEmitter(ok)
    em.flush()
    em.flush()
    assert ok.flushes == 2 and em.sink_errors == 0
    EventEmitter(sg.InMemoryEventSink()).flush()  # no flush(): nothing to do, no error
    EventEmitter(None).flush()  # no sink at all
    broken = Buffering(fail=True)
    em = EventEmitter(broken)
    with pytest.warns(RuntimeWarning, match="disk full"):
        em.flush()
    em.flush()
    assert broken.flushes == 2 and em.sink_errors == 2  # counted, warned once


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


# -- the engine used below: scheduler + executor + adaptive controller + simulated provider ---

REQUEST = sg.ModelRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8)


def engine(
    sink: sg.EventSink | None,
    worker_factory: Any,
    *,
    tasks: int = 6,
    capacity: int = 4,
    provider: sg.SimulatedProvider | None = None,
    run_id: str | None = "run-1",
) -> tuple[sg.AsyncTaskScheduler, sg.ModelRequestExecutor]:
    controller = sg.AdaptiveRequestAdmissionController(
        [sg.ModelEndpoint(name="m", provider="sim", model_id="m", max_parallel_requests=2)],
        sink=sink,
    )
    executor = sg.ModelRequestExecutor(
        controller,
        {"sim": provider or sg.SimulatedProvider(name="sim", latency_seconds=0.5, seed=3)},
    )
    tracker = sg.DagCompletionTracker.from_tasks(
        [sg.SchedulableTask(i, None, sg.TaskGroupSpec("g")) for i in range(tasks)]
    )
    scheduler = sg.AsyncTaskScheduler(
        tracker, worker_factory(executor), capacity=capacity, sink=sink, run_id=run_id
    )
    return scheduler, executor


def one_call(executor: sg.ModelRequestExecutor) -> Any:
    async def worker(task: sg.SchedulableTask) -> None:
        await executor.execute("m", REQUEST)

    return worker


# -- 1. events on disk ---------------------------------------------------------------------


def _events(n: int) -> list[SchedulerEvent]:
    em_sink = sg.InMemoryEventSink()
    em = EventEmitter(em_sink)
    for i in range(n):
        em.scheduler("selected", task_id=i, group="g")
    return [e for e in em_sink.events if isinstance(e, SchedulerEvent)]


def test_jsonl_sink_buffers_until_flush_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = sg.JsonLinesEventSink(path, max_buffered_events=100)
    for event in _events(10):
        sink.emit(event)
    assert path.read_bytes() == b""  # buffered: nothing written yet
    assert sink.stats.buffered == 10 and sink.stats.written == 0
    stats = sink.flush()
    assert (stats.written, stats.buffered, stats.received, stats.dropped) == (10, 0, 10, 0)
    assert stats.healthy and stats.bytes_written == len(path.read_bytes())
    assert [e.task_id for e in sg.read_events(path)] == list(range(10))
    sink.close()
    assert sink.closed


def test_jsonl_sink_writes_a_batch_when_full_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with sg.JsonLinesEventSink(path, max_buffered_events=4) as sink:
        for event in _events(9):
            sink.emit(event)
        assert len(sg.read_events(path)) == 8  # two full batches went out
    assert len(sg.read_events(path)) == 9  # close wrote the rest


def test_jsonl_sink_flushes_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(
        f"""
        import sluicegate as sg
        from sluicegate.events.emitter import EventEmitter
        sink = sg.JsonLinesEventSink({str(path)!r})
        em = EventEmitter(sink)
        for i in range(5):
            em.scheduler("selected", task_id=i)
        # no close(): the exit hook writes the buffered events
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert [e.task_id for e in sg.read_events(path)] == [0, 1, 2, 3, 4]


def test_reader_tolerates_a_torn_last_line_but_names_a_corrupt_middle_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        for event in _events(3):
            sink.emit(event)
    whole = path.read_bytes()
    lines = whole.splitlines(keepends=True)
    path.write_bytes(whole + lines[0][:25])  # killed mid-write
    found = read_event_file(path)
    assert isinstance(found, EventFile)
    assert len(found.events) == 3 and found.torn and found.torn_tail_bytes == 25
    assert len(sg.read_events(path)) == 3
    assert len(list(sg.events.iter_events(path))) == 3
    # the same bytes in the middle of the file are corruption, named by file and line
    path.write_bytes(lines[0] + lines[1][:25] + b"\n" + lines[2])
    with pytest.raises(sg.errors.EventDecodeError, match=r"events\.jsonl:2: not a sluicegate"):
        sg.read_events(path)
    # an unterminated last line that is not a prefix of an event is not a torn write either
    path.write_bytes(lines[0] + b"garbage")
    with pytest.raises(sg.errors.EventDecodeError, match=r"events\.jsonl:2:"):
        sg.read_events(path)


def test_appending_after_a_crash_cuts_the_torn_line_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        for event in _events(2):
            sink.emit(event)
    clean = path.read_bytes()
    path.write_bytes(clean + b'{"type":"scheduler","event_ki')
    with sg.JsonLinesEventSink(path) as sink:  # a resumed run appends to the same file
        assert sink.stats.repaired_bytes == len(b'{"type":"scheduler","event_ki')
        for event in _events(1):
            sink.emit(event)
    found = read_event_file(path)
    assert len(found.events) == 3 and not found.torn


def test_a_gz_path_writes_one_gzip_member_per_batch_that_any_gzip_reader_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl.gz"
    with sg.JsonLinesEventSink(path, max_buffered_events=4) as sink:
        assert sink.compressed
        for event in _events(10):
            sink.emit(event)
    data = path.read_bytes()
    assert data.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") == 3  # batches of 4, 4, 2
    assert sink.stats.bytes_written == len(data) and sink.stats.written == 10
    plain = gzip.decompress(data)  # the stdlib reads the members as one stream
    assert plain.count(b"\n") == 10
    assert [e.task_id for e in sg.read_events(path)] == list(range(10))
    assert [e.task_id for e in sg.events.iter_events(path)] == list(range(10))
    # compression follows the bytes, not the name: either file reads under either name
    renamed = tmp_path / "events.jsonl"
    renamed.write_bytes(data)
    assert len(sg.read_events(renamed)) == 10
    with sg.JsonLinesEventSink(tmp_path / "forced", compress=True) as forced:
        forced.emit(_events(1)[0])
    assert gzip.decompress((tmp_path / "forced").read_bytes()).count(b"\n") == 1


@pytest.mark.parametrize("deflater", ["isal", "zlib"])
def test_either_deflater_writes_members_the_stdlib_reads_and_a_resume_can_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deflater: str
) -> None:
    """ISA-L (the default where it is installed) and zlib (the fallback) write the same
    format: the stdlib reads it, and a torn member of either is found and cut."""
    from sluicegate.events import gzip_members

    if deflater == "isal":
        assert gzip_members.DEFLATER == "isal.isal_zlib"  # a dependency on this machine
    else:
        monkeypatch.setattr(gzip_members, "_deflate_with", zlib)
    path = tmp_path / "events.jsonl.gz"
    with sg.JsonLinesEventSink(path, max_buffered_events=3) as sink:
        for event in _events(6):
            sink.emit(event)
    data = path.read_bytes()
    assert gzip.decompress(data).count(b"\n") == 6
    assert data.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") == 2
    first = data.index(b"\x1f\x8b", 2)  # where the second member starts
    path.write_bytes(data + data[: first - 7])  # a torn copy of the first member
    with sg.JsonLinesEventSink(path) as sink:
        assert sink.stats.repaired_bytes == first - 7
    assert [e.task_id for e in sg.read_events(path)] == list(range(6))


@pytest.mark.parametrize("kept", [0, 3, 9, 12, 30])
def test_a_torn_gzip_member_is_skipped_whole_and_cut_before_appending(
    tmp_path: Path, kept: int
) -> None:
    """A crash mid-write leaves a torn last member (``kept`` of its bytes: none of it, part
    of its 10-byte header, part of its data): readers skip it whole, an append cuts it."""
    path = tmp_path / "events.jsonl.gz"
    with sg.JsonLinesEventSink(path, max_buffered_events=3) as sink:
        for event in _events(6):
            sink.emit(event)
    clean = path.read_bytes()
    torn_member = gzip.compress(b"".join(b'{"x":%d}\n' % i for i in range(50)), mtime=0)
    torn = torn_member[:kept]
    path.write_bytes(clean + torn)
    found = read_event_file(path)
    assert [e.task_id for e in found.events] == list(range(6))
    assert found.torn_tail_bytes == kept
    with sg.JsonLinesEventSink(path) as sink:  # a resumed run appends to the same file
        assert sink.stats.repaired_bytes == kept
        sink.emit(_events(7)[6])
    found = read_event_file(path)
    assert [e.task_id for e in found.events] == [0, 1, 2, 3, 4, 5, 6] and not found.torn


def test_a_damaged_gzip_member_in_the_middle_is_named(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    with sg.JsonLinesEventSink(path, max_buffered_events=3) as sink:
        for event in _events(9):
            sink.emit(event)
    data = bytearray(path.read_bytes())
    second = data.index(b"\x1f\x8b", 10)
    data[second + 15] ^= 0xFF  # a flipped byte in the second member's deflate data
    path.write_bytes(bytes(data))
    with pytest.raises(sg.errors.EventDecodeError, match=r"events\.jsonl\.gz:4: damaged gzip"):
        sg.read_events(path)


def test_a_foreign_gzip_file_is_not_cut_when_appended_to(tmp_path: Path) -> None:
    """Repair only cuts what this sink wrote: a file with no member header of ours (here a
    gzip with a file name in its header) is left as it is."""
    path = tmp_path / "events.jsonl.gz"
    foreign = b"\x1f\x8b\x08\x08" + b"\x00" * 6 + b"name\x00" + b"\x03\x00"
    path.write_bytes(foreign)
    with sg.JsonLinesEventSink(path) as sink:
        assert sink.stats.repaired_bytes == 0
    assert path.read_bytes() == foreign


class _BrokenFile:
    """A file whose disk is full."""

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        return None

    def fileno(self) -> int:
        raise OSError(9, "Bad file descriptor")

    def close(self) -> None:
        return None


async def test_a_failing_disk_never_breaks_the_run_and_is_counted(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    sink = sg.JsonLinesEventSink(tmp_path / "events.jsonl", max_buffered_events=8)
    sink._file = _BrokenFile()  # type: ignore[assignment]
    scheduler, _executor = engine(sink, one_call, tasks=6)
    with pytest.warns(RuntimeWarning, match="No space left on device") as caught:
        result = await scheduler.run()
        stats = sink.close()
    assert result.counts["succeeded"] == 6 and result.sink_errors == 0
    assert len(caught) == 1  # reported once, then only counted
    assert stats.write_errors >= 2 and stats.written == 0
    assert stats.dropped == stats.received > 6 and not stats.healthy
    assert "dropped" in stats.summary() and "No space left" in stats.summary()


class _Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no repr")


def test_unencodable_values_fall_back_or_are_dropped_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = sg.JsonLinesEventSink(path)
    em = EventEmitter(sink)
    em.scheduler("selected", task_id=object())  # an odd task id: written as its repr
    em.scheduler("selected", task_id=1, diagnostics={"bad": _Unprintable()})  # cannot encode
    em.scheduler("selected", task_id=2)
    with pytest.warns(RuntimeWarning, match="cannot encode"):
        stats = sink.close()
    assert (stats.written, stats.dropped, stats.encode_errors) == (2, 1, 1)
    first, last = sg.read_events(path)
    assert isinstance(first.task_id, str) and "object" in first.task_id
    assert last.task_id == 2


def test_events_after_close_are_dropped_not_raised(tmp_path: Path) -> None:
    sink = sg.JsonLinesEventSink(tmp_path / "e.jsonl")
    sink.close()
    sink.emit(_events(1)[0])
    with pytest.warns(RuntimeWarning, match="closed"):
        stats = sink.flush()
    assert stats.dropped == 1
    assert sink.close() == sink.stats  # idempotent


def test_bad_buffer_size_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(sg.ConfigurationError, match="max_buffered_events"):
        sg.JsonLinesEventSink(tmp_path / "e.jsonl", max_buffered_events=0)


def test_fan_out_forwards_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    file_sink = sg.JsonLinesEventSink(path)
    memory = sg.InMemoryEventSink()
    fan = sg.events.FanOutEventSink([memory, file_sink])
    fan.emit(_events(1)[0])
    fan.flush()
    assert len(sg.read_events(path)) == 1 and len(memory.events) == 1
    fan.close()
    assert file_sink.closed and fan.errors == 0


def test_fan_out_warns_once_on_the_first_sink_error_and_keeps_counting() -> None:
    class Broken:
        def emit(self, event: object) -> None:
            raise OSError("collector unreachable")

        def flush(self) -> None:
            raise OSError("collector unreachable")

    memory = sg.InMemoryEventSink()
    fan = sg.events.FanOutEventSink([Broken(), memory])
    first_error = r"sink Broken raised OSError\('collector unreachable'\)"
    with pytest.warns(RuntimeWarning, match=first_error) as caught:
        for event in _events(3):
            fan.emit(event)
        fan.flush()
        fan.close()
    assert len(caught) == 1 and "run continues" in str(caught[0].message)
    assert fan.errors == 4  # three emits and one flush; Broken has no close()
    assert len(memory.events) == 3  # the healthy sink still got every event
    # The first error may come from flush or close too, not only from emit.
    quiet = sg.events.FanOutEventSink([Broken()])
    with pytest.warns(RuntimeWarning, match="collector unreachable"):
        quiet.flush()
    assert quiet.errors == 1


async def test_with_no_sink_no_event_is_ever_built(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole stack (scheduler, executor, controller, provider) with no sink attached:
    not one emitter method is called and not one event object is constructed."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an event was built with no sink attached")

    monkeypatch.setattr(EventEmitter, "scheduler", forbidden)
    monkeypatch.setattr(EventEmitter, "request", forbidden)
    monkeypatch.setattr(EventEmitter, "deliver", forbidden)
    monkeypatch.setattr("sluicegate.events.emitter.SchedulerEvent", forbidden)
    monkeypatch.setattr("sluicegate.events.emitter.RequestEvent", forbidden)
    provider = sg.SimulatedProvider(name="sim", latency_seconds=0.1, capacity=1, seed=1)
    scheduler, _executor = engine(None, one_call, tasks=8, provider=provider, run_id=None)
    result = await scheduler.run()
    assert result.counts["succeeded"] == 8 and result.event_count == 0
    assert provider.stats.rate_limited > 0  # the rate-limit paths ran too


# -- 2. correlation ------------------------------------------------------------------------

ENDPOINT_STATE_KINDS = frozenset(
    {
        "request_queue_drained",
        "request_limit_increased",
        "request_limit_decreased",
        "request_fully_recovered",
        "request_soft_ceiling_recovered",
        "request_effective_cap_changed",
        "request_circuit_opened",
        "request_circuit_half_open",
        "request_circuit_closed",
    }
)


async def test_correlation_reaches_child_tasks_threads_and_request_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: dict[str, Any] = {}

    def fanout(executor: sg.ModelRequestExecutor) -> Any:
        async def call(task: sg.SchedulableTask, label: str) -> None:
            seen[f"{task.task_id}/{label}"] = current_correlation()
            await executor.execute("m", REQUEST)

        async def worker(task: sg.SchedulableTask) -> None:
            own = current_correlation()
            seen[f"{task.task_id}/worker"] = own
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, task, "a")
                nursery.start_soon(call, task, "b")
            seen[f"{task.task_id}/thread"] = await trio.to_thread.run_sync(current_correlation)
            with sg.events.correlation_scope(column="judge"):
                seen[f"{task.task_id}/scoped"] = current_correlation()
            assert current_correlation() == own  # the scope did not leak

        return worker

    sink = sg.InMemoryEventSink()
    scheduler, _ = engine(sink, fanout, tasks=3, capacity=2)
    result = await scheduler.run()
    assert result.counts["succeeded"] == 3
    for task_id in range(3):
        own = seen[f"{task_id}/worker"]
        assert own.task_id == task_id and own.run_id == "run-1"
        assert own.task_execution_id == f"{task_id}#1"
        assert seen[f"{task_id}/a"] == seen[f"{task_id}/b"] == own  # child tasks
        assert seen[f"{task_id}/thread"] == own  # worker thread
        assert seen[f"{task_id}/scoped"].column == "judge"
        assert seen[f"{task_id}/scoped"].task_execution_id == own.task_execution_id
    request_events = [e for e in sink.events if isinstance(e, RequestEvent)]
    per_call = [e for e in request_events if e.event_kind != "request_resource_registered"]
    assert per_call and all(e.correlation is not None for e in per_call)
    by_request: dict[int, set[str | None]] = {}
    for e in per_call:
        if e.event_kind in ENDPOINT_STATE_KINDS:
            # about the endpoint, not one request: no request id (though built in a worker)
            assert e.request_id is None, e
            continue
        assert e.request_id is not None, e
        assert e.correlation is not None
        by_request.setdefault(e.request_id, set()).add(e.correlation.task_execution_id)
    # six logical requests (two per task), each seen from exactly one task execution
    assert len(by_request) == 6
    assert all(len(executions) == 1 for executions in by_request.values())
    per_task = sorted(next(iter(v)) for v in by_request.values())
    assert per_task == ["0#1", "0#1", "1#1", "1#1", "2#1", "2#1"]
    # two calls per task but capacity 2 on the endpoint: some waited, and their waits are
    # joined to the same request id as their attempts
    waits = [e for e in per_call if e.event_kind == "request_wait_started"]
    assert waits
    for wait in waits:
        kinds = {e.event_kind for e in per_call if e.request_id == wait.request_id}
        assert {"request_wait_completed", "model_request_started"} <= kinds
    assert current_request_id() is None  # nothing leaked into the test's own context


async def test_attempts_of_one_request_share_its_id_and_say_whether_they_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = sg.InMemoryEventSink()
    provider = sg.SimulatedProvider(
        name="sim", latency_seconds=0.2, capacity=1, retry_after_seconds=0.5, seed=2
    )
    scheduler, _executor = engine(sink, one_call, tasks=4, capacity=4, provider=provider)
    result = await scheduler.run()
    assert result.counts["succeeded"] == 4
    completed = [e for e in sink.events if e.event_kind == "model_request_completed"]
    assert any(e.outcome == "rate_limited" for e in completed)
    for event in completed:
        assert isinstance(event, RequestEvent) and event.call is not None
        call = event.call
        assert call.will_retry == (event.outcome != "success")
        if event.outcome == "success":
            assert call.input_tokens is not None and call.input_tokens > 0
            assert call.output_tokens is not None and call.output_tokens > 0
            assert call.response_model == "m"
        else:
            assert call.error_type == "ProviderRateLimitedError"
    ids = {e.request_id for e in completed}
    assert len(ids) == 4  # one logical request per task, however many attempts


def test_a_read_file_holds_each_repeated_value_once(tmp_path: Path) -> None:
    """The events of one task execution share one correlation object after reading, and the
    strings every event repeats are held once: equal values, less memory."""
    path = tmp_path / "events.jsonl.gz"
    em = EventEmitter(sg.JsonLinesEventSink(path))
    for task in range(3):
        with sg.events.correlation_scope(
            run_id="r1", column="answer", task_execution_id=f"answer:{task}#1", task_id=task
        ):
            em.scheduler("task_dispatched", task_id=task, group="endpoint:sim/m")
            em.request("model_request_started", provider="sim", model_id="m", domain="chat")
            em.scheduler("task_completed", task_id=task, group="endpoint:sim/m")
    with sg.events.correlation_scope(run_id="r1", task_id=(1, "a")):  # a tuple id: a list
        em.scheduler("selected", task_id=(1, "a"))
    em.sink.close()  # type: ignore[attr-defined]
    events = sg.read_events(path)
    assert len(events) == 10
    by_task: dict[Any, set[int]] = {}
    for event in events[:9]:
        assert event.correlation is not None
        by_task.setdefault(event.correlation.task_id, set()).add(id(event.correlation))
    assert all(len(ids) == 1 for ids in by_task.values()) and len(by_task) == 3
    assert len({id(e.correlation.run_id) for e in events if e.correlation}) == 1
    groups = {id(e.group) for e in events if isinstance(e, SchedulerEvent) and e.group}
    assert len(groups) == 1
    assert len({id(e.provider) for e in events if isinstance(e, RequestEvent)}) == 1
    assert events[-1].correlation is not None and events[-1].correlation.task_id == [1, "a"]
    # what was read is what was written, value for value
    plain = [msgspec.json.decode(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert [msgspec.to_builtins(e) for e in events] == plain


def _member_ends(data: bytes) -> list[int]:
    """The offsets where each gzip member of ``data`` ends."""
    ends, offset = [], 0
    while offset < len(data):
        inflater = zlib.decompressobj(31)
        inflater.decompress(data[offset:])
        offset = len(data) - len(inflater.unused_data)
        ends.append(offset)
    return ends


def _cut_then_append(name: str, cut: int, batch: int) -> tuple[bytes, EventFile, EventFile]:
    """Write 20 events in batches of ``batch`` to a file called ``name``, cut it at byte
    ``cut`` (a crash), read it, reopen it and append event 20, read it again. Returns the
    whole file as written and the two readings."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        with sg.JsonLinesEventSink(path, max_buffered_events=batch) as sink:
            for event in _events(20):
                sink.emit(event)
        whole = path.read_bytes()
        path.write_bytes(whole[: min(cut, len(whole))])
        found = read_event_file(path)
        with sg.JsonLinesEventSink(path) as sink:
            sink.emit(_events(21)[20])
        return whole, found, read_event_file(path)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=3_000), batch=st.integers(1, 7))
def test_any_cut_of_a_gzip_events_file_reads_whole_members_and_repairs_for_appending(
    cut: int, batch: int
) -> None:
    """Whatever byte a crash stops a compressed file at: readers get the events of the
    complete members before it (a prefix, never a damaged event), and a sink reopening the
    file cuts the rest, so what it appends reads back after that prefix."""
    whole, found, again = _cut_then_append("events.jsonl.gz", cut, batch)
    ids = [e.task_id for e in found.events]
    assert ids == list(range(len(ids)))  # a prefix
    assert len(ids) % batch == 0 or len(ids) == 20  # whole members only
    assert found.torn or len(ids) == 20 or cut in (0, *_member_ends(whole))
    assert [e.task_id for e in again.events] == [*ids, 20] and not again.torn


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4_000), batch=st.integers(1, 7))
def test_any_cut_of_a_plain_events_file_reads_a_prefix_and_repairs_for_appending(
    cut: int, batch: int
) -> None:
    """The same for an uncompressed file: whatever byte a crash stops it at, readers get a
    prefix of the events, and what a reopened sink appends reads back right after it."""
    _, found, again = _cut_then_append("events.jsonl", cut, batch)
    ids = [e.task_id for e in found.events]
    assert ids == list(range(len(ids)))
    assert [e.task_id for e in again.events] == [*ids, 20] and not again.torn


def test_a_last_event_missing_only_its_newline_is_kept_on_append(tmp_path: Path) -> None:
    """A crash between an event's last byte and its newline: readers read that event, so
    reopening the file writes the newline instead of cutting the event."""
    path = tmp_path / "events.jsonl"
    with sg.JsonLinesEventSink(path) as sink:
        for event in _events(3):
            sink.emit(event)
    path.write_bytes(path.read_bytes()[:-1])
    assert [e.task_id for e in sg.read_events(path)] == [0, 1, 2]
    with sg.JsonLinesEventSink(path) as sink:
        assert sink.stats.repaired_bytes == 0
        sink.emit(_events(4)[3])
    assert [e.task_id for e in sg.read_events(path)] == [0, 1, 2, 3]
