from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import sluicegate as sg

A = sg.RequestResourceKey("sim", "a")
B = sg.RequestResourceKey("sim", "b")
C = sg.RequestResourceKey("sim", "c")
DETAIL_A = "request_pressure_advisory endpoint=sim/a/chat signal={} peer_group={}"


def rp(
    key: sg.RequestResourceKey,
    *,
    waiters: int = 0,
    cooldown: float = 0.0,
    circuit: str = "closed",
) -> sg.requests.RequestResourcePressure:
    """A pressure snapshot of ``key`` with only the fields the policy reads set."""
    return sg.requests.RequestResourcePressure(
        resource=key,
        captured_at=0.0,
        limit=4,
        effective_max=4,
        static_cap=4,
        clamp=None,
        in_flight=0,
        endpoint_in_flight=0,
        waiters=waiters,
        cooldown_remaining=cooldown,
        last_rate_limit_ceiling=None,
        consecutive_rate_limits=0,
        ramping=False,
        circuit=circuit,  # type: ignore[arg-type]
        circuit_reopens_in=None,
        window_requests=None,
        window_tokens=None,
        grants=0,
        successes=0,
        rate_limits=0,
        coalesced_rate_limits=0,
        failures=0,
        released=0,
        wait_timeouts=0,
        wait_cancellations=0,
        denials=0,
        duplicate_releases=0,
        unknown_releases=0,
        cancelled_grants=0,
        max_in_flight=0,
        max_waiters=0,
        max_limit=4,
    )


class FakePressure:
    """A RequestPressureSource whose per-resource pressure the test sets directly."""

    def __init__(self, *entries: sg.requests.RequestResourcePressure) -> None:
        self.entries = {e.resource: e for e in entries}
        self.lookups = 0

    def snapshot(self) -> sg.requests.RequestPressureSnapshot:
        return sg.requests.RequestPressureSnapshot(
            captured_at=0.0,
            resources=tuple(self.entries.values()),
            endpoints=(),
            unknown_releases=0,
            closed=False,
        )

    def resource(self, key: sg.RequestResourceKey) -> sg.requests.RequestResourcePressure | None:
        self.lookups += 1
        return self.entries.get(key)


def task(tid: object, group: str, endpoint: Any = None, **res: int) -> sg.SchedulableTask:
    """The payload is the endpoint the task's model calls go to."""
    return sg.SchedulableTask(tid, endpoint, sg.TaskGroupSpec(group, 1.0), res or {"submission": 1})


def endpoint_of(t: sg.SchedulableTask) -> Any:
    return t.payload


def setup(
    pressure: FakePressure,
    tasks: list[sg.SchedulableTask],
    *,
    limits: dict[str, int] | None = None,
    **kwargs: Any,
) -> tuple[
    sg.scheduling.RequestPressureAdvisoryPolicy,
    sg.TaskAdmissionController,
    sg.scheduling.FairTaskQueue,
]:
    policy = sg.scheduling.RequestPressureAdvisoryPolicy(pressure, endpoint_of, **kwargs)
    ctl = sg.TaskAdmissionController(limits or {"submission": 4}, policy=policy)
    q = sg.scheduling.FairTaskQueue()
    q.enqueue(tasks)
    return policy, ctl, q


def hold(
    ctl: sg.TaskAdmissionController, t: sg.SchedulableTask
) -> sg.scheduling.TaskAdmissionLease:
    lease = ctl.try_acquire(t, sg.scheduling.FairTaskQueue().view())
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    return lease


# -- unit: when the policy skips and when it does not ------------------------------------------


def test_pressured_item_skipped_for_admissible_unpressured_peer() -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    _, ctl, q = setup(FakePressure(rp(A, waiters=2)), [a1, b1])
    # a1 is the fairest head (queued first), so without the policy it would be selected
    assert q.select_next().item is a1  # type: ignore[union-attr]
    denied = ctl.evaluate(a1, q.view())
    assert denied is not None and denied.reason == "policy_denied"
    assert denied.resource is None and denied.available_after is None
    assert denied.detail == DETAIL_A.format("waiters", "gb")
    assert denied.skip == sg.scheduling.PeerSkip(
        peer_group="gb", endpoint="sim/a/chat", signal="waiters"
    )
    selection = q.select_next(ctl.is_eligible)
    assert selection is not None and selection.item is b1
    lease = ctl.try_acquire(selection.item, selection.view)
    assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
    assert q.commit(selection) is b1
    # no unpressured peer is left: the pressured task is admitted
    selection = q.select_next(ctl.is_eligible)
    assert selection is not None and selection.item is a1


