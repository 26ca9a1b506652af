"""The verdict: the layer that held a run back, its share of the run, and the one setting
to change.

The sweep (:mod:`.occupancy`) has labelled every instant of the run with one layer and,
where it applies, one endpoint. The verdict takes the layer with the largest share of the
run's time, the endpoint that carried most of that layer's time, and turns the evidence of
that layer (the endpoint's rate limits and measured capacity, the task capacity, the latency,
the dependency depth) into one sentence that names the setting to change and its value.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .series import LAYERS, Layer, RunOccupancy

LAYER_TITLES: dict[str, str] = {
    "dependency_readiness": "dependency readiness",
    "ready_queue": "ready queue (dispatch)",
    "task_admission": "task admission",
    "request_admission": "request admission (endpoint limits)",
    "provider_cooldown": "provider cooldown (rate limits)",
    "provider_latency": "provider latency",
    "downstream_completion": "downstream completion (worker code)",
    "failure_retry": "retries after failures",
}


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """A distribution of seconds: how many, their total and the usual quantiles."""

    count: int = 0
    total: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        """Nearest-rank quantiles of ``values`` (an empty list gives zeros)."""
        if not values:
            return cls()
        ordered = sorted(values)
        n = len(ordered)

        def rank(q: float) -> float:
            return ordered[min(n - 1, max(0, int(q * n + 0.5) - 1))]

        return cls(
            count=n,
            total=sum(ordered),
            p50=rank(0.5),
            p90=rank(0.9),
            p95=rank(0.95),
            p99=rank(0.99),
            max=ordered[-1],
        )


class EndpointSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What one request resource did over the run."""

    name: str
    provider: str
    model_id: str
    domain: str
    static_cap: int | None
    rate_window: dict[str, float | int | None] | None = None
    """The producer-side quota (``requests``/``tokens`` per ``seconds``), when one was set."""
    requests: int
    attempts: int
    outcomes: dict[str, int]
    rate_limits: int
    limit_decreases: int
    limit_increases: int
    recoveries: int
    rate_limited_share: float
    """Share of the run spent in cooldown or under a limit lowered by a rate limit."""
    peak_concurrent_successes: int
    """Most calls that ran at once and all succeeded, at any instant."""
    mean_in_flight: float
    lowest_limit: int | None
    final_limit: int | None
    latency: Percentiles
    """Provider seconds of successful attempts."""
    input_tokens: int = 0
    """Tokens the endpoint's successful calls read (as the provider reported them)."""
    output_tokens: int = 0
    tokens_by_column: dict[str, list[int]] = msgspec.field(default_factory=dict)
    """Per pipeline column: ``[requests, input tokens, output tokens]`` (what each column
    spends on this endpoint; columns in the order their first request started)."""
    sustained_concurrent_successes: int | None = None
    """Most successful calls at once held for at least 1% of the time any call succeeded in
    flight: what the endpoint really served. Seen from the client, a call holds its slot a
    little longer than the server does (sending, receiving), so the bare peak overstates the
    server's capacity by the calls that overlapped for a moment (27 against an emulator
    serving 24, for 10 ms of a 6 s run). ``None`` in a report written before 2026-12-07."""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The layer that held the run back, with its share of the run and the fix."""

    layer: Layer | None
    share: float
    """Share of the run's wall time attributed to ``layer`` (0..1)."""
    message: str
    endpoint: str | None = None
    setting: str | None = None
    """The one setting to change (``max_parallel_requests``, ``capacity``, ...), if any."""
    value: int | None = None
    """Its suggested value, when one can be derived from the run."""
    shares: dict[str, float] = msgspec.field(default_factory=dict)
    """Every layer's share of the run (they add up to at most 1)."""
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    cpu_bound: bool = False
    """The process's CPU was busy for about all of the run, and ``layer``'s own advice
    (which assumes the run waited) was replaced by what helps a CPU-bound run."""


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def _secs(value: float) -> str:
    return f"{value:.3g}s"


