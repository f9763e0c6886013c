"""Referrers come along (issue 13, point 1): signatures, attestations and SBOMs of images copied
from another repository or registry are copied into the target repository with them.

Against real ``docker-registry`` processes (distribution 2.8: no referrers API, so the referrers
tag ``sha256-<hex>`` is the real path there); the artifacts are written by the tests' own client
(``support.artifacts``: cosign's tag layout, OCI 1.1 artifacts with a ``subject``), and the
result is read back by an independent client, skopeo. The referrers API is covered by
``support.referrers_api``, a registry front that adds it (for a source, and for a target).
Request counts and depth (in waves, ``support.proxy.WaveGate``) are exact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

import pushmanifest
from pushmanifest import ClientOptions, Credentials, ManifestListSpec, PushOptions
from support.artifacts import (
    DSSE,
    SIMPLESIGNING,
    Artifact,
    attach_cosign,
    attach_oci_artifact,
    read_referrers_tag,
    referrers_tag,
)
from support.cli import run_cli
from support.images import SeedClient, SeededImage, seed_image
from support.proxy import HttpProxy, WaveGate
from support.referrers_api import ReferrersApiRegistry
from support.registry import in_ci

pytestmark = pytest.mark.registry

FAST = ClientOptions(plain_http=True, backoff=0.01)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ARTIFACT = "application/vnd.example.sbom.v1+json"


# -- an independent reader: skopeo --------------------------------------------------------------


@pytest.fixture(scope="module")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        if in_ci():
            pytest.fail("skopeo is not installed (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip("skopeo is not installed")
    return path


def skopeo_raw(skopeo: str, host: str, repository: str, ref: str, creds: str = "") -> bytes:
    """The manifest's exact bytes as skopeo reads them (tag or digest)."""
    where = f"{host}/{repository}{'@' if ref.startswith('sha256:') else ':'}{ref}"
    auth = ["--creds", creds] if creds else ["--no-creds"]
    done = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", *auth, f"docker://{where}"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def skopeo_tags(skopeo: str, host: str, repository: str, creds: str = "") -> set[str]:
    auth = ["--creds", creds] if creds else ["--no-creds"]
    done = subprocess.run(
        [skopeo, "list-tags", "--tls-verify=false", *auth, f"docker://{host}/{repository}"],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout)["Tags"])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- seeding --------------------------------------------------------------------------------------


@dataclass
class Signed:
    """An image and what refers to it."""

    image: SeededImage
    signature: Artifact  # cosign .sig
    sbom: Artifact  # OCI 1.1 artifact with a subject, in the referrers tag
    attestation: Optional[Artifact] = None  # cosign .att

    @property
    def subject(self) -> tuple[str, int, str]:
        return (self.image.digest, self.image.size, self.image.media_type)

    @property
    def artifacts(self) -> list[Artifact]:
        extra = [self.attestation] if self.attestation is not None else []
        return [self.signature, self.sbom, *extra]


def seed_signed(
    server: Any,
    repository: str,
    tag: str,
    *,
    architecture: str = "amd64",
    variant: str = "",
    attest: bool = False,
    user: Optional[str] = None,
    referrers_tag_too: bool = True,
    client_host: Optional[str] = None,
) -> Signed:
    """An OCI image with a cosign signature (and attestation) and an OCI 1.1 artifact."""
    password = server.users[user] if user else None
    image = seed_image(
        server,
        repository,
        tag,
        architecture=architecture,
        variant=variant,
        oci=True,
        username=user,
        password=password,
    )
    target: Any = server if client_host is None else client_host
    with SeedClient(target, username=user, password=password) as client:
        signature = attach_cosign(client, repository, image.digest, ".sig")
        attestation = attach_cosign(client, repository, image.digest, ".att") if attest else None
        sbom = attach_oci_artifact(
            client,
            repository,
            (image.digest, image.size, image.media_type),
            ARTIFACT,
            update_referrers_tag=referrers_tag_too,
        )
    return Signed(image, signature, sbom, attestation)


