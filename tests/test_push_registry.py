"""End to end against real docker-registry processes: the CLI as a subprocess, the library too.

Every pushed list is read back with the tests' own independent client and compared byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest

import pushmanifest
import support.cli as support_cli
from pushmanifest import ClientOptions, Credentials, ManifestListSpec, PushOptions
from support.images import RegistryHTTPError, read_manifest, seed_platforms
from support.proxy import HttpProxy, WaveGate

pytestmark = pytest.mark.registry

SEED_PLATFORMS = [
    ("amd64", "amd64", ""),
    ("arm32v6", "arm", "v6"),
    ("arm32v7", "arm", "v7"),
    ("arm64v8", "arm64", "v8"),
]


def run_cli(
    *args: str, stdin: str = "", env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None
) -> subprocess.CompletedProcess[str]:
    return support_cli.run_cli(*args, stdin=stdin, env=env, cwd=cwd)


def seed_set(
    server: Any,
    repository: str,
    *,
    user: Optional[str] = None,
    oci: bool = False,
    platforms: list[tuple[str, str, str]] = SEED_PLATFORMS,
) -> dict[str, Any]:
    return seed_platforms(server, repository, platforms, user=user, oci=oci)


def spec_text(
    host: str,
    repository: str,
    tag: str = "latest",
    *,
    tags: list[str] = (),  # type: ignore[assignment]
    platforms: list[tuple[str, str, str]] = SEED_PLATFORMS,
    with_platform: bool = True,
) -> str:
    lines = [f"image: {host}/{repository}:{tag}"]
    if tags:
        lines.append(f"tags: [{', '.join(tags)}]")
    lines.append("manifests:")
    for source_tag, arch, variant in platforms:
        lines.append(f"  - image: {host}/{repository}:{source_tag}")
        if with_platform:
            lines += ["    platform:", f"      architecture: {arch}", "      os: linux"]
            if variant:
                lines.append(f"      variant: {variant}")
    return "\n".join(lines) + "\n"


def write_spec(tmp_path: Path, text: str, name: str = "multi-arch-manifest.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def digest_line(stdout: str) -> tuple[str, int]:
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("Digest: ")]
    _, digest, size = line.split(" ")
    return digest, int(size)


def check_pushed(
    server: Any,
    repository: str,
    tag: str,
    seeded: dict[str, Any],
    digest: str,
    size: int,
    user: Optional[str] = None,
) -> dict[str, Any]:
    """The registry serves back the list: same digest and size, every entry right."""
    password = server.users[user] if user else None
    body, content_type, served_digest = read_manifest(
        server, repository, tag, username=user, password=password
    )
    assert served_digest == digest
    assert len(body) == size
    data = json.loads(body)
    assert content_type == data["mediaType"]
    by_digest = {image.digest: image for image in seeded.values()}
    assert len(data["manifests"]) == len(seeded)
    for entry in data["manifests"]:
        image = by_digest[entry["digest"]]
        assert entry["size"] == image.size
        assert entry["mediaType"] == image.media_type
        assert entry["platform"]["architecture"] == image.platform["architecture"]
        assert entry["platform"].get("variant", "") == image.platform.get("variant", "")
    return data


# -- token auth (Docker Hub's protocol) --------------------------------------------------------


def test_seed_spec_on_token_registry(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/compose-updater"
    seeded = seed_set(token_registry, repo, user="alice")
    spec = write_spec(tmp_path, spec_text(token_registry.host, repo))
    token_registry.token_server.reset()
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        stdin=token_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # One token for the whole run, with every scope in it.
    assert token_registry.token_server.count == 1
    digest, size = digest_line(result.stdout)
    data = check_pushed(token_registry, repo, "latest", seeded, digest, size, user="alice")
    assert data["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert token_registry.users["alice"] not in result.stdout + result.stderr


def test_docker_config_auths(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/from-config"
    seeded = seed_set(token_registry, repo, user="alice", platforms=SEED_PLATFORMS[:2])
    auth = base64.b64encode(f"alice:{token_registry.users['alice']}".encode()).decode()
    cfg = tmp_path / "dockercfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"auth": auth}}}))
    spec = write_spec(tmp_path, spec_text(token_registry.host, repo, platforms=SEED_PLATFORMS[:2]))
    result = run_cli("--docker-cfg", str(cfg), "from-spec", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    check_pushed(token_registry, repo, "latest", seeded, digest, size, user="alice")


def test_docker_config_env_and_credential_helper(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/from-helper"
    seeded = seed_set(token_registry, repo, user="alice", platforms=SEED_PLATFORMS[2:])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testhelper"
    secret = token_registry.users["alice"]
    helper.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        read server
        [ "$1" = get ] || exit 1
        printf '{{"ServerURL":"%s","Username":"alice","Secret":"{secret}"}}' "$server"
        """)
    )
    helper.chmod(0o755)
    cfg = tmp_path / "cfgdir"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "testhelper"}))
    spec = write_spec(tmp_path, spec_text(token_registry.host, repo, platforms=SEED_PLATFORMS[2:]))
    env = {"DOCKER_CONFIG": str(cfg), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = run_cli("from-spec", str(spec), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    check_pushed(token_registry, repo, "latest", seeded, digest, size, user="alice")
    assert secret not in result.stdout + result.stderr


def test_wrong_password(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/wrong-password"
    seed_set(token_registry, repo, user="alice", platforms=SEED_PLATFORMS[:1])
    spec = write_spec(tmp_path, spec_text(token_registry.host, repo, platforms=SEED_PLATFORMS[:1]))
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        stdin="not-the-password\n",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert "alice" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_push_denied(token_registry: Any, tmp_path: Path) -> None:
    repo = "alice/denied"
    seed_set(token_registry, repo, user="alice", platforms=SEED_PLATFORMS[:1])
    spec = write_spec(tmp_path, spec_text(token_registry.host, repo, platforms=SEED_PLATFORMS[:1]))
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "bob",
        "--password-stdin",
        stdin=token_registry.users["bob"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    error = result.stderr.strip()
    assert "Traceback" not in error
    assert "bob" in error and f"{token_registry.host}/{repo}" in error, error
    assert token_registry.users["bob"] not in error


# -- open registry -----------------------------------------------------------------------------


def test_missing_sources_all_named(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/missing"
    seed_set(open_registry, repo, platforms=SEED_PLATFORMS[:2])
    spec = write_spec(tmp_path, spec_text(open_registry.host, repo))
    result = run_cli("from-spec", str(spec), cwd=tmp_path)
    assert result.returncode == 1
    assert "arm32v7" in result.stderr and "arm64v8" in result.stderr
    assert "amd64" not in result.stderr.split("exist")[1]
    # Nothing was written.
    with pytest.raises(RegistryHTTPError) as excinfo:
        read_manifest(open_registry, repo, "latest")
    assert (excinfo.value.status, excinfo.value.codes) == (404, ["MANIFEST_UNKNOWN"])


def test_ignore_missing(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/ignore-missing"
    seeded = seed_set(open_registry, repo, platforms=SEED_PLATFORMS[:3])
    spec = write_spec(tmp_path, spec_text(open_registry.host, repo))
    result = run_cli("from-spec", "--ignore-missing", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "arm64v8" in result.stderr
    digest, size = digest_line(result.stdout)
    check_pushed(open_registry, repo, "latest", seeded, digest, size)


def test_ignore_missing_with_none_left(open_registry: Any, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, spec_text(open_registry.host, "demo/none-left"))
    result = run_cli("from-spec", str(spec), "--ignore-missing", cwd=tmp_path)
    assert result.returncode == 1
    assert "does not exist" in result.stderr or "do not exist" in result.stderr


def test_dry_run_writes_nothing(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/dry-run"
    seed_set(open_registry, repo)
    spec = write_spec(tmp_path, spec_text(open_registry.host, repo))
    result = run_cli("from-spec", str(spec), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    listed = result.stdout.split("Digest:")[0].strip().encode()
    assert len(listed) == size
    assert json.loads(listed)["manifests"]
    with pytest.raises(RegistryHTTPError) as excinfo:
        read_manifest(open_registry, repo, "latest")
    assert (excinfo.value.status, excinfo.value.codes) == (404, ["MANIFEST_UNKNOWN"])
    # The real push afterwards gives the same digest.
    pushed = run_cli("from-spec", str(spec), cwd=tmp_path)
    assert digest_line(pushed.stdout) == (digest, size)


def test_json_output_and_extra_tags(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/json"
    seeded = seed_set(open_registry, repo)
    spec = write_spec(tmp_path, spec_text(open_registry.host, repo, "1.0", tags=["1", "latest"]))
    result = run_cli("from-spec", str(spec), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [obj] = [json.loads(line) for line in result.stdout.splitlines()]
    assert obj["target"] == f"{open_registry.host}/{repo}:1.0"
    assert obj["tags"] == ["1.0", "1", "latest"]
    assert obj["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert {m["digest"] for m in obj["manifests"]} == {i.digest for i in seeded.values()}
    for m in obj["manifests"]:
        assert set(m) >= {"image", "digest", "mediaType", "size", "platform"}
    for tag in ("1.0", "1", "latest"):
        check_pushed(open_registry, repo, tag, seeded, obj["digest"], obj["size"])


def test_unchanged_rerun_writes_nothing_and_request_counts(
    open_registry: Any, tmp_path: Path
) -> None:
    repo = "demo/rerun"
    seeded = seed_set(open_registry, repo)
    n, extra_tags = len(seeded), 2
    # The gate releases requests in waves: depth is the number of round trips, whatever the load.
    gate = WaveGate()
    with HttpProxy(upstream=open_registry.host, gate=gate) as proxy:
        spec = write_spec(tmp_path, spec_text(proxy.host, repo, "v1", tags=["v", "latest"]))
        first = support_cli.run_cli(
            "from-spec", str(spec), "--plain-http", cwd=tmp_path, on_start=gate.watch
        )
        assert first.returncode == 0, first.stderr
        tags = extra_tags + 1
        # A HEAD per source, a HEAD and a PUT per tag; nothing else (no ping when anonymous).
        assert proxy.count() <= n + 2 * tags + 1
        assert proxy.count("GET") == 0
        assert proxy.count("PUT") == tags
        assert proxy.depth() <= 2
        proxy.reset()
        second = support_cli.run_cli(
            "from-spec", str(spec), "--plain-http", cwd=tmp_path, on_start=gate.watch
        )
        assert second.returncode == 0, second.stderr
        assert digest_line(second.stdout) == digest_line(first.stdout)
        assert proxy.count("PUT") == 0
        assert proxy.count("HEAD") == n + tags


def test_platforms_from_image_config(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/no-platform"
    seeded = seed_set(open_registry, repo)
    # The gate releases requests in waves: depth is the number of round trips, whatever the load.
    gate = WaveGate()
    with HttpProxy(upstream=open_registry.host, gate=gate) as proxy:
        spec = write_spec(tmp_path, spec_text(proxy.host, repo, with_platform=False))
        result = support_cli.run_cli(
            "from-spec", str(spec), "--plain-http", cwd=tmp_path, on_start=gate.watch
        )
        assert result.returncode == 0, result.stderr
        n = len(seeded)
        assert proxy.count("GET", "/manifests/") == n
        assert proxy.count("GET", "/blobs/") == n
        assert proxy.depth() <= 4
    digest, size = digest_line(result.stdout)
    check_pushed(open_registry, repo, "latest", seeded, digest, size)


def test_oci_sources_make_an_oci_index(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/oci"
    seeded = seed_set(open_registry, repo, oci=True)
    spec = write_spec(tmp_path, spec_text(open_registry.host, repo))
    result = run_cli("from-spec", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_pushed(open_registry, repo, "latest", seeded, digest, size)
    assert data["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_type_oci_over_docker_images(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/type-oci"
    seeded = seed_set(open_registry, repo, platforms=SEED_PLATFORMS[:2])
    spec = write_spec(tmp_path, spec_text(open_registry.host, repo, platforms=SEED_PLATFORMS[:2]))
    result = run_cli("from-spec", str(spec), "--type", "oci", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_pushed(open_registry, repo, "latest", seeded, digest, size)
    assert data["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_several_documents_and_files(open_registry: Any, tmp_path: Path) -> None:
    a = seed_set(open_registry, "demo/multi-a", platforms=SEED_PLATFORMS[:2])
    b = seed_set(open_registry, "demo/multi-b", platforms=SEED_PLATFORMS[2:])
    c = seed_set(open_registry, "demo/multi-c", platforms=SEED_PLATFORMS[1:3])
    host = open_registry.host
    doc = (
        spec_text(host, "demo/multi-a", platforms=SEED_PLATFORMS[:2])
        + "---\n"
        + spec_text(host, "demo/multi-b", platforms=SEED_PLATFORMS[2:])
    )
    one = write_spec(tmp_path, doc, "two.yaml")
    two = write_spec(
        tmp_path, spec_text(host, "demo/multi-c", platforms=SEED_PLATFORMS[1:3]), "three.yaml"
    )
    result = run_cli("from-spec", str(one), str(two), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("Digest: ")]
    assert len(lines) == 3
    for line, (repo, seeded) in zip(
        lines, [("demo/multi-a", a), ("demo/multi-b", b), ("demo/multi-c", c)]
    ):
        _, digest, size = line.split(" ")
        check_pushed(open_registry, repo, "latest", seeded, digest, int(size))


def test_env_expansion_in_spec(open_registry: Any, tmp_path: Path) -> None:
    repo = "demo/env"
    seeded = seed_set(open_registry, repo, platforms=SEED_PLATFORMS[:1])
    spec = write_spec(
        tmp_path,
        textwrap.dedent("""\
        image: ${DOCKER_REPO}:latest
        manifests:
          - image: ${DOCKER_REPO}:amd64
            platform: {architecture: amd64, os: linux}
        """),
    )
    result = run_cli(
        "from-spec", str(spec), cwd=tmp_path, env={"DOCKER_REPO": f"{open_registry.host}/{repo}"}
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    check_pushed(open_registry, repo, "latest", seeded, digest, size)


def test_unreachable_registry_exits_1(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, spec_text("127.0.0.1:9", "demo/app", platforms=SEED_PLATFORMS[:1]))
    result = run_cli("from-spec", str(spec), "--retries", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr


# -- TLS + htpasswd ------------------------------------------------------------------------------


def test_tls_with_basic_auth(tls_registry: Any, tmp_path: Path) -> None:
    repo = "team/tls-app"
    seeded = seed_set(tls_registry, repo, user="alice")
    spec = write_spec(tmp_path, spec_text(tls_registry.host, repo))
    result = run_cli(
        "from-spec",
        str(spec),
        "--ca-file",
        str(tls_registry.ca_file),
        "--username",
        "alice",
        "--password-stdin",
        stdin=tls_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    check_pushed(tls_registry, repo, "latest", seeded, digest, size, user="alice")


def test_tls_untrusted_certificate(tls_registry: Any, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, spec_text(tls_registry.host, "team/x", platforms=SEED_PLATFORMS[:1])
    )
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        stdin=tls_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "--ca-file" in result.stderr and "Traceback" not in result.stderr


# -- the library ---------------------------------------------------------------------------------


def test_library_sync_push(token_registry: Any) -> None:
    repo = "alice/library-sync"
    seeded = seed_set(token_registry, repo, user="alice")
    spec = ManifestListSpec(
        image=f"{token_registry.host}/{repo}:2.0",
        tags=["2"],
        manifests=[
            {
                "image": f"{token_registry.host}/{repo}:{tag}",
                "platform": {"os": "linux", "architecture": arch, "variant": variant},
            }
            for tag, arch, variant in SEED_PLATFORMS
        ],
    )
    credentials = Credentials(username="alice", password=token_registry.users["alice"])
    [result] = pushmanifest.push(spec, credentials=credentials)
    assert result.tags == ("2.0", "2")
    assert result.written == ("2.0", "2")
    assert [str(e.image) for e in result.entries] == [
        f"{token_registry.host}/{repo}:{tag}" for tag, _, _ in SEED_PLATFORMS
    ]
    for tag in result.tags:
        check_pushed(token_registry, repo, tag, seeded, result.digest, result.size, user="alice")
        body, _, _ = read_manifest(
            token_registry, repo, tag, username="alice", password=token_registry.users["alice"]
        )
        assert body == result.data


def test_library_async_push_and_errors(open_registry: Any) -> None:
    repo = "demo/library-async"
    seeded = seed_set(open_registry, repo, platforms=SEED_PLATFORMS[:2])
    text = spec_text(open_registry.host, repo, platforms=SEED_PLATFORMS[:2])
    specs = pushmanifest.load_spec_text(text, "inline.yaml")
    options = PushOptions(client=ClientOptions(plain_http=True))
    [result] = asyncio.run(pushmanifest.push_async(specs, options))
    check_pushed(open_registry, repo, "latest", seeded, result.digest, result.size)

    missing = pushmanifest.load_spec_text(spec_text(open_registry.host, repo), "inline.yaml")
    with pytest.raises(pushmanifest.MissingSourcesError) as excinfo:
        pushmanifest.push(missing, options)
    assert set(excinfo.value.missing) == {
        f"{open_registry.host}/{repo}:arm32v7",
        f"{open_registry.host}/{repo}:arm64v8",
    }
