"""The httpx clients behind one HTTP provider: a bounded pool split into small shards.

httpcore's connection pool (httpcore 1.0) re-scans its connections on every request start and
end, and for each idle connection counts all connections again: its bookkeeping per call grows
with the square of the connections one client holds (encode/httpcore#1035). Measured against
the loopback emulator, one client with 64 connections spent several times the CPU per call of
one with 8. So an owned pool of ``max_connections`` is split over
``ceil(max_connections / CONNECTIONS_PER_CLIENT)`` clients whose limits add up to exactly
``max_connections``; each call goes to the shard with the most free connections. As long as
request admission keeps the calls in flight at or under ``max_connections``, a call always
finds a free connection, never waits inside httpx, and every connection stays alive between
calls.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Final

import httpx
from attrs import define, field

CONNECTIONS_PER_CLIENT: Final = 8
"""The pool one owned httpx client gets, until there are :data:`MAX_CLIENTS` of them."""


MAX_CLIENTS: Final = 16
"""At most this many owned clients (larger pools get larger shards)."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # httpx builds a fresh default context (certifi's CA bundle) per client, tens of
    # milliseconds each; the shards of every provider share this one (created on first use,
    # honouring SSL_CERT_FILE / SSL_CERT_DIR as httpx does).
    return httpx.create_ssl_context()


@define(eq=False)
class HttpClientShards:
    """One or more httpx clients used as one; :meth:`request` picks the least busy one."""

    clients: tuple[httpx.AsyncClient, ...]
    sizes: tuple[int, ...]
    owned: bool
    _in_flight: list[int] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._in_flight = [0] * len(self.clients)

    @classmethod
    def build(
        cls, max_connections: int, transport: httpx.AsyncBaseTransport | None
    ) -> HttpClientShards:
        """Owned clients whose connection limits add up to ``max_connections`` (one client on
        an explicit ``transport``, which a test double may not want shared)."""
        count = min(MAX_CLIENTS, -(-max_connections // CONNECTIONS_PER_CLIENT))
        if transport is not None:
            count = 1
        base, extra = divmod(max_connections, count)
        sizes = tuple(base + (1 if i < extra else 0) for i in range(count))
        context = _tls_context()
        clients = tuple(
            httpx.AsyncClient(
                transport=transport,
                verify=context,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            )
            for size in sizes
        )
        return cls(clients, sizes, owned=True)

    @classmethod
    def wrap(cls, client: httpx.AsyncClient) -> HttpClientShards:
        """A caller's client, used as it is and never closed here."""
        return cls((client,), (0,), owned=False)

    @property
    def in_flight(self) -> int:
        """Requests running right now, over all shards."""
        return sum(self._in_flight)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """``httpx.AsyncClient.request`` on the shard with the most free connections.

        Cancellation behaves as httpx's (the request is abandoned, its connection closed).
        """
        index = 0
        if len(self.clients) > 1:
            in_flight, sizes = self._in_flight, self.sizes
            index = max(range(len(sizes)), key=lambda i: sizes[i] - in_flight[i])
        self._in_flight[index] += 1
        try:
            return await self.clients[index].request(method, url, **kwargs)
        finally:
            self._in_flight[index] -= 1

    async def aclose(self) -> None:
        """Close the owned clients (idempotent); a caller's client stays open."""
        if self.owned:
            for client in self.clients:
                await client.aclose()
