import sys, time, tempfile, pathlib, zlib, threading, queue, statistics, os
sys.path.insert(0, "/work/main/benchmarks")
from bench_progress import pipeline
from sluicegate.events import JsonLinesEventSink
from sluicegate.events.sinks import _write_all

class SyncGz(JsonLinesEventSink):
    def __init__(self, path, level=1, **kw):
        super().__init__(path, **kw); self.level = level
    def _write_pending(self):
        pending = self._pending
        if not pending: return
        self._pending = []
        _write_all(self._file, zlib.compress(self._encoder.encode_lines(pending), self.level, wbits=31))

class GzSink(JsonLinesEventSink):
    def __init__(self, path, level=3, **kw):
        super().__init__(path, **kw)
        self.level = level
        self.q = queue.Queue(maxsize=16)
        self.t = threading.Thread(target=self._work, daemon=True); self.t.start()
    def _work(self):
        while True:
            data = self.q.get()
            if data is None:
                self.q.task_done(); return
            blob = zlib.compress(data, self.level, wbits=31)
            _write_all(self._file, blob)
            self.q.task_done()
    def _write_pending(self):
        pending = self._pending
        if not pending: return
        self._pending = []
        self.q.put(self._encoder.encode_lines(pending))
    def flush(self, *, fsync=False):
        self._write_pending(); self.q.join()
    def close(self):
        if self._file is not None:
            self.flush(); self.q.put(None); self.t.join(); self._file.close(); self._file = None

def one(variant, n):
    with tempfile.TemporaryDirectory() as out:
        sink = None
        if variant == "jsonl": sink = JsonLinesEventSink(pathlib.Path(out)/"e.jsonl")
        elif variant.startswith("sgz"): sink = SyncGz(pathlib.Path(out)/"e.jsonl.gz", level=int(variant[3:]))
        elif variant.startswith("gz"): sink = GzSink(pathlib.Path(out)/"e.jsonl.gz", level=int(variant[2:]))
        c, w = time.process_time(), time.perf_counter()
        r = pipeline().run(n, output_dir=out, events=sink if sink else False, buffer_size=1000)
        if sink: sink.close()
        c, w = time.process_time()-c, time.perf_counter()-w
        size = sum(p.stat().st_size for p in pathlib.Path(out).glob("e.jsonl*"))
        assert r.ok
    return c, w, size
V = sys.argv[1].split(","); n = int(sys.argv[2]); rounds = int(sys.argv[3])
one("off", 500)
res = {v: ([], [], 0) for v in V}
for i in range(rounds):
    for v in (V if i % 2 == 0 else V[::-1]):
        c, w, s = one(v, n); res[v][0].append(c); res[v][1].append(w); res[v] = (res[v][0], res[v][1], s)
base_c = min(res[V[0]][0]); base_w = min(res[V[0]][1])
for v in V:
    cs, ws, s = res[v]
    pr = [c / b for c, b in zip(cs, res[V[0]][0])]; pw = [w / b for w, b in zip(ws, res[V[0]][1])]
    print(f"{v:6s} cpu min {min(cs)/n/3*1e6:6.1f}us/cell ratio-min {min(cs)/base_c:.3f} med {statistics.median(pr):.3f} | wall ratio-min {min(ws)/base_w:.3f} med {statistics.median(pw):.3f} | {s/n:.0f} B/record")
