"""A run that fails or is stopped while writing prints every list it wrote (scripts read stdout).

The target is a small server (:mod:`support.hostile`) that answers each manifest PUT as the test
says: 201, an error, or never (so that a signal comes while that PUT is in flight).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.hostile import HostileServer, Reply, Request, wait_until
from support.images import build_image

TAGS = ["t1", "t2", "t3", "t4", "t5"]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def target_route(bad_tag: str, *, stall: bool) -> tuple[bytes, object]:
    """A registry holding one image (``app:src``) that takes list PUTs except ``bad_tag``'s."""
    manifest, media_type, _, _ = build_image(architecture="amd64", note="partial")

    def route(request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if path == "/v2/":
            return Reply(200, {"content-type": "application/json"}, b"{}")
        if path == "/v2/app/manifests/src" or path == f"/v2/app/manifests/{_sha256(manifest)}":
            headers = {"content-type": media_type, "docker-content-digest": _sha256(manifest)}
            return Reply(200, headers, manifest)
        if request.method == "PUT" and path.startswith("/v2/app/manifests/"):
            if path.endswith(f"/{bad_tag}"):
                if stall:
                    return Reply(201, {}, b"{}", stall_after=0)  # headers, then nothing
                error = {"errors": [{"code": "UNKNOWN", "message": "disk full"}]}
                return Reply(500, {"content-type": "application/json"}, json.dumps(error).encode())
            return Reply(201, {"location": path})
        error = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
        return Reply(404, {"content-type": "application/json"}, json.dumps(error).encode())

    return manifest, route


def write_spec(tmp_path: Path, host: str) -> Path:
    documents = [
        f"image: {host}/app:{tag}\n"
        f"manifests:\n"
        f"  - image: {host}/app:src\n"
        f"    platform: {{os: linux, architecture: amd64}}\n"
        for tag in TAGS
    ]
    spec = tmp_path / "five.yaml"
    spec.write_text("---\n".join(documents))
    return spec


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pushmanifest", *args]


@pytest.mark.parametrize("as_json", [False, True], ids=["digest-lines", "json"])
def test_one_failed_put_prints_the_four_lists_written(tmp_path: Path, as_json: bool) -> None:
    _, route = target_route("t3", stall=False)
    with HostileServer(route) as server:  # type: ignore[arg-type]
        spec = write_spec(tmp_path, server.host)
        flags = ["--json"] if as_json else []
        result = subprocess.run(
            cli("from-spec", "--plain-http", "--retries", "1", *flags, str(spec)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        puts = sorted(r.path.rsplit("/", 1)[1] for r in server.requests if r.method == "PUT")
    assert puts == TAGS
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    if as_json:
        objects = [json.loads(line) for line in lines]
        assert sorted(o["written"][0] for o in objects) == ["t1", "t2", "t4", "t5"]
        assert all(o["digest"].startswith("sha256:") for o in objects)
    else:
        assert all(line.startswith("Digest: sha256:") for line in lines)
    assert f"not written: {server.host}/app:t3" in result.stderr.splitlines()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "disk full" in errors[0], result.stderr


@pytest.mark.parametrize(
    ("signum", "status", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_interrupted_while_writing_prints_what_was_written(
    tmp_path: Path, signum: int, status: int, word: str
) -> None:
    _, route = target_route("t5", stall=True)
    with HostileServer(route) as server:  # type: ignore[arg-type]
        spec = write_spec(tmp_path, server.host)
        process = subprocess.Popen(
            cli("from-spec", "--plain-http", "--retries", "1", str(spec)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        # The four lists are written (the CLI says so on stderr) and t5's PUT hangs.
        assert process.stderr is not None
        early: list[str] = []
        for line in process.stderr:
            early.append(line.rstrip("\n"))
            if sum(entry.startswith("pushed ") for entry in early) == 4:
                break
        assert wait_until(lambda: sum(r.method == "PUT" for r in server.requests) == len(TAGS))
        process.send_signal(signum)
        out, rest = process.communicate(timeout=60)
    err = early + rest.splitlines()
    assert process.returncode == status, err
    assert not any("Traceback" in line for line in err)
    assert len(out.splitlines()) == 4 and all(
        line.startswith("Digest: sha256:") for line in out.splitlines()
    ), out
    assert [line for line in err if not line.startswith("pushed ")] == [
        f"not written: {server.host}/app:t5",
        word,
    ], err
