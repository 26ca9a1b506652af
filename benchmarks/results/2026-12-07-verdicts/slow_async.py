"""400 cells of an async generator that waits 20 ms: python slow_async.py [LOCAL_CONCURRENCY]"""

import sys

import trio

import sluicegate as sg


async def slow(topic):
    await trio.sleep(0.02)
    return topic.upper()


p = sg.Pipeline([sg.sampler("topic", ["a", "b"]), sg.column("up", slow, depends_on=["topic"])])
conc = int(sys.argv[1]) if len(sys.argv) > 1 else 8
r = p.run(400, output_dir=f"runs/slow-async-{conc}", overwrite=True, local_concurrency=conc)
print(r.status, round(r.elapsed_seconds, 2))
