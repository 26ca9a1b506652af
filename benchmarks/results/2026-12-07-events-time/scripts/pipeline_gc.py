"""The pipeline benchmark with the garbage collector on and off (ratios to off of the same kind)."""
import sys, statistics, gc
sys.path.insert(0, "/work/main/benchmarks")
from bench_pipeline_events import one_run
n, rounds = int(sys.argv[1]), int(sys.argv[2])
variants = ["off", "jsonl", "off-nogc", "jsonl-nogc"]
cnt = {v: 0 for v in variants}; cur = [None]
def cb(ph, info):
    if ph == "start" and cur[0]: cnt[cur[0]] += 1
gc.callbacks.append(cb)
one_run("off", 500); one_run("jsonl", 500)
per = {v: [] for v in variants}
for r in range(rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
        gc.collect()
        if v.endswith("nogc"): gc.disable()
        cur[0] = v
        per[v].append(one_run(v.split("-")[0], n)[0])
        cur[0] = None
        gc.enable()
for v in variants:
    base = "off-nogc" if v.endswith("nogc") else "off"
    q = sorted(per[v]); qb = sorted(per[base])
    print(f"{v:11} min {q[0]/n/3*1e6:6.2f}us/cell ratio-of-min {q[0]/qb[0]:.3f} p10 {q[len(q)//10]/qb[len(qb)//10]:.3f} med-pair {statistics.median(x/y for x,y in zip(per[v], per[base])):.3f} collections/run {cnt[v]/rounds:.0f}")
