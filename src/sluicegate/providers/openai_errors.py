"""How an OpenAI-compatible endpoint's failures become provider errors a user can act on.

Every message names the call (provider name, method, full URL, model id), what went wrong
(status and the error body's ``type``/``code``/``param``, the server's own message, or the
transport's cause) and, for failures a retry cannot fix, what to change. Three things never
appear: the API key, the request body, and a server message that quotes the request (servers
sometimes echo the offending input; such a message is withheld).

=========================================  ================================================
What happened                              Raised
=========================================  ================================================
429                                        :class:`ProviderRateLimitedError`
408, 504, or no answer in time             :class:`ProviderTimeoutError`
other 5xx                                  :class:`ProviderFailureError` (retryable)
other 4xx, 3xx, malformed 200 body         :class:`ProviderFailureError` (not retryable)
refused, reset, DNS, TLS, connect timeout  :class:`ProviderConnectionError` (retryable)
=========================================  ================================================
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Mapping
from typing import Final

import httpx
import msgspec
from attrs import frozen

from ..requests.provider import (
    ModelRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
)
from . import openai_wire as wire
from .rate_limit_headers import parse_retry_after

_MAX_IDENTIFIER = 64


_MAX_MESSAGE = 300


_MAX_CAUSE = 200


# A server message sharing this many consecutive characters with the request is taken to quote
# it. Shorter request texts are looked for whole.
_QUOTE_WINDOW = 12


_SHORTEST_QUOTABLE = 4


_FIXES: Final[Mapping[int, str]] = {
    400: "check the request against what the endpoint accepts "
    "(ModelRequest.max_tokens, temperature, extra)",
    401: "check OpenAICompatibleProvider.api_key for this endpoint",
    403: "the API key may not use this model or endpoint; check its permissions",
    404: "check base_url (the API root, e.g. http://host:8000/v1) and the model id; "
    "GET {root}/models lists the models this endpoint serves",
    405: "check that base_url is the API root (e.g. http://host:8000/v1)",
    413: "the request is too large for this endpoint; shorten the prompt or input",
    422: "check the request against what the endpoint accepts "
    "(ModelRequest.max_tokens, temperature, extra)",
}


@frozen
class HttpCall:
    """The call an error is about: ``provider`` name, ``method``, full ``url`` (credentials
    removed), ``model_id`` and the API ``root`` (for fix hints)."""

    provider: str
    method: str
    url: str
    model_id: str
    root: str

    def __str__(self) -> str:
        return f"{self.provider}: {self.method} {self.url} (model {self.model_id!r})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def request_texts(request: ModelRequest) -> Iterator[str]:
    """The user-supplied texts of a request (message contents and inputs), for quote checks."""
    for message in request.messages or ():
        content = message.get("content") if isinstance(message, dict) else message
        yield from _texts(content)
    yield from _texts(request.input)


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _texts(item)


def quotes_request(message: str, request: ModelRequest) -> bool:
    """Whether ``message`` contains a piece of the request's texts (then it is withheld)."""
    for text in request_texts(request):
        if len(text) < _SHORTEST_QUOTABLE:
            continue
        if len(text) <= _QUOTE_WINDOW:
            if text in message:
                return True
            continue
        last = len(message) - _QUOTE_WINDOW
        if any(message[i : i + _QUOTE_WINDOW] in text for i in range(last + 1)):
            return True
    return False


def describe_error_body(body: bytes, request: ModelRequest) -> str:
    """`` (type=..., code=..., param=...): server said: "..."`` from an OpenAI-style error body,
    or ``""`` when the body is not one. The server's message is withheld if it quotes the
    request."""
    try:
        parsed = wire.ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    detail = parsed.error
    if isinstance(detail, str):
        detail = wire.ErrorDetail(message=detail)
    if detail is None:
        return ""
    parts = [
        f"{name}={_clip(str(value), _MAX_IDENTIFIER)}"
        for name, value in (("type", detail.type), ("code", detail.code), ("param", detail.param))
        if value is not None
    ]
    text = f" ({', '.join(parts)})" if parts else ""
    if detail.message:
        # Only the part that would be shown is checked: bounded work on any body size.
        message = _clip(" ".join(detail.message[: 4 * _MAX_MESSAGE].split()), _MAX_MESSAGE)
        if quotes_request(message, request):
            text += ": server message withheld (it quotes the request)"
        else:
            text += f': server said: "{message}"'
    return text


