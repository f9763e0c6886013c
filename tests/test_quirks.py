"""The quirk matrix: the CLI against each hosted registry's documented quirks, reproduced by a
profile of :mod:`support.quirks` in front of a real ``docker-registry``.

Every test ends with the right list in the registry (read back with the tests' own client) or
with one clear line naming the vendor's limitation. The README's "Registries" table points here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest

import pushmanifest
from pushmanifest import ClientOptions, PushOptions
from support.cli import run_cli
from support.images import MANIFEST_ACCEPT, read_manifest, seed_image, seed_platforms
from support.quirks import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    SCHEMA1_SIGNED,
    AcrProfile,
    DockerHubProfile,
    EcrProfile,
    GcrProfile,
    GhcrProfile,
    GitLabProfile,
    HarborProfile,
    HeadRefusingProfile,
    NexusProfile,
    Profile,
    QuayProfile,
    QuirkProxy,
)

pytestmark = pytest.mark.registry

PLATFORMS = [("amd64", "amd64", ""), ("arm64", "arm64", "")]


def seed(server: Any, repository: str, user: Optional[str] = None, oci: bool = False) -> dict:
    return seed_platforms(server, repository, PLATFORMS, user=user, oci=oci)


def spec_file(
    tmp_path: Path,
    host: str,
    target: str,
    source_repo: str,
    *,
    platforms: bool = True,
    annotations: Optional[dict[str, str]] = None,
) -> Path:
    lines = [f"image: {host}/{target}"]
    if annotations:
        lines.append("annotations:")
        lines += [f"  {k}: {json.dumps(v)}" for k, v in annotations.items()]
    lines.append("manifests:")
    for tag, arch, _variant in PLATFORMS:
        lines.append(f"  - image: {host}/{source_repo}:{tag}")
        if platforms:
            lines += ["    platform:", f"      architecture: {arch}", "      os: linux"]
    path = tmp_path / "spec.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def digest_of(stdout: str) -> str:
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("Digest: ")]
    return line.split(" ")[1]


def pushed(server: Any, repository: str, tag: str, user: Optional[str] = None) -> dict:
    password = server.users[user] if user else None
    body, _, digest = read_manifest(server, repository, tag, username=user, password=password)
    data = json.loads(body)
    data["_digest"] = digest
    return data


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("error")]


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    return line


@pytest.fixture
def quirk_proxy() -> Iterator[Any]:
    proxies: list[QuirkProxy] = []

    def start(upstream: str, profile: Profile) -> QuirkProxy:
        proxy = QuirkProxy(upstream, profile).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def docker_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    cfg = tmp_path / "dockercfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "config.json").write_text(json.dumps(config))
    return cfg


def helper_on_path(tmp_path: Path, name: str, username: str, secret: str) -> dict[str, str]:
    """A fake docker-credential-<name> on PATH answering ``get`` with the given pair."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = get ] || exit 1
        read server
        printf '{{"ServerURL":"%s","Username":"{username}","Secret":"{secret}"}}' "$server"
        """)
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


# -- the layer itself: a profile changes what the real registry answers -------------------------


def test_quirk_layer_bends_the_real_registry(open_registry: Any, quirk_proxy: Any) -> None:
    seed_image(open_registry, "quirks/layer", "a")
    quay = quirk_proxy(open_registry.host, QuayProfile())
    acr = quirk_proxy(open_registry.host, AcrProfile())
    narrow = {"Accept": "application/vnd.docker.distribution.manifest.v1+json"}
    with httpx.Client() as http:
        r = http.get(f"http://{quay.host}/v2/quirks/layer/manifests/a", headers=narrow)
        assert r.headers["Content-Type"] == SCHEMA1_SIGNED
        r = http.get(f"http://{acr.host}/v2/quirks/layer/manifests/a", headers=narrow)
        assert r.status_code == 404 and "MANIFEST_UNKNOWN" in r.text
        full = {"Accept": ", ".join(MANIFEST_ACCEPT)}
        r = http.get(f"http://{acr.host}/v2/quirks/layer/manifests/a", headers=full)
        assert r.status_code == 200


# -- 1. ECR --------------------------------------------------------------------------------------


def test_ecr_helper_auth_refused_mounts_no_digest_header(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "ecr/src")
    proxy = quirk_proxy(open_registry.host, EcrProfile(password="ecr-" + "p" * 2000))
    env = helper_on_path(tmp_path, "ecr-login", "AWS", "ecr-" + "p" * 2000)
    cfg = docker_config(tmp_path, {"credHelpers": {proxy.host: "ecr-login"}})
    spec = spec_file(tmp_path, proxy.host, "ecr/app:v1", "ecr/src")
    result = run_cli(
        "--docker-cfg", str(cfg), "from-spec", str(spec), "--plain-http", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    data = pushed(open_registry, "ecr/app", "v1")
    assert data["_digest"] == digest_of(result.stdout)
    assert len(data["manifests"]) == 2
    # Every mount was refused (202) and each blob streamed through its session instead.
    assert proxy.profile.refused_mounts == 4
    assert proxy.count("PUT", "/blobs/uploads/") == 4
    assert proxy.count(quirk="ecr: no digest header") > 0
    assert "p" * 50 not in result.stderr + result.stdout


def test_ecr_immutable_tag_unchanged_is_not_put_changed_is_one_line(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "ecr/imm")
    proxy = quirk_proxy(open_registry.host, EcrProfile(password="pw", immutable=True))
    args = ("--username", "AWS", "--password-stdin", "--plain-http")
    spec = spec_file(tmp_path, proxy.host, "ecr/imm:release", "ecr/imm")
    first = run_cli("from-spec", str(spec), *args, stdin="pw\n", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    proxy.reset()
    again = run_cli("from-spec", str(spec), *args, stdin="pw\n", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert proxy.count("PUT") == 0  # unchanged: nothing re-PUT, so nothing to refuse
    # A changed list (one entry less) to the same immutable tag.
    spec.write_text(spec.read_text().rsplit("  - image:", 1)[0])
    changed = run_cli("from-spec", str(spec), *args, stdin="pw\n", cwd=tmp_path)
    line = one_clear_line(changed)
    assert "immutable" in line and "ecr/imm:release" in line and "TAG_INVALID" in line
    assert pushed(open_registry, "ecr/imm", "release")["_digest"] == digest_of(first.stdout)


# -- 2. GCR / Artifact Registry ------------------------------------------------------------------


@pytest.mark.parametrize("user", ["oauth2accesstoken", "_json_key"])
def test_gcr_long_password_and_token_refetch_resends_body(
    token_registry: Any, quirk_proxy: Any, tmp_path: Path, monkeypatch: Any, user: str
) -> None:
    ts = token_registry.token_server
    repo = f"alice/gcr-{user.strip('_')}"
    seed(token_registry, repo, user="alice")
    key = json.dumps({"type": "service_account", "private_key": "k" * 4000, "user": user})
    password = key if user == "_json_key" else "ya29." + "t" * 3000
    monkeypatch.setitem(ts.users, user, password)
    original = ts.allowed_actions
    monkeypatch.setattr(
        ts,
        "allowed_actions",
        lambda who, name: original("alice" if who == user else who, name),
    )
    proxy = quirk_proxy(token_registry.host, GcrProfile(realm=ts.realm, service=ts.service))
    spec = spec_file(tmp_path, proxy.host, f"{repo}:v1", repo)
    ts.reset()
    if user == "oauth2accesstoken":
        # What `gcloud auth configure-docker` sets up: the docker-credential-gcloud helper.
        env = helper_on_path(tmp_path, "gcloud", user, password)
        cfg = docker_config(tmp_path, {"credHelpers": {proxy.host: "gcloud"}})
        result = run_cli(
            "--docker-cfg", str(cfg), "from-spec", str(spec), "--plain-http", cwd=tmp_path, env=env
        )
    else:
        # The documented key login: `docker login -u _json_key --password-stdin < key.json`.
        result = run_cli(
            "from-spec",
            str(spec),
            "--username",
            user,
            "--password-stdin",
            "--plain-http",
            stdin=password + "\n",
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    puts = proxy.select("PUT", "/manifests/v1")
    assert [p.status for p in puts] == [401, 201]
    assert puts[0].body == puts[1].body and puts[1].body  # the same body, sent again
    assert ts.count == 2  # the run's token, and one more after invalid_token
    assert pushed(token_registry, repo, "v1", user="alice")["_digest"] == digest_of(result.stdout)
    assert "k" * 50 not in result.stderr and "t" * 50 not in result.stderr


def test_gcr_token_refetch_mid_blob_upload_starts_the_copy_over(
    token_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    ts = token_registry.token_server
    seed(token_registry, "alice/gcr-src", user="alice")
    profile = GcrProfile(realm=ts.realm, service=ts.service, on_blobs=True)
    proxy = quirk_proxy(token_registry.host, profile)
    spec = spec_file(tmp_path, proxy.host, "alice/gcr-blobs:v1", "alice/gcr-src")
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        "--plain-http",
        "--max-concurrency",
        "2",
        stdin=token_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert proxy.count(quirk="gcr: invalid_token") == 1
    assert "token renewed mid-upload" in result.stderr
    # 4 blobs: 4 refused mounts, and one more session for the blob whose upload started over.
    assert proxy.count("POST", "/blobs/uploads/") == 5
    # The session whose body could not be resent is cancelled (one session: its DELETE may
    # itself need a token with more scope first).
    assert len({s.path for s in proxy.select("DELETE", "/blobs/uploads/")}) == 1
    assert pushed(token_registry, "alice/gcr-blobs", "v1", user="alice")["_digest"] == digest_of(
        result.stdout
    )


# -- 3. GHCR ---------------------------------------------------------------------------------------


def test_ghcr_token_password_no_read_after_put_no_delete(
    token_registry: Any, quirk_proxy: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    # GITHUB_TOKEN as the password (ghs_..., the Actions token).
    github_token = "ghs_" + "G" * 36
    monkeypatch.setitem(token_registry.token_server.users, "alice", github_token)
    monkeypatch.setitem(token_registry.users, "alice", github_token)
    repo = "alice/ghcr"
    seed(token_registry, repo, user="alice")
    proxy = quirk_proxy(token_registry.host, GhcrProfile(lag_reads=3))
    spec = spec_file(tmp_path, proxy.host, f"{repo}:v1", repo)
    args = ("--username", "alice", "--password-stdin", "--plain-http")
    result = run_cli("from-spec", str(spec), *args, stdin=github_token + "\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # No read of the new list after its PUT (it would 404 for a while), and no DELETE at all.
    methods = [(s.method, s.path) for s in proxy.seen if s.path.endswith("/manifests/v1")]
    assert methods == [("HEAD", f"/v2/{repo}/manifests/v1"), ("PUT", f"/v2/{repo}/manifests/v1")]
    assert proxy.count("DELETE") == 0
    assert pushed(token_registry, repo, "v1", user="alice")["_digest"] == digest_of(result.stdout)
    assert github_token not in result.stderr + result.stdout


def test_ghcr_sources_lagging_behind_their_push_are_waited_for(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    """Per-arch builds pushed just now (through GHCR, whose reads lag): without --wait the run
    fails naming them; with --wait it polls them with HEADs until they show, then pushes."""
    proxy = quirk_proxy(open_registry.host, GhcrProfile(lag_reads=3))
    seed(proxy.host, "ghcr/lag")  # pushed through the profile: each tag lags 3 reads
    spec = spec_file(tmp_path, proxy.host, "ghcr/lag:v1", "ghcr/lag")
    failed = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert failed.returncode == 1
    assert "ghcr/lag:amd64" in failed.stderr and "ghcr/lag:arm64" in failed.stderr
    assert proxy.count("PUT", "/manifests/v1") == 0
    proxy.reset()
    waited = run_cli("from-spec", str(spec), "--plain-http", "--wait", "60", cwd=tmp_path)
    assert waited.returncode == 0, waited.stderr
    assert "exists now" in waited.stderr
    # One confirming GET (for the first missing source: it finds it, and the HEAD after it too:
    # a lagging registry, not a lying HEAD), then the polling is HEADs only.
    source_gets = [s for s in proxy.seen if s.method == "GET" and "/manifests/" in s.path]
    assert len(source_gets) == 1
    assert "GET works" not in waited.stderr  # HEADs stay trusted
    assert proxy.count("PUT", "/manifests/v1") == 1
    assert pushed(open_registry, "ghcr/lag", "v1")["_digest"] == digest_of(waited.stdout)


# -- 4. Quay ---------------------------------------------------------------------------------------


def test_quay_accept_lists_oci_and_docker_v2(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "quay/src", oci=True)
    proxy = quirk_proxy(open_registry.host, QuayProfile())
    # No platforms in the spec: the sources are read (GET), so a schema 1 answer would show.
    spec = spec_file(tmp_path, proxy.host, "quay/app:v1", "quay/src", platforms=False)
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert proxy.count(quirk="quay: schema 1") == 0
    reads = [s for s in proxy.seen if s.method in ("GET", "HEAD") and "/manifests/" in s.path]
    assert reads and all("oci.image.manifest" in s.accept for s in reads)
    assert all("distribution.manifest.v2" in s.accept for s in reads)
    assert pushed(open_registry, "quay/app", "v1")["mediaType"] == OCI_INDEX


def test_old_quay_refusing_lists_is_one_clear_line(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "quay/old")
    proxy = quirk_proxy(open_registry.host, QuayProfile(reject_lists=True))
    spec = spec_file(tmp_path, proxy.host, "quay/old:v1", "quay/old")
    line = one_clear_line(run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path))
    assert "MANIFEST_INVALID" in line.upper() and "not supported" in line
    assert "does not accept manifest lists" in line


def test_quay_refusing_index_annotations_names_the_annotations(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "quay/ann")
    proxy = quirk_proxy(open_registry.host, QuayProfile(reject_index_annotations=True))
    spec = spec_file(
        tmp_path,
        proxy.host,
        "quay/ann:v1",
        "quay/ann",
        annotations={"org.opencontainers.image.source": "https://example.com/x"},
    )
    result = run_cli("from-spec", str(spec), "--type", "oci", "--plain-http", cwd=tmp_path)
    line = one_clear_line(result)
    assert "annotations" in line and "'annotations' was unexpected" in line
    assert "push without the list's annotations" in line
    # Without the annotations the same registry takes the index.
    spec = spec_file(tmp_path, proxy.host, "quay/ann:v1", "quay/ann")
    result = run_cli("from-spec", str(spec), "--type", "oci", "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# -- 5. ACR ----------------------------------------------------------------------------------------


def test_acr_identity_token_and_narrow_accept(
    token_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    ts = token_registry.token_server
    repo = "alice/acr"
    seed(token_registry, repo, user="alice", oci=True)
    # What `az acr login` / `docker login` store: a refresh token from an offline token request.
    answer = httpx.get(
        ts.realm,
        params={"service": ts.service, "offline_token": "true", "client_id": "docker"},
        auth=("alice", token_registry.users["alice"]),
    ).json()
    refresh_token = answer["refresh_token"]
    proxy = quirk_proxy(token_registry.host, AcrProfile())
    cfg = docker_config(
        tmp_path,
        {
            "auths": {
                proxy.host: {
                    "username": "00000000-0000-0000-0000-000000000000",
                    "identitytoken": refresh_token,
                }
            }
        },
    )
    spec = spec_file(tmp_path, proxy.host, f"{repo}:v1", repo, platforms=False)
    ts.reset()
    result = run_cli("--docker-cfg", str(cfg), "from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [token_request] = ts.requests
    assert token_request.method == "POST"
    assert token_request.form["grant_type"] == ["refresh_token"]
    assert proxy.count(quirk="acr: narrow accept") == 0
    assert pushed(token_registry, repo, "v1", user="alice")["mediaType"] == OCI_INDEX
    assert refresh_token not in result.stderr + result.stdout


# -- 6. Harbor -------------------------------------------------------------------------------------


@pytest.mark.parametrize("list_type", ["docker", "oci"])
def test_harbor_1x_refusing_lists_is_one_clear_line(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path, list_type: str
) -> None:
    seed(open_registry, f"harbor/v1{list_type}")
    proxy = quirk_proxy(open_registry.host, HarborProfile(v1=True))
    spec = spec_file(tmp_path, proxy.host, f"harbor/v1{list_type}:v1", f"harbor/v1{list_type}")
    result = run_cli(
        "from-spec", str(spec), "--type", list_type, "--retries", "1", "--plain-http", cwd=tmp_path
    )
    line = one_clear_line(result)
    assert "does not accept manifest lists" in line
    if list_type == "docker":
        assert "Manifest.list is not supported" in line


def test_harbor_401_without_challenge_gets_a_fresh_token(
    token_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    repo = "alice/harbor"
    seed(token_registry, repo, user="alice")
    proxy = quirk_proxy(token_registry.host, HarborProfile(bare_401=1))
    spec = spec_file(tmp_path, proxy.host, f"{repo}:v1", repo)
    token_registry.token_server.reset()
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        "--plain-http",
        stdin=token_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert proxy.count(quirk="harbor: 401 without challenge") == 1
    assert token_registry.token_server.count == 2
    assert pushed(token_registry, repo, "v1", user="alice")["_digest"] == digest_of(result.stdout)


def test_harbor_401_without_challenge_twice_is_one_clear_line(
    token_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    repo = "alice/harbor2"
    seed(token_registry, repo, user="alice")
    proxy = quirk_proxy(token_registry.host, HarborProfile(bare_401=100))
    spec = spec_file(tmp_path, proxy.host, f"{repo}:v1", repo)
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        "--plain-http",
        stdin=token_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    # Every request refused at once: each concurrent refusal is a line; all name the cause.
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = error_lines(result)
    assert lines and all("unauthorized" in ln and "alice" in ln for ln in lines)
    assert proxy.count(quirk="harbor: 401 without challenge") == 2 * len(lines)


# -- 7. Nexus / Artifactory -----------------------------------------------------------------------


def test_nexus_unsettled_sources_are_retried_strict_types_met(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "nexus/src")
    proxy = quirk_proxy(open_registry.host, NexusProfile(unsettled_puts=2))
    spec = spec_file(tmp_path, proxy.host, "nexus/app:v1", "nexus/src")
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [s.status for s in proxy.select("PUT", "/manifests/v1")] == [400, 404, 201]
    assert proxy.count(quirk="nexus: strict media type") == 0
    assert "not settled yet" in result.stderr
    assert pushed(open_registry, "nexus/app", "v1")["mediaType"] == DOCKER_MANIFEST_LIST


def test_nexus_never_settling_is_bounded(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "nexus/never")
    proxy = quirk_proxy(open_registry.host, NexusProfile(unsettled_puts=1000))
    spec = spec_file(tmp_path, proxy.host, "nexus/never:v1", "nexus/never")
    result = run_cli("from-spec", str(spec), "--retries", "3", "--plain-http", cwd=tmp_path)
    one_clear_line(result)
    assert proxy.count("PUT", "/manifests/v1") == 3


# -- 8. GitLab -------------------------------------------------------------------------------------


def test_gitlab_content_length_and_nested_groups(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    source = "group/sub/project/src"
    seed(open_registry, source)
    proxy = quirk_proxy(open_registry.host, GitLabProfile())
    spec = spec_file(tmp_path, proxy.host, "group/sub/project/image:v1", source)
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    puts = proxy.select("PUT", "/manifests/")
    assert puts and all(p.had_content_length for p in puts)
    assert proxy.count(quirk="gitlab: length required") == 0
    assert len(pushed(open_registry, "group/sub/project/image", "v1")["manifests"]) == 2


# -- 9. Docker Hub ---------------------------------------------------------------------------------


def test_docker_hub_hap429_is_retried_after_its_retry_after(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "hub/src")
    # The documented answer carries Retry-After: 60; 1 here keeps the suite fast (the 60 is
    # checked in-process below).
    proxy = quirk_proxy(open_registry.host, DockerHubProfile(hap429=1, retry_after="1"))
    # Sources in the target's repository, platforms in the spec: nothing to read or copy.
    spec = spec_file(tmp_path, proxy.host, "hub/src:v1", "hub/src")
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert proxy.count(quirk="dockerhub: HAP429") == 1
    assert "HTTP 429; retry 1 of 4 in 1.0 s" in result.stderr
    # The push reads no manifest (a GET: a pull); its HEADs are free.
    assert proxy.count("GET", "/manifests/") == 0
    assert proxy.profile.pulls == 0
    assert pushed(open_registry, "hub/src", "v1")["_digest"] == digest_of(result.stdout)


def test_docker_hub_hap429_waits_its_60_s(
    open_registry: Any, quirk_proxy: Any, monkeypatch: Any
) -> None:
    seed(open_registry, "hub/sixty")
    proxy = quirk_proxy(open_registry.host, DockerHubProfile(hap429=1, retry_after="60"))
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("pushmanifest.registry.connection.asyncio.sleep", fake_sleep)
    spec = pushmanifest.load_spec_text(
        f"image: {proxy.host}/hub/sixty:v1\nmanifests:\n"
        f"  - image: {proxy.host}/hub/sixty:amd64\n"
        "    platform: {os: linux, architecture: amd64}\n"
    )
    options = PushOptions(client=ClientOptions(plain_http=True))
    [result] = pushmanifest.push(spec, options)
    assert 60.0 in waits
    assert pushed(open_registry, "hub/sixty", "v1")["_digest"] == result.digest


def test_docker_hub_pull_quota_spent_only_where_a_read_is_needed(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "hub/quota")
    proxy = quirk_proxy(open_registry.host, DockerHubProfile())
    spec = spec_file(tmp_path, proxy.host, "hub/quota:v1", "hub/quota", platforms=False)
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Without platforms in the spec each source's manifest is read once: 2 pulls, and the
    # HEADs (2 sources + the target tag) cost none.
    assert proxy.count("GET", "/manifests/") == 2 == proxy.profile.pulls
    assert proxy.count("HEAD", "/manifests/") == 3
    # Sources in another repository are copied: their manifests are read (pulls) to know
    # their blobs; each once.
    proxy.reset()
    proxy.profile.pulls = 0
    spec = spec_file(tmp_path, proxy.host, "hub/other:v1", "hub/quota")
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert proxy.count("GET", "/manifests/") == 2 == proxy.profile.pulls


# -- 10. Registries refusing HEAD on manifests ---------------------------------------------------


@pytest.mark.parametrize("status", [405, 404])
def test_head_refused_falls_back_to_get_once_with_a_notice(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path, status: int
) -> None:
    repo = f"nohead/src{status}"
    seed(open_registry, repo)
    proxy = quirk_proxy(open_registry.host, HeadRefusingProfile(status=status))
    spec = spec_file(tmp_path, proxy.host, f"nohead/app{status}:v1", repo)
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    notices = [ln for ln in result.stderr.splitlines() if "HEAD" in ln and "pull" in ln]
    assert len(notices) == 1, result.stderr
    heads = proxy.count("HEAD", "/manifests/")
    # Once learnt, no more HEADs: at most the first wave's went out, and for a 404 one more to
    # tell a lying HEAD from a lagging registry.
    assert heads <= (4 if status == 404 else 3)
    assert pushed(open_registry, f"nohead/app{status}", "v1")["_digest"] == digest_of(result.stdout)


def test_head_404_for_a_truly_missing_source_is_still_missing(
    open_registry: Any, quirk_proxy: Any, tmp_path: Path
) -> None:
    seed(open_registry, "nohead/some")
    proxy = quirk_proxy(open_registry.host, Profile())
    spec = spec_file(tmp_path, proxy.host, "nohead/some:v1", "nohead/some")
    text = spec.read_text().replace("nohead/some:arm64", "nohead/some:gone")
    spec.write_text(text.replace("nohead/some:amd64", "nohead/some:gone2"))
    result = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
    assert result.returncode == 1
    assert "nohead/some:gone" in result.stderr
    assert "nohead/some:gone2" in result.stderr
    assert "HEAD" not in result.stderr
    # Two sources missing, one GET to confirm: the registry's HEADs are trusted after it.
    assert proxy.count("GET", "/manifests/") == 1
