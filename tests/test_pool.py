"""The connection pool under each RegistryClient (registry/pool.py).

httpcore's own pool re-examined every connection for every request (quadratic in its size) and
polled each idle one's socket: the checks per request here are counted, not timed, against a pool
of many open connections. The limit, the waiting line, the pool timeout and the sharing of the
limit between origins are checked with a local server that holds answers until told.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any, Callable

import httpcore
import httpx
import pytest

from pushmanifest import netbackend
from pushmanifest.registry import ClientOptions, RegistryClient
from pushmanifest.registry.pool import OriginPool, install

#: A bound only a hang reaches.
HANG = 60.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
#: A manifest's HEAD, as a registry answers it (no body).
DIGEST = "sha256:" + "ab" * 32
HEAD_RESPONSE = (
    "HTTP/1.1 200 OK\r\nContent-Length: 321\r\n"
    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
    f"Docker-Content-Digest: {DIGEST}\r\n\r\n"
).encode()


class KeepAliveServer:
    """Answers GETs on 127.0.0.1, keeping each connection open; ``route()`` is called before
    each answer (it may block). Counts connections and requests."""

    def __init__(self, route: Callable[[], None]) -> None:
        self.route = route
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    try:
                        chunk = conn.recv(4096)
                    except OSError:
                        return
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                with self._lock:
                    self.requests += 1
                self.route()
                answer = HEAD_RESPONSE if head.startswith(b"HEAD ") else RESPONSE
                try:
                    conn.sendall(answer)
                except OSError:
                    return

    def __enter__(self) -> KeepAliveServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()


class HeldAnswers:
    """A route whose answers wait: for ``together`` requests to have arrived (a barrier), or
    until :meth:`release` (``hold``). Counts the requests waiting."""

    def __init__(self, together: int = 0, hold: bool = False) -> None:
        self._together = together
        self._barrier = threading.Barrier(together, timeout=HANG) if together else None
        self._arrived = 0
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._lock = threading.Lock()
        self.waiting = 0

    def release(self) -> None:
        self._released.set()

    def __call__(self) -> None:
        with self._lock:
            self.waiting += 1
            self._arrived += 1
            first = self._arrived <= self._together
        if first and self._barrier is not None:  # the first ``together`` only
            self._barrier.wait()
        assert self._released.wait(HANG)
        with self._lock:
            self.waiting -= 1


@pytest.fixture
def held() -> Iterator[tuple[HeldAnswers, str]]:
    route = HeldAnswers(hold=True)
    with KeepAliveServer(route) as server:
        yield route, f"http://{server.host}/"
        route.release()


def pool_of(client: httpx.AsyncClient) -> Any:
    return client._transport._pool  # type: ignore[attr-defined]


async def until(predicate: Any) -> None:
    """Until ``predicate()`` holds (the other tasks run meanwhile); a hang fails."""
    for _ in range(int(HANG * 100)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def test_a_registry_client_sends_through_it() -> None:
    async def go() -> None:
        options = ClientOptions(plain_http=True, max_concurrency=7)
        async with RegistryClient("127.0.0.1:1", options=options) as client:
            pool = pool_of(client.http)
            assert isinstance(pool, OriginPool)
            assert pool.max_connections == 7
            ours = netbackend.AsyncioBackend  # 3.11+: asyncio's streams
            if sys.version_info < (3, 11):
                ours = netbackend.CachedSocketBackend
            assert isinstance(netbackend.network_backend(client.http), ours)

    asyncio.run(go())


def test_left_alone_where_it_is_not_httpcores_plain_pool() -> None:
    async def go() -> None:
        mock = httpx.MockTransport(lambda request: httpx.Response(200))
        async with httpx.AsyncClient(transport=mock) as client:
            assert install(client) is None
        for transport in (
            httpx.AsyncHTTPTransport(http2=True),  # several requests per connection
            httpx.AsyncHTTPTransport(proxy="http://127.0.0.1:9"),  # a proxy's pool
        ):
            async with httpx.AsyncClient(transport=transport) as client:
                kept = pool_of(client)
                assert install(client) is None
                assert pool_of(client) is kept

    asyncio.run(go())


def test_checks_per_request_do_not_grow_with_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """With many connections open, each request examines one connection: one expiry check and
    one poll of its socket (httpcore's pool: every connection, several times, per request)."""
    size, sequential = 24, 10
    calls = {"is_idle": 0, "has_expired": 0, "poll": 0}

    def counted(name: str, original: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            calls[name] += 1
            return original(*args)

        return wrapper

    http11 = httpcore.AsyncHTTP11Connection
    monkeypatch.setattr(http11, "is_idle", counted("is_idle", http11.is_idle))
    monkeypatch.setattr(http11, "has_expired", counted("has_expired", http11.has_expired))
    poll = netbackend._is_socket_readable
    monkeypatch.setattr(netbackend, "_is_socket_readable", counted("poll", poll))

    async def go(url: str) -> None:
        options = ClientOptions(plain_http=True, max_concurrency=size)
        async with RegistryClient("127.0.0.1:1", options=options) as client:
            # ``size`` requests at once (the server answers once all have arrived): as many
            # connections, all idle afterwards.
            answers = await asyncio.gather(*(client.http.get(url) for _ in range(size)))
            assert [a.status_code for a in answers] == [200] * size
            for name in calls:
                calls[name] = 0
            for _ in range(sequential):
                assert (await client.http.get(url)).status_code == 200

    with KeepAliveServer(HeldAnswers(together=size)) as server:
        asyncio.run(go(f"http://{server.host}/"))
        assert server.connections == size
    assert calls["has_expired"] <= sequential, calls
    assert calls["poll"] <= sequential, calls
    assert calls["is_idle"] <= 2 * sequential, calls


def test_no_more_connections_than_the_limit() -> None:
    limit, requests = 4, 24

    async def go(url: str) -> OriginPool:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=limit)) as client:
            pool = install(client)
            assert pool is not None
            answers = await asyncio.gather(*(client.get(url) for _ in range(requests)))
            assert [a.status_code for a in answers] == [200] * requests
            return pool

    route = HeldAnswers(together=limit)  # the first ``limit`` in flight together
    with KeepAliveServer(route) as server:
        pool = asyncio.run(go(f"http://{server.host}/"))
        assert server.requests == requests
    assert pool.opened == server.connections == limit
    assert pool.open_connections == 0  # the client closed them


