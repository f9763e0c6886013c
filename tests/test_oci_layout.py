"""OCI image layouts on disk as sources (``oci:PATH[:TAG]``), written by a real tool (skopeo).

Images are seeded into a real registry, copied into layouts with ``skopeo copy ... oci:DIR:TAG``,
then pushed with ``pushmanifest from-spec``/``from-args`` to another repository or registry, and
the result read back by skopeo (``inspect --raw``) and by ``pushmanifest inspect``. Requests are
counted through :class:`~support.proxy.HttpProxy`. Without skopeo the tests are skipped (under
``CI=true`` they fail: ``.ci/run`` installs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli_env, run_cli
from support.images import SeedClient, read_manifest, seed_image
from support.proxy import HttpProxy
from support.registry import in_ci

pytestmark = pytest.mark.registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
SKOPEO = shutil.which("skopeo")


@pytest.fixture(autouse=True)
def _needs_skopeo() -> None:
    if SKOPEO is None:
        if in_ci():
            pytest.fail("skopeo is missing (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip("skopeo is not installed")


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    assert SKOPEO is not None
    result = subprocess.run(
        [SKOPEO, *args], capture_output=True, text=True, timeout=300, env=cli_env(hermetic=False)
    )
    assert result.returncode == 0, result.stderr
    return result


def to_layout(server: Any, image: str, layout: Path, tag: str, *, user: str = "") -> None:
    """``skopeo copy --all docker://HOST/IMAGE oci:LAYOUT:TAG``."""
    creds = ["--src-creds", f"{user}:{server.users[user]}"] if user else []
    skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        *creds,
        f"docker://{server.host}/{image}",
        f"oci:{layout}:{tag}",
    )


def inspect_raw(host: str, image: str, *, creds: str = "") -> dict[str, Any]:
    extra = ["--creds", creds] if creds else []
    result = skopeo("inspect", "--raw", "--tls-verify=false", *extra, f"docker://{host}/{image}")
    return json.loads(result.stdout)


def write_spec(path: Path, target: str, sources: list[str]) -> Path:
    lines = [f"image: {target}", "manifests:"] + [f"  - image: {s}" for s in sources]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, stdin=stdin)


def writes(proxy: HttpProxy) -> int:
    return sum(proxy.count(method=m) for m in ("PUT", "POST", "PATCH", "DELETE"))


def platforms_of(index: dict[str, Any]) -> list[str]:
    return [
        "/".join(filter(None, [m["platform"]["os"], m["platform"]["architecture"]]))
        for m in index["manifests"]
    ]