def _short(value: float) -> str:
    """Seconds in the unit that suits a dispatch gap: ``22 µs``, ``1.6 ms``, ``5 s``."""
    if value < 1e-3:
        return f"{value * 1e6:.3g} µs"
    if value < 1.0:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


class VerdictInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What the verdict reads besides the sweep (computed by the view)."""

    endpoints: dict[str, EndpointSummary]
    chain_depth: int
    tasks: int
    queue_wait: Percentiles
    pipeline: bool = False
    """A data-generation run (``pipeline_started``): advice names the pipeline's settings."""
    cpu_busy_share: float | None = None
    """The process's CPU seconds over the run's wall seconds; ``None``: not measured."""
    loop_cpu_share: float | None = None
    """The same for the event loop's thread alone; ``None``: not measured."""


def decide(occupancy: RunOccupancy, inputs: VerdictInputs) -> Verdict:
    """Name the limiting layer, its share, and the one setting to change (see module doc)."""
    duration = occupancy.duration
    seconds = occupancy.layer_seconds()
    if duration <= 0 or not any(seconds.values()):
        return Verdict(
            layer=None,
            share=0.0,
            message="the run took no time: nothing held it back",
            shares=dict.fromkeys(LAYERS, 0.0),
        )
    shares: dict[str, float] = {layer: seconds[layer] / duration for layer in LAYERS}
    layer: Layer = max(LAYERS, key=lambda name: seconds[name])
    per_endpoint: dict[str | None, float] = {}
    per_detail: dict[str | None, float] = {}
    for item in occupancy.layer_times:
        if item.layer == layer:
            per_endpoint[item.endpoint] = per_endpoint.get(item.endpoint, 0.0) + item.seconds
            per_detail[item.detail] = per_detail.get(item.detail, 0.0) + item.seconds
    named = {k: v for k, v in per_endpoint.items() if k is not None}
    endpoint = max(named, key=named.__getitem__) if named else None
    detail = max(per_detail, key=per_detail.__getitem__) if per_detail else None
    advice = _ADVICE[layer](occupancy, inputs, shares[layer], endpoint, detail)
    busy = inputs.cpu_busy_share
    cpu_bound = busy is not None and busy >= CPU_BOUND_SHARE and advice.if_cpu_bound is not None
    if cpu_bound:
        advice = _cpu_bound(advice, inputs)
    return Verdict(
        layer=layer,
        share=shares[layer],
        endpoint=endpoint,
        shares=shares,
        message=advice.message,
        setting=advice.setting,
        value=advice.value,
        evidence=advice.evidence,
        cpu_bound=cpu_bound,
    )


class _Advice(msgspec.Struct, frozen=True):
    message: str
    setting: str | None = None
    value: int | None = None
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    if_cpu_bound: str | None = None
    """What the layer's time was when the process was busy all along, for advice that
    assumes the run waited (more in flight, more capacity, more threads); ``None`` keeps the
    advice whatever the CPU did (an endpoint that was the limit, failures, a lost wakeup)."""


# A run that waits (for a model call, a backoff, a sleep, the disk) uses no CPU while it
# waits, so at a CPU share s at most 1 - s of the wall time was waiting: at 0.9, any setting
# that removed every wait would save at most a tenth of the run, while the layer's share
# (54-77% dependency readiness in the busy runs below) is mostly the process at work.
# Measured on a real clock (2 cores, 2026-12-07), the process's share: pipelines of local
# columns only, 300 to 20,000 rows, 0.94-1.02; a simulated endpoint answering in 0 ms, 1.0;
# in 1 ms (32 calls in flight), 0.91; in 20 ms, 0.27; in 200 ms, 0.03. Worker threads count
# (synchronous generators), so a process can pass 1.0 on several cores; native code that
# releases the interpreter lock in several threads could then pass 0.9 with a core free,
# which the event loop's own share (in the message) tells apart.
CPU_BOUND_SHARE: Final = 0.9


