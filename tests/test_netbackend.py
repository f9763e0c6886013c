"""The socket-caching network backend under each RegistryClient's connection pool.

A server that closes an idle keep-alive connection must be noticed before the next request
(httpcore asks the stream whether its socket is readable), or that request fails on a dead
connection; a live connection must be reused. The test server says when the client's kernel has
acknowledged its FIN (so the client's socket is readable): no sleeping for it to arrive.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Iterator

import httpcore
import httpx
import pytest

from pushmanifest import netbackend
from pushmanifest.registry import ClientOptions, RegistryClient

#: What a client's pool connects with: asyncio's streams from 3.11 (asyncio.timeout), else
#: httpcore's default backend with its sockets cached.
OUR_BACKEND: type = (
    netbackend.AsyncioBackend if sys.version_info >= (3, 11) else netbackend.CachedSocketBackend
)

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
    b"Connection: keep-alive\r\n\r\nok"
)


class OneShotServer:
    """Answers one request per connection, then closes it (or keeps it, with keep=True)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.connections = 0
        self.closed = 0  # connections closed with their FIN acknowledged by the client
        self._closed_changed = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(RESPONSE)
                if not self.keep:
                    conn.shutdown(socket.SHUT_WR)
                    _wait_until_acknowledged(conn)
                    with self._closed_changed:
                        self.closed += 1
                        self._closed_changed.notify_all()
                    return

    def wait_closed(self, count: int) -> None:
        """Until ``count`` connections were closed (a bound only a hang reaches)."""
        with self._closed_changed:
            assert self._closed_changed.wait_for(lambda: self.closed >= count, timeout=60)

    def close(self) -> None:
        self._listener.close()


def _wait_until_acknowledged(conn: socket.socket) -> None:
    """Until the peer's kernel has acknowledged all we sent, the FIN included (SIOCOUTQ: bytes
    not yet acknowledged; the FIN counts as one)."""
    deadline = time.monotonic() + 60  # a bound only a hang reaches
    while struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.fixture(params=[True, False], ids=["server-keeps", "server-closes"])
def server(request: pytest.FixtureRequest) -> Iterator[OneShotServer]:
    srv = OneShotServer(keep=request.param)
    yield srv
    srv.close()


def test_installed_under_a_registry_clients_pool() -> None:
    async def go() -> None:
        async with RegistryClient("127.0.0.1:1", options=ClientOptions(plain_http=True)) as c:
            backend = netbackend.network_backend(c.http)
            assert isinstance(backend, OUR_BACKEND)
            assert netbackend.install(c.http)  # idempotent: not wrapped twice
            assert netbackend.network_backend(c.http) is backend

    asyncio.run(go())


def test_a_custom_transport_is_left_alone() -> None:
    async def go() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        async with httpx.AsyncClient(transport=transport) as client:
            assert not netbackend.install(client)
            assert netbackend.network_backend(client) is None

    asyncio.run(go())


def test_idle_connections_are_reused_or_replaced(server: OneShotServer) -> None:
    async def go() -> list[int]:
        async with httpx.AsyncClient() as client:
            assert netbackend.install(client)
            statuses = []
            for done in range(1, 4):
                response = await client.get(f"http://127.0.0.1:{server.port}/")
                statuses.append(response.status_code)
                if not server.keep:  # the FIN is in the client's socket before the next request
                    await asyncio.to_thread(server.wait_closed, done)
            return statuses

    assert asyncio.run(go()) == [200, 200, 200]
    assert server.connections == (1 if server.keep else 3)


# -- asyncio's streams (3.11+): httpcore's errors, as its anyio backend raises them ---------------

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout: 3.11+")


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: a connection is refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_311
def test_a_refused_connection_is_a_connect_error_with_the_os_words() -> None:
    port = _closed_port()

    async def go() -> BaseException:
        with pytest.raises(httpcore.ConnectError) as caught:
            await netbackend.AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        return caught.value

    error = asyncio.run(go())
    assert isinstance(error.__cause__, ConnectionRefusedError)


@needs_311
def test_a_silent_server_is_a_read_timeout_and_a_closed_one_an_empty_read() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def go() -> tuple[bytes, bool, bool]:
        stream = await netbackend.AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        peer, _ = await asyncio.to_thread(listener.accept)
        try:
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(10, timeout=0.01)
            idle_readable = stream.get_extra_info("is_readable")
            peer.sendall(b"hi")
            peer.shutdown(socket.SHUT_WR)
            data = b""
            while True:  # what was sent, then the end: b""
                chunk = await stream.read(10, timeout=5)
                if not chunk:
                    break
                data += chunk
            return data, idle_readable, stream.get_extra_info("is_readable")
        finally:
            await stream.aclose()
            peer.close()

    try:
        data, idle_readable, ended_readable = asyncio.run(go())
    finally:
        listener.close()
    assert data == b"hi"
    assert not idle_readable  # a live idle connection is kept
    assert ended_readable  # one the server ended is not reused


@needs_311
def test_tls_to_a_plain_http_server_is_a_connect_error_named_as_anyio_names_it() -> None:
    import ssl

    from pushmanifest.registry.failures import _is_tls_protocol_error

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_as_plain_http() -> None:  # as Go's server answers a TLS hello
        peer, _ = listener.accept()
        with peer:
            peer.recv(4096)
            peer.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request\n")

    server = threading.Thread(target=answer_as_plain_http, daemon=True)
    server.start()

    async def go() -> BaseException:
        stream = await netbackend.AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.ConnectError) as caught:
            await stream.start_tls(ssl.create_default_context(), "127.0.0.1", timeout=5)
        assert stream.get_extra_info("socket").fileno() == -1  # closed on failure
        return caught.value

    try:
        error = asyncio.run(go())
    finally:
        server.join(10)
        listener.close()
    assert _is_tls_protocol_error(httpx.ConnectError(str(error))), error


@needs_311
def test_socket_options_go_through_httpcores_own_backend(server: OneShotServer) -> None:
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]

    async def go() -> int:
        stream = await netbackend.AsyncioBackend().connect_tcp(
            "127.0.0.1", server.port, timeout=5, socket_options=options
        )
        try:
            sock = stream.get_extra_info("socket")
            return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
        finally:
            await stream.aclose()

    assert asyncio.run(go()) == 1
