"""httpcore's network backend (what httpx's connection pool connects with), as the run uses it.

* :class:`AsyncioBackend` (Python 3.11+): connections on asyncio's own streams, in place of
  httpcore's default (anyio's), whose import is ~20 ms of a push's start-up and whose reads and
  writes each enter a cancel scope and an exception map.
* :class:`CachedSocketBackend` (3.9, 3.10): httpcore's default, whose streams look their socket
  up once. Before each request httpcore asks every pooled connection whether the server has
  closed it (``get_extra_info("is_readable")``); with anyio each answer rebuilds a table of
  socket attributes: in a bulk run (500 requests, 16 connections) ~40% of the client's CPU.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import sys
from collections.abc import Awaitable, Iterable
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


class AsyncioStream(httpcore.AsyncNetworkStream):
    """A connection on asyncio's own streams (Python 3.11+: ``asyncio.timeout``,
    ``StreamWriter.start_tls``), with httpcore's errors for what goes wrong."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._socket: Any = writer.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # 3.11+
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:  # (before OSError: it is one)
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # 3.11+
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: written after the end
            raise httpcore.WriteError(exc) from exc

    async def aclose(self) -> None:
        # As anyio's socket stream closes (httpcore's TLS streams send no close_notify first):
        # what is buffered is flushed where it can be, then the socket is closed.
        transport = self._writer.transport
        if transport.is_closing():
            return
        transport.close()
        await asyncio.sleep(0)
        transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # 3.11+
                await self._writer.start_tls(  # type: ignore[attr-defined]  # 3.11+
                    ssl_context, server_hostname=server_hostname
                )
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, TimeoutError):
                raise httpcore.ConnectTimeout(exc) from exc
            if isinstance(exc, OSError):  # ssl.SSLError among them
                raise httpcore.ConnectError(exc) from exc
            raise
        return AsyncioStream(self._reader, self._writer)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Data or the end the transport has already taken off the socket, else the socket.
            reader = self._reader
            if getattr(reader, "_buffer", None) or reader.at_eof() or reader.exception():
                return True
            return _is_socket_readable(self._socket)
        if info == "socket":
            return self._socket
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return self._writer.get_extra_info(info)  # ssl_object among them


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio alone, in place of its default (anyio's).

    The same connections (TCP_NODELAY, addresses tried 250 ms apart, httpcore's errors), without
    importing anyio's asyncio backend, whose ~3,000 lines cost ~20 ms of a push's start-up (a
    fifth of the interpreter's own), nor its cancel scope and exception map per read and write.
    A connection with socket options goes through httpcore's own backend, which sets them.
    """

    _fallback: Optional[httpcore.AsyncNetworkBackend] = None

    def _default(self) -> httpcore.AsyncNetworkBackend:
        if self._fallback is None:
            self._fallback = CachedSocketBackend(httpcore.AnyIOBackend())
        return self._fallback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        if socket_options:
            return await self._default().connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        local = (local_address, 0) if local_address else None
        opening = asyncio.open_connection(host, port, local_addr=local, happy_eyeballs_delay=0.25)
        return await _opened(opening, timeout)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: Optional[float] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        if socket_options:
            return await self._default().connect_unix_socket(path, timeout, socket_options)
        return await _opened(asyncio.open_unix_connection(path), timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _opened(
    opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    timeout: Optional[float],
) -> AsyncioStream:
    """The stream of a connection ``opening``, within ``timeout``; httpcore's errors."""
    try:
        async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # 3.11+
            reader, writer = await opening
    except TimeoutError as exc:  # (before OSError: it is one)
        raise httpcore.ConnectTimeout(exc) from exc
    except OSError as exc:
        raise httpcore.ConnectError(exc) from exc
    return AsyncioStream(reader, writer)


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
    """Put this module's backend under ``client``'s own connection pool: asyncio's
    (:class:`AsyncioBackend`, 3.11+) in place of httpcore's default, else the default with its
    sockets cached. False where it is not an httpcore pool that this version of httpx builds (a
    custom transport, say): left as it is."""
    pool = backend_pool(client)
    if pool is None:
        return False
    backend = pool._network_backend
    if isinstance(backend, (AsyncioBackend, CachedSocketBackend)):
        return True
    if sys.version_info >= (3, 11) and type(backend).__name__ == "AutoBackend":
        pool._network_backend = AsyncioBackend()
    else:
        pool._network_backend = CachedSocketBackend(backend)
    return True


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
