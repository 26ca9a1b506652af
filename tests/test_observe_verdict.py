"""The verdict on a ready-queue run: many gaps of microseconds are the scheduler's own
per-task work (a CPU-bound run of tiny tasks, fixed by putting more work in each task); a
long gap while capacity was free is a lost wakeup, a scheduler bug to report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg
from sluicegate.observe import CorrelatedRuntimeView, generate_report
from sluicegate.observe.verdict import Verdict
from test_observe_support import Step, local_columns_pipeline, scheduler_events, tiny_tasks

PER_TASK = "the scheduler's own per-task work set the pace"
REPORT_IT = "please report it"


def verdict_of(steps: list[Step], **job: Any) -> Verdict:
    """The verdict of a run made of ``(t, kind, task, group, lease)`` scheduler steps;
    ``job`` is the ``scheduler_job_started`` diagnostics (default: one task capacity of 4)."""
    ordered = sorted(steps, key=lambda s: s[0])
    events = scheduler_events(ordered, job or {"limits": {"submission": 4}})
    return CorrelatedRuntimeView(events).verdict()


def waits(task: str, group: str, lease: int, ready: float, start: float) -> list[Step]:
    return [
        (ready, "ready_enqueued", task, group, None),
        (start, "task_dispatched", task, group, lease),
        (start + 1e-5, "task_completed", task, group, lease),
    ]


def test_many_gaps_of_microseconds_are_the_schedulers_per_task_work() -> None:
    verdict = verdict_of(tiny_tasks(3000, gap=20e-6, run=10e-6))
    assert verdict.layer == "ready_queue" and verdict.share == pytest.approx(2 / 3)
    assert PER_TASK in verdict.message and REPORT_IT not in verdict.message
    assert "about 20 µs per task over 3000 tasks" in verdict.message
    assert "more work in each task" in verdict.message
    assert verdict.setting is None  # no setting fixes it: the tasks themselves must grow
    assert verdict.evidence["ready_idle_per_task"] == pytest.approx(20e-6)
    assert verdict.evidence["longest_gap"] == pytest.approx(20e-6)


def test_one_long_gap_among_tiny_tasks_is_a_dispatch_gap_to_report() -> None:
    """A task sat 1 s with capacity free: a lost wakeup. Averaged over 3000 tasks it is only
    about 0.35 ms per task; its length, not the mean, tells it apart."""
    tiny = tiny_tasks(3000, gap=20e-6, run=10e-6)
    end = tiny[-1][0]
    verdict = verdict_of([*tiny, *waits("late", "g", 1, end + 0.01, end + 1.01)])
    assert verdict.layer == "ready_queue"
    assert verdict.evidence["ready_idle_per_task"] < 1e-3
    assert "a dispatch gap in the scheduler; please report it" in verdict.message
    assert "a task waited 1 s with capacity free" in verdict.message
    assert PER_TASK not in verdict.message


def test_one_pause_that_carries_little_of_the_gap_time_is_still_per_task_work() -> None:
    """A 150 ms pause (a garbage collection) among 5000 gaps of 50 µs: under half of the
    gap time, so the run is still bound by the per-task work."""
    tiny = tiny_tasks(5000, gap=50e-6, run=10e-6)
    end = tiny[-1][0]
    verdict = verdict_of([*tiny, *waits("paused", "g", 1, end + 0.01, end + 0.16)])
    assert verdict.layer == "ready_queue"
    assert PER_TASK in verdict.message and REPORT_IT not in verdict.message


def test_a_group_left_waiting_while_others_are_served_is_a_dispatch_gap() -> None:
    """A pipeline layout: the model cell's lane is free for 0.2 s while local cells are
    queued and admitted one by one all that time. Each admission ends only its own group's
    gap, so the model cell's 0.2 s is one gap, not thousands of 20 µs ones."""
    local = [
        (t, kind, task, "local:x", lease)
        for t, kind, task, _, lease in tiny_tasks(7000, gap=20e-6, run=10e-6, start=0.001)
    ]
    layout = {
        "limits": {"submission": 4, "endpoint:e": 2},
        "group_resources": {
            "model:e": {"submission": 1, "endpoint:e": 1},
            "local:x": {"submission": 1},
        },
    }
    verdict = verdict_of([*local, *waits("m", "model:e", 2, 0.0, 0.2)], **layout)
    assert verdict.layer == "ready_queue"
    assert verdict.evidence["ready_idle_per_task"] < 1e-3
    assert verdict.evidence["longest_gap"] == pytest.approx(0.2)
    assert "a task waited 200 ms with capacity free" in verdict.message
    assert REPORT_IT in verdict.message


