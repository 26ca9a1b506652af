"""Why is my run slow? Run a slow run in virtual time, then let its events say why.

300 rows of question -> judge. The judge endpoint is declared with max_parallel_requests=64,
but the provider behind it (a SimulatedProvider with a hidden capacity) serves only 12 calls
at once and answers the rest with 429. Virtual time: about 27 s of run in a fraction of a
second. Then the same run with the setting the report suggests.

    python examples/why_is_my_run_slow.py            # report text only
    python examples/why_is_my_run_slow.py OUT_DIR    # also OUT_DIR/report/*.png
"""

import sys
import tempfile
from pathlib import Path

import attrs

import sluicegate as sg
from sluicegate.observe import (
    SCENARIOS,
    CorrelatedRuntimeView,
    generate_report,
    render_text,
    run_scenario_in_virtual_time,
)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
out.mkdir(parents=True, exist_ok=True)

# 1. the slow run, with its events written to RUN_DIR/events.jsonl.gz (a run directory's file)
with sg.JsonLinesEventSink(out / "events.jsonl.gz", append=False) as sink:
    run_scenario_in_virtual_time("rate_limited", sink)

# 2. the report: what `sluicegate report RUN_DIR` prints (python -m sluicegate.observe RUN_DIR)
report = generate_report(out, pictures=len(sys.argv) > 1)
print(render_text(report))

# 3. apply the one setting it names, run again, compare
slow = SCENARIOS["rate_limited"]
judge = next(e for e in slow.endpoints if e.name == "judge")
fixed = attrs.evolve(
    slow,
    endpoints=tuple(
        attrs.evolve(e, max_parallel_requests=report.verdict.value) if e is judge else e
        for e in slow.endpoints
    ),
)
sink = sg.InMemoryEventSink()
after = run_scenario_in_virtual_time(fixed, sink)
view = CorrelatedRuntimeView(sink.events)
print()
print(f"before: {report.duration:.1f} s with {report.endpoints['judge'].rate_limits} rate limits")
print(
    f"after max_parallel_requests={report.verdict.value}: {after.elapsed:.1f} s with "
    f"{view.endpoints['judge'].rate_limits} rate limits"
)
print(f"now: {view.verdict().message}")
