"""inspect: lists and images read back from real registries (CLI and library), pull scope only."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

import pushmanifest
import support.cli as support_cli
from pushmanifest import ClientOptions, Credentials, Platform
from pushmanifest.cli import main
from pushmanifest.fromargs import spec_from_args
from pushmanifest.inspecting import InspectOptions, InspectResult, inspect, inspect_async
from pushmanifest.manifest import Descriptor
from pushmanifest.reference import Reference
from support.images import SeedClient, SeededImage, read_manifest, seed_image
from support.tokenserver import Grant

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ATTESTATION = {
    "vnd.docker.reference.digest": "sha256:" + "1" * 64,
    "vnd.docker.reference.type": "attestation-manifest",
}


def run_cli(
    *args: str, stdin: str = "", cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess[bytes]:
    """The CLI as a subprocess; stdout as bytes (--raw must be byte-exact)."""
    return support_cli.run_cli(*args, stdin=stdin, cwd=cwd, env=env, binary=True)


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def err(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def push_list(server: Any, repository: str, tag: str = "list") -> dict[str, SeededImage]:
    """Seed three images and push an OCI index of them (with annotations) at ``tag``."""
    seeded = {
        "amd64": seed_image(server, repository, "amd64"),
        "arm-v7": seed_image(server, repository, "arm-v7", architecture="arm", variant="v7"),
        "arm64": seed_image(server, repository, "arm64", architecture="arm64", oci=True),
    }
    spec = spec_from_args(
        "linux/amd64,linux/arm/v7,linux/arm64",
        f"{server.host}/{repository}:ARCH-VARIANT",
        f"{server.host}/{repository}:{tag}",
        annotations={"org.opencontainers.image.version": "1.0"},
    )
    pushmanifest.push(spec, list_type="oci")
    return seeded


# -- a list ---------------------------------------------------------------------------------------


def test_inspect_a_list(open_registry: Any, tmp_path: Path) -> None:
    repo = "inspect/list"
    seeded = push_list(open_registry, repo)
    ref = f"{open_registry.host}/{repo}:list"
    body, content_type, digest = read_manifest(open_registry, repo, "list")
    assert content_type == OCI_INDEX

    human = run_cli("inspect", ref, cwd=tmp_path)
    assert human.returncode == 0, err(human)
    out = text(human)
    assert f"Name:        {ref}\n" in out
    assert f"MediaType:   {OCI_INDEX}\n" in out
    assert f"Digest:      {digest}\n" in out
    [size_line] = [line for line in out.splitlines() if line.startswith("Size:")]
    assert size_line in (f"Size:        {len(body)} B", f"Size:        1.0 KiB ({len(body)} B)")
    assert "org.opencontainers.image.version: 1.0" in out
    assert "Manifests (3):" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  linux/")]
    assert rows == [
        ["linux/amd64", seeded["amd64"].digest, str(seeded["amd64"].size), DOCKER_MANIFEST],
        ["linux/arm/v7", seeded["arm-v7"].digest, str(seeded["arm-v7"].size), DOCKER_MANIFEST],
        ["linux/arm64", seeded["arm64"].digest, str(seeded["arm64"].size), OCI_MANIFEST],
    ]

    as_json = run_cli("inspect", "--json", ref, cwd=tmp_path)
    assert as_json.returncode == 0, err(as_json)
    obj = json.loads(as_json.stdout)
    data = json.loads(body)
    assert obj == {
        "reference": ref,
        "kind": "list",
        "digest": digest,
        "mediaType": OCI_INDEX,
        "size": len(body),
        "annotations": {"org.opencontainers.image.version": "1.0"},
        "manifests": data["manifests"],
    }

    raw = run_cli("inspect", "--raw", ref, cwd=tmp_path)
    assert raw.returncode == 0, err(raw)
    assert raw.stdout == body  # byte for byte, no newline added
    assert err(raw) == ""


def test_inspect_by_digest_and_options_after_the_reference(
    open_registry: Any, tmp_path: Path
) -> None:
    repo = "inspect/by-digest"
    push_list(open_registry, repo)
    body, _, digest = read_manifest(open_registry, repo, "list")
    raw = run_cli("inspect", f"{open_registry.host}/{repo}@{digest}", "--raw", cwd=tmp_path)
    assert raw.returncode == 0, err(raw)
    assert raw.stdout == body


# -- an image -------------------------------------------------------------------------------------


@pytest.mark.parametrize("oci", [False, True], ids=["docker", "oci"])
def test_inspect_an_image(open_registry: Any, tmp_path: Path, oci: bool) -> None:
    repo = f"inspect/image-{'oci' if oci else 'docker'}"
    image = seed_image(open_registry, repo, "v7", architecture="arm", variant="v7", oci=oci)
    ref = f"{open_registry.host}/{repo}:v7"
    body, content_type, digest = read_manifest(open_registry, repo, "v7")
    assert (body, digest) == (image.manifest, image.digest)
    config, layer = image.blobs[image.config_digest], image.blobs[image.layer_digest]
    manifest = json.loads(body)

    human = run_cli("inspect", ref, cwd=tmp_path)
    assert human.returncode == 0, err(human)
    out = text(human)
    assert f"MediaType:   {content_type}\n" in out
    assert f"Digest:      {digest}\n" in out
    assert "Platform:    linux/arm/v7\n" in out
    assert f"Config:      {image.config_digest}  {len(config)} B  " in out
    assert "Layers (1):" in out
    [row] = [line.split() for line in out.splitlines() if line.startswith("  sha256:")]
    assert row == [image.layer_digest, str(len(layer)), manifest["layers"][0]["mediaType"]]
    assert f"Total size:  {len(config) + len(layer)} B" in out

    as_json = run_cli("--json", "inspect", ref, cwd=tmp_path)
    assert as_json.returncode == 0, err(as_json)
    obj = json.loads(as_json.stdout)
    assert obj == {
        "reference": ref,
        "kind": "image",
        "digest": digest,
        "mediaType": content_type,
        "size": len(body),
        "annotations": {},
        "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
        "config": manifest["config"],
        "layers": manifest["layers"],
        "totalSize": len(config) + len(layer),
    }

    raw = run_cli("inspect", ref, "--raw", cwd=tmp_path)
    assert raw.returncode == 0, err(raw)
    assert raw.stdout == body


def test_inspect_latest_by_default_and_missing(open_registry: Any, tmp_path: Path) -> None:
    repo = "inspect/latest"
    image = seed_image(open_registry, repo, "latest")
    result = run_cli("inspect", "--json", f"{open_registry.host}/{repo}", cwd=tmp_path)
    assert result.returncode == 0, err(result)
    obj = json.loads(result.stdout)
    assert obj["reference"] == f"{open_registry.host}/{repo}:latest"
    assert obj["digest"] == image.digest

    missing = run_cli("inspect", f"{open_registry.host}/{repo}:nope", cwd=tmp_path)
    assert missing.returncode == 1
    assert text(missing) == ""
    assert f"{open_registry.host}/{repo}:nope does not exist" in err(missing)
    assert "Traceback" not in err(missing)


# -- auth: pull scope only ------------------------------------------------------------------------


def seed_public(server: Any, repository: str) -> SeededImage:
    """Nobody may push to public/*: mint an owner token to seed there."""
    token = server.token_server.issue("admin", [Grant("repository", repository, ("pull", "push"))])
    with SeedClient(server) as client:
        client.use_token(f"repository:{repository}:pull,push", token)
        return seed_image(server, repository, "latest", client=client)


def test_anonymous_on_a_public_repository(token_registry: Any, tmp_path: Path) -> None:
    repo = "public/inspect"
    image = seed_public(token_registry, repo)
    ts = token_registry.token_server
    ts.reset()
    result = run_cli("inspect", "--raw", f"{token_registry.host}/{repo}", cwd=tmp_path)
    assert result.returncode == 0, err(result)
    assert result.stdout == image.manifest
    requests = ts.requests
    assert requests, "no token was asked for"
    assert all(r.auth == "anonymous" and r.user is None for r in requests)
    assert requests[-1].scopes == (f"repository:{repo}:pull",)


def test_with_credentials_asks_only_for_pull(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/inspect"
    password = token_registry.users["alice"]
    image = seed_image(
        token_registry, repo, "1.0", architecture="arm64", username="alice", password=password
    )
    ts = token_registry.token_server
    ts.reset()
    result = run_cli(
        "inspect",
        "--json",
        f"{token_registry.host}/{repo}:1.0",
        "--username",
        "alice",
        "--password-stdin",
        stdin=password + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, err(result)
    obj = json.loads(result.stdout)
    assert obj["digest"] == image.digest
    assert obj["platform"] == {"architecture": "arm64", "os": "linux"}
    last = ts.requests[-1]
    assert last.user == "alice"
    assert last.scopes == (f"repository:{repo}:pull",)
    assert password not in text(result) + err(result)


def test_credentials_from_the_docker_config(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/inspect-config"
    password = token_registry.users["alice"]
    image = seed_image(token_registry, repo, "latest", username="alice", password=password)
    auth = base64.b64encode(f"alice:{password}".encode()).decode()
    cfg = tmp_path / "dockercfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"auth": auth}}}))
    ts = token_registry.token_server
    ts.reset()
    result = run_cli(
        "inspect", "--raw", "--docker-cfg", str(cfg), f"{token_registry.host}/{repo}", cwd=tmp_path
    )
    assert result.returncode == 0, err(result)
    assert result.stdout == image.manifest
    assert ts.requests[-1].user == "alice"
    assert ts.requests[-1].scopes == (f"repository:{repo}:pull",)


def test_anonymous_denied_on_a_private_repository(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/inspect-private"
    seed_image(
        token_registry, repo, "latest", username="alice", password=token_registry.users["alice"]
    )
    result = run_cli("inspect", f"{token_registry.host}/{repo}", cwd=tmp_path)
    assert result.returncode == 1
    message = err(result).strip()
    assert "anonymous" in message and f"{token_registry.host}/{repo}" in message
    assert "docker login" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1


def test_tls_with_basic_auth(tls_registry: Any, tmp_path: Path) -> None:
    repo = "team/inspect"
    password = tls_registry.users["alice"]
    image = seed_image(tls_registry, repo, "latest", username="alice", password=password)
    result = run_cli(
        "inspect",
        "--raw",
        "--ca-file",
        str(tls_registry.ca_file),
        "--username",
        "alice",
        "--password-stdin",
        f"{tls_registry.host}/{repo}",
        stdin=password + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, err(result)
    assert result.stdout == image.manifest


# -- the library ----------------------------------------------------------------------------------


def test_library_sync_and_async(token_registry: Any) -> None:
    repo = "alice/inspect-library"
    password = token_registry.users["alice"]
    image = seed_image(
        token_registry,
        repo,
        "v6",
        architecture="arm",
        variant="v6",
        username="alice",
        password=password,
    )
    credentials = Credentials(username="alice", password=password)
    ref = f"{token_registry.host}/{repo}:v6"

    result = inspect(ref, credentials=credentials)
    assert isinstance(result, InspectResult)
    assert not result.is_list
    assert (result.digest, result.size, result.data) == (image.digest, image.size, image.manifest)
    assert result.platform == Platform("linux", "arm", "v6")
    assert result.config is not None and result.config.digest == image.config_digest
    assert [layer.digest for layer in result.layers] == [image.layer_digest]
    assert result.total_size == sum(len(blob) for blob in image.blobs.values())
    assert result.to_dict()["platform"] == {"architecture": "arm", "os": "linux", "variant": "v6"}

    options = InspectOptions(credentials=credentials, client=ClientOptions(retries=1))
    again = asyncio.run(inspect_async(Reference.parse(ref), options))
    assert again.to_dict() == result.to_dict()

    with pytest.raises(pushmanifest.AuthenticationError):
        inspect(ref)  # anonymous: alice's repositories are private


def test_library_list(open_registry: Any) -> None:
    repo = "inspect/library-list"
    seeded = push_list(open_registry, repo)
    result = inspect(f"{open_registry.host}/{repo}:list")
    assert result.is_list and result.total_size is None and result.platform is None
    assert result.media_type == OCI_INDEX
    assert result.annotations == {"org.opencontainers.image.version": "1.0"}
    assert [(str(e.platform), e.digest, e.size) for e in result.manifests] == [
        ("linux/amd64", seeded["amd64"].digest, seeded["amd64"].size),
        ("linux/arm/v7", seeded["arm-v7"].digest, seeded["arm-v7"].size),
        ("linux/arm64", seeded["arm64"].digest, seeded["arm64"].size),
    ]


def test_sync_inspect_refuses_a_running_loop() -> None:
    async def call() -> None:
        inspect("127.0.0.1:9/x")

    with pytest.raises(RuntimeError, match="inspect_async"):
        asyncio.run(call())


# -- output and usage without a registry ----------------------------------------------------------


def _descriptor(digest_char: str, size: int, **kwargs: Any) -> Descriptor:
    return Descriptor(
        media_type=OCI_MANIFEST, digest="sha256:" + digest_char * 64, size=size, **kwargs
    )


def test_text_of_a_list_with_an_attestation() -> None:
    image = _descriptor("a", 1234, platform=Platform("linux", "arm64", "v8"))
    attestation = _descriptor(
        "b", 566, platform=Platform("unknown", "unknown"), annotations=ATTESTATION
    )
    result = InspectResult(
        reference=Reference.parse("example.com/app:1"),
        descriptor=Descriptor(media_type=OCI_INDEX, digest="sha256:" + "c" * 64, size=5000),
        data=b"{}",
        manifests=(image, attestation),
    )
    out = result.to_text()
    assert out.endswith("\n")
    assert "Size:        4.9 KiB (5000 B)\n" in out
    assert "Annotations" not in out  # none on the list
    lines = out.splitlines()
    header = lines.index("Manifests (2):") + 1
    assert lines[header].split() == ["PLATFORM", "DIGEST", "SIZE", "MEDIA", "TYPE"]
    assert lines[header + 1].split() == ["linux/arm64/v8", image.digest, "1234", OCI_MANIFEST]
    assert lines[header + 2].split() == ["unknown/unknown", attestation.digest, "566", OCI_MANIFEST]
    # Sizes right-aligned in their column.
    assert lines[header + 1].index("1234") == lines[header + 2].index("566") - 1
    assert lines[header + 3].strip() == f"vnd.docker.reference.digest: {'sha256:' + '1' * 64}"
    assert lines[header + 4].strip() == "vnd.docker.reference.type: attestation-manifest"
    assert result.to_dict()["manifests"][1]["annotations"] == ATTESTATION


def test_text_of_an_artifact_without_platform() -> None:
    result = InspectResult(
        reference=Reference.parse("example.com/app:sig"),
        descriptor=_descriptor("d", 400),
        data=b"{}",
        config=Descriptor(
            media_type="application/vnd.oci.empty.v1+json", digest="sha256:" + "e" * 64, size=2
        ),
        artifact_type="application/vnd.example.sig",
    )
    out = result.to_text()
    assert "Artifact:    application/vnd.example.sig\n" in out
    assert "Platform:    -\n" in out
    assert "Layers (0):\n  (none)\n" in out
    assert result.to_dict()["artifactType"] == "application/vnd.example.sig"
    assert result.to_dict()["totalSize"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect"], "required"),
        (["inspect", "--raw", "--json", "x"], "not allowed with"),
        (["inspect", "Bad/Name"], "lowercase"),
        (["inspect", "a", "b"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
