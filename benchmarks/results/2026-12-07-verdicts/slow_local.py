"""400 cells of a synchronous generator that sleeps 20 ms (it waits on I/O): python slow_local.py [THREADS]"""

import sys
import time

import sluicegate as sg


def slow(topic):
    time.sleep(0.02)
    return topic.upper()


p = sg.Pipeline([sg.sampler("topic", ["a", "b"]), sg.column("up", slow, depends_on=["topic"])])
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 8
r = p.run(400, output_dir=f"runs/slow-local-{threads}", overwrite=True, local_threads=threads)
print(r.status, round(r.elapsed_seconds, 2))
