"""Stop a run half way, then run it again: finished row groups are kept, finished cells of
unfinished groups come back from the journal, and the files are the same bytes as an
uninterrupted run. Uses virtual time (sluicegate.testing.run_virtual), so it takes a moment.

Run: .venv/bin/python examples/pipeline_resume.py
"""

import pathlib
import tempfile

import trio

import sluicegate as sg
from sluicegate.testing import run_virtual

pipeline = sg.Pipeline(
    [
        sg.sampler("topic", ["a", "b", "c"]),
        sg.llm_text("question", "About {topic}", model="m"),
        sg.llm_text("answer", "Answer {question}", model="m"),
    ],
    endpoints=[sg.Endpoint("m", model="m", max_parallel_requests=4)],
)


async def stop_after(seconds: float, out: str) -> sg.RunResult:
    control = sg.RunControl()
    async with trio.open_nursery() as nursery:

        async def stopper() -> None:
            await trio.sleep(seconds)
            control.stop(grace_period=0)  # cancel running cells: they run again on resume

        nursery.start_soon(stopper)
        result = await pipeline.arun(60, output_dir=out, buffer_size=10, control=control)
        nursery.cancel_scope.cancel()
    return result


def parts(out: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(pathlib.Path(out, "data").glob("part-*"))]


with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
    first = run_virtual(stop_after, 0.5, a)
    print(f"first run: {first.status}, {first.row_groups_written} row group(s) written")
    resumed = run_virtual(pipeline.arun, 60, output_dir=a, buffer_size=10)
    print(f"resumed: {resumed.status}, {resumed.rows_written} rows (resumed={resumed.resumed})")
    straight = run_virtual(pipeline.arun, 60, output_dir=b, buffer_size=10)
    print("same bytes as an uninterrupted run:", parts(a) == parts(b))
