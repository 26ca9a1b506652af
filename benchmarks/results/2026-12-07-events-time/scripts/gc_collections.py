"""Generation-0 collections per 5,000-cell run with the scheduler's correlation set replaced."""
import sys, gc, pathlib, tempfile
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b, sluicegate as sg
from sluicegate.scheduling import dispatch as d
from sluicegate.events import correlation as c
folder = pathlib.Path(tempfile.mkdtemp())
def count(v, n=5000):
    k = [0]
    def cb(ph, info):
        if ph == "start" and info["generation"] == 0: k[0] += 1
    gc.collect(); gc.callbacks.append(cb); b.one_run(n, 64, v, folder); gc.callbacks.remove(cb)
    return k[0]
orig = d.set_correlation
X = c.RuntimeCorrelation(task_id=1)
for name, fn in [("orig", orig), ("noop", lambda v: None), ("setconst", lambda v: c._CURRENT.set(X)), ("setNone", lambda v: c._CURRENT.set(None))]:
    d.set_correlation = fn
    print(name, count("discard"), count("none"))
