"""Builders the observability tests share: scheduler event streams from steps, and a
pipeline of local columns only (cells of microseconds: a CPU-bound run on a real clock)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sluicegate as sg
from sluicegate.events import SchedulerEvent

Step = tuple[float, str, Any, str | None, int | None]
"""``(t, kind, task id, group, lease id)`` of one scheduler event."""


def scheduler_events(steps: Iterable[Step], job: dict[str, Any]) -> list[SchedulerEvent]:
    """A run's scheduler events: ``scheduler_job_started`` at 0 with ``job`` as its
    diagnostics, then one event per step in the given order (a dispatch is attempt 1)."""
    events = [
        SchedulerEvent(
            event_kind="scheduler_job_started",
            sequence=1,
            captured_at=0.0,
            schema_version=sg.events.SCHEMA_VERSION,
            diagnostics=job,
        )
    ]
    for seq, (t, kind, task, group, lease) in enumerate(steps, start=2):
        events.append(
            SchedulerEvent(
                event_kind=kind,  # type: ignore[arg-type]
                sequence=seq,
                captured_at=t,
                schema_version=sg.events.SCHEMA_VERSION,
                task_id=task,
                group=group,
                lease_id=lease,
                attempt=1 if kind == "task_dispatched" else None,
            )
        )
    return events


def tiny_tasks(n: int, *, gap: float, run: float, start: float = 0.0) -> list[Step]:
    """``n`` tasks one after another, each queued ``gap`` seconds before its dispatch (the
    scheduler's own work) and running ``run`` seconds."""
    steps: list[Step] = []
    t = start
    for i in range(n):
        steps += [
            (t, "ready_enqueued", f"t{i}", "g", None),
            (t + gap, "task_dispatched", f"t{i}", "g", 1),
            (t + gap + run, "task_completed", f"t{i}", "g", 1),
        ]
        t += gap + run
    return steps


def local_columns_pipeline() -> sg.Pipeline:
    """Two samplers and two expressions: every cell takes microseconds."""
    return sg.Pipeline(
        [
            sg.sampler("topic", ["a", "b", "c"]),
            sg.sampler("n", [1, 2, 3, 4]),
            sg.expression("double", lambda n: 2 * n),
            sg.expression("label", lambda topic, double: f"{topic}{double}"),
        ]
    )