def test_a_request_waits_no_longer_than_the_pool_timeout(
    held: tuple[HeldAnswers, str],
) -> None:
    route, url = held

    async def go() -> None:
        timeout = httpx.Timeout(HANG, pool=0.1)
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            install(client)
            first = asyncio.ensure_future(client.get(url))
            await until(lambda: route.waiting == 1)
            with pytest.raises(httpx.PoolTimeout):
                await client.get(url)
            route.release()
            assert (await first).status_code == 200
            assert (await client.get(url)).status_code == 200  # the connection is free again

    asyncio.run(go())


def test_a_cancelled_waiter_passes_its_turn_on(held: tuple[HeldAnswers, str]) -> None:
    route, url = held

    async def go() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
            pool = install(client)
            assert pool is not None
            first = asyncio.ensure_future(client.get(url))
            await until(lambda: route.waiting == 1)
            second = asyncio.ensure_future(client.get(url))
            third = asyncio.ensure_future(client.get(url))
            await until(lambda: len(pool._waiters) == 2)
            second.cancel()
            route.release()
            assert (await asyncio.wait_for(first, HANG)).status_code == 200
            assert (await asyncio.wait_for(third, HANG)).status_code == 200
            assert second.cancelled()
            assert pool.opened == 1

    asyncio.run(go())


def test_an_idle_connection_elsewhere_makes_room() -> None:
    """The limit is per pool: an idle connection to one origin is closed for a request to
    another when the pool is full (as httpcore's pool does)."""

    async def go(first: str, second: str) -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
            pool = install(client)
            assert pool is not None
            assert (await client.get(first)).status_code == 200
            assert (await client.get(second)).status_code == 200
            assert (await client.get(second)).status_code == 200
            assert (pool.opened, pool.open_connections) == (2, 1)

    with KeepAliveServer(HeldAnswers()) as one, KeepAliveServer(HeldAnswers()) as two:
        asyncio.run(go(f"http://{one.host}/", f"http://{two.host}/"))


