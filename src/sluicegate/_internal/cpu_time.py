"""The process's CPU clocks, read when a run starts and ends. Internal.

A run that waits (for model calls, backoffs, disk) accrues no CPU while it waits; a run whose
process is busy for all of its wall time cannot be sped up by any admission or capacity
setting. ``scheduler_job_started`` and ``scheduler_job_completed`` carry these readings in
their diagnostics so that the report can tell the two apart (``observe/view.py``). They are
read twice per run, never per task.
"""

from __future__ import annotations

import time
from typing import Final

PROCESS_CPU: Final = "process_cpu_seconds"
"""``time.process_time()``: user and system CPU of every thread of the process, so the
worker threads that run synchronous generators count too."""
LOOP_CPU: Final = "loop_cpu_seconds"
"""``time.thread_time()`` of the thread that emits the job events: trio's event loop (the
scheduler's own work, async generators, event writing), without the worker threads."""
PERF_COUNTER: Final = "perf_counter_seconds"
"""``time.perf_counter()``: real time, which trio's default clock also reads. A run on a
virtual clock (``MockClock``) has event times that disagree with it, and its CPU share means
nothing; the reader checks the two agree."""


def cpu_clocks() -> dict[str, float]:
    """The three readings, keyed as the job events' diagnostics carry them."""
    return {
        PROCESS_CPU: time.process_time(),
        LOOP_CPU: time.thread_time(),
        PERF_COUNTER: time.perf_counter(),
    }
