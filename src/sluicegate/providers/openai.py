"""The OpenAI-compatible HTTP provider (vLLM, NVIDIA NIM, OpenAI, and the local emulator).

One :meth:`OpenAICompatibleProvider.call` is one HTTP request. Status codes and transport
failures are mapped onto the provider error taxonomy (see
:mod:`sluicegate.providers.openai_errors`) so the model-call boundary can classify the outcome
without knowing HTTP. The bodies and header names are those of
:mod:`sluicegate.providers.openai_wire`, shared with the emulator.

``x-ratelimit-*`` headers become :class:`RateLimitHints`, attached to the response and to every
error raised for an HTTP answer. The API key travels only in the ``Authorization`` header: it
is never part of a repr, an error message or a log line, and request bodies are never echoed
into errors.

The connection pool is sized, never unbounded: httpcore's pool bookkeeping costs grow with
the square of the connections one client tracks (encode/httpcore#1035), and a keep-alive
limit below the calls in flight makes it close and reopen connections. The owned pool holds
``max_connections`` connections, all kept alive, split over small httpx clients (see
:mod:`sluicegate.providers.http_clients`); request admission keeps the calls in flight at or
under the endpoint's cap, so size ``max_connections`` to that cap.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Final

import attrs
import httpx
import msgspec
import trio
from attrs import define, field

from .._internal.checks import describe, did_you_mean, is_positive_finite
from ..errors import ConfigurationError
from ..requests.provider import (
    ModelRequest,
    ModelResponse,
    ProviderFailureError,
    ProviderTimeoutError,
    RateLimitHints,
    TokenUsage,
)
from . import openai_wire as wire
from .http_clients import HttpClientShards
from .openai_errors import (
    HttpCall,
    connection_error,
    is_connection_failure,
    malformed_answer_error,
    status_error,
)
from .rate_limit_headers import DEFAULT_MAX_RETRY_AFTER, parse_rate_limit_headers

DEFAULT_MAX_CONNECTIONS: Final = 64
"""Connections of an owned client when ``max_connections`` is not given."""


_CAUSE_LIMIT = 200


# A header value may only hold visible ASCII; rejecting anything else up front keeps httpx or
# h11 from ever quoting the (secret) value in a "bad header" error.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")


class UnboundedConnectionPoolWarning(UserWarning):
    """An injected ``httpx.AsyncClient`` has no connection limit (see the module docstring)."""


class LargeConnectionPoolWarning(UserWarning):
    """An injected ``httpx.AsyncClient`` pools more than :data:`LARGE_POOL` connections."""


LARGE_POOL: Final = 16
"""Connections one injected httpx client may pool before the provider warns: httpcore's pool
bookkeeping grows with the square of one pool's connections, so one 64-connection client
can saturate the client CPU (measured: a 2,000-row run took 55 s instead of 19 s once in three
rounds). The provider's own pool is split over clients of at most 8 connections."""


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


def _field(name: str) -> str:
    return f"OpenAICompatibleProvider.{name}"


