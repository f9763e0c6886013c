"""No upload session is left behind when a cross-registry copy fails or the run is stopped.

The source is a hostile server (:mod:`support.hostile`) holding one image with a 4 MiB layer;
the target is a real ``docker-registry``, whose storage directory is inspected after each failure:
an upload session left open is a directory under
``docker/registry/v2/repositories/<repo>/_uploads`` with its partial data.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec, PushOptions, RegistryClient
from pushmanifest.errors import DigestMismatchError, NetworkError
from support.hostile import HostileServer, Reply, Request, registry_route, wait_until

LAYER_SIZE = 4 * 1024 * 1024
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def big_image() -> tuple[bytes, str, dict[str, bytes]]:
    """(manifest, layer digest, layer) of an image whose one layer is 4 MiB of random bytes."""
    layer = os.urandom(LAYER_SIZE)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _sha256(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _sha256(layer),
                }
            ],
        }
    ).encode()
    blobs = {_sha256(config): config, _sha256(layer): layer}
    return manifest, _sha256(layer), blobs


def source_server(layer_reply: Callable[[bytes], Reply]) -> tuple[HostileServer, bytes]:
    manifest, layer_digest, blobs = big_image()

    def blob_reply(request: Request, digest: str, data: bytes) -> Reply:
        if digest == layer_digest:
            return layer_reply(data)
        return Reply(200, {"content-type": "application/octet-stream"}, data)

    route = registry_route("src/big", manifest, DOCKER_MANIFEST, blobs, blob_reply=blob_reply)
    return HostileServer(route), manifest


def upload_files(registry: Any, repository: str) -> list[tuple[str, int]]:
    """Every file of every open upload session of ``repository``: (path, size)."""
    uploads = (
        Path(registry.storage_dir) / "docker/registry/v2/repositories" / repository / "_uploads"
    )
    while True:
        if not uploads.exists():
            return []
        try:
            return sorted(
                (str(path.relative_to(uploads)), path.stat().st_size)
                for path in uploads.rglob("*")
                if path.is_file()
            )
        except FileNotFoundError:  # a session committed or deleted while we listed: again
            continue


def open_sessions(registry: Any, repository: str) -> list[tuple[str, int]]:
    """The sessions distribution still holds: their ``data`` (and ``startedat``) files.

    A DELETE leaves one 108-byte ``hashstates/sha256/<offset>`` file behind: distribution 2.8
    writes it while closing the request, after the cancel removed the session (no data, no
    session: it cannot be resumed or listed).
    """
    return [
        (path, size)
        for path, size in upload_files(registry, repository)
        if path.endswith(("/data", "/startedat"))
    ]


def partial_data(registry: Any, repository: str) -> int:
    return sum(size for path, size in upload_files(registry, repository) if path.endswith("/data"))


def spec(registry: Any, repository: str, source: HostileServer) -> ManifestListSpec:
    return ManifestListSpec(
        image=f"{registry.host}/{repository}:1",
        manifests=[
            {
                "image": f"{source.host}/src/big:latest",
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    )


def layer(**kwargs: Any) -> Callable[[bytes], Reply]:
    """The layer's bytes, shaped by Reply's options (cut_after, stall_after, trickle)."""

    def reply(data: bytes) -> Reply:
        return Reply(200, {"content-type": "application/octet-stream"}, data, **kwargs)

    return reply


OPTIONS = ClientOptions(plain_http=True, retries=1, read_timeout=10)


def test_source_killed_mid_blob_leaves_no_session(open_registry: Any) -> None:
    repository = "uploads/killed"
    server, _ = source_server(layer(cut_after=LAYER_SIZE // 2))
    with server, pytest.raises(NetworkError) as caught:
        pushmanifest.push(spec(open_registry, repository, server), PushOptions(client=OPTIONS))
    message = str(caught.value)
    # The source's failure, named as the source's (not "cannot push blob to <target>").
    assert message.startswith(f"cannot read blob {server.host}/src/big@sha256:"), message
    assert open_sessions(open_registry, repository) == []


def test_wrong_bytes_from_the_source_leave_no_session(open_registry: Any) -> None:
    repository = "uploads/corrupt"

    def corrupt(data: bytes) -> Reply:
        return Reply(200, {"content-type": "application/octet-stream"}, bytes(len(data)))

    server, _ = source_server(corrupt)
    with server, pytest.raises(DigestMismatchError, match="does not match its digest"):
        pushmanifest.push(spec(open_registry, repository, server), PushOptions(client=OPTIONS))
    assert open_sessions(open_registry, repository) == []


def test_deadline_mid_blob_leaves_no_session(open_registry: Any) -> None:
    repository = "uploads/deadline"
    server, _ = source_server(layer(stall_after=LAYER_SIZE // 2))
    with server, pytest.raises(NetworkError, match="deadline of 3 s"):
        pushmanifest.push(
            spec(open_registry, repository, server), PushOptions(client=OPTIONS, deadline=3)
        )
    assert open_sessions(open_registry, repository) == []


def _run_cli_until_uploading(
    registry: Any, repository: str, server: HostileServer, tmp_path: Path
) -> subprocess.Popen[str]:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        f"image: {registry.host}/{repository}:1\n"
        f"manifests:\n"
        f"  - image: {server.host}/src/big:latest\n"
        f"    platform: {{os: linux, architecture: amd64}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pushmanifest", "from-spec", "--plain-http", str(spec_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Half the layer reaches the target's session, then the source stalls.
    if not wait_until(lambda: partial_data(registry, repository) >= LAYER_SIZE // 4, 60):
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the copy never started: {err}")
    return process


@pytest.mark.parametrize(
    ("signum", "status", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_mid_blob_cleans_up_with_one_line(
    open_registry: Any, tmp_path: Path, signum: int, status: int, word: str
) -> None:
    repository = f"uploads/{word}"
    server, _ = source_server(layer(stall_after=LAYER_SIZE // 2))
    with server:
        process = _run_cli_until_uploading(open_registry, repository, server, tmp_path)
        before = open_sessions(open_registry, repository)
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    assert before, "a session with data was open when the signal came"
    assert process.returncode == status, err
    # The list was not written (its blobs were being copied): said, then the one word.
    assert err.strip().splitlines() == [f"not written: {open_registry.host}/{repository}:1", word]
    assert out == ""
    assert open_sessions(open_registry, repository) == []


def test_completed_copy_leaves_no_session(open_registry: Any) -> None:
    repository = "uploads/complete"
    server, manifest = source_server(layer())
    with server:
        [result] = pushmanifest.push(
            spec(open_registry, repository, server), PushOptions(client=OPTIONS)
        )
    assert result.entries[0].descriptor.digest == _sha256(manifest)
    assert open_sessions(open_registry, repository) == []


def test_cancelled_during_the_commit_deletes_nothing_while_it_runs() -> None:
    """A run stopped while the commit's PUT is in flight sends no DELETE until the PUT is answered.

    distribution resumes the session for every request (its ``data`` file opened with O_CREAT):
    a DELETE handled while the PUT commits (and removes the session) leaves an empty ``data``
    file that nothing can delete. The target holds its answer to the PUT until a DELETE comes
    (the race) or 5 s pass; a committed blob is not deleted afterwards either.
    """
    put_received = threading.Event()
    delete_received = threading.Event()
    delete_during_put: list[bool] = []
    session = "/v2/uploads/commit/blobs/uploads/u"
    blob = b"layer"

    def route(request: Request) -> Reply:
        if request.method == "PATCH":
            return Reply(202, {"Location": f"{session}?_state=after-patch"})
        if request.method == "PUT":
            put_received.set()
            delete_during_put.append(delete_received.wait(5))
            return Reply(201, {"Location": f"/v2/uploads/commit/blobs/{_sha256(blob)}"})
        delete_received.set()
        return Reply(204)

    async def stop_during_commit(host: str) -> asyncio.Task[None]:
        async def chunks() -> Any:
            yield blob

        async with RegistryClient(host, options=OPTIONS) as client:
            upload = asyncio.ensure_future(
                client.upload_blob(
                    f"http://{host}{session}?_state=new", _sha256(blob), len(blob), chunks(), "x"
                )
            )
            assert await asyncio.to_thread(put_received.wait, 60), "the commit was never sent"
            upload.cancel()
            await asyncio.wait({upload}, timeout=60)
        return upload

    with HostileServer(route) as server:
        upload = asyncio.run(stop_during_commit(server.host))
        methods = [r.method for r in server.requests]
    assert upload.cancelled()
    assert delete_during_put == [False]
    assert methods == ["PATCH", "PUT"]


def test_cancelled_while_opening_a_session_deletes_the_session_it_opened() -> None:
    """A run stopped while the POST that opens an upload is in flight: its session is deleted.

    Cut short, the POST still opens a session on the registry, at a URL the client never learns.
    The target holds its answer until the test has cancelled the upload's start.
    """
    post_received = threading.Event()
    release = threading.Event()
    session = "/v2/uploads/opening/blobs/uploads/u"

    def route(request: Request) -> Reply:
        if request.method == "POST":
            post_received.set()
            release.wait(60)
            return Reply(202, {"Location": f"{session}?_state=new"})
        return Reply(204)

    async def stop_while_opening(host: str) -> asyncio.Task[str]:
        async with RegistryClient(host, options=OPTIONS) as client:
            start = asyncio.ensure_future(client.start_upload("uploads/opening"))
            assert await asyncio.to_thread(post_received.wait, 60), "the POST was never sent"
            start.cancel()
            release.set()
            await asyncio.wait({start}, timeout=60)
        return start

    with HostileServer(route) as server:
        start = asyncio.run(stop_while_opening(server.host))
        requests = [(r.method, r.path.split("?")[0]) for r in server.requests]
    assert start.cancelled()
    assert requests == [("POST", "/v2/uploads/opening/blobs/uploads/"), ("DELETE", session)]