def test_a_real_run_of_local_columns_is_not_called_a_scheduler_bug(tmp_path: Path) -> None:
    """On a real clock every cell waits some µs to be dispatched; a pipeline of samplers and
    expressions (cells of µs) is bound by that work, which the verdict must not call a bug.
    A small task capacity makes the ready queue the top layer in most runs; which layer wins
    depends on the machine, so the message is checked when it does."""
    out = tmp_path / "run"
    assert local_columns_pipeline().run(300, output_dir=str(out), events=True, task_capacity=8).ok
    report = generate_report(out, pictures=False)
    assert report.ready_idle_seconds is not None  # the gaps were measured
    verdict = report.verdict
    if verdict.layer == "ready_queue":
        assert PER_TASK in verdict.message and REPORT_IT not in verdict.message


def test_a_full_task_capacity_is_blamed_on_what_its_holders_wait_for(tmp_path: Path) -> None:
    """``sluicegate demo`` in virtual time: 64 task slots, an endpoint declared at 64 that
    really serves 24. The scheduler reports ``admission_blocked`` (``no_capacity``) while the
    slots are full, but the cells holding them wait for the endpoint: the verdict names the
    endpoint and its real capacity. It used to say "set task_capacity=64", at 64."""
    from sluicegate.cli.demo import demo_pipeline
    from sluicegate.providers import SimulatedProvider
    from sluicegate.requests import RequestAdmissionConfig, RequestResourceSettings
    from sluicegate.testing import run_virtual

    provider = SimulatedProvider(  # the demo's provider and settings (cli/demo.py)
        name="sim",
        seed=7,
        latency_seconds=0.02,
        latency_jitter=0.5,
        capacity=24,
        retry_after_seconds=0.05,
        failure_rate=0.01,
    )
    result = run_virtual(
        demo_pipeline(provider).arun,
        400,
        output_dir=str(tmp_path),
        task_capacity=64,
        buffer_size=100,
        cell_backoff_seconds=0.05,
        request_config=RequestAdmissionConfig(
            defaults=RequestResourceSettings(cooldown_seconds=0.05)
        ),
    )
    assert result.ok
    view = CorrelatedRuntimeView.from_file(tmp_path / "events.jsonl.gz")
    blocked = [e for e in view.events if e.event_kind == "admission_blocked"]
    assert any(e.reason == "no_capacity" for e in blocked)  # the slots were full
    verdict = view.verdict()
    assert verdict.layer in ("provider_cooldown", "request_admission"), verdict.message
    assert verdict.setting == "max_parallel_requests", verdict.message
    assert "task_capacity" not in verdict.message


def test_every_worker_thread_busy_is_the_threads_limit_not_dependency_readiness(
    tmp_path: Path,
) -> None:
    """A synchronous generator that waits (10 ms of sleep) on 4 worker threads: the cells
    beyond 4 wait in the pipeline's threads lane, not in the scheduler's queue. The verdict
    names the threads (``local_threads``), not "more row groups" (dependency readiness)."""
    import time

    def slow(topic: str) -> str:
        time.sleep(0.01)
        return topic.upper()

    pipeline = sg.Pipeline(
        [sg.sampler("topic", ["a", "b"]), sg.column("up", slow, depends_on=["topic"])]
    )
    out = tmp_path / "run"
    assert pipeline.run(80, output_dir=str(out), local_threads=4).ok
    report = generate_report(out, pictures=False)
    verdict = report.verdict
    assert verdict.layer == "downstream_completion", verdict.message
    assert verdict.setting == "local_threads" and verdict.value == 8, verdict.message
    assert "every worker thread busy (4 at once)" in verdict.message


