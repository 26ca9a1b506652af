"""The OpenAI-compatible HTTP provider (vLLM, NVIDIA NIM, OpenAI, and the local emulator).

One :meth:`OpenAICompatibleProvider.call` is one HTTP request. Status codes and transport
failures are mapped onto the provider error taxonomy so the model-call boundary can classify
the outcome without knowing HTTP:

======================================  =====================================================
What happened                           Raised
======================================  =====================================================
200 with a well-formed body             (returns :class:`ModelResponse`)
429                                     :class:`ProviderRateLimitedError` (``retry_after``)
408, 504, or no answer in time          :class:`ProviderTimeoutError`
other 5xx                               :class:`ProviderFailureError` (``retryable=True``,
                                        ``retry_after`` from ``Retry-After`` if sent)
other 4xx, 3xx, malformed 200 body      :class:`ProviderFailureError` (``retryable=False``)
connection refused / reset, bad TLS...  :class:`ProviderFailureError` (``retryable=True``)
======================================  =====================================================

``x-ratelimit-*`` headers become :class:`RateLimitHints`, attached to the response and to every
error raised for an HTTP answer. The API key travels only in the ``Authorization`` header: it
is never part of a repr, an error message or a log line, and prompts or request bodies are
never echoed into errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import httpx
import msgspec
import trio
from attrs import define, field

from .._internal.checks import is_positive_finite
from ..errors import ConfigurationError
from ..requests.provider import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
    TokenUsage,
)
from . import openai_wire as wire
from .rate_limit_headers import parse_rate_limit_headers, parse_retry_after

_MAX_DETAIL = 64


# A header value may only hold visible ASCII; rejecting anything else up front keeps httpx or
# h11 from ever quoting the (secret) value in a "bad header" error.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def _usage(usage: wire.Usage | None) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    return TokenUsage(
        prompt_tokens=usage.prompt_tokens or 0, completion_tokens=usage.completion_tokens or 0
    )


def _encode_body(body: msgspec.Struct, extra: dict[str, Any] | None) -> bytes:
    if not extra:
        return wire.ENCODER.encode(body)
    # extra fields (seed, response_format, ...) are merged in and may override ours
    return wire.ENCODER.encode({**msgspec.to_builtins(body), **extra})


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _error_detail(body: bytes) -> str:
    """``type``/``code``/``param`` of an OpenAI-style error body; never its free-text message.

    Servers sometimes quote the offending input in ``message``; the identifiers are enough to
    act on and cannot leak a prompt.
    """
    try:
        parsed = wire.ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    detail = parsed.error
    if not isinstance(detail, wire.ErrorDetail):
        return ""
    parts = [
        f"{name}={_short(value)}"
        for name, value in (("type", detail.type), ("code", detail.code), ("param", detail.param))
        if value is not None
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _check_base_url(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    fix = "use an absolute http(s) URL such as 'http://127.0.0.1:8000/v1'"
    if not isinstance(value, str):
        raise ConfigurationError("OpenAICompatibleProvider.base_url", f"got {value!r}", fix)
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(
            "OpenAICompatibleProvider.base_url", f"not a valid URL ({exc})", fix
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            "OpenAICompatibleProvider.base_url", f"{value!r} is not an absolute http(s) URL", fix
        )


def _check_name(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            "OpenAICompatibleProvider.name", f"got {value!r}", "use a non-empty string"
        )


def _check_api_key(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    # The value is a secret: problems are described, never quoted.
    if value is None:
        return
    if not isinstance(value, str) or not _TOKEN_CHARS.fullmatch(value):
        raise ConfigurationError(
            "OpenAICompatibleProvider.api_key",
            "must be a non-empty string of visible ASCII characters (no spaces or newlines)",
            "pass the key exactly as issued, stripped of whitespace, or None for no auth",
        )


def _seconds_validator(name: str, fix: str) -> Callable[[object, object, object], None]:
    def check(_inst: object, _attr: object, value: object) -> None:
        if not is_positive_finite(value):
            raise ConfigurationError(f"OpenAICompatibleProvider.{name}", f"got {value!r}", fix)

    return check


_check_timeout = _seconds_validator("timeout", "use a number of seconds > 0")


_check_max_retry_after = _seconds_validator(
    "max_retry_after", "use a number of seconds > 0 (the longest Retry-After to honour)"
)


@define(kw_only=True, eq=False)
class OpenAICompatibleProvider:
    """An OpenAI-compatible endpoint over ``httpx.AsyncClient`` (implements :class:`Provider`).

    ``base_url`` is the API root (``http://host:8000/v1``); a root without the trailing ``/v1``
    gets it appended. Chat calls POST ``/v1/chat/completions``, embeddings POST
    ``/v1/embeddings``, health checks GET ``/v1/models``; the ``image`` domain is not served
    (non-retryable :class:`ProviderFailureError`).

    ``timeout`` bounds one whole attempt in seconds (``ModelRequest.timeout`` overrides it per
    call). ``max_retry_after`` caps a server's ``Retry-After`` (default 600 s), so one odd
    answer (an HTTP-date days ahead, say) cannot freeze an endpoint for that long. ``client``
    injects an existing ``httpx.AsyncClient`` (never closed by this object);
    ``transport`` builds an owned client on that transport (e.g. ``httpx.MockTransport``).
    The owned client has no connection-count limit so that request admission, not the
    connection pool, decides how many calls are in flight.

    Use as ``async with OpenAICompatibleProvider(...) as provider:`` or call :meth:`aclose`.
    """

    base_url: str = field(validator=_check_base_url)
    name: str = field(default="openai-compatible", validator=_check_name)
    api_key: str | None = field(default=None, repr=False, validator=_check_api_key)
    timeout: float = field(default=60.0, validator=_check_timeout)
    max_retry_after: float = field(default=600.0, validator=_check_max_retry_after)
    headers: Mapping[str, str] | None = None
    client: httpx.AsyncClient | None = field(default=None, repr=False)
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    _http: httpx.AsyncClient = field(init=False, repr=False)
    _owns_client: bool = field(init=False, repr=False)
    _api_root: str = field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.client is not None and self.transport is not None:
            raise ConfigurationError(
                "OpenAICompatibleProvider.transport",
                "both client and transport were given",
                "pass either an httpx.AsyncClient or a transport, not both",
            )
        root = self.base_url.rstrip("/")
        self._api_root = root if root.endswith("/v1") else root + "/v1"
        if self.client is not None:
            self._http = self.client
            self._owns_client = False
        else:
            self._http = httpx.AsyncClient(
                transport=self.transport,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            )
            self._owns_client = True

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned HTTP client (an injected one stays open). Idempotent; a checkpoint."""
        if self._owns_client:
            await self._http.aclose()
        else:
            await trio.lowlevel.checkpoint()

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        """Send one request and map its answer; see the module docstring for the error mapping.

        A checkpoint. The whole attempt (connect, send, wait, read) is bounded by the timeout.
        On cancellation the HTTP request is abandoned (its connection is closed, not reused)
        and ``trio.Cancelled`` propagates. Calling after :meth:`aclose` raises ``RuntimeError``
        (a programming error, deliberately not a :class:`ProviderError`).
        """
        timeout = request.timeout if request.timeout is not None else self.timeout
        body: msgspec.Struct | None
        if request.domain == "chat":
            method, path = "POST", wire.CHAT_COMPLETIONS_PATH
            body = wire.ChatCompletionRequest(
                model=model_id,
                messages=request.messages or [],
                max_tokens=request.max_tokens,
                temperature=request.temperature,
            )
        elif request.domain == "embedding":
            method, path = "POST", wire.EMBEDDINGS_PATH
            body = wire.EmbeddingRequest(model=model_id, input=request.input)
        elif request.domain == "healthcheck":
            method, path, body = "GET", wire.MODELS_PATH, None
        else:
            await trio.lowlevel.checkpoint()
            raise ProviderFailureError(
                f"{self.name}: domain {request.domain!r} is not supported by "
                "OpenAICompatibleProvider (chat, embedding and healthcheck are)",
                retryable=False,
            )
        content = None if body is None else _encode_body(body, request.extra)
        response = await self._send(method, path, content, timeout)
        hints = parse_rate_limit_headers(response.headers)
        status = response.status_code
        if status != 200:
            raise self._status_error(method, path, response, hints)
        return self._parse(request, model_id, method, path, response.content, hints)

    async def _send(
        self, method: str, path: str, content: bytes | None, limit_seconds: float
    ) -> httpx.Response:
        headers: dict[str, str] = dict(self.headers or {})
        if content is not None:
            headers["content-type"] = "application/json"
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key}"
        url = f"{self._api_root}/{path}"
        where = f"{method} /{path}"
        # httpx's own timeouts are per phase (connect, each read...); the cancel scope makes
        # the timeout a bound on the whole attempt, which is what ModelRequest.timeout means.
        with trio.move_on_after(limit_seconds) as scope:
            try:
                return await self._http.request(
                    method,
                    url,
                    content=content,
                    headers=headers,
                    timeout=httpx.Timeout(limit_seconds),
                )
            except httpx.TimeoutException as exc:
                raise ProviderTimeoutError(
                    f"{self.name}: {where} timed out after {limit_seconds}s ({type(exc).__name__})"
                ) from exc
            except httpx.LocalProtocolError:
                # Raised for our own request (e.g. a bad header); its text may quote a header
                # value, and headers can hold secrets, so neither the text nor the cause travels.
                raise ProviderFailureError(
                    f"{self.name}: {where} could not be sent (invalid request headers); "
                    "check the headers passed to OpenAICompatibleProvider",
                    retryable=False,
                ) from None
            except httpx.TransportError as exc:
                raise ProviderFailureError(
                    f"{self.name}: {where} failed: {type(exc).__name__}: {_short(exc)}",
                    retryable=True,
                ) from exc
            except httpx.HTTPError as exc:
                raise ProviderFailureError(
                    f"{self.name}: {where} failed: {type(exc).__name__}: {_short(exc)}",
                    retryable=False,
                ) from exc
        assert scope.cancelled_caught
        raise ProviderTimeoutError(f"{self.name}: {where} timed out after {limit_seconds}s")

    def _retry_after(self, response: httpx.Response) -> float | None:
        hint = parse_retry_after(response.headers)
        return None if hint is None else min(hint, self.max_retry_after)

    def _status_error(
        self, method: str, path: str, response: httpx.Response, hints: RateLimitHints | None
    ) -> ProviderError:
        status = response.status_code
        where = f"{method} /{path}"
        detail = _error_detail(response.content)
        if status == 429:
            return ProviderRateLimitedError(
                f"{self.name}: {where} rate limited (HTTP 429){detail}",
                retry_after=self._retry_after(response),
                rate_limits=hints,
            )
        if status in (408, 504):  # 504: a gateway gave up waiting for the model server
            return ProviderTimeoutError(
                f"{self.name}: {where} timed out (HTTP {status}){detail}",
                status=status,
                rate_limits=hints,
            )
        retryable = status >= 500
        return ProviderFailureError(
            f"{self.name}: {where} failed with HTTP {status}{detail}",
            status=status,
            retryable=retryable,
            # a 503 (overloaded, in maintenance) often says when to come back
            retry_after=self._retry_after(response) if retryable else None,
            rate_limits=hints,
        )

    def _parse(
        self,
        request: ModelRequest,
        model_id: str,
        method: str,
        path: str,
        content: bytes,
        hints: RateLimitHints | None,
    ) -> ModelResponse:
        try:
            if request.domain == "chat":
                chat = wire.CHAT_DECODER.decode(content)
                if not chat.choices:
                    raise msgspec.ValidationError("no choices")
                return ModelResponse(
                    content=chat.choices[0].message.content,
                    usage=_usage(chat.usage),
                    model=chat.model or model_id,
                    rate_limits=hints,
                )
            if request.domain == "embedding":
                embeddings = wire.EMBEDDING_DECODER.decode(content)
                vectors = [e.embedding for e in sorted(embeddings.data, key=lambda e: e.index)]
                return ModelResponse(
                    content=vectors,
                    usage=_usage(embeddings.usage),
                    model=embeddings.model or model_id,
                    rate_limits=hints,
                )
            models = wire.MODELS_DECODER.decode(content)
            return ModelResponse(
                content=[m.id for m in models.data], model=model_id, rate_limits=hints
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # A 200 we cannot read is almost always a misconfigured base_url (an HTML page,
            # another API); retrying would only repeat it.
            raise ProviderFailureError(
                f"{self.name}: {method} /{path} answered 200 with a body that is not an "
                f"OpenAI-compatible response ({type(exc).__name__}: {_short(exc)}). "
                "Fix: check base_url points at the API root (e.g. http://host:8000/v1)",
                status=200,
                retryable=False,
                rate_limits=hints,
            ) from None
