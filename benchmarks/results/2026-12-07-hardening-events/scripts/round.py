import sys, time, tempfile, pathlib
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b
N = int(sys.argv[1]); variants = sys.argv[2].split(","); r = int(sys.argv[3])
folder = pathlib.Path(tempfile.mkdtemp())
order = variants[r % len(variants):] + variants[:r % len(variants)]
out = {}
for v in order:
    t = time.process_time(); b.one_run(N, 64, v, folder); out[v] = (time.process_time() - t) / N * 1e6
print(" ".join(f"{v}={out[v]:.3f}" for v in variants))
