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
import termios
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from pushmanifest import netbackend
from pushmanifest.registry import ClientOptions, RegistryClient

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
            assert isinstance(backend, netbackend.CachedSocketBackend)
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
