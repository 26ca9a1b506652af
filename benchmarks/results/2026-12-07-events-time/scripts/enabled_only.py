"""What the enabled path costs when nothing is built: no correlation, emitter methods
replaced by no-ops, the call report not built."""
import sys, time, tempfile, pathlib, statistics, gc
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b, sluicegate as sg
from sluicegate.events.emitter import EventEmitter
from sluicegate.requests import executor as x
orig = sg.AsyncTaskScheduler
shim = type(sys)("x"); shim.__dict__.update(sg.__dict__)
shim.AsyncTaskScheduler = lambda *a, **k: orig(*a, task_correlation=False, **k)
saved = {k: getattr(EventEmitter, k) for k in ("task_event", "call_event", "scheduler", "request")}
saved_report = x._call_report
def noop(*a, **k): return None
n, rounds = int(sys.argv[1]), int(sys.argv[2])
folder = pathlib.Path(tempfile.mkdtemp())
variants = ["none", "discard", "nocorr", "nocorr-noemit", "nocorr-noemit-noreport"]
def run(v):
    parts = v.split("-")
    if "nocorr" in parts: b.sg = shim
    if "noemit" in parts:
        for k in saved: setattr(EventEmitter, k, noop)
    if "noreport" in parts: x._call_report = noop
    try: b.one_run(n, 64, "none" if v == "none" else "discard", folder)
    finally:
        b.sg = sg; x._call_report = saved_report
        for k, f in saved.items(): setattr(EventEmitter, k, f)
for v in variants: run(v)
per = {v: [] for v in variants}
for r in range(rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
        gc.collect(); t = time.process_time(); run(v); per[v].append(time.process_time() - t)
for v in variants:
    q = sorted(per[v]); qb = sorted(per["none"])
    print(f"{v:24} min {q[0]/n*1e6:6.2f}us ratio-of-min {q[0]/qb[0]:.3f} p10 {q[rounds//10]/qb[rounds//10]:.3f} med-pair {statistics.median(x/y for x,y in zip(per[v], per['none'])):.3f}")