@pytest.mark.parametrize(
    ("fields", "signal"),
    [
        ({"waiters": 1}, "waiters"),
        ({"cooldown": 2.5}, "cooldown"),
        ({"circuit": "open"}, "circuit_open"),
        ({"circuit": "half_open"}, None),  # waiting for a probe call: let work through
        ({}, None),
    ],
)
def test_pressure_signals(fields: dict[str, Any], signal: str | None) -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    policy, ctl, q = setup(FakePressure(rp(A, **fields)), [a1, b1])
    assert policy.pressure_signal(A) == signal
    denied = ctl.evaluate(a1, q.view())
    if signal is None:
        assert denied is None
    else:
        assert denied is not None and denied.detail == DETAIL_A.format(signal, "gb")


def test_min_waiters_threshold() -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    policy, ctl, q = setup(FakePressure(rp(A, waiters=2)), [a1, b1], min_waiters=3)
    assert policy.pressure_signal(A) is None and ctl.evaluate(a1, q.view()) is None
    policy, ctl, q = setup(FakePressure(rp(A, waiters=3)), [a1, b1], min_waiters=3)
    assert policy.pressure_signal(A) == "waiters" and ctl.evaluate(a1, q.view()) is not None


def test_custom_predicate_replaces_the_rule() -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    pressure = FakePressure(rp(A, waiters=5), rp(B))
    _, ctl, q = setup(pressure, [a1, b1], is_pressured=lambda p: p.resource == A)
    denied = ctl.evaluate(a1, q.view())
    assert denied is not None and denied.detail == DETAIL_A.format("custom", "gb")
    _, ctl, q = setup(pressure, [a1, b1], is_pressured=lambda p: False)
    assert ctl.evaluate(a1, q.view()) is None  # 5 waiters, but the predicate says no


def test_allowed_without_a_peer() -> None:
    a1, a2 = task("a1", "ga", A), task("a2", "ga", A)
    _, ctl, q = setup(FakePressure(rp(A, waiters=3)), [a1, a2])
    assert ctl.evaluate(a1, q.view()) is None


def test_allowed_when_every_peer_is_pressured() -> None:
    a1, a2, b1 = task("a1", "ga", A), task("a2", "ga2", A), task("b1", "gb", B)
    _, ctl, q = setup(FakePressure(rp(A, waiters=1), rp(B, cooldown=1.0)), [a1, a2, b1])
    assert ctl.evaluate(a1, q.view()) is None  # ga2 shares the pressured endpoint, gb cools down


def test_allowed_when_the_peer_does_not_fit_free_capacity() -> None:
    a1 = task("a1", "ga", A)
    b1 = task("b1", "gb", B, submission=1, gpu=1)
    limits = {"submission": 4, "gpu": 1}
    _, ctl, q = setup(FakePressure(rp(A, waiters=1)), [a1, b1], limits=limits)
    assert ctl.evaluate(a1, q.view()) is not None  # gpu free: b1 fits, a1 is skipped
    hold(ctl, task("x", "gx", None, gpu=1))
    assert ctl.evaluate(a1, q.view()) is None  # gpu full: b1 cannot run now, so a1 may


def test_allowed_when_inner_denies_the_peer() -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    inner = sg.scheduling.StrictFairPolicy(group_caps={"gb": {"submission": 1}})
    _, ctl, q = setup(FakePressure(rp(A, waiters=1)), [a1, b1], inner=inner)
    assert ctl.evaluate(a1, q.view()) is not None
    hold(ctl, task("b0", "gb", B))  # gb is now at its cap: b1 would be denied group_capped
    assert ctl.evaluate(a1, q.view()) is None


