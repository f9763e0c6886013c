"""Seed tiny images into a registry and read manifests back: an independent, minimal client.

Deliberately does not import :mod:`pushmanifest`: the tests check our code against this separate
implementation of the registry HTTP API and of the Bearer/Basic challenge dance (plain sync
``httpx``).

``server`` arguments accept a :class:`support.registry.RegistryServer` (anything with ``.url``
and, optionally, ``.ca_file``), a URL (``http://127.0.0.1:5000``) or a bare ``host:port`` (HTTP).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import re
import ssl
import tarfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union
from urllib.parse import urljoin

import httpx

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "SPEC_PLATFORMS",
    "RegistryHTTPError",
    "SeedClient",
    "SeededImage",
    "delete_manifest",
    "head_manifest",
    "list_tags",
    "make_spec_images",
    "parse_challenges",
    "read_manifest",
    "seed_image",
    "seed_platforms",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_ACCEPT = (DOCKER_MANIFEST_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST)

#: The seed article's set: tag -> platform ("os/architecture[/variant]").
SPEC_PLATFORMS: Mapping[str, str] = {
    "amd64": "linux/amd64",
    "arm32v6": "linux/arm/v6",
    "arm32v7": "linux/arm/v7",
    "arm64v8": "linux/arm64/v8",
}


class RegistryHTTPError(Exception):
    """A registry or token server answered with an unexpected status."""

    def __init__(self, method: str, url: str, status: int, body: str, headers: Mapping[str, str]):
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.headers = dict(headers)
        self.codes: list[str] = []
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            self.codes = [e.get("code", "") for e in json.loads(body).get("errors", [])]
        super().__init__(f"{method} {url}: HTTP {status}: {body[:500]}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHALLENGE_RE = re.compile(
    r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?'
)


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``'Bearer realm="r",service="s"'`` -> ``[("bearer", {"realm": "r", "service": "s"})]``.

    Enough for distribution's headers (one challenge per header line, quoted values).
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    for part in re.split(r",\s*(?=[A-Za-z]+\s+[A-Za-z_-]+=)", header):
        scheme, _, rest = part.strip().partition(" ")
        params: dict[str, str] = {}
        for m in _CHALLENGE_RE.finditer(rest):
            value = m.group(2) if m.group(2) is not None else m.group(3)
            params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
        if scheme:
            challenges.append((scheme.lower(), params))
    return challenges


def _base_url(server: Any) -> str:
    if isinstance(server, str):
        return server.rstrip("/") if "://" in server else f"http://{server}"
    return str(server.url).rstrip("/")


def _verify_for(server: Any) -> Union[bool, ssl.SSLContext]:
    ca_file = getattr(server, "ca_file", None)
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else True


class SeedClient:
    """A minimal registry client: one ``httpx.Client``, Bearer tokens per scope, or Basic.

    Anonymous unless ``username``/``password`` are given; with a token realm it asks for the
    scope it needs (``repository:NAME:pull`` or ``...:pull,push``) with HTTP Basic.
    """

    def __init__(
        self,
        server: Any,
        *,
        username: Optional[str] = None,
        password: Optional[str] = None,
        verify: Union[bool, ssl.SSLContext, None] = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = _base_url(server)
        self.username = username
        self.password = password
        self.http = httpx.Client(
            verify=_verify_for(server) if verify is None else verify,
            timeout=timeout,
            follow_redirects=True,
        )
        self._tokens: dict[str, str] = {}
        self._basic = False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SeedClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def use_token(self, scope: str, token: str) -> None:
        """Send ``token`` (a Bearer token minted elsewhere) for requests needing ``scope``."""
        self._tokens[scope] = token

    # -- auth -----------------------------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def fetch_token(self, realm: str, service: Optional[str], scope: str) -> str:
        """GET the realm with ``service`` and ``scope`` (HTTP Basic if we have credentials)."""
        params = {"scope": scope}
        if service:
            params["service"] = service
        if self.username:
            params["account"] = self.username
        auth = httpx.BasicAuth(self.username, self.password or "") if self.username else None
        resp = self.http.get(realm, params=params, auth=auth)
        if resp.status_code != 200:
            raise RegistryHTTPError("GET", str(resp.url), resp.status_code, resp.text, resp.headers)
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryHTTPError("GET", str(resp.url), resp.status_code, resp.text, resp.headers)
        return str(token)

    def _authenticate(self, response: httpx.Response, scope: str) -> bool:
        """Handle a 401's challenge; True if a retry may succeed."""
        for header in response.headers.get_list("WWW-Authenticate"):
            for scheme, params in parse_challenges(header):
                if scheme == "bearer" and "realm" in params:
                    if scope in self._tokens and params.get("error") == "insufficient_scope":
                        return False  # the token we got is all we may have: denied
                    self._tokens[scope] = self.fetch_token(
                        params["realm"], params.get("service"), scope
                    )
                    return True
                if scheme == "basic":
                    if self._basic or self.username is None:
                        return False
                    self._basic = True
                    return True
        return False

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        expect: Iterable[int] = (200,),
        headers: Optional[Mapping[str, str]] = None,
        content: Optional[bytes] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> httpx.Response:
        """Send, answering one auth challenge; raise :class:`RegistryHTTPError` unless
        the status is in ``expect``."""
        url = urljoin(self.base_url + "/", path_or_url)
        for _ in range(3):
            all_headers = {**(headers or {}), **self._auth_header(scope)}
            resp = self.http.request(
                method, url, headers=all_headers, content=content, params=params
            )
            if resp.status_code == 401 and self._authenticate(resp, scope):
                continue
            break
        if resp.status_code not in tuple(expect):
            raise RegistryHTTPError(
                method, str(resp.url), resp.status_code, resp.text, resp.headers
            )
        return resp

    # -- API ------------------------------------------------------------------------------------

    def push_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload (POST, then PUT with the digest); returns the digest."""
        digest = sha256(data)
        scope = f"repository:{repository}:pull,push"
        resp = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, expect=(202,))
        location = urljoin(self.base_url + "/", resp.headers["Location"])
        separator = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{separator}digest={digest}",
            scope=scope,
            expect=(201,),
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )
        return digest

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        resp = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull,push",
            expect=(201,),
            headers={"Content-Type": media_type},
            content=data,
        )
        digest = sha256(data)
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise AssertionError(f"registry says {served} for a manifest of digest {digest}")
        return digest

    def get_manifest(
        self, repository: str, reference: str, accept: Iterable[str] = MANIFEST_ACCEPT
    ) -> tuple[bytes, str, str]:
        resp = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": ", ".join(accept)},
        )
        data = resp.content
        digest = sha256(data)
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise AssertionError(f"registry says {served} for a manifest of digest {digest}")
        return data, resp.headers.get("Content-Type", ""), digest

    def head_manifest(
        self, repository: str, reference: str, accept: Iterable[str] = MANIFEST_ACCEPT
    ) -> Optional[tuple[str, str, int]]:
        resp = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": ", ".join(accept)},
            expect=(200, 404),
        )
        if resp.status_code == 404:
            return None
        return (
            resp.headers.get("Content-Type", ""),
            resp.headers.get("Docker-Content-Digest", ""),
            int(resp.headers.get("Content-Length", "0")),
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        self.request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=f"repository:{repository}:delete",
            expect=(202,),
        )

    def list_tags(self, repository: str) -> list[str]:
        resp = self.request(
            "GET", f"/v2/{repository}/tags/list", scope=f"repository:{repository}:pull"
        )
        return list(resp.json().get("tags") or [])


# -- seeding --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededImage:
    """What :func:`seed_image` pushed."""

    digest: str  #: manifest digest
    size: int  #: manifest size in bytes
    media_type: str  #: DOCKER_MANIFEST or OCI_MANIFEST
    platform: dict[str, str]  #: {"architecture", "os"[, "os.version"][, "variant"]}
    repository: str = ""
    tag: str = ""
    manifest: bytes = b""
    config_digest: str = ""
    layer_digest: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict, repr=False)  #: digest -> content


def _layer(text: str) -> tuple[bytes, str]:
    """A gzip'd tar with one file; returns (compressed, diff_id)."""
    payload = text.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pushmanifest-seed.txt")
        info.size = len(payload)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha256(tar_bytes)


