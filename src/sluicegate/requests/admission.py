"""The request admission contract: items, leases, release outcomes, denials and the protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from .._internal.clock import now as _now
from .._internal.leases import ReleaseResult
from ..errors import ConfigurationError, SluicegateError
from .config import RequestAdmissionConfig
from .identity import REQUEST_DOMAINS, ModelEndpoint, ProviderModelKey, RequestResourceKey
from .pressure import RequestPressureSource, RequestResourcePressure
from .provider import RateLimitHints

RequestOutcomeKind: TypeAlias = Literal[
    "success",
    "rate_limited",
    "provider_failure",
    "provider_timeout",
    "local_cancelled",
    "local_timeout",
    "unexpected_exception",
    "connection_failed",
]


REQUEST_OUTCOME_KINDS: Final[tuple[RequestOutcomeKind, ...]] = (
    "success",
    "rate_limited",
    "provider_failure",
    "provider_timeout",
    "local_cancelled",
    "local_timeout",
    "unexpected_exception",
    "connection_failed",
)


RequestDenialReason: TypeAlias = Literal[
    "timeout",
    "shutdown",
    "circuit_open",
    "would_wait",
    "queue_full",
    "unknown_resource",
    "too_large",
]


# Request-group weights accepted by admission. Relative weights up to 10^12 apart keep the
# stride arithmetic exact enough that every group gets its weighted share.
MIN_WEIGHT: Final = 1e-6


MAX_WEIGHT: Final = 1e6


class RequestAdmissionItem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One request that wants to go out.

    ``request_group`` and ``weight`` place it in the weighted fair waiter queue (groups with
    weights 3 and 1 get leases 3:1 while both wait). ``estimated_tokens`` is reserved in a
    token rate window, if the resource has one. ``timeout`` bounds the queue wait in seconds
    (``None``: the resource's ``queue_timeout_seconds``; ``math.inf``: wait without limit).
    ``weight`` is in ``[MIN_WEIGHT, MAX_WEIGHT]`` (1e-6 to 1e6).

    ``estimated_tokens=None`` means *unknown*: a token window then reserves the resource's
    running mean of actual usage (nothing until one call has settled); ``0`` means the
    request uses no tokens.

    ``request_id`` names the logical model request this admission serves: the request events
    about it (waits, leases, the calls) carry it. The model-request executor sets it while a
    sink listens; ``None`` takes the id of the enclosing
    :func:`~sluicegate.events.request_scope`, if any.
    """

    resource: RequestResourceKey
    request_group: str = "default"
    weight: float = 1.0
    estimated_tokens: int | None = None
    timeout: float | None = None
    request_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.resource, RequestResourceKey):
            raise ConfigurationError(
                "RequestAdmissionItem.resource",
                f"must be a RequestResourceKey, got {type(self.resource).__name__}",
                "resolve the model first (RequestResourceResolver.resolve or "
                "ModelRequestExecutor.resolve)",
            )
        if not isinstance(self.request_group, str) or not self.request_group:
            raise ConfigurationError(
                "RequestAdmissionItem.request_group",
                f"must be a non-empty string, got {self.request_group!r}",
                "name the request group (e.g. the column or task type)",
            )
        w = self.weight
        if (
            not isinstance(w, (int, float))
            or isinstance(w, bool)
            or not MIN_WEIGHT <= w <= MAX_WEIGHT
        ):
            raise ConfigurationError(
                "RequestAdmissionItem.weight",
                f"must be a number in [{MIN_WEIGHT:g}, {MAX_WEIGHT:g}], got {w!r}",
                "use a positive fairness weight such as 1.0 (weights are relative: 3 and 1 "
                "share 3:1)",
            )
        t = self.estimated_tokens
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            raise ConfigurationError(
                "RequestAdmissionItem.estimated_tokens",
                f"must be an integer >= 0 or None, got {t!r}",
                "estimate the prompt plus completion tokens, or leave it unset",
            )
        request_id = self.request_id
        if request_id is not None and (type(request_id) is not int or request_id < 1):
            raise ConfigurationError(
                "RequestAdmissionItem.request_id",
                f"must be a positive integer or None, got {request_id!r}",
                "leave it unset (the executor numbers requests), or use "
                "sluicegate.events.new_request_id()",
            )
        timeout = self.timeout
        if timeout is not None and (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or timeout != timeout
            or timeout < 0
        ):
            raise ConfigurationError(
                "RequestAdmissionItem.timeout",
                f"must be a number of seconds >= 0 (or math.inf), got {timeout!r}",
                "use a queue-wait timeout in seconds, math.inf to wait forever, or None",
            )


