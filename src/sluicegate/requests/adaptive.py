"""Request admission: may this concrete provider call go out now?

The layer knows request resources (provider + model + domain), their aggregate static caps,
their adaptive (AIMD) limits and their waiters. It knows nothing of the scheduler, task types
or DAGs. :class:`AdaptiveRequestAdmissionController` is the V1 implementation:

- one AIMD limit per :class:`RequestResourceKey`, in ``[1, effective_max]`` where
  ``effective_max = min(aggregate static cap, clamp)``; the in-flight calls of all domains and
  aliases of one endpoint never exceed its aggregate static cap;
- a weighted fair waiter queue per endpoint (stride scheduling across request groups, oldest
  first on ties); releases hand leases straight to the next waiter;
- optional rate windows, a startup ramp and a circuit breaker, all of which are woken by a
  timer when time alone makes a waiter admissible.

State lives in plain fields: the trio event loop is single-threaded and no method awaits while
the state is inconsistent, so there are no locks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import outcome as _outcome
import trio
from attrs import frozen

from .._internal.clock import now as _now
from .._internal.leases import ReleaseResult
from ..errors import ConfigurationError
from ..events.emitter import EventEmitter
from ..events.schema import RequestEventKind
from ..events.sinks import EventSink
from .admission import (
    OUTCOME_UNEXPECTED,
    RequestAdmissionDecision,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDenialReason,
    RequestReleaseOutcome,
)
from .config import RequestAdmissionConfig, RequestResourceSettings
from .identity import (
    REQUEST_DOMAINS,
    ModelEndpoint,
    ProviderCapPlan,
    ProviderModelKey,
    RequestResourceKey,
    RequestResourceResolver,
)
from .pressure import (
    CircuitState,
    RequestEndpointPressure,
    RequestPressureSnapshot,
    RequestResourcePressure,
)
from .rate_window import RateWindow, RateWindowReservation

if TYPE_CHECKING:
    from trio.lowlevel import Task


_INF: Final = math.inf


# A grant reclaimed because its waiter was cancelled in the same instant: the call was never
# sent, so it used no tokens (its rate-window estimate is given back).
_NEVER_SENT: Final = RequestReleaseOutcome("local_cancelled", actual_tokens=0)


# How many reclaimed lease ids are remembered to diagnose a late release as stale.
_RECLAIMED_REMEMBERED: Final = 4096


_WAITING: Final = 0


_GRANTED: Final = 1


_GONE: Final = 2


_CLOSED: Final = 0


_OPEN: Final = 1


_HALF_OPEN: Final = 2


_CIRCUIT_NAMES: Final[dict[int, CircuitState]] = {
    _CLOSED: "closed",
    _OPEN: "open",
    _HALF_OPEN: "half_open",
}


_COMPACT_AFTER: Final = 32


# Request groups an endpoint remembers before idle ones are forgotten (see _forget_idle_groups).
_IDLE_GROUPS_KEPT: Final = 1024


class _Group:
    """A request group's place in an endpoint's stride scheduler."""

    __slots__ = ("live", "name", "pass_value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pass_value = 0.0
        self.live = 0  # live waiters over all lanes of this group


class _Waiter:
    __slots__ = (
        "deadline",
        "enqueued_at",
        "item",
        "lane",
        "parked",
        "result",
        "seq",
        "state",
        "task",
    )

    def __init__(
        self,
        task: Task,
        item: RequestAdmissionItem,
        lane: _Lane,
        seq: int,
        enqueued_at: float,
        deadline: float,
    ) -> None:
        self.task = task
        self.item = item
        self.lane = lane
        self.seq = seq
        self.enqueued_at = enqueued_at
        self.deadline = deadline
        self.state = _WAITING
        self.parked = False
        self.result: RequestAdmissionLease | RequestAdmissionDenied | None = None


class _Lane:
    """FIFO of one request group's waiters on one resource (lazy deletion of gone ones)."""

    __slots__ = ("dead", "group", "live", "queue", "resource")

    def __init__(self, group: _Group, resource: _Resource) -> None:
        self.group = group
        self.resource = resource
        self.queue: deque[_Waiter] = deque()
        self.live = 0
        self.dead = 0

    def head(self) -> _Waiter:
        queue = self.queue
        while queue[0].state != _WAITING:
            queue.popleft()
            self.dead -= 1
        return queue[0]


def _forget_idle_groups(ep: _Endpoint) -> None:
    """Drop the lanes and groups of request groups with nothing waiting on ``ep``.

    Keeps memory bounded when callers use many short-lived request-group names. A forgotten
    group owes at most one stride (the virtual clock is set to a served group's pass before
    its stride is added), so coming back as a new group gains it at most one turn. Runs when
    a new name arrives and the table has doubled since the last sweep: amortised O(1).
    """
    for r in ep.resources:
        r.lanes = {name: lane for name, lane in r.lanes.items() if lane.live}
    # a group with live waiters has a live lane, so no kept lane points at a dropped group
    ep.groups = {name: group for name, group in ep.groups.items() if group.live}
    ep.forget_at = max(_IDLE_GROUPS_KEPT, 2 * len(ep.groups))


class _Endpoint:
    __slots__ = (
        "forget_at",
        "groups",
        "in_flight",
        "key",
        "lanes",
        "max_in_flight",
        "plan",
        "removed",
        "resources",
        "static_cap",
        "static_cap_override",
        "timed",
        "vclock",
        "waiting",
    )

    def __init__(self, key: ProviderModelKey, plan: ProviderCapPlan | None, static_cap: int):
        self.key = key
        self.plan = plan
        self.static_cap = static_cap
        self.static_cap_override: int | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.waiting = 0
        self.lanes: list[_Lane] = []
        self.groups: dict[str, _Group] = {}
        self.forget_at = _IDLE_GROUPS_KEPT  # group count that triggers _forget_idle_groups
        self.vclock = 0.0
        self.resources: list[_Resource] = []
        self.removed = False
        self.timed = False  # whether any resource may be unblocked by time alone


class _Resource:
    __slots__ = (
        "cancelled_grants",
        "ceiling",
        "circuit",
        "circuit_backoff",
        "circuit_reopens",
        "circuit_until",
        "coalesced",
        "consecutive_rate_limits",
        "cooldown_until",
        "denials",
        "duplicate_releases",
        "effective_max",
        "endpoint",
        "epoch",
        "failures",
        "floor_rate_limits",
        "grants",
        "in_flight",
        "key",
        "lanes",
        "limit",
        "max_in_flight",
        "max_limit",
        "max_waiters",
        "pause_in_cooldown",
        "probe_lease",
        "queue_reported",
        "ramp_start",
        "ramp_target",
        "ramping",
        "rate_limits",
        "released",
        "settings",
        "successes",
        "successes_total",
        "timed",
        "unknown_releases",
        "wait_cancellations",
        "wait_timeouts",
        "waiting",
        "window",
    )

    def __init__(
        self,
        key: RequestResourceKey,
        endpoint: _Endpoint,
        settings: RequestResourceSettings,
        now: float,
    ) -> None:
        self.key = key
        self.endpoint = endpoint
        self.settings = settings
        self.in_flight = 0
        self.waiting = 0
        self.lanes: dict[str, _Lane] = {}
        self.successes = 0  # streak towards the next additive increase
        self.cooldown_until = -_INF
        self.ceiling: int | None = None
        self.consecutive_rate_limits = 0
        self.floor_rate_limits = 0
        self.epoch = 0
        self.circuit = _CLOSED
        self.circuit_until = -_INF
        self.circuit_backoff = settings.circuit_open_seconds
        self.circuit_reopens = 0
        self.probe_lease = 0  # lease id of the half-open probe in flight (0: none)
        self.window: RateWindow | None = None
        self.ramping = False
        self.ramp_start = now
        self.effective_max = endpoint.static_cap
        self.limit = 1
        self.ramp_target = 1
        self.pause_in_cooldown = False
        self.timed = False
        # request_queue_formed was emitted and request_queue_drained not yet (events only)
        self.queue_reported = False
        # counters
        self.grants = self.successes_total = self.rate_limits = self.coalesced = 0
        self.failures = self.released = self.wait_timeouts = self.wait_cancellations = 0
        self.denials = self.duplicate_releases = self.unknown_releases = 0
        self.cancelled_grants = 0
        self.max_in_flight = self.max_waiters = self.max_limit = 0


