"""OCI 1.1 fields of an index (issue 13, point 2): artifactType and subject (spec keys, CLI
options), entry annotations from the command line, and the error where a field needs an OCI
index, found before any request.

Against a real docker-registry (distribution 2.8, which stores an index with these fields as
given; it has no referrers API); lists are read back with the tests' independent client, requests
counted by the test proxy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec
from pushmanifest.errors import InputError, SpecError
from pushmanifest.manifest import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    build_manifest_list,
)
from pushmanifest.platform import Platform
from pushmanifest.spec import load_spec_text
from support.cli import run_cli
from support.images import read_manifest, seed_image
from support.proxy import HttpProxy, WaveGate
from support.registry import in_ci

FAST = ClientOptions(plain_http=True, backoff=0.01)
ARTIFACT = "application/vnd.example.bundle.v1+json"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_S = "sha256:" + "5" * 64


# -- serialization (no registry) ----------------------------------------------------------------


def test_index_fields_are_in_go_struct_order() -> None:
    """specs-go/v1.Index: schemaVersion, mediaType, artifactType, manifests, subject,
    annotations; the subject a descriptor of mediaType, digest, size."""
    built = build_manifest_list(
        [Descriptor(OCI_MANIFEST, DIGEST_A, 10, AMD64)],
        list_type="oci",
        annotations={"k": "v"},
        artifact_type=ARTIFACT,
        subject=Descriptor(OCI_MANIFEST, DIGEST_S, 7, AMD64, {"dropped": "yes"}),
    )
    assert built.data.decode() == (
        "{\n"
        '  "schemaVersion": 2,\n'
        f'  "mediaType": "{OCI_INDEX}",\n'
        f'  "artifactType": "{ARTIFACT}",\n'
        '  "manifests": [\n'
        "    {\n"
        f'      "mediaType": "{OCI_MANIFEST}",\n'
        f'      "digest": "{DIGEST_A}",\n'
        '      "size": 10,\n'
        '      "platform": {\n'
        '        "architecture": "amd64",\n'
        '        "os": "linux"\n'
        "      }\n"
        "    }\n"
        "  ],\n"
        '  "subject": {\n'
        f'    "mediaType": "{OCI_MANIFEST}",\n'
        f'    "digest": "{DIGEST_S}",\n'
        '    "size": 7\n'
        "  },\n"
        '  "annotations": {\n'
        '    "k": "v"\n'
        "  }\n"
        "}"
    )
    assert built.artifact_type == ARTIFACT and built.subject is not None


def test_without_the_new_fields_the_bytes_do_not_change() -> None:
    entries = [Descriptor(OCI_MANIFEST, DIGEST_A, 10, AMD64)]
    plain = build_manifest_list(entries, list_type="oci")
    empty = build_manifest_list(entries, list_type="oci", artifact_type="", subject=None)
    assert plain.data == empty.data
    assert b"artifactType" not in plain.data and b"subject" not in plain.data


@pytest.mark.parametrize("field", ["artifact_type", "subject"])
def test_a_docker_list_cannot_carry_them(field: str) -> None:
    value: Any = ARTIFACT if field == "artifact_type" else Descriptor(OCI_MANIFEST, DIGEST_S, 7)
    with pytest.raises(InputError, match="use --type oci"):
        build_manifest_list(
            [Descriptor(DOCKER_MANIFEST, DIGEST_A, 10, AMD64)], list_type="docker", **{field: value}
        )


# -- the spec -----------------------------------------------------------------------------------


def spec_text(extra: str) -> str:
    return (
        "image: r.example/app:1\n"
        f"{extra}"
        "manifests:\n"
        "  - image: r.example/app:amd64\n"
        "    platform: {os: linux, architecture: amd64}\n"
    )


def problems(text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "s.yaml")
    return str(info.value)


def test_spec_keys_load() -> None:
    [spec] = load_spec_text(
        spec_text(f"type: oci\nartifactType: {ARTIFACT}\nsubject: r.example/app@{DIGEST_S}\n"),
        "s.yaml",
    )
    assert spec.list_type == "oci"
    assert spec.artifact_type == ARTIFACT
    assert spec.subject is not None and spec.subject.digest == DIGEST_S
    assert spec.where("artifactType") == "s.yaml:3:1"


def test_spec_type_docker_with_oci_fields_is_a_positioned_error() -> None:
    assert problems(spec_text(f"type: docker\nartifactType: {ARTIFACT}\n")) == (
        "s.yaml:3:15: artifactType: artifactType needs an OCI image index: a Docker manifest "
        "list (type: docker) cannot carry it; use type: oci"
    )


def test_spec_bad_values_are_positioned() -> None:
    text = problems(spec_text("type: helm\nartifactType: not-a-type\nsubject: 'a b'\n"))
    lines = text.splitlines()
    assert lines[0].startswith("s.yaml:2:7: type:")
    assert lines[1].startswith("s.yaml:3:15: artifactType: 'not-a-type' is not a media type")
    assert lines[2].startswith("s.yaml:4:10: subject:")


def test_oci_fields_need_type_oci_before_any_request(tmp_path: Path, open_registry: Any) -> None:
    """No type anywhere (auto): an error at the key's position, exit 2, and no request."""
    with HttpProxy(open_registry.host) as proxy:
        spec = tmp_path / "s.yaml"
        spec.write_text(
            f"image: {proxy.host}/oci/err:1\n"
            f"subject: {proxy.host}/oci/err:base\n"
            "manifests:\n"
            f"  - image: {proxy.host}/oci/err:amd64\n"
        )
        result = run_cli("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"{spec}:2:1: subject needs an OCI image index" in result.stderr
        assert "use --type oci (or type: oci in the spec)" in result.stderr
        docker = run_cli(
            "from-spec",
            str(spec),
            "--type",
            "docker",
            "--entry-annotation",
            "linux/amd64:k=v",
            cwd=tmp_path,
        )
        assert docker.returncode == 2 and "--type docker" in docker.stderr
        args = run_cli(
            "from-args",
            "--platforms",
            "linux/amd64",
            "--template",
            f"{proxy.host}/oci/err:ARCH",
            "--target",
            f"{proxy.host}/oci/err:2",
            "--artifact-type",
            ARTIFACT,
            cwd=tmp_path,
        )
        assert args.returncode == 2 and "artifactType needs an OCI image index" in args.stderr
        assert proxy.count() == 0


def test_docker_type_refuses_entry_annotations_of_the_spec_before_requests(
    tmp_path: Path, open_registry: Any
) -> None:
    with HttpProxy(open_registry.host) as proxy:
        spec = tmp_path / "s.yaml"
        spec.write_text(
            f"image: {proxy.host}/oci/ann:1\n"
            "manifests:\n"
            f"  - image: {proxy.host}/oci/ann:amd64\n"
            "    annotations: {k: v}\n"
        )
        result = run_cli("from-spec", str(spec), "--type", "docker", cwd=tmp_path)
        assert result.returncode == 2
        assert f"{spec}:4:5: manifests[0].annotations needs an OCI image index" in result.stderr
        assert proxy.count() == 0


# -- against the registry -----------------------------------------------------------------------


def test_from_args_pushes_artifact_type_and_subject(tmp_path: Path, open_registry: Any) -> None:
    host = open_registry.host
    amd = seed_image(open_registry, "oci/args", "amd64", architecture="amd64", oci=True)
    arm = seed_image(open_registry, "oci/args", "arm64", architecture="arm64", oci=True)
    base = seed_image(open_registry, "oci/args", "base", architecture="amd64", oci=True)
    with HttpProxy(host) as proxy:
        result = run_cli(
            "from-args", "--platforms", "linux/amd64,linux/arm64",
            "--template", f"{proxy.host}/oci/args:ARCH", "--target", f"{proxy.host}/oci/args:1",
            "--type", "oci", "--artifact-type", ARTIFACT,
            "--subject", f"{proxy.host}/oci/args:base",
            "--entry-annotation", "linux/arm64:org.example.note=arm,org.example.x=1",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        # The subject costs one HEAD, in the wave of the sources' HEADs; never a GET.
        assert proxy.count("HEAD", "/manifests/base") == 1
        assert proxy.count("GET", "/manifests/") == 0
    body, content_type, digest = read_manifest(open_registry, "oci/args", "1")
    assert result.stdout == f"Digest: {digest} {len(body)}\n"
    assert content_type == OCI_INDEX
    data = json.loads(body)
    assert list(data) == ["schemaVersion", "mediaType", "artifactType", "manifests", "subject"]
    assert data["artifactType"] == ARTIFACT
    assert data["subject"] == {"mediaType": OCI_MANIFEST, "digest": base.digest, "size": base.size}
    assert [e["digest"] for e in data["manifests"]] == [amd.digest, arm.digest]
    assert "annotations" not in data["manifests"][0]
    assert data["manifests"][1]["annotations"] == {"org.example.note": "arm", "org.example.x": "1"}


def test_from_spec_keys_and_cli_overrides(tmp_path: Path, open_registry: Any) -> None:
    host = open_registry.host
    seed_image(open_registry, "oci/spec", "amd64", architecture="amd64", oci=True)
    first = seed_image(open_registry, "oci/spec", "first", architecture="amd64", oci=True)
    other = seed_image(open_registry, "oci/spec", "other", architecture="amd64")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"image: {host}/oci/spec:1\n"
        "type: oci\n"
        f"artifactType: {ARTIFACT}\n"
        f"subject: {host}/oci/spec@{first.digest}\n"
        "manifests:\n"
        f"  - image: {host}/oci/spec:amd64\n"
        "    annotations: {from: spec, both: spec}\n"
    )
    result = run_cli("from-spec", "--metadata-file", "m.json", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(read_manifest(open_registry, "oci/spec", "1")[0])
    assert data["subject"]["digest"] == first.digest
    # The metadata file says what the index holds (for a step that signs or checks it).
    [listed] = json.loads((tmp_path / "m.json").read_text())["lists"]
    assert (listed["artifactType"], listed["subject"]) == (ARTIFACT, data["subject"])
    assert data["manifests"][0]["annotations"] == {"both": "spec", "from": "spec"}
    # The command line wins over the spec: another subject (a Docker image), another type.
    result = run_cli(
        "from-spec", str(spec), "--subject", f"{host}/oci/spec:other",
        "--artifact-type", "application/vnd.example.other+json",
        "--entry-annotation", "linux/amd64:both=cli", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(read_manifest(open_registry, "oci/spec", "1")[0])
    assert data["artifactType"] == "application/vnd.example.other+json"
    assert data["subject"] == {"mediaType": DOCKER_MANIFEST, "digest": other.digest,
                               "size": other.size}  # fmt: skip
    assert data["manifests"][0]["annotations"] == {"both": "cli", "from": "spec"}


def test_missing_subject_fails_before_anything_is_written(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    seed_image(open_registry, "oci/nosub", "amd64", architecture="amd64", oci=True)
    spec = tmp_path / "s.yaml"
    with HttpProxy(host) as proxy:
        spec.write_text(
            f"image: {proxy.host}/oci/nosub:1\n"
            "type: oci\n"
            f"subject: {proxy.host}/oci/nosub:gone\n"
            "manifests:\n"
            f"  - image: {proxy.host}/oci/nosub:amd64\n"
        )
        result = run_cli("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 1
        assert (
            f"{spec}:3:1: the subject {proxy.host}/oci/nosub:gone does not exist" in result.stderr
        )
        assert proxy.count("HEAD", "/manifests/gone") == 1
        assert proxy.count("PUT") == proxy.count("POST") == 0


def test_entry_annotation_of_a_platform_the_list_lacks_is_an_input_error(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    seed_image(open_registry, "oci/noplat", "amd64", architecture="amd64", oci=True)
    with HttpProxy(host) as proxy:
        result = run_cli(
            "from-args", "--platforms", "linux/amd64",
            "--template", f"{proxy.host}/oci/noplat:ARCH",
            "--target", f"{proxy.host}/oci/noplat:1", "--type", "oci",
            "--entry-annotation", "linux/s390x:k=v", cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2
        assert "--entry-annotation linux/s390x" in result.stderr
        assert "(it gets: linux/amd64)" in result.stderr
        assert proxy.count("PUT") == 0


@pytest.mark.parametrize(
    "value",
    ["linux/amd64", "linux/amd64:", "k=v", "linux/amd64:novalue", "linux/nope:k=v"],
)
def test_malformed_entry_annotation_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = run_cli(
        "from-args", "--platforms", "linux/amd64", "--template", "r.invalid/a:ARCH",
        "--target", "r.invalid/a:1", "--type", "oci", "--entry-annotation", value, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--entry-annotation" in result.stderr


def test_append_keeps_the_fields_of_the_list_it_merges_into(open_registry: Any) -> None:
    host = open_registry.host
    seed_image(open_registry, "oci/append", "amd64", architecture="amd64", oci=True)
    seed_image(open_registry, "oci/append", "arm64", architecture="arm64", oci=True)
    base = seed_image(open_registry, "oci/append", "base", architecture="amd64", oci=True)
    first = ManifestListSpec(
        image=f"{host}/oci/append:1",
        type="oci",
        artifactType=ARTIFACT,
        subject=f"{host}/oci/append:base",
        manifests=[{"image": f"{host}/oci/append:amd64", "platform": {"os": "linux",
                                                                      "architecture": "amd64"}}],
    )  # fmt: skip
    pushmanifest.push(first, client=FAST)
    second = ManifestListSpec(
        image=f"{host}/oci/append:1",
        manifests=[{"image": f"{host}/oci/append:arm64", "platform": {"os": "linux",
                                                                      "architecture": "arm64"}}],
    )  # fmt: skip
    [result] = pushmanifest.push(second, client=FAST, append=True)
    data = json.loads(read_manifest(open_registry, "oci/append", "1")[0])
    assert data["mediaType"] == OCI_INDEX == result.media_type
    assert data["artifactType"] == ARTIFACT
    assert data["subject"]["digest"] == base.digest
    assert len(data["manifests"]) == 2


def test_library_spec_fields_by_name_and_by_key() -> None:
    by_key = ManifestListSpec(
        image="r.example/a:1", type="oci", artifactType=ARTIFACT, subject="r.example/a:base",
        manifests=[{"image": "r.example/a:x"}],
    )  # fmt: skip
    by_name = ManifestListSpec(
        image="r.example/a:1", list_type="oci", artifact_type=ARTIFACT,
        subject="r.example/a:base", manifests=[{"image": "r.example/a:x"}],
    )  # fmt: skip
    assert by_key == by_name
    with pytest.raises(SpecError, match="is not a media type"):
        ManifestListSpec(
            image="r.example/a:1", artifactType="x", manifests=[{"image": "r.example/a:x"}]
        )


def test_the_subject_head_adds_no_wave(tmp_path: Path, open_registry: Any) -> None:
    """Depth counted in waves by the gated proxy, not by the clock: the subject's HEAD goes out
    with the sources' HEADs, so a list with a subject takes as many waves as one without."""
    host = open_registry.host
    for arch in ("amd64", "arm64"):
        seed_image(open_registry, "oci/waves", arch, architecture=arch, oci=True)
    seed_image(open_registry, "oci/waves", "base", architecture="amd64", oci=True)
    measured = []
    for tag, extra in (("plain", []), ("with-subject", ["--subject", "SUBJECT"])):
        gate = WaveGate()
        with HttpProxy(host, gate=gate) as proxy:
            args = [a.replace("SUBJECT", f"{proxy.host}/oci/waves:base") for a in extra]
            result = run_cli(
                "from-args", "--platforms", "linux/amd64,linux/arm64",
                "--template", f"{proxy.host}/oci/waves:ARCH", "--target",
                f"{proxy.host}/oci/waves:{tag}", "--type", "oci", *args,
                cwd=tmp_path, on_start=gate.watch,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert gate.errors == []
            measured.append((proxy.depth(), proxy.count("HEAD"), proxy.count("GET", "/manifests/")))
    (plain_depth, plain_heads, _), (depth, heads, gets) = measured
    assert depth == plain_depth
    assert heads == plain_heads + 1
    assert gets == 0


def test_a_subject_in_another_repository_is_warned_about(
    tmp_path: Path, open_registry: Any
) -> None:
    host = open_registry.host
    seed_image(open_registry, "oci/here", "amd64", architecture="amd64", oci=True)
    seed_image(open_registry, "oci/elsewhere", "base", architecture="amd64", oci=True)
    result = run_cli(
        "from-args", "--platforms", "linux/amd64", "--template", f"{host}/oci/here:ARCH",
        "--target", f"{host}/oci/here:1", "--type", "oci",
        "--subject", f"{host}/oci/elsewhere:base", "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"the subject {host}/oci/elsewhere:base is in another repository" in result.stderr
    assert json.loads(result.stdout.split("\nDigest:")[0])["subject"]["size"] > 0


def test_skopeo_reads_and_copies_the_index_as_written(tmp_path: Path, open_registry: Any) -> None:
    """An independent client (skopeo, containers/image) reads our index and copies it whole,
    artifactType and subject included, to the same bytes."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        if in_ci():
            pytest.fail("skopeo is not installed (.ci/run installs it)")
        pytest.skip("skopeo is not installed")
    host = open_registry.host
    for arch in ("amd64", "arm64"):
        seed_image(open_registry, "oci/skopeo", arch, architecture=arch, oci=True)
    seed_image(open_registry, "oci/skopeo", "base", architecture="amd64", oci=True)
    result = run_cli(
        "from-args", "--platforms", "linux/amd64,linux/arm64",
        "--template", f"{host}/oci/skopeo:ARCH", "--target", f"{host}/oci/skopeo:1",
        "--type", "oci", "--artifact-type", ARTIFACT, "--subject", f"{host}/oci/skopeo:base",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ours, _, digest = read_manifest(open_registry, "oci/skopeo", "1")
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{host}/oci/skopeo:1"],
        capture_output=True,
        timeout=120,
    )
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == ours
    copied = subprocess.run(
        [skopeo, "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{host}/oci/skopeo:1", f"docker://{host}/oci/skopeo-copy:1"],
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert read_manifest(open_registry, "oci/skopeo-copy", "1")[2] == digest
