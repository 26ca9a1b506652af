import sys, tempfile, pathlib, random, types, os
sys.path.insert(0, "/work/main/benchmarks")
import trio, trio.testing
trio._core._run._r.seed(0)
random.seed(0)
import bench_events as b
shim = types.SimpleNamespace(**{k: getattr(trio, k) for k in dir(trio) if not k.startswith("__")})
shim.run = lambda f, *a: trio.run(f, *a, clock=trio.testing.MockClock(autojump_threshold=0))
b.trio = shim
noop = lambda *a, **k: None
for p in os.environ.get("PATCH", "").split(","):
    if p == "reqid":
        from sluicegate.requests import executor as x
        x.set_request_id = noop; x.reset_request_id = noop
    elif p == "corr":
        from sluicegate.scheduling import dispatch as d
        d.set_correlation = noop
    elif p == "report":
        from sluicegate.requests import executor as x
        from sluicegate.events.schema import ModelCallReport
        R = ModelCallReport(0.1, 0.0, False, 5, 8, "m", None, None, None, None)
        x._call_report = lambda *a: R
    elif p == "noemit":
        from sluicegate.events.emitter import EventEmitter
        def s_(self, kind, task_id=None, group=None, lease_id=None, attempt=None, reason=None, available_after=None, snapshot=None, diagnostics=None, now=None): pass
        def r_(self, kind, provider=None, model_id=None, domain=None, request_group=None, lease_id=None, request_id=None, attempt=None, outcome=None, reason=None, limit=None, previous_limit=None, retry_after=None, snapshot=None, diagnostics=None, call=None, now=None): pass
        EventEmitter.scheduler = s_; EventEmitter.request = r_
    elif p == "fold":
        from sluicegate.events.emitter import EventEmitter
        from sluicegate.requests import executor as x
        # executor adds to a dummy set; controller sees empty -> emits its own lease events (upper bound off)
folder = pathlib.Path(tempfile.mkdtemp())
b.one_run(int(sys.argv[2]), 64, sys.argv[1], folder)