def spec(target: str, sources: list[tuple[str, str]]) -> ManifestListSpec:
    return ManifestListSpec(
        image=target,
        manifests=[
            {"image": image, "platform": {"os": "linux", "architecture": arch}}
            for image, arch in sources
        ],
    )


def assert_copied(skopeo: str, host: str, repository: str, signed: Signed, creds: str = "") -> None:
    """skopeo reads every artifact by digest in ``repository``, byte for byte, and cosign's tags
    hold the same digests there."""
    for artifact in signed.artifacts:
        data = skopeo_raw(skopeo, host, repository, artifact.digest, creds)
        assert data == artifact.manifest
        if artifact.tag:
            assert digest_of(skopeo_raw(skopeo, host, repository, artifact.tag, creds)) == (
                artifact.digest
            )


# -- across registries and repositories --------------------------------------------------------


def test_referrers_come_along_to_another_registry(
    open_registry: Any, token_registry: Any, skopeo: str
) -> None:
    signed = seed_signed(open_registry, "supply/app", "amd64", attest=True)
    plain = seed_image(open_registry, "supply/app", "arm64", architecture="arm64", oci=True)
    options = PushOptions(
        credentials=Credentials(username="alice", password=token_registry.users["alice"]),
        client=FAST,
    )
    [result] = pushmanifest.push(
        spec(
            f"{token_registry.host}/alice/supply:1.0",
            [
                (f"{open_registry.host}/supply/app:amd64", "amd64"),
                (f"{open_registry.host}/supply/app:arm64", "arm64"),
            ],
        ),
        options,
    )
    creds = f"alice:{token_registry.users['alice']}"
    assert_copied(skopeo, token_registry.host, "alice/supply", signed, creds)
    tags = skopeo_tags(skopeo, token_registry.host, "alice/supply", creds)
    hexed = referrers_tag(signed.image.digest)
    assert tags == {"1.0", hexed, f"{hexed}.sig", f"{hexed}.att"}
    # The referrers tag (the target has no API either) lists the OCI artifact, as the source's.
    index = json.loads(skopeo_raw(skopeo, token_registry.host, "alice/supply", hexed, creds))
    assert [e["digest"] for e in index["manifests"]] == [signed.sbom.digest]
    assert index["manifests"][0]["artifactType"] == ARTIFACT
    # The library says what came along, and how each was found.
    found = {(r.digest, r.found, r.tag, r.artifact_type) for r in result.referrers}
    assert found == {
        (signed.sbom.digest, "referrers tag", "", ARTIFACT),
        (signed.signature.digest, "cosign tag", f"{hexed}.sig", SIMPLESIGNING),
        (signed.attestation.digest, "cosign tag", f"{hexed}.att", DSSE),  # type: ignore[union-attr]
    }
    assert {r.subject for r in result.referrers} == {signed.image.digest}
    assert plain.digest not in {r.subject for r in result.referrers}
    # The metadata file (result.metadata()'s list) names each where it now is, for cosign verify.
    name = f"{token_registry.host}/alice/supply"
    listed = {r["digest"]: r for r in result.metadata()["referrers"]}
    assert {d: (r["image"], r["tag"], r["found"]) for d, r in listed.items()} == {
        signed.sbom.digest: (f"{name}@{signed.sbom.digest}", None, "referrers tag"),
        signed.signature.digest: (
            f"{name}@{signed.signature.digest}",
            f"{name}:{hexed}.sig",
            "cosign tag",
        ),
        signed.attestation.digest: (  # type: ignore[union-attr]
            f"{name}@{signed.attestation.digest}",  # type: ignore[union-attr]
            f"{name}:{hexed}.att",
            "cosign tag",
        ),
    }
    assert {r["subject"] for r in listed.values()} == {signed.image.digest}
    assert {r["source"] for r in listed.values()} == {f"{open_registry.host}/supply/app:amd64"}


