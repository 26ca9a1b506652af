"""2,000 rows of topic -> question -> answer -> judge from an OpenAI-compatible server whose
URL is in SLUICEGATE_BASE_URL (see docs/pipelines.md; without it: 40 simulated rows)."""

import os

import sluicegate as sg

url = os.environ.get("SLUICEGATE_BASE_URL")
pipeline = sg.Pipeline(
    [
        sg.sampler("field", ["physics", "biology", "history", "economics"]),
        sg.llm_text("topic", "Name one topic in {field}.", model="llm"),
        sg.llm_text("question", "Write one question about {topic}.", model="llm"),
        sg.llm_text("answer", "Answer in two sentences: {question}", model="llm"),
        sg.judge("judge", "Rate 1-10.\nQ: {question}\nA: {answer}", model="llm"),
    ],
    endpoints=[sg.Endpoint("llm", model="demo", base_url=url, max_parallel_requests=24)],
)
records = int(os.environ.get("SLUICEGATE_RECORDS", 2000 if url else 40))
result = pipeline.run(records, output_dir=os.environ.get("SLUICEGATE_OUTPUT"))
print(f"{result.status}: {result.message} in {result.elapsed_seconds:.1f} s -> {result.output_dir}")
if not result.ok:
    raise SystemExit(f"{result.rows_failed} row(s) could not be produced: {result.failures}")
