"""A registry with OCI 1.1's referrers API, for tests: a forwarding server on 127.0.0.1 in front of
a real ``docker-registry`` (distribution 2.8 has no such API) that adds it.

Everything is forwarded to the registry as is (the ``Host`` header too, so the registry's
``Location`` URLs name this server), but:

* ``GET /v2/<name>/referrers/<digest>`` answers as a registry with the API does: 200 and an OCI
  index of the manifests whose ``subject`` is ``<digest>`` — those put through this server (it
  reads each manifest PUT, as such a registry would) and those listed by the registry's
  referrers tag ``sha256-<hex>`` (how referrers seeded before the server started are found);
* a manifest PUT that names a ``subject`` gets the ``OCI-Subject`` header in its answer, as the
  distribution spec asks of registries with the API.

Plain HTTP, no auth (use it with ``open_registry``). Records each request (method, path) for
tests to count. Deliberately does not import :mod:`pushmanifest`.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any, Optional

import httpx

from .images import sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[a-z0-9]+:[0-9a-f]+)$")
_MANIFEST_PUT = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)$")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        length = next((v for n, v in headers if n.lower() == "content-length"), None)
        if length is None:  # a HEAD's is the upstream's (the manifest's size), given above
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _serve(self) -> None:
        body = self._body()
        self.server.record(self.command, self.path)
        path = self.path.split("?", 1)[0]
        found = _REFERRERS.match(path)
        if self.command == "GET" and found:
            index = self.server.referrers(found["name"], found["digest"])
            data = json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}
            ).encode()
            self._reply(200, [("Content-Type", OCI_INDEX)], data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = self.headers.get("Host", "")
        response = self.server.http.request(
            self.command, self.server.upstream + self.path, headers=headers, content=body or None
        )
        out = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in _HOP_BY_HOP
            or (k.lower() == "content-length" and self.command == "HEAD")
        ]
        put = _MANIFEST_PUT.match(path)
        if self.command == "PUT" and put and response.status_code == 201:
            subject = self.server.index_put(put["name"], body, self.headers.get("Content-Type", ""))
            if subject:
                out.append(("OCI-Subject", subject))
        self._reply(response.status_code, out, response.content)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = f"http://{upstream}"
        self.http = httpx.Client(timeout=30.0)
        self.lock = threading.Lock()
        self.indexed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []

    def record(self, method: str, path: str) -> None:
        with self.lock:
            self.requests.append((method, path))

    def index_put(self, name: str, body: bytes, media_type: str) -> Optional[str]:
        try:
            manifest = json.loads(body)
        except ValueError:
            return None
        subject = manifest.get("subject") if isinstance(manifest, dict) else None
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
            return None
        config = manifest.get("config") or {}
        entry: dict[str, Any] = {
            "mediaType": manifest.get("mediaType") or media_type,
            "digest": sha256(body),
            "size": len(body),
            "artifactType": manifest.get("artifactType") or config.get("mediaType", ""),
        }
        if manifest.get("annotations"):
            entry["annotations"] = manifest["annotations"]
        with self.lock:
            entries = self.indexed.setdefault((name, subject["digest"]), [])
            if all(e["digest"] != entry["digest"] for e in entries):
                entries.append(entry)
        return str(subject["digest"])

    def referrers(self, name: str, digest: str) -> list[dict[str, Any]]:
        with self.lock:
            found = list(self.indexed.get((name, digest), []))
        tag = digest.replace(":", "-", 1)
        response = self.http.get(
            f"{self.upstream}/v2/{name}/manifests/{tag}", headers={"Accept": OCI_INDEX}
        )
        if response.status_code == 200:
            for entry in response.json().get("manifests", []):
                if all(e["digest"] != entry["digest"] for e in found):
                    found.append(entry)
        return found


class ReferrersApiRegistry:
    """``with ReferrersApiRegistry(server.host) as api:`` then use ``api.host`` as a registry."""

    def __init__(self, upstream: str) -> None:
        self._server = _Server(upstream)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ReferrersApiRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.http.close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.requests)

    def count(self, method: str, path_contains: str = "") -> int:
        return sum(m == method and path_contains in p for m, p in self.requests)
