"""A hostile registry + token server on loopback, for the auth limits no real registry will test.

It plays a registry that asks for a Bearer token (``/v2/`` answers 401 with a challenge naming
its own ``/token``) and a token server whose answer is as large as a test wants, streamed so that
the server never holds it in memory. Stdlib only, loopback only::

    with HostileAuthServer(token_bytes=200 * 2**20) as server:
        run the CLI against f"{server.host}/app:1" with --plain-http

``challenge`` replaces the ``WWW-Authenticate`` value (a huge or many-parameter header);
``token_bytes`` is the size of the token answer, a JSON object with one long string
(``declare_length``: with a ``Content-Length``; ``content_encoding``: a small gzip answer labelled
so).
:attr:`HostileAuthServer.token_bytes_sent` counts what the token endpoint managed to write (a client
that stops reading at its cap makes the writes fail).
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

__all__ = ["HostileAuthServer"]

_CHUNK = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    server_owner: HostileAuthServer  # set on the subclass made per server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the tests print what matters

    def do_GET(self) -> None:
        owner = self.server_owner
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.paths.append(path)
        if path == "/token":
            self._token()
        elif path.startswith("/v2/"):
            self.send_response(401)
            self.send_header("WWW-Authenticate", owner.challenge_value())
            self.send_header("Content-Type", "application/json")
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _token(self) -> None:
        owner = self.server_owner
        head, tail = b'{"token":"', b'"}'
        filler = max(0, owner.token_bytes - len(head) - len(tail))
        if owner.content_encoding:
            body = gzip.compress(b'{"token":"t"}')
            self.send_response(200)
            self.send_header("Content-Encoding", owner.content_encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if owner.declare_length:
            self.send_header("Content-Length", str(len(head) + filler + len(tail)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"a" * _CHUNK
        try:
            self.wfile.write(head)
            left = filler
            while left > 0:
                piece = chunk if left >= _CHUNK else chunk[:left]
                self.wfile.write(piece)
                left -= len(piece)
                with owner.lock:
                    owner.token_bytes_sent += len(piece)
            self.wfile.write(tail)
        except OSError:
            pass  # the client stopped reading: what the test wants to see
        self.close_connection = True


class HostileAuthServer:
    """See the module's docstring."""

    def __init__(
        self,
        *,
        token_bytes: int = 64,
        challenge: Optional[str] = None,
        declare_length: bool = False,
        content_encoding: str = "",
    ) -> None:
        self.token_bytes = token_bytes
        self.challenge = challenge
        self.declare_length = declare_length
        self.content_encoding = content_encoding
        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.token_bytes_sent = 0
        handler = type("_BoundHandler", (_Handler,), {"server_owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def challenge_value(self) -> str:
        if self.challenge is not None:
            return self.challenge
        return f'Bearer realm="http://{self.host}/token",service="hostile"'

    def __enter__(self) -> HostileAuthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        with contextlib.suppress(OSError):
            self._httpd.server_close()
        self._thread.join(timeout=10)


if __name__ == "__main__":  # a server to measure the CLI against by hand
    import sys
    import time

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 200 * 2**20
    with HostileAuthServer(token_bytes=size) as server:
        print(server.host, flush=True)
        while True:
            time.sleep(3600)
