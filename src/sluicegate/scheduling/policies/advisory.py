"""Task admission that prefers work for unpressured model endpoints.

:class:`RequestPressureAdvisoryPolicy` is a :class:`~sluicegate.TaskAdmissionPolicy` that reads
request pressure (read-only) to hold back a task whose model endpoint is congested while a
task of another group, bound for an endpoint that is not, could run instead. It never changes
request state and never keeps the scheduler idle: it only skips a task when a concrete peer
would be admitted in its place.

Layering: scheduling and request admission never import each other. The policy reads request
pressure through the protocols of :mod:`.pressure`, which request admission's read-only
``controller.pressure`` satisfies structurally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeAlias, TypeVar

from ..._internal.checks import describe
from ...errors import ConfigurationError
from ..leases import PeerSkip, TaskAdmissionLease
from ..queue import QueueView
from ..task import SchedulableTask
from .base import (
    PolicyStateDelta,
    TaskAdmissionPolicy,
    TaskAdmissionPolicyDecision,
    TaskAdmissionUsage,
)
from .pressure import EndpointKeys, RequestPressureFacts, RequestPressureLookup
from .strict import StrictFairPolicy

KeyT = TypeVar("KeyT")
FactsT = TypeVar("FactsT", bound=RequestPressureFacts)

RequestEndpoint: TypeAlias = "KeyT | EndpointKeys[KeyT]"


"""What a task's model calls go to: one request resource key, or an endpoint standing for
several (``ProviderModelKey``: every domain of a provider/model)."""


EndpointOf: TypeAlias = Callable[[SchedulableTask[Any]], "KeyT | EndpointKeys[KeyT] | None"]


"""Maps a task to the endpoint its model calls go to (``None``: it makes no model call)."""


SIGNALS = ("waiters", "cooldown", "circuit_open", "custom")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RequestPressureAdvisoryPolicy(Generic[KeyT, FactsT]):
    """Skips a task bound for a pressured endpoint while an unpressured peer can run instead.

    ``pressure`` is a read-only :class:`~.pressure.RequestPressureLookup` (pass
    ``controller.pressure`` of an ``AdaptiveRequestAdmissionController``); ``endpoint_of(task)``
    says where a task's model calls go: a key that ``pressure.resource`` takes (a
    ``RequestResourceKey``), an endpoint with ``resource_keys()`` (a ``ProviderModelKey``: all
    of its domains count) or ``None`` (no model call; never pressured). It runs on the hot
    path, so it must be cheap and pure (same task, same answer).

    **Pressure.** A request resource is pressured when its snapshot shows at least
    ``min_waiters`` queued waiters (signal ``waiters``), a cooldown in progress
    (``cooldown_remaining > 0``, signal ``cooldown``) or an open circuit (``circuit ==
    "open"``, signal ``circuit_open``). A half-open circuit is *not* pressure: it is waiting
    for a probe call, and holding its tasks back would keep it from ever closing (calls queued
    behind the probe show up as waiters anyway). A resource the source has never seen
    (``resource(key)`` is ``None``) is unpressured. ``is_pressured`` replaces that rule with
    your own predicate over the facts ``pressure.resource`` returns (a
    ``RequestResourcePressure``; signal ``custom``); it cannot be combined with ``min_waiters``.

    **Decision** for ``item``, in order:

    1. ``inner.evaluate`` (default :class:`StrictFairPolicy`) decides first; its denial is
       returned unchanged.
    2. ``item``'s endpoint is unpressured: allowed.
    3. ``admit_idle_groups`` is on and ``item``'s group holds no unit of any resource ``item``
       requests: allowed, so every group keeps at least one task running.
    4. Among the head tasks of at most ``max_peers_scanned`` other groups with queued work
       (those nearest the front of the queue's fair order), the first that (a) fits the free
       capacity of every resource it requests, (b) is bound for an unpressured endpoint (or
       none) and (c) is allowed by ``inner`` is the *peer*. If there is one, ``item`` is
       skipped: denied with reason ``policy_denied`` and a typed
       :class:`~sluicegate.scheduling.PeerSkip` in ``skip`` (``peer_group``, ``endpoint`` =
       ``str()`` of the item's endpoint, ``signal`` one of :data:`SIGNALS`); otherwise it is
       allowed.

    A skip has no ``resource`` and no ``available_after``; its ``detail`` is the line
    ``request_pressure_advisory endpoint=<endpoint> signal=<signal> peer_group=<group key>``,
    for people (read ``skip``'s fields in code). ``inner``'s denials pass through unchanged.

    **Never idle.** A denial names a peer that the controller would admit right now: it fits,
    ``inner`` allows it and this policy allows it (its endpoint is unpressured; with the
    built-in rule pressure cannot appear within one synchronous step, only fade as time
    passes). ``FairTaskQueue.select_next`` visits every group, so it finds that peer or another
    eligible task: the skip gives a free slot to other work and never leaves it empty. A custom
    ``pressure`` source or ``is_pressured`` must keep that property (answer the same within a
    step, or only turn pressure off).

    **Never starved.** Every skip admits some peer task instead, and a skipped task keeps its
    place (its group's virtual time does not advance, so the fair order favours it once it is
    eligible). It is admitted as soon as its endpoint is unpressured or no admissible
    unpressured peer is left among the scanned groups. In a finite run one of them always
    comes: peers' work runs out, and meanwhile cooldowns end, an open circuit turns half-open
    and waiters drain as the calls ahead of them finish. Only pressure that never lifts (a
    circuit open for good, calls from outside the run keeping the endpoint's queue full)
    together with peer work that never runs out can hold a task back indefinitely;
    ``admit_idle_groups=True`` bounds that case too, by never holding back a group that has
    nothing running (at the price of one running task per pressured group, which at a task
    capacity of 1 means no preference at all).

    **Cost.** Unpressured items: ``inner.evaluate``, ``endpoint_of`` and one pressure lookup
    (four for a :class:`ProviderModelKey`, one per request domain). Pressured items add at
    most ``max_peers_scanned`` peers, each a capacity check, at most one pressure lookup per
    distinct endpoint, and one ``inner.evaluate``: bounded, whatever the number of groups.
    The peers come from :meth:`QueueView.heads_in_fair_order`, which is bounded too.

    The policy keeps no state: ``on_acquire``/``on_release`` return ``inner``'s deltas, so
    ``inner``'s counters stay exact; ``validate_resources`` is forwarded to ``inner`` too.
    """

    name = "request_pressure_advisory"

    SIGNALS = SIGNALS
    """The values of ``PeerSkip.signal`` for this policy's skips."""

    def __init__(
        self,
        pressure: RequestPressureLookup[KeyT, FactsT],
        endpoint_of: EndpointOf[KeyT],
        *,
        inner: TaskAdmissionPolicy | None = None,
        min_waiters: int = 1,
        is_pressured: Callable[[FactsT], bool] | None = None,
        max_peers_scanned: int = 8,
        admit_idle_groups: bool = False,
    ) -> None:
        field = "RequestPressureAdvisoryPolicy"
        if not isinstance(pressure, RequestPressureLookup):
            hint = (
                "pass controller.pressure, not the controller"
                if isinstance(getattr(pressure, "pressure", None), RequestPressureLookup)
                else "pass controller.pressure, or an object with resource(key)"
            )
            raise ConfigurationError(
                f"{field}.pressure", f"{describe(pressure)} is not a request pressure source", hint
            )
        if not callable(endpoint_of):
            raise ConfigurationError(
                f"{field}.endpoint_of",
                f"{describe(endpoint_of)} is not callable",
                "pass a function task -> RequestResourceKey | ProviderModelKey | None",
            )
        if inner is None:
            inner = StrictFairPolicy()
        elif not isinstance(inner, TaskAdmissionPolicy):
            raise ConfigurationError(
                f"{field}.inner",
                f"{describe(inner)} is not a task admission policy",
                "pass a policy with name, evaluate, on_acquire and on_release "
                "(e.g. StrictFairPolicy())",
            )
        if not _is_int(min_waiters) or min_waiters < 1:
            raise ConfigurationError(
                f"{field}.min_waiters",
                f"got {min_waiters!r}",
                "use an integer >= 1 (waiters that make an endpoint pressured)",
            )
        if is_pressured is not None:
            if not callable(is_pressured):
                raise ConfigurationError(
                    f"{field}.is_pressured",
                    f"{describe(is_pressured)} is not callable",
                    "pass a function RequestResourcePressure -> bool, or None",
                )
            if min_waiters != 1:
                raise ConfigurationError(
                    f"{field}.min_waiters",
                    "is ignored when is_pressured is given",
                    "check the waiters inside is_pressured, or drop is_pressured",
                )
        if not _is_int(max_peers_scanned) or max_peers_scanned < 1:
            raise ConfigurationError(
                f"{field}.max_peers_scanned",
                f"got {max_peers_scanned!r}",
                "use an integer >= 1 (peer groups inspected per decision)",
            )
        if not isinstance(admit_idle_groups, bool):
            raise ConfigurationError(
                f"{field}.admit_idle_groups", f"got {admit_idle_groups!r}", "use True or False"
            )
        self._pressure = pressure
        self._endpoint_of = endpoint_of
        # endpoint type -> whether it stands for several keys (has resource_keys())
        self._expands: dict[type, bool] = {}
        self.inner: TaskAdmissionPolicy = inner
        self.min_waiters = min_waiters
        self._is_pressured = is_pressured
        self.max_peers_scanned = max_peers_scanned
        self.admit_idle_groups = admit_idle_groups

    def __repr__(self) -> str:
        return (
            f"<RequestPressureAdvisoryPolicy inner={self.inner.name} "
            f"min_waiters={self.min_waiters} max_peers_scanned={self.max_peers_scanned} "
            f"admit_idle_groups={self.admit_idle_groups}>"
        )

    # -- pressure ------------------------------------------------------------------------

    def _signal(self, p: FactsT) -> str | None:
        custom = self._is_pressured
        if custom is not None:
            return "custom" if custom(p) else None
        if p.circuit == "open":
            return "circuit_open"
        if p.waiters >= self.min_waiters:
            return "waiters"
        if p.cooldown_remaining > 0:
            return "cooldown"
        return None

    def pressure_signal(self, endpoint: KeyT | EndpointKeys[KeyT] | None) -> str | None:
        """Why ``endpoint`` is pressured now (one of :attr:`SIGNALS`), or ``None`` if it is not.

        Reads the pressure source only; changes nothing.
        """
        if endpoint is None:
            return None
        lookup = self._pressure.resource
        expands = self._expands.get(type(endpoint))
        if expands is None:
            if isinstance(endpoint, (str, bytes)):
                raise ConfigurationError(
                    "RequestPressureAdvisoryPolicy.endpoint_of",
                    f"returned the string {describe(endpoint)}",
                    "return the key the pressure source takes (a RequestResourceKey, a "
                    "ProviderModelKey for every domain of an endpoint) or None",
                )
            expands = self._expands[type(endpoint)] = callable(
                getattr(endpoint, "resource_keys", None)
            )
        if not expands:
            p = lookup(endpoint)  # type: ignore[arg-type]  # KeyT: told apart at runtime
            return None if p is None else self._signal(p)
        keys: Iterable[KeyT] = endpoint.resource_keys()  # type: ignore[union-attr]
        for key in keys:
            p = lookup(key)
            if p is not None:
                signal = self._signal(p)
                if signal is not None:
                    return signal
        return None

    # -- the policy protocol -------------------------------------------------------------

    def validate_resources(self, limits: Mapping[str, int]) -> None:
        """Forwarded to ``inner`` (this policy names no scheduler resource itself)."""
        check = getattr(self.inner, "validate_resources", None)
        if check is not None:
            check(limits)

    def evaluate(
        self, item: SchedulableTask, queue_view: QueueView, usage: TaskAdmissionUsage
    ) -> TaskAdmissionPolicyDecision:
        inner = self.inner
        decision = inner.evaluate(item, queue_view, usage)
        if not decision.allowed:
            return decision
        endpoint = self._endpoint_of(item)
        signal = self.pressure_signal(endpoint)
        if signal is None:
            return decision
        group = item.group.key
        if self.admit_idle_groups and not any(
            usage.group_in_use(group, res) for res in item.resources
        ):
            return decision
        peer = self._peer(item, endpoint, queue_view, usage)
        if peer is None:
            return decision
        skip = PeerSkip(peer_group=peer.group.key, endpoint=str(endpoint), signal=signal)
        return TaskAdmissionPolicyDecision(
            False,
            "policy_denied",
            detail=(
                f"request_pressure_advisory endpoint={endpoint} signal={signal} "
                f"peer_group={peer.group.key}"
            ),
            skip=skip,
        )

    def _peer(
        self,
        item: SchedulableTask,
        endpoint: KeyT | EndpointKeys[KeyT] | None,
        view: QueueView,
        usage: TaskAdmissionUsage,
    ) -> SchedulableTask | None:
        """The first scanned peer head the controller would admit now on an unpressured
        endpoint, or ``None``."""
        pressured: dict[object, bool] = {endpoint: True}
        inner = self.inner
        own = item.group.key
        scanned = 0
        limit = self.max_peers_scanned
        # one more than the limit: the own group may be among the fairest heads
        for head in view.heads_in_fair_order(limit + 1):
            if head.group.key == own:
                continue
            if scanned == limit:
                break
            scanned += 1
            if not _fits(head, usage):
                continue
            target = self._endpoint_of(head)
            busy = pressured.get(target)
            if busy is None:
                busy = pressured[target] = self.pressure_signal(target) is not None
            if busy:
                continue
            if inner.evaluate(head, view, usage).allowed:
                return head
        return None

    def on_acquire(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None:
        return self.inner.on_acquire(lease, usage)

    def on_release(
        self, lease: TaskAdmissionLease, usage: TaskAdmissionUsage
    ) -> PolicyStateDelta | None:
        return self.inner.on_release(lease, usage)


def _fits(task: SchedulableTask, usage: TaskAdmissionUsage) -> bool:
    """Whether ``task``'s request fits the free units now (the controller's capacity check)."""
    for res, units in task.resources.items():
        try:
            limit = usage.limit(res)
        except KeyError:
            return False  # an undeclared resource is never admitted
        if usage.in_use(res) + units > limit:
            return False
    return True


__all__ = ["SIGNALS", "EndpointOf", "RequestEndpoint", "RequestPressureAdvisoryPolicy"]