def test_same_registry_mounts_the_referrers_blobs(open_registry: Any, skopeo: str) -> None:
    signed = seed_signed(open_registry, "supply/mount-src", "amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        pushmanifest.push(
            spec(
                f"{proxy.host}/supply/mount-dst:1",
                [(f"{proxy.host}/supply/mount-src:amd64", "amd64")],
            ),
            client=FAST,
        )
        # image: config + layer; signature: config + layer; artifact: empty config + layer.
        assert proxy.count("POST", "mount=") == 6
        assert proxy.count("GET", "/blobs/") == 0
    assert_copied(skopeo, open_registry.host, "supply/mount-dst", signed)


def test_sources_in_the_target_repository_copy_nothing(open_registry: Any) -> None:
    seed_signed(open_registry, "supply/home", "amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        [result] = pushmanifest.push(
            spec(f"{proxy.host}/supply/home:list", [(f"{proxy.host}/supply/home:amd64", "amd64")]),
            client=FAST,
        )
        assert result.referrers == ()
        assert proxy.count("GET", "/referrers/") == 0
        assert proxy.count("HEAD", "sha256-") == 0


def test_no_referrers_skips_them(open_registry: Any, tmp_path: Path) -> None:
    signed = seed_signed(open_registry, "supply/skip-src", "amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        done = run_cli(
            "from-args",
            "--plain-http",
            "--no-referrers",
            "--json",
            "--platforms",
            "linux/amd64",
            "--template",
            f"{proxy.host}/supply/skip-src:ARCH",
            "--target",
            f"{proxy.host}/supply/skip-dst:1",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["referrers"] == []
        assert proxy.count(None, "/referrers/") == 0
        assert proxy.count(None, "sha256-") == 0
    with SeedClient(open_registry) as client:
        assert client.list_tags("supply/skip-dst") == ["1"]
        assert client.head_manifest("supply/skip-dst", signed.sbom.digest) is None


def test_dry_run_lists_what_would_be_copied(open_registry: Any, tmp_path: Path) -> None:
    signed = seed_signed(open_registry, "supply/dry-src", "amd64")
    target = f"{open_registry.host}/supply/dry-dst:1"
    template = f"{open_registry.host}/supply/dry-src:ARCH"
    common = ["--plain-http", "--dry-run", "--platforms", "linux/amd64"]
    done = run_cli("from-args", *common, "--template", template, "--target", target, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    hexed = referrers_tag(signed.image.digest)
    lines = [line for line in done.stderr.splitlines() if "would copy" in line]
    assert len(lines) == 2, done.stderr
    assert any(
        signed.sbom.digest in line and ARTIFACT in line and "referrers tag" in line
        for line in lines
    )
    assert any(
        signed.signature.digest in line and f"cosign tag {hexed}.sig" in line for line in lines
    )
    as_json = run_cli(
        "from-args", *common, "--json", "--template", template, "--target", target, cwd=tmp_path
    )
    listed = json.loads(as_json.stdout)["referrers"]
    assert {r["digest"] for r in listed} == {signed.sbom.digest, signed.signature.digest}
    assert all(r["subject"] == signed.image.digest for r in listed)
    with SeedClient(open_registry) as client:  # nothing written
        assert client.head_manifest("supply/dry-dst", signed.image.digest) is None
        assert client.head_manifest("supply/dry-dst", signed.sbom.digest) is None


def test_the_targets_referrers_tag_keeps_its_entries(
    open_registry: Any, skopeo: str, caplog: Any
) -> None:
    caplog.set_level("WARNING", logger="pushmanifest")
    signed = seed_signed(open_registry, "supply/merge-src", "amd64")
    # The target already lists a referrer of that image of its own (and a .sig of its own).
    with SeedClient(open_registry) as client:
        own = attach_oci_artifact(client, "supply/merge-dst", signed.subject, "application/x-own")
        other_sig = attach_cosign(client, "supply/merge-dst", signed.image.digest, ".sig")
    [result] = pushmanifest.push(
        spec(
            f"{open_registry.host}/supply/merge-dst:1",
            [(f"{open_registry.host}/supply/merge-src:amd64", "amd64")],
        ),
        client=FAST,
    )
    index = json.loads(
        skopeo_raw(
            skopeo, open_registry.host, "supply/merge-dst", referrers_tag(signed.image.digest)
        )
    )
    assert [e["digest"] for e in index["manifests"]] == [own.digest, signed.sbom.digest]
    # cosign keeps all of an image's signatures in one manifest: the target's is not replaced,
    # and the source's is not copied (nor listed as copied), with a warning.
    held = skopeo_raw(skopeo, open_registry.host, "supply/merge-dst", other_sig.tag)
    assert held == other_sig.manifest
    assert [r.digest for r in result.referrers] == [signed.sbom.digest]
    assert f"{other_sig.tag} already holds other content" in caplog.text
    with SeedClient(open_registry) as client:
        assert client.head_manifest("supply/merge-dst", signed.signature.digest) is None


def test_a_referrer_the_referrers_tag_lists_but_is_gone_is_skipped(
    open_registry: Any, caplog: Any
) -> None:
    caplog.set_level("WARNING", logger="pushmanifest")
    signed = seed_signed(open_registry, "supply/stale-src", "amd64")
    with SeedClient(open_registry) as client:
        gone = attach_oci_artifact(client, "supply/stale-src", signed.subject, "application/x-gone")
        client.delete_manifest("supply/stale-src", gone.digest)  # still listed by the tag
        assert len(read_referrers_tag(client, "supply/stale-src", signed.image.digest) or []) == 2
    [result] = pushmanifest.push(
        spec(
            f"{open_registry.host}/supply/stale-dst:1",
            [(f"{open_registry.host}/supply/stale-src:amd64", "amd64")],
        ),
        client=FAST,
    )
    assert {r.digest for r in result.referrers} == {signed.sbom.digest, signed.signature.digest}
    assert f"{gone.digest}: listed as a referrer" in caplog.text
    with SeedClient(open_registry) as client:
        index = read_referrers_tag(client, "supply/stale-dst", signed.image.digest)
    assert [e["digest"] for e in index or []] == [signed.sbom.digest]


def test_a_second_push_writes_no_referrer_again(open_registry: Any) -> None:
    seed_signed(open_registry, "supply/again-src", "amd64")
    wanted = spec(
        f"{open_registry.host}/supply/again-dst:1",
        [(f"{open_registry.host}/supply/again-src:amd64", "amd64")],
    )
    pushmanifest.push(wanted, client=FAST)
    with HttpProxy(upstream=open_registry.host) as proxy:
        moved = ManifestListSpec(
            image=str(wanted.image).replace(open_registry.host, proxy.host),
            manifests=[
                {
                    "image": str(e.image).replace(open_registry.host, proxy.host),
                    "platform": e.platform,
                }
                for e in wanted.manifests
            ],
        )
        [result] = pushmanifest.push(moved, client=FAST)
        assert len(result.referrers) == 2
        assert proxy.count("PUT") == 0  # manifests, tags, the list: all there already
        assert proxy.count("POST") == 0


def test_a_list_source_brings_each_entrys_referrers(open_registry: Any, skopeo: str) -> None:
    amd = seed_signed(open_registry, "supply/list-src", "amd64")
    arm = seed_signed(open_registry, "supply/list-src", "arm64", architecture="arm64")
    entries = [
        {
            "mediaType": s.image.media_type,
            "digest": s.image.digest,
            "size": s.image.size,
            "platform": s.image.platform,
        }
        for s in (amd, arm)
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    with SeedClient(open_registry) as client:
        listed = client.put_manifest("supply/list-src", "multi", index, OCI_INDEX)
        attach_cosign(client, "supply/list-src", listed, ".sig")  # the index's own: stays
    pushmanifest.push(
        ManifestListSpec(
            image=f"{open_registry.host}/supply/list-dst:1",
            manifests=[{"image": f"{open_registry.host}/supply/list-src:multi"}],
        ),
        client=FAST,
    )
    for signed in (amd, arm):
        assert_copied(skopeo, open_registry.host, "supply/list-dst", signed)
    tags = skopeo_tags(skopeo, open_registry.host, "supply/list-dst")
    assert f"{referrers_tag(listed)}.sig" not in tags
    assert len(tags) == 1 + 2 * 2  # the list; per entry its .sig and its referrers tag


# -- the referrers API ------------------------------------------------------------------------


def test_source_with_the_referrers_api(open_registry: Any, skopeo: str) -> None:
    with ReferrersApiRegistry(open_registry.host) as api:
        # Put through the API front, without the referrers tag: only the API lists it.
        signed = seed_signed(
            open_registry, "supply/api-src", "amd64", referrers_tag_too=False, client_host=api.host
        )
        with SeedClient(open_registry) as client:
            assert read_referrers_tag(client, "supply/api-src", signed.image.digest) is None
        [result] = pushmanifest.push(
            spec(
                f"{open_registry.host}/supply/api-dst:1",
                [(f"{api.host}/supply/api-src:amd64", "amd64")],
            ),
            client=FAST,
        )
        assert api.count("GET", f"/referrers/{signed.image.digest}") == 1
    assert {(r.digest, r.found) for r in result.referrers} == {
        (signed.sbom.digest, "referrers API"),
        (signed.signature.digest, "cosign tag"),
    }
    assert_copied(skopeo, open_registry.host, "supply/api-dst", signed)
    # The target has no API: the referrers tag is written there.
    with SeedClient(open_registry) as client:
        index = read_referrers_tag(client, "supply/api-dst", signed.image.digest)
    assert [e["digest"] for e in index or []] == [signed.sbom.digest]


def test_target_with_the_referrers_api_gets_no_referrers_tag(
    open_registry: Any, skopeo: str
) -> None:
    signed = seed_signed(open_registry, "supply/api2-src", "amd64")
    with ReferrersApiRegistry(open_registry.host) as api:
        pushmanifest.push(
            spec(
                f"{api.host}/supply/api2-dst:1",
                [(f"{open_registry.host}/supply/api2-src:amd64", "amd64")],
            ),
            client=FAST,
        )
        # The target's API lists the artifact (indexed from its PUT, as such a registry does).
        with SeedClient(api.host) as client:
            listed = client.request(
                "GET", f"/v2/supply/api2-dst/referrers/{signed.image.digest}", scope=""
            ).json()["manifests"]
        assert [e["digest"] for e in listed] == [signed.sbom.digest]
        hexed = referrers_tag(signed.image.digest)
        assert [p for m, p in api.requests if m == "PUT" and p.endswith(f"/{hexed}")] == []
    assert_copied(skopeo, open_registry.host, "supply/api2-dst", signed)
    tags = skopeo_tags(skopeo, open_registry.host, "supply/api2-dst")
    assert tags == {"1", f"{referrers_tag(signed.image.digest)}.sig"}


# -- request counts and depth -------------------------------------------------------------------


SOURCES = [("amd64", ""), ("arm64", "v8"), ("ppc64le", ""), ("s390x", "")]


@dataclass
class Counted:
    requests: int
    depth: int
    referrer_requests: int  # the referrers API, the referrers tags, cosign's tags
    manifest_gets: int
    by_kind: dict[str, int]


@pytest.fixture(scope="module")
def four_signed(open_registry: Any) -> list[Signed]:
    """4 sources in another repository, 2 referrers each (a cosign signature, an OCI artifact)."""
    return [
        seed_signed(open_registry, "supply/count-src", arch, architecture=arch, variant=variant)
        for arch, variant in SOURCES
    ]


_runs = iter(range(1000))


def push_counted(server: Any, tmp_path: Path, *args: str, sources: int = 4) -> Counted:
    gate = WaveGate()
    with HttpProxy(upstream=server.host, gate=gate) as proxy:
        target = f"{proxy.host}/supply/count-dst{next(_runs)}:1"
        lines = [f"image: {target}", "manifests:"]
        for arch, variant in SOURCES[:sources]:
            lines += [
                f"  - image: {proxy.host}/supply/count-src:{arch}",
                "    platform:",
                f"      os: linux\n      architecture: {arch}",
            ]
            if variant:
                lines.append(f"      variant: {variant}")
        path = tmp_path / f"spec{next(_runs)}.yaml"
        path.write_text("\n".join(lines) + "\n")
        done = run_cli(
            "from-spec", "--plain-http", *args, str(path), cwd=tmp_path, on_start=gate.watch
        )
        assert done.returncode == 0, done.stderr
        assert proxy.errors == [] and gate.errors == []
        records = proxy.requests
        assert None not in {r.wave for r in records}
        kinds: dict[str, int] = {}
        for r in records:
            key = f"{r.method} {_kind(r.path)}"
            kinds[key] = kinds.get(key, 0) + 1
        waves: dict[int, list[str]] = {}
        for r in records:
            waves.setdefault(r.wave or 0, []).append(f"{r.method} {_kind(r.path)}")
        for wave in sorted(waves):
            print(wave, sorted(waves[wave]))  # shown with -s, and when an assertion fails
        return Counted(
            requests=len(records),
            depth=len({r.wave for r in records}),
            referrer_requests=sum("/referrers/" in r.path or "sha256-" in r.path for r in records),
            manifest_gets=sum(r.method == "GET" and "/manifests/" in r.path for r in records),
            by_kind=kinds,
        )


def _kind(path: str) -> str:
    if "/referrers/" in path:
        return "referrers"
    if "/manifests/sha256-" in path:
        return (
            "cosign tag" if path.rsplit(".", 1)[-1] in ("sig", "att", "sbom") else "referrers tag"
        )
    if "/manifests/" in path:
        return "manifest"
    if "mount=" in path:
        return "mount"
    if "/blobs/" in path:
        return "blob"
    return path


def test_request_counts_4_sources_2_referrers_each(
    open_registry: Any, four_signed: list[Signed], tmp_path: Path
) -> None:
    wide = ("--max-concurrency", "64")  # every wave's requests in flight at once
    without = push_counted(open_registry, tmp_path, "--no-referrers", *wide)
    counted = push_counted(open_registry, tmp_path, *wide)
    print(f"\nwithout referrers: {without}\nwith referrers: {counted}")
    # Without: 4 source HEADs + the target tag's; per source a HEAD in the target, its
    # manifest's GET, 2 mounts, the manifest's PUT; the list's PUT: 26 requests in 6 waves.
    assert (without.requests, without.depth, without.referrer_requests) == (26, 6, 0), without
    # With, reads: per source, wave 1: the referrers API (404 here), the referrers tag's HEAD,
    # cosign's 3 tags' HEADs (20); wave 2: the referrers tag's index and the signature's
    # manifest (GETs), in the target the referrers tag's and .sig's HEADs (16), and the
    # target's API, once (1); wave 3: the artifact's manifest (4): 41. Writes, per referrer: a
    # HEAD in the target, 2 mounts, the manifest's PUT (32), less the 3 mounts of the empty
    # config the 4 OCI artifacts share (mounted once per run: concurrent mounts of one blob raced
    # in the registry's storage); per source the .sig tag's and the referrers tag's PUTs (8): 37.
    assert counted.requests == without.requests + 41 + 37, counted
    # By path (the GETs of indexes and manifests go by digest): 20 + 1 + 8 reads, 8 tags written.
    assert counted.referrer_requests == 4 * 5 + 1 + 4 * 2 + 4 * 2, counted
    assert counted.manifest_gets == 4 + 4 * 3, counted  # the copies', per source 3 more
    # Depth: the 3 waves of reads, whatever the number of sources or referrers; the writes go
    # alongside the entries' copies (the tags when the referrers' manifests are in).
    assert counted.depth == without.depth + 3, counted
    # The same depth for one source as for four.
    one = push_counted(open_registry, tmp_path, *wide, sources=1)
    assert one.depth == counted.depth, one
    # Per run: the target tag's HEAD, the list's PUT, the target's API, the shared empty
    # config's mount; the rest per source.
    assert one.requests - 4 == (counted.requests - 4) // 4, one