def _cpu_bound(advice: _Advice, inputs: VerdictInputs) -> _Advice:
    """The advice of a run whose process was busy: no admission or capacity setting helps."""
    busy = inputs.cpu_busy_share or 0.0
    loop = inputs.loop_cpu_share
    in_loop = f" (its event loop's thread {_pct(loop)})" if loop is not None else ""
    unit, fix = (
        (
            "cell",
            "one generator call that produces several values, local work batched into one column",
        )
        if inputs.pipeline
        else ("task", "fewer, larger tasks that each do a batch of the work")
    )
    threads = (
        "; most of it ran outside the event loop's thread, in the worker threads of "
        "synchronous generators, and more threads will not help: Python code runs one thread "
        "at a time"
        if loop is not None and loop < busy / 2
        else ""
    )
    return _Advice(
        f"the process used its CPU for {_pct(busy)} of the run{in_loop}: "
        f"{advice.if_cpu_bound}; the limit is this process's CPU, not a setting (sluicegate's "
        f"per-task work plus the local code). Put more work in each {unit} ({fix}) and make "
        f"the local code faster (profile the slowest generator){threads}. With model calls "
        "that take real time, this work overlaps the waiting and the endpoints set the pace "
        "again",
        evidence={**advice.evidence, "cpu_busy_share": busy, "loop_cpu_share": loop},
    )


def _cooldown(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, _: str | None
) -> _Advice:
    ep = inputs.endpoints.get(endpoint or "")
    if ep is None:
        return _Advice(
            f"{_pct(share)} of the run waited to retry after rate limits: raise the provider's "
            "quota or lower the fan-out",
            setting="max_parallel_requests",
        )
    sustained = ep.sustained_concurrent_successes
    capacity = max(1, ep.peak_concurrent_successes if sustained is None else sustained)
    evidence = {
        "rate_limits": ep.rate_limits,
        "peak_concurrent_successes": ep.peak_concurrent_successes,
        "sustained_concurrent_successes": sustained,
        "static_cap": ep.static_cap,
        "lowest_limit": ep.lowest_limit,
    }
    head = (
        f"endpoint `{ep.name}` spent {_pct(share)} of the run held back by rate limits "
        f"({ep.rate_limits} rate limits; in cooldown or under a limit lowered by them)"
    )
    if ep.static_cap is not None and capacity >= ep.static_cap:
        # It served as many calls at once as it is allowed and still said 429: a quota on
        # requests or tokens per minute, not concurrency.
        return _Advice(
            f"{head}: it answered 429 even at its cap of {ep.static_cap} calls in flight, so its "
            "limit is a rate (requests or tokens per minute), not concurrency; add a rate "
            "window (requests_per_minute) for it or raise the quota",
            setting="requests_per_minute",
            evidence=evidence,
        )
    return _Advice(
        f"{head}: its real capacity is about {capacity}; set max_parallel_requests={capacity} "
        f"for `{ep.name}` or raise the quota",
        setting="max_parallel_requests",
        value=capacity,
        evidence=evidence,
    )


