"""Columns from your own functions: parameters name the upstream columns, ``ctx`` gives the
row index, a reproducible random generator and model calls through request admission.

Run: .venv/bin/python examples/pipeline_custom_columns.py
"""

import tempfile

import sluicegate as sg


def persona(ctx: sg.CellContext) -> dict[str, object]:
    """Sync: runs in a worker thread. ctx.rng is seeded by (seed, row, column)."""
    return {"age": ctx.rng.randint(18, 80), "city": ctx.rng.choice(["Oslo", "Lima", "Pune"])}


async def bio(persona: dict[str, object], ctx: sg.CellContext) -> str:
    """Async: any number of model calls per cell, each admitted by the endpoint's limits."""
    first = await ctx.call(
        "writer", f"One sentence about someone {persona['age']} in {persona['city']}."
    )
    second = await ctx.call("writer", f"Add a hobby to: {first.content}")
    return f"{first.content} {second.content}"


pipeline = sg.Pipeline(
    [
        sg.column("persona", persona),
        sg.column("bio", bio, model="writer"),
        sg.expression("words", lambda bio: len(bio.split())),
    ],
    endpoints=[sg.Endpoint("writer", model="m", max_parallel_requests=8)],
)
with tempfile.TemporaryDirectory() as out:
    result = pipeline.run(20, output_dir=out, seed=42)
    rows = list(result.rows())
    print(result.status, len(rows), "rows; first persona:", rows[0]["persona"])
    again = pipeline.run(20, output_dir=out + "/again", seed=42)
    print("same seed, same rows:", list(again.rows()) == rows)
