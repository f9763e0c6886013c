"""Connections opened ahead of a run: TCP and TLS set up while the spec still loads.

A push to a remote registry pays DNS, TCP and TLS before its first request, on every connection
its first wave opens. :func:`warm_client` starts all of that early, for a client the run will use:
:class:`ReadyConnections` sits under the client's connection pool (over the caching backend of
:mod:`pushmanifest.netbackend`) and connects and handshakes ahead; when the pool opens a
connection it is handed one that is ready (the TLS handshake done with the pool's own context,
as httpcore would do it), else it connects as usual. No request is sent by this module: the ping
and the token, where the run needs them, are :meth:`Connection.ping`'s, made early by the caller.

For a loopback registry whose scheme is unknown (no ``--plain-http``), the TLS handshake ahead is
the probe: it decides HTTPS (a handshake, even one whose certificate is refused: never downgraded)
or plain HTTP (the server answered the hello with something that is not TLS), without a request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from typing import Optional

import httpcore
import httpx

from ..netbackend import StreamWrapper, _SocketOption, backend_pool, network_backend
from ..reference import DOCKER_HUB_DOMAIN
from .connection import QUIET, Connection
from .failures import _is_certificate_error, _is_tls_protocol_error

log = logging.getLogger("pushmanifest")

__all__ = ["QUIET", "ReadyConnections", "warm_client"]


#: Token servers known before any ping: a connection to them is opened with the registry's.
KNOWN_TOKEN_HOSTS = {DOCKER_HUB_DOMAIN: ("auth.docker.io", 443)}


class _Handshaken(StreamWrapper):
    """A stream whose TLS handshake was done ahead: httpcore's ``start_tls`` returns it as is."""

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> httpcore.AsyncNetworkStream:
        return self._stream


class ReadyConnections(httpcore.AsyncNetworkBackend):
    """A network backend that hands out connections opened ahead (:meth:`open_ahead`)."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend
        self._ready: dict[tuple[str, int], list[asyncio.Task[httpcore.AsyncNetworkStream]]] = {}

    def open_ahead(
        self,
        host: str,
        port: int,
        count: int,
        *,
        tls: Optional[ssl.SSLContext],
        timeout: Optional[float],
    ) -> list[asyncio.Task[httpcore.AsyncNetworkStream]]:
        """Start ``count`` connections to ``host:port`` (TLS with ``tls``); the pool's next
        connections to it take them."""
        tasks = [
            asyncio.ensure_future(self._connect(host, port, tls, timeout)) for _ in range(count)
        ]
        self._ready.setdefault((host, port), []).extend(tasks)
        return tasks

    async def _connect(
        self, host: str, port: int, tls: Optional[ssl.SSLContext], timeout: Optional[float]
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout)
        if tls is None:
            return stream
        try:
            return _Handshaken(await stream.start_tls(tls, host, timeout))
        except BaseException:
            await stream.aclose()
            raise

    def forget(self, host: str, port: int) -> list[asyncio.Task[httpcore.AsyncNetworkStream]]:
        """Take the connections opened ahead to ``host:port`` back (to close them)."""
        return self._ready.pop((host, port), [])

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        waiting = self._ready.get((host, port))
        while waiting and local_address is None and socket_options is None:
            # What failed ahead is this connection's failure (the request's retries, if any,
            # connect afresh): a refused certificate is met once, not twice.
            stream = await waiting.pop(0)
            # A TLS server may send (session tickets) unasked: only a plain one is looked at.
            if isinstance(stream, _Handshaken) or not stream.get_extra_info("is_readable"):
                return stream
            await stream.aclose()  # closed by the server while it waited
        return await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: Optional[float] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)

    async def aclose(self) -> None:
        """Close what was opened ahead and never used (cancelling what is still opening)."""
        tasks = [task for waiting in self._ready.values() for task in waiting]
        self._ready.clear()
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, httpcore.AsyncNetworkStream):
                await outcome.aclose()


def ready_connections(client: Connection) -> Optional[ReadyConnections]:
    """The client's :class:`ReadyConnections`, put under its pool on first use; None where its
    pool has no network backend (a custom transport, say)."""
    pool = backend_pool(client.http)
    if pool is None:
        return None
    if not isinstance(pool._network_backend, ReadyConnections):
        pool._network_backend = ReadyConnections(pool._network_backend)
    ready: ReadyConnections = pool._network_backend
    return ready


async def close_ready(client: Connection) -> None:
    """Close the connections opened ahead for ``client`` that its pool never took."""
    backend = network_backend(client.http)
    if isinstance(backend, ReadyConnections):
        await backend.aclose()


def _pool_tls(client: Connection) -> Optional[ssl.SSLContext]:
    pool = backend_pool(client.http)
    context: Optional[ssl.SSLContext] = pool._ssl_context
    if context is not None:
        # As httpcore sets it before each handshake (the same value: no change for it).
        # (registry.pool.OriginPool speaks HTTP/1.1 only: it has no _http2.)
        http2 = getattr(pool, "_http2", False)
        context.set_alpn_protocols(["http/1.1", "h2"] if http2 else ["http/1.1"])
    return context


async def warm_client(client: Connection, connections: int, *, ping: bool = True) -> None:
    """Set ``client`` up ahead of its run: ``connections`` connections opened (a loopback
    registry's scheme probed by the first), then the ping and the token where the run needs them
    (:meth:`Connection.ping` decides; with the scopes registered so far). Quiet: a failure is
    left for the run's own requests to meet and report."""
    QUIET.set(True)
    backend = ready_connections(client)
    try:
        token_host = KNOWN_TOKEN_HOSTS.get(client.registry)
        if backend is not None and ping and token_host is not None:
            tls = _pool_tls(client)
            backend.open_ahead(*token_host, 1, tls=tls, timeout=client.options.connect_timeout)
        if backend is not None and connections > 0:
            await _open(client, backend, connections)
        if ping:
            await client.ping()
    except Exception as exc:  # the run meets it again, with retries, and reports it
        log.debug("warm-up of %s: %s", client.host, exc)


async def _open(client: Connection, backend: ReadyConnections, connections: int) -> None:
    """Every connection at once (their TCP and TLS round trips overlap); a connection that fails
    ahead is the pool's first failure for it (a refused certificate is met once per connection,
    not again). A loopback registry's scheme is learnt from the first handshake to end."""
    url = httpx.URL(f"http://{client.host}/")
    host, timeout = url.host, client.options.connect_timeout
    scheme = client._scheme
    port = url.port or (80 if scheme == "http" else 443)
    tls = _pool_tls(client) if scheme != "http" else None
    tasks = backend.open_ahead(host, port, connections, tls=tls, timeout=timeout)
    if scheme is not None:
        return
    # (wait() does not cancel them, whatever happens to this task: the pool takes them.)
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    exc = next(iter(done)).exception()
    if isinstance(exc, httpcore.ConnectError) and _is_tls_protocol_error(
        httpx.ConnectError(str(exc))
    ):
        log.debug("%s does not speak TLS; using plain HTTP", client.host)
        client._scheme = "http"
        for task in backend.forget(host, port):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        backend.open_ahead(host, port, connections, tls=None, timeout=timeout)
    elif exc is None or _is_certificate_error(exc):
        client._scheme = "https"  # TLS it speaks (a certificate refused is the run's to report)
    # else unreachable, say: the run probes again and says why