def _request_admission(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, detail: str | None
) -> _Advice:
    ep = inputs.endpoints.get(endpoint or "")
    if detail == "rate_window" and ep is not None and ep.rate_window is not None:
        return _quota(ep, share)
    if ep is None:
        return _Advice(
            f"model calls waited for request admission {_pct(share)} of the run: raise the "
            "endpoint's max_parallel_requests",
            setting="max_parallel_requests",
        )
    cap = ep.static_cap
    suggestion = 2 * cap if cap else None
    quiet = (
        "the provider never rate limited it"
        if not ep.rate_limits
        else (f"with only {ep.rate_limits} rate limits")
    )
    mine = sum(
        item.seconds
        for item in occ.layer_times
        if item.layer == "request_admission" and item.endpoint == endpoint
    )
    others = _also_at_limit(occ, endpoint)
    return _Advice(
        f"endpoint `{ep.name}` set the pace for {_pct(mine / occ.duration)} of the run: it "
        f"had as many calls in flight as its limit allows ({ep.final_limit or cap}; "
        f"{ep.mean_in_flight:.1f} on average over the run) or calls waiting for it, and {quiet}"
        f"{others}. Its cap is the bottleneck: raise max_parallel_requests for `{ep.name}` "
        f"(now {cap}), e.g. to {suggestion}, if its provider can serve more (a higher quota, "
        "more replicas)",
        setting="max_parallel_requests",
        value=suggestion,
        evidence={"static_cap": cap, "mean_in_flight": round(ep.mean_in_flight, 2)},
    )


def _quota(ep: EndpointSummary, share: float) -> _Advice:
    """Calls waited for the endpoint's rate window, not for its concurrency limit."""
    window = ep.rate_window or {}
    requests, tokens, seconds = window.get("requests"), window.get("tokens"), window.get("seconds")
    quota = " and ".join(
        f"{n} {what}" for n, what in ((requests, "requests"), (tokens, "tokens")) if n
    )
    setting = "rate_limit" if requests else "tokens_per_window"
    value = 2 * int(requests) if requests else None
    return _Advice(
        f"calls to endpoint `{ep.name}` waited for its rate window for {_pct(share)} of the run "
        f"({quota} per {seconds:g} s) while its concurrency limit had room: the quota set the "
        f"pace, not max_parallel_requests. Raise it only as far as the provider's own quota "
        f"allows",
        setting=setting,
        value=value,
        evidence={"rate_window": window},
    )


def _also_at_limit(occ: RunOccupancy, endpoint: str | None) -> str:
    """`` (`b` too, 41% of the run)`` for the other endpoints that were at their limits."""
    seconds: dict[str, float] = {}
    for item in occ.layer_times:
        if item.layer == "request_admission" and item.endpoint not in (None, endpoint):
            assert item.endpoint is not None
            seconds[item.endpoint] = seconds.get(item.endpoint, 0.0) + item.seconds
    busy = [
        f"`{name}` {_pct(value / occ.duration)}"
        for name, value in sorted(seconds.items(), key=lambda kv: -kv[1])
        if value >= 0.05 * occ.duration
    ]
    return f" (at their limits too: {', '.join(busy)} of the run)" if busy else ""


def _task_admission(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, detail: str | None
) -> _Advice:
    if detail not in (None, "capacity_full", "no_capacity"):
        fix = {
            "group_capped": "raise the capped group's weight or its cap",
            "borrow_debt": "raise BoundedBorrowPolicy.max_borrow, or weight the groups as used",
            "policy_denied": "see TaskAdmissionController.explain_blocked() for the policy",
        }.get(detail or "", "see TaskAdmissionController.explain_blocked()")
        return _Advice(
            f"ready tasks were held back by the task admission policy ({detail}) for "
            f"{_pct(share)} of the run while capacity was free: {fix}",
            setting="policy",
            evidence={"reason": detail},
            if_cpu_bound=_admission_busy(share),
        )
    capacity = occ.capacity
    if capacity is None and inputs.pipeline:  # a pipeline's task capacity is its total
        capacity = occ.task_limits.get("submission")
    caps = [ep.static_cap for ep in inputs.endpoints.values() if ep.static_cap]
    suggestion = sum(caps) if caps else (2 * capacity if capacity else None)
    if capacity is not None and suggestion is not None and suggestion <= capacity:
        suggestion = 2 * capacity
    ep = inputs.endpoints.get(endpoint or "")
    headroom = ""
    if ep is not None and ep.static_cap:
        headroom = (
            f" while endpoint `{ep.name}` had headroom (about {ep.mean_in_flight:.0f} of "
            f"{ep.static_cap} calls in flight on average)"
        )
    setting = "task_capacity" if inputs.pipeline else "capacity"
    now = f" (now {capacity})" if capacity is not None else ""
    return _Advice(
        f"ready tasks waited for task capacity {_pct(share)} of the run{headroom} (queue wait "
        f"p50 {_secs(inputs.queue_wait.p50)}): set {setting}={suggestion}{now}",
        setting=setting,
        value=suggestion,
        evidence={"capacity": capacity, "peak_leases": occ.peak_leases},
        if_cpu_bound=_admission_busy(share),
    )


