"""A quirk layer for tests: a small HTTP proxy in front of a real registry that bends its answers
the way a hosted registry does, one :class:`Profile` per vendor.

None of the hosted registries can be reached from the tests, so each documented quirk is
reproduced on top of the real ``docker-registry`` (``open_registry``/``token_registry``)::

    with QuirkProxy(open_registry.host, EcrProfile(password="...")) as proxy:
        run the CLI against proxy.host ...
        assert proxy.count("PUT", "/manifests/") == 1

Stdlib + httpx only (``ThreadingHTTPServer`` in a daemon thread; each request is forwarded with
one shared ``httpx.Client``). Unlike :mod:`support.proxy` (which relays bytes untouched and
measures depth) this one parses every exchange so that a profile can answer instead of the
registry (:meth:`Profile.on_request`) or rewrite the registry's answer
(:meth:`Profile.on_response`). The ``Host`` header goes upstream unchanged, so the registry's
``Location`` URLs point at the proxy. Every request is recorded (:attr:`QuirkProxy.seen`).

Each profile's docstring names the public source of the behaviour it reproduces.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

__all__ = [
    "AcrProfile",
    "DockerHubProfile",
    "EcrProfile",
    "Exchange",
    "GcrProfile",
    "GhcrProfile",
    "GitLabProfile",
    "HarborProfile",
    "HeadRefusingProfile",
    "NexusProfile",
    "Profile",
    "QuayProfile",
    "QuirkProxy",
    "Reply",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
LIST_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "content-length",
        "content-encoding",  # httpx decodes bodies: the length and coding are ours to set
    }
)
_MAX_BODY = 64 * 1024 * 1024


@dataclass
class Exchange:
    """One request as the proxy received it."""

    method: str
    path: str  #: without the query
    query: dict[str, list[str]]
    headers: httpx.Headers
    body: bytes
    had_content_length: bool

    @property
    def target(self) -> str:
        return self.path + (("?" + urlencode(self.query, doseq=True)) if self.query else "")

    def is_manifest(self) -> bool:
        return "/manifests/" in self.path

    @property
    def repository(self) -> str:
        """``/v2/<repository>/manifests/<ref>`` -> repository (also blobs/uploads)."""
        inner = self.path[len("/v2/") :]
        for marker in ("/manifests/", "/blobs/"):
            if marker in inner:
                return inner.split(marker, 1)[0]
        return ""

    @property
    def reference(self) -> str:
        return self.path.rsplit("/manifests/", 1)[1] if self.is_manifest() else ""

    @property
    def by_tag(self) -> bool:
        return self.is_manifest() and not self.reference.startswith("sha256:")

    def accepts(self) -> list[str]:
        values = self.headers.get_list("Accept")
        return [t.split(";")[0].strip() for v in values for t in v.split(",") if t.strip()]


@dataclass
class Reply:
    """An answer to send back: a parsed response, or ``raw`` bytes sent as is (then close)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: Optional[bytes] = None

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def without(self, name: str) -> Reply:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return self


def error_reply(
    status: int, code: str, message: str, detail: Any = None, headers: Any = ()
) -> Reply:
    """The distribution error envelope ``{"errors":[{"code","message","detail"}]}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    body = json.dumps({"errors": [error]}).encode()
    return Reply(status, [("Content-Type", "application/json"), *headers], body)


@dataclass(frozen=True)
class Seen:
    """A request as recorded: what came in and what went back."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    status: int
    accept: str
    content_type: str
    body: bytes
    had_content_length: bool
    quirk: str  #: "" when the registry answered untouched, else what the profile did


class Profile:
    """Hooks of one vendor. Subclasses override :meth:`on_request` and/or :meth:`on_response`."""

    name = "plain"

    def __init__(self) -> None:
        self.proxy: Optional[QuirkProxy] = None
        self.lock = threading.Lock()
        self.note = ""  # set by a hook: recorded as the exchange's ``quirk``

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        return None

    def on_response(self, ex: Exchange, reply: Reply) -> Reply:
        return reply

    def forward(self, ex: Exchange) -> Reply:
        assert self.proxy is not None
        return self.proxy.forward(ex)