def test_inner_denial_wins() -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    inner = sg.scheduling.StrictFairPolicy(group_caps={"ga": {"submission": 1}})
    _, ctl, q = setup(FakePressure(rp(A, waiters=1)), [a1, b1], inner=inner)
    hold(ctl, task("a0", "ga", A))
    denied = ctl.evaluate(a1, q.view())
    assert denied is not None and denied.reason == "group_capped"
    assert denied.detail == "group cap 1 on 'submission'"


def test_no_endpoint_and_unknown_resources_are_unpressured() -> None:
    local = task("l1", "glocal", None)
    a1, c1 = task("a1", "ga", A), task("c1", "gc", C)
    policy, ctl, q = setup(FakePressure(rp(A, waiters=1)), [a1, local, c1])
    assert policy.pressure_signal(None) is None and policy.pressure_signal(C) is None
    assert ctl.evaluate(local, q.view()) is None and ctl.evaluate(c1, q.view()) is None
    # a task that makes no model call is a fine peer to prefer
    denied = ctl.evaluate(a1, q.view())
    assert denied is not None and denied.detail == DETAIL_A.format("waiters", "glocal")


def test_provider_model_key_covers_every_domain() -> None:
    endpoint = sg.ProviderModelKey("sim", "a")
    embed = sg.RequestResourceKey("sim", "a", "embedding")
    a1, b1 = task("a1", "ga", endpoint), task("b1", "gb", B)
    policy, ctl, q = setup(FakePressure(rp(A), rp(embed, cooldown=1.0)), [a1, b1])
    assert policy.pressure_signal(endpoint) == "cooldown"
    assert policy.pressure_signal(A) is None
    denied = ctl.evaluate(a1, q.view())
    assert denied is not None
    assert denied.detail == "request_pressure_advisory endpoint=sim/a signal=cooldown peer_group=gb"


def test_admit_idle_groups_keeps_one_task_of_a_pressured_group_running() -> None:
    a1, b1 = task("a1", "ga", A), task("b1", "gb", B)
    _, ctl, q = setup(FakePressure(rp(A, waiters=1)), [a1, b1], admit_idle_groups=True)
    assert ctl.evaluate(a1, q.view()) is None  # ga runs nothing: never held back
    hold(ctl, task("a0", "ga", A))
    assert ctl.evaluate(a1, q.view()) is not None  # ga runs a0: prefer gb now


def test_peer_scan_is_bounded() -> None:
    pressured = [sg.RequestResourceKey("sim", f"p{i}") for i in range(20)]
    tasks = [task("a1", "ga", A)]
    tasks += [task(f"p{i}", f"gp{i}", key) for i, key in enumerate(pressured)]
    tasks.append(task("b1", "gb", B))  # the only unpressured peer, queued last
    pressure = FakePressure(rp(A, waiters=1), *(rp(k, waiters=1) for k in pressured))
    _, ctl, q = setup(pressure, tasks, max_peers_scanned=3)
    pressure.lookups = 0
    assert ctl.evaluate(tasks[0], q.view()) is None  # gb lies beyond the scanned peers
    assert pressure.lookups <= 1 + 3  # the item's endpoint and one per scanned peer
    _, ctl, q = setup(pressure, tasks, max_peers_scanned=64)
    denied = ctl.evaluate(tasks[0], q.view())
    assert denied is not None and denied.detail == DETAIL_A.format("waiters", "gb")


def test_peer_found_after_many_skips() -> None:
    """Admitting the peer many times in a row (the pressured head staying first in the fair
    order) must not hide the peer from the scan: the preference holds for the whole run."""
    a = [task(f"a{i}", "ga", A) for i in range(3)]
    b = [task(f"b{i}", "gb", B) for i in range(40)]
    _, ctl, q = setup(FakePressure(rp(A, waiters=2)), a + b, limits={"submission": 100})
    order = []
    while (selection := q.select_next(ctl.is_eligible)) is not None:
        assert isinstance(
            ctl.try_acquire(selection.item, selection.view), sg.scheduling.TaskAdmissionLease
        )
        assert q.commit(selection) is selection.item
        order.append(selection.item.task_id)
    assert order == [t.task_id for t in b + a]


