"""The tests' own reverse proxy (tests/support/proxy.py), against a tiny stdlib upstream."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import pytest

from support.proxy import HttpProxy, RecordedRequest, WaveGate, depth_of, process_blocked

BIG = bytes(range(256)) * 800  # 200 KiB: several 64 KiB pieces
CHUNKS = [b"hello ", b"chunked ", BIG, b"world"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Upstream

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    # Fixed values, so that responses are byte-comparable.
    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"

    def version_string(self) -> str:
        return "upstream/1"

    def _send(self, status: int, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/fixed":
            self._send(200, b"fixed body\n", {"Docker-Content-Digest": "sha256:abc"})
        elif path == "/big":
            self._send(200, BIG, {"Content-Type": "application/octet-stream"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                for chunk in CHUNKS:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
        elif path == "/empty":
            self.send_response(204)
            self.end_headers()
        elif path == "/drop-after":
            # Closes the connection after the response without saying so: a stale keep-alive.
            self._send(200, b"once\n")
            self.close_connection = True
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self._read_body()
        host = self.headers["Host"]
        self._send(
            202,
            json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode(),
            {"Location": f"http://{host}/v2/app/blobs/uploads/1234", "Content-Type": "text/json"},
        )

    do_PUT = do_POST


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def proxy(upstream: _Upstream) -> Iterator[HttpProxy]:
    with HttpProxy(upstream=upstream.host) as p:
        yield p
    assert p.errors == []


def _raw(host: str, request: bytes) -> bytes:
    """Send one ``Connection: close`` request; everything the server sent until it closed."""
    address, port = host.split(":")
    with socket.create_connection((address, int(port)), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                return data
            data += piece


def _get(proxy: HttpProxy, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(proxy.host, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /fixed HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n",
        b"HEAD /fixed HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n",
        b"GET /big HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n",
        b"GET /chunked HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n",
        b"GET /empty HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n",
        b"POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n"
        b"Content-Length: 5\r\n\r\nabcde",
    ],
    ids=["fixed", "head", "big", "chunked", "204", "404", "post"],
)
def test_relay_is_byte_exact(upstream: _Upstream, proxy: HttpProxy, request_bytes: bytes) -> None:
    direct = _raw(upstream.host, request_bytes)
    assert direct.startswith(b"HTTP/1.1 ")
    assert _raw(proxy.host, request_bytes) == direct
    assert proxy.count() == 1


def test_location_points_at_the_proxy(proxy: HttpProxy) -> None:
    conn = http.client.HTTPConnection(proxy.host, timeout=5)
    conn.request("POST", "/v2/app/blobs/uploads/")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 202
    assert response.getheader("Location") == f"{proxy.url}/v2/app/blobs/uploads/1234"


def test_keep_alive_reuses_one_connection_each_side(upstream: _Upstream) -> None:
    before = upstream.connections
    with HttpProxy(upstream=upstream.host) as proxy:
        conn = http.client.HTTPConnection(proxy.host, timeout=5)
        for path in ("/fixed", "/chunked", "/fixed"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        conn.request("HEAD", "/big")
        response = conn.getresponse()
        assert response.getheader("Content-Length") == str(len(BIG))
        assert response.read() == b""
        conn.close()
        assert proxy.connections == 1
        assert {r.connection_id for r in proxy.requests} == {1}
        assert upstream.connections - before == 1
        assert proxy.errors == []


def test_stale_upstream_connection_is_replaced(proxy: HttpProxy) -> None:
    conn = http.client.HTTPConnection(proxy.host, timeout=5)
    for _ in range(3):
        conn.request("GET", "/drop-after")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"once\n")
    conn.close()
    assert proxy.connections == 1
    assert [r.status for r in proxy.requests] == [200, 200, 200]


def test_counting_and_reset(proxy: HttpProxy) -> None:
    for path in ("/fixed", "/fixed", "/big", "/nope"):
        _get(proxy, path)
    _get(proxy, "/fixed", method="HEAD")
    assert proxy.count() == 5
    assert proxy.count(method="GET") == 4
    assert proxy.count(method="head") == 1
    assert proxy.count(path_contains="fix") == 3
    assert proxy.count(method="GET", path_contains="/fixed") == 2
    assert [r.status for r in proxy.requests] == [200, 200, 200, 404, 200]
    assert proxy.connections == 5
    proxy.reset()
    assert (proxy.count(), proxy.connections, proxy.depth()) == (0, 0, 0)


#: A client in its own process (the gate watches a process): ``python -c CLIENT MODE HOST``.
CLIENT = r"""
import http.client, sys, threading, time

mode, host = sys.argv[1], sys.argv[2]


def get(conn, path="/fixed"):
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.read() == b"fixed body\n"


if mode == "sequential":  # three round trips, one after another
    conn = http.client.HTTPConnection(host, timeout=60)
    for _ in range(3):
        get(conn)