_generations = itertools.count(1)


@frozen
class RequestPressureReader:
    """Read-only facade over a controller's pressure (cannot acquire, release or configure)."""

    _controller: AdaptiveRequestAdmissionController

    def snapshot(self) -> RequestPressureSnapshot:
        """All resources and endpoints, captured now."""
        return self._controller.pressure_snapshot()

    def resource(self, key: RequestResourceKey) -> RequestResourcePressure | None:
        """One resource, captured now (``None`` if it was never used)."""
        return self._controller.resource_pressure(key)

    def endpoint(self, key: ProviderModelKey) -> RequestEndpointPressure | None:
        """One endpoint, captured now (``None`` if not declared)."""
        return self._controller.endpoint_pressure(key)


def _finite(value: float) -> float | None:
    return None if value == math.inf else value


class AdaptiveRequestAdmissionController:
    """AIMD request admission under per-endpoint aggregate static caps.

    Build it from the declared endpoints (a :class:`RequestResourceResolver` or a sequence of
    :class:`ModelEndpoint`) and a :class:`RequestAdmissionConfig`. Resources (endpoint +
    domain) are registered on first use.

    Checkpoints and cancellation, in the manner of trio's own primitives:

    - :meth:`acquire` is always a checkpoint. Cancelled while waiting, it leaves the queue and
      re-raises ``trio.Cancelled``; no lease is held afterwards. If a lease was handed to it in
      the same instant as the cancellation, that lease is released as ``local_cancelled``
      (counted in ``cancelled_grants``) before ``Cancelled`` propagates.
    - :meth:`try_acquire`, :meth:`release`, :meth:`reconfigure`, :meth:`shutdown` and the
      pressure snapshots are synchronous, never checkpoints, and never wait.
    - Every method that changes state is KI-protected (like trio's own primitives): a
      Ctrl-C cannot land between taking a lease back and handing its slot on.

    Timed state changes (cooldown end when cooldown admission is ``paused``, startup-ramp
    steps, circuit half-open, rate-window slots) wake waiters from a timer system task that the
    controller starts in the running trio run the first time it is needed.
    """

    def __init__(
        self,
        endpoints: RequestResourceResolver | Iterable[ModelEndpoint],
        config: RequestAdmissionConfig | None = None,
        *,
        sink: EventSink | None = None,
    ) -> None:
        resolver = (
            endpoints
            if isinstance(endpoints, RequestResourceResolver)
            else RequestResourceResolver(endpoints)
        )
        self._config = config if config is not None else RequestAdmissionConfig()
        self._config.check_selectors(resolver)
        self._resolver = resolver
        self._emitter = EventEmitter(sink)
        self._generation = next(_generations)
        self._lease_counter = 0
        self._seq = 0
        self._live: dict[
            int, tuple[RequestAdmissionLease, _Resource, RateWindowReservation | None]
        ] = {}
        self._reclaimed: dict[int, None] = {}  # insertion-ordered set, bounded
        self._endpoints: dict[ProviderModelKey, _Endpoint] = {
            plan.key: _Endpoint(plan.key, plan, plan.static_cap) for plan in resolver.cap_plans()
        }
        self._resources: dict[RequestResourceKey, _Resource] = {}
        self._closed = False
        self._unknown_releases = 0
        # timer state (see _arm_timer)
        self._timer_deadline = _INF
        self._timer_scope: trio.CancelScope | None = None
        self._timer_root: Task | None = None
        self._timed_endpoints: set[_Endpoint] = set()
        self._timer_wakeups = 0  # diagnostics: how often the timer fired

    # ----------------------------------------------------------------------------- properties

    @property
    def resolver(self) -> RequestResourceResolver:
        """The alias resolver built from the declared endpoints."""
        return self._resolver

    @property
    def config(self) -> RequestAdmissionConfig:
        return self._config

    @property
    def generation(self) -> int:
        """Token carried by every lease of this controller (foreign leases are diagnosed)."""
        return self._generation

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._closed

    @property
    def emitter(self) -> EventEmitter:
        """The request event stream (shared with the executor so sequences stay gap-free)."""
        return self._emitter

    @property
    def pressure(self) -> RequestPressureReader:
        """Read-only snapshots of every resource and endpoint."""
        return RequestPressureReader(self)

    def __repr__(self) -> str:
        in_flight = sum(ep.in_flight for ep in self._endpoints.values())
        waiting = sum(ep.waiting for ep in self._endpoints.values())
        return (
            f"<AdaptiveRequestAdmissionController {len(self._endpoints)} endpoints, "
            f"{in_flight} in flight, {waiting} waiting>"
        )

    # ----------------------------------------------------------------------------- admission

    @trio.lowlevel.enable_ki_protection
    def try_acquire(self, item: RequestAdmissionItem) -> RequestAdmissionDecision:
        """Take a lease now if one is free, else return a :class:`RequestAdmissionDenied`.

        Never waits and is not a checkpoint. Never overtakes a queued waiter of the same
        resource: with waiters queued the denial is ``would_wait`` with
        ``queued_waiters_ahead``. Other reasons: ``shutdown``, ``unknown_resource``,
        ``circuit_open``, ``too_large``.
        """
        r = self._resources.get(item.resource)
        if r is None:
            r = self._register(item.resource)
            if r is None:
                return self._deny_unregistered(item)
        if self._closed:
            return self._deny(r, item, "shutdown")
        now = trio.current_time()
        self._settle_timed(r.endpoint, now)
        if r.waiting:
            return self._deny(
                r, item, "would_wait", blocked_by="waiters", queued=r.waiting, now=now
            )
        blocked = self._blocked_by(r, item, now)
        if blocked is None:
            lease = self._grant(r, item, now, 0.0)
            if self._emitter.enabled:
                self._emit_acquired(r, lease)
            return lease
        if blocked == "circuit_open":
            return self._deny(
                r,
                item,
                "circuit_open",
                blocked_by=blocked,
                now=now,
                available_after=_finite(r.circuit_until),
            )
        window = r.window
        if window is not None and not window.fits(item.estimated_tokens or 0):
            return self._deny(r, item, "too_large", blocked_by=blocked, now=now)
        return self._deny(
            r,
            item,
            "would_wait",
            blocked_by=blocked,
            now=now,
            available_after=self._available_after(r, item, now),
        )

    @trio.lowlevel.enable_ki_protection
    async def acquire(self, item: RequestAdmissionItem) -> RequestAdmissionLease:
        """Wait for a lease for ``item`` and return it.

        Always a checkpoint. Raises :class:`RequestAdmissionError` when no lease will come:
        ``timeout`` (the queue wait exceeded the item's or resource's timeout),
        ``shutdown``, ``circuit_open`` (the circuit stays open past the deadline, or for
        good), ``queue_full``, ``too_large`` or ``unknown_resource``.

        Cancellation: if cancelled while queued, the waiter is removed and ``trio.Cancelled``
        propagates with no lease held. A lease handed over in the same instant as the
        cancellation is released as ``local_cancelled`` before ``Cancelled`` propagates, so
        a cancelled ``acquire`` never leaves a lease behind.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        r = self._resources.get(item.resource)
        if r is None:
            r = self._register(item.resource)
            if r is None:
                raise RequestAdmissionError(self._deny_unregistered(item))
        if self._closed:
            raise RequestAdmissionError(self._deny(r, item, "shutdown"))
        now = trio.current_time()
        self._settle_timed(r.endpoint, now)
        if not r.waiting and self._blocked_by(r, item, now) is None:
            lease = self._grant(r, item, now, 0.0)
            if self._emitter.enabled:
                self._emit_acquired(r, lease)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return lease
        return await self._wait(r, item, now)

    async def _wait(
        self, r: _Resource, item: RequestAdmissionItem, now: float
    ) -> RequestAdmissionLease:
        settings = r.settings
        timeout = item.timeout if item.timeout is not None else settings.queue_timeout_seconds
        deadline = _INF if timeout is None else now + timeout
        denial = self._hard_denial(r, item, now, deadline)
        if denial is not None:
            raise RequestAdmissionError(denial)
        if timeout is not None and timeout <= 0:
            denied = self._deny(
                r,
                item,
                "timeout",
                blocked_by=self._binding_constraint(r, item, now),
                now=now,
                available_after=self._available_after(r, item, now),
            )
            raise RequestAdmissionError(denied)

        ep = r.endpoint
        waiter = self._enqueue(r, item, now, deadline)
        if self._emitter.enabled:
            if not r.queue_reported:
                # Not "r.waiting == 1": a waiter that left by cancellation is taken out of the
                # queue at once, but the queue is reported drained only when its task runs.
                r.queue_reported = True
                self._emit("request_queue_formed", r, request_group=item.request_group)
            self._emit(
                "request_wait_started",
                r,
                request_group=item.request_group,
                diagnostics={"waiters": r.waiting, "in_flight": r.in_flight, "limit": r.limit},
            )
        # Another lane's head may be blocked only by its own tokens while this one fits, and a
        # time-blocked resource needs its timer armed: one dispatch settles both. Behind an
        # existing head of its own lane (or alone and just found blocked), with no timed
        # state, this waiter cannot change what the last dispatch decided: skip it.
        if r.timed or (waiter.lane.live == 1 and len(ep.lanes) > 1):
            self._dispatch(ep, now)
        if waiter.state == _GRANTED:
            await trio.lowlevel.cancel_shielded_checkpoint()
            result = waiter.result
        else:

            def abort(_: Any) -> trio.lowlevel.Abort:
                # Leave the queue at once so no grant can land on a task that is about to
                # raise Cancelled; the task itself re-dispatches and reports once it runs.
                self._remove_waiter(waiter)
                return trio.lowlevel.Abort.SUCCEEDED

            waiter.parked = True
            try:
                if deadline == _INF:
                    result = await trio.lowlevel.wait_task_rescheduled(abort)
                else:
                    with trio.CancelScope(deadline=deadline) as scope:
                        result = await trio.lowlevel.wait_task_rescheduled(abort)
                    if scope.cancelled_caught:
                        raise RequestAdmissionError(self._after_timeout(r, item))
            except BaseException as exc:
                if waiter.state == _GONE and not isinstance(exc, RequestAdmissionError):
                    self._after_cancel(r, item)
                raise
        if isinstance(result, RequestAdmissionDenied):
            if self._emitter.enabled:
                self._emit(
                    "request_acquire_denied",
                    r,
                    request_group=item.request_group,
                    reason=result.reason,
                )
            raise RequestAdmissionError(result)
        assert result is not None
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            if self._emitter.enabled:
                self._emit_acquired(r, result)  # every grant reads acquired -> released
            self._reclaim_cancelled_grant(r, result)
            if self._emitter.enabled:
                self._emit("request_wait_cancelled", r, request_group=item.request_group)
            raise
        if self._emitter.enabled:
            self._emit(
                "request_wait_completed",
                r,
                request_group=item.request_group,
                lease_id=result.lease_id,
                diagnostics={"waited": result.waited},
            )
            self._emit_acquired(r, result)
        return result

    def _after_timeout(self, r: _Resource, item: RequestAdmissionItem) -> RequestAdmissionDenied:
        now = trio.current_time()
        r.wait_timeouts += 1
        if r.endpoint.waiting:
            self._dispatch(r.endpoint, now)
        denied = self._deny(
            r,
            item,
            "timeout",
            blocked_by=self._binding_constraint(r, item, now),
            now=now,
            available_after=self._available_after(r, item, now),
            count=False,
        )
        if self._emitter.enabled:
            self._emit(
                "request_wait_timeout",
                r,
                request_group=item.request_group,
                reason=denied.blocked_by,
            )
            self._emit_drained(r)
        return denied

    def _after_cancel(self, r: _Resource, item: RequestAdmissionItem) -> None:
        r.wait_cancellations += 1
        if r.endpoint.waiting:
            self._dispatch(r.endpoint, trio.current_time())
        if self._emitter.enabled:
            self._emit("request_wait_cancelled", r, request_group=item.request_group)
            self._emit_drained(r)

    def _reclaim_cancelled_grant(self, r: _Resource, lease: RequestAdmissionLease) -> None:
        r.cancelled_grants += 1
        reclaimed = self._reclaimed
        reclaimed[lease.lease_id] = None
        if len(reclaimed) > _RECLAIMED_REMEMBERED:  # remember the newest ids only
            del reclaimed[next(iter(reclaimed))]
        self._release_held(lease, _NEVER_SENT, self._live.pop(lease.lease_id))
        if self._emitter.enabled:
            self._emit(
                "request_release_diagnostic",
                r,
                lease_id=lease.lease_id,
                request_group=lease.item.request_group,
                reason="cancelled_grant",
                outcome="local_cancelled",
            )

    def _hard_denial(
        self, r: _Resource, item: RequestAdmissionItem, now: float, deadline: float
    ) -> RequestAdmissionDenied | None:
        """Denials that waiting cannot fix, decided before queueing."""
        if r.circuit == _OPEN and (r.circuit_until == _INF or r.circuit_until > deadline):
            return self._deny(
                r,
                item,
                "circuit_open",
                blocked_by="circuit_open",
                now=now,
                available_after=_finite(r.circuit_until),
            )
        window = r.window
        if window is not None and not window.fits(item.estimated_tokens or 0):
            return self._deny(r, item, "too_large", blocked_by="rate_window_tokens", now=now)
        max_waiters = r.settings.max_waiters
        if max_waiters is not None and r.waiting >= max_waiters:
            return self._deny(
                r, item, "queue_full", blocked_by="waiters", now=now, queued=r.waiting
            )
        return None

    # ----------------------------------------------------------------------------- release

    @trio.lowlevel.enable_ki_protection
    def release(
        self, lease: RequestAdmissionLease, outcome: RequestReleaseOutcome
    ) -> ReleaseResult:
        """Return ``lease`` with the outcome of its call. Never raises, never a checkpoint.

        Only ``rate_limited`` decreases the limit and starts a cooldown; ``success`` counts
        towards the next increase (outside cooldown); other outcomes only free the slot. A
        duplicate, stale, wrong-generation or unknown lease frees nothing and is reported in
        the result (and counted in the pressure leak counters).
        """
        try:
            lease_id = lease.lease_id
            if lease.generation != self._generation:
                return self._diagnose(lease, "wrong_generation")
            held = self._live.pop(lease_id, None)
            if held is None:
                if lease_id in self._reclaimed:
                    return self._diagnose(lease, "stale_lease")
                if 0 < lease_id <= self._lease_counter:
                    return self._diagnose(lease, "duplicate")
                return self._diagnose(lease, "unknown_lease")
            if held[0] is not lease and held[0] != lease:
                self._live[lease_id] = held  # a forged copy must not free the real lease
                return self._diagnose(lease, "stale_lease")
            error = self._release_held(lease, outcome, held)
            if error is None:
                return ReleaseResult(released=True, reason="released", lease_id=lease_id)
            return ReleaseResult(
                released=True,
                reason="released",
                lease_id=lease_id,
                diagnostics={"invalid_outcome": repr(outcome), "error": repr(error)},
            )
        except Exception as exc:  # release never raises; report instead
            return ReleaseResult(
                released=False,
                reason="unknown_lease",
                lease_id=getattr(lease, "lease_id", -1),
                diagnostics={"error": repr(exc)},
            )

    def _release_held(
        self,
        lease: RequestAdmissionLease,
        outcome: RequestReleaseOutcome,
        held: tuple[RequestAdmissionLease, _Resource, RateWindowReservation | None],
    ) -> Exception | None:
        """Free the slot, apply the outcome, hand the slot on. Returns the error of an outcome
        that could not be read (the slot is freed all the same, as ``unexpected_exception``)."""
        r = held[1]
        ep = r.endpoint
        r.in_flight -= 1
        ep.in_flight -= 1
        r.released += 1
        now = _now()
        prev_limit = r.limit
        prev_circuit = r.circuit
        prev_ceiling = r.ceiling
        error: Exception | None = None
        try:  # costs nothing unless it raises
            kind = outcome.kind
            entry = held[2]
            if entry is not None:
                tokens = outcome.actual_tokens
                if tokens is None and kind == "rate_limited":
                    # A rejected call used no tokens; it still counts as a request (providers
                    # count rejected requests against their per-minute limit).
                    tokens = 0
                entry.window.settle(entry, tokens)
            if kind == "success":
                self._on_success(r, now)
            elif kind == "rate_limited":
                self._on_rate_limited(r, lease, outcome, now)
            else:
                if kind == "provider_failure":
                    # A non-429 answer ends a rate-limit streak (429 -> 500 -> 429: two streaks).
                    r.failures += 1
                    r.consecutive_rate_limits = 0
                    r.floor_rate_limits = 0
                elif kind == "provider_timeout":
                    r.failures += 1
                if lease.probe and lease.lease_id == r.probe_lease:
                    r.probe_lease = 0  # no verdict: let another probe go
        except Exception as exc:
            # An outcome that cannot be read (a wrong type, a non-numeric field) must not keep
            # the slot from the next waiter: the call counts as unexpected_exception, AIMD
            # learns nothing from it, and a probe gives no verdict.
            error = exc
            outcome = OUTCOME_UNEXPECTED
            if lease.probe and lease.lease_id == r.probe_lease:
                r.probe_lease = 0
        if ep.waiting:
            self._dispatch(ep, now)
        if self._emitter.enabled:
            self._emit_release(r, lease, outcome, prev_limit, prev_circuit, prev_ceiling)
        return error

    def _diagnose(
        self,
        lease: Any,
        reason: Literal["duplicate", "stale_lease", "wrong_generation", "unknown_lease"],
    ) -> ReleaseResult:
        item = getattr(lease, "item", None)
        key = getattr(item, "resource", None)
        r = self._resources.get(key) if isinstance(key, RequestResourceKey) else None
        if r is not None and lease.generation == self._generation:
            if reason == "duplicate":
                r.duplicate_releases += 1
            else:
                r.unknown_releases += 1
        else:
            self._unknown_releases += 1
        lease_id = getattr(lease, "lease_id", -1)
        diagnostics: dict[str, Any] = {
            "lease_generation": getattr(lease, "generation", None),
            "controller_generation": self._generation,
        }
        if self._emitter.enabled:
            self._emitter.request(
                "request_release_diagnostic",
                provider=getattr(key, "provider", None),
                model_id=getattr(key, "model_id", None),
                domain=getattr(key, "domain", None),
                lease_id=lease_id if isinstance(lease_id, int) else None,
                reason=reason,
                diagnostics=diagnostics,
            )
        return ReleaseResult(
            released=False,
            reason=reason,
            lease_id=lease_id if isinstance(lease_id, int) else -1,
            diagnostics=diagnostics,
        )

    # ----------------------------------------------------------------------------- AIMD

    def _on_success(self, r: _Resource, now: float) -> None:
        r.successes_total += 1
        r.consecutive_rate_limits = 0
        r.floor_rate_limits = 0
        if r.circuit != _CLOSED:
            self._close_circuit(r)
        if r.ramping or now < r.cooldown_until:
            return  # the ramp owns the limit; no growth during cooldown
        limit = r.limit
        emax = r.effective_max
        if limit >= emax:
            r.successes = 0
            return
        r.successes += 1
        settings = r.settings
        needed = settings.successes_until_increase
        ceiling = r.ceiling
        hold = settings.ceiling_hold_rounds
        cautious = ceiling is not None and hold > 0 and limit >= ceiling - 1
        if cautious:
            # Just below the ceiling that produced the last 429: hold about `hold` round trips
            # per step so the limit sits near the true capacity instead of sawing under it.
            needed = max(needed, math.ceil(hold * limit))
        if r.successes < needed:
            return
        r.successes = 0
        if ceiling is None or hold <= 0:
            new = min(emax, limit + settings.increase_step)
        elif not cautious:
            new = min(emax, limit + settings.increase_step, ceiling - 1)
        else:
            new = min(emax, limit + 1)
            if new > ceiling:
                r.ceiling = None  # held above the old ceiling for a full period: it is stale
        r.limit = new
        if new > r.max_limit:
            r.max_limit = new

    def _on_rate_limited(
        self, r: _Resource, lease: RequestAdmissionLease, outcome: RequestReleaseOutcome, now: float
    ) -> None:
        retry_after = outcome.retry_after_seconds
        # Read (and check) the hint before anything changes: a malformed one raises here.
        if retry_after is not None and not 0 < retry_after < _INF:
            retry_after = None
        r.rate_limits += 1
        r.consecutive_rate_limits += 1
        r.successes = 0
        settings = r.settings
        until = now + (retry_after if retry_after is not None else settings.cooldown_seconds)
        if until > r.cooldown_until:
            r.cooldown_until = until
        if r.pause_in_cooldown:
            self._mark_timed(r)
        if lease.probe and lease.lease_id == r.probe_lease:
            # Only the current probe gives a verdict: a probe from before the circuit closed
            # (a success or reset_circuit) is an ordinary 429 of a closed circuit.
            r.probe_lease = 0
            self._reopen_circuit(r, now, retry_after)
            return
        if r.circuit != _CLOSED:
            return  # a straggler from before the circuit opened: the circuit already reacted
        if settings.coalesce_rate_limits and lease.rate_limit_epoch != r.epoch:
            r.coalesced += 1  # admitted before the last decrease: same storm, no second cut
            return
        if r.ramping:
            self._refresh_ramp(r, now)
            r.ramping = False  # a rate limit aborts the startup ramp
            self._update_timed(r)
        prev = r.limit
        # The epsilon keeps decimal factors exact: 90 * 0.7 is 62.99999999999999 in binary.
        r.limit = max(1, math.floor(prev * settings.decrease_factor + 1e-9))
        r.ceiling = prev
        r.epoch += 1
        threshold = settings.circuit_breaker_threshold
        if prev == 1 and threshold is not None:
            r.floor_rate_limits += 1
            if r.floor_rate_limits >= threshold:
                self._open_circuit(r, now, retry_after)

    # ----------------------------------------------------------------------------- circuit

    def _open_circuit(self, r: _Resource, now: float, retry_after: float | None) -> None:
        r.circuit = _OPEN
        r.circuit_reopens = 0
        r.circuit_backoff = r.settings.circuit_open_seconds
        r.circuit_until = now + max(r.circuit_backoff, retry_after or 0.0)
        self._mark_timed(r)
        self._deny_waiters_past(r, r.circuit_until)

    def _reopen_circuit(self, r: _Resource, now: float, retry_after: float | None) -> None:
        settings = r.settings
        r.circuit_reopens += 1
        r.circuit = _OPEN
        max_reopens = settings.circuit_max_reopens
        if max_reopens is not None and r.circuit_reopens > max_reopens:
            r.circuit_until = _INF  # stays open: only reset_circuit() or reconfigure() closes it
        else:
            r.circuit_backoff = min(
                settings.circuit_max_open_seconds,
                r.circuit_backoff * settings.circuit_backoff_multiplier,
            )
            r.circuit_until = now + max(r.circuit_backoff, retry_after or 0.0)
        self._mark_timed(r)
        self._deny_waiters_past(r, r.circuit_until)

    def _close_circuit(self, r: _Resource) -> None:
        r.circuit = _CLOSED
        r.probe_lease = 0
        r.floor_rate_limits = 0
        r.circuit_reopens = 0
        r.circuit_backoff = r.settings.circuit_open_seconds
        r.circuit_until = -_INF
        self._update_timed(r)

    def _deny_waiters_past(self, r: _Resource, until: float) -> None:
        """Waiters whose deadline comes before the circuit can close learn it now."""
        for lane in list(r.lanes.values()):
            for waiter in list(lane.queue):
                if waiter.state == _WAITING and (until == _INF or waiter.deadline < until):
                    self._reject_waiter(
                        waiter,
                        "circuit_open",
                        blocked_by="circuit_open",
                        available_after=_finite(until),
                    )

    # ----------------------------------------------------------------------------- ramp

    def _refresh_ramp(self, r: _Resource, now: float) -> None:
        span = r.settings.startup_ramp_seconds
        elapsed = now - r.ramp_start
        if elapsed >= span:
            new = r.ramp_target
            r.ramping = False
            self._update_timed(r)
        else:
            # tiny epsilon: the timer fires at the computed step instant, float rounding
            # must not leave the limit one below and re-arm the timer at the same time
            new = 1 + int((r.ramp_target - 1) * elapsed / span + 1e-9)
        new = min(new, r.effective_max)
        if new > r.limit:
            prev = r.limit
            r.limit = new
            if new > r.max_limit:
                r.max_limit = new
            if self._emitter.enabled:
                self._emit(
                    "request_limit_increased",
                    r,
                    limit=new,
                    previous_limit=prev,
                    reason="startup_ramp",
                )

    def _ramp_next_at(self, r: _Resource, now: float) -> float:
        target = r.ramp_target
        at = r.ramp_start + r.settings.startup_ramp_seconds * r.limit / (target - 1)
        return at if at > now else now + 1e-6

    # ----------------------------------------------------------------------------- checks

    def _blocked_by(self, r: _Resource, item: RequestAdmissionItem, now: float) -> str | None:
        """``None`` if ``item`` may take a lease on ``r`` now, else the binding constraint."""
        if r.circuit != _CLOSED:
            if r.circuit == _OPEN:
                if now < r.circuit_until:
                    return "circuit_open"
                r.circuit = _HALF_OPEN
                if self._emitter.enabled:
                    self._emit(
                        "request_effective_cap_changed", r, limit=1, reason="circuit_half_open"
                    )
            if r.probe_lease:
                return "circuit_probe"
        if r.ramping:
            self._refresh_ramp(r, now)
        if r.in_flight >= r.limit:
            return "limit"
        ep = r.endpoint
        if ep.in_flight >= ep.static_cap:
            return "aggregate_cap"
        if r.pause_in_cooldown and now < r.cooldown_until:
            return "cooldown"
        window = r.window
        if window is not None:
            return window.blocked_by(now, item.estimated_tokens or 0)
        return None

    def _binding_constraint(
        self, r: _Resource, item: RequestAdmissionItem, now: float
    ) -> str | None:
        """What keeps ``item`` waiting: a constraint of ``r``, else the waiters queued ahead
        (FIFO within a group, e.g. behind a head whose token estimate does not fit yet)."""
        blocked = self._blocked_by(r, item, now)
        if blocked is None and r.waiting:
            return "waiters"
        return blocked

    def _available_after(
        self, r: _Resource, item: RequestAdmissionItem, now: float
    ) -> float | None:
        """When time alone makes ``item`` admissible, if it does; ``None`` if it needs a
        release (or is admissible now)."""
        at = self._next_change_at(r, item, now)
        return None if at == _INF else at

    def _next_change_at(self, r: _Resource, item: RequestAdmissionItem, now: float) -> float:
        if not r.timed:
            return _INF
        # Only instants strictly after `now` count. The lazily updated state (ramp limit,
        # open -> half-open) may be stale here when no dispatch looked at this resource (e.g.
        # the aggregate cap is full): refresh it instead of reporting a change already due,
        # which would make the timer fire again and again without time advancing.
        at = _INF
        if r.circuit == _OPEN and r.circuit_until > now:
            at = r.circuit_until
        if r.ramping:
            self._refresh_ramp(r, now)
            if r.ramping and r.in_flight >= r.limit:
                at = min(at, self._ramp_next_at(r, now))
        if r.pause_in_cooldown and now < r.cooldown_until:
            at = min(at, r.cooldown_until)
        window = r.window
        if window is not None and window.blocked_by(now, item.estimated_tokens or 0):
            at = min(at, window.available_at(now, item.estimated_tokens or 0))
        return at

    def _update_timed(self, r: _Resource) -> None:
        r.timed = r.ramping or r.circuit != _CLOSED or r.window is not None or r.pause_in_cooldown
        ep = r.endpoint
        ep.timed = any(other.timed for other in ep.resources) or r.timed

    def _mark_timed(self, r: _Resource) -> None:
        r.timed = True
        r.endpoint.timed = True

    # ----------------------------------------------------------------------------- grants

    def _grant(
        self, r: _Resource, item: RequestAdmissionItem, now: float, waited: float
    ) -> RequestAdmissionLease:
        self._lease_counter += 1
        lease_id = self._lease_counter
        tokens = item.estimated_tokens or 0
        window = r.window
        entry = window.reserve(now, tokens) if window is not None else None
        probe = r.circuit == _HALF_OPEN
        if probe:
            r.probe_lease = lease_id
        lease = RequestAdmissionLease(
            lease_id, item, now, self._generation, tokens, r.limit, waited, r.epoch, probe
        )
        r.in_flight += 1
        r.grants += 1
        ep = r.endpoint
        ep.in_flight += 1
        if r.in_flight > r.max_in_flight:
            r.max_in_flight = r.in_flight
        if ep.in_flight > ep.max_in_flight:
            ep.max_in_flight = ep.in_flight
        self._live[lease_id] = (lease, r, entry)
        return lease

    def _enqueue(
        self, r: _Resource, item: RequestAdmissionItem, now: float, deadline: float
    ) -> _Waiter:
        ep = r.endpoint
        name = item.request_group
        lane = r.lanes.get(name)
        if lane is None:
            group = ep.groups.get(name)
            if group is None:
                if len(ep.groups) >= ep.forget_at:
                    _forget_idle_groups(ep)
                group = ep.groups[name] = _Group(name)
            lane = r.lanes[name] = _Lane(group, r)
        group = lane.group
        if group.live == 0 and group.pass_value < ep.vclock:
            group.pass_value = ep.vclock  # a group that was idle gets no credit for it
        if lane.live == 0:
            ep.lanes.append(lane)
        self._seq += 1
        waiter = _Waiter(trio.lowlevel.current_task(), item, lane, self._seq, now, deadline)
        lane.queue.append(waiter)
        lane.live += 1
        group.live += 1
        r.waiting += 1
        ep.waiting += 1
        if r.waiting > r.max_waiters:
            r.max_waiters = r.waiting
        return waiter

    def _remove_waiter(self, waiter: _Waiter) -> None:
        """Take a waiting waiter out of its lane (lazily: it is skipped when it reaches the
        head). Synchronous and event-free, so it is safe inside a trio abort callback."""
        waiter.state = _GONE
        lane = waiter.lane
        r = lane.resource
        ep = r.endpoint
        lane.live -= 1
        lane.group.live -= 1
        r.waiting -= 1
        ep.waiting -= 1
        if lane.live == 0:
            lane.queue.clear()
            lane.dead = 0
            ep.lanes.remove(lane)
        else:
            lane.dead += 1
            if lane.dead > _COMPACT_AFTER and lane.dead > lane.live:
                lane.queue = deque(w for w in lane.queue if w.state == _WAITING)
                lane.dead = 0

    def _reject_waiter(
        self,
        waiter: _Waiter,
        reason: RequestDenialReason,
        *,
        blocked_by: str | None = None,
        available_after: float | None = None,
    ) -> None:
        r = waiter.lane.resource
        self._remove_waiter(waiter)
        r.denials += 1
        denied = RequestAdmissionDenied(
            item=waiter.item, reason=reason, available_after=available_after, blocked_by=blocked_by
        )
        waiter.result = denied
        if waiter.parked:
            trio.lowlevel.reschedule(waiter.task, _outcome.Value(denied))
        if self._emitter.enabled:
            self._emit_drained(r)

    def _dispatch(self, ep: _Endpoint, now: float) -> None:
        """Hand free capacity to waiters, fairest first, until nobody admissible is left.

        Picks, among lanes whose head waiter is admissible, the group with the lowest stride
        pass value (oldest waiter on ties). Each grant goes straight to that waiter: no herd.
        """
        lanes = ep.lanes
        while ep.waiting and ep.in_flight < ep.static_cap:
            if len(lanes) == 1:
                best = lanes[0]
                head = best.head()
                if self._blocked_by(best.resource, head.item, now) is not None:
                    break
            else:
                best_lane: _Lane | None = None
                best_pass = _INF
                best_seq = 0
                for lane in lanes:
                    head = lane.head()
                    pass_value = lane.group.pass_value
                    if best_lane is not None and (
                        pass_value > best_pass or (pass_value == best_pass and head.seq > best_seq)
                    ):
                        continue
                    if self._blocked_by(lane.resource, head.item, now) is not None:
                        continue
                    best_lane, best_pass, best_seq = lane, pass_value, head.seq
                if best_lane is None:
                    break
                best = best_lane
            self._grant_head(ep, best, now)
        if ep.waiting and ep.timed:
            self._arm_for(ep, now)

    def _settle_timed(self, ep: _Endpoint, now: float) -> None:
        """Grant waiters that time alone made admissible before a newcomer is considered.

        The timer task may not have run yet at the instant a cooldown, ramp step, reopening
        or window slot came due; without this a newcomer could take the slot they are owed.
        """
        if ep.waiting and ep.timed:
            self._dispatch(ep, now)

    def _grant_head(self, ep: _Endpoint, lane: _Lane, now: float) -> None:
        waiter = lane.head()
        lane.queue.popleft()
        r = lane.resource
        group = lane.group
        lane.live -= 1
        group.live -= 1
        r.waiting -= 1
        ep.waiting -= 1
        if group.pass_value > ep.vclock:
            ep.vclock = group.pass_value
        group.pass_value += 1.0 / waiter.item.weight
        if lane.live == 0:
            lane.queue.clear()
            lane.dead = 0
            ep.lanes.remove(lane)
        lease = self._grant(r, waiter.item, now, now - waiter.enqueued_at)
        waiter.state = _GRANTED
        waiter.result = lease
        if waiter.parked:
            trio.lowlevel.reschedule(waiter.task, _outcome.Value(lease))
        if not r.waiting and self._emitter.enabled:
            self._emit_drained(r)

    # ----------------------------------------------------------------------------- timer

    def _arm_for(self, ep: _Endpoint, now: float) -> None:
        """If time alone can unblock a waiting lane of ``ep``, make the timer fire then."""
        at = _INF
        for lane in ep.lanes:
            r = lane.resource
            if r.timed:
                at = min(at, self._next_change_at(r, lane.head().item, now))
        if at < _INF:
            if at <= now:
                # Never re-arm at an instant that has already passed: that would spin the
                # timer without letting time advance. Every "next change" is strictly later
                # by construction; this is a guard against float rounding, not a mechanism.
                at = now + 1e-6
            self._timed_endpoints.add(ep)
            self._arm_timer(at)

    def _arm_timer(self, at: float) -> None:
        root = trio.lowlevel.current_root_task()
        if self._timer_root is not root or self._timer_scope is None:
            # First timed wait in this trio run (or the last run's timer died with its run).
            self._timer_root = root
            self._timer_deadline = at
            self._timer_scope = trio.CancelScope(deadline=at)
            trio.lowlevel.spawn_system_task(
                self._timer_loop, self._timer_scope, name="sluicegate-request-admission-timer"
            )
        elif at < self._timer_deadline:
            self._timer_deadline = at
            self._timer_scope.deadline = at

    async def _timer_loop(self, scope: trio.CancelScope) -> None:
        try:
            while not self._closed:
                with scope:
                    await trio.sleep_forever()
                if self._closed:
                    break
                now = trio.current_time()
                self._timer_wakeups += 1
                self._timer_deadline = _INF
                scope = trio.CancelScope(deadline=_INF)
                self._timer_scope = scope
                due = list(self._timed_endpoints)
                self._timed_endpoints.clear()
                for ep in due:
                    self._dispatch(ep, now)  # re-arms (and re-adds ep) if still time-blocked
        finally:
            if self._timer_scope is scope:
                self._timer_scope = None
                self._timer_deadline = _INF

    # ----------------------------------------------------------------------------- registry

    def _register(self, key: RequestResourceKey) -> _Resource | None:
        if not isinstance(key, RequestResourceKey) or key.domain not in REQUEST_DOMAINS:
            return None
        ep = self._endpoints.get(key.provider_model)
        if ep is None or ep.removed:
            return None
        now = _now()
        settings = self._config.settings_for(key, self._resolver)
        r = _Resource(key, ep, settings, now)
        self._apply_settings(r, settings, fresh=True)
        self._resources[key] = r
        ep.resources.append(r)
        if self._emitter.enabled:
            self._emit(
                "request_resource_registered",
                r,
                limit=r.limit,
                diagnostics={
                    "effective_max": r.effective_max,
                    "static_cap": ep.static_cap,
                    "aliases": list(ep.plan.aliases) if ep.plan else [],
                },
            )
        return r

    def _apply_settings(
        self, r: _Resource, settings: RequestResourceSettings, *, fresh: bool
    ) -> None:
        r.settings = settings
        r.pause_in_cooldown = settings.cooldown_admission == "paused"
        ep = r.endpoint
        clamp = settings.clamp
        r.effective_max = ep.static_cap if clamp is None else min(ep.static_cap, clamp)
        if fresh:
            initial = settings.initial_limit
            target = r.effective_max if initial is None else min(initial, r.effective_max)
            r.ramp_target = target
            if settings.startup_ramp_seconds > 0 and target > 1:
                r.ramping = True
                r.limit = 1
            else:
                r.limit = target
            r.max_limit = r.limit
        else:
            if r.limit > r.effective_max:
                r.limit = r.effective_max
            if r.ramping:
                r.ramp_target = min(r.ramp_target, r.effective_max)
                if r.limit >= r.ramp_target:
                    r.ramping = False  # a lower effective max ended the ramp: nothing to climb
        if settings.has_rate_window:
            seconds = settings.effective_window_seconds
            if r.window is None:
                r.window = RateWindow(
                    settings.requests_per_window, settings.tokens_per_window, seconds
                )
            else:
                r.window.reconfigure(
                    requests_per_window=settings.requests_per_window,
                    tokens_per_window=settings.tokens_per_window,
                    window_seconds=seconds,
                )
        else:
            r.window = None
        self._update_timed(r)

    # ----------------------------------------------------------------------------- control

    @trio.lowlevel.enable_ki_protection
    def reconfigure(
        self,
        config: RequestAdmissionConfig | None = None,
        *,
        endpoints: Sequence[ModelEndpoint] | RequestResourceResolver | None = None,
        static_caps: Mapping[ProviderModelKey, int] | None = None,
        limits: Mapping[RequestResourceKey, int] | None = None,
    ) -> None:
        """Apply live changes; everything is validated before anything changes.

        ``endpoints`` replaces the declared endpoints (new aliases and caps; endpoints no
        longer declared admit nothing new); ``config`` replaces the settings of every
        resource; ``static_caps`` overrides aggregate caps; ``limits`` sets current AIMD
        limits (clamped to ``[1, effective_max]``, ending any startup ramp). Lowering a cap or
        limit never revokes leases in flight: new admissions wait until in-flight drops.
        Raising one admits waiters at once. Waiters whose estimate no longer fits a lowered
        token quota are denied ``too_large``; circuits open for good, or whose breaker is now
        disabled, are closed. Not a checkpoint.
        """
        resolver = self._resolver
        if endpoints is not None:
            resolver = (
                endpoints
                if isinstance(endpoints, RequestResourceResolver)
                else RequestResourceResolver(endpoints)
            )
        new_config = config if config is not None else self._config
        new_config.check_selectors(resolver)
        for key, cap in (static_caps or {}).items():
            if key not in resolver:
                raise ConfigurationError(
                    f"static_caps[{key}]",
                    "unknown endpoint",
                    "use a provider/model declared by a ModelEndpoint",
                )
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise ConfigurationError(
                    f"static_caps[{key}]",
                    f"must be an integer >= 1, got {cap!r}",
                    "use a cap of at least 1",
                )
        for rkey, value in (limits or {}).items():
            if rkey not in self._resources and rkey not in resolver:
                raise ConfigurationError(
                    f"limits[{rkey}]", "unknown resource", "use a resource of a declared endpoint"
                )
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(
                    f"limits[{rkey}]",
                    f"must be an integer >= 1, got {value!r}",
                    "use a limit of at least 1",
                )

        before = {r.key: (r.effective_max, r.limit) for r in self._resources.values()}
        if endpoints is not None:
            self._resolver = resolver
            plans = {plan.key: plan for plan in resolver.cap_plans()}
            for key, ep in self._endpoints.items():
                plan = plans.get(key)
                ep.removed = plan is None
                if plan is not None:
                    ep.plan = plan
            for key, plan in plans.items():
                if key not in self._endpoints:
                    self._endpoints[key] = _Endpoint(key, plan, plan.static_cap)
        for key, cap in (static_caps or {}).items():
            self._endpoints[resolver.resolve_endpoint(key)].static_cap_override = cap
        for ep in self._endpoints.values():
            base = ep.plan.static_cap if ep.plan is not None else ep.static_cap
            ep.static_cap = ep.static_cap_override or base
        self._config = new_config
        circuits_closed: list[_Resource] = []
        for r in self._resources.values():
            self._apply_settings(r, new_config.settings_for(r.key, resolver), fresh=False)
            if r.circuit != _CLOSED and (
                r.circuit_until == _INF or r.settings.circuit_breaker_threshold is None
            ):
                # Open for good (max reopens reached) or the breaker is now disabled: a
                # reconfigure is the operator's signal to try again.
                self._close_circuit(r)
                circuits_closed.append(r)
            window = r.window
            if r.waiting and window is not None and window.tokens_per_window is not None:
                # A lowered token quota must not strand waiters that can never fit any more.
                for lane in list(r.lanes.values()):
                    for waiter in list(lane.queue):
                        tokens = waiter.item.estimated_tokens or 0
                        if waiter.state == _WAITING and not window.fits(tokens):
                            self._reject_waiter(
                                waiter, "too_large", blocked_by="rate_window_tokens"
                            )
        for rkey, value in (limits or {}).items():
            r_or_none = self._resources.get(rkey) or self._register(rkey)
            if r_or_none is not None:
                r_or_none.ramping = False
                r_or_none.successes = 0
                r_or_none.limit = max(1, min(value, r_or_none.effective_max))
                r_or_none.max_limit = max(r_or_none.max_limit, r_or_none.limit)
                self._update_timed(r_or_none)
        now = _now()
        for ep in self._endpoints.values():
            if ep.removed and ep.resources:
                # Retire the states: new acquires no longer find them (unknown_resource),
                # while leases in flight still release through the state they point to.
                for r in ep.resources:
                    del self._resources[r.key]
                    for lane in list(r.lanes.values()):
                        for waiter in list(lane.queue):
                            if waiter.state == _WAITING:
                                self._reject_waiter(waiter, "unknown_resource")
                ep.resources = []
        if self._emitter.enabled:
            for r in circuits_closed:
                self._emit(
                    "request_effective_cap_changed", r, limit=r.limit, reason="circuit_closed"
                )
            for r in self._resources.values():
                old_max, old_limit = before.get(r.key, (r.effective_max, r.limit))
                if old_max != r.effective_max:
                    self._emit(
                        "request_effective_cap_changed",
                        r,
                        limit=r.effective_max,
                        previous_limit=old_max,
                        reason="reconfigured",
                    )
                if old_limit != r.limit:
                    kind: RequestEventKind = (
                        "request_limit_increased"
                        if r.limit > old_limit
                        else "request_limit_decreased"
                    )
                    self._emit(
                        kind, r, limit=r.limit, previous_limit=old_limit, reason="reconfigured"
                    )
        self._dispatch_all(now)

    @trio.lowlevel.enable_ki_protection
    def reset_circuit(self, key: RequestResourceKey) -> None:
        """Close ``key``'s circuit by hand (e.g. after the provider's quota was raised)."""
        r = self._resources.get(key)
        if r is None or r.circuit == _CLOSED:
            return
        self._close_circuit(r)
        if self._emitter.enabled:
            self._emit("request_effective_cap_changed", r, limit=r.limit, reason="circuit_closed")
        if r.endpoint.waiting:
            self._dispatch(r.endpoint, _now())

    def _dispatch_all(self, now: float) -> None:
        for ep in self._endpoints.values():
            if ep.waiting:
                # outside trio nobody can be waiting, but a dispatch may not be possible
                with contextlib.suppress(RuntimeError):
                    self._dispatch(ep, now)

    @trio.lowlevel.enable_ki_protection
    def shutdown(self) -> None:
        """Stop admitting: every waiter and every later acquire gets a ``shutdown`` denial.

        Leases in flight stay valid and must still be released. Idempotent; not a checkpoint.
        """
        if self._closed:
            return
        self._closed = True
        for ep in self._endpoints.values():
            for lane in list(ep.lanes):
                for waiter in list(lane.queue):
                    if waiter.state == _WAITING:
                        self._reject_waiter(waiter, "shutdown")
        if self._timer_scope is not None:
            self._timer_scope.cancel()

    # ----------------------------------------------------------------------------- snapshots

    def pressure_snapshot(self) -> RequestPressureSnapshot:
        """Every registered resource and declared endpoint, captured now (read-only)."""
        now = _now()
        return RequestPressureSnapshot(
            captured_at=now,
            resources=tuple(self._resource_snapshot(r, now) for r in self._resources.values()),
            endpoints=tuple(self._endpoint_snapshot(ep) for ep in self._endpoints.values()),
            unknown_releases=self._unknown_releases,
            closed=self._closed,
        )

    def resource_pressure(self, key: RequestResourceKey) -> RequestResourcePressure | None:
        """One resource's snapshot (``None`` if never used)."""
        r = self._resources.get(key)
        return None if r is None else self._resource_snapshot(r, _now())

    def endpoint_pressure(self, key: ProviderModelKey) -> RequestEndpointPressure | None:
        """One endpoint's snapshot (``None`` if not declared)."""
        ep = self._endpoints.get(key)
        return None if ep is None else self._endpoint_snapshot(ep)

    def _resource_snapshot(self, r: _Resource, now: float) -> RequestResourcePressure:
        limit = r.limit
        if r.ramping:
            span = r.settings.startup_ramp_seconds
            elapsed = now - r.ramp_start
            ramp = (
                r.ramp_target
                if elapsed >= span
                else 1 + int((r.ramp_target - 1) * elapsed / span + 1e-9)
            )
            limit = max(limit, min(ramp, r.effective_max))
        circuit = r.circuit
        if circuit == _OPEN and now >= r.circuit_until:
            circuit = _HALF_OPEN
        window = r.window
        return RequestResourcePressure(
            resource=r.key,
            captured_at=now,
            limit=limit,
            effective_max=r.effective_max,
            static_cap=r.endpoint.static_cap,
            clamp=r.settings.clamp,
            in_flight=r.in_flight,
            endpoint_in_flight=r.endpoint.in_flight,
            waiters=r.waiting,
            cooldown_remaining=max(0.0, r.cooldown_until - now),
            last_rate_limit_ceiling=r.ceiling,
            consecutive_rate_limits=r.consecutive_rate_limits,
            ramping=r.ramping and limit < r.ramp_target,
            circuit=_CIRCUIT_NAMES[circuit],
            circuit_reopens_in=(max(0.0, r.circuit_until - now) if circuit == _OPEN else None),
            window_requests=None if window is None else window.requests_in_window(now),
            window_tokens=None if window is None else window.tokens_in_window(now),
            grants=r.grants,
            successes=r.successes_total,
            rate_limits=r.rate_limits,
            coalesced_rate_limits=r.coalesced,
            failures=r.failures,
            released=r.released,
            wait_timeouts=r.wait_timeouts,
            wait_cancellations=r.wait_cancellations,
            denials=r.denials,
            duplicate_releases=r.duplicate_releases,
            unknown_releases=r.unknown_releases,
            cancelled_grants=r.cancelled_grants,
            max_in_flight=r.max_in_flight,
            max_waiters=r.max_waiters,
            max_limit=max(r.max_limit, limit),
        )

    def _endpoint_snapshot(self, ep: _Endpoint) -> RequestEndpointPressure:
        plan = ep.plan
        return RequestEndpointPressure(
            key=ep.key,
            static_cap=ep.static_cap,
            aliases=plan.aliases if plan is not None else (),
            raw_caps=tuple(c.raw_cap for c in plan.contributions) if plan is not None else (),
            in_flight=ep.in_flight,
            waiters=ep.waiting,
            max_in_flight=ep.max_in_flight,
            resources=tuple(r.key for r in ep.resources),
        )

    # ----------------------------------------------------------------------------- denials

    def _deny(
        self,
        r: _Resource,
        item: RequestAdmissionItem,
        reason: RequestDenialReason,
        *,
        blocked_by: str | None = None,
        queued: int = 0,
        now: float | None = None,
        available_after: float | None = None,
        count: bool = True,
    ) -> RequestAdmissionDenied:
        if count:
            r.denials += 1
        denied = RequestAdmissionDenied(
            item=item,
            reason=reason,
            available_after=available_after,
            queued_waiters_ahead=queued,
            blocked_by=blocked_by,
            snapshot=self._resource_snapshot(r, _now() if now is None else now),
        )
        if count and self._emitter.enabled:
            self._emit(
                "request_acquire_denied",
                r,
                request_group=item.request_group,
                reason=reason,
                diagnostics={"blocked_by": blocked_by, "queued_waiters_ahead": queued},
            )
        return denied

    def _deny_unregistered(self, item: RequestAdmissionItem) -> RequestAdmissionDenied:
        reason: RequestDenialReason = "shutdown" if self._closed else "unknown_resource"
        key = item.resource
        if self._emitter.enabled:
            self._emitter.request(
                "request_acquire_denied",
                provider=getattr(key, "provider", None),
                model_id=getattr(key, "model_id", None),
                domain=getattr(key, "domain", None),
                request_group=item.request_group,
                reason=reason,
            )
        return RequestAdmissionDenied(item=item, reason=reason)

    # ----------------------------------------------------------------------------- events

    def _emit(self, kind: RequestEventKind, r: _Resource, **fields: Any) -> None:
        key = r.key
        self._emitter.request(
            kind, provider=key.provider, model_id=key.model_id, domain=key.domain, **fields
        )

    def _emit_drained(self, r: _Resource) -> None:
        if r.queue_reported and not r.waiting:
            r.queue_reported = False
            self._emit("request_queue_drained", r)

    def _emit_acquired(self, r: _Resource, lease: RequestAdmissionLease) -> None:
        self._emit(
            "request_lease_acquired",
            r,
            request_group=lease.item.request_group,
            lease_id=lease.lease_id,
            limit=lease.limit,
            diagnostics={"in_flight": r.in_flight, "probe": lease.probe} if lease.probe else None,
        )

    def _emit_release(
        self,
        r: _Resource,
        lease: RequestAdmissionLease,
        outcome: RequestReleaseOutcome,
        prev_limit: int,
        prev_circuit: int,
        prev_ceiling: int | None,
    ) -> None:
        group = lease.item.request_group
        self._emit(
            "request_lease_released",
            r,
            request_group=group,
            lease_id=lease.lease_id,
            outcome=outcome.kind,
            limit=r.limit,
        )
        if outcome.kind == "rate_limited":
            self._emit(
                "request_rate_limited",
                r,
                request_group=group,
                lease_id=lease.lease_id,
                retry_after=outcome.retry_after_seconds,
                limit=r.limit,
                diagnostics={
                    "consecutive_rate_limits": r.consecutive_rate_limits,
                    "cooldown_until": r.cooldown_until,
                },
            )
        if r.limit < prev_limit:
            self._emit(
                "request_limit_decreased",
                r,
                limit=r.limit,
                previous_limit=prev_limit,
                reason="rate_limited",
                diagnostics={"ceiling": r.ceiling},
            )
        elif r.limit > prev_limit:
            self._emit(
                "request_limit_increased",
                r,
                limit=r.limit,
                previous_limit=prev_limit,
                reason="additive_increase",
            )
            ceiling = prev_ceiling
            if ceiling is not None and prev_limit < ceiling - 1 <= r.limit:
                self._emit(
                    "request_soft_ceiling_recovered",
                    r,
                    limit=r.limit,
                    diagnostics={"ceiling": ceiling},
                )
            if r.limit >= r.effective_max:
                self._emit("request_fully_recovered", r, limit=r.limit)
        if r.circuit == _OPEN and prev_circuit != _OPEN:
            self._emit(
                "request_effective_cap_changed",
                r,
                limit=0,
                reason="circuit_reopened" if prev_circuit == _HALF_OPEN else "circuit_opened",
                diagnostics={"reopens_at": _finite(r.circuit_until), "reopens": r.circuit_reopens},
            )
        elif r.circuit == _CLOSED and prev_circuit != _CLOSED:
            self._emit("request_effective_cap_changed", r, limit=r.limit, reason="circuit_closed")