def test_state_and_validation_are_forwarded_to_inner() -> None:
    class Counting:
        name = "counting"

        def evaluate(self, item: Any, queue_view: Any, usage: Any) -> Any:
            return sg.scheduling.TaskAdmissionPolicyDecision(True)

        def on_acquire(self, lease: Any, usage: Any) -> Any:
            return sg.scheduling.PolicyStateDelta((("counting:running", 1),))

        def on_release(self, lease: Any, usage: Any) -> Any:
            return sg.scheduling.PolicyStateDelta((("counting:running", -1),))

    policy, ctl, _ = setup(FakePressure(), [], inner=Counting())
    assert policy.name == "request_pressure_advisory" and ctl.view().policy == policy.name
    lease = hold(ctl, task("a1", "ga", A))
    assert ctl.view().policy_state == {"counting:running": 1}
    assert ctl.release(lease).released
    assert ctl.view().policy_state == {}

    capped = sg.scheduling.StrictFairPolicy(group_caps={"ga": {"tpu": 1}})
    wrapper = sg.scheduling.RequestPressureAdvisoryPolicy(FakePressure(), endpoint_of, inner=capped)
    with pytest.raises(sg.errors.UnknownResourceError, match="tpu"):
        sg.TaskAdmissionController(capacity=2, policy=wrapper)


def test_only_skips_carry_a_peer_skip() -> None:
    """The typed skip is set on the advisory's own denials only: inner denials and plain
    capacity denials carry none (nothing has to parse ``detail`` to tell them apart)."""
    a0, a1, b1 = task("a0", "ga", A), task("a1", "ga", A), task("b1", "gb", B)
    inner = sg.scheduling.StrictFairPolicy(group_caps={"ga": {"submission": 1}})
    _, ctl, q = setup(FakePressure(rp(A, waiters=1)), [a1, b1], inner=inner)
    skipped = ctl.evaluate(a1, q.view())
    assert skipped is not None and skipped.skip is not None
    assert skipped.skip.peer_group == "gb" and skipped.skip.signal == "waiters"
    hold(ctl, a0)
    capped = ctl.evaluate(a1, q.view())
    assert capped is not None and capped.reason == "group_capped" and capped.skip is None
    decision = sg.scheduling.TaskAdmissionPolicyDecision.skip_for(
        sg.scheduling.PeerSkip(peer_group="group with spaces")
    )
    assert not decision.allowed and decision.reason == "policy_denied"
    assert decision.skip is not None and decision.skip.peer_group == "group with spaces"
    assert decision.detail == "skipped for peer group 'group with spaces'"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pressure": object()}, "pressure"),
        ({"endpoint_of": "payload"}, "endpoint_of"),
        ({"inner": object()}, "inner"),
        ({"min_waiters": 0}, "min_waiters"),
        ({"min_waiters": True}, "min_waiters"),
        ({"min_waiters": 2, "is_pressured": lambda p: True}, "min_waiters"),
        ({"is_pressured": 3}, "is_pressured"),
        ({"max_peers_scanned": 0}, "max_peers_scanned"),
        ({"max_peers_scanned": 2.5}, "max_peers_scanned"),
        ({"admit_idle_groups": 1}, "admit_idle_groups"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"pressure": FakePressure(), "endpoint_of": endpoint_of, **kwargs}
    with pytest.raises(sg.ConfigurationError) as info:
        sg.scheduling.RequestPressureAdvisoryPolicy(**args)
    assert info.value.field == f"RequestPressureAdvisoryPolicy.{field}"
    assert info.value.fix


def test_passing_the_controller_instead_of_its_pressure_says_so() -> None:
    endpoint = sg.ModelEndpoint(name="a", provider="sim", model_id="a", max_parallel_requests=1)
    requests = sg.AdaptiveRequestAdmissionController([endpoint])
    with pytest.raises(sg.ConfigurationError, match=r"controller\.pressure, not the controller"):
        sg.scheduling.RequestPressureAdvisoryPolicy(requests, endpoint_of)  # type: ignore[arg-type]
    sg.scheduling.RequestPressureAdvisoryPolicy(requests.pressure, endpoint_of)  # the right way


def test_bad_endpoint_of_result_is_a_clear_error() -> None:
    a1 = task("a1", "ga", "sim/a")  # a string, not a key
    _, ctl, q = setup(FakePressure(), [a1])
    with pytest.raises(sg.ConfigurationError, match="RequestResourceKey, a ProviderModelKey"):
        ctl.evaluate(a1, q.view())