def test_async_local_cells_at_their_limit_name_local_concurrency(tmp_path: Path) -> None:
    """Async local cells that wait (10 ms) next to a model column: at most
    ``local_concurrency`` of them run, the rest wait in the pipeline's local lane. The verdict
    names ``local_concurrency``, not dependency readiness."""
    import trio

    async def slow(topic: str) -> str:
        await trio.sleep(0.01)
        return topic.upper()

    pipeline = sg.Pipeline(
        [
            sg.sampler("topic", ["a", "b"]),
            sg.column("up", slow, depends_on=["topic"]),
            sg.llm_text("q", "about {up}", model="sim"),
        ],
        [sg.Endpoint("sim", model="m", provider="sim", max_parallel_requests=32)],
        providers={"sim": sg.SimulatedProvider(name="sim", latency_seconds=0.001)},
    )
    out = tmp_path / "run"
    assert pipeline.run(80, output_dir=str(out), local_concurrency=4).ok
    job = next(
        e
        for e in sg.read_events(out / "events.jsonl.gz")
        if e.event_kind == "scheduler_job_started"
    )
    assert job.diagnostics is not None
    assert job.diagnostics["lanes"] == {"local": 4, "endpoint:sim/m": 32}
    assert set(job.diagnostics["group_lanes"].values()) == {"local", "endpoint:sim/m"}
    verdict = generate_report(out, pictures=False).verdict
    assert verdict.layer == "downstream_completion", verdict.message
    assert verdict.setting == "local_concurrency" and verdict.value == 8, verdict.message


def _chain(tmp_path: Path, name: str, records: int, **settings: Any) -> Verdict:
    """A row of six dependent model cells on an endpoint with room to spare, in virtual time;
    the verdict of the run."""
    from sluicegate.testing import run_virtual

    steps = [sg.llm_text("c1", "about {topic}", model="sim")]
    steps += [sg.llm_text(f"c{i}", f"go on: {{c{i - 1}}}", model="sim") for i in range(2, 7)]
    pipeline = sg.Pipeline(
        [sg.sampler("topic", ["a", "b"]), *steps],
        [sg.Endpoint("sim", model="m", provider="sim", max_parallel_requests=64)],
        providers={"sim": sg.SimulatedProvider(name="sim", latency_seconds=0.05)},
    )
    out = tmp_path / name
    assert run_virtual(pipeline.arun, records, output_dir=str(out), **settings).ok
    return generate_report(out, pictures=False).verdict


def test_a_dependency_bound_pipeline_is_told_how_many_row_groups_to_run(tmp_path: Path) -> None:
    """Few rows in flight (10 of 100): more row groups at once, with the number. Every row in
    flight already (8 of 8, fewer calls than the endpoint takes): no setting shortens a row's
    chain of dependent cells."""
    few = _chain(tmp_path, "few", 100, buffer_size=10, max_concurrent_row_groups=1)
    assert few.layer == "dependency_readiness", few.message
    assert few.setting == "max_concurrent_row_groups" and few.value == 2, few.message
    assert "only 10 of 100 rows could be in flight" in few.message
    all_rows = _chain(tmp_path, "all", 8, buffer_size=8, max_concurrent_row_groups=1)
    assert all_rows.layer == "dependency_readiness", all_rows.message
    assert all_rows.setting is None and "every row already in flight" in all_rows.message


