"""A first pipeline: sampled topics, model text, a judge and a filter, on the embedded
simulated endpoints (no network), written as JSON Lines row groups.

Run: .venv/bin/python examples/pipeline_quickstart.py
"""

import tempfile

import sluicegate as sg

pipeline = sg.Pipeline(
    [
        sg.sampler("topic", ["science", "history", "art"], weights=[2, 1, 1]),
        sg.sampler("difficulty", uniform=(1, 5), integer=True),
        sg.llm_text("question", "Ask a level-{difficulty} question about {topic}.", model="writer"),
        sg.llm_text("answer", "Answer briefly: {question}", model="writer"),
        sg.judge("verdict", "Is this a good answer?\nQ: {question}\nA: {answer}", model="judge"),
        sg.expression(
            "answer_length",
            lambda answer: len(answer),
            keep_if=lambda row: row["answer_length"] > 10,
        ),
    ]
)
with tempfile.TemporaryDirectory() as out:
    result = pipeline.run(50, output_dir=out, buffer_size=20, seed=1)
    print(result.status, "-", result.message)
    print("files:", ", ".join(result.files))
    first = next(result.rows())
    print("first row:", {k: first[k] for k in ("topic", "difficulty", "answer_length")})
