"""The model-call boundary: one concrete attempt at a time, each under its own request lease.

``ModelRequestExecutor.execute`` resolves a model alias to its request resource, then for
every attempt: acquires a lease, calls the provider, classifies how the call ended, and
releases exactly that lease (in a cancellation-shielded cleanup, before any exception
propagates). Retries are new attempts and are admitted again, so admission sees them.
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
import trio

from .._internal.checks import did_you_mean, is_number
from ..errors import ConfigurationError, SluicegateError
from ..events.correlation import (
    current_request_id,
    new_request_id,
)
from ..events.emitter import EventEmitter
from ..events.schema import ModelCallReport
from ..events.sinks import EventSink
from .admission import (
    OUTCOME_LOCAL_CANCELLED,
    OUTCOME_LOCAL_TIMEOUT,
    OUTCOME_PROVIDER_FAILURE,
    OUTCOME_PROVIDER_TIMEOUT,
    OUTCOME_UNEXPECTED,
    RequestAdmissionController,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestReleaseOutcome,
)
from .identity import ProviderModelKey, RequestDomain, RequestResourceKey, RequestResourceResolver
from .provider import (
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderConnectionError,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)

ProviderLookup = Mapping[str, Provider] | Callable[[ProviderModelKey], Provider]


"""Providers by canonical provider name, or a function from endpoint to provider."""


class ModelRequestError(SluicegateError):
    """A model request failed on every allowed attempt.

    ``outcome`` is the last attempt's release outcome, ``attempts`` how many were made;
    the last provider error (if any) is chained as ``__cause__``. Only retryable failures end
    this way (rate limits, retryable provider failures, timeouts, unreachable endpoints), so
    ``retryable`` is true: the same work may succeed later, and the scheduler retries the
    task (not sooner than ``retry_after`` seconds, the last provider hint, if any). For an
    unreachable endpoint the message names its URL and the transport's words.
    """

    def __init__(
        self,
        resource: RequestResourceKey,
        attempts: int,
        outcome: RequestReleaseOutcome,
        request_id: int | None = None,
    ) -> None:
        self.resource = resource
        self.attempts = attempts
        self.outcome = outcome
        self.request_id = request_id
        """The logical request's id in events (``None`` while no sink listens): a caller that
        retries passes it back to ``execute(request_id=)`` to continue the same request."""
        self.retryable = True
        hint = outcome.retry_after_seconds
        self.retry_after = hint if hint is not None and 0 <= hint < math.inf else None
        kind = outcome.kind
        if kind == "rate_limited":
            fix = "the endpoint kept rate limiting: lower the fan-out or raise the provider quota"
        elif kind == "connection_failed":
            fix = "check the endpoint's URL and that its server is running"
        else:
            fix = "check the provider's health, or raise max_attempts / the attempt timeout"
        what = f": {outcome.detail}" if outcome.detail else ""
        super().__init__(
            f"model request to {resource} failed after {attempts} attempt(s){what}; "
            f"last outcome {kind}. Fix: {fix}"
        )


class ModelRequestStats(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Counters of one executor (attempts by outcome, and how requests ended)."""

    requests: int
    attempts: int
    succeeded: int
    failed: int
    outcomes: dict[str, int]