def test_calls_waiting_for_a_rate_window_name_the_quota_not_the_cap(tmp_path: Path) -> None:
    """A producer-side quota of 20 requests per second in front of an endpoint with room
    (cap 32, fast answers): calls wait for the window while the concurrency limit has room.
    The verdict names the rate limit, not max_parallel_requests (or rate limits: none came)."""
    from sluicegate.requests import RequestAdmissionConfig, RequestResourceSettings
    from sluicegate.testing import run_virtual

    pipeline = sg.Pipeline(
        [sg.sampler("topic", ["a", "b"]), sg.llm_text("q", "about {topic}", model="sim")],
        [sg.Endpoint("sim", model="m", provider="sim", max_parallel_requests=32)],
        providers={"sim": sg.SimulatedProvider(name="sim", latency_seconds=0.01)},
    )
    quota = RequestResourceSettings(requests_per_window=20, window_seconds=1.0)
    out = tmp_path / "run"
    result = run_virtual(
        pipeline.arun,
        100,
        output_dir=str(out),
        request_config=RequestAdmissionConfig(defaults=quota),
    )
    assert result.ok
    report = generate_report(out, pictures=False)
    verdict = report.verdict
    assert verdict.layer == "request_admission", verdict.message
    assert verdict.setting == "rate_limit" and verdict.value == 40, verdict.message
    assert "waited for its rate window" in verdict.message
    assert "20 requests per 1 s" in verdict.message
    assert report.endpoints["sim"].rate_window == {"requests": 20, "tokens": None, "seconds": 1.0}


@st.composite
def pipeline_runs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "models": draw(st.integers(0, 3)),
        "locals": draw(st.integers(0, 2)),
        "records": draw(st.integers(1, 40)),
        "buffer_size": draw(st.integers(1, 20)),
        "groups": draw(st.integers(1, 4)),
        "task_capacity": draw(st.one_of(st.none(), st.integers(1, 16))),
        "local_concurrency": draw(st.integers(1, 8)),
        "cap": draw(st.integers(1, 8)),
        "hidden": draw(st.one_of(st.none(), st.integers(1, 4))),
        "failure_rate": draw(st.sampled_from([0.0, 0.1])),
        "seed": draw(st.integers(0, 1000)),
    }


@settings(max_examples=25, deadline=None)
@given(pipeline_runs())
def test_any_pipeline_run_reads_back_whole(tmp_path_factory: Any, run: dict[str, Any]) -> None:
    """Random small pipelines (model columns on a simulated endpoint with a hidden capacity,
    async local columns, row groups, task capacity) in virtual time: the report accounts for
    the whole run in layers, measures its ready-idle gaps (0 in virtual time), finds no
    hidden waiter, and names a verdict."""
    import trio

    from sluicegate.testing import run_virtual

    async def local(row: Any, ctx: Any) -> int:
        await trio.sleep(0.05)
        return int(ctx.row_index)

    columns: list[Any] = [sg.sampler("c0", ["a", "b", "c"])]
    for i in range(run["models"]):
        columns.append(sg.llm_text(f"m{i}", f"about {{{columns[-1].name}}}", model="sim"))
    for i in range(run["locals"]):
        columns.append(sg.column(f"l{i}", local, depends_on=[columns[-1].name]))
    provider = sg.SimulatedProvider(
        name="sim",
        latency_seconds=0.1,
        latency_jitter=0.5,
        capacity=run["hidden"],
        retry_after_seconds=0.2,
        failure_rate=run["failure_rate"],
        seed=run["seed"],
    )
    pipeline = sg.Pipeline(
        columns,
        [sg.Endpoint("sim", model="m", provider="sim", max_parallel_requests=run["cap"])],
        providers={"sim": provider},
    )
    out = tmp_path_factory.mktemp("run")
    options = {"task_capacity": run["task_capacity"]} if run["task_capacity"] else {}
    result = run_virtual(
        pipeline.arun,
        run["records"],
        output_dir=str(out),
        buffer_size=run["buffer_size"],
        max_concurrent_row_groups=run["groups"],
        local_concurrency=run["local_concurrency"],
        **options,
    )
    view = CorrelatedRuntimeView.from_file(out / "events.jsonl.gz")
    occupancy = view.occupancy
    seconds = occupancy.layer_seconds()
    assert all(s >= 0 for s in seconds.values())
    assert sum(seconds.values()) <= occupancy.duration + 1e-6
    assert view.hidden_waiters == 0
    assert occupancy.ready_idle_seconds == 0.0, result.message
    verdict = view.verdict()
    assert verdict.message
    if occupancy.duration > 0:
        assert verdict.layer is not None