@pytest.fixture
def two_arch(open_registry: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """One layout holding two images, named amd64 and arm64 (skopeo, from the registry)."""
    seeded = {
        arch: seed_image(open_registry, "layout/src", arch, architecture=arch, oci=True)
        for arch in ("amd64", "arm64")
    }
    layout = tmp_path / "layout"
    for arch in seeded:
        to_layout(open_registry, f"layout/src:{arch}", layout, arch)
    return layout, seeded


def test_images_from_a_layout_become_a_list(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, seeded = two_arch
    with HttpProxy(upstream=open_registry.host) as proxy:
        target = f"{proxy.host}/layout/app:1"
        spec = write_spec(
            tmp_path / "s.yaml", target, [f"oci:{layout}:amd64", f"oci:{layout}:arm64"]
        )
        result = run("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        # Per image: a HEAD of its manifest (absent), a HEAD per blob (absent), each blob in one
        # session (POST, one PATCH, the commit's PUT), its manifest PUT by digest; one list PUT.
        assert proxy.count("HEAD", "/blobs/") == 4
        assert proxy.count("POST", "/blobs/uploads/") == 4
        assert proxy.count("PATCH") == 4
        assert proxy.count("PUT", "/blobs/uploads/") == 4
        assert proxy.count("PUT", "/manifests/sha256:") == 2
        assert proxy.count("PUT", "/manifests/1") == 1
        # Nothing is read from a registry (the ping aside): the layout says all.
        assert proxy.count("GET", "/manifests/") == proxy.count("GET", "/blobs/") == 0
        index = inspect_raw(open_registry.host, "layout/app:1")
        assert [m["digest"] for m in index["manifests"]] == [
            seeded["amd64"].digest,
            seeded["arm64"].digest,
        ]
        assert platforms_of(index) == ["linux/amd64", "linux/arm64"]  # from the configs
        # The layout's own names (org.opencontainers.image.ref.name) stay in the layout.
        assert all("annotations" not in m for m in index["manifests"])
        shown = run("inspect", "--raw", f"{proxy.host}/layout/app:1", cwd=tmp_path)
        assert json.loads(shown.stdout) == index

        # Again: every image is there (one HEAD each), the list unchanged: nothing written.
        proxy.reset()
        again = run("from-spec", str(spec), cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert writes(proxy) == 0
        assert proxy.count("HEAD", "/blobs/") == 0


def test_blobs_the_target_holds_are_not_uploaded(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, seeded = two_arch
    image = seeded["amd64"]
    with SeedClient(open_registry) as client:  # the blobs, not the manifest
        for data in image.blobs.values():
            client.push_blob("layout/has-blobs", data)
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = write_spec(
            tmp_path / "s.yaml", f"{proxy.host}/layout/has-blobs:1", [f"oci:{layout}:amd64"]
        )
        result = run("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert proxy.count("HEAD", "/blobs/") == 2
        assert proxy.count("POST") == proxy.count("PATCH") == 0
        assert proxy.count("PUT", "/manifests/") == 2  # the image by digest, then the list


def test_index_layout_is_a_list_source_on_a_token_registry(
    token_registry: Any, open_registry: Any, tmp_path: Path
) -> None:
    """skopeo copy --all of a BuildKit-style index (images + attestations) into a layout, then
    that layout plus a registry image into one list on another registry, with a token."""
    from test_sources_registry import seed_buildkit_index

    images, _ = seed_buildkit_index(open_registry, "layout/bk", "multi")
    other = seed_image(open_registry, "layout/bk", "s390x", architecture="s390x", oci=True)
    layout = tmp_path / "bk"
    to_layout(open_registry, "layout/bk:multi", layout, "v1")
    spec = write_spec(
        tmp_path / "s.yaml",
        f"{token_registry.host}/alice/from-layout:2",
        [f"oci:{layout}:v1", f"{open_registry.host}/layout/bk:s390x"],
    )
    token_registry.token_server.reset()
    result = run(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        cwd=tmp_path,
        stdin=token_registry.users["alice"] + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert token_registry.token_server.count == 1  # one token for the run, uploads included
    index = inspect_raw(
        token_registry.host, "alice/from-layout:2", creds=f"alice:{token_registry.users['alice']}"
    )
    digests = [m["digest"] for m in index["manifests"]]
    assert digests[:2] == [i.digest for i in images]
    assert digests[2] == other.digest
    assert platforms_of(index) == [
        "linux/amd64",
        "linux/arm64",
        "linux/s390x",
        "unknown/unknown",
        "unknown/unknown",
    ]
    for digest in digests:  # every entry, attestations too, resolves in the target
        _, _, got = read_manifest(
            token_registry,
            "alice/from-layout",
            digest,
            username="alice",
            password=token_registry.users["alice"],
        )
        assert got == digest


def test_dry_run_says_what_it_would_upload_and_writes_nothing(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, seeded = two_arch
    size = sum(len(b) for b in seeded["amd64"].blobs.values())
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = write_spec(
            tmp_path / "s.yaml", f"{proxy.host}/layout/dry:1", [f"oci:{layout}:amd64"]
        )
        result = run("from-spec", str(spec), "--dry-run", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert writes(proxy) == 0
    assert f"oci:{layout}:amd64: would upload up to 2 blobs ({size} bytes) and 1 manifest" in (
        result.stderr
    )
    listed = json.loads(result.stdout.split("Digest:")[0])
    assert listed["manifests"][0]["digest"] == seeded["amd64"].digest


def test_from_args_template_names_layouts(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, seeded = two_arch
    result = run(
        "from-args",
        "--platforms",
        "linux/amd64,linux/arm64",
        "--template",
        f"oci:{layout}:ARCH",
        "--target",
        f"{open_registry.host}/layout/args:1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    index = inspect_raw(open_registry.host, "layout/args:1")
    assert [m["digest"] for m in index["manifests"]] == [
        seeded["amd64"].digest,
        seeded["arm64"].digest,
    ]


def test_layout_selection_errors_name_the_path(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, _ = two_arch
    target = f"{open_registry.host}/layout/never:1"
    cases = {
        f"oci:{layout}": "the layout holds 2 manifests: name one",
        f"oci:{layout}:riscv64": (
            "no manifest in index.json is named 'riscv64' (names: amd64, arm64)"
        ),
        f"oci:{tmp_path}/absent": "does not exist",
    }
    for source, expected in cases.items():
        spec = write_spec(tmp_path / "s.yaml", target, [source])
        result = run("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 2, (source, result.stderr)
        assert expected in result.stderr, result.stderr
        assert str(tmp_path) in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_corrupt_blob_stops_the_run_before_anything_is_written(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, seeded = two_arch
    layer = seeded["arm64"].layer_digest
    path = layout / "blobs" / "sha256" / layer.split(":")[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    seed_image(open_registry, "layout/remote", "ppc", architecture="ppc64le", oci=True)
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = write_spec(
            tmp_path / "s.yaml",
            f"{proxy.host}/layout/corrupt:1",
            [f"{proxy.host}/layout/remote:ppc", f"oci:{layout}:amd64", f"oci:{layout}:arm64"],
        )
        result = run("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"blob {layer} does not match its digest" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert writes(proxy) == 0


def test_symlink_out_of_the_layout_is_refused(
    open_registry: Any, two_arch: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    layout, seeded = two_arch
    layer = seeded["amd64"].layer_digest
    path = layout / "blobs" / "sha256" / layer.split(":")[1]
    outside = tmp_path / "outside"
    outside.write_bytes(path.read_bytes())  # the right bytes, but outside the layout
    path.unlink()
    path.symlink_to(outside)
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = write_spec(
            tmp_path / "s.yaml", f"{proxy.host}/layout/escape:1", [f"oci:{layout}:amd64"]
        )
        result = run("from-spec", str(spec), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"blob {layer} is a link out of the layout's blobs directory" in result.stderr
        assert writes(proxy) == 0


# -- a large layer: chunks, constant memory ------------------------------------------------------

LARGE = 200 * 1024 * 1024


def sha256_file(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        for piece in iter(lambda: file.read(1 << 20), b""):
            hasher.update(piece)
    return f"sha256:{hasher.hexdigest()}", path.stat().st_size


def write_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


def large_layout(root: Path) -> tuple[Path, str]:
    """A layout (written here: a tool would take minutes to make it) with one image whose layer
    is LARGE bytes: sparse, so it costs no disk until the registry stores it."""
    layout = root / "large"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    scratch = layout / "scratch"
    with open(scratch, "wb") as file:
        file.seek(LARGE - 1)
        file.write(b"\1")  # not all zeros, and a last byte that must arrive
    layer, layer_size = sha256_file(scratch)
    scratch.rename(layout / "blobs" / "sha256" / layer.split(":")[1])
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}}
    ).encode()
    config_digest, config_size = write_blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": layer_size}],
        }
    ).encode()
    digest, size = write_blob(layout, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": size}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return layout, layer


def peak_rss_of_cli(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """Run the CLI; its exit status, stderr and peak RSS in bytes (wait4's rusage)."""
    with subprocess.Popen(
        [sys.executable, "-m", "pushmanifest", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(cwd),
        cwd=cwd,
        text=True,
    ) as process:
        assert process.stderr is not None
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, stderr, usage.ru_maxrss * 1024  # KiB on Linux


def baseline_rss(cwd: Path) -> int:
    code, _, rss = peak_rss_of_cli(["--version"], cwd)
    assert code == 0
    return rss


def test_large_layer_goes_in_chunks_in_constant_memory(open_registry: Any, tmp_path: Path) -> None:
    from pushmanifest.registry.uploads import UPLOAD_CHUNK_BYTES, UPLOAD_TAIL_BYTES

    layout, layer = large_layout(tmp_path)
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = write_spec(tmp_path / "s.yaml", f"{proxy.host}/layout/large:1", [f"oci:{layout}"])
        code, stderr, rss = peak_rss_of_cli(["from-spec", str(spec)], tmp_path)
        assert code == 0, stderr
        # 199 MiB streamed in 16 MiB PATCHes (13), then the last MiB in one of its own once the
        # layer's digest has been checked, and the config's one PATCH.
        assert (UPLOAD_CHUNK_BYTES, UPLOAD_TAIL_BYTES) == (16 << 20, 1 << 20)
        assert proxy.count("PATCH") == 13 + 1 + 1
        assert proxy.count("PUT", "/blobs/uploads/") == 2
    with SeedClient(open_registry) as client:
        response = client.request(
            "HEAD", f"/v2/layout/large/blobs/{layer}", scope="repository:layout/large:pull"
        )
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == LARGE
    # The layer was read twice (hashed, then uploaded) in pieces: memory did not grow with it.
    base = baseline_rss(tmp_path)
    assert rss - base < 64 * 1024 * 1024, (rss, base)


def test_depth_does_not_grow_with_the_number_of_layouts(open_registry: Any, tmp_path: Path) -> None:
    """Requests counted per layout; depth in waves (WaveGate, no wall clock): same for 1 and 4."""
    from support.routes import route_to

    arches = ["amd64", "arm64", "s390x", "ppc64le"]
    for arch in arches:
        seed_image(open_registry, "layout/wide", arch, architecture=arch, oci=True)
        to_layout(open_registry, f"layout/wide:{arch}", tmp_path / "wide", arch)
    depths = {}
    for n in (1, 4):
        with route_to(open_registry) as route:
            spec = write_spec(
                tmp_path / "s.yaml",
                f"{route.host}/layout/wide-{n}:1",
                [f"oci:{tmp_path / 'wide'}:{arch}" for arch in arches[:n]],
            )
            result = run_cli(
                "from-spec", "--plain-http", str(spec), cwd=tmp_path, on_start=route.gate.watch
            )
            assert result.returncode == 0, result.stderr
            proxy = route.registry
            # Per layout: its manifest HEAD and PUT, and per blob (2): HEAD, POST, PATCH, PUT.
            assert proxy.count("HEAD", "/manifests/sha256:") == n
            assert proxy.count("HEAD", "/blobs/") == 2 * n
            assert proxy.count("POST") == proxy.count("PATCH") == 2 * n
            assert proxy.count("PUT", "/blobs/uploads/") == 2 * n
            assert proxy.count("PUT", "/manifests/") == n + 1
            depths[n] = proxy.depth()
    # The target's HEAD, manifest HEADs, blob HEADs, POSTs, PATCHes, commits, manifest PUTs, the
    # list's PUT: each one wave, however many layouts (no ping: an open registry, --plain-http).
    assert depths[4] == depths[1], depths
    assert depths[1] == 8, depths


def test_a_name_holding_colons_is_found_as_skopeo_wrote_it(
    open_registry: Any, tmp_path: Path
) -> None:
    """skopeo cuts ``oci:DIR:NAME`` at the first ':', so a name may hold more ('app:v1')."""
    seeded = seed_image(open_registry, "layout/colon", "x", architecture="amd64", oci=True)
    layout = tmp_path / "colon"
    to_layout(open_registry, "layout/colon:x", layout, "example.com/app:v1")
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "example.com/app:v1"
    }
    spec = write_spec(
        tmp_path / "s.yaml",
        f"{open_registry.host}/layout/colon-list:1",
        [f"oci:{layout}:example.com/app:v1"],
    )
    result = run("from-spec", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = inspect_raw(open_registry.host, "layout/colon-list:1")
    assert [m["digest"] for m in listed["manifests"]] == [seeded.digest]