# -- liveness: never deny everything while the inner policy would admit something -------------

FLAGS = st.sampled_from(["none", "unknown", "waiters", "cooldown", "open", "half_open"])


def _fits(t: sg.SchedulableTask, ctl: sg.TaskAdmissionController) -> bool:
    usage = ctl.usage
    return all(usage.in_use(r) + u <= usage.limit(r) for r, u in t.resources.items())


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_liveness_never_denies_everything(data: st.DataObject) -> None:
    keys = [sg.RequestResourceKey("sim", f"m{i}") for i in range(3)]
    flags = data.draw(st.lists(FLAGS, min_size=3, max_size=3), label="pressure flags")
    entries = {
        "none": {},
        "waiters": {"waiters": 2},
        "cooldown": {"cooldown": 1.0},
        "open": {"circuit": "open"},
        "half_open": {"circuit": "half_open"},
    }
    pressure = FakePressure(
        *(rp(k, **entries[f]) for k, f in zip(keys, flags, strict=True) if f != "unknown")
    )
    limits = {"submission": data.draw(st.integers(1, 4)), "gpu": data.draw(st.integers(1, 2))}
    n_groups = data.draw(st.integers(1, 6), label="groups")
    # caps on most groups, so peers denied by the inner policy are common
    caps = {
        f"g{g}": {"submission": data.draw(st.integers(1, 2))}
        for g in range(n_groups)
        if data.draw(st.integers(0, 3))
    }
    inner = sg.scheduling.StrictFairPolicy(group_caps=caps)
    policy = sg.scheduling.RequestPressureAdvisoryPolicy(
        pressure,
        endpoint_of,
        inner=inner,
        max_peers_scanned=data.draw(st.integers(1, 4)),
        admit_idle_groups=data.draw(st.booleans()),
    )
    ctl = sg.TaskAdmissionController(limits, policy=policy)
    q = sg.scheduling.FairTaskQueue()
    tasks = []
    for g in range(n_groups):
        endpoint = data.draw(st.sampled_from([None, *keys]))
        # sizes vary so that a peer's head often does not fit the free units
        res = {"submission": data.draw(st.integers(1, 2))}
        if data.draw(st.booleans()):
            res["gpu"] = 1
        for i in range(data.draw(st.integers(1, 3))):
            tasks.append(sg.SchedulableTask((g, i), endpoint, sg.TaskGroupSpec(f"g{g}"), res))
    data.draw(st.randoms(use_true_random=False)).shuffle(tasks)
    q.enqueue(tasks)
    held: list[sg.scheduling.TaskAdmissionLease] = []
    for _ in range(40):
        view = q.view()
        heads = [h for k in view.active_groups() if (h := view.first_candidate(k)) is not None]
        admissible = [
            h for h in heads if _fits(h, ctl) and inner.evaluate(h, view, ctl.usage).allowed
        ]
        for head in heads:
            denied = ctl.evaluate(head, view)
            skip = denied.skip if denied is not None else None
            if skip is not None:
                # every skip names a peer the controller would admit right now
                peer = view.first_candidate(skip.peer_group)
                assert peer is not None and peer.group.key != head.group.key
                assert ctl.is_eligible(peer, view)
                assert policy.pressure_signal(peer.payload) is None
                assert policy.pressure_signal(head.payload) == skip.signal
        selection = q.select_next(ctl.is_eligible)
        if not admissible:
            assert selection is None
        else:
            assert selection is not None, "the advisory policy denied every admissible head"
            assert selection.item in admissible
            lease = ctl.try_acquire(selection.item, selection.view)
            assert isinstance(lease, sg.scheduling.TaskAdmissionLease)
            assert q.commit(selection) is selection.item
            held.append(lease)
        if held and (selection is None or data.draw(st.booleans())):
            ctl.release(held.pop(data.draw(st.integers(0, len(held) - 1))))
        if q.is_empty():
            break
    for lease in held:
        assert ctl.release(lease).released
    assert ctl.view().active_leases == 0


# -- integration: a real request controller and a real scheduler --------------------------------


