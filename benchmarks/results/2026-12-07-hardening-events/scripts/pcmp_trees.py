import subprocess, statistics, sys, os, json
PY = "/work/main/.venv/bin/python"
rounds, n, variants = int(sys.argv[1]), sys.argv[2], sys.argv[3]
trees = dict(a.split("=", 1) for a in sys.argv[4:])
data = {t: {v: [] for v in variants.split(",")} for t in trees}
for r in range(rounds):
    for tree in (list(trees) if r % 2 == 0 else list(reversed(trees))):
        out = subprocess.run([PY, os.path.join(os.path.dirname(__file__), "pround.py"), n, variants, str(r)], env={**os.environ, "PYTHONPATH": trees[tree]}, capture_output=True, text=True, check=True).stdout
        for kv in out.split():
            k, v = kv.split("="); data[tree][k].append(float(v))
base = variants.split(",")[0]
for tree, vs in data.items():
    for v, xs in vs.items():
        ratios = [x / y for x, y in zip(xs, vs[base])]
        print(f"{tree:6s} {v:10s} {statistics.median(xs):7.2f} us/cell  ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
json.dump(data, open(os.environ.get("OUT", "/tmp/r/cmp.json"), "w"))
