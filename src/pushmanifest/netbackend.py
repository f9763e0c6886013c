"""A network backend for httpcore (httpx's connection pool) that looks a socket up once.

Before each request, httpcore asks every pooled connection whether the server has closed it
(``get_extra_info("is_readable")``); with anyio each answer rebuilds a table of socket
attributes. In a bulk run (500 requests, 16 connections) that was ~40% of the client's CPU.
The streams here ask their backend's stream for the socket once and keep it: everything else
is passed through unchanged, TLS included (a TLS stream is a new stream, over the same socket).
"""

from __future__ import annotations

import asyncio
import select
import ssl
import sys
from collections.abc import Iterable
from typing import Any, Optional, Union

import httpcore
import httpx

# httpcore's SOCKET_OPTION (setsockopt's argument forms)
_SocketOption = Union[
    tuple[int, int, int], tuple[int, int, Union[bytes, bytearray]], tuple[int, int, None, int]
]


class StreamWrapper(httpcore.AsyncNetworkStream):
    """A stream passed through to ``stream``: subclasses change what they must."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._stream.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CachedSocketStream(StreamWrapper):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        super().__init__(stream)
        self._socket: Any = stream.get_extra_info("socket")
        #: httpcore's anyio stream's own stream, read and written here directly (3.11+): see
        #: read().
        self._anyio: Any = _anyio_stream_of(stream)

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        # As httpcore's AnyIOStream.read, without its two context managers per call (anyio's
        # cancel scope for the timeout, its exception map): ~14 us of a HEAD's ~700.
        anyio_stream = self._anyio
        if anyio_stream is None:
            return await self._stream.read(max_bytes, timeout)
        errors = _anyio_errors()
        try:
            async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # 3.11+
                chunk: bytes = await anyio_stream.receive(max_bytes)
                return chunk
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except errors.EndOfStream:
            return b""
        except (errors.BrokenResourceError, errors.ClosedResourceError) as exc:
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        anyio_stream = self._anyio
        if anyio_stream is None:
            return await self._stream.write(buffer, timeout)
        if not buffer:
            return None
        errors = _anyio_errors()
        try:
            async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # 3.11+
                await anyio_stream.send(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except (errors.BrokenResourceError, errors.ClosedResourceError) as exc:
            raise httpcore.WriteError(exc) from exc
        return None

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> httpcore.AsyncNetworkStream:
        return CachedSocketStream(await super().start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "socket" and self._socket is not None:
            return self._socket
        if info == "is_readable" and self._socket is not None:
            return _is_socket_readable(self._socket)
        return self._stream.get_extra_info(info)


class CachedSocketBackend(httpcore.AsyncNetworkBackend):
    """Wraps a backend (httpcore's default picks anyio or trio) so its streams cache sockets."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return CachedSocketStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: Optional[float] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return CachedSocketStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def backend_pool(client: httpx.AsyncClient) -> Any:
    """``client``'s connection pool where it connects through a network backend: httpcore's as
    this version of httpx builds it, or one that says it does (registry.pool.OriginPool)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) and not getattr(
        pool, "has_network_backend", False
    ):
        return None
    if not isinstance(getattr(pool, "_network_backend", None), httpcore.AsyncNetworkBackend):
        return None
    return pool


def network_backend(client: httpx.AsyncClient) -> Optional[httpcore.AsyncNetworkBackend]:
    """The network backend under ``client``'s connection pool; None where that is not an
    httpcore pool that this version of httpx builds (a custom transport, say)."""
    pool = backend_pool(client)
    return None if pool is None else pool._network_backend


def install(client: httpx.AsyncClient) -> bool:
    """Put the caching backend under ``client``'s own connection pool; False where it is not an
    httpcore pool that this version of httpx builds (a custom transport, say): left as it is."""
    pool = backend_pool(client)
    if pool is None:
        return False
    if not isinstance(pool._network_backend, CachedSocketBackend):
        pool._network_backend = CachedSocketBackend(pool._network_backend)
    return True


def _anyio_stream_of(stream: httpcore.AsyncNetworkStream) -> Any:
    """The anyio stream inside httpcore's ``AnyIOStream`` (plain TCP or TLS) on Python 3.11+
    (asyncio.timeout); None for any other stream, which is then called as it is."""
    kind = type(stream)
    if (
        sys.version_info < (3, 11)
        or kind.__name__ != "AnyIOStream"
        or kind.__module__ != "httpcore._backends.anyio"
    ):
        return None
    return getattr(stream, "_stream", None)


def _anyio_errors() -> Any:
    # anyio is imported once a stream of it exists (httpcore's backend imported it).
    return sys.modules["anyio"]


def _is_socket_readable(sock: Any) -> bool:
    """Readable while idle: the server closed the connection (or sent what nobody asked for).

    As httpcore's own check does; a closed socket counts as readable.
    """
    if sock is None or sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])