def build_image(
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str = "",
    os_version: str = "",
    oci: bool = False,
    note: str = "",
) -> tuple[bytes, str, dict[str, str], dict[str, bytes]]:
    """A unique tiny image: ``(manifest, media type, platform, blobs)``."""
    platform = {"architecture": architecture, "os": os}
    if os_version:
        platform["os.version"] = os_version
    if variant:
        platform["variant"] = variant
    unique = uuid.uuid4().hex
    layer, diff_id = _layer(f"pushmanifest seed {note} {os}/{architecture}/{variant} {unique}\n")
    config_doc: dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        **({"os.version": os_version} if os_version else {}),
        **({"variant": variant} if variant else {}),
        "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": ["/pushmanifest-seed.txt"], "Labels": {"seed": unique}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "pushmanifest test seed"}],
    }
    config = json.dumps(config_doc, separators=(",", ":")).encode()
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config),
            "digest": sha256(config),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                "size": len(layer),
                "digest": sha256(layer),
            }
        ],
    }
    manifest = json.dumps(manifest_doc, indent=3).encode()  # docker's own indent
    return manifest, media_type, platform, {sha256(config): config, sha256(layer): layer}


def seed_image(
    server: Any,
    repository: str,
    tag: str,
    *,
    os: str = "linux",
    architecture: str = "amd64",
    variant: str = "",
    os_version: str = "",
    oci: bool = False,
    username: Optional[str] = None,
    password: Optional[str] = None,
    client: Optional[SeedClient] = None,
) -> SeededImage:
    """Push a tiny, unique, valid image (config + one gzip layer + manifest) as ``repository:tag``.

    Docker v2 schema 2 by default, OCI with ``oci=True``. Pass ``client`` to reuse a
    :class:`SeedClient` (its token cache, its connections) across many calls.
    """
    manifest, media_type, platform, blobs = build_image(
        os=os,
        architecture=architecture,
        variant=variant,
        os_version=os_version,
        oci=oci,
        note=f"{repository}:{tag}",
    )
    own = client is None
    c = client or SeedClient(server, username=username, password=password)
    try:
        for data in blobs.values():
            c.push_blob(repository, data)
        digest = c.put_manifest(repository, tag, manifest, media_type)
    finally:
        if own:
            c.close()
    config_digest, layer_digest = list(blobs)
    return SeededImage(
        digest=digest,
        size=len(manifest),
        media_type=media_type,
        platform=platform,
        repository=repository,
        tag=tag,
        manifest=manifest,
        config_digest=config_digest,
        layer_digest=layer_digest,
        blobs=blobs,
    )