def test_requests_waiting_for_a_slot_are_not_built_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk run queues hundreds of requests behind --max-concurrency: they hold no request
    objects (headers, URL) until their turn (peak memory)."""
    built = []
    original = httpx.AsyncClient.build_request

    def build_request(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> httpx.Request:
        built.append(args[:2])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "build_request", build_request)
    route = HeldAnswers(hold=True)

    async def go(host: str) -> None:
        options = ClientOptions(plain_http=True, max_concurrency=2)
        async with RegistryClient(host, options=options) as client:
            calls = [
                asyncio.ensure_future(
                    client._api("GET", f"team/app/manifests/t{i}", operation="x", image="i", cap=64)
                )
                for i in range(8)
            ]
            await until(lambda: route.waiting == 2)
            assert len(built) == 2
            route.release()
            answers = await asyncio.wait_for(asyncio.gather(*calls), HANG)
            assert [response.status_code for response, _ in answers] == [200] * 8
            assert len(built) == 8

    with KeepAliveServer(route) as server:
        asyncio.run(go(server.host))


def test_heads_beyond_the_limit_wait_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk run's wave of HEADs: --max-concurrency of them start, the others wait at the
    door, holding nothing of a request yet (peak memory)."""
    started = []
    original = RegistryClient._manifest_call

    async def manifest_call(self: RegistryClient, *args: Any, **kwargs: Any) -> Any:
        started.append(args[2])
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, "_manifest_call", manifest_call)
    route = HeldAnswers(hold=True)

    async def go(host: str) -> None:
        options = ClientOptions(plain_http=True, max_concurrency=3)
        async with RegistryClient(host, options=options) as client:
            heads = [
                asyncio.ensure_future(client.head_manifest("team/app", f"t{i}")) for i in range(9)
            ]
            await until(lambda: route.waiting == 3)  # every task has run up to its first wait
            assert len(started) == 3
            route.release()
            found = await asyncio.wait_for(asyncio.gather(*heads), HANG)
            assert [d.digest if d else None for d in found] == [DIGEST] * 9
            assert len(started) == 9

    with KeepAliveServer(route) as server:
        asyncio.run(go(server.host))


