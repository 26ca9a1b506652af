import sys, tempfile, random
sys.path.insert(0, "/work/main/benchmarks")
import trio
trio._core._run._r.seed(0); random.seed(0)
from bench_progress import pipeline
with tempfile.TemporaryDirectory() as out:
    r = pipeline().run(int(sys.argv[2]), output_dir=out, events=sys.argv[1] == "jsonl", buffer_size=1000)
    assert r.ok
