# Upper bound of a structural cut: 3 events per cell instead of 5 (ready_enqueued and
# model_request_started not built at all). Patched emitter methods return before building.
import sys, time, tempfile, pathlib, statistics, gc
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b
from sluicegate.events.emitter import EventEmitter
orig_t, orig_c = EventEmitter.task_event, EventEmitter.call_event
def t3(self, kind, *a):
    if kind != "ready_enqueued": orig_t(self, kind, *a)
def c3(self, kind, *a):
    if kind != "model_request_started": orig_c(self, kind, *a)
n, rounds = int(sys.argv[1]), int(sys.argv[2])
folder = pathlib.Path(tempfile.mkdtemp())
variants = ["none", "discard", "jsonl", "discard3", "jsonl3"]
def run(v):
    if v.endswith("3"):
        EventEmitter.task_event, EventEmitter.call_event = t3, c3
        try: b.one_run(n, 64, v[:-1], folder)
        finally: EventEmitter.task_event, EventEmitter.call_event = orig_t, orig_c
    else: b.one_run(n, 64, v, folder)
for v in variants: run(v)
per = {v: [] for v in variants}
for r in range(rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
        gc.collect(); t = time.process_time(); run(v); per[v].append(time.process_time() - t)
for v in variants:
    q = sorted(per[v]); qb = sorted(per["none"])
    print(f"{v:9} min {q[0]/n*1e6:6.2f}us ratio-of-min {q[0]/qb[0]:.3f} p10 {q[rounds//10]/qb[rounds//10]:.3f} med-pair {statistics.median(x/y for x,y in zip(per[v], per['none'])):.3f}")