def status_error(
    call: HttpCall,
    request: ModelRequest,
    response: httpx.Response,
    hints: RateLimitHints | None,
    *,
    max_retry_after: float,
) -> ProviderError:
    """The provider error for a non-200 answer (see the module docstring for the mapping)."""
    status = response.status_code
    detail = describe_error_body(response.content, request)
    if status == 429:
        return ProviderRateLimitedError(
            f"{call} rate limited (HTTP 429){detail}",
            retry_after=parse_retry_after(response.headers, max_seconds=max_retry_after),
            rate_limits=hints,
        )
    if status in (408, 504):  # 504: a gateway gave up waiting for the model server
        return ProviderTimeoutError(
            f"{call} timed out (HTTP {status}){detail}", status=status, rate_limits=hints
        )
    retryable = status >= 500
    if retryable:
        fix = ""
    elif 300 <= status < 400:
        location = response.headers.get("location")
        where = f" ({_clip(location, _MAX_CAUSE)})" if location else ""
        fix = f". Fix: redirects are not followed; point base_url at the final location{where}"
    else:
        advice = _FIXES.get(status, "the endpoint refused the request; see its message")
        fix = ". Fix: " + advice.replace("{root}", call.root)
    return ProviderFailureError(
        f"{call} failed with HTTP {status}{detail}{fix}",
        status=status,
        retryable=retryable,
        # a 503 (overloaded, in maintenance) often says when to come back
        retry_after=(
            parse_retry_after(response.headers, max_seconds=max_retry_after) if retryable else None
        ),
        rate_limits=hints,
    )


def malformed_answer_error(
    call: HttpCall, problem: Exception, hints: RateLimitHints | None
) -> ProviderFailureError:
    """A 200 whose body is not an OpenAI-compatible answer: almost always a wrong base_url
    (an HTML page, another API), so retrying would only repeat it."""
    return ProviderFailureError(
        f"{call} answered 200 with a body that is not an OpenAI-compatible response "
        f"({type(problem).__name__}: {_clip(str(problem), _MAX_IDENTIFIER)}). "
        "Fix: check that base_url points at the API root (e.g. http://host:8000/v1)",
        status=200,
        retryable=False,
        rate_limits=hints,
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups among them."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def _kind(exc: httpx.TransportError) -> str:
    """What kind of connection failure ``exc`` is, from exception types (never their text)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.ProxyError):
        return "proxy failed"
    for inner in _chain(exc):
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return "connection reset"
        if isinstance(inner, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(inner, ssl.SSLError):
            return "TLS failed"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    return "connection lost"


def _cause_text(exc: httpx.TransportError) -> str:
    # The innermost OS-level error says the most ("[Errno 111] ... Connection refused");
    # httpx's own text is often only "all attempts to connect ... failed".
    detail: BaseException = exc
    for inner in _chain(exc):
        if isinstance(inner, OSError) and inner.strerror:
            detail = inner
            break
    return f"{_kind(exc)} ({type(detail).__name__}: {_clip(str(detail), _MAX_CAUSE)})"


def is_connection_failure(exc: httpx.TransportError) -> bool:
    """Refused, reset, DNS, TLS, proxy, connect timeout: the endpoint could not be reached or
    dropped the connection, as opposed to a slow answer or a protocol error."""
    return isinstance(exc, (httpx.NetworkError, httpx.ConnectTimeout, httpx.ProxyError))


def connection_error(call: HttpCall, exc: httpx.TransportError) -> ProviderConnectionError:
    """A :class:`ProviderConnectionError` naming the endpoint URL and the cause up front."""
    cause = _cause_text(exc)
    return ProviderConnectionError(
        f"{call}: cannot reach the endpoint: {cause}. "
        "Fix: check that the endpoint is up and that base_url (host and port) is right",
        url=call.url,
        cause=cause,
    )