class QuirkProxy:
    """The proxy: start with ``with`` (or :meth:`start`/:meth:`stop`)."""

    def __init__(self, upstream: str, profile: Profile) -> None:
        self.upstream = upstream
        self.profile = profile
        profile.proxy = self
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=60.0, follow_redirects=False)
        handler = type("_BoundHandler", (_Handler,), {"quirk_proxy": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread: Optional[threading.Thread] = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> QuirkProxy:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._client.close()

    def __enter__(self) -> QuirkProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- records ----------------------------------------------------------------------------

    def count(
        self, method: Optional[str] = None, path_contains: str = "", *, quirk: Optional[str] = None
    ) -> int:
        return len(self.select(method, path_contains, quirk=quirk))

    def select(
        self, method: Optional[str] = None, path_contains: str = "", *, quirk: Optional[str] = None
    ) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if (method is None or s.method == method)
                and path_contains in s.path
                and (quirk is None or s.quirk == quirk)
            ]

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    # -- forwarding -------------------------------------------------------------------------

    def forward(self, ex: Exchange) -> Reply:
        headers = [(k, v) for k, v in ex.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        request = self._client.build_request(
            ex.method,
            f"http://{self.upstream}{ex.target}",
            headers=headers,
            content=ex.body if ex.body or ex.method in ("PUT", "POST", "PATCH") else None,
        )
        response = self._client.send(request)
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        if ex.method == "HEAD" and "content-length" in response.headers:
            kept.append(("Content-Length", response.headers["content-length"]))
        return Reply(response.status_code, kept, response.content)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer (a test's abort) is not news


class _Handler(BaseHTTPRequestHandler):
    quirk_proxy: QuirkProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> tuple[bytes, bool]:
        length = self.headers.get("Content-Length")
        if length is not None:
            size = int(length)
            if size > _MAX_BODY:
                raise ValueError("body too large for the quirk proxy")
            return self.rfile.read(size), True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts), False
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return b"", False

    def _serve(self) -> None:
        proxy = self.quirk_proxy
        profile = proxy.profile
        url = urlsplit(self.path)
        body, had_length = self._read_body()
        ex = Exchange(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=httpx.Headers(list(self.headers.items())),
            body=body,
            had_content_length=had_length,
        )
        note = ""
        try:
            reply = profile.on_request(ex)
            if reply is not None:
                note = getattr(reply, "quirk", "") or f"{profile.name}: answered"
            else:
                reply = proxy.forward(ex)
                before = (reply.status, list(reply.headers), reply.body)
                reply = profile.on_response(ex, reply)
                if (reply.status, reply.headers, reply.body) != before or reply.raw is not None:
                    note = getattr(reply, "quirk", "") or f"{profile.name}: rewritten"
        except httpx.HTTPError as exc:
            reply = Reply(502, [("Content-Type", "text/plain")], str(exc).encode())
        proxy.record(
            Seen(
                method=ex.method,
                path=ex.path,
                query=ex.query,
                status=reply.status,
                accept=", ".join(ex.headers.get_list("Accept")),
                content_type=ex.headers.get("Content-Type", ""),
                body=ex.body,
                had_content_length=ex.had_content_length,
                quirk=note,
            )
        )
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(reply.status)
        names = {k.lower() for k, _ in reply.headers}
        for key, value in reply.headers:
            self.send_header(key, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if ex.method != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve


def quirk(reply: Reply, what: str) -> Reply:
    """Mark a reply with the quirk it shows (recorded in :attr:`Seen.quirk`)."""
    reply.quirk = what  # type: ignore[attr-defined]
    return reply


def _media_type_of(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    value = data.get("mediaType") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


# -- vendor profiles ----------------------------------------------------------------------------


class DockerHubProfile(Profile):
    """Docker Hub: the anti-abuse limit answers ``Too Many Requests (HAP429).`` from HAProxy,
    not the registry's JSON (docker/hub-feedback#1907: "error parsing HTTP 429 response body:
    invalid character 'T'"), as HTTP/1.0, close-delimited, with ``Retry-After``. Manifest GETs
    count as pulls (``ratelimit-remaining`` goes down), HEADs do not
    (https://docs.docker.com/docker-hub/download-rate-limit/).
    """

    name = "dockerhub"

    def __init__(self, *, hap429: int = 0, retry_after: str = "60", limit: int = 100) -> None:
        super().__init__()
        self.hap429_left = hap429
        self.retry_after = retry_after
        self.limit = limit
        self.pulls = 0

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.is_manifest():
            with self.lock:
                if self.hap429_left > 0:
                    self.hap429_left -= 1
                    body = b"Too Many Requests (HAP429).\n"
                    raw = (
                        b"HTTP/1.0 429 Too Many Requests\r\n"
                        b"Cache-Control: no-cache\r\n"
                        b"Connection: close\r\n"
                        b"Content-Type: text/plain\r\n"
                        b"Retry-After: " + self.retry_after.encode() + b"\r\n\r\n" + body
                    )
                    return quirk(Reply(429, raw=raw), "dockerhub: HAP429")
        return None

    def on_response(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.is_manifest() and ex.method in ("GET", "HEAD") and reply.status == 200:
            with self.lock:
                if ex.method == "GET":
                    self.pulls += 1
                remaining = max(0, self.limit - self.pulls)
            reply.headers.append(("ratelimit-limit", f"{self.limit};w=21600"))
            reply.headers.append(("ratelimit-remaining", f"{remaining};w=21600"))
        return reply


class EcrProfile(Profile):
    """Amazon ECR.

    * Basic auth (user ``AWS``, a password from ``docker-credential-ecr-login``).
    * A cross-repository mount only works when a manifest in the source repository references
      the blob; otherwise 202 and an upload session (aws/containers-roadmap#1459, #2860). Here:
      every mount is refused that way (sources pushed as tags are referenced, but the refusal is
      the case to test).
    * Immutable tags: any PUT to an existing tag answers 400 TAG_INVALID "The image tag 'T'
      already exists in the 'R' repository and cannot be overwritten because the repository is
      immutable." (aws/containers-roadmap#862, #2380), even with identical content.
    * No ``Docker-Content-Digest`` on answers (``strip_digest``).
    """

    name = "ecr"

    def __init__(
        self, *, password: str, immutable: bool = False, strip_digest: bool = True
    ) -> None:
        super().__init__()
        self.password = password
        self.immutable = immutable
        self.strip_digest = strip_digest
        self.refused_mounts = 0

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        expected = "Basic " + base64.b64encode(f"AWS:{self.password}".encode()).decode()
        if ex.headers.get("Authorization") != expected:
            reply = error_reply(
                401,
                "DENIED",
                "Not Authorized",
                headers=[("WWW-Authenticate", 'Basic realm="https://ecr.example/",service="ecr"')],
            )
            return quirk(reply, "ecr: basic challenge")
        if ex.method == "POST" and "mount" in ex.query:
            plain = Exchange(ex.method, ex.path, {}, ex.headers, ex.body, ex.had_content_length)
            reply = self.forward(plain)
            with self.lock:
                self.refused_mounts += 1
            return quirk(reply, "ecr: mount refused (202)")
        if self.immutable and ex.method == "PUT" and ex.by_tag:
            head = Exchange(
                "HEAD",
                ex.path,
                {},
                httpx.Headers({"Accept": ", ".join(MANIFEST_TYPES), "Host": ex.headers["Host"]}),
                b"",
                False,
            )
            if self.forward(head).status == 200:
                message = (
                    f"The image tag '{ex.reference}' already exists in the '{ex.repository}' "
                    "repository and cannot be overwritten because the repository is immutable."
                )
                return quirk(error_reply(400, "TAG_INVALID", message), "ecr: immutable tag")
        return None

    def on_response(self, ex: Exchange, reply: Reply) -> Reply:
        if self.strip_digest and reply.header("Docker-Content-Digest"):
            return quirk(reply.without("Docker-Content-Digest"), "ecr: no digest header")
        return reply


class GcrProfile(Profile):
    """GCR / Artifact Registry: the first PUT of a manifest by tag gets 401 ``invalid_token``
    mid-run (the token was revoked or re-minted), so the client must fetch a token again and
    resend the PUT *with its body* (estesp/manifest-tool#122, #156, fixed by #159: "cannot reuse
    body, request must be retried"). Runs in front of ``token_registry``.
    """

    name = "gcr"

    def __init__(
        self, *, realm: str, service: str, revoke_puts: int = 1, on_blobs: bool = False
    ) -> None:
        super().__init__()
        self.realm = realm
        self.service = service
        self.revoke_left = revoke_puts
        #: Revoke on a blob upload's streamed body instead of a manifest's PUT; mounts are
        #: refused (202) so that blobs are streamed at all.
        self.on_blobs = on_blobs

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if self.on_blobs and ex.method == "POST" and "mount" in ex.query:
            plain = Exchange(ex.method, ex.path, {}, ex.headers, ex.body, ex.had_content_length)
            return quirk(self.forward(plain), "gcr: mount refused (202)")
        if self.on_blobs:  # the upload's streamed body: the PATCH (or a monolithic PUT)
            revocable = "/blobs/uploads/" in ex.path and ex.method in ("PATCH", "PUT")
        else:
            revocable = ex.method == "PUT" and ex.by_tag
        if revocable and ex.headers.get("Authorization"):
            with self.lock:
                if self.revoke_left <= 0:
                    return None
                self.revoke_left -= 1
            challenge = (
                f'Bearer realm="{self.realm}",service="{self.service}",'
                f'scope="repository:{ex.repository}:pull,push",error="invalid_token"'
            )
            reply = error_reply(
                401,
                "UNAUTHORIZED",
                "authentication required",
                headers=[("WWW-Authenticate", challenge)],
            )
            return quirk(reply, "gcr: invalid_token")
        return None


class GhcrProfile(Profile):
    """GHCR: reads lag behind writes, so a HEAD/GET of a tag right after its PUT may 404
    (docker/buildx#3708); the registry has no manifest DELETE (405)."""

    name = "ghcr"

    def __init__(self, *, lag_reads: int = 3) -> None:
        super().__init__()
        self.lag_reads = lag_reads
        self._lagging: dict[str, int] = {}

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.method == "DELETE" and ex.is_manifest():
            return quirk(
                error_reply(405, "UNSUPPORTED", "The operation is unsupported."),
                "ghcr: no delete",
            )
        if ex.method in ("GET", "HEAD") and ex.is_manifest():
            with self.lock:
                left = self._lagging.get(ex.path, 0)
                if left > 0:
                    self._lagging[ex.path] = left - 1
                    return quirk(
                        error_reply(404, "MANIFEST_UNKNOWN", "manifest unknown"), "ghcr: lag"
                    )
        return None

    def on_response(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.method == "PUT" and ex.by_tag and reply.status == 201:
            with self.lock:
                self._lagging[ex.path] = self.lag_reads
        return reply


class QuayProfile(Profile):
    """Quay: a manifest read whose Accept does not list both the Docker v2 and the OCI types is
    served as schema 1 (estesp/manifest-tool#156). ``reject_lists``: old Quay refuses lists
    (containers/podman#8353); ``reject_index_annotations``: Quay before quay/quay#3357 refuses an
    OCI index with annotations (its OCIIndex schema had no ``annotations`` property).
    """

    name = "quay"

    def __init__(self, *, reject_lists: bool = False, reject_index_annotations: bool = False):
        super().__init__()
        self.reject_lists = reject_lists
        self.reject_index_annotations = reject_index_annotations

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.method == "PUT" and ex.is_manifest():
            media_type = ex.headers.get("Content-Type", "").split(";")[0].strip()
            if self.reject_lists and media_type in LIST_TYPES:
                return quirk(
                    error_reply(
                        400,
                        "MANIFEST_INVALID",
                        "manifest invalid",
                        {"message": f"manifest list type {media_type} is not supported"},
                    ),
                    "quay: no lists",
                )
            if self.reject_index_annotations and media_type == OCI_INDEX:
                data = json.loads(ex.body)
                if "annotations" in data:
                    detail = {
                        "message": "failed to parse manifest: manifest data does not match "
                        "schema: Additional properties are not allowed ('annotations' was "
                        "unexpected)"
                    }
                    return quirk(
                        error_reply(400, "MANIFEST_INVALID", "manifest invalid", detail),
                        "quay: no index annotations",
                    )
        return None

    def on_response(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.is_manifest() and ex.method in ("GET", "HEAD") and reply.status == 200:
            accepted = set(ex.accepts())
            modern = {DOCKER_MANIFEST, OCI_MANIFEST} <= accepted
            if not modern:
                body = json.dumps({"schemaVersion": 1, "name": ex.repository, "tag": "x"}).encode()
                reply = Reply(200, [("Content-Type", SCHEMA1_SIGNED)], body)
                return quirk(reply, "quay: schema 1")
        return reply


class AcrProfile(Profile):
    """ACR: a manifest read whose Accept does not list the manifest's type is a 404
    MANIFEST_UNKNOWN "OCI index found, but accept header does not support OCI indexes"
    (google/go-containerregistry#1697, Azure/acr#764). Auth is the identity token of
    ``az acr login`` exchanged by OAuth2 (token server in front, user 0000...).
    """

    name = "acr"

    def on_response(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.is_manifest() and ex.method in ("GET", "HEAD") and reply.status == 200:
            media_type = (reply.header("Content-Type") or "").split(";")[0].strip()
            if media_type and media_type not in ex.accepts():
                kind = {
                    OCI_INDEX: "OCI index",
                    OCI_MANIFEST: "OCI manifest",
                    DOCKER_MANIFEST_LIST: "Docker manifest list",
                    DOCKER_MANIFEST: "Docker manifest",
                }.get(media_type, "manifest")
                message = f"{kind} found, but accept header does not support {kind}s"
                return quirk(error_reply(404, "MANIFEST_UNKNOWN", message), "acr: narrow accept")
        return reply


class HarborProfile(Profile):
    """Harbor. ``v1``: 1.8-1.10 refuse lists: a Docker list gets 415 UNSUPPORTED_MEDIA_TYPE
    "Manifest.list is not supported." (goharbor/harbor#7597, #8855; go-containerregistry#771),
    an OCI index 500 (goharbor/harbor#11932). ``bare_401``: that many requests carrying a token
    get 401 without any ``WWW-Authenticate`` (goharbor/harbor#12192, #18305)."""

    name = "harbor"

    def __init__(self, *, v1: bool = False, bare_401: int = 0) -> None:
        super().__init__()
        self.v1 = v1
        self.bare_left = bare_401

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.path != "/v2/" and (ex.headers.get("Authorization") or "").startswith("Bearer "):
            with self.lock:
                if self.bare_left > 0:
                    self.bare_left -= 1
                    reply = error_reply(401, "UNAUTHORIZED", "unauthorized")
                    return quirk(reply, "harbor: 401 without challenge")
        if self.v1 and ex.method == "PUT" and ex.is_manifest():
            media_type = ex.headers.get("Content-Type", "").split(";")[0].strip()
            if media_type == DOCKER_MANIFEST_LIST:
                reply = error_reply(
                    415, "UNSUPPORTED_MEDIA_TYPE", "Manifest.list is not supported."
                )
                return quirk(reply, "harbor: no lists")
            if media_type == OCI_INDEX:
                reply = Reply(500, [("Content-Type", "text/plain")], b"Internal Server Error\n")
                return quirk(reply, "harbor: no index")
        return None


class NexusProfile(Profile):
    """Nexus / Artifactory: right after the sources were pushed, a list's PUT may answer 400
    BLOB_UNKNOWN or 404 MANIFEST_UNKNOWN for a while (estesp/manifest-tool#191). Strict media
    types: a PUT whose Content-Type is not the body's ``mediaType`` (or not one of the four) is
    400 MANIFEST_INVALID."""

    name = "nexus"

    def __init__(self, *, unsettled_puts: int = 2) -> None:
        super().__init__()
        self.unsettled_left = unsettled_puts

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.method != "PUT" or not ex.is_manifest():
            return None
        media_type = ex.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES or media_type != _media_type_of(ex.body):
            return quirk(
                error_reply(400, "MANIFEST_INVALID", f"unsupported media type {media_type!r}"),
                "nexus: strict media type",
            )
        if media_type in LIST_TYPES:
            with self.lock:
                left = self.unsettled_left
                self.unsettled_left -= 1
            if left > 0:
                if left % 2 == 0:
                    reply = error_reply(400, "BLOB_UNKNOWN", "blob unknown to registry")
                else:
                    reply = error_reply(404, "MANIFEST_UNKNOWN", "manifest unknown")
                return quirk(reply, "nexus: not settled")
        return None


class GitLabProfile(Profile):
    """GitLab: a manifest PUT without Content-Length is refused (411), as oras-py's changelog
    records for GitLab."""

    name = "gitlab"

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.method == "PUT" and ex.is_manifest() and not ex.had_content_length:
            return quirk(
                error_reply(411, "LENGTH_REQUIRED", "Content-Length required"),
                "gitlab: length required",
            )
        return None


class HeadRefusingProfile(Profile):
    """A proxy/cache that refuses HEAD on manifests (405, or a 404 while GET answers 200)."""

    name = "head-refusing"

    def __init__(self, *, status: int = 405) -> None:
        super().__init__()
        self.status = status

    def on_request(self, ex: Exchange) -> Optional[Reply]:
        if ex.method == "HEAD" and ex.is_manifest():
            return quirk(Reply(self.status, [("Content-Length", "0")]), "head refused")
        return None
