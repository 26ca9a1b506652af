"""The cell benchmark with the scheduler's per-task correlation off (task_correlation=False)."""
import sys, time, tempfile, pathlib, statistics, gc
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b, sluicegate as sg
orig = sg.AsyncTaskScheduler
shim = type(sys)("x"); shim.__dict__.update(sg.__dict__)
shim.AsyncTaskScheduler = lambda *a, **k: orig(*a, task_correlation=False, **k)
n, rounds = int(sys.argv[1]), int(sys.argv[2])
folder = pathlib.Path(tempfile.mkdtemp())
variants = ["none", "discard", "jsonl", "discard-nocorr", "jsonl-nocorr"]
def run(v):
    if v.endswith("nocorr"):
        b.sg = shim
        try: b.one_run(n, 64, v.split("-")[0], folder)
        finally: b.sg = sg
    else: b.one_run(n, 64, v, folder)
for v in variants: run(v)
per = {v: [] for v in variants}
for r in range(rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
        gc.collect(); t = time.process_time(); run(v); per[v].append(time.process_time() - t)
for v in variants:
    q = sorted(per[v]); qb = sorted(per["none"])
    print(f"{v:15} min {q[0]/n*1e6:6.2f}us ratio-of-min {q[0]/qb[0]:.3f} p10 {q[rounds//10]/qb[rounds//10]:.3f} med-pair {statistics.median(x/y for x,y in zip(per[v], per['none'])):.3f}")
