"""Hostile servers on 127.0.0.1: compression bombs, encoded blobs, trickling answers, loops.

Each case is a tiny server (:mod:`support.hostile`) saying exactly the bytes a hostile or broken
server would; peak memory is measured in a subprocess of its own (``ru_maxrss``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec, PushOptions
from pushmanifest.errors import NetworkError, RegistryError
from support.hostile import HostileServer, Reply, Request, gzip_bomb, registry_route
from support.images import build_image, read_manifest

MIB = 1024 * 1024
#: A Python running the CLI with httpx imported peaks near 50 MiB; the manifest cap is 4 MiB.
RSS_BOUND_MIB = 120

#: Peak RSS in KiB: the process's own VmHWM. (ru_maxrss would do, but Linux carries it over an
#: exec from the forked parent: under a pytest process grown to 300 MiB it reads 300 MiB.)
_RSS_RUNNER = textwrap.dedent(
    """
    import resource, sys
    from pushmanifest.cli import main
    code = main(sys.argv[2:])
    try:
        with open("/proc/self/status") as status:
            peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(sys.argv[1], "w") as out:
        out.write(str(peak))
    sys.exit(code)
    """
)


def run_measured(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI in a process of its own; returns the result and its peak RSS in MiB."""
    rss_file = tmp_path / "rss"
    result = subprocess.run(
        [sys.executable, "-c", _RSS_RUNNER, str(rss_file), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    peak_kib = int(rss_file.read_text()) if rss_file.exists() else -1
    return result, peak_kib / 1024


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def triple_gzip_bomb() -> bytes:
    return gzip_bomb(1024 * MIB, layers=3)


def _one_image() -> tuple[bytes, str, dict[str, bytes]]:
    manifest, media_type, _, blobs = build_image(architecture="amd64", note="hostile")
    return manifest, media_type, blobs


def _bomb_reply(bomb: bytes, encoding: str) -> Any:
    def reply(_: bytes) -> Reply:
        headers = {
            "content-type": "application/vnd.docker.distribution.manifest.v2+json",
            "content-encoding": encoding,
        }
        return Reply(200, headers, bomb)

    return reply


@pytest.mark.parametrize("layers", [1, 3], ids=["gzip", "gzip-gzip-gzip"])
def test_manifest_compression_bomb_stays_near_the_cap(
    tmp_path: Path, triple_gzip_bomb: bytes, layers: int
) -> None:
    manifest, media_type, blobs = _one_image()
    bomb = triple_gzip_bomb if layers == 3 else gzip_bomb(1024 * MIB)
    encoding = ", ".join(["gzip"] * layers)
    route = registry_route(
        "x/bomb", manifest, media_type, blobs, manifest_reply=_bomb_reply(bomb, encoding)
    )
    with HostileServer(route) as server:
        result, peak = run_measured(
            tmp_path, "inspect", "--plain-http", "--retries", "1", f"{server.host}/x/bomb:latest"
        )
        asked = {r.headers.get("accept-encoding") for r in server.requests}
    print(f"\n{layers} gzip layer(s) of 1 GiB ({len(bomb)} bytes): peak RSS {peak:.0f} MiB")
    line = assert_one_error_line(result)
    assert "more than the 4194304 bytes allowed" in line
    assert "Content-Encoding" in line
    assert peak < RSS_BOUND_MIB
    assert asked == {"identity"}


def test_manifest_gzip_encoded_within_the_cap_is_read(tmp_path: Path) -> None:
    """A server that compresses despite identity is still understood, within the caps."""
    manifest, media_type, blobs = _one_image()

    def reply(data: bytes) -> Reply:
        headers = {"content-type": media_type, "content-encoding": "gzip"}
        return Reply(200, headers, gzip.compress(data))

    route = registry_route("x/gz", manifest, media_type, blobs, manifest_reply=reply)
    with HostileServer(route) as server:
        result = pushmanifest.inspect(
            f"{server.host}/x/gz:latest",
            pushmanifest.InspectOptions(client=ClientOptions(plain_http=True, retries=1)),
        )
    assert result.data == manifest


def test_unknown_content_encoding_is_one_clear_error(tmp_path: Path) -> None:
    manifest, media_type, blobs = _one_image()

    def reply(data: bytes) -> Reply:
        return Reply(200, {"content-type": media_type, "content-encoding": "br"}, b"\x0b\x00\x80")

    route = registry_route("x/br", manifest, media_type, blobs, manifest_reply=reply)
    with HostileServer(route) as server, pytest.raises(RegistryError, match="Encoding 'br'"):
        pushmanifest.inspect(
            f"{server.host}/x/br:latest",
            pushmanifest.InspectOptions(client=ClientOptions(plain_http=True, retries=1)),
        )


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("redirect", [False, True], ids=["direct", "redirected-to-storage"])
def test_blob_labelled_gzip_is_copied_byte_for_byte(open_registry: Any, redirect: bool) -> None:
    """Storage that labels a .tar.gz ``Content-Encoding: gzip``: the blob is copied raw."""
    manifest, media_type, blobs = _one_image()

    def blob_reply(request: Request, digest: str, data: bytes) -> Reply:
        if redirect and not request.path.startswith("/storage/"):
            return Reply(307, {"location": f"/storage/{digest}"})
        headers = {"content-type": "application/octet-stream", "content-encoding": "gzip"}
        return Reply(200, headers, data)

    # Every blob is served gzip-labelled: the layer is gzip (decoding it would give other
    # bytes), the config is not (decoding it would fail).
    route = registry_route("src/app", manifest, media_type, blobs, blob_reply=blob_reply)
    repository = f"hostile/copied-{'redirected' if redirect else 'direct'}"
    with HostileServer(route) as server:
        spec = ManifestListSpec(
            image=f"{open_registry.host}/{repository}:1",
            manifests=[{"image": f"{server.host}/src/app:latest"}],
        )
        [result] = pushmanifest.push(
            spec, PushOptions(client=ClientOptions(plain_http=True, retries=1))
        )
        blob_gets = [r for r in server.requests if r.method == "GET" and "blobs/" in r.path]
    data, _, digest = read_manifest(open_registry, repository, "1")
    assert digest == result.digest
    assert json.loads(data)["manifests"][0]["digest"] == _sha256(manifest)
    assert read_manifest(open_registry, repository, _sha256(manifest))[0] == manifest
    for blob_digest, content in blobs.items():
        assert _blob_file(open_registry, blob_digest).read_bytes() == content
    # The config read for its platform, then the config and the layer streamed to the target.
    assert len(blob_gets) == 3


def _blob_file(registry: Any, digest: str) -> Path:
    hexdigest = digest.split(":", 1)[1]
    return (
        Path(registry.storage_dir)
        / "docker/registry/v2/blobs/sha256"
        / hexdigest[:2]
        / hexdigest
        / "data"
    )


def test_rss_helper_measures_this_process() -> None:
    # ru_maxrss is in KiB on Linux: the tests' bound assumes it.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 1024


# -- slow servers ------------------------------------------------------------------------------


def test_trickling_manifest_is_bounded_in_all(tmp_path: Path) -> None:
    """A byte every 0.1 s arrives well within the read timeout, but not within the total."""
    manifest, media_type, blobs = _one_image()

    def reply(data: bytes) -> Reply:
        headers = {"content-type": media_type, "docker-content-digest": _sha256(data)}
        return Reply(200, headers, data, trickle=0.1)  # ~50 s for the whole manifest

    route = registry_route("x/slow", manifest, media_type, blobs, manifest_reply=reply)
    options = ClientOptions(plain_http=True, retries=1, read_timeout=5, document_timeout=1)
    with HostileServer(route) as server, pytest.raises(NetworkError) as caught:
        pushmanifest.inspect(f"{server.host}/x/slow:latest", client=options)
    assert "took more than 1 s to answer (the limit for one document)" in str(caught.value)


def test_document_limit_defaults_from_the_read_timeout() -> None:
    assert ClientOptions().document_limit == 60
    assert ClientOptions(read_timeout=5).document_limit == 60
    assert ClientOptions(read_timeout=45).document_limit == 90
    assert ClientOptions(document_timeout=3).document_limit == 3


def test_trickling_blob_is_given_up_below_the_minimum_rate(open_registry: Any) -> None:
    manifest, media_type, blobs = _one_image()

    def blob_reply(request: Request, digest: str, data: bytes) -> Reply:
        return Reply(200, {"content-type": "application/octet-stream"}, data, trickle=0.05)

    route = registry_route("src/slow", manifest, media_type, blobs, blob_reply=blob_reply)
    options = ClientOptions(
        plain_http=True, retries=1, read_timeout=5, blob_min_rate=1000, blob_rate_window=1
    )
    with HostileServer(route) as server, pytest.raises(NetworkError) as caught:
        spec = ManifestListSpec(
            image=f"{open_registry.host}/hostile/slow-blob:1",
            manifests=[
                {
                    "image": f"{server.host}/src/slow:latest",
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        )
        pushmanifest.push(spec, PushOptions(client=options))
    message = str(caught.value)
    assert f"cannot read blob {server.host}/src/slow@sha256:" in message
    assert "less than the minimum of 1000 bytes/s" in message


def test_document_limit_is_not_retried() -> None:
    """A server that took the whole limit for one document would take it again: one request."""
    manifest, media_type, blobs = _one_image()

    def reply(data: bytes) -> Reply:
        return Reply(200, {"content-type": media_type}, data, trickle=0.1)

    route = registry_route("x/slow", manifest, media_type, blobs, manifest_reply=reply)
    options = ClientOptions(plain_http=True, retries=3, read_timeout=5, document_timeout=0.5)
    with HostileServer(route) as server:
        with pytest.raises(NetworkError, match="the limit for one document"):
            pushmanifest.inspect(f"{server.host}/x/slow:latest", client=options)
        manifest_requests = [
            r for r in server.requests if r.method == "GET" and "/manifests/" in r.path
        ]
    assert len(manifest_requests) == 1


# -- redirect loops ----------------------------------------------------------------------------


def _looping(request: Request) -> Reply:
    if request.path == "/v2/":
        return Reply(200, {"content-type": "application/json"}, b"{}")
    # Every answer sends the client to where it just was (with a query that must not be shown).
    return Reply(307, {"location": request.path.split("?", 1)[0] + "?X-Signature=s3cr3t"})


def test_redirect_loop_is_one_line_exit_1(tmp_path: Path) -> None:
    with HostileServer(_looping) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pushmanifest",
                "inspect",
                "--plain-http",
                f"{server.host}/a/b:1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    line = assert_one_error_line(result)
    assert "too many redirects" in line
    assert result.stderr.strip() == line
    assert "s3cr3t" not in result.stderr


def test_redirect_loop_on_a_blob_copy_is_one_error(open_registry: Any) -> None:
    manifest, media_type, blobs = _one_image()

    def blob_reply(request: Request, digest: str, data: bytes) -> Reply:
        return _looping(request)

    route = registry_route("src/loop", manifest, media_type, blobs, blob_reply=blob_reply)
    with HostileServer(route) as server, pytest.raises(RegistryError, match="too many redirects"):
        spec = ManifestListSpec(
            image=f"{open_registry.host}/hostile/loop:1",
            manifests=[
                {
                    "image": f"{server.host}/src/loop:latest",
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        )
        pushmanifest.push(spec, PushOptions(client=ClientOptions(plain_http=True, retries=1)))


def test_trickling_token_answer_is_bounded_in_all() -> None:
    """The run's first token (fetched by the ping) is a small document too."""
    token = json.dumps({"token": "t" * 500}).encode()

    def route(request: Request) -> Reply:
        if request.path.startswith("/token"):
            return Reply(200, {"content-type": "application/json"}, token, trickle=0.1)
        challenge = f'Bearer realm="http://{request.headers["host"]}/token",service="hostile"'
        return Reply(401, {"www-authenticate": challenge}, b"")

    options = ClientOptions(plain_http=True, retries=1, read_timeout=5, document_timeout=1)
    with HostileServer(route) as server, pytest.raises(NetworkError) as caught:
        pushmanifest.inspect(
            f"{server.host}/a/b:1",
            client=options,
            credentials=pushmanifest.Credentials(username="u", password="p"),
        )
    assert "took more than 1 s to answer (the limit for one document)" in str(caught.value)