def test_a_reused_connection_costs_no_anyio_lock_no_task_and_no_cookie_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CPU per request (issue 12): on a connection this pool hands out, httpcore's anyio locks
    (a cancel scope and a turn of the event loop each, three per request) are not taken, an
    answer that sets no cookie is not handed to http.cookiejar, and (Python 3.11+) neither the
    document limit nor a read or write of the socket makes a task or an anyio cancel scope."""
    import http.cookiejar
    import sys

    import anyio
    from httpcore._synchronization import AsyncLock

    counts = {"anyio lock": 0, "task": 0, "cookiejar": 0, "anyio timeout": 0}
    measured: dict[str, int] = {}

    def counted(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(AsyncLock, "__aenter__", counted("anyio lock", AsyncLock.__aenter__))
    monkeypatch.setattr(anyio, "fail_after", counted("anyio timeout", anyio.fail_after))
    jar = http.cookiejar.CookieJar
    monkeypatch.setattr(jar, "extract_cookies", counted("cookiejar", jar.extract_cookies))
    sequential = 5

    async def go(host: str) -> None:
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "create_task", counted("task", loop.create_task))
        options = ClientOptions(plain_http=True)
        async with RegistryClient(host, options=options) as client:
            assert (await client.head_manifest("team/app", "first")) is not None
            for name in counts:
                counts[name] = 0
            for i in range(sequential):
                found = await client.head_manifest("team/app", f"t{i}")
                assert found is not None and found.digest == DIGEST
            measured.update(counts)  # before the client closes (its closing takes tasks)
            assert pool_of(client.http).opened == 1

    with KeepAliveServer(HeldAnswers()) as server:
        asyncio.run(go(server.host))
        assert server.requests == sequential + 1
    assert measured["anyio lock"] == 0, measured
    assert measured["cookiejar"] == 0, measured
    if sys.version_info >= (3, 11):
        assert measured["task"] == 0, measured
        assert measured["anyio timeout"] == 0, measured  # per read and write: netbackend


def test_a_cookie_the_registry_sets_is_sent_back() -> None:
    """Cookies are still read where an answer sets one (a load balancer's sticky session)."""
    heads: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    host = f"127.0.0.1:{listener.getsockname()[1]}"

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            for number in range(3):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                heads.append(head)
                cookie = b"Set-Cookie: lb=node7; Path=/\r\n" if number == 0 else b""
                conn.sendall(HEAD_RESPONSE.replace(b"\r\n\r\n", b"\r\n" + cookie + b"\r\n", 1))

    threading.Thread(target=serve, daemon=True).start()

    async def go() -> None:
        async with RegistryClient(host, options=ClientOptions(plain_http=True)) as client:
            for i in range(3):
                assert (await client.head_manifest("team/app", f"t{i}")) is not None

    try:
        asyncio.run(asyncio.wait_for(go(), HANG))
    finally:
        listener.close()
    cookies = [
        [line for line in head.split(b"\r\n") if line.lower().startswith(b"cookie:")]
        for head in heads
    ]
    assert cookies == [[], [b"Cookie: lb=node7"], [b"Cookie: lb=node7"]]


def test_a_wave_of_heads_holds_no_task_for_a_waiting_head(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Peak memory (issue 12): a bulk run's wave of HEADs starts at most --max-concurrency per
    registry, in order; the others wait as references, not as tasks. As gather: every HEAD
    runs, the first failure is raised and the others logged."""
    from pushmanifest.errors import RegistryError
    from pushmanifest.pusher.results import PushOptions
    from pushmanifest.pusher.run import _Run
    from pushmanifest.reference import Reference

    started: list[str] = []
    active: dict[str, int] = {}
    most: dict[str, int] = {}
    tasks: list[int] = []

    async def head(self: _Run, ref: Reference) -> Any:
        started.append(ref.familiar())
        active[ref.registry] = active.get(ref.registry, 0) + 1
        most[ref.registry] = max(most.get(ref.registry, 0), active[ref.registry])
        tasks.append(len(asyncio.all_tasks()))
        for _ in range(3):
            await asyncio.sleep(0)
        active[ref.registry] -= 1
        if ref.tag in ("t4", "t6") and ref.registry == "one.example":
            raise RegistryError(f"no {ref.tag}")
        return ref.tag

    monkeypatch.setattr(_Run, "head", head)
    refs = [Reference.parse(f"one.example/app:t{i}") for i in range(9)]
    refs += [Reference.parse(f"two.example/app:t{i}") for i in range(4)]

    async def go() -> Any:
        run = _Run(PushOptions(client=ClientOptions(max_concurrency=3)))
        with pytest.raises(RegistryError, match="no t4"):
            await run._head_wave(refs)
        return await run._head_wave(refs[9:])

    assert asyncio.run(go()) == ["t0", "t1", "t2", "t3"]
    first = started[:13]
    assert [s for s in first if s.startswith("one")] == [r.familiar() for r in refs[:9]]
    assert [s for s in first if s.startswith("two")] == [r.familiar() for r in refs[9:]]
    assert most == {"one.example": 3, "two.example": 3}
    assert max(tasks) <= 1 + 3 + 3  # the run's own task and the two registries' slots
    assert "no t6" in caplog.text


def test_an_answer_and_its_request_are_freed_without_the_cyclic_gc() -> None:
    """Peak memory (issue 12): httpx's stream refers back to its response; left in place, every
    answer and its request (headers, a token) lived on until the cyclic GC ran (230 requests at
    the peak of a bulk run with 64 in flight)."""
    import gc
    import weakref

    kept: list[weakref.ref[Any]] = []
    original = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        response = await original(self, request, **kwargs)
        kept.extend([weakref.ref(response), weakref.ref(request)])
        return response

    async def go(host: str) -> None:
        async with RegistryClient(host, options=ClientOptions(plain_http=True)) as client:
            for i in range(3):
                assert (await client.head_manifest("team/app", f"t{i}")) is not None
            alive.extend(ref for ref in kept if ref() is not None)

    alive: list[weakref.ref[Any]] = []
    with pytest.MonkeyPatch.context() as patch, KeepAliveServer(HeldAnswers()) as server:
        patch.setattr(httpx.AsyncClient, "send", send)
        gc.collect()
        gc.disable()
        try:
            asyncio.run(go(server.host))
        finally:
            gc.enable()
    assert len(kept) == 6
    assert alive == []
