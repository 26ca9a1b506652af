"""The adaptive request-admission controller: waiters, grants and releases, composed.

:class:`AdaptiveRequestAdmissionController` is the V1 :class:`RequestAdmissionController`.
It owns no arithmetic of its own; it composes small parts, each in its own module:

- :mod:`.state`: per-endpoint and per-resource state and the admission check (a query);
- :mod:`.waiters`: the weighted fair waiter queue of each endpoint;
- :mod:`.aimd`, :mod:`.circuit`, :mod:`.ramp`: the limit, the breaker and the startup ramp,
  pure with the clock passed in; :mod:`.outcomes` applies a released call's outcome to them;
- :mod:`.dispatch`: grants, releases and the dispatch loop that hands capacity to waiters;
  :mod:`.timer`: timed wake-ups; :mod:`.lease_book`: live leases;
- :mod:`.denials`: denials and bad-release diagnostics;
- :mod:`.registry`: endpoints, resources and live reconfiguration;
- :mod:`.reporting` and :mod:`.snapshots`: events and frozen pressure snapshots.

What is left here is the public contract, read top to bottom: ``acquire`` (fast path, or
queue and park), ``try_acquire``, ``release``, ``reconfigure``, ``shutdown`` and snapshots.

State lives in plain fields: the trio event loop is single-threaded and no method awaits while
the state is inconsistent, so there are no locks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast

import trio
from attrs import frozen

from ..._internal.clock import now as _now
from ..._internal.leases import ReleaseResult
from ...events.emitter import EventEmitter
from ...events.sinks import EventSink
from ..admission import (
    RequestAdmissionDecision,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestReleaseOutcome,
)
from ..config import RequestAdmissionConfig
from ..identity import (
    ModelEndpoint,
    ProviderModelKey,
    RequestResourceKey,
    RequestResourceResolver,
)
from ..pressure import RequestEndpointPressure, RequestPressureSnapshot, RequestResourcePressure
from .denials import Denials
from .dispatch import Dispatcher
from .lease_book import LeaseBook
from .registry import ResourceRegistry, as_resolver
from .reporting import ResourceEvents
from .snapshots import endpoint_pressure, resource_pressure
from .state import ResourceState
from .waiters import GONE, GRANTED

_INF: Final = float("inf")


# A grant reclaimed because its waiter was cancelled in the same instant: the call was never
# sent, so it used no tokens (its rate-window estimate is given back).
_NEVER_SENT: Final = RequestReleaseOutcome("local_cancelled", actual_tokens=0)


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
        registry = ResourceRegistry(
            as_resolver(endpoints), config if config is not None else RequestAdmissionConfig()
        )
        self._registry = registry
        self._resources = registry.resources  # the same dict, read on every acquire
        self._emitter = emitter = EventEmitter(sink)
        self._events = events = ResourceEvents(emitter)
        self._leases = leases = LeaseBook(next(_generations))
        self._dispatcher = Dispatcher(registry, leases, emitter, events)
        self._denials = Denials(
            registry, emitter, events, leases.generation, RequestPressureReader(self)
        )
        self._closed = False

    # ----------------------------------------------------------------------------- properties

    @property
    def resolver(self) -> RequestResourceResolver:
        """The alias resolver built from the declared endpoints."""
        return self._registry.resolver

    @property
    def config(self) -> RequestAdmissionConfig:
        """The settings in force (replaced by :meth:`reconfigure`)."""
        return self._registry.config

    @property
    def generation(self) -> int:
        """Token carried by every lease of this controller (foreign leases are diagnosed)."""
        return self._leases.generation

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

    @property
    def timer_wakeups(self) -> int:
        """How often the timed wake-up fired (a diagnostic: it should track timed changes)."""
        return self._dispatcher.timer.wakeups

    def __repr__(self) -> str:
        endpoints = self._registry.endpoints.values()
        in_flight = sum(ep.in_flight for ep in endpoints)
        waiting = sum(ep.waiters.waiting for ep in endpoints)
        return (
            f"<AdaptiveRequestAdmissionController {len(endpoints)} endpoints, "
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
        r = self._resources.get(item.resource) or self._register(item.resource)
        if r is None:
            return self._denials.unregistered(item, closed=self._closed)
        if self._closed:
            return self._denials.deny(r, item, "shutdown")
        now = trio.current_time()
        if r.endpoint.timed:
            self._dispatcher.settle(r, now)
        if r.waiting:
            return self._denials.deny(r, item, "would_wait", blocked_by="waiters", queued=r.waiting)
        blocked = r.blocked_by(item.estimated_tokens, now)
        if blocked is not None:
            return self._denials.would_wait(r, item, blocked, now)
        lease = self._dispatcher.grant(r, item, now, 0.0)
        if self._emitter.enabled:
            self._events.acquired(r, lease)
        return lease

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
        r = self._resources.get(item.resource) or self._register(item.resource)
        if r is None:
            raise RequestAdmissionError(self._denials.unregistered(item, closed=self._closed))
        if self._closed:
            raise RequestAdmissionError(self._denials.deny(r, item, "shutdown"))
        now = trio.current_time()
        if r.endpoint.timed:
            self._dispatcher.settle(r, now)
        if not r.waiting and r.blocked_by(item.estimated_tokens, now) is None:
            lease = self._dispatcher.grant(r, item, now, 0.0)
            em = self._emitter
            if em.enabled and id(item) not in em.lease_events_folded:
                self._events.acquired(r, lease, now)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return lease
        return await self._wait(r, item, now)

    async def _wait(
        self, r: ResourceState, item: RequestAdmissionItem, now: float
    ) -> RequestAdmissionLease:
        """Queue, park until a grant or a denial, and hand back exactly one of them.

        Three ways out, each leaving no waiter and no stray lease behind: a grant (returned,
        unless a cancellation arrived in the same instant: then the grant is reclaimed), a
        denial or timeout (raised as :class:`RequestAdmissionError`), a cancellation while
        parked (the abort callback has already left the queue; ``Cancelled`` propagates).
        Parking stays inline (not a helper coroutine): this is the contended hot path, and
        the whole cancellation story reads in one place.
        """
        timeout = item.timeout if item.timeout is not None else r.settings.queue_timeout_seconds
        deadline = _INF if timeout is None else now + timeout
        if r.hard_limits:  # a circuit, a window or a waiter bound may refuse outright
            denial = self._denials.before_queueing(r, item, now, deadline)
            if denial is not None:
                raise RequestAdmissionError(denial)
        if timeout is not None and timeout <= 0:
            raise RequestAdmissionError(self._denials.timeout(r, item, now, count=True))
        ep = r.endpoint
        waiters = ep.waiters
        waiter = waiters.enqueue(r, item, trio.lowlevel.current_task(), now, deadline, ep.resources)
        if self._emitter.enabled:
            self._events.wait_started(r, item)
        # Another lane's head may be blocked only by its own tokens while this one fits, and a
        # time-blocked resource needs its timer armed: one dispatch settles both. Behind an
        # existing head of its own lane (or alone and just found blocked), with no timed
        # state, this waiter cannot change what the last dispatch decided: skip it.
        if r.timed or (waiter.lane.live == 1 and len(waiters.lanes) > 1):
            self._dispatcher.dispatch(ep, now)
        if waiter.state == GRANTED:
            await trio.lowlevel.cancel_shielded_checkpoint()
            result = waiter.result
        else:

            def abort(_: Any) -> trio.lowlevel.Abort:
                # Leave the queue at once so no grant can land on a task that is about to
                # raise Cancelled; the task itself re-dispatches and reports once it runs.
                waiters.remove(waiter)
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
                if waiter.state == GONE and not isinstance(exc, RequestAdmissionError):
                    self._after_cancel(r, item)
                raise
        if type(result) is RequestAdmissionDenied:
            if self._emitter.enabled:
                self._events.emit(
                    "request_acquire_denied", r, request_group=item.request_group,
                    request_id=item.request_id, reason=result.reason,
                )  # fmt: skip
            raise RequestAdmissionError(result)
        lease = cast(RequestAdmissionLease, result)  # a grant: never None once woken
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            self._reclaim_cancelled_grant(r, lease)
            raise
        if self._emitter.enabled:
            self._events.emit(
                "request_wait_completed", r, request_group=item.request_group,
                lease_id=lease.lease_id, request_id=item.request_id,
                diagnostics={"waited": lease.waited},
            )  # fmt: skip
            if id(item) not in self._emitter.lease_events_folded:
                self._events.acquired(r, lease)
        return lease

    def _after_timeout(
        self, r: ResourceState, item: RequestAdmissionItem
    ) -> RequestAdmissionDenied:
        now = trio.current_time()
        r.wait_timeouts += 1
        if r.endpoint.waiters.waiting:
            self._dispatcher.dispatch(r.endpoint, now)
        denied = self._denials.timeout(r, item, now, count=False)
        if self._emitter.enabled:
            self._events.emit(
                "request_wait_timeout", r, request_group=item.request_group,
                request_id=item.request_id,
                reason=denied.blocked_by,
            )  # fmt: skip
            self._events.drained(r)
        return denied

    def _after_cancel(self, r: ResourceState, item: RequestAdmissionItem) -> None:
        r.wait_cancellations += 1
        if r.endpoint.waiters.waiting:
            self._dispatcher.dispatch(r.endpoint, trio.current_time())
        if self._emitter.enabled:
            self._events.emit(
                "request_wait_cancelled",
                r,
                request_group=item.request_group,
                request_id=item.request_id,
            )
            self._events.drained(r)

    def _reclaim_cancelled_grant(self, r: ResourceState, lease: RequestAdmissionLease) -> None:
        """A grant that met a cancellation in the same instant: take it back, never sent."""
        if self._emitter.enabled:
            self._events.acquired(r, lease)  # every grant reads acquired -> released
        r.cancelled_grants += 1
        held = self._leases.reclaim(lease)
        self._dispatcher.release_held(lease, _NEVER_SENT, held, foldable=False)
        if self._emitter.enabled:
            group = lease.item.request_group
            self._events.emit(
                "request_release_diagnostic", r, lease_id=lease.lease_id, request_group=group,
                request_id=lease.item.request_id, reason="cancelled_grant",
                outcome="local_cancelled",
            )  # fmt: skip
            self._events.emit(
                "request_wait_cancelled", r, request_group=group, request_id=lease.item.request_id
            )

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
            held = self._leases.take(lease)
            if isinstance(held, str):
                return self._denials.bad_release(lease, held)
            error = self._dispatcher.release_held(lease, outcome, held)
            if error is None:
                return ReleaseResult(released=True, reason="released", lease_id=lease.lease_id)
            return ReleaseResult(
                released=True,
                reason="released",
                lease_id=lease.lease_id,
                diagnostics={"invalid_outcome": repr(outcome), "error": repr(error)},
            )
        except Exception as exc:  # release never raises; report instead
            return ReleaseResult(
                released=False,
                reason="unknown_lease",
                lease_id=getattr(lease, "lease_id", -1),
                diagnostics={"error": repr(exc)},
            )

    # ----------------------------------------------------------------------------- control

    def _register(self, key: RequestResourceKey) -> ResourceState | None:
        r = self._registry.register(key, _now())
        if r is not None and self._emitter.enabled:
            self._events.registered(r)
        return r

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
        registry = self._registry
        resolver, new_config = registry.check_changes(config, endpoints, static_caps, limits)
        now = _now()
        changes = registry.apply_changes(
            resolver,
            new_config,
            endpoints_changed=endpoints is not None,
            static_caps=static_caps,
            limits=limits,
            now=now,
        )
        for waiter, reason, blocked_by in changes.rejected:
            self._dispatcher.reject(waiter, reason, blocked_by=blocked_by)
        if self._emitter.enabled:
            self._events.reconfigured(
                changes.circuits_closed, changes.before, self._resources.values()
            )
        self._dispatcher.dispatch_all(now)

    @trio.lowlevel.enable_ki_protection
    def reset_circuit(self, key: RequestResourceKey) -> None:
        """Close ``key``'s circuit by hand (e.g. after the provider's quota was raised)."""
        r = self._resources.get(key)
        if r is None or r.circuit.closed:
            return
        r.circuit.close(r.settings)
        r.update_timed()
        if self._emitter.enabled:
            self._events.circuit_closed(r)
        if r.endpoint.waiters.waiting:
            self._dispatcher.dispatch(r.endpoint, _now())

    @trio.lowlevel.enable_ki_protection
    def shutdown(self) -> None:
        """Stop admitting: every waiter and every later acquire gets a ``shutdown`` denial.

        Leases in flight stay valid and must still be released. Idempotent; not a checkpoint.
        """
        if self._closed:
            return
        self._closed = True
        for waiter in self._registry.all_waiters():
            self._dispatcher.reject(waiter, "shutdown")
        self._dispatcher.timer.close()

    # ----------------------------------------------------------------------------- snapshots

    def pressure_snapshot(self) -> RequestPressureSnapshot:
        """Every registered resource and declared endpoint, captured now (read-only)."""
        now = _now()
        return RequestPressureSnapshot(
            captured_at=now,
            resources=tuple(resource_pressure(r, now) for r in self._resources.values()),
            endpoints=tuple(endpoint_pressure(ep) for ep in self._registry.endpoints.values()),
            unknown_releases=self._denials.unknown_releases,
            closed=self._closed,
        )

    def resource_pressure(self, key: RequestResourceKey) -> RequestResourcePressure | None:
        """One resource's snapshot (``None`` if never used)."""
        r = self._resources.get(key)
        return None if r is None else resource_pressure(r, _now())

    def endpoint_pressure(self, key: ProviderModelKey) -> RequestEndpointPressure | None:
        """One endpoint's snapshot (``None`` if not declared)."""
        ep = self._registry.endpoints.get(key)
        return None if ep is None else endpoint_pressure(ep)

    def stranded_waiters(self) -> tuple[RequestResourceKey, ...]:
        """Resources whose queued head could take a lease right now under a free cap.

        A diagnostic for watchdogs and tests: dispatch hands free capacity on at once, so
        while every task sleeps this is empty; anything here is a lost wakeup. A query: it
        reads lazily due changes (ramp steps, half-open circuits) as of now without making
        them.
        """
        return self._registry.stranded_waiters(_now())