class ModelRequestExecutor:
    """Runs model requests through request admission, one lease per outbound attempt.

    ``execute`` is a checkpoint. On cancellation (while waiting for a lease, during the call
    or during a backoff sleep) any held lease is released as ``local_cancelled`` in a
    shielded cleanup and ``trio.Cancelled`` propagates. Rate limits, retryable provider
    failures and timeouts (the provider's or the executor's own per-attempt deadline) are
    retried up to ``max_attempts`` with exponential backoff, never sooner than a provider's
    ``retry_after``; then :class:`ModelRequestError` is raised. Non-retryable provider
    failures and unexpected exceptions propagate at once. Admission denials
    (:class:`RequestAdmissionError`) propagate as they are.
    """

    __slots__ = (
        "_attempts",
        "_controller",
        "_counts",
        "_emitter",
        "_failed",
        "_follows_controller",
        "_providers",
        "_random",
        "_reports_leases",
        "_requests",
        "_resolver",
        "_succeeded",
        "admission_timeout",
        "attempt_timeout",
        "backoff_jitter",
        "backoff_multiplier",
        "backoff_seconds",
        "capture_content",
        "max_attempts",
        "max_backoff_seconds",
    )

    def __init__(
        self,
        controller: RequestAdmissionController,
        providers: ProviderLookup,
        *,
        resolver: RequestResourceResolver | None = None,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        backoff_multiplier: float = 2.0,
        max_backoff_seconds: float = 30.0,
        backoff_jitter: float = 0.1,
        attempt_timeout: float | None = None,
        admission_timeout: float | None = None,
        seed: int = 0,
        sink: EventSink | None = None,
        capture_content: bool | None = None,
    ) -> None:
        if capture_content is None:
            capture_content = content_capture_requested()
        elif not isinstance(capture_content, bool):
            raise ConfigurationError(
                "ModelRequestExecutor.capture_content",
                f"must be True, False or None, got {capture_content!r}",
                f"use None to follow {CAPTURE_CONTENT_ENV} (off unless it is true)",
            )
        self.capture_content = capture_content
        """Whether ``model_request_completed`` carries the prompt and the completion (opt-in;
        default: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true)."""
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ConfigurationError(
                "ModelRequestExecutor.max_attempts",
                f"must be an integer >= 1, got {max_attempts!r}",
                "use 1 for no retries, or more",
            )
        for name, value, low in (
            ("backoff_seconds", backoff_seconds, 0.0),
            ("backoff_multiplier", backoff_multiplier, 1.0),
            ("max_backoff_seconds", max_backoff_seconds, 0.0),
        ):
            if not is_number(value) or not math.isfinite(value) or value < low:
                raise ConfigurationError(
                    f"ModelRequestExecutor.{name}",
                    f"must be a finite number >= {low}, got {value!r}",
                    f"use a value of at least {low}",
                )
        if not is_number(backoff_jitter) or not 0.0 <= backoff_jitter < 1.0:
            raise ConfigurationError(
                "ModelRequestExecutor.backoff_jitter",
                f"must be in [0, 1), got {backoff_jitter!r}",
                "use e.g. 0.1 for +/-10% jitter, or 0 for none",
            )
        for name, timeout in (
            ("attempt_timeout", attempt_timeout),
            ("admission_timeout", admission_timeout),
        ):
            if timeout is not None and not (is_number(timeout) and timeout > 0):
                raise ConfigurationError(
                    f"ModelRequestExecutor.{name}",
                    f"must be a positive number of seconds or None, got {timeout!r}",
                    "use a positive timeout, or None for no limit",
                )
        self._controller = controller
        self._providers = providers
        self._resolver = resolver if resolver is not None else getattr(controller, "resolver", None)
        # Without a resolver of its own the executor reads the controller's at every call: a
        # live reconfigure(endpoints=...) replaces it, re-pointing or adding aliases.
        self._follows_controller = resolver is None and isinstance(
            self._resolver, RequestResourceResolver
        )
        self.max_attempts = max_attempts
        self.backoff_seconds = float(backoff_seconds)
        self.backoff_multiplier = float(backoff_multiplier)
        self.max_backoff_seconds = float(max_backoff_seconds)
        self.backoff_jitter = float(backoff_jitter)
        self.attempt_timeout = attempt_timeout
        self.admission_timeout = admission_timeout
        self._random = random.Random(seed)
        shared = getattr(controller, "emitter", None)
        # One request stream, one sequence: share the controller's emitter unless told to send
        # to another sink. The controller's own sink passed again is the same stream: a second
        # emitter there would number its events from 1 again, duplicating sequences.
        self._emitter: EventEmitter = (
            shared
            if isinstance(shared, EventEmitter) and (sink is None or sink is shared.sink)
            else EventEmitter(sink)
        )
        # On the controller's own stream, the call events also report the attempt's lease
        # (taken and returned in the same instants): the controller then skips its own.
        self._reports_leases = self._emitter is shared
        self._requests = self._attempts = self._succeeded = self._failed = 0
        self._counts: dict[str, int] = {}

    @property
    def stats(self) -> ModelRequestStats:
        """Counters since construction."""
        return ModelRequestStats(
            requests=self._requests,
            attempts=self._attempts,
            succeeded=self._succeeded,
            failed=self._failed,
            outcomes=dict(self._counts),
        )

    def resolve(
        self,
        model: str | ProviderModelKey | RequestResourceKey,
        *,
        provider: str | None = None,
        domain: RequestDomain = "chat",
    ) -> RequestResourceKey:
        """The request resource a call for ``model`` in ``domain`` is admitted against."""
        resolver = self._resolver
        if self._follows_controller:
            resolver = self._controller.resolver  # type: ignore[attr-defined]
        if isinstance(model, RequestResourceKey):
            return model if resolver is None else resolver.resolve(model)
        if resolver is None:
            if isinstance(model, ProviderModelKey):
                return RequestResourceKey(model.provider, model.model_id, domain)
            raise ConfigurationError(
                "model",
                f"cannot resolve model alias {model!r} without endpoint declarations",
                "pass resolver= (or a controller built from ModelEndpoints), "
                "or pass a RequestResourceKey",
            )
        return resolver.resolve(model, provider=provider, domain=domain)

    def _provider_for(self, resource: RequestResourceKey) -> Provider:
        providers = self._providers
        if isinstance(providers, Mapping):
            found = providers.get(resource.provider)
            if found is None:
                raise ConfigurationError(
                    "providers",
                    f"no provider named {resource.provider!r}"
                    f"{did_you_mean(resource.provider, providers)}",
                    "pass a Provider for it in providers= (known: "
                    + (", ".join(sorted(providers)) or "none")
                    + ")",
                )
            return found
        return providers(resource.provider_model)

    async def execute(
        self,
        model: str | ProviderModelKey | RequestResourceKey,
        request: ModelRequest,
        *,
        request_group: str = "default",
        weight: float = 1.0,
        provider: str | None = None,
        attempt: int = 1,
        will_retry: bool = False,
        request_id: int | None = None,
    ) -> ModelResponse:
        """Send ``request`` to ``model`` (an alias or a key), retrying as configured.

        Returns the provider's response. Raises :class:`ModelRequestError` after the last
        retryable failure, the provider's exception for a non-retryable failure,
        :class:`RequestAdmissionError` if admission ends without a lease, and
        ``trio.Cancelled`` on cancellation (leases are always released first).

        For a caller that retries by calling ``execute`` again (pausing in between itself),
        so that its calls are one logical request: pass back the ``request_id`` the previous
        call's :class:`ModelRequestError` carries (or call inside one
        :class:`~sluicegate.events.request_scope`), ``attempt``, the number of this call's
        first attempt (its attempts continue from it, and
        :class:`ModelRequestError` counts them all), and ``will_retry=True`` when the caller
        calls again if this one raises :class:`ModelRequestError`: the last attempt's
        ``model_request_completed`` then reports ``will_retry`` true, so the request is not
        seen to have failed. ``stats`` count a request once (at ``attempt=1``), failed only
        when no retry follows. Neither changes how many attempts this call makes.
        """
        if type(attempt) is not int or attempt < 1:
            raise ConfigurationError(
                "ModelRequestExecutor.execute(attempt=)",
                f"must be an integer >= 1, got {attempt!r}",
                "pass 1 for a new request, or the number of the attempt this call continues "
                "with (previous attempts + 1)",
            )
        if type(will_retry) is not bool:
            raise ConfigurationError(
                "ModelRequestExecutor.execute(will_retry=)",
                f"must be True or False, got {will_retry!r}",
                "pass True only if you call execute again when this call raises ModelRequestError",
            )
        resource = self.resolve(model, provider=provider, domain=request.domain)
        if resource.domain != request.domain:
            raise ConfigurationError(
                "model",
                f"the resource {resource} is for domain {resource.domain!r} but the request is "
                f"for {request.domain!r}",
                "pass a RequestResourceKey of the request's domain, or an alias / "
                "ProviderModelKey (the domain is then taken from the request)",
            )
        target = self._provider_for(resource)
        # One logical request: its admission waits and attempts carry one request id, on the
        # item (a request_scope around the call, if any, names it instead).
        emitting = self._emitter.enabled
        if emitting and request_id is None:
            request_id = current_request_id() or new_request_id()
        item = RequestAdmissionItem(
            resource=resource,
            request_group=request_group,
            weight=weight,
            estimated_tokens=request.estimated_tokens,
            timeout=self.admission_timeout,
            request_id=request_id,
        )
        if attempt == 1:  # a later attempt continues a request already counted
            self._requests += 1
        folded = self._emitter.lease_events_folded if emitting and self._reports_leases else None
        if folded is not None:
            folded.add(id(item))  # our call events report this item's leases (schema 2)
        delay = self.backoff_seconds
        last = attempt + self.max_attempts - 1  # this call's last attempt
        attempt -= 1
        try:
            while True:
                attempt += 1
                try:
                    lease = await self._controller.acquire(item)
                    response, outcome, error = await self._attempt(
                        target, resource, request, lease, attempt, attempt < last or will_retry
                    )
                except BaseException:
                    self._failed += 1
                    raise
                if response is not None:
                    self._succeeded += 1
                    return response
                if attempt >= last:
                    if not will_retry:
                        self._failed += 1
                    raise ModelRequestError(resource, attempt, outcome, request_id) from error
                pause = min(self.max_backoff_seconds, delay)
                if self.backoff_jitter:
                    pause *= 1.0 + self.backoff_jitter * (2.0 * self._random.random() - 1.0)
                    # jitter spreads pauses at the cap too (downwards) but never exceeds it
                    pause = min(self.max_backoff_seconds, pause)
                hint = outcome.retry_after_seconds
                if hint is not None and hint < math.inf:  # an infinite hint is no usable hint
                    pause = max(pause, hint)
                delay *= self.backoff_multiplier
                try:
                    await trio.sleep(pause)
                except BaseException:
                    self._failed += 1  # cancelled between attempts: the request ends here too
                    raise
        finally:
            if folded is not None:
                folded.discard(id(item))

    async def _attempt(
        self,
        target: Provider,
        resource: RequestResourceKey,
        request: ModelRequest,
        lease: RequestAdmissionLease,
        attempt: int,
        retry_allowed: bool,
    ) -> tuple[ModelResponse | None, RequestReleaseOutcome, BaseException | None]:
        """One call under ``lease``; releases it exactly once, whatever happens.

        Longer than the house's 80 lines on purpose: the whole attempt (call, classify,
        shielded release) reads top to bottom in one place, like trio's own primitives.
        """
        self._attempts += 1
        outcome = OUTCOME_UNEXPECTED  # what the cleanup reports if something escapes
        error: BaseException | None = None
        response: ModelResponse | None = None
        started = trio.current_time()
        try:
            if self._emitter.enabled:
                # Also the lease's acquisition (same instant) on the controller's stream.
                item = lease.item
                self._emitter.call_event(
                    "model_request_started",
                    resource,
                    item.request_group,
                    lease.lease_id,
                    item.request_id,
                    attempt,
                    None,
                    "probe" if lease.probe else None,
                    lease.limit,
                    None,
                    None,
                    started,
                )
            timeout = request.timeout if request.timeout is not None else self.attempt_timeout
            deadline = started + timeout if timeout is not None else math.inf
            try:
                with trio.CancelScope(deadline=deadline) as scope:
                    response = await target.call(resource.model_id, request)
            except ProviderRateLimitedError as exc:
                outcome = RequestReleaseOutcome(
                    "rate_limited", exc.retry_after, quota=exc.rate_limits
                )
                error = exc
            except (ProviderTimeoutError, trio.TooSlowError) as exc:
                outcome, error = OUTCOME_PROVIDER_TIMEOUT, exc
            except ProviderConnectionError as exc:
                # Nothing answered: the circuit breaker counts it, the limit does not.
                detail = f"{exc.url}: {exc.cause}"
                outcome, error = RequestReleaseOutcome("connection_failed", detail=detail), exc
            except ProviderFailureError as exc:
                error = exc
                outcome = (
                    OUTCOME_PROVIDER_FAILURE
                    if exc.retry_after is None and exc.rate_limits is None
                    else RequestReleaseOutcome(
                        "provider_failure", exc.retry_after, quota=exc.rate_limits
                    )
                )
                if not exc.retryable:
                    raise
            except ProviderError as exc:
                outcome, error = OUTCOME_PROVIDER_FAILURE, exc
            except trio.Cancelled:
                outcome = OUTCOME_LOCAL_CANCELLED
                raise
            else:
                if scope.cancelled_caught:
                    outcome, response = OUTCOME_LOCAL_TIMEOUT, None
                else:
                    assert response is not None
                    used = response.usage.total_tokens
                    outcome = RequestReleaseOutcome(
                        "success", None, used if used else None, quota=response.rate_limits
                    )
            return response, outcome, error
        finally:
            # release() is synchronous, so nothing here is a checkpoint today; the shield keeps
            # the contract (cleanup always completes) if a controller or sink ever awaits.
            with trio.CancelScope(shield=True):  # noqa: ASYNC100
                try:
                    self._counts[outcome.kind] = self._counts.get(outcome.kind, 0) + 1
                    if self._emitter.enabled:
                        # Reported before the release hands the slot to a waiter (and, on the
                        # controller's stream, as the release itself: same instant).
                        now = trio.current_time()
                        item = lease.item
                        self._emitter.call_event(
                            "model_request_completed",
                            resource,
                            item.request_group,
                            lease.lease_id,
                            item.request_id,
                            attempt,
                            outcome.kind,
                            None,
                            None,
                            outcome.retry_after_seconds,
                            _call_report(
                                target,
                                response,
                                error,
                                now - started,
                                lease.waited,
                                _will_retry(outcome, error, retry_allowed),
                                request if self.capture_content else None,
                            ),
                            now,
                        )
                finally:
                    self._controller.release(lease, outcome)


