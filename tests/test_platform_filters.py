"""Platform filters of list sources and removal from a list (issue 13, point 3): ``platforms:``
on a spec entry, ``--platform`` for every list source, ``--append --remove PLATFORM``; each
keeps or drops an image's attestation manifests with it.

Against a real docker-registry; lists read back with the tests' independent client, requests
counted by the test proxy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec, PushOptions
from pushmanifest.errors import InputError, InvalidArgumentError, RegistryError
from pushmanifest.platform import Platform
from support.cli import run_cli
from support.images import SeedClient, SeededImage, read_manifest, seed_image
from support.proxy import HttpProxy

pytestmark = pytest.mark.registry

FAST = ClientOptions(plain_http=True, backoff=0.01)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ATTESTATION = "attestation-manifest"


def seed_buildx_index(
    server: Any, repository: str, tag: str, platforms: list[tuple[str, str]]
) -> dict[str, tuple[SeededImage, SeededImage]]:
    """An OCI index as buildx writes it: an image per (architecture, variant), then an
    attestation manifest (unknown/unknown) per image. Returns {platform: (image, attestation)}."""
    seeded: dict[str, tuple[SeededImage, SeededImage]] = {}
    images, notes = [], []
    for architecture, variant in platforms:
        name = f"linux/{architecture}" + (f"/{variant}" if variant else "")
        suffix = architecture + variant
        image = seed_image(
            server, repository, f"{tag}-{suffix}", architecture=architecture, variant=variant,
            oci=True,
        )  # fmt: skip
        note = seed_image(
            server, repository, f"{tag}-att-{suffix}", os="unknown", architecture="unknown",
            oci=True,
        )  # fmt: skip
        seeded[name] = (image, note)
        platform = {"architecture": architecture, "os": "linux"}
        if variant:
            platform["variant"] = variant
        images.append(
            {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size,
             "platform": platform}
        )  # fmt: skip
        notes.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": note.digest,
                "size": note.size,
                "annotations": {
                    "vnd.docker.reference.digest": image.digest,
                    "vnd.docker.reference.type": ATTESTATION,
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": images + notes}
    with SeedClient(server) as client:
        client.put_manifest(repository, tag, json.dumps(index).encode(), OCI_INDEX)
    return seeded


THREE = [("amd64", ""), ("arm64", ""), ("arm", "v7")]


def entries_of(server: Any, repository: str, tag: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(read_manifest(server, repository, tag)[0])[
        "manifests"
    ]
    return entries


def digests(entries: list[dict[str, Any]]) -> list[str]:
    return [e["digest"] for e in entries]


# -- filters ------------------------------------------------------------------------------------


def test_spec_platforms_keep_the_named_platforms_with_their_attestations(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    seeded = seed_buildx_index(open_registry, "flt/spec", "build", THREE)
    spec = tmp_path / "s.yaml"
    with HttpProxy(host) as proxy:
        spec.write_text(
            f"image: {proxy.host}/flt/spec:out\n"
            "manifests:\n"
            f"  - image: {proxy.host}/flt/spec:build\n"
            "    platforms: [linux/amd64, linux/arm]\n"  # linux/arm: any variant
        )
        result = run_cli("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        # The filter costs nothing: the one GET of the list a list source always costs.
        assert proxy.count("GET", "/manifests/") == 1
    amd, arm = seeded["linux/amd64"], seeded["linux/arm/v7"]
    assert digests(entries_of(open_registry, "flt/spec", "out")) == [
        amd[0].digest,
        arm[0].digest,
        amd[1].digest,
        arm[1].digest,
    ]


def test_cli_platform_keeps_only_those_platforms_from_every_source(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    first = seed_buildx_index(open_registry, "flt/cli", "one", [("amd64", ""), ("arm64", "")])
    second = seed_buildx_index(open_registry, "flt/cli", "two", [("s390x", ""), ("ppc64le", "")])
    seed_image(open_registry, "flt/cli", "riscv", architecture="riscv64", oci=True)
    seed_image(open_registry, "flt/cli", "mips", architecture="mips64le", oci=True)
    spec = tmp_path / "s.yaml"
    with HttpProxy(host) as proxy:
        spec.write_text(
            f"image: {proxy.host}/flt/cli:out\n"
            "manifests:\n"
            f"  - image: {proxy.host}/flt/cli:one\n"
            f"  - image: {proxy.host}/flt/cli:two\n"
            f"  - image: {proxy.host}/flt/cli:riscv\n"  # platform from its config: left out
            f"  - image: {proxy.host}/flt/cli:mips\n"  # platform given: left out unread
            "    platform: {os: linux, architecture: mips64le}\n"
        )
        result = run_cli(
            "from-spec", str(spec), "--platform", "linux/arm64", "--platform", "linux/s390x",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"--platform: {proxy.host}/flt/cli:mips (linux/mips64le) left out" in result.stderr
        assert f"--platform: {proxy.host}/flt/cli:riscv (linux/riscv64) left out" in result.stderr
        assert proxy.count("HEAD", "/manifests/mips") == 0
    assert digests(entries_of(open_registry, "flt/cli", "out")) == [
        first["linux/arm64"][0].digest,
        second["linux/s390x"][0].digest,
        first["linux/arm64"][1].digest,
        second["linux/s390x"][1].digest,
    ]


def test_cli_platform_that_keeps_no_image_names_every_source(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    seed_buildx_index(open_registry, "flt/nothing", "one", [("amd64", ""), ("arm64", "")])
    seed_image(open_registry, "flt/nothing", "riscv", architecture="riscv64", oci=True)
    spec = tmp_path / "s.yaml"
    with HttpProxy(host) as proxy:
        spec.write_text(
            f"image: {proxy.host}/flt/nothing:out\n"
            "manifests:\n"
            f"  - image: {proxy.host}/flt/nothing:one\n"
            f"  - image: {proxy.host}/flt/nothing:riscv\n"
        )
        result = run_cli("from-spec", str(spec), "--platform", "linux/s390x", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: --platform linux/s390x: no image of {proxy.host}/flt/nothing:out's sources "
            f"is of these platforms ({proxy.host}/flt/nothing:one: linux/amd64, linux/arm64; "
            f"{proxy.host}/flt/nothing:riscv: linux/riscv64)"
        )
        assert proxy.count("PUT") == 0


def test_cli_platform_narrows_from_args_before_any_request(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    arm = seed_image(open_registry, "flt/args", "arm64", architecture="arm64")
    with HttpProxy(host) as proxy:
        common = [
            "from-args", "--platforms", "linux/amd64,linux/arm64",
            "--template", f"{proxy.host}/flt/args:ARCH", "--target", f"{proxy.host}/flt/args:1",
        ]  # fmt: skip
        none = run_cli(*common, "--platform", "linux/s390x", cwd=tmp_path)
        assert none.returncode == 2
        assert none.stderr.strip() == (
            f"error: {proxy.host}/flt/args:1: --platform linux/s390x keeps none of the entries "
            f"of {proxy.host}/flt/args:1 (they are: linux/amd64, linux/arm64)"
        )
        assert proxy.count() == 0
        # linux/amd64 does not exist: left out, it is not even asked for.
        result = run_cli(*common, "--platform", "linux/arm64", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert proxy.count("HEAD", "/manifests/amd64") == 0
    assert digests(entries_of(open_registry, "flt/args", "1")) == [arm.digest]


def test_narrowed_specs_keep_positions_with_their_entries() -> None:
    from pushmanifest.spec import load_spec_text

    [spec] = load_spec_text(
        "image: r.example/a:1\n"
        "manifests:\n"
        "  - image: r.example/a:x\n"
        "    platform: {os: linux, architecture: amd64}\n"
        "  - image: r.example/a:list\n"
        "    platforms: [linux/arm64]\n",
        "s.yaml",
    )
    narrowed = spec.only_manifests([1])
    assert [e.image.tag for e in narrowed.manifests] == ["list"]
    assert narrowed.where("manifests", 0, "platforms") == "s.yaml:6:5"
    assert spec.where("manifests", 1, "platforms") == "s.yaml:6:5"


def test_filter_that_matches_nothing_names_the_source_and_its_platforms(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    seed_buildx_index(open_registry, "flt/none", "build", THREE)
    spec = tmp_path / "s.yaml"
    with HttpProxy(host) as proxy:
        spec.write_text(
            f"image: {proxy.host}/flt/none:out\n"
            "manifests:\n"
            f"  - image: {proxy.host}/flt/none:build\n"
            "    platforms: [linux/s390x]\n"
        )
        result = run_cli("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {proxy.host}/flt/none:build has none of the platforms linux/s390x "
            "(it has: linux/amd64, linux/arm64, linux/arm/v7)"
        )
        assert proxy.count("PUT") == 0


def test_filters_that_cannot_meet_are_an_input_error_before_any_request(
    tmp_path: Path, open_registry: Any
) -> None:
    with HttpProxy(open_registry.host) as proxy:
        spec = tmp_path / "s.yaml"
        spec.write_text(
            f"image: {proxy.host}/flt/static:out\n"
            "manifests:\n"
            f"  - image: {proxy.host}/flt/static:build\n"
            "    platforms: [linux/amd64, linux/arm/v7]\n"
        )
        result = run_cli("from-spec", str(spec), "--platform", "linux/arm/v6", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"error: {spec}:4:5: manifests[0] ({proxy.host}/flt/static:build) keeps "
            "linux/amd64, linux/arm/v7 and --platform keeps linux/arm/v6: no platform would "
            "be left"
        )
        # A variant not given meets any: linux/arm and linux/arm/v7 may meet.
        ok = run_cli("from-spec", str(spec), "--platform", "linux/arm", "--dry-run", cwd=tmp_path)
        assert "no platform would be left" not in ok.stderr
        assert proxy.count("PUT") == 0
    assert proxy.count() > 0  # the second run did go on to the registry


def test_platforms_on_a_single_image_is_an_error(open_registry: Any) -> None:
    host = open_registry.host
    seed_image(open_registry, "flt/single", "amd64", architecture="amd64", oci=True)
    spec = ManifestListSpec(
        image=f"{host}/flt/single:out",
        manifests=[{"image": f"{host}/flt/single:amd64", "platforms": ["linux/amd64"]}],
    )
    with pytest.raises(RegistryError, match="is a single image, not a list"):
        pushmanifest.push(spec, client=FAST)


def test_library_filter_is_typed(open_registry: Any) -> None:
    host = open_registry.host
    seeded = seed_buildx_index(open_registry, "flt/lib", "build", THREE)
    spec = ManifestListSpec(
        image=f"{host}/flt/lib:out", manifests=[{"image": f"{host}/flt/lib:build"}]
    )
    [result] = pushmanifest.push(
        spec, PushOptions(client=FAST, platforms=(Platform("linux", "arm64"),))
    )
    arm = seeded["linux/arm64"]
    assert [e.descriptor.digest for e in result.entries] == [arm[0].digest, arm[1].digest]
    with pytest.raises(InvalidArgumentError, match="platforms"):
        PushOptions(platforms=("linux/arm64",))  # type: ignore[arg-type]


# -- removal ------------------------------------------------------------------------------------


def test_append_remove_drops_platforms_with_their_attestations(
    tmp_path: Path, open_registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    host = open_registry.host
    seeded = seed_buildx_index(open_registry, "rm/app", "1", THREE)
    riscv = seed_image(open_registry, "rm/app", "riscv64", architecture="riscv64", oci=True)
    with HttpProxy(host) as proxy:
        result = run_cli(
            "from-args", "--platforms", "linux/riscv64", "--template",
            f"{proxy.host}/rm/app:ARCH", "--target", f"{proxy.host}/rm/app:1",
            "--append", "--remove", "linux/arm64,linux/arm/v7", "--remove", "linux/s390x",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "--remove linux/s390x: " in result.stderr and "holds no such entry" in result.stderr
        # Removal costs nothing more than --append does: one GET of the list the tag holds.
        assert proxy.count("GET", "/manifests/") == 1
    amd = seeded["linux/amd64"]
    assert digests(entries_of(open_registry, "rm/app", "1")) == [
        amd[0].digest,
        riscv.digest,
        amd[1].digest,
    ]


def test_remove_needs_append_and_must_not_remove_what_the_run_pushes(
    tmp_path: Path, open_registry: Any
) -> None:
    with HttpProxy(open_registry.host) as proxy:
        common = [
            "from-args", "--platforms", "linux/amd64,linux/arm64", "--template",
            f"{proxy.host}/rm/bad:ARCH", "--target", f"{proxy.host}/rm/bad:1",
        ]  # fmt: skip
        alone = run_cli(*common, "--remove", "linux/s390x", cwd=tmp_path)
        assert alone.returncode == 2
        assert "--remove drops entries from the list a tag holds: use it with --append" in (
            alone.stderr
        )
        both = run_cli(*common, "--append", "--remove", "linux/arm64", cwd=tmp_path)
        assert both.returncode == 2
        assert (
            f"{proxy.host}/rm/bad:1: --remove linux/arm64, yet manifests[1] "
            f"({proxy.host}/rm/bad:arm64) pushes linux/arm64"
        ) in both.stderr
        bad = run_cli(*common, "--append", "--remove", "linux/nope", cwd=tmp_path)
        assert bad.returncode == 2 and "--remove:" in bad.stderr
        assert proxy.count() == 0


def test_remove_of_a_platform_read_from_a_config_is_found_before_writing(
    open_registry: Any,
) -> None:
    """A source without a platform in the spec: known only once resolved, still before any
    write (exit 2)."""
    host = open_registry.host
    seed_buildx_index(open_registry, "rm/late", "1", [("amd64", ""), ("arm64", "")])
    seed_image(open_registry, "rm/late", "new-arm64", architecture="arm64", oci=True)
    spec = ManifestListSpec(
        image=f"{host}/rm/late:1", manifests=[{"image": f"{host}/rm/late:new-arm64"}]
    )
    before = read_manifest(open_registry, "rm/late", "1")[2]
    options = PushOptions(client=FAST, append=True, remove_platforms=(Platform("linux", "arm64"),))
    with pytest.raises(InputError, match="--remove linux/arm64, yet"):
        pushmanifest.push(spec, options)
    assert read_manifest(open_registry, "rm/late", "1")[2] == before


def test_remove_from_a_tag_that_holds_nothing_is_a_notice(
    open_registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    host = open_registry.host
    image = seed_image(open_registry, "rm/empty", "amd64", architecture="amd64", oci=True)
    spec = ManifestListSpec(
        image=f"{host}/rm/empty:1",
        manifests=[{"image": f"{host}/rm/empty:amd64", "platform": {"os": "linux",
                                                                    "architecture": "amd64"}}],
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="pushmanifest")
    options = PushOptions(client=FAST, append=True, remove_platforms=(Platform("linux", "386"),))
    [result] = pushmanifest.push(spec, options)
    assert [e.descriptor.digest for e in result.entries] == [image.digest]
    assert f"--remove: {host}/rm/empty:1 holds no list: nothing to remove" in caplog.text


def test_remove_alone_drops_platforms_and_never_the_last(
    tmp_path: Path, open_registry: Any
) -> None:
    """from-args --append --remove without --platforms: a run that only removes."""
    host = open_registry.host
    seeded = seed_buildx_index(open_registry, "rm/alone", "1", THREE)
    with HttpProxy(host) as proxy:
        target = ["from-args", "--target", f"{proxy.host}/rm/alone:1", "--append"]
        result = run_cli(*target, "--remove", "linux/arm", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        # The tag's HEAD, the list's GET, the PUT, and the HEAD of --append's check after it.
        assert proxy.count("GET", "/manifests/") == 1
        assert proxy.count("PUT") == 1
        assert proxy.count("HEAD", "/manifests/1") == 3
        proxy.reset()
        last = run_cli(*target, "--remove", "linux/amd64,linux/arm64", cwd=tmp_path)
        assert last.returncode == 2
        assert last.stderr.strip().splitlines()[-1] == (
            f"error: --remove: {proxy.host}/rm/alone:1 would be left without any entry (a list "
            "needs one): delete the tag instead, or keep a platform"
        )
        nothing = run_cli(
            "from-args", "--target", f"{proxy.host}/rm/alone:none", "--append",
            "--remove", "linux/amd64", cwd=tmp_path,
        )  # fmt: skip
        assert nothing.returncode == 1
        assert nothing.stderr.strip() == (
            f"error: --remove: {proxy.host}/rm/alone:none holds no list to remove from"
        )
        without_append = run_cli(
            "from-args", "--target", f"{proxy.host}/rm/alone:1", "--remove", "linux/amd64",
            cwd=tmp_path,
        )  # fmt: skip
        assert without_append.returncode == 2 and "use it with --append" in without_append.stderr
        assert proxy.count("PUT") == 0
    amd, arm64 = seeded["linux/amd64"], seeded["linux/arm64"]
    assert digests(entries_of(open_registry, "rm/alone", "1")) == [
        amd[0].digest,
        arm64[0].digest,
        amd[1].digest,
        arm64[1].digest,
    ]


def test_from_args_without_platforms_says_what_it_needs(tmp_path: Path) -> None:
    result = run_cli("from-args", "--target", "r.invalid/a:1", "--append", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: from-args needs --platforms and --template (to only remove platforms from the "
        "list a tag holds: --target IMAGE --append --remove PLATFORM)"
    )


def test_library_removal_spec(open_registry: Any) -> None:
    from pushmanifest.fromargs import removal_spec

    host = open_registry.host
    seed_buildx_index(open_registry, "rm/lib", "1", [("amd64", ""), ("arm64", "")])
    spec = removal_spec(f"{host}/rm/lib:1")
    with pytest.raises(InputError, match="without entries only removes platforms"):
        pushmanifest.push(spec, client=FAST)
    options = PushOptions(client=FAST, append=True, remove_platforms=(Platform("linux", "arm64"),))
    [result] = pushmanifest.push(spec, options)
    assert [e.platform for e in result.entries] == [
        Platform("linux", "amd64"),
        Platform("unknown", "unknown"),
    ]