def request_controller(**settings_: Any) -> sg.AdaptiveRequestAdmissionController:
    return sg.AdaptiveRequestAdmissionController(
        [
            sg.ModelEndpoint(name="a", provider="sim", model_id="a", max_parallel_requests=1),
            sg.ModelEndpoint(name="b", provider="sim", model_id="b", max_parallel_requests=4),
        ],
        sg.RequestAdmissionConfig(defaults=sg.RequestResourceSettings(**settings_)),
    )


def two_groups(n_a: int, n_b: int) -> sg.DagCompletionTracker:
    tracker = sg.DagCompletionTracker()
    for i in range(n_a):  # queued first: without the policy, ga is the fairest group
        tracker.add(f"a{i}", A, group="ga")
    for i in range(n_b):
        tracker.add(f"b{i}", B, group="gb")
    return tracker


def calling_worker(requests: sg.AdaptiveRequestAdmissionController, seconds: float = 1.0) -> Any:
    """Each task makes one model call to its endpoint through request admission."""

    async def worker(t: sg.SchedulableTask) -> None:
        item = sg.requests.RequestAdmissionItem(resource=t.payload, request_group=t.group.key)
        lease = await requests.acquire(item)
        try:
            await trio.sleep(seconds)
        finally:
            requests.release(lease, sg.requests.RequestReleaseOutcome.success())

    return worker


def assert_no_request_leases(requests: sg.AdaptiveRequestAdmissionController) -> None:
    for p in requests.pressure.snapshot().resources:
        assert (p.in_flight, p.waiters) == (0, 0), p.resource


@pytest.mark.parametrize("mode", ["baseline", "advisory", "advisory_idle_groups"])
async def test_scheduler_prefers_the_unpressured_endpoint_while_waiters_queue(
    autojump_clock: trio.testing.MockClock, mode: str
) -> None:
    requests = request_controller()
    blocker = requests.try_acquire(
        sg.requests.RequestAdmissionItem(resource=A, request_group="other")
    )
    assert isinstance(blocker, sg.requests.RequestAdmissionLease)  # endpoint a (cap 1) is full
    if mode == "baseline":
        policy: sg.scheduling.TaskAdmissionPolicy = sg.scheduling.StrictFairPolicy()
    else:
        policy = sg.scheduling.RequestPressureAdvisoryPolicy(
            requests.pressure, endpoint_of, admit_idle_groups=mode == "advisory_idle_groups"
        )
    admission = sg.TaskAdmissionController(capacity=2, policy=policy)
    sink = sg.InMemoryEventSink()
    scheduler = sg.AsyncTaskScheduler(
        two_groups(4, 4), calling_worker(requests), admission=admission, sink=sink
    )

    async def queued_caller() -> None:
        lease = await requests.acquire(
            sg.requests.RequestAdmissionItem(resource=A, request_group="other")
        )
        requests.release(lease, sg.requests.RequestReleaseOutcome.success())

    async def release_blocker_later() -> None:
        await trio.sleep(10)  # the pressure outlasts every gb task
        requests.release(blocker, sg.requests.RequestReleaseOutcome.success())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(queued_caller)
        await trio.testing.wait_all_tasks_blocked()
        pa = requests.pressure.resource(A)
        assert pa is not None and pa.waiters == 1  # endpoint a is pressured
        nursery.start_soon(release_blocker_later)
        result = await scheduler.run()

    order = [e.task_id for e in sink.of_kind("task_dispatched")]
    assert sorted(order) == sorted(f"{g}{i}" for g in "ab" for i in range(4))
    if mode == "baseline":
        assert order[:2] == ["a0", "b0"] and order.index("a1") < order.index("b3")
    elif mode == "advisory":
        assert order[:4] == ["b0", "b1", "b2", "b3"]  # every gb task before any ga task
        skips = sink.of_kind("request_pressure_advisory_skipped")
        assert skips, "the scheduler reports the heads the policy held back"
        first = skips[0]
        assert (first.task_id, first.group, first.reason) == ("a0", "ga", "policy_denied")
        assert first.diagnostics is not None
        assert first.diagnostics["endpoint"] == "sim/a/chat"
        assert first.diagnostics["signal"] == "waiters"
        assert first.diagnostics["peer_group"] == "gb"
        assert first.diagnostics["admitted_instead"] == "b0"
        assert {e.task_id for e in skips} == {"a0"}  # only ga's head was ever held back
        kinds = sink.kinds()
        assert kinds.index("request_pressure_advisory_skipped") < kinds.index("task_dispatched")
    else:
        assert order[:5] == ["a0", "b0", "b1", "b2", "b3"]  # ga keeps exactly one running
    if mode == "baseline":
        assert not sink.of_kind("request_pressure_advisory_skipped")
    assert result.counts["succeeded"] == 8
    assert result.admission.active_leases == 0
    assert_no_request_leases(requests)