def seed_platforms(
    server: Any,
    repository: str,
    platforms: Iterable[tuple[str, str, str]],
    *,
    user: Optional[str] = None,
    oci: bool = False,
) -> dict[str, SeededImage]:
    """Seed one image per ``(tag, architecture, variant)``, as ``user`` (one of ``server.users``)
    where given; returns them by tag."""
    password = server.users[user] if user else None
    return {
        tag: seed_image(
            server,
            repository,
            tag,
            architecture=architecture,
            variant=variant,
            oci=oci,
            username=user,
            password=password,
        )
        for tag, architecture, variant in platforms
    }


def make_spec_images(
    server: Any,
    repository: str,
    platforms: Union[Mapping[str, str], Iterable[tuple[str, str]], None] = None,
    *,
    oci: bool = False,
    username: Optional[str] = None,
    password: Optional[str] = None,
) -> dict[str, SeededImage]:
    """Seed one image per ``tag -> "os/arch[/variant]"`` (default :data:`SPEC_PLATFORMS`)."""
    wanted = dict(SPEC_PLATFORMS if platforms is None else platforms)
    seeded: dict[str, SeededImage] = {}
    with SeedClient(server, username=username, password=password) as client:
        for tag, text in wanted.items():
            parts = text.split("/")
            if len(parts) not in (2, 3) or not all(parts):
                raise ValueError(f"platform {text!r}: expected os/architecture[/variant]")
            seeded[tag] = seed_image(
                server,
                repository,
                tag,
                os=parts[0],
                architecture=parts[1],
                variant=parts[2] if len(parts) == 3 else "",
                oci=oci,
                client=client,
            )
    return seeded


# -- reading back ---------------------------------------------------------------------------------


def read_manifest(
    server: Any,
    repository: str,
    reference: str,
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
    accept: Iterable[str] = MANIFEST_ACCEPT,
) -> tuple[bytes, str, str]:
    """GET a manifest: ``(exact bytes, Content-Type, sha256 digest of the bytes)``.

    Raises :class:`RegistryHTTPError` (e.g. 404 ``MANIFEST_UNKNOWN``) otherwise; checks that the
    registry's ``Docker-Content-Digest`` matches the bytes.
    """
    with SeedClient(server, username=username, password=password) as client:
        return client.get_manifest(repository, reference, accept)


def head_manifest(
    server: Any,
    repository: str,
    reference: str,
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
) -> Optional[tuple[str, str, int]]:
    """``(Content-Type, digest, size)`` from a HEAD, or None on 404."""
    with SeedClient(server, username=username, password=password) as client:
        return client.head_manifest(repository, reference)


def delete_manifest(
    server: Any,
    repository: str,
    digest: str,
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
) -> None:
    with SeedClient(server, username=username, password=password) as client:
        client.delete_manifest(repository, digest)


def list_tags(
    server: Any,
    repository: str,
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
) -> list[str]:
    with SeedClient(server, username=username, password=password) as client:
        return client.list_tags(repository)
