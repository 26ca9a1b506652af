import sys, time, tempfile
sys.path.insert(0, "/work/main/benchmarks")
from bench_pipeline_events import one_run
N = int(sys.argv[1]); variants = sys.argv[2].split(","); r = int(sys.argv[3])
one_run("off", 1000)
order = variants if r % 2 == 0 else variants[::-1]
out = {}
for v in order:
    cpu, wall, size = one_run(v, N); out[v] = cpu / N * 1e6
print(" ".join(f"{v}={out[v]:.3f}" for v in variants))