def _admission_busy(share: float) -> str:
    return (
        f"the ready tasks that waited for task admission ({_pct(share)} of the run) would "
        "have found no CPU free to run them, and more capacity puts more tasks in flight, not "
        "more work through"
    )


# On a real clock every task has a ready-idle gap: the scheduler's own work between queueing
# a task and admitting it (select, lease, spawn, events), while the event loop may run other
# tasks first. Measured on runs of local columns only (300 to 20,000 rows): 7-28 µs of
# ready-idle time per task, single gaps up to about 3 ms, and up to 100 ms where a garbage
# collection ran inside one (none over 3 ms with the collector off). Under 1 ms per task
# (40x the measured cost) is this bookkeeping. A lost wakeup is one long gap instead, as long
# as the model call whose completion next wakes the scheduler: 100 ms or more. Long gaps must
# carry half of the gap time to be the cause; a collection pause among tiny tasks is not.
_PER_TASK_DISPATCH: Final = 1e-3
_LONG_GAP: Final = 0.1


def _ready_queue(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, _: str | None
) -> _Advice:
    measured = occ.ready_idle_seconds
    idle = measured if measured is not None else share * occ.duration
    gaps = (
        f"{measured:.3g}s of ready-idle gaps"
        if measured is not None
        else f"at least {idle:.3g}s of ready-idle gaps; not every interval could be checked"
    )
    head = (
        f"for {_pct(share)} of the run tasks were ready and task capacity was free yet nothing "
        f"was admitted ({gaps}"
    )
    per_task = idle / inputs.tasks if inputs.tasks else None
    single = occ.ready_idle_gaps or []
    total = sum(single)
    longest = max(single, default=0.0)
    long_share = sum(g for g in single if g >= _LONG_GAP) / total if total else 0.0
    evidence = {
        "ready_idle_seconds": measured,
        "ready_idle_per_task": per_task,
        "longest_gap": longest if occ.ready_idle_gaps is not None else None,
        "long_gap_share": long_share,
    }
    if per_task is not None and per_task < _PER_TASK_DISPATCH and long_share < 0.5:
        fix = (
            "fewer, larger cells: one generator call that produces several values, or local "
            "work batched into one column"
            if inputs.pipeline
            else "fewer, larger tasks that each do a batch of the work"
        )
        return _Advice(
            f"{head}, about {_short(per_task)} per task over {inputs.tasks} tasks): the "
            "scheduler's own per-task work set the pace. The tasks are so short that "
            "dispatching them is a large share of the work, the CPU limit of one process; put "
            f"more work in each task: {fix}",
            evidence=evidence,
            if_cpu_bound=(
                f"the scheduler's own per-task work set the pace ({_pct(share)} of the run in "
                f"ready-idle gaps, about {_short(per_task)} per task over {inputs.tasks} tasks)"
            ),
        )
    waited = f"; a task waited {_short(longest)} with capacity free" if single else ""
    return _Advice(
        f"{head}{waited}): a dispatch gap in the scheduler; please report it with this events file",
        evidence=evidence,
    )


