"""Sink designs for the JSON Lines file, in time: keepK (hold K events, drop), encK (hold and
encode), jsonlK (the real sink, batch K), nowK (encode each event at once, write at K KiB),
twoKwL (encode every K events, write at L KiB). Usage: N ROUNDS VARIANTS."""
import sys, time, tempfile, pathlib, statistics, gc, msgspec
sys.path.insert(0, "/work/main/benchmarks")
import bench_events as b, sluicegate as sg
orig = b._sink
class Keep:
    def __init__(s, k, enc): s.k=k; s.p=[]; s.enc = msgspec.json.Encoder(enc_hook=repr) if enc else None
    def emit(s, e):
        p = s.p; p.append(e)
        if len(p) >= s.k:
            if s.enc: s.enc.encode_lines(p)
            s.p = []
class Now:
    def __init__(s, path, limit):
        s.f = open(path, "wb", buffering=0); s.buf = bytearray(); s.limit = limit
        s.enc = msgspec.json.Encoder(enc_hook=repr); s.ei = s.enc.encode_into
    def emit(s, e):
        buf = s.buf
        s.ei(e, buf, -1); buf += b"\n"
        if len(buf) >= s.limit:
            s.f.write(buf); s.buf = bytearray()
    def close(s):
        s.f.write(s.buf); s.f.close()
class Two:
    def __init__(s, path, k, limit):
        s.f = open(path, "wb", buffering=0); s.buf = bytearray(); s.limit = limit; s.k = k; s.p = []
        s.enc = msgspec.json.Encoder(enc_hook=repr)
    def emit(s, e):
        p = s.p; p.append(e)
        if len(p) >= s.k:
            s.buf.extend(s.enc.encode_lines(p)); s.p = []
            if len(s.buf) >= s.limit:
                s.f.write(s.buf); s.buf = bytearray()
    def close(s):
        s.buf.extend(s.enc.encode_lines(s.p)); s.f.write(s.buf); s.f.close()
def _sink(v, folder):
    if v.startswith("two"):
        k, lim = v[3:].split("w")
        s = Two(folder / "events.jsonl", int(k), int(lim)*1024); return s, s.close
    if v.startswith("now"):
        s = Now(folder / "events.jsonl", int(v[3:])*1024); return s, s.close
    if v.startswith("keep"): return Keep(int(v[4:]), False), lambda: None
    if v.startswith("enc"): return Keep(int(v[3:]), True), lambda: None
    if v.startswith("jsonl") and v != "jsonl":
        s = sg.JsonLinesEventSink(folder / "events.jsonl", append=False, max_buffered_events=int(v[5:]))
        return s, lambda: s.close()
    return orig(v, folder)
b._sink = _sink
n, rounds = int(sys.argv[1]), int(sys.argv[2]); variants = sys.argv[3].split(",")
folder = pathlib.Path(tempfile.mkdtemp())
for v in variants: b.one_run(n, 64, v, folder)
per = {v: [] for v in variants}
for r in range(rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
        gc.collect()
        t = time.process_time(); b.one_run(n, 64, v, folder); t = time.process_time() - t
        per[v].append(t)
base = variants[0]
for v in variants:
    q = sorted(per[v]); qb = sorted(per[base])
    print(f"{v:10} min {q[0]/n*1e6:6.2f}us p10 {q[len(q)//10]/n*1e6:6.2f}us ratio-of-min {q[0]/qb[0]:.3f}  ratio-of-p10 {q[len(q)//10]/qb[len(qb)//10]:.3f}  median-pair {statistics.median(x/y for x,y in zip(per[v], per[base])):.3f}")