# Every outcome ``_attempt`` returns (rather than raises) with no response: ``execute`` retries
# them all, so a retry after an unreachable endpoint is announced too.
_RETRIED_OUTCOMES = frozenset(
    {"rate_limited", "provider_failure", "provider_timeout", "local_timeout", "connection_failed"}
)


def _will_retry(
    outcome: RequestReleaseOutcome, error: BaseException | None, attempts_left: bool
) -> bool:
    """Whether another attempt follows this one, made by ``execute`` or by its caller
    (``attempts_left``: either has one left); mirrors ``execute``'s retry rules."""
    if not attempts_left or outcome.kind not in _RETRIED_OUTCOMES:
        return False
    return not (isinstance(error, ProviderFailureError) and not error.retryable)


def _call_report(
    target: Provider,
    response: ModelResponse | None,
    error: BaseException | None,
    duration: float,
    waited: float,
    will_retry: bool,
    content_of: ModelRequest | None = None,
) -> ModelCallReport:
    """What ``model_request_completed`` reports about the call (observability: token usage,
    the model that answered, the server, the error class; never content). Built
    positionally, in :class:`ModelCallReport`'s field order: once per call, on the hot path."""
    input_tokens = output_tokens = None
    model = None
    if response is not None:
        usage = response.usage
        input_tokens, output_tokens, model = (
            usage.prompt_tokens,
            usage.completion_tokens,
            response.model,
        )
    error_type = status = None
    if error is not None:
        error_type = type(error).__name__
        status = getattr(error, "status", None)
    address = port = None
    base_url = getattr(target, "base_url", None)
    if isinstance(base_url, str):
        address, port = _server_of(base_url)
        if address is None:
            port = None
    return ModelCallReport(
        duration,
        waited,
        will_retry,
        input_tokens,
        output_tokens,
        model,
        error_type,
        status,
        address,
        port,
        None if content_of is None else _input_messages(content_of),
        None if content_of is None or response is None else _output_messages(response),
    )


CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The OpenTelemetry GenAI opt-in for recording prompts and completions."""


def content_capture_requested() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):  # already parts (multimodal messages)
        return content
    return [{"type": "text", "content": str(content)}]


def _input_messages(request: ModelRequest) -> str:
    """The request's messages as ``gen_ai.input.messages`` JSON (role and parts); an
    embeddings request's ``input`` as one user message."""
    if request.messages is None:
        messages = [{"role": "user", "parts": _parts(request.input)}]
    else:
        messages = [
            {"role": m.get("role", "user"), "parts": _parts(m.get("content", ""))}
            for m in request.messages
        ]
    return _CONTENT_ENCODER.encode(messages).decode()


def _output_messages(response: ModelResponse) -> str | None:
    """The answer as ``gen_ai.output.messages`` JSON (text only; vectors are not content)."""
    if not isinstance(response.content, str):
        return None
    message = {"role": "assistant", "parts": _parts(response.content)}
    return _CONTENT_ENCODER.encode([message]).decode()


_CONTENT_ENCODER: Final = msgspec.json.Encoder(enc_hook=str)


@functools.lru_cache(maxsize=64)
def _server_of(base_url: str) -> tuple[str | None, int | None]:
    """Host and port of a provider's base URL (cached: one parse per endpoint)."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return None, None
    if port is None and parts.scheme in ("http", "https"):
        port = 443 if parts.scheme == "https" else 80
    return parts.hostname, port