elif mode in ("concurrent", "chain"):  # five at once; "chain": then one more
    def worker():
        get(http.client.HTTPConnection(host, timeout=60))

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if mode == "chain":
        get(http.client.HTTPConnection(host, timeout=60))
elif mode == "slow":  # A, then a long computation, then B, which does not need A's answer
    a, b = (http.client.HTTPConnection(host, timeout=60) for _ in range(2))
    a.request("GET", "/fixed")
    until = time.process_time() + 0.5  # CPU time: busy, never blocked
    while time.process_time() < until:
        pass
    b.request("GET", "/fixed")
    for conn in (a, b):
        assert conn.getresponse().read() == b"fixed body\n"
"""


def _client_depth(upstream: _Upstream, mode: str) -> tuple[int, HttpProxy]:
    gate = WaveGate()
    with HttpProxy(upstream=upstream.host, gate=gate) as proxy:
        client = subprocess.Popen([sys.executable, "-c", CLIENT, mode, proxy.host])
        gate.watch(client.pid)
        assert client.wait(timeout=120) == 0
        assert proxy.errors == []
        return proxy.depth(), proxy


@pytest.mark.parametrize(
    "mode, depth, widest, count",
    [("sequential", 3, 1, 3), ("concurrent", 1, 5, 5), ("chain", 2, 5, 6), ("slow", 1, 2, 2)],
)
def test_depth_in_waves(
    upstream: _Upstream, mode: str, depth: int, widest: int, count: int
) -> None:
    """Waves count round trips whatever the load: "slow" sends B half a CPU-second after A, so
    it arrives long after A could have been answered; A is held while the client computes."""
    measured, proxy = _client_depth(upstream, mode)
    assert (measured, proxy.widest_wave(), proxy.count()) == (depth, widest, count)
    assert {r.wave for r in proxy.requests} == set(range(1, depth + 1))


def test_depth_by_overlap_without_a_gate(upstream: _Upstream) -> None:
    with HttpProxy(upstream=upstream.host) as proxy:
        for _ in range(3):
            assert _get(proxy, "/fixed")[0] == 200
        assert proxy.depth() == 3  # sequential requests: no overlap, whatever the load
        assert {r.wave for r in proxy.requests} == {None}


def test_gate_without_a_client_to_watch_says_so(upstream: _Upstream) -> None:
    gate = WaveGate(stall_timeout=0.2)
    with HttpProxy(upstream=upstream.host, gate=gate) as proxy:
        assert _get(proxy, "/fixed")[0] == 200  # held, then released by the stall rule
        assert len(proxy.errors) == 1 and "depth unreliable" in proxy.errors[0]
        proxy.reset()
        assert proxy.errors == [] and gate.waves == 0


def test_process_blocked() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 60  # a bound only a hang reaches
        while not process_blocked(sleeper.pid):  # starting up: importing, not yet asleep
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not process_blocked(spinner.pid)  # running or runnable: R, never S
        assert not process_blocked(os.getpid())  # this thread is running
    finally:
        sleeper.kill()
        spinner.kill()
        sleeper.wait()
        spinner.wait()
    assert process_blocked(sleeper.pid)  # gone: sends nothing more


def test_response_header_rewrite(upstream: _Upstream) -> None:
    def rewrite(name: str, value: str) -> str:
        return (
            value.replace("sha256:abc", "sha256:def") if name == "docker-content-digest" else value
        )

    with HttpProxy(upstream=upstream.host, rewrite_response_header=rewrite) as proxy:
        conn = http.client.HTTPConnection(proxy.host, timeout=5)
        conn.request("GET", "/fixed")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"fixed body\n")
        assert response.getheader("Docker-Content-Digest") == "sha256:def"
        conn.close()


def test_depth_of() -> None:
    assert depth_of([]) == 0
    assert depth_of([(0, 1), (1, 2), (2, 3)]) == 3  # touching counts as waiting
    assert depth_of([(0, 1), (0.5, 2), (1.5, 3)]) == 2
    assert depth_of([(0, 10), (1, 2), (3, 4), (5, 6), (11, 12)]) == 4
    assert depth_of([(0, 5), (0, 5), (0, 5)]) == 1


def test_delay_is_applied(upstream: _Upstream) -> None:
    with HttpProxy(upstream=upstream.host, delay=0.15) as proxy:
        began = time.monotonic()
        assert _get(proxy, "/fixed") == (200, b"fixed body\n")
        assert time.monotonic() - began >= 0.15  # a lower bound: load only lengthens it
        (record,) = proxy.requests
        assert record.duration >= 0.15
        # The attribute is read per request: an hour's delay is a timeout, none is an answer
        # (with a bound only a hang reaches).
        proxy.delay = 3600.0
        with pytest.raises(socket.timeout):  # TimeoutError from 3.10, not on 3.9
            conn = http.client.HTTPConnection(proxy.host, timeout=1)
            conn.request("GET", "/fixed")
            conn.getresponse()
        conn.close()
        proxy.delay = 0.0
        conn = http.client.HTTPConnection(proxy.host, timeout=60)
        conn.request("GET", "/fixed")
        assert conn.getresponse().status == 200
        conn.close()


def test_chunked_bodies_both_ways(proxy: HttpProxy) -> None:
    status, body = _get(proxy, "/chunked")
    assert (status, body) == (200, b"".join(CHUNKS))

    conn = http.client.HTTPConnection(proxy.host, timeout=5)
    conn.request("PUT", "/v2/app/blobs/uploads/1234", body=iter(CHUNKS), encode_chunked=True)
    response = conn.getresponse()
    echoed = json.loads(response.read())
    big_upload = BIG * 10  # 2 MB with Content-Length, on the same connection
    conn.request("PUT", "/v2/app/blobs/uploads/1234", body=big_upload)
    echoed_big = json.loads(conn.getresponse().read())
    conn.close()
    whole = b"".join(CHUNKS)
    assert echoed == {"length": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    assert echoed_big == {
        "length": len(big_upload),
        "sha256": hashlib.sha256(big_upload).hexdigest(),
    }
    assert proxy.connections == 2


def test_expect_continue(proxy: HttpProxy) -> None:
    address, port = proxy.host.split(":")
    with socket.create_connection((address, int(port)), timeout=5) as sock:
        sock.sendall(
            b"PUT /v2/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        data = b""
        while piece := sock.recv(65536):
            data += piece
    assert data.startswith(b"HTTP/1.1 202 ")
    assert hashlib.sha256(b"abc").hexdigest().encode() in data


def _faulted_run(upstream: _Upstream, seed: int) -> tuple[list[str], list[RecordedRequest]]:
    outcomes = []
    with HttpProxy(upstream=upstream.host) as proxy:
        proxy.set_faults(rate=0.5, seed=seed, extra_delay=0.02)
        for i in range(24):
            conn = http.client.HTTPConnection(proxy.host, timeout=5)
            try:
                conn.request("GET", f"/fixed?{i}")
                response = conn.getresponse()
                body = response.read()
                outcomes.append(f"{response.status} {response.getheader('Retry-After')}")
                if response.status == 200:
                    assert body == b"fixed body\n"
                else:
                    assert json.loads(body)["errors"][0]["message"] == "injected by test proxy"
            except (ConnectionError, http.client.HTTPException):
                outcomes.append("reset")
            finally:
                conn.close()
        assert proxy.errors == []
        return outcomes, proxy.requests


def test_faults_are_deterministic(upstream: _Upstream) -> None:
    outcomes, records = _faulted_run(upstream, seed=1)
    again, records_again = _faulted_run(upstream, seed=1)
    assert outcomes == again
    assert [(r.path, r.fault, r.status) for r in records] == [
        (r.path, r.fault, r.status) for r in records_again
    ]
    kinds = [r.fault for r in records]
    assert {"reset", "503", "429", "delay", None} <= set(kinds)  # 24 draws at rate 0.5 hit all
    for outcome, record in zip(outcomes, records):
        expected = {
            "reset": "reset",
            "503": "503 None",
            "429": "429 0",
            "delay": "200 None",
            None: "200 None",
        }[record.fault]
        assert outcome == expected
        if record.fault == "delay":
            assert record.duration >= 0.02
    other, _ = _faulted_run(upstream, seed=2)
    assert other != outcomes


def test_fault_match_and_off(proxy: HttpProxy) -> None:
    proxy.set_faults(rate=1.0, kinds=("503",), seed=0, match=lambda method, path: method == "PUT")
    assert _get(proxy, "/fixed")[0] == 200
    conn = http.client.HTTPConnection(proxy.host, timeout=5)
    conn.request("PUT", "/v2/x", body=b"data")
    first = conn.getresponse()
    first.read()
    conn.request("GET", "/fixed")  # the connection survived the injected 503
    second = conn.getresponse()
    second.read()
    conn.close()
    assert (first.status, second.status) == (503, 200)
    proxy.set_faults(rate=0.0)
    assert _get(proxy, "/fixed")[0] == 200
    assert [r.fault for r in proxy.requests] == [None, "503", None, None]
    assert len(proxy.faults) == 1


def test_upstream_down_gives_502() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{sock.getsockname()[1]}"
    with HttpProxy(upstream=free) as proxy:
        assert _get(proxy, "/fixed")[0] == 502
        (record,) = proxy.requests
        assert record.status == 502
        assert record.error is not None


def test_stop_closes_everything(upstream: _Upstream) -> None:
    proxy = HttpProxy(upstream=upstream.host).start()
    conn = http.client.HTTPConnection(proxy.host, timeout=5)
    conn.request("GET", "/fixed")
    conn.getresponse().read()
    thread = proxy._thread
    proxy.stop()
    assert thread is not None and not thread.is_alive()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", "/fixed")  # the idle keep-alive connection was closed
        conn.getresponse()
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