def cooling_down_controller() -> sg.AdaptiveRequestAdmissionController:
    """Endpoint a answered a 429 with a 3 s retry-after; "paused" means no call to it goes
    out until the cooldown ends."""
    requests = request_controller(cooldown_admission="paused")
    lease = requests.try_acquire(sg.requests.RequestAdmissionItem(resource=A))
    assert isinstance(lease, sg.requests.RequestAdmissionLease)
    requests.release(lease, sg.requests.RequestReleaseOutcome.rate_limited(retry_after_seconds=3.0))
    return requests


async def test_scheduler_defers_a_cooling_down_endpoint_and_catches_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    requests = cooling_down_controller()
    policy = sg.scheduling.RequestPressureAdvisoryPolicy(requests.pressure, endpoint_of)
    assert policy.pressure_signal(A) == "cooldown"
    admission = sg.TaskAdmissionController(capacity=1, policy=policy)
    sink = sg.InMemoryEventSink()
    scheduler = sg.AsyncTaskScheduler(
        two_groups(3, 5), calling_worker(requests), admission=admission, sink=sink
    )
    result = await scheduler.run()
    order = [e.task_id for e in sink.of_kind("task_dispatched")]
    # gb fills the slot during the 3 s cooldown; then ga, which kept its place in the fair
    # order, catches up before gb goes on
    assert order == ["b0", "b1", "b2", "a0", "a1", "a2", "b3", "b4"]
    assert result.elapsed == pytest.approx(8.0)  # the slot never sat idle
    assert result.counts["succeeded"] == 8 and result.admission.active_leases == 0
    assert_no_request_leases(requests)


async def test_scheduler_without_the_policy_idles_through_the_cooldown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    requests = cooling_down_controller()
    scheduler = sg.AsyncTaskScheduler(two_groups(3, 5), calling_worker(requests), capacity=1)
    result = await scheduler.run()
    assert result.elapsed == pytest.approx(11.0)  # a0 held the only slot for the cooldown
    assert result.counts["succeeded"] == 8
    assert_no_request_leases(requests)


async def test_random_pressure_runs_complete_without_leaks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(7)
    # no circuit breaker: trio orders same-instant tasks at random, and an open circuit would
    # fail calls (this test is about leases and completion, not about the breaker)
    requests = request_controller(cooldown_seconds=0.5, circuit_breaker_threshold=None)
    policy = sg.scheduling.RequestPressureAdvisoryPolicy(requests.pressure, endpoint_of)
    admission = sg.TaskAdmissionController(capacity=3, policy=policy)
    tracker = sg.DagCompletionTracker()
    for i in range(40):
        endpoint = rng.choice([A, B, None])
        tracker.add(i, endpoint, group=f"g{i % 5}")

    async def worker(t: sg.SchedulableTask) -> None:
        if t.payload is None:
            await trio.sleep(rng.random())
            return
        lease = await requests.acquire(sg.requests.RequestAdmissionItem(resource=t.payload))
        await trio.sleep(rng.random())
        limited = rng.random() < 0.2
        outcome = (
            sg.requests.RequestReleaseOutcome.rate_limited(retry_after_seconds=0.3)
            if limited
            else sg.requests.RequestReleaseOutcome.success()
        )
        requests.release(lease, outcome)

    result = await sg.AsyncTaskScheduler(tracker, worker, admission=admission).run()
    assert result.counts["succeeded"] == 40
    assert result.admission.active_leases == 0
    assert_no_request_leases(requests)
