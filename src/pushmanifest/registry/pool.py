"""The connection pool under each registry client: httpcore's own HTTP/1.1 connections, handed
out in constant time.

httpcore's ``AsyncConnectionPool`` re-examines every connection whenever a request arrives and
whenever an answer is closed: for each connection it counts the connections again (quadratic in
the pool's size) and asks each idle one whether the server has closed it (a ``poll`` of its
socket). In a bulk run at ``--max-concurrency 64`` that was most of the command's CPU, and made
64 requests in flight slower than 32.

:class:`OriginPool` keeps the idle connections of each origin (scheme, host, port) in a stack. A
request takes the most recently used one, after one check of that connection alone (keep-alive
expiry, server closed it); else opens a new connection while fewer than ``max_connections`` are
open; else closes an idle connection to another origin to make room; else waits its turn. The
connections themselves are httpcore's (``AsyncHTTPConnection``: connect, TLS, retries of the
connect, HTTP/1.1 with h11), on the same network backend, with the same settings as the pool it
replaces. Only a plain HTTP/1.1 pool is replaced: a proxy's pool, or one that may speak HTTP/2
(several requests on one connection), is left as httpx built it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Optional

import httpcore
import httpx

__all__ = ["OriginPool", "install"]

_Key = tuple[bytes, bytes, int]


def _key(origin: httpcore.Origin) -> _Key:
    return (origin.scheme, origin.host, origin.port)


class OriginPool:
    """At most ``max_connections`` HTTP/1.1 connections, one request on each at a time."""

    #: Its connections go through ``_network_backend``, as httpcore's pool's do (netbackend).
    has_network_backend = True

    def __init__(
        self,
        *,
        max_connections: int,
        ssl_context: Any = None,
        keepalive_expiry: Optional[float] = None,
        retries: int = 0,
        local_address: Optional[str] = None,
        uds: Optional[str] = None,
        network_backend: Optional[httpcore.AsyncNetworkBackend] = None,
        socket_options: Any = None,
    ) -> None:
        self.max_connections = max(1, max_connections)
        # httpcore's names for its pool's settings (the TLS context, the network backend: what
        # tests and netbackend.install look at).
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._retries = retries
        self._local_address = local_address
        self._uds = uds
        self._network_backend = network_backend
        self._socket_options = socket_options
        #: Idle connections by origin (httpcore's Origin is not hashable: its three parts).
        self._idle: dict[_Key, list[httpcore.AsyncHTTPConnection]] = {}
        #: Connections counted against max_connections: idle, in use, or connecting.
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        #: Connections made so far (what tests and the benchmark compare with the limit).
        self.opened = 0

    @classmethod
    def replacing(cls, pool: object) -> Optional[OriginPool]:
        """A pool with the settings of httpx's ``pool``; None unless that is exactly httpcore's
        plain HTTP/1.1 ``AsyncConnectionPool`` (not a proxy's, not HTTP/2)."""
        if type(pool) is not httpcore.AsyncConnectionPool:
            return None
        settings = vars(pool)
        if (
            settings.get("_proxy") is not None
            or settings.get("_http2", True)
            or not settings.get("_http1", False)
            or not isinstance(settings.get("_max_connections"), int)
        ):
            return None
        return cls(
            max_connections=settings["_max_connections"],
            ssl_context=settings.get("_ssl_context"),
            keepalive_expiry=settings.get("_keepalive_expiry"),
            retries=settings.get("_retries", 0),
            local_address=settings.get("_local_address"),
            uds=settings.get("_uds"),
            network_backend=settings.get("_network_backend"),
            socket_options=settings.get("_socket_options"),
        )

    @property
    def open_connections(self) -> int:
        return self._open

    # -- requests ---------------------------------------------------------------------------

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if request.url.scheme not in (b"http", b"https"):
            scheme = request.url.scheme.decode("ascii", "replace")
            raise httpcore.UnsupportedProtocol(f"unsupported URL scheme '{scheme}://'")
        origin = request.url.origin
        timeouts = request.extensions.get("timeout", {})
        while True:
            connection = await self._acquire(origin, timeouts.get("pool"))
            try:
                response = await connection.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                # Closed between its check and its use: another one.
                await self._release(connection)
                continue
            except BaseException:
                await self._release(connection)
                raise
            assert isinstance(response.stream, AsyncIterable)  # an async connection's
            stream = _ReleasingStream(response.stream, self, connection)
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=stream,
                extensions=response.extensions,
            )

    async def _acquire(
        self, origin: httpcore.Origin, timeout: Optional[float]
    ) -> httpcore.AsyncHTTPConnection:
        key = _key(origin)
        waited = False
        while True:
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                if not connection.has_expired():
                    return connection
                # Its keep-alive is over, or the server has closed it.
                self._open -= 1
                await _close(connection)
            if self._open < self.max_connections:
                return self._new(origin)
            other = self._idle_elsewhere(key)
            if other is not None:
                self._open -= 1
                await _close(other)
                continue
            await self._wait(timeout, first=waited)
            waited = True

    def _new(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        self._open += 1
        self.opened += 1
        return _Connection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            http1=True,
            http2=False,
            retries=self._retries,
            local_address=self._local_address,
            uds=self._uds,
            network_backend=self._network_backend,
            socket_options=self._socket_options,
        )

    def _idle_elsewhere(self, key: _Key) -> Optional[httpcore.AsyncHTTPConnection]:
        for other, idle in self._idle.items():
            if other != key and idle:
                return idle.pop(0)  # the least recently used
        return None

    async def _wait(self, timeout: Optional[float], *, first: bool) -> None:
        """Until a connection is given back (or closed); a waiter woken before but beaten to
        the connection waits at the head of the line again."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            raise httpcore.PoolTimeout(
                f"no connection free within {timeout:g} s ({self.max_connections} in use)"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: pass the turn on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _release(self, connection: httpcore.AsyncHTTPConnection) -> None:
        """Back to the idle stack of its origin when it can take another request; else closed
        and no longer counted. Either way the next waiter is woken."""
        if connection.is_available() and not self._closed:
            key = _key(connection._origin)  # where httpcore keeps it (can_handle_request's)
            self._idle.setdefault(key, []).append(connection)
            self._wake()
            return
        self._open -= 1
        self._wake()
        if not connection.is_closed():
            await _close(connection)

    # -- life -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        idle = [c for stack in self._idle.values() for c in stack]
        self._idle.clear()
        self._open -= len(idle)
        for connection in idle:
            await _close(connection)

    async def __aenter__(self) -> OriginPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _ReleasingStream:
    """An answer's body; closing it gives its connection back to the pool."""

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        pool: OriginPool,
        connection: httpcore.AsyncHTTPConnection,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._connection = connection
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                # httpcore's: the connection is idle again once the whole answer was read,
                # else it is closed.
                await close()
        finally:
            await self._pool._release(self._connection)