def _latency(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, _: str | None
) -> _Advice:
    ep = inputs.endpoints.get(endpoint or "")
    where = f"endpoint `{ep.name}`" if ep else "the endpoints"
    stats = f" (p50 {_secs(ep.latency.p50)}, p95 {_secs(ep.latency.p95)})" if ep else ""
    return _Advice(
        f"{_pct(share)} of the run was spent waiting for {where} to answer{stats} with nothing "
        "waiting for admission: the endpoint's response time sets the pace; use a faster "
        "endpoint or ask for fewer tokens (max_tokens); more concurrency will not help",
        setting="max_tokens",
        evidence={"latency_p50": ep.latency.p50 if ep else None},
    )


def _readiness(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, _: str | None
) -> _Advice:
    utilization = occ.utilization
    used = f" (mean {_pct(utilization)} of capacity {occ.capacity} used)" if utilization else ""
    rows = occ.rows
    if (
        inputs.pipeline
        and rows is not None
        and rows.records is not None
        and rows.buffer_size is not None
        and rows.max_concurrent_row_groups is not None
    ):
        groups = rows.max_concurrent_row_groups
        return _row_groups(share, inputs, rows.records, rows.buffer_size, groups)
    return _Advice(
        f"for {_pct(share)} of the run task capacity stood idle{used} while more tasks were "
        f"still to come: they waited for their dependencies (the longest chain is about "
        f"{inputs.chain_depth} tasks deep). Put more independent work in flight: more rows per "
        "row group (buffer_size) or more row groups at once (max_concurrent_row_groups)",
        setting="max_concurrent_row_groups",
        evidence={"chain_depth": inputs.chain_depth, "utilization": utilization},
        if_cpu_bound=(
            f"the {_pct(share)} of the run that task capacity stood idle with nothing ready "
            "was the process at work (running tasks, finding the next ready ones, writing "
            "rows), not waiting, and more rows or row groups in flight add no CPU to run them"
        ),
    )


