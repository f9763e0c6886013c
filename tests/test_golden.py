"""Byte identity with the real manifest-tool, on every machine (CI included).

``tests/data/golden/manifest-tool/*.json`` are lists that manifest-tool (estesp/manifest-tool v2)
pushed and a registry served back byte for byte: each with the spec it came from (sources by
digest), the exact bytes, digest and size (see the README.md there). They are a copy of the
shared corpus; where that corpus stands beside the repository (``../shared/golden/manifest-tool``,
as in CI), the copy must equal it.

Each list is rebuilt twice and must come out byte-identical, with the same digest and size:

* from its decoded entries, by :func:`pushmanifest.manifest.build_manifest_list`;
* from its spec, by the CLI: ``from-spec`` pushes it to a small registry on 127.0.0.1 that knows
  the sources by their descriptors (media type, digest, size: all in the list's bytes; the
  manifests themselves are not in the corpus, so no real registry can hold them under these
  digests) and keeps what is PUT. The spec is manifest-tool's, with the registry host changed;
  ``--type`` is manifest-tool's (``docker`` unless it was given ``--type oci``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pushmanifest.manifest import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    build_manifest_list,
    descriptor_from_json,
)
from support.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "golden" / "manifest-tool"
SHARED = REPO.parent / "shared" / "golden" / "manifest-tool"
CASES = sorted(CORPUS.glob("*.json"))
SPEC_HOST = "registry.example"


@dataclass(frozen=True)
class Golden:
    name: str
    spec: str
    producer: str
    media_type: str
    digest: str
    size: int
    stdout: str
    data: bytes

    @property
    def document(self) -> dict[str, Any]:
        value = json.loads(self.data)
        assert isinstance(value, dict)
        return value

    @property
    def list_type(self) -> str:
        """manifest-tool's list type: Docker unless ``--type oci``."""
        return "oci" if "--type oci" in self.producer else "docker"


def load(path: Path) -> Golden:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Golden(
        name=raw["name"],
        spec=raw["spec"],
        producer=raw["producer"],
        media_type=raw["mediaType"],
        digest=raw["digest"],
        size=raw["size"],
        stdout=raw["stdout"],
        data=raw["bytes"].encode("utf-8"),
    )


def test_the_corpus_is_complete_and_consistent() -> None:
    assert len(CASES) >= 7, CASES
    for path in CASES:
        case = load(path)
        assert case.name == path.stem
        assert "sha256:" + hashlib.sha256(case.data).hexdigest() == case.digest, path.name
        assert len(case.data) == case.size, path.name
        assert case.stdout == f"Digest: {case.digest} {case.size}", path.name
        assert case.document["mediaType"] == case.media_type, path.name
        assert case.media_type in (DOCKER_MANIFEST_LIST, OCI_INDEX)


def test_the_copy_equals_the_shared_corpus() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"no shared corpus beside the repository ({SHARED})")
    shared = {p.name: p.read_bytes() for p in SHARED.iterdir() if p.is_file()}
    copied = {p.name: p.read_bytes() for p in CORPUS.iterdir() if p.is_file()}
    assert sorted(copied) == sorted(shared)
    for name, data in shared.items():
        assert copied[name] == data, f"tests/data/golden/manifest-tool/{name} differs from {SHARED}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_rebuilt_from_its_entries(path: Path) -> None:
    case = load(path)
    document = case.document
    entries = [
        descriptor_from_json(child, f"{case.name} entry {index}")
        for index, child in enumerate(document["manifests"])
    ]
    rebuilt = build_manifest_list(
        entries, list_type=case.list_type, annotations=document.get("annotations")
    )
    assert rebuilt.data.decode() == case.data.decode()  # a readable diff first
    assert (rebuilt.data, rebuilt.digest, rebuilt.size) == (case.data, case.digest, case.size)
    assert rebuilt.media_type == case.media_type


# -- from the spec, through the CLI ---------------------------------------------------------------

_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")


class _Registry(ThreadingHTTPServer):
    """Knows manifests by descriptor only (HEAD), keeps what is PUT, has no tags before."""

    daemon_threads = True

    def __init__(self, case: Golden) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.case = case
        self.descriptors = {child["digest"]: child for child in case.document["manifests"]}
        self.put: dict[str, tuple[str, bytes]] = {}  # tag: (Content-Type, body)
        self.unexpected: list[str] = []
        self.lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Registry

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _unknown(self) -> None:
        body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        self._send(404, {"Content-Type": "application/json"}, body)

    def _unexpected(self) -> None:
        with self.server.lock:
            self.server.unexpected.append(f"{self.command} {self.path}")
        self._send(405, {"Content-Type": "application/json"}, b'{"errors":[]}')

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self._send(200, {"Content-Type": "application/json"}, b"{}")
        else:
            self._unexpected()  # the spec gives every platform: no manifest is read

    def do_HEAD(self) -> None:
        match = _MANIFEST_PATH.match(self.path)
        if match is None:
            self._unexpected()
            return
        descriptor = self.server.descriptors.get(match["reference"])
        if descriptor is None:
            self._unknown()  # a tag: nothing there yet
            return
        headers = {
            "Content-Type": descriptor["mediaType"],
            "Docker-Content-Digest": descriptor["digest"],
            "Content-Length": str(descriptor["size"]),
        }
        self._send(200, headers)

    def do_PUT(self) -> None:
        match = _MANIFEST_PATH.match(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if match is None:
            self._unexpected()
            return
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        with self.server.lock:
            self.server.put[match["reference"]] = (self.headers.get("Content-Type", ""), body)
        location = f"http://{self.headers['Host']}/v2/{match['name']}/manifests/{digest}"
        self._send(201, {"Docker-Content-Digest": digest, "Location": location})

    do_POST = do_DELETE = do_PATCH = _unexpected


@pytest.fixture
def registry(request: pytest.FixtureRequest) -> Iterator[_Registry]:
    server = _Registry(load(request.param))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _tags(spec: str) -> list[str]:
    image = re.search(r"^image: \S+:(\S+)$", spec, re.MULTILINE)
    assert image is not None
    extra = re.search(r"^tags: \[(.*)\]$", spec, re.MULTILINE)
    more = [t.strip().strip('"') for t in extra.group(1).split(",")] if extra else []
    return [image.group(1), *more]


#: manifest-tool drops a platform's ``features`` (its platform type, OCI's, has no such field);
#: pushmanifest writes them, as the README says. So the spec that gives them is compared with
#: them left out, which is what manifest-tool pushed.
DROPPED_BY_MANIFEST_TOOL = re.compile(r"^ *features: .*\n", re.MULTILINE)


@pytest.mark.parametrize("registry", [pytest.param(p, id=p.stem) for p in CASES], indirect=True)
def test_rebuilt_from_its_spec(registry: _Registry, tmp_path: Path) -> None:
    case = registry.case
    spec = tmp_path / f"{case.name}.yaml"
    assert case.spec.count(f"{SPEC_HOST}/") >= 2
    text = DROPPED_BY_MANIFEST_TOOL.sub("", case.spec)
    spec.write_text(text.replace(f"{SPEC_HOST}/", f"{registry.host}/"), encoding="utf-8")
    result = run_cli("from-spec", "--plain-http", "--type", case.list_type, str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert registry.unexpected == []
    assert result.stdout.strip().splitlines()[-1] == case.stdout
    assert sorted(registry.put) == sorted(_tags(case.spec))
    for tag, (content_type, body) in registry.put.items():
        assert body.decode() == case.data.decode(), tag  # a readable diff first
        assert (content_type, body) == (case.media_type, case.data), tag