class _Connection(httpcore.AsyncHTTPConnection):
    """httpcore's connection with asyncio's locks, its own and its HTTP/1.1 connection's (made
    once connected); httpcore's request handling is left whole (respx, say, patches it).

    httpcore's locks are anyio's: each acquisition enters a cancel scope and goes once round the
    event loop, three times per request, and the first one imports anyio's asyncio backend
    (~20 ms). OriginPool gives a connection to one request at a time, so they are never
    contended: asyncio's lock (free uncontended) in their place.
    """

    _inner: Optional[httpcore.AsyncConnectionInterface] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_lock = asyncio.Lock()  # type: ignore[assignment]

    @property
    def _connection(self) -> Optional[httpcore.AsyncConnectionInterface]:
        return self._inner

    @_connection.setter
    def _connection(self, inner: Optional[httpcore.AsyncConnectionInterface]) -> None:
        # Set by httpcore once connected, before the first request takes the lock.
        if type(inner) is httpcore.AsyncHTTP11Connection:
            inner._state_lock = asyncio.Lock()  # type: ignore[assignment]
        self._inner = inner


async def _close(connection: httpcore.AsyncHTTPConnection) -> None:
    # Shielded: a cancelled request still closes the socket it leaves behind.
    await asyncio.shield(connection.aclose())


def install(client: httpx.AsyncClient) -> Optional[OriginPool]:
    """Put an :class:`OriginPool` under ``client`` in place of httpcore's pool (same settings);
    None where that is not a plain HTTP/1.1 httpcore pool (a custom transport, a proxy, HTTP/2):
    left as it is. Call it before the client sends anything."""
    transport = getattr(client, "_transport", None)
    if not isinstance(transport, httpx.AsyncHTTPTransport):
        return None
    pool = OriginPool.replacing(getattr(transport, "_pool", None))
    if pool is not None:
        transport._pool = pool  # type: ignore[assignment]
    return pool
