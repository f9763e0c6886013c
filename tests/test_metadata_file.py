"""``--metadata-file``: the run's result as one JSON document, for the steps after a push.

Every digest, size and entry in the file is checked against what the real registry holds (read
back with the tests' own client), the file is replaced whole (a new inode, no temporary file
left) also when the run fails part-way, and a path that cannot be written stops the run before
its first request.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec
from pushmanifest.metadata import METADATA_VERSION, MetadataFile, run_metadata
from support.cli import cli_env, run_cli
from support.images import head_manifest, read_manifest, seed_platforms
from support.proxy import HttpProxy

pytestmark = pytest.mark.registry

PLATFORMS = [("amd64", "amd64", ""), ("arm32v7", "arm", "v7"), ("arm64v8", "arm64", "v8")]
BUILDX_KEYS = ("containerimage.digest", "containerimage.descriptor", "image.name")


def spec_yaml(host: str, target: str, source_repository: str, tags: list[str] = ()) -> str:  # type: ignore[assignment]
    """A list of PLATFORMS' images from ``source_repository`` (another repository: copied)."""
    lines = [f"image: {host}/{target}", f"tags: [{', '.join(tags)}]", "manifests:"]
    for tag, _, _ in PLATFORMS:
        lines.append(f"  - image: {host}/{source_repository}:{tag}")  # platforms from configs
    return "\n".join(lines) + "\n"


def check_against_registry(server: Any, registry_host: str, listed: dict[str, Any]) -> None:
    """One list's object says what the registry holds: at each tag, by digest, entry by entry."""
    name = listed["name"]
    assert name.startswith(f"{registry_host}/")
    repository = name[len(registry_host) + 1 :]
    for tag_ref in listed["tags"]:
        assert tag_ref.startswith(f"{name}:")
        media_type, digest, size = head_manifest(server, repository, tag_ref.rsplit(":", 1)[1])
        assert (digest, size, media_type) == (
            listed["digest"],
            listed["size"],
            listed["mediaType"],
        )
    assert listed["image"] == f"{name}@{listed['digest']}"  # what cosign sign takes
    data, _, digest = read_manifest(server, repository, listed["digest"])
    assert digest == listed["digest"] and len(data) == listed["size"]
    held = json.loads(data)
    assert [
        {k: e[k] for k in ("digest", "size", "mediaType", "platform")} for e in held["manifests"]
    ] == [
        {k: e[k] for k in ("digest", "size", "mediaType", "platform")} for e in listed["manifests"]
    ]
    for entry in listed["manifests"]:
        assert entry["image"] == f"{name}@{entry['digest']}"
        # Each entry resolves in the target repository, where the copy put it.
        assert head_manifest(server, repository, entry["digest"]) is not None
    # docker buildx's keys say the same.
    assert listed["containerimage.digest"] == listed["digest"]
    assert listed["containerimage.descriptor"] == {
        "mediaType": listed["mediaType"],
        "digest": listed["digest"],
        "size": listed["size"],
    }
    assert listed["image.name"] == ",".join(listed["tags"])
    # OCI 1.1's fields, as the index holds them (none on these lists).
    assert listed["artifactType"] == held.get("artifactType")
    assert listed["subject"] == held.get("subject")


#: Version 1's keys: only ever added to (a test fails on any other change), and each in README.
DOCUMENT_KEYS = {"version", "dryRun", "complete", "error", "lists", "notWritten"}
LIST_KEYS = {"name", "digest", "size", "mediaType", "image", "tags", "written", "annotations"}
LIST_KEYS |= {"manifests", "artifactType", "subject", "referrers", *BUILDX_KEYS}
ENTRY_KEYS = {"digest", "size", "mediaType", "platform", "annotations", "source", "image"}
REFERRER_KEYS = {"subject", "digest", "size", "mediaType", "artifactType", "source", "image"}
REFERRER_KEYS |= {"found", "tag"}


def check_keys_are_version_1s(document: dict[str, Any]) -> None:
    one_list = len(document["lists"]) == 1
    assert set(document) == DOCUMENT_KEYS | (set(BUILDX_KEYS) if one_list else set())
    for listed in document["lists"]:
        assert set(listed) == LIST_KEYS
        for entry in listed["manifests"]:
            assert set(entry) == ENTRY_KEYS
        for referrer in listed["referrers"]:
            assert set(referrer) == REFERRER_KEYS
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Metadata file") :]
    section = section[: section.index("\n## ")]
    for key in DOCUMENT_KEYS | LIST_KEYS | ENTRY_KEYS | REFERRER_KEYS:
        assert f"`{key}`" in section or f".{key}`" in section, f"README: {key} undocumented"


