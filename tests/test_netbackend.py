"""The socket-caching network backend under each RegistryClient's connection pool.

A server that closes an idle keep-alive connection must be noticed before the next request
(httpcore asks the stream whether its socket is readable), or that request fails on a dead
connection; a live connection must be reused.
"""

from __future__ import annotations

import asyncio
import socket
import threading
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
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(params=[True, False], ids=["server-keeps", "server-closes"])
def server(request: pytest.FixtureRequest) -> Iterator[OneShotServer]:
    srv = OneShotServer(keep=request.param)
    yield srv
    srv.close()


def test_installed_under_a_registry_clients_pool() -> None:
    async def go() -> None:
        async with RegistryClient("127.0.0.1:1", options=ClientOptions(plain_http=True)) as c:
            backend = c._client._transport._pool._network_backend  # type: ignore[attr-defined]
            assert isinstance(backend, netbackend.CachedSocketBackend)
            assert netbackend.install(c._client)  # idempotent: not wrapped twice
            assert c._client._transport._pool._network_backend is backend  # type: ignore[attr-defined]

    asyncio.run(go())


def test_a_custom_transport_is_left_alone() -> None:
    async def go() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        async with httpx.AsyncClient(transport=transport) as client:
            assert not netbackend.install(client)

    asyncio.run(go())


def test_idle_connections_are_reused_or_replaced(server: OneShotServer) -> None:
    async def go() -> list[int]:
        async with httpx.AsyncClient() as client:
            assert netbackend.install(client)
            statuses = []
            for _ in range(3):
                response = await client.get(f"http://127.0.0.1:{server.port}/")
                statuses.append(response.status_code)
                await asyncio.sleep(0.05)  # the closing server's FIN arrives meanwhile
            return statuses

    assert asyncio.run(go()) == [200, 200, 200]
    assert server.connections == (1 if server.keep else 3)
