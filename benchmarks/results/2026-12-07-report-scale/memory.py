"""Bytes held per decoded event (tracemalloc) and read time, for the tree on PYTHONPATH.

    PYTHONPATH=<tree>/src .venv/bin/python benchmarks/results/2026-12-07-report-scale/memory.py /tmp/qa
"""

import sys
import time
import tracemalloc

from sluicegate.events import read_events, run_events_path

path = run_events_path(sys.argv[1])
tracemalloc.start()
events = read_events(path)
held = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
del events
start = time.perf_counter()
events = read_events(path)
seconds = time.perf_counter() - start
print(
    f"{len(events)} events: {held / len(events):.0f} bytes held per event, "
    f"read in {seconds / len(events) * 1e6:.2f} us per event"
)