def test_from_spec_file_holds_what_the_registry_holds(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seeded = seed_platforms(open_registry, "meta/src", PLATFORMS)
    spec = tmp_path / "app.yaml"
    spec.write_text(spec_yaml(host, "meta/app:1.0", "meta/src", ["latest"]))
    out = tmp_path / "out" / "metadata.json"
    out.parent.mkdir()

    result = run_cli("from-spec", "--metadata-file", str(out), str(spec), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["version"] == METADATA_VERSION == 1
    assert (document["dryRun"], document["complete"], document["error"]) == (False, True, None)
    assert document["notWritten"] == []
    [listed] = document["lists"]
    check_against_registry(open_registry, host, listed)
    assert listed["tags"] == [f"{host}/meta/app:1.0", f"{host}/meta/app:latest"]
    assert listed["written"] == listed["tags"]
    assert [e["source"] for e in listed["manifests"]] == [
        f"{host}/meta/src:{tag}" for tag, _, _ in PLATFORMS
    ]
    assert [e["digest"] for e in listed["manifests"]] == [
        seeded[tag].digest for tag, _, _ in PLATFORMS
    ]
    check_keys_are_version_1s(document)
    # One list: buildx's keys at the top level too, as `docker buildx build` writes them.
    assert {key: document[key] for key in BUILDX_KEYS} == {key: listed[key] for key in BUILDX_KEYS}
    # The Digest: line is still printed, and agrees.
    assert result.stdout == f"Digest: {listed['digest']} {listed['size']}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["metadata.json"]  # no temp left
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


def test_from_args_writes_the_same_document(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seed_platforms(open_registry, "meta/args", PLATFORMS)
    out = tmp_path / "metadata.json"
    result = run_cli(
        "from-args",
        "--platforms",
        "linux/amd64,linux/arm/v7,linux/arm64/v8",
        "--template",
        f"{host}/meta/args:DOCKERARCH",
        "--target",
        f"{host}/meta/args:multi",
        "--metadata-file",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    [listed] = document["lists"]
    check_against_registry(open_registry, host, listed)
    assert [e["platform"] for e in listed["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]


def test_bulk_several_specs_all_lists_in_one_file(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seed_platforms(open_registry, "meta/bulk-src", PLATFORMS)
    one = tmp_path / "one.yaml"
    one.write_text(spec_yaml(host, "meta/bulk-a:1", "meta/bulk-src"))
    two = tmp_path / "two.yaml"  # two YAML documents
    two.write_text(
        spec_yaml(host, "meta/bulk-b:1", "meta/bulk-src", ["x"])
        + "---\n"
        + spec_yaml(host, "meta/bulk-c:1", "meta/bulk-src")
    )
    out = tmp_path / "metadata.json"
    result = run_cli("from-spec", "--metadata-file", str(out), str(one), str(two), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert [listed["tags"] for listed in document["lists"]] == [
        [f"{host}/meta/bulk-a:1"],
        [f"{host}/meta/bulk-b:1", f"{host}/meta/bulk-b:x"],
        [f"{host}/meta/bulk-c:1"],
    ]
    for listed in document["lists"]:
        check_against_registry(open_registry, host, listed)
    assert not set(BUILDX_KEYS) & set(document)  # several lists: only in each list's object
    check_keys_are_version_1s(document)
    assert document["complete"] is True


def test_partial_failure_replaces_the_file_whole_with_what_was_written(
    open_registry: Any, tmp_path: Path
) -> None:
    seed_platforms(open_registry, "meta/part-src", PLATFORMS)
    out = tmp_path / "metadata.json"
    out.write_text('{"an old": "run"}\n')
    old_inode = out.stat().st_ino
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        spec = tmp_path / "three.yaml"
        spec.write_text(
            "---\n".join(
                spec_yaml(host, f"meta/part:{tag}", "meta/part-src") for tag in ("t1", "t2", "t3")
            )
        )
        # The registry is fine; t2's list PUT alone fails (503, not retried with --retries 1).
        proxy.set_faults(
            1.0, kinds=("503",), match=lambda m, p: m == "PUT" and p.endswith("/manifests/t2")
        )
        result = run_cli(
            "from-spec", "--retries", "1", "--metadata-file", str(out), str(spec), cwd=tmp_path
        )
        assert proxy.count("PUT", "/manifests/t2") == 1
    assert result.returncode == 1, result.stderr  # the exit status is the run's
    assert f"not written: {host}/meta/part:t2" in result.stderr.splitlines()
    assert out.stat().st_ino != old_inode  # renamed over, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json", "three.yaml"]
    document = json.loads(out.read_text())
    assert document["complete"] is False
    assert "503" in document["error"] or "unavailable" in document["error"].lower()
    assert document["notWritten"] == [f"{host}/meta/part:t2"]
    assert [listed["written"] for listed in document["lists"]] == [
        [f"{host}/meta/part:t1"],
        [f"{host}/meta/part:t3"],
    ]
    for listed in document["lists"]:
        # Through the registry itself (the proxy is gone): the names say the proxy's host.
        check_against_registry(
            open_registry, open_registry.host, _via(listed, host, open_registry.host)
        )
    # stdout still has the two lists written, as without --metadata-file.
    assert [line.split()[1] for line in result.stdout.splitlines()] == [
        listed["digest"] for listed in document["lists"]
    ]


def _via(listed: dict[str, Any], proxy_host: str, registry_host: str) -> dict[str, Any]:
    """The list's object with the proxy's host replaced by the registry's."""
    return json.loads(json.dumps(listed).replace(proxy_host, registry_host))


def test_interrupted_run_still_writes_the_document(open_registry: Any, tmp_path: Path) -> None:
    seed_platforms(open_registry, "meta/int-src", PLATFORMS)
    out = tmp_path / "metadata.json"
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        spec = tmp_path / "two.yaml"
        spec.write_text(
            spec_yaml(host, "meta/int:done", "meta/int-src")
            + "---\n"
            + spec_yaml(host, "meta/int:hang", "meta/int-src")
        )
        # hang's list PUT is held (a long delay) so that the signal comes while it is in flight.
        proxy.set_faults(
            1.0,
            kinds=("delay",),
            extra_delay=300,
            match=lambda m, p: m == "PUT" and p.endswith("/manifests/hang"),
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pushmanifest",
                "from-spec",
                "--metadata-file",
                str(out),
                str(spec),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(tmp_path),
            cwd=tmp_path,
        )
        assert process.stderr is not None
        early: list[str] = []
        for line in process.stderr:  # "pushed sha256:... to HOST/meta/int:done"
            early.append(line)
            if line.startswith("pushed ") and line.rstrip().endswith(":done"):
                break
        process.send_signal(signal.SIGTERM)
        stdout, rest = process.communicate(timeout=60)
    assert process.returncode == 143, [*early, rest]
    document = json.loads(out.read_text())
    assert (document["complete"], document["error"]) == (False, "terminated")
    assert [listed["written"] for listed in document["lists"]] == [[f"{host}/meta/int:done"]]
    assert document["notWritten"] == [f"{host}/meta/int:hang"]
    assert stdout.split()[1] == document["lists"][0]["digest"]


@pytest.mark.parametrize("where", ["missing-dir", "a-directory", "under-a-file", "read-only-dir"])
def test_unwritable_path_is_exit_2_before_any_request(
    open_registry: Any, tmp_path: Path, where: str
) -> None:
    read_only = tmp_path / "ro"
    if where == "read-only-dir" and os.geteuid() == 0:
        # Root writes into a directory of mode 0555; not into sysfs, where no file can be made.
        if " /sys sysfs " not in Path("/proc/mounts").read_text():
            pytest.skip("root writes into read-only directories, and /sys is not sysfs")
        read_only = Path("/sys")
    seed_platforms(open_registry, "meta/nowrite-src", PLATFORMS[:1])
    paths = {
        "missing-dir": tmp_path / "no-such-dir" / "metadata.json",
        "a-directory": tmp_path / "adir",
        "under-a-file": tmp_path / "afile" / "metadata.json",
        "read-only-dir": read_only / "metadata.json",
    }
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    (tmp_path / "ro").mkdir(mode=0o555)
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = tmp_path / "app.yaml"
        spec.write_text(spec_yaml(proxy.host, "meta/nowrite:1", "meta/nowrite-src"))
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        result = run_cli("from-spec", "--metadata-file", str(paths[where]), str(spec))
        assert proxy.count() == 0  # not even the ping
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot write the metadata file {paths[where]}: ")
    assert "Traceback" not in result.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing left behind


def test_dry_run_writes_a_document_marked_as_such(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seed_platforms(open_registry, "meta/dry-src", PLATFORMS)
    spec = tmp_path / "app.yaml"
    spec.write_text(spec_yaml(host, "meta/dry:1", "meta/dry-src"))
    out = tmp_path / "metadata.json"
    result = run_cli("from-spec", "--dry-run", "--metadata-file", str(out), str(spec))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert (document["dryRun"], document["complete"]) == (True, True)
    [listed] = document["lists"]
    assert listed["written"] == []
    assert listed["digest"] in result.stdout  # the digest it would push
    assert head_manifest(open_registry, "meta/dry", "1") is None  # nothing was written


def test_dash_is_stdout_instead_of_the_digest_lines(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seed_platforms(open_registry, "meta/dash-src", PLATFORMS)
    spec = tmp_path / "app.yaml"
    spec.write_text(spec_yaml(host, "meta/dash:1", "meta/dash-src"))
    result = run_cli("from-spec", "--metadata-file", "-", str(spec))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # stdout is the document and nothing else
    check_against_registry(open_registry, host, document["lists"][0])
    both = run_cli("from-spec", "--metadata-file", "-", "--json", str(spec))
    assert both.returncode == 2
    assert both.stderr.splitlines() == [
        "error: --metadata-file - and --json both write stdout: give a file path"
    ]


def test_library_result_metadata_is_the_file_s_list(open_registry: Any, tmp_path: Path) -> None:
    """The CLI holds no logic the library lacks: PushResult.metadata() and run_metadata()."""
    host = open_registry.host
    seed_platforms(open_registry, "meta/lib-src", PLATFORMS)
    spec = ManifestListSpec(
        image=f"{host}/meta/lib:1",
        tags=["2"],
        manifests=[{"image": f"{host}/meta/lib-src:{tag}"} for tag, _, _ in PLATFORMS],
    )
    [result] = pushmanifest.push(spec, client=ClientOptions(plain_http=True))
    listed = result.metadata()
    check_against_registry(open_registry, host, dict(listed))
    out = tmp_path / "metadata.json"
    out.write_text("old")
    out.chmod(0o640)
    with MetadataFile(str(out)) as file:
        assert out.read_text() == "old"  # nothing changes before write()
        file.write(run_metadata([result]))
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # an existing file keeps its mode
    document = json.loads(out.read_text())
    assert document["lists"] == [json.loads(json.dumps(listed))]
    assert document["containerimage.digest"] == result.digest
    # A discarded MetadataFile leaves neither the path nor a temporary file changed.
    with MetadataFile(str(tmp_path / "unused.json")):
        assert len(list(tmp_path.glob(".unused.json.*.tmp"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json"]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_a_symlink_is_followed_and_a_fifo_written_in_place(tmp_path: Path) -> None:
    document = run_metadata([], dry_run=False)
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with MetadataFile(str(link)) as file:
        file.write(document)
    assert link.is_symlink() and json.loads(real.read_text()) == document

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    file = MetadataFile(str(fifo))  # does not open it yet: no reader needed to start a run
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    file.write(document)
    reader.join(timeout=60)
    assert json.loads(received[0]) == document
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "pipe", "real.json"]


def test_append_file_holds_the_merged_list(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seeded = seed_platforms(open_registry, "meta/app-src", PLATFORMS)
    common = ["--template", f"{host}/meta/app-src:DOCKERARCH", "--target", f"{host}/meta/app:1"]
    first = run_cli("from-args", "--platforms", "linux/amd64", *common)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "metadata.json"
    result = run_cli(
        "from-args", "--platforms", "linux/arm64/v8", "--append", *common,
        "--metadata-file", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [listed] = json.loads(out.read_text())["lists"]
    check_against_registry(open_registry, host, listed)
    amd64, arm64 = listed["manifests"]
    assert (amd64["digest"], arm64["digest"]) == (seeded["amd64"].digest, seeded["arm64v8"].digest)
    # Kept from the list the tag held: that list's tag, pinned; added: its own source.
    assert amd64["source"] == f"{host}/meta/app:1@{amd64['digest']}"
    assert arm64["source"] == f"{host}/meta/app-src:arm64v8"


def test_token_auth_no_secret_in_the_file(token_registry: Any, tmp_path: Path) -> None:
    host, password = token_registry.host, token_registry.users["alice"]
    seeded = seed_platforms(token_registry, "alice/meta-src", PLATFORMS, user="alice")
    spec = tmp_path / "app.yaml"
    spec.write_text(spec_yaml(host, "alice/meta:1", "alice/meta-src"))
    out = tmp_path / "metadata.json"
    login = ["--username", "alice", "--password-stdin", "--metadata-file", str(out)]
    result = run_cli("from-spec", *login, str(spec), stdin=password + "\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert password not in out.read_text()
    [listed] = json.loads(out.read_text())["lists"]
    assert [e["digest"] for e in listed["manifests"]] == [
        seeded[tag].digest for tag, _, _ in PLATFORMS
    ]
    head = head_manifest(token_registry, "alice/meta", "1", username="alice", password=password)
    assert head == (listed["mediaType"], listed["digest"], listed["size"])

    # A refused password: the document says why (one line), and holds no secret either.
    wrong = "not-" + password
    refused = run_cli("from-spec", *login, str(spec), stdin=wrong + "\n", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    document = json.loads(out.read_text())
    assert (document["complete"], document["lists"]) == (False, [])
    assert document["error"] and "\n" not in document["error"]
    assert wrong not in out.read_text() and password not in out.read_text()
