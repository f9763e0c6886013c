"""Sources beyond the target's repository, lists as sources, platforms from configs, --append.

All against real docker-registry processes; every pushed list is read back and each entry is
checked to resolve by digest in the target repository with the exact size and media type.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

import pushmanifest
import support.cli as support_cli
from pushmanifest import ClientOptions, Credentials, ManifestListSpec, PushOptions
from support.images import RegistryHTTPError, SeedClient, read_manifest, seed_image
from support.proxy import HttpProxy

pytestmark = pytest.mark.registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
FAST = ClientOptions(plain_http=True, backoff=0.01)


def cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return support_cli.run_cli(*args, stdin=stdin, cwd=cwd)


def check_list(
    server: Any, repository: str, tag: str, user: Optional[str] = None
) -> dict[str, Any]:
    """Read the list back; every entry must resolve by digest in the target repository."""
    password = server.users[user] if user else None
    body, _, _ = read_manifest(server, repository, tag, username=user, password=password)
    data = json.loads(body)
    for entry in data["manifests"]:
        child, media_type, digest = read_manifest(
            server, repository, entry["digest"], username=user, password=password
        )
        assert digest == entry["digest"]
        assert len(child) == entry["size"]
        assert media_type == entry["mediaType"]
        manifest = json.loads(child)
        with SeedClient(server, username=user, password=password) as client:
            for blob in [manifest["config"], *manifest["layers"]]:
                response = client.request(
                    "HEAD",
                    f"/v2/{repository}/blobs/{blob['digest']}",
                    scope=f"repository:{repository}:pull",
                )
                assert response.status_code == 200, (repository, blob["digest"])
    return data


def spec_for(target: str, sources: list[tuple[str, Optional[dict[str, str]]]]) -> ManifestListSpec:
    return ManifestListSpec(
        image=target,
        manifests=[
            {"image": image, **({"platform": platform} if platform else {})}
            for image, platform in sources
        ],
    )


def test_sources_in_other_repositories_are_mounted(open_registry: Any) -> None:
    a = seed_image(open_registry, "team/build-amd64", "1.0", architecture="amd64")
    b = seed_image(open_registry, "team/build-arm64", "1.0", architecture="arm64", variant="v8")
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = spec_for(
            f"{proxy.host}/team/app:1.0",
            [
                (f"{proxy.host}/team/build-amd64:1.0", {"os": "linux", "architecture": "amd64"}),
                (
                    f"{proxy.host}/team/build-arm64:1.0",
                    {"os": "linux", "architecture": "arm64", "variant": "v8"},
                ),
            ],
        )
        [result] = pushmanifest.push(spec, client=FAST)
        # Two blobs each, mounted: no blob bytes moved through us.
        assert proxy.count("POST", "mount=") == 4
        assert proxy.count("GET", "/blobs/") == 0
        assert proxy.count("PATCH") == 0
    data = check_list(open_registry, "team/app", "1.0")
    assert {e["digest"] for e in data["manifests"]} == {a.digest, b.digest}
    assert result.digest == read_manifest(open_registry, "team/app", "1.0")[2]


def test_refused_mount_is_streamed_through(
    open_registry: Any, monkeypatch: Any, caplog: Any
) -> None:
    monkeypatch.setattr("pushmanifest.pusher.PROGRESS_MIN_BYTES", 1)
    caplog.set_level("INFO", logger="pushmanifest")
    seed_image(open_registry, "team/refuse-src", "1.0", architecture="amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        # A registry that refuses mounts answers 202 with a fresh upload session instead.
        proxy.rewrite_path = lambda method, path: (
            path.split("?")[0] if method == "POST" and "mount=" in path else path
        )
        spec = spec_for(
            f"{proxy.host}/team/refuse-dst:latest",
            [
                (f"{proxy.host}/team/refuse-src:1.0", {"os": "linux", "architecture": "amd64"}),
            ],
        )
        pushmanifest.push(spec, client=FAST)
        assert proxy.count("GET", "/blobs/") == 2  # config and layer streamed
        assert proxy.count("PUT", "/blobs/uploads/") == 2
    check_list(open_registry, "team/refuse-dst", "latest")
    assert "refused to mount" in caplog.text
    assert "copied 127.0.0.1:" in caplog.text  # progress of large copies goes to stderr


def test_deadline_stops_the_run(open_registry: Any) -> None:
    seed_image(open_registry, "team/slow", "1.0", architecture="amd64")
    with HttpProxy(upstream=open_registry.host, delay=0.5) as proxy:
        spec = spec_for(
            f"{proxy.host}/team/slow:latest",
            [
                (f"{proxy.host}/team/slow:1.0", {"os": "linux", "architecture": "amd64"}),
            ],
        )
        with pytest.raises(pushmanifest.NetworkError, match=r"deadline of 0\.2 s"):
            pushmanifest.push(spec, client=FAST, deadline=0.2)


def test_sources_on_another_registry_are_streamed(open_registry: Any, token_registry: Any) -> None:
    seed_image(open_registry, "upstream/tool", "amd64", architecture="amd64")
    seed_image(open_registry, "upstream/tool", "arm", architecture="arm", variant="v7", oci=True)
    spec = spec_for(
        f"{token_registry.host}/alice/tool:2.0",
        [
            (f"{open_registry.host}/upstream/tool:amd64", None),
            (f"{open_registry.host}/upstream/tool:arm", None),
        ],
    )
    options = PushOptions(
        credentials=Credentials(username="alice", password=token_registry.users["alice"]),
        client=FAST,
        list_type="oci",
    )
    [result] = pushmanifest.push(spec, options)
    data = check_list(token_registry, "alice/tool", "2.0", user="alice")
    assert data["mediaType"] == OCI_INDEX
    assert [str(e.platform) for e in result.entries] == ["linux/amd64", "linux/arm/v7"]


def test_copy_failure_leaves_no_upload_session_and_no_tag(open_registry: Any) -> None:
    seed_image(open_registry, "team/broken-src", "1.0", architecture="amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        proxy.rewrite_path = lambda method, path: (
            path.split("?")[0] if method == "POST" and "mount=" in path else path
        )
        # Every blob GET fails: the copy cannot complete.
        proxy.set_faults(1.0, kinds=("503",), match=lambda m, p: m == "GET" and "/blobs/" in p)
        spec = spec_for(
            f"{proxy.host}/team/broken-dst:latest",
            [
                (f"{proxy.host}/team/broken-src:1.0", {"os": "linux", "architecture": "amd64"}),
            ],
        )
        with pytest.raises(pushmanifest.RegistryError):
            pushmanifest.push(spec, client=ClientOptions(plain_http=True, retries=1))
        opened = proxy.count("POST", "/blobs/uploads/")
        assert opened >= 1
        assert proxy.count("DELETE", "/blobs/uploads/") == opened
        assert proxy.count("PUT", "/manifests/") == 0
    with pytest.raises(RegistryHTTPError) as excinfo:  # no tag was written
        read_manifest(open_registry, "team/broken-dst", "latest")
    assert (excinfo.value.status, excinfo.value.codes) == (404, ["MANIFEST_UNKNOWN"])


def seed_buildkit_index(server: Any, repository: str, tag: str) -> tuple[list[Any], bytes]:
    """An OCI index as buildx writes it: images, then attestation manifests (unknown/unknown)."""
    images = [
        seed_image(server, repository, f"{tag}-amd64", architecture="amd64", oci=True),
        seed_image(server, repository, f"{tag}-arm64", architecture="arm64", oci=True),
    ]
    entries = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": i.digest,
            "size": i.size,
            "platform": {"architecture": i.platform["architecture"], "os": "linux"},
        }
        for i in images
    ]
    for image in images:
        attestation = seed_image(
            server,
            repository,
            f"{tag}-att-{image.platform['architecture']}",
            os="unknown",
            architecture="unknown",
            oci=True,
        )
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": attestation.digest,
                "size": attestation.size,
                "annotations": {
                    "vnd.docker.reference.digest": image.digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    with SeedClient(server) as client:
        client.put_manifest(repository, tag, index, OCI_INDEX)
    return images, index


def test_buildkit_index_as_source_is_inlined_with_attestations(open_registry: Any) -> None:
    images, _ = seed_buildkit_index(open_registry, "team/bk", "build")
    riscv = seed_image(open_registry, "team/bk", "riscv", architecture="riscv64", oci=True)
    spec = spec_for(
        f"{open_registry.host}/team/bk:release",
        [
            (f"{open_registry.host}/team/bk:build", None),
            (f"{open_registry.host}/team/bk:riscv", None),
        ],
    )
    [result] = pushmanifest.push(spec, client=FAST)
    data = check_list(open_registry, "team/bk", "release")
    kinds = [e.get("annotations", {}).get("vnd.docker.reference.type") for e in data["manifests"]]
    # Images first, attestations after them.
    assert kinds == [None, None, None, "attestation-manifest", "attestation-manifest"]
    assert [e["digest"] for e in data["manifests"][:3]] == [
        images[0].digest,
        images[1].digest,
        riscv.digest,
    ]
    assert data["mediaType"] == OCI_INDEX
    assert len(result.entries) == 5


def test_platform_selects_one_entry_of_a_list_source(open_registry: Any) -> None:
    images, _ = seed_buildkit_index(open_registry, "team/bk-select", "build")
    spec = spec_for(
        f"{open_registry.host}/team/bk-select:arm-only",
        [
            (
                f"{open_registry.host}/team/bk-select:build",
                {"os": "linux", "architecture": "arm64"},
            ),
        ],
    )
    pushmanifest.push(spec, client=FAST)
    data = check_list(open_registry, "team/bk-select", "arm-only")
    assert data["manifests"][0]["digest"] == images[1].digest
    assert len(data["manifests"]) == 2  # the image and its attestation


def test_list_entry_without_platform_is_an_error(open_registry: Any) -> None:
    image = seed_image(open_registry, "team/noplat", "x", architecture="amd64", oci=True)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size}],
        }
    ).encode()
    with SeedClient(open_registry) as client:
        client.put_manifest("team/noplat", "list", index, OCI_INDEX)
    spec = spec_for(
        f"{open_registry.host}/team/noplat:out", [(f"{open_registry.host}/team/noplat:list", None)]
    )
    with pytest.raises(pushmanifest.RegistryError, match="has no platform"):
        pushmanifest.push(spec, client=FAST)


def test_duplicate_platforms_across_sources_name_both(open_registry: Any) -> None:
    seed_buildkit_index(open_registry, "team/dup", "build")
    seed_image(open_registry, "team/dup", "amd64", architecture="amd64", oci=True)
    spec = spec_for(
        f"{open_registry.host}/team/dup:out",
        [
            (f"{open_registry.host}/team/dup:build", None),
            (f"{open_registry.host}/team/dup:amd64", None),
        ],
    )
    with pytest.raises(pushmanifest.InputError, match=r"team/dup:build and .*team/dup:amd64"):
        pushmanifest.push(spec, client=FAST)


def test_windows_source_takes_os_version_from_its_config(
    open_registry: Any, tmp_path: Path
) -> None:
    seed_image(
        open_registry,
        "team/win",
        "ltsc2019",
        os="windows",
        architecture="amd64",
        os_version="10.0.17763.1",
    )
    seed_image(open_registry, "team/win", "linux", architecture="amd64")
    spec = tmp_path / "win.yaml"
    spec.write_text(
        f"image: {open_registry.host}/team/win:latest\nmanifests:\n"
        f"  - image: {open_registry.host}/team/win:ltsc2019\n"
        f"  - image: {open_registry.host}/team/win:linux\n"
    )
    result = cli("from-spec", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = check_list(open_registry, "team/win", "latest")
    assert data["manifests"][0]["platform"] == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1",
    }


def test_qemu_built_image_check_platform(open_registry: Any, caplog: Any) -> None:
    # Built under QEMU: the config says amd64, the image is really arm/v7.
    seed_image(open_registry, "team/qemu", "arm32v7", architecture="amd64")
    spec = spec_for(
        f"{open_registry.host}/team/qemu:latest",
        [
            (
                f"{open_registry.host}/team/qemu:arm32v7",
                {"os": "linux", "architecture": "arm", "variant": "v7"},
            ),
        ],
    )
    with caplog.at_level("WARNING", logger="pushmanifest"):
        [checked] = pushmanifest.push(spec, client=FAST, dry_run=True, check_platform=True)
    assert "the spec says linux/arm/v7, its config says linux/amd64" in caplog.text
    assert str(checked.entries[0].platform) == "linux/arm/v7"  # the spec is the fix
    with pytest.raises(pushmanifest.InputError, match="--strict-platform"):
        pushmanifest.push(spec, client=FAST, check_platform=True, strict_platform=True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="pushmanifest"):
        pushmanifest.push(spec, client=FAST)  # default: the spec is trusted, no GET
    assert "config says" not in caplog.text


def test_append_replaces_same_platform_and_keeps_others(open_registry: Any) -> None:
    host = open_registry.host
    amd = seed_image(open_registry, "team/append", "amd64", architecture="amd64")
    arm = seed_image(open_registry, "team/append", "arm64", architecture="arm64")
    amd2 = seed_image(open_registry, "team/append", "amd64-new", architecture="amd64")
    riscv = seed_image(open_registry, "team/append", "riscv64", architecture="riscv64")
    linux = {"os": "linux"}
    pushmanifest.push(
        spec_for(
            f"{host}/team/append:latest",
            [
                (f"{host}/team/append:amd64", {**linux, "architecture": "amd64"}),
                (f"{host}/team/append:arm64", {**linux, "architecture": "arm64"}),
            ],
        ),
        client=FAST,
    )
    [result] = pushmanifest.push(
        spec_for(
            f"{host}/team/append:latest",
            [
                (f"{host}/team/append:amd64-new", {**linux, "architecture": "amd64"}),
                (f"{host}/team/append:riscv64", {**linux, "architecture": "riscv64"}),
            ],
        ),
        client=FAST,
        append=True,
    )
    data = check_list(open_registry, "team/append", "latest")
    # amd64 replaced in place (issue 9: no churn), riscv64 added at the end.
    assert [e["digest"] for e in data["manifests"]] == [amd2.digest, arm.digest, riscv.digest]
    assert amd.digest not in {e["digest"] for e in data["manifests"]}
    assert len(result.entries) == 3


def test_partial_platform_is_completed_from_the_config(open_registry: Any, tmp_path: Path) -> None:
    seed_image(open_registry, "team/partial", "arm", architecture="arm", variant="v7")
    spec = tmp_path / "partial.yaml"
    spec.write_text(
        f"image: {open_registry.host}/team/partial:latest\nmanifests:\n"
        f"  - image: {open_registry.host}/team/partial:arm\n"
        "    platform: {architecture: arm}\n"
    )
    result = cli("from-spec", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = check_list(open_registry, "team/partial", "latest")
    assert data["manifests"][0]["platform"] == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
    }