def _check_base_url(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    fix = "use an absolute http(s) URL such as 'http://127.0.0.1:8000/v1'"
    if not isinstance(value, str):
        raise ConfigurationError(_field("base_url"), f"got {describe(value)}", fix)
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(_field("base_url"), f"not a valid URL ({exc})", fix) from None
    if url.scheme not in ("http", "https") or not url.host:
        hint = ""
        if url.scheme and url.host:
            hint = did_you_mean(url.scheme, ("http", "https"))
        elif url.scheme and not url.host:  # "localhost:8000/v1" parses as scheme "localhost"
            hint = f" (did you mean 'http://{value}'?)"
        raise ConfigurationError(
            _field("base_url"), f"{value!r} is not an absolute http(s) URL{hint}", fix
        )
    if url.query or url.fragment:
        raise ConfigurationError(
            _field("base_url"),
            "has a query or fragment; request paths are appended to base_url",
            "give the API root only (e.g. 'http://host:8000/v1'); send other parameters "
            "through headers or ModelRequest.extra",
        )


def _check_name(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(_field("name"), f"got {describe(value)}", "use a non-empty string")


def _check_api_key(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    # The value is a secret: problems are described, never quoted.
    if value is None:
        return
    if not isinstance(value, str) or not _TOKEN_CHARS.fullmatch(value):
        raise ConfigurationError(
            _field("api_key"),
            "must be a non-empty string of visible ASCII characters (no spaces or newlines)",
            "pass the key exactly as issued, stripped of whitespace, or None for no auth",
        )


def _check_headers(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            _field("headers"),
            f"got a {type(value).__name__}",
            "use a mapping of header names to values, e.g. {'OpenAI-Organization': 'org-1'}",
        )
    for name, header_value in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(
                _field("headers"),
                f"{describe(name)} is not a valid header name",
                "use a header name of letters, digits and '-'",
            )
        # Values may be secrets: say what is wrong, never quote them.
        if not isinstance(header_value, str) or not _HEADER_VALUE.fullmatch(header_value):
            raise ConfigurationError(
                _field(f"headers[{name!r}]"),
                "must be a string of printable ASCII characters (no newlines)",
                "pass the value exactly as the endpoint expects it",
            )


def _check_seconds(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not is_positive_finite(value):
        raise ConfigurationError(
            _field(attr.name),
            f"got {describe(value)}",
            "use a finite number of seconds > 0 (an int or a float, not a bool)",
        )


def _check_max_connections(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(
            _field("max_connections"),
            f"got {describe(value)}",
            "use an integer >= 1: the endpoint's max_parallel_requests "
            f"(default {DEFAULT_MAX_CONNECTIONS})",
        )


def _check_client(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, httpx.AsyncClient):
        raise ConfigurationError(
            _field("client"),
            f"got a {type(value).__name__}",
            "pass an httpx.AsyncClient (not a sync httpx.Client), or None",
        )


def _check_transport(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, httpx.AsyncBaseTransport):
        raise ConfigurationError(
            _field("transport"),
            f"got a {type(value).__name__}",
            "pass an httpx async transport (e.g. httpx.MockTransport), or None",
        )


def _pool_limit(client: httpx.AsyncClient) -> int | bool | None:
    """The client's connection limit; ``False`` when it cannot be read.

    httpx offers no public accessor for a client's pool limits, so this reads httpx's and
    httpcore's private attributes, best effort: any change in their layout gives ``False``
    (no warning), never an error.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    limit = getattr(pool, "_max_connections", False)
    return limit if limit is None or isinstance(limit, int) else False


@define(kw_only=True, eq=False)
class OpenAICompatibleProvider:
    """An OpenAI-compatible endpoint over ``httpx.AsyncClient`` (implements :class:`Provider`).

    ``base_url`` is the API root (``http://host:8000/v1``); a root without the trailing ``/v1``
    gets it appended. Chat calls POST ``/v1/chat/completions``, embeddings POST
    ``/v1/embeddings``, health checks GET ``/v1/models``; the ``image`` domain is not served
    (non-retryable :class:`ProviderFailureError`).

    ``timeout`` bounds one whole attempt in seconds (``ModelRequest.timeout`` overrides it per
    call). ``max_retry_after`` caps a server's ``Retry-After`` (default 600 s), so one odd
    answer (an HTTP-date days ahead, say) cannot freeze an endpoint for that long.

    ``max_connections`` sizes the owned client's pool (default
    :data:`DEFAULT_MAX_CONNECTIONS`); give it the endpoint's ``max_parallel_requests`` so that
    every admitted call finds a kept-alive connection. ``client`` injects an existing
    ``httpx.AsyncClient``, used as it is and never closed by this object (a warning,
    :class:`UnboundedConnectionPoolWarning`, says so when its pool is unbounded); it excludes
    ``transport`` and a non-default ``max_connections``. ``transport`` builds an owned client
    on that transport (e.g. ``httpx.MockTransport``).

    Every argument is validated here: a bad one raises :class:`ConfigurationError` naming it.
    Use as ``async with OpenAICompatibleProvider(...) as provider:`` or call :meth:`aclose`.
    """

    base_url: str = field(validator=_check_base_url)
    name: str = field(default="openai-compatible", validator=_check_name)
    api_key: str | None = field(default=None, repr=False, validator=_check_api_key)
    timeout: float = field(default=60.0, validator=_check_seconds)
    max_retry_after: float = field(default=DEFAULT_MAX_RETRY_AFTER, validator=_check_seconds)
    max_connections: int = field(default=DEFAULT_MAX_CONNECTIONS, validator=_check_max_connections)
    headers: Mapping[str, str] | None = field(default=None, repr=False, validator=_check_headers)
    client: httpx.AsyncClient | None = field(default=None, repr=False, validator=_check_client)
    transport: httpx.AsyncBaseTransport | None = field(
        default=None, repr=False, validator=_check_transport
    )

    _http: HttpClientShards = field(init=False, repr=False)
    _api_root: str = field(init=False, repr=False)
    _display_root: str = field(init=False, repr=False)
    _base_headers: dict[str, str] = field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._check_combination()
        root = self.base_url.rstrip("/")
        self._api_root = root if root.endswith("/v1") else root + "/v1"
        # Error messages show the URL without credentials a user may have put in it.
        self._display_root = str(httpx.URL(self._api_root).copy_with(userinfo=b""))
        headers = {k.lower(): v for k, v in (self.headers or {}).items()}
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key}"
        self._base_headers = headers
        if self.client is not None:
            self._http = HttpClientShards.wrap(self.client)
            limit = _pool_limit(self.client)
            if limit is not None and limit >= sys.maxsize:
                warnings.warn(
                    f"{self.name}: the httpx.AsyncClient given to OpenAICompatibleProvider has "
                    "an unbounded connection pool, whose bookkeeping grows quadratically with "
                    "the calls in flight; build it with httpx.Limits(max_connections=<the "
                    "endpoint's max_parallel_requests>)",
                    UnboundedConnectionPoolWarning,
                    stacklevel=3,
                )
            elif limit is not None and limit > LARGE_POOL:
                warnings.warn(
                    f"{self.name}: the httpx.AsyncClient given to OpenAICompatibleProvider pools "
                    f"{limit} connections in one client; httpcore's bookkeeping grows with the "
                    "square of one pool's connections and can saturate the client's CPU. Leave "
                    "client unset and pass max_connections (the provider splits its pool over "
                    f"clients of at most 8), or keep each client to {LARGE_POOL} connections",
                    LargeConnectionPoolWarning,
                    stacklevel=3,
                )
        else:
            self._http = HttpClientShards.build(self.max_connections, self.transport)

    def _check_combination(self) -> None:
        if self.client is not None and self.transport is not None:
            raise ConfigurationError(
                _field("transport"),
                "both client and transport were given",
                "pass either an httpx.AsyncClient or a transport, not both",
            )
        if self.client is not None and self.max_connections != DEFAULT_MAX_CONNECTIONS:
            raise ConfigurationError(
                _field("max_connections"),
                "given together with client, whose pool is used as it is",
                "size your client's pool (httpx.Limits(max_connections=...)) or drop client",
            )
        if self.api_key is not None and any(
            k.lower() == "authorization" for k in (self.headers or {})
        ):
            raise ConfigurationError(
                _field("headers"),
                "has an Authorization header and api_key is set too",
                "pass the key once: either api_key or headers['Authorization']",
            )

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned HTTP clients (an injected one stays open). Idempotent; a checkpoint."""
        await trio.lowlevel.checkpoint()
        await self._http.aclose()

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        """Send one request and map its answer (see :mod:`~sluicegate.providers.openai_errors`).

        A checkpoint. The whole attempt (waiting for a pooled connection, connect, send, wait,
        read) is bounded by the timeout. On cancellation the HTTP request is abandoned (its
        connection is closed, not reused) and ``trio.Cancelled`` propagates. Calling after
        :meth:`aclose` raises ``RuntimeError`` (a programming error, not a provider error).
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
                "OpenAICompatibleProvider (chat, embedding and healthcheck are). Fix: send "
                "image requests to a provider that serves them",
                retryable=False,
            )
        call = HttpCall(
            provider=self.name,
            method=method,
            url=f"{self._display_root}/{path}",
            model_id=model_id,
            root=self._display_root,
        )
        content = None if body is None else _encode_body(body, request.extra)
        response = await self._send(call, f"{self._api_root}/{path}", content, timeout)
        hints = parse_rate_limit_headers(response.headers)
        if response.status_code != 200:
            raise status_error(call, request, response, hints, max_retry_after=self.max_retry_after)
        return self._parse(call, request, response.content, hints)

    async def _send(
        self, call: HttpCall, url: str, content: bytes | None, limit_seconds: float
    ) -> httpx.Response:
        headers = self._base_headers
        if content is not None:
            headers = {**headers, "content-type": "application/json"}
        # httpx's own timeouts are per phase (connect, each read...); the cancel scope makes
        # the timeout a bound on the whole attempt, which is what ModelRequest.timeout means.
        with trio.move_on_after(limit_seconds) as scope:
            try:
                return await self._http.request(
                    call.method,
                    url,
                    content=content,
                    headers=headers,
                    timeout=httpx.Timeout(limit_seconds),
                )
            except httpx.TransportError as exc:
                if is_connection_failure(exc):
                    raise connection_error(call, exc) from exc
                if isinstance(exc, httpx.TimeoutException):
                    raise ProviderTimeoutError(
                        f"{call} timed out after {limit_seconds}s ({type(exc).__name__})"
                    ) from exc
                if isinstance(exc, httpx.LocalProtocolError):
                    # Raised for our own request (e.g. a bad header); its text may quote a
                    # header value, which can be a secret: neither text nor cause travels.
                    raise ProviderFailureError(
                        f"{call} could not be sent (invalid request headers). "
                        "Fix: check the headers passed to OpenAICompatibleProvider",
                        retryable=False,
                    ) from None
                # a protocol error from the server, an unsupported scheme...
                raise ProviderFailureError(
                    f"{call} failed: {type(exc).__name__}: {str(exc)[:_CAUSE_LIMIT]}",
                    retryable=not isinstance(exc, httpx.UnsupportedProtocol),
                ) from exc
        assert scope.cancelled_caught
        raise ProviderTimeoutError(f"{call} timed out after {limit_seconds}s")

    def _parse(
        self, call: HttpCall, request: ModelRequest, content: bytes, hints: RateLimitHints | None
    ) -> ModelResponse:
        try:
            if request.domain == "chat":
                chat = wire.CHAT_DECODER.decode(content)
                if not chat.choices:
                    raise msgspec.ValidationError("no choices")
                return ModelResponse(
                    content=chat.choices[0].message.content,
                    usage=_usage(chat.usage),
                    model=chat.model or call.model_id,
                    rate_limits=hints,
                )
            if request.domain == "embedding":
                embeddings = wire.EMBEDDING_DECODER.decode(content)
                vectors = [e.embedding for e in sorted(embeddings.data, key=lambda e: e.index)]
                return ModelResponse(
                    content=vectors,
                    usage=_usage(embeddings.usage),
                    model=embeddings.model or call.model_id,
                    rate_limits=hints,
                )
            models = wire.MODELS_DECODER.decode(content)
            return ModelResponse(
                content=[m.id for m in models.data], model=call.model_id, rate_limits=hints
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise malformed_answer_error(call, exc, hints) from None