class RequestAdmissionLease(msgspec.Struct, frozen=True, gc=False):
    """Permission for one concrete call; release it exactly once.

    ``generation`` identifies the issuing controller; ``reserved_tokens`` is what a token
    window holds for it until release; ``limit`` is the adaptive limit at acquisition;
    ``waited`` the queue-wait seconds; ``probe`` marks a half-open circuit's probe call.
    ``rate_limit_epoch`` lets a 429 for a call admitted before the last decrease be coalesced
    into that decrease instead of cutting the limit again.
    """

    lease_id: int
    item: RequestAdmissionItem
    acquired_at: float
    generation: int
    reserved_tokens: int = 0
    limit: int = 0
    waited: float = 0.0
    rate_limit_epoch: int = 0
    probe: bool = False


class RequestReleaseOutcome(msgspec.Struct, frozen=True, gc=False):
    """How the call behind a lease ended. Only ``rate_limited`` drives decrease and cooldown;
    ``connection_failed`` (the endpoint could not be reached) feeds the circuit breaker.

    ``retry_after_seconds`` is the provider's hint on a rate limit; ``actual_tokens`` corrects
    the token window's reservation to what the call really used. ``quota`` is what the
    provider said about its own limits (``x-ratelimit-*``), adopted as a rate window unless
    one is configured. ``detail`` names what failed for a ``connection_failed`` outcome (the
    endpoint URL and the transport's words); it travels into the circuit-open error.
    """

    kind: RequestOutcomeKind
    retry_after_seconds: float | None = None
    actual_tokens: int | None = None
    quota: RateLimitHints | None = None
    detail: str | None = None

    @classmethod
    def success(cls, actual_tokens: int | None = None) -> RequestReleaseOutcome:
        return cls("success", None, actual_tokens)

    @classmethod
    def rate_limited(
        cls, retry_after_seconds: float | None = None, actual_tokens: int | None = None
    ) -> RequestReleaseOutcome:
        return cls("rate_limited", retry_after_seconds, actual_tokens)


OUTCOME_SUCCESS: Final = RequestReleaseOutcome("success")


OUTCOME_RATE_LIMITED: Final = RequestReleaseOutcome("rate_limited")


OUTCOME_PROVIDER_FAILURE: Final = RequestReleaseOutcome("provider_failure")


OUTCOME_PROVIDER_TIMEOUT: Final = RequestReleaseOutcome("provider_timeout")


OUTCOME_LOCAL_CANCELLED: Final = RequestReleaseOutcome("local_cancelled")


OUTCOME_LOCAL_TIMEOUT: Final = RequestReleaseOutcome("local_timeout")


OUTCOME_UNEXPECTED: Final = RequestReleaseOutcome("unexpected_exception")


OUTCOME_CONNECTION_FAILED: Final = RequestReleaseOutcome("connection_failed")


class RequestAdmissionDenied(msgspec.Struct, frozen=True, kw_only=True):
    """No lease. ``reason`` says why; ``available_after`` (trio clock, absolute) says when a
    retry may succeed if that is known; ``queued_waiters_ahead`` counts waiters a
    ``try_acquire`` refused to overtake; ``blocked_by`` names the binding constraint
    (``limit``, ``aggregate_cap``, ``cooldown``, ``rate_window_requests``,
    ``rate_window_tokens``, ``circuit_open``, ``circuit_probe``, ``waiters``); ``cause`` says
    why a circuit is open when the endpoint is unreachable (its URL and the transport's
    words).

    :attr:`snapshot` is the resource's pressure; a denial is cheap because it is built only
    when first read (from ``pressure_source``), then kept.
    """

    item: RequestAdmissionItem
    reason: RequestDenialReason
    available_after: float | None = None
    queued_waiters_ahead: int = 0
    blocked_by: str | None = None
    cause: str | None = None
    pressure_source: RequestPressureSource | None = None
    captured: RequestResourcePressure | None = None

    @property
    def snapshot(self) -> RequestResourcePressure | None:
        """The denied resource's pressure, captured when first read (``None`` if unknown)."""
        captured = self.captured
        if captured is None and self.pressure_source is not None:
            captured = self.pressure_source.resource(self.item.resource)
            msgspec.structs.force_setattr(self, "captured", captured)
        return captured


