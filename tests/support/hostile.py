"""A small hostile HTTP server on 127.0.0.1: answers what the test tells it to, byte by byte.

Unlike :class:`support.proxy.HttpProxy` it has no registry behind it: each test gives a function
``route(request) -> Reply`` and the server writes exactly that reply (any headers, any
Content-Encoding, a body trickled a byte at a time, a connection closed half-way). Every request
is recorded (method, path, headers) so tests can count them.

Deliberately does not import :mod:`pushmanifest`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["HostileServer", "Reply", "Request", "gzip_bomb", "registry_route"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Seconds between bytes of the body (0: all at once).
    trickle: float = 0.0
    #: Close the connection after this many bytes of the body (None: send it all).
    cut_after: Optional[int] = None
    #: Send this many bytes of the body, then nothing more until the server stops.
    stall_after: Optional[int] = None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining > 0:  # drain an upload so the client is not blocked writing
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._drain_chunked()
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        with self.server.lock:
            self.server.requests.append(request)
        reply = self.server.route(request)
        self.send_response_only(reply.status)
        headers = {k.lower(): v for k, v in reply.headers.items()}
        headers.setdefault("content-length", str(len(reply.body)))
        headers.setdefault("connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        body = reply.body if reply.cut_after is None else reply.body[: reply.cut_after]
        try:
            if reply.trickle:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if self.server.stopping.wait(reply.trickle):
                        return
            elif reply.stall_after is not None:
                self.wfile.write(body[: reply.stall_after])
                self.wfile.flush()
                self.server.stopping.wait()
                return
            else:
                self.wfile.write(body)
            self.wfile.flush()
            if reply.cut_after is not None:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client gave up: that is what some tests want

    def _drain_chunked(self) -> None:
        """Read a chunked body (a streamed upload) to its end."""
        while True:
            size_line = self.rfile.readline(1024)
            if not size_line:
                return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            self.rfile.read(size + 2)  # the chunk and its CRLF

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    route: Callable[[Request], Reply]
    requests: list[Request]
    lock: threading.Lock
    stopping: threading.Event


class HostileServer:
    """``with HostileServer(route) as server:`` ... ``server.host`` is ``127.0.0.1:PORT``."""

    def __init__(self, route: Callable[[Request], Reply]) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.route = route
        self._server.requests = []
        self._server.lock = threading.Lock()
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        with self._server.lock:
            return list(self._server.requests)


def gzip_bomb(size: int, layers: int = 1) -> bytes:
    """``size`` zero bytes gzip'd ``layers`` times (1 GB in 3 layers is a few hundred bytes)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    parts = []
    for _ in range(size // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(bytes(size % len(block))))
    parts.append(compressor.flush())
    data = b"".join(parts)
    for _ in range(layers - 1):
        data = gzip.compress(data, 9, mtime=0)
    return data


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_route(
    repository: str,
    manifest: bytes,
    media_type: str,
    blobs: Mapping[str, bytes],
    *,
    blob_reply: Optional[Callable[[Request, str, bytes], Reply]] = None,
    manifest_reply: Optional[Callable[[bytes], Reply]] = None,
) -> Callable[[Request], Reply]:
    """A read-only registry holding one image; ``blob_reply``/``manifest_reply`` shape answers.

    A GET of ``/storage/<digest>`` serves a blob too, for replies that redirect there;
    ``blob_reply`` shapes both (``request.path`` tells which).
    """
    manifest_digest = _digest(manifest)

    def route(request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if path == "/v2/":
            return Reply(200, {"content-type": "application/json"}, b"{}")
        prefix = f"/v2/{repository}/"
        if path.startswith(prefix + "manifests/"):
            reference = path[len(prefix + "manifests/") :]
            if reference not in ("latest", manifest_digest) and not reference.isalnum():
                return Reply(404, {"content-type": "application/json"}, _unknown("MANIFEST"))
            if manifest_reply is not None:
                return manifest_reply(manifest)
            headers = {"content-type": media_type, "docker-content-digest": manifest_digest}
            return Reply(200, headers, manifest)
        digest = ""
        if path.startswith(prefix + "blobs/"):
            digest = path[len(prefix + "blobs/") :]
        elif path.startswith("/storage/"):
            digest = path[len("/storage/") :]
        if digest in blobs:
            if blob_reply is not None:
                return blob_reply(request, digest, blobs[digest])
            return Reply(200, {"content-type": "application/octet-stream"}, blobs[digest])
        return Reply(404, {"content-type": "application/json"}, _unknown("BLOB"))

    return route


def _unknown(what: str) -> bytes:
    return json.dumps({"errors": [{"code": f"{what}_UNKNOWN", "message": "unknown"}]}).encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (for "does not hang" checks)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
