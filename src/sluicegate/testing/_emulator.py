"""A local OpenAI-compatible endpoint for tests, demos and capacity experiments.

The emulator is a small HTTP/1.1 server (trio sockets, h11 for the protocol) that serves
``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /health``
on a loopback address. Behind it sits a :class:`~sluicegate.SimulatedProvider`, so it has the
same hidden concurrency capacity, hidden requests-per-minute quota, seeded latency and failure
injection, but answers with real HTTP: ``429`` with ``Retry-After`` / ``retry-after-ms`` and
``x-ratelimit-*`` headers, ``5xx`` for injected failures, ``504`` after an injected hang.

In code::

    async with serve_emulator(EmulatorConfig(capacity=8, latency_seconds=0.01)) as emulator:
        async with OpenAICompatibleProvider(base_url=emulator.base_url) as provider:
            ...
        print(emulator.stats)

From a shell: ``python -m sluicegate.testing.emulator --port 8000 --capacity 8``.

The emulator binds loopback addresses only: it has no authentication worth the name and must
never be reachable from another machine.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import msgspec
import trio
from attrs import define, field

from .._internal.checks import describe, is_positive_finite
from ..errors import ConfigurationError
from ..providers import openai_wire as wire
from ..providers.faults import FaultRule
from ..providers.latency import LatencyDistribution
from ..providers.rate_limit_headers import rate_limit_header_items, retry_after_header_items
from ..providers.simulated import SimulatedProvider, SimulatedProviderStats
from ..requests.provider import (
    ModelRequest,
    ModelResponse,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)

__all__ = ["Emulator", "EmulatorConfig", "EmulatorStats", "serve_emulator"]


_log = logging.getLogger("sluicegate.emulator")


_RECEIVE_BYTES = 65536


_JSON = b"application/json"


_CHAT = "/v1/" + wire.CHAT_COMPLETIONS_PATH


_EMBEDDINGS = "/v1/" + wire.EMBEDDINGS_PATH


_MODELS = "/v1/" + wire.MODELS_PATH


_ROUTES = (_MODELS, _CHAT, _EMBEDDINGS)


_OWNER = "sluicegate-emulator"


_DEFAULT_LATENCY = 0.01


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the emulator listens and behaves. Validated at construction.

    ``host`` must be a loopback address (``127.0.0.1``, ``::1``, ``localhost``); ``port=0``
    picks a free port. The behaviour fields (latency, hidden capacity and quotas, failure and
    timeout injection, scripted ``faults``) mean what they mean on
    :class:`~sluicegate.SimulatedProvider`; ``failure_status`` is the 5xx status a random
    failure answers with (a scripted fault answers its own status). ``models`` restricts the
    accepted model ids (empty: any id is accepted; unknown ids answer 404). With ``api_key``
    set, ``/v1/*`` requires ``Authorization: Bearer <api_key>`` (401 otherwise).
    ``idle_timeout_seconds`` closes keep-alive connections idle that long; ``max_body_bytes``
    bounds a request body (413).
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    latency_seconds: float = _DEFAULT_LATENCY
    latency_jitter: float = 0.0
    latency: LatencyDistribution | None = None
    capacity: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    retry_after_seconds: float | None = 1.0
    rejection_latency_seconds: float = 0.0
    failure_rate: float = 0.0
    failure_status: int = 500
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    faults: tuple[FaultRule, ...] = ()
    completion_tokens: int = 64
    embedding_dimensions: int = 8
    models: tuple[str, ...] = ()
    api_key: str | None = None
    idle_timeout_seconds: float = 60.0
    max_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not _is_loopback(self.host):
            raise ConfigurationError(
                "EmulatorConfig.host",
                f"{self.host!r} is not a loopback address; the emulator refuses to listen "
                "where other machines could reach it",
                "use '127.0.0.1', '::1' or 'localhost'",
            )
        if not isinstance(self.port, int) or isinstance(self.port, bool):
            raise ConfigurationError(
                "EmulatorConfig.port", f"got {self.port!r}", "use an integer in 0..65535"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(
                "EmulatorConfig.port",
                f"{self.port} is out of range",
                "use 0 (any free port) or a port in 1..65535",
            )
        if not is_positive_finite(self.idle_timeout_seconds):
            raise ConfigurationError(
                "EmulatorConfig.idle_timeout_seconds",
                f"got {describe(self.idle_timeout_seconds)}",
                "use a finite number of seconds > 0",
            )
        body = self.max_body_bytes
        if not isinstance(body, int) or isinstance(body, bool) or body < 1:
            raise ConfigurationError(
                "EmulatorConfig.max_body_bytes", f"got {describe(body)}", "use an integer >= 1"
            )
        self._check_models()
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ConfigurationError(
                "EmulatorConfig.api_key",
                "must be a non-empty string",
                "pass None to accept unauthenticated requests",
            )
        if callable(self.faults):
            raise ConfigurationError(
                "EmulatorConfig.faults",
                "got a callable",
                "use a tuple of FaultRule (a script function works on SimulatedProvider only)",
            )
        if self.latency is not None and (
            self.latency_seconds != _DEFAULT_LATENCY or self.latency_jitter != 0.0
        ):
            raise ConfigurationError(
                "EmulatorConfig.latency",
                "given together with latency_seconds or latency_jitter",
                "describe the latency once: either latency=<distribution> or "
                "latency_seconds (+ latency_jitter)",
            )
        # One source of truth for the behaviour knobs: SimulatedProvider's validators.
        try:
            provider = self.build_provider()
        except ConfigurationError as exc:
            name = exc.field.removeprefix("SimulatedProvider.")
            raise ConfigurationError(f"EmulatorConfig.{name}", exc.problem, exc.fix) from None
        # a list of rules is accepted and stored as a tuple, so the config stays frozen
        msgspec.structs.force_setattr(self, "faults", provider.faults)

    def _check_models(self) -> None:
        models = self.models
        if isinstance(models, str) or not isinstance(models, (tuple, list)):
            raise ConfigurationError(
                "EmulatorConfig.models",
                f"got {describe(models)}",
                "use a tuple of model ids, e.g. ('model-a',), or () to accept any id",
            )
        for model in models:
            if not isinstance(model, str) or not model:
                raise ConfigurationError(
                    "EmulatorConfig.models",
                    f"holds {describe(model)}",
                    "use non-empty strings as model ids",
                )
        # a list is accepted and stored as a tuple, so the config stays hashable and frozen
        msgspec.structs.force_setattr(self, "models", tuple(models))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'<redacted>' if name == 'api_key' and value is not None else repr(value)}"
            for name, value in msgspec.structs.asdict(self).items()
        )
        return f"EmulatorConfig({shown})"

    def build_provider(self) -> SimulatedProvider:
        """The :class:`SimulatedProvider` that decides every answer of this emulator."""
        latency: dict[str, Any] = (
            {"latency_seconds": self.latency_seconds, "latency_jitter": self.latency_jitter}
            if self.latency is None
            else {"latency": self.latency}
        )
        return SimulatedProvider(
            name="emulator",
            seed=self.seed,
            **latency,
            capacity=self.capacity,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            retry_after_seconds=self.retry_after_seconds,
            rejection_latency_seconds=self.rejection_latency_seconds,
            failure_rate=self.failure_rate,
            failure_status=self.failure_status,
            faults=self.faults,
            timeout_rate=self.timeout_rate,
            timeout_seconds=self.timeout_seconds,
            completion_tokens=self.completion_tokens,
            embedding_dimensions=self.embedding_dimensions,
            publish_rate_limit_hints=True,
        )


class EmulatorStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of an emulator: HTTP-level counters plus its provider's counters.

    ``requests`` counts every HTTP request read (health checks included);
    ``responses_by_status`` maps status codes to counts; ``provider`` counts model calls.
    """

    provider: SimulatedProviderStats
    connections_opened: int
    connections_active: int
    requests: int
    responses_by_status: dict[int, int]