def _row_groups(
    share: float, inputs: VerdictInputs, records: int, buffer_size: int, groups: int
) -> _Advice:
    """A pipeline whose capacity stood idle waiting for cells to become ready: more rows in
    flight help, unless every row already was."""
    in_flight = buffer_size * groups
    cpu_bound = (
        f"the {_pct(share)} of the run that task capacity stood idle with nothing ready "
        "was the process at work (running tasks, finding the next ready ones, writing "
        "rows), not waiting, and more rows or row groups in flight add no CPU to run them"
    )
    if in_flight >= records:
        return _Advice(
            f"for {_pct(share)} of the run task capacity stood idle while cells waited for the "
            f"cells they depend on, with every row already in flight ({records} rows; "
            f"buffer_size {buffer_size} x max_concurrent_row_groups {groups}): each row's "
            f"chain of about {inputs.chain_depth} dependent cells set the pace. No setting "
            "shortens it; faster cells do, and a larger run keeps more cells ready at once",
            evidence={"chain_depth": inputs.chain_depth, "rows_in_flight": in_flight},
            if_cpu_bound=cpu_bound,
        )
    more = min(2 * groups, -(-records // buffer_size))  # no more groups than the run has
    return _Advice(
        f"for {_pct(share)} of the run task capacity stood idle while cells waited for the "
        f"cells they depend on (chains of about {inputs.chain_depth}), and only "
        f"{in_flight} of {records} rows could be in flight (buffer_size {buffer_size} x "
        f"max_concurrent_row_groups {groups}): set max_concurrent_row_groups={more} (now "
        f"{groups}), or more rows per row group (buffer_size)",
        setting="max_concurrent_row_groups",
        value=more,
        evidence={"chain_depth": inputs.chain_depth, "rows_in_flight": in_flight},
        if_cpu_bound=cpu_bound,
    )


def _downstream(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, detail: str | None
) -> _Advice:
    if detail is not None and detail.startswith("lane_full:"):
        return _lane_full(occ, inputs, share, detail.split(":", 1)[1])
    return _Advice(
        f"worker code outside model calls (local generators, parsing, writing) held "
        f"{_pct(share)} of the run: profile the slowest column's generator; a synchronous "
        "generator runs in a worker thread, so give it more threads or make it async",
        evidence={},
        if_cpu_bound=(
            f"the worker code outside model calls that held {_pct(share)} of the run was "
            "computing, not waiting: neither more threads nor making it async gives it more CPU"
        ),
    )


def _lane_full(occ: RunOccupancy, inputs: VerdictInputs, share: float, lane: str) -> _Advice:
    """Local code kept a lane full (a pipeline's worker threads or its async/inline local
    cells), or held every unit of a task resource."""
    limit = occ.lane_windows.get(lane, occ.task_limits.get(lane))
    suggestion = 2 * limit if limit else None
    pct = _pct(share)
    if inputs.pipeline and lane == "threads":
        setting = "local_threads"
        what = (
            f"synchronous generators kept every worker thread busy ({limit} at once) for {pct} "
            f"of the run while their other cells waited for a thread: set local_threads="
            f"{suggestion} (now {limit}) if they wait on I/O, or make the generator async"
        )
    elif inputs.pipeline and lane == "local":
        setting = "local_concurrency"
        what = (
            f"async or inline local cells ran as many at once as they may ({limit}) for {pct} "
            f"of the run while more of them waited: set local_concurrency={suggestion} (now "
            f"{limit}) if they wait rather than compute"
        )
    else:
        setting = "capacity"
        what = (
            f"worker code held every unit of task resource `{lane}` ({limit}) for {pct} of the "
            f"run while more of its tasks were to come: raise that limit (to {suggestion}) if "
            "the code waits rather than computes"
        )
    return _Advice(
        what,
        setting=setting,
        value=suggestion,
        evidence={"lane": lane, "limit": limit},
        if_cpu_bound=(
            f"the worker code that held {pct} of the run was computing, not waiting: neither "
            "more threads nor making it async gives it more CPU"
        ),
    )


def _failure_retry(
    occ: RunOccupancy, inputs: VerdictInputs, share: float, endpoint: str | None, detail: str | None
) -> _Advice:
    where = f" on endpoint `{endpoint}`" if endpoint else ""
    ep = inputs.endpoints.get(endpoint or "")
    if ep is not None:
        where += _failure_mix(ep)
    if inputs.pipeline:
        # A cell's model call backs off inside the cell; a failed cell is retried as a task.
        setting = "cell_backoff_seconds" if detail == "task_retry" else "request_backoff_seconds"
        what = "failed cells" if detail == "task_retry" else "failed model calls"
        return _Advice(
            f"{_pct(share)} of the run was spent backing off before retrying {what}{where}: "
            f"fix the failures (see failures by reason), or lower {setting}",
            setting=setting,
        )
    return _Advice(
        f"{_pct(share)} of the run was spent backing off before retrying failed calls or "
        f"tasks{where}: fix the failures (see failures by reason), or lower the retry backoff "
        "(RetryPolicy / ModelRequestExecutor.backoff_seconds)",
        setting="retry",
    )


def _failure_mix(ep: EndpointSummary) -> str:
    """`` (622 of 1022 attempts failed: 622 provider_failure)``: how often and how the
    endpoint's calls failed, or nothing when none did."""
    failed = {k: n for k, n in ep.outcomes.items() if k != "success" and n}
    total = sum(failed.values())
    if not total or not ep.attempts:
        return ""
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(failed.items(), key=lambda i: (-i[1], i[0])))
    return f" ({total} of {ep.attempts} attempts failed, {total / ep.attempts:.0%}: {kinds})"


_ADVICE = {
    "provider_cooldown": _cooldown,
    "request_admission": _request_admission,
    "task_admission": _task_admission,
    "ready_queue": _ready_queue,
    "provider_latency": _latency,
    "dependency_readiness": _readiness,
    "downstream_completion": _downstream,
    "failure_retry": _failure_retry,
}