RequestAdmissionDecision: TypeAlias = RequestAdmissionLease | RequestAdmissionDenied


_FIXES: Final[dict[str, str]] = {
    "timeout": "raise the item timeout or queue_timeout_seconds, raise the endpoint's cap, "
    "or send fewer concurrent calls",
    "shutdown": "do not start calls after the controller was shut down",
    "circuit_open": "the endpoint kept answering 429 at limit 1; wait for the half-open probe "
    "(available_after) or check the provider's quota",
    "would_wait": "call acquire() to wait for capacity",
    "queue_full": "raise max_waiters or send fewer concurrent calls",
    "unknown_resource": "declare a ModelEndpoint for this provider/model "
    "(and use a request domain of: " + ", ".join(REQUEST_DOMAINS) + ")",
    "too_large": "estimated_tokens exceeds tokens_per_window; raise the token quota or "
    "split the request",
}


# Denials a later attempt of the same work may get past (the task layer retries them).
_RETRYABLE_REASONS: Final = frozenset({"timeout", "circuit_open", "would_wait", "queue_full"})


class RequestAdmissionError(SluicegateError):
    """``acquire`` ended without a lease; ``denied`` says why and what to do.

    ``retryable`` says whether the same work may succeed later (a queue-wait timeout, a full
    queue, a circuit that half-opens at a known time); ``retry_after`` (seconds from when the
    error was raised) says when, if known. A circuit opened because the endpoint is
    unreachable is not retryable: the error names the endpoint URL and the cause, and the run
    should stop rather than knock on a dead server.
    """

    def __init__(self, denied: RequestAdmissionDenied) -> None:
        self.denied = denied
        item = denied.item
        if denied.cause is not None:
            message = (
                f"{item.resource} is unreachable: {denied.cause}. Request admission denied "
                f"(circuit_open, group {item.request_group!r}). Fix: check the endpoint's URL "
                "and that its server is running; the circuit lets one probe call through "
                "after circuit_open_seconds"
            )
        else:
            message = (
                f"request admission denied for {item.resource} "
                f"(group {item.request_group!r}): {denied.reason}. Fix: {_FIXES[denied.reason]}"
            )
        super().__init__(message)
        self.retryable = (
            denied.cause is None
            and denied.reason in _RETRYABLE_REASONS
            and not (denied.reason == "circuit_open" and denied.available_after is None)
        )
        self.retry_after: float | None = None
        if self.retryable and denied.available_after is not None:
            self.retry_after = max(0.0, denied.available_after - _now())

    @property
    def reason(self) -> RequestDenialReason:
        return self.denied.reason


@runtime_checkable
class RequestAdmissionController(Protocol):
    """Decides when one concrete provider call may go out (see SPEC: request admission)."""

    def try_acquire(self, item: RequestAdmissionItem) -> RequestAdmissionDecision:
        """A lease now, or a denial; never waits and never overtakes a queued waiter."""
        ...

    async def acquire(self, item: RequestAdmissionItem) -> RequestAdmissionLease:
        """Wait for a lease; raise :class:`RequestAdmissionError` when none will come."""
        ...

    def release(
        self, lease: RequestAdmissionLease, outcome: RequestReleaseOutcome
    ) -> ReleaseResult:
        """Return a lease with the call's outcome. Never raises."""
        ...

    @property
    def pressure(self) -> RequestPressureSource:
        """Read-only snapshots."""
        ...

    def reconfigure(
        self,
        config: RequestAdmissionConfig | None = None,
        *,
        endpoints: Sequence[ModelEndpoint] | None = None,
        static_caps: Mapping[ProviderModelKey, int] | None = None,
        limits: Mapping[RequestResourceKey, int] | None = None,
    ) -> None:
        """Live changes; lowering a cap or limit never revokes leases in flight."""
        ...