class _HealthBody(msgspec.Struct):
    status: str


_Headers = list[tuple[bytes, bytes]]


class _BodyTooLargeError(Exception):
    """A request body exceeded ``EmulatorConfig.max_body_bytes``."""


def _header_bytes(items: list[tuple[str, str]]) -> _Headers:
    return [(name.encode("ascii"), value.encode("ascii")) for name, value in items]


def _error(
    status: int, message: str, kind: str, *, code: str | None = None, param: str | None = None
) -> tuple[int, _Headers, bytes]:
    detail = wire.ErrorDetail(message=message, type=kind, code=code, param=param)
    body = wire.ErrorBody(error=detail)
    return status, [], wire.ENCODER.encode(body)


@define(eq=False)
class Emulator:
    """A running emulator (from :func:`serve_emulator`). ``base_url`` is ``http://host:port``.

    Point :class:`~sluicegate.OpenAICompatibleProvider` at ``base_url`` (``/v1`` is appended
    by the provider). ``provider`` is the live :class:`SimulatedProvider`: its
    ``set_capacity`` / ``set_requests_per_minute`` change the limits while serving.
    """

    config: EmulatorConfig
    provider: SimulatedProvider
    host: str
    port: int
    _connections_opened: int = field(init=False, default=0)
    _connections_active: int = field(init=False, default=0)
    _requests: int = field(init=False, default=0)
    _responses_by_status: dict[int, int] = field(init=False, factory=dict)
    _completion_ids: int = field(init=False, default=0)

    @property
    def base_url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:40123``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stats(self) -> EmulatorStats:
        """A frozen snapshot of the counters."""
        return EmulatorStats(
            provider=self.provider.stats,
            connections_opened=self._connections_opened,
            connections_active=self._connections_active,
            requests=self._requests,
            responses_by_status=dict(self._responses_by_status),
        )

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """Serve one connection until the peer closes it, it idles out, or the caller cancels.

        :func:`serve_emulator` runs this for every accepted connection (``trio.serve_listeners``
        handler); call it yourself only to serve the emulator on listeners of your own, which
        must be loopback too. Each connection runs in its own task, one request at a time
        (HTTP/1.1 keep-alive, no pipelining); concurrency comes from the client opening
        several connections. Closes ``stream`` when it returns; never raises for a broken or
        misbehaving peer; on cancellation the in-flight request is abandoned and
        ``trio.Cancelled`` propagates.
        """
        self._connections_opened += 1
        self._connections_active += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event: Any = None
                body: bytes | None = None
                try:
                    # Bounds the wait for the next request on an idle keep-alive connection
                    # (and a peer that stalls mid-request), never the handling itself.
                    with trio.move_on_after(self.config.idle_timeout_seconds):
                        event = await self._next_event(stream, conn)
                        if isinstance(event, h11.Request):
                            self._requests += 1
                            body = await self._read_body(stream, conn)
                except _BodyTooLargeError:
                    await self._send(
                        stream,
                        conn,
                        *_error(413, "request body too large", "invalid_request_error"),
                    )
                    return
                if not isinstance(event, h11.Request) or body is None:
                    return  # peer closed, idled out, or stalled mid-body
                status, headers, payload = await self._respond(event, body)
                await self._send(stream, conn, status, headers, payload)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with trio.move_on_after(1):
                    await self._send(
                        stream,
                        conn,
                        *_error(
                            exc.error_status_hint, "malformed HTTP request", "invalid_request_error"
                        ),
                    )
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass
        except Exception:
            # One broken connection must never take the server down.
            _log.exception("emulator connection handler failed")
        finally:
            self._connections_active -= 1
            await stream.aclose()

    async def _next_event(self, stream: trio.SocketStream, conn: h11.Connection) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(_RECEIVE_BYTES))
                continue
            return event

    async def _read_body(self, stream: trio.SocketStream, conn: h11.Connection) -> bytes:
        """The request body; raises :class:`_BodyTooLargeError` past ``max_body_bytes``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(stream, conn)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.config.max_body_bytes:
                    raise _BodyTooLargeError
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise h11.RemoteProtocolError("unexpected event while reading a request body")

    async def _send(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        headers: _Headers,
        payload: bytes,
    ) -> None:
        self._responses_by_status[status] = self._responses_by_status.get(status, 0) + 1
        all_headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(payload)).encode()),
            (b"server", b"sluicegate-emulator"),
            *headers,
        ]
        parts = (
            conn.send(h11.Response(status_code=status, headers=all_headers)),
            conn.send(h11.Data(data=payload)),
            conn.send(h11.EndOfMessage()),
        )
        await stream.send_all(b"".join(p for p in parts if p))

    async def _respond(self, request: h11.Request, body: bytes) -> tuple[int, _Headers, bytes]:
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").partition("?")[0]
        if path == "/health":
            if method != "GET":
                return _error(405, "use GET", "invalid_request_error")
            return 200, [], wire.ENCODER.encode(_HealthBody(status="ok"))
        if path not in _ROUTES:
            return _error(404, f"no route for {path}", "invalid_request_error", code="not_found")
        if not self._authorized(request):
            return _error(
                401, "invalid or missing API key", "invalid_request_error", code="invalid_api_key"
            )
        if path == _MODELS:
            if method != "GET":
                return _error(405, "use GET", "invalid_request_error")
            listing = wire.ModelList(
                data=[wire.ModelInfo(id=m, owned_by=_OWNER) for m in self.config.models]
            )
            return 200, [], wire.ENCODER.encode(listing)
        if method != "POST":
            return _error(405, "use POST", "invalid_request_error")
        model_request: ModelRequest
        try:
            if path == _CHAT:
                chat = wire.CHAT_REQUEST_DECODER.decode(body)
                model = chat.model
                structured = {
                    key: value
                    for key, value in (
                        ("response_format", chat.response_format),
                        ("guided_json", chat.guided_json),
                    )
                    if value is not None
                }
                model_request = ModelRequest(
                    domain="chat",
                    messages=chat.messages,
                    max_tokens=chat.completion_limit,
                    temperature=chat.temperature,
                    extra=structured or None,
                )
            else:
                embedding = wire.EMBEDDING_REQUEST_DECODER.decode(body)
                model = embedding.model
                model_request = ModelRequest(domain="embedding", input=embedding.input)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(400, str(exc), "invalid_request_error", code="invalid_body")
        if self.config.models and model not in self.config.models:
            return _error(
                404,
                f"model {model!r} does not exist",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        return await self._call_model(model, model_request)

    def _authorized(self, request: h11.Request) -> bool:
        expected = self.config.api_key
        if expected is None:
            return True
        for name, value in request.headers:
            if name == b"authorization":
                return hmac.compare_digest(value, b"Bearer " + expected.encode())
        return False

    async def _call_model(self, model: str, request: ModelRequest) -> tuple[int, _Headers, bytes]:
        try:
            response = await self.provider.call(model, request)
        except ProviderRateLimitedError as exc:
            status, headers, payload = _error(429, str(exc), "requests", code="rate_limit_exceeded")
            if exc.retry_after is not None:
                headers.extend(_header_bytes(retry_after_header_items(exc.retry_after)))
            headers.extend(_header_bytes(rate_limit_header_items(exc.rate_limits)))
            return status, headers, payload
        except ProviderTimeoutError as exc:
            return _error(504, str(exc), "server_error", code="timeout")
        except ProviderFailureError as exc:
            status = exc.status if exc.status is not None else self.config.failure_status
            if status >= 500:
                status, headers, payload = _error(
                    status, str(exc), "server_error", code="internal_error"
                )
            else:
                status, headers, payload = _error(status, str(exc), "invalid_request_error")
            headers.extend(_header_bytes(rate_limit_header_items(exc.rate_limits)))
            return status, headers, payload
        return (
            200,
            _header_bytes(rate_limit_header_items(response.rate_limits)),
            self._encode_answer(model, request, response),
        )

    def _encode_answer(self, model: str, request: ModelRequest, response: ModelResponse) -> bytes:
        usage = wire.Usage(
            prompt_tokens=response.usage.prompt_tokens,
            completion_tokens=response.usage.completion_tokens,
            total_tokens=response.usage.total_tokens,
        )
        if request.domain == "embedding":
            vectors = enumerate(response.content)
            items = [wire.Embedding(index=i, embedding=vector) for i, vector in vectors]
            return wire.ENCODER.encode(wire.EmbeddingList(data=items, model=model, usage=usage))
        self._completion_ids += 1
        return wire.ENCODER.encode(
            wire.ChatCompletion(
                id=f"chatcmpl-emulator-{self._completion_ids}",
                # Timing-free and seed-stable bodies matter more here than a real timestamp.
                created=0,
                model=model,
                choices=[
                    wire.ChatChoice(
                        index=0,
                        message=wire.ChatMessage(role="assistant", content=response.content),
                        finish_reason="stop",
                    )
                ],
                usage=usage,
            )
        )


@asynccontextmanager
async def serve_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    """Serve an emulator for the duration of the ``async with`` block.

    Binds ``config.host:config.port`` (port 0: a free port, read it from
    ``emulator.base_url``) before the block starts, so requests may be sent at once. On exit
    every connection is closed and every in-flight request abandoned (cancelled); nothing
    outlives the block. Raises :class:`ConfigurationError` for a non-loopback host and
    ``OSError`` when the address cannot be bound.
    """
    config = config if config is not None else EmulatorConfig()
    host = "127.0.0.1" if config.host == "localhost" else config.host
    if not _is_loopback(host):  # configs are validated, but never bind outside loopback
        raise ConfigurationError(
            "EmulatorConfig.host", f"{host!r} is not a loopback address", "use '127.0.0.1'"
        )
    # Bind before the nursery so a bind failure is a plain OSError, not an exception group.
    listeners = await trio.open_tcp_listeners(config.port, host=host)
    emulator = Emulator(
        config=config,
        provider=config.build_provider(),
        host=host,
        port=listeners[0].socket.getsockname()[1],
    )
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, emulator.handle_connection, listeners)
            try:
                yield emulator
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The server tasks never raise; a group holding only the block's own exception is
        # unwrapped so callers see exactly what their block raised.
        if body_error is None or group.exceptions != (body_error,):
            raise
    if body_error is not None:
        raise body_error
