import sys, time, tempfile, pathlib, statistics
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b
n, rounds = int(sys.argv[1]), int(sys.argv[2]); variants = sys.argv[3].split(",")
folder = pathlib.Path(tempfile.mkdtemp())
for v in variants: b.one_run(n, 64, v, folder)
tot = {v: 0.0 for v in variants}; per = {v: [] for v in variants}
for r in range(rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
        t = time.process_time(); b.one_run(n, 64, v, folder); t = time.process_time() - t
        tot[v] += t; per[v].append(t)
base = variants[0]
print(" ".join(f"{v}: {tot[v]/rounds/n*1e6:.2f}us ratio-of-sums {tot[v]/tot[base]:.3f} median-pair {statistics.median(x/y for x,y in zip(per[v], per[base])):.3f}" for v in variants))
