"""Reading OCI image layouts: ``oci:PATH[:TAG]`` parsed as skopeo parses it, every bound of the
reader (sizes, nesting, digests, paths), and the digest checked again while a blob streams.

Layouts here are written by the test itself (the few bytes each case needs); layouts written by a
real tool are in test_oci_layout.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import pytest

from pushmanifest import InputError
from pushmanifest.layout import LayoutError, OciLayout, blob_pieces, read_layout
from pushmanifest.reference import LayoutReference, Reference, parse_source
from pushmanifest.spec import load_spec_text

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


# -- oci:PATH[:TAG] ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "tag"),
    [
        ("oci:/srv/out", "/srv/out", None),
        ("oci:./out:v1", "./out", "v1"),
        ("oci:out:1.0-rc.1", "out", "1.0-rc.1"),
        # skopeo cuts at the first ':' (a path holds none); a ref name may hold ':' and '@'.
        ("oci:out:example.com/app:v1", "out", "example.com/app:v1"),
        ("oci:out:app@v1", "out", "app@v1"),
    ],
)
def test_layout_reference_is_split_as_skopeo_splits_it(
    text: str, path: str, tag: Optional[str]
) -> None:
    ref = LayoutReference.parse(text)
    assert (ref.path, ref.tag) == (path, tag)
    assert str(ref) == text
    assert parse_source(text) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("oci:", "names no directory"),
        ("oci::v1", "names no directory"),
        ("oci:out:", "the tag after ':' is empty"),
        ("oci:out:-v1", "is not a valid image name in a layout"),
        ("oci:out:v1 beta", "is not a valid image name in a layout"),
        ("oci:out:a//b", "is not a valid image name in a layout"),
        ("oci:" + "d" * 5000, "longer than 4096 characters"),
        ("oci:out\n:v1", "holds a control character"),
    ],
)
def test_bad_layout_references_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        LayoutReference.parse(text)


def test_spec_entries_take_layouts_with_variables() -> None:
    [spec] = load_spec_text(
        "image: registry.example.com/app:1\n"
        "manifests:\n"
        "  - image: oci:${OUT}/amd64:v1\n"
        "  - image: registry.example.com/app:arm64\n",
        env={"OUT": "/build"},
    )
    assert spec.manifests[0].image == LayoutReference("/build/amd64", "v1")
    assert isinstance(spec.manifests[1].image, Reference)
    assert spec.model_dump()["manifests"][0]["image"] == "oci:/build/amd64:v1"


def test_spec_reports_a_bad_layout_at_its_position() -> None:
    with pytest.raises(InputError, match=r"<spec>:3:\d+: .*the tag after ':' is empty"):
        load_spec_text("image: r.example.com/a:1\nmanifests:\n  - image: 'oci:out:'\n")


# -- layouts written by hand --------------------------------------------------------------------


def blob(root: Path, data: bytes, algorithm: str = "sha256") -> dict[str, Any]:
    hexdigest = hashlib.new(algorithm, data).hexdigest()
    directory = root / "blobs" / algorithm
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hexdigest).write_bytes(data)
    return {"digest": f"{algorithm}:{hexdigest}", "size": len(data)}


def image(root: Path, arch: str = "amd64", algorithm: str = "sha256") -> dict[str, Any]:
    config = blob(root, json.dumps({"architecture": arch, "os": "linux"}).encode(), algorithm)
    layer = blob(root, f"layer {arch}".encode() * 100, algorithm)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }
    return {"mediaType": OCI_MANIFEST, **blob(root, json.dumps(manifest).encode(), algorithm)}


def index_of(root: Path, children: list[dict[str, Any]]) -> dict[str, Any]:
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    return {"mediaType": OCI_INDEX, **blob(root, data.encode())}


def make_layout(root: Path, entries: list[dict[str, Any]], version: str = "1.0.0") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": version}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return root


def named(descriptor: dict[str, Any], name: str) -> dict[str, Any]:
    return {**descriptor, "annotations": {REF_NAME: name}}


def read(root: Path, tag: Optional[str] = None) -> OciLayout:
    return read_layout(LayoutReference(str(root), tag))


def test_an_index_is_read_whole(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    amd, arm = image(root, "amd64"), image(root, "arm64", "sha512")
    top = index_of(root, [amd, arm])
    layout = read(make_layout(root, [named(top, "v1")]), "v1")
    assert layout.top.digest == top["digest"]
    assert set(layout.manifests) == {top["digest"], amd["digest"], arm["digest"]}
    assert len(layout.blobs) == 4
    manifests, blobs = layout.under(top["digest"])
    assert manifests == [amd["digest"], arm["digest"], top["digest"]]
    assert len(blobs) == 4


def test_the_tag_selects_and_no_tag_needs_a_single_manifest(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    amd, arm = image(root, "amd64"), image(root, "arm64")
    make_layout(root, [named(amd, "amd"), named(arm, "arm")])
    assert read(root, "arm").top.digest == arm["digest"]
    with pytest.raises(LayoutError, match=r"holds 2 manifests: name one, oci:\S+:NAME"):
        read(root)
    with pytest.raises(LayoutError, match=r"no manifest in index.json is named 'x' \(names: amd"):
        read(root, "x")
    make_layout(root, [arm])
    assert read(root).top.digest == arm["digest"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: (r / "oci-layout").unlink(), "has no oci-layout file"),
        (lambda r: (r / "index.json").unlink(), "has no index.json file"),
        (lambda r: (r / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}'), "'2.0.0'"),
        (lambda r: (r / "oci-layout").write_text("[]"), "oci-layout is not a JSON object"),
        (lambda r: (r / "index.json").write_text("{"), "index.json is not valid JSON"),
        (lambda r: (r / "index.json").write_text("{}"), "index.json has no 'manifests' array"),
        (
            lambda r: (r / "index.json").write_bytes(b" " * (4 * 1024 * 1024 + 1)),
            "index.json is larger than 4194304 bytes",
        ),
        (
            lambda r: (r / "index.json").write_text("[" * 100000 + "]" * 100000),
            "index.json is (JSON nested too deeply|not a JSON object)",
        ),
    ],
)
def test_a_malformed_layout_is_named_with_what_is_wrong(
    tmp_path: Path, change: Any, message: str
) -> None:
    root = tmp_path / "l"
    root.mkdir()
    make_layout(root, [image(root)])
    change(root)
    with pytest.raises(LayoutError, match=message) as info:
        read(root)
    assert str(root) in str(info.value)


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "sha256/../x:" + "a" * 64,
    ],
)
def test_digests_are_validated_before_any_path_is_made(tmp_path: Path, digest: str) -> None:
    root = tmp_path / "l"
    root.mkdir()
    make_layout(root, [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 2}])
    with pytest.raises(LayoutError, match="expected sha256:<64 hex> or sha512:<128 hex>"):
        read(root)


def test_indexes_nest_at_most_three_deep(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    inner = image(root)
    for _ in range(2):
        inner = index_of(root, [inner])
    make_layout(root, [inner])
    read(root)  # index.json -> index -> index -> manifest
    make_layout(root, [index_of(root, [inner])])
    with pytest.raises(LayoutError, match="indexes nested more than 3 deep"):
        read(root)


def test_sizes_and_contents_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    amd = image(root)
    make_layout(root, [{**amd, "size": amd["size"] + 1}])
    with pytest.raises(LayoutError, match="bytes on disk, its descriptor says"):
        read(root)
    make_layout(root, [{**amd, "size": 4 * 1024 * 1024 + 1}])
    with pytest.raises(LayoutError, match="more than 4194304"):
        read(root)
    make_layout(root, [amd])
    manifest = json.loads((root / "blobs" / "sha256" / amd["digest"][7:]).read_bytes())
    layer = root / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    layer.write_bytes(layer.read_bytes()[:-1] + b"!")
    with pytest.raises(LayoutError, match="does not match its digest"):
        read(root)
    layer.unlink()
    with pytest.raises(LayoutError, match="is missing"):
        read(root)


def test_no_link_leads_out_of_the_blobs_directory(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    make_layout(root, [image(root)])
    read(root)
    # The whole blobs directory a link to a copy elsewhere: the right bytes, refused.
    elsewhere = tmp_path / "elsewhere"
    (root / "blobs").rename(elsewhere)
    (root / "blobs").symlink_to(elsewhere)
    with pytest.raises(LayoutError, match="a link out of the layout's blobs directory"):
        read(root)
    # A link inside the blobs directory to another blob of it is fine.
    (root / "blobs").unlink()
    elsewhere.rename(root / "blobs")
    directory = root / "blobs" / "sha256"
    first = sorted(directory.iterdir())[0]
    (directory / "same").write_bytes(first.read_bytes())
    first.unlink()
    first.symlink_to(directory / "same")
    read(root)
    # A directory where a blob should be.
    first.unlink()
    first.mkdir()
    with pytest.raises(LayoutError, match=r"is not a regular file|cannot read blob"):
        read(root)


def test_the_digest_is_checked_again_while_a_blob_streams(tmp_path: Path, monkeypatch: Any) -> None:
    import pushmanifest.layout.reading as reading

    monkeypatch.setattr(reading, "READ_PIECE_BYTES", 100)
    root = tmp_path / "l"
    root.mkdir()
    make_layout(root, [image(root)])
    layout = read(root)
    layer = max(layout.blobs, key=lambda d: layout.blobs[d])
    path = root / "blobs" / "sha256" / layer[7:]
    path.write_bytes(path.read_bytes()[:-1] + b"!")  # changed after the read pass

    async def drain() -> int:
        received = 0
        pieces = blob_pieces(layout, layer)
        try:
            async for piece in pieces:
                received += len(piece)
        except LayoutError:
            return received
        raise AssertionError("no error")

    received = asyncio.run(drain())
    # The last piece was held back: a consumer never had the whole (wrong) blob.
    assert received < layout.blobs[layer]
    assert received == (layout.blobs[layer] - 1) // 100 * 100


def test_a_fifo_or_device_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    amd = image(root)
    make_layout(root, [amd])
    path = root / "blobs" / "sha256" / amd["digest"][7:]
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(LayoutError, match="is not a regular file"):
        read(root)


# -- uploads in chunks, against a real registry --------------------------------------------------


async def upload(host: str, layout: OciLayout, digest: str, repository: str) -> None:
    from pushmanifest import ClientOptions, RegistryClient

    async with RegistryClient(host, options=ClientOptions(plain_http=True)) as client:
        location = await client.start_upload(repository)
        await client.upload_blob_in_chunks(
            location,
            digest,
            layout.blobs[digest],
            blob_pieces(layout, digest),
            client.image(repository, digest),
        )


def small_pieces_layout(tmp_path: Path, monkeypatch: Any) -> tuple[Path, Any, str]:
    """A layout whose largest blob (its layer, 1100 bytes) is read in pieces of 64 bytes and
    uploaded in PATCHes of at most 300, the last 100 apart: (its root, it read, the layer)."""
    import pushmanifest.layout.reading as reading
    import pushmanifest.registry.uploads as uploads

    monkeypatch.setattr(reading, "READ_PIECE_BYTES", 64)
    monkeypatch.setattr(uploads, "UPLOAD_CHUNK_BYTES", 300)
    monkeypatch.setattr(uploads, "UPLOAD_TAIL_BYTES", 100)
    root = tmp_path / "l"
    root.mkdir()
    make_layout(root, [image(root)])
    layout = read(root)
    return root, layout, max(layout.blobs, key=lambda d: layout.blobs[d])


@pytest.mark.registry
def test_a_blob_goes_in_ranged_patches(
    open_registry: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from support.images import SeedClient
    from support.proxy import HttpProxy

    root, layout, layer = small_pieces_layout(tmp_path, monkeypatch)
    size = layout.blobs[layer]
    assert size == 1100  # 1000 bytes in PATCHes of at most 300 (4), then the last 100
    with HttpProxy(upstream=open_registry.host) as proxy:
        asyncio.run(upload(proxy.host, layout, layer, "layout/ranged"))
        assert proxy.count("PATCH") == 5
        assert proxy.count("PUT") == 1
    with SeedClient(open_registry) as client:
        response = client.request(
            "GET", f"/v2/layout/ranged/blobs/{layer}", scope="repository:layout/ranged:pull"
        )
    assert response.content == (root / "blobs" / "sha256" / layer[7:]).read_bytes()


@pytest.mark.registry
def test_a_blob_changed_after_the_read_pass_is_never_committed(
    open_registry: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from support.images import SeedClient
    from support.proxy import HttpProxy

    root, layout, layer = small_pieces_layout(tmp_path, monkeypatch)
    path = root / "blobs" / "sha256" / layer[7:]
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with HttpProxy(upstream=open_registry.host) as proxy:
        with pytest.raises(LayoutError, match="does not match its digest"):
            asyncio.run(upload(proxy.host, layout, layer, "layout/changed"))
        # The streamed part went, the tail never did; no commit, and the session deleted.
        assert proxy.count("PATCH") == 4
        assert proxy.count("PUT") == 0
        assert proxy.count("DELETE", "/blobs/uploads/") == 1
    with SeedClient(open_registry) as client:
        response = client.request(
            "HEAD",
            f"/v2/layout/changed/blobs/{layer}",
            scope="repository:layout/changed:pull",
            expect=(200, 404),
        )
    assert response.status_code == 404


def test_reading_stops_when_told(tmp_path: Path) -> None:
    """A cancelled run sets the event: the thread hashing blobs ends at its next piece."""
    import threading

    root = tmp_path / "l"
    root.mkdir()
    make_layout(root, [image(root)])
    stop = threading.Event()
    stop.set()
    with pytest.raises(LayoutError, match="reading stopped"):
        read_layout(LayoutReference(str(root)), stop)


# -- through the library, against a real registry ------------------------------------------------


@pytest.mark.registry
def test_an_index_without_platforms_takes_them_from_the_configs(
    open_registry: Any, tmp_path: Path
) -> None:
    import pushmanifest
    from pushmanifest import ClientOptions, ManifestListSpec, PushOptions

    root = tmp_path / "l"
    root.mkdir()
    top = index_of(root, [image(root, "amd64"), image(root, "s390x")])  # no platforms
    make_layout(root, [named(top, "v1")])
    spec = ManifestListSpec(
        image=f"{open_registry.host}/layout/lib:1",
        manifests=[{"image": pushmanifest.LayoutReference(str(root), "v1")}],
    )
    options = PushOptions(client=ClientOptions(plain_http=True))
    [result] = pushmanifest.push(spec, options)
    assert [str(e.platform) for e in result.entries] == ["linux/amd64", "linux/s390x"]
    assert {str(e.image) for e in result.entries} == {f"oci:{root}:v1"}
    # --append with another layout: the list grows by its image, uploaded like the others.
    other = tmp_path / "other"
    other.mkdir()
    make_layout(other, [image(other, "arm64")])
    spec = ManifestListSpec(
        image=f"{open_registry.host}/layout/lib:1", manifests=[{"image": f"oci:{other}"}]
    )
    [appended] = pushmanifest.push(spec, options, append=True)
    assert [str(e.platform) for e in appended.entries] == [
        "linux/amd64",
        "linux/s390x",
        "linux/arm64",
    ]
    from support.images import read_manifest

    data = json.loads(read_manifest(open_registry, "layout/lib", "1")[0])
    for entry in data["manifests"]:
        read_manifest(open_registry, "layout/lib", entry["digest"])  # each resolves


def test_inspect_refuses_a_layout_rather_than_ask_docker_hub(tmp_path: Path) -> None:
    from support.cli import run_cli

    result = run_cli("inspect", "oci:out:v1", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: inspect reads registries: 'oci:out:v1' is an OCI image layout on disk "
        "(skopeo inspect oci:PATH[:TAG] reads one)"
    )


def test_media_types_left_out_are_taken_from_the_documents_shape(tmp_path: Path) -> None:
    root = tmp_path / "l"
    root.mkdir()
    config = blob(root, b'{"architecture": "amd64", "os": "linux"}')
    layer = blob(root, b"layer")
    manifest = blob(
        root, json.dumps({"schemaVersion": 2, "config": config, "layers": [layer]}).encode()
    )
    top = blob(root, json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode())
    make_layout(root, [top])
    layout = read(root)
    assert layout.manifests[top["digest"]][0] == OCI_INDEX
    assert layout.manifests[manifest["digest"]][0] == OCI_MANIFEST
    assert set(layout.blobs) == {config["digest"], layer["digest"]}


@pytest.mark.registry
def test_a_token_refused_mid_upload_starts_the_blob_over(
    token_registry: Any, tmp_path: Path
) -> None:
    """GCR refetches tokens in the middle of an upload (invalid_token on the streamed PATCH): a
    streamed body cannot be resent, so the blob starts over in a new session from the file."""
    from support.cli import run_cli
    from support.images import SeedClient, read_manifest
    from support.quirks import GcrProfile, QuirkProxy

    root = tmp_path / "l"
    root.mkdir()
    big = os.urandom(3 * 1024 * 1024)  # more than the last MiB: a streamed PATCH first
    config = blob(root, b'{"architecture": "amd64", "os": "linux"}')
    layer = blob(root, big)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
        }
    ).encode()
    make_layout(root, [{"mediaType": OCI_MANIFEST, **blob(root, manifest)}])
    alice = token_registry.users["alice"]
    with SeedClient(token_registry, username="alice", password=alice) as client:
        # The config there already: the one PATCH refused is the layer's first, streamed one.
        client.push_blob(
            "alice/gcr-layout", (root / "blobs" / "sha256" / config["digest"][7:]).read_bytes()
        )
    ts = token_registry.token_server
    profile = GcrProfile(realm=ts.realm, service=ts.service, on_blobs=True)
    proxy = QuirkProxy(token_registry.host, profile).start()
    try:
        spec = tmp_path / "s.yaml"
        spec.write_text(
            f"image: {proxy.host}/alice/gcr-layout:1\nmanifests:\n  - image: oci:{root}\n"
        )
        result = run_cli(
            "from-spec",
            str(spec),
            "--username",
            "alice",
            "--password-stdin",
            "--plain-http",
            "--max-concurrency",
            "2",  # one blob at a time: the revoked PATCH is the big layer's first
            stdin=token_registry.users["alice"] + "\n",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert proxy.count(quirk="gcr: invalid_token") == 1
        assert "token renewed mid-upload; uploading" in result.stderr
        assert "Traceback" not in result.stderr
        # The layer's two sessions, the first deleted.
        assert proxy.count("POST", "/blobs/uploads/") == 2
        assert len({r.path for r in proxy.select("DELETE", "/blobs/uploads/")}) == 1
    finally:
        proxy.stop()
    _, _, digest = read_manifest(
        token_registry,
        "alice/gcr-layout",
        "1",
        username="alice",
        password=token_registry.users["alice"],
    )
    assert digest
