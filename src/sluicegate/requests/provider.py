"""The provider boundary: one concrete call to a model endpoint.

Like httpx's transports, this is a thin protocol with a real implementation
(:class:`OpenAICompatibleProvider`) and a deterministic one for tests and the embedded default
(:class:`SimulatedProvider`). Providers know nothing about admission: they make one call and
either return a :class:`ModelResponse` or raise one of the :class:`ProviderError` subclasses,
which the model-call boundary maps onto request release outcomes.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import msgspec

from .._internal.checks import describe, did_you_mean, is_number
from ..errors import ConfigurationError, SluicegateError
from .identity import REQUEST_DOMAINS, RequestDomain


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to send. ``messages`` for chat, ``input`` for embeddings.

    ``estimated_tokens`` is what rate windows reserve at acquire time (corrected to the
    actual usage on release). ``timeout`` bounds one attempt, in seconds.
    """

    domain: RequestDomain = "chat"
    messages: list[dict[str, Any]] | None = None
    input: Any = None
    max_tokens: int | None = None
    temperature: float | None = None
    estimated_tokens: int | None = None
    timeout: float | None = None
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_request_shape(self)
        timeout = self.timeout
        if timeout is not None and not (is_number(timeout) and timeout > 0):
            # inf is allowed (no limit); nan fails "> 0"
            raise ConfigurationError(
                "ModelRequest.timeout",
                f"got {timeout!r}",
                "use seconds > 0 for one attempt, or None for the executor's attempt_timeout",
            )
        for name, value, least in (
            ("estimated_tokens", self.estimated_tokens, 0),
            ("max_tokens", self.max_tokens, 1),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < least
            ):
                raise ConfigurationError(
                    f"ModelRequest.{name}",
                    f"got {value!r}",
                    f"use an integer >= {least}, or None",
                )


def _check_request_shape(request: ModelRequest) -> None:
    """Types a provider would otherwise trip over mid-call (``messages="hi"``, say)."""
    if request.domain not in REQUEST_DOMAINS:
        raise ConfigurationError(
            "ModelRequest.domain",
            f"unknown request domain {request.domain!r}"
            + did_you_mean(str(request.domain), REQUEST_DOMAINS),
            "use one of: " + ", ".join(REQUEST_DOMAINS),
        )
    messages = request.messages
    if messages is not None and (
        not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages)
    ):
        raise ConfigurationError(
            "ModelRequest.messages",
            f"must be a list of message mappings, got {describe(messages)}",
            'use [{"role": "user", "content": "..."}]',
        )
    temperature = request.temperature
    if temperature is not None and not (is_number(temperature) and math.isfinite(temperature)):
        raise ConfigurationError(
            "ModelRequest.temperature",
            f"must be a finite number or None, got {describe(temperature)}",
            "use e.g. 0.7, or None for the provider's default",
        )
    if request.extra is not None and not isinstance(request.extra, dict):
        raise ConfigurationError(
            "ModelRequest.extra",
            f"must be a mapping of extra body fields or None, got {describe(request.extra)}",
            'use e.g. {"top_p": 0.9}',
        )


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RateLimitHints(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a provider said about its own quotas (``x-ratelimit-*`` headers), if anything."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_seconds: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_seconds: float | None = None


class ModelResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A successful answer. ``content`` is the text (chat) or vectors (embeddings)."""

    content: Any
    usage: TokenUsage = TokenUsage()
    model: str | None = None
    rate_limits: RateLimitHints | None = None


class ProviderError(SluicegateError):
    """Base of the errors a provider raises for a failed call."""

    def __init__(
        self, message: str, *, status: int | None = None, rate_limits: RateLimitHints | None = None
    ) -> None:
        self.status = status
        self.rate_limits = rate_limits
        super().__init__(message)


class ProviderRateLimitedError(ProviderError):
    """The provider refused the call because of a rate limit (HTTP 429)."""

    def __init__(
        self,
        message: str = "rate limited",
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        rate_limits: RateLimitHints | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, rate_limits=rate_limits)


class ProviderFailureError(ProviderError):
    """The provider failed (5xx, malformed answer, connection error).

    ``retryable`` is false for failures a retry cannot fix (e.g. HTTP 400/401/404).
    ``retry_after`` is the server's own hint (``Retry-After`` on a 503, say): a retry waits at
    least that long. Unlike a rate limit, it does not lower the adaptive limit.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        rate_limits: RateLimitHints | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message, status=status, rate_limits=rate_limits)


class ProviderConnectionError(ProviderFailureError):
    """The endpoint could not be reached: refused, reset, DNS, TLS or connect timeout.

    ``url`` names the endpoint and ``cause`` the transport's own words. Connection failures
    count toward the circuit breaker (a dead endpoint fails fast), not toward the AIMD limit.
    """

    def __init__(self, message: str, *, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(message, retryable=True)


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time (its own or the transport's timeout)."""


@runtime_checkable
class Provider(Protocol):
    """One concrete call to a model endpoint.

    ``call`` is a trio checkpoint. On cancellation it raises ``trio.Cancelled`` and leaves no
    background work behind.
    """

    name: str

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse: ...
