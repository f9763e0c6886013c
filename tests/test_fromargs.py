"""from-args: template expansion (pure), the command line, and pushes against a real registry.

Also the push flags the CLI shares with from-spec: --annotations, --append, --check-platform,
--strict-platform.
"""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest

import support.cli as support_cli
from pushmanifest import InputError, InvalidPlatformError, InvalidReferenceError, SpecError
from pushmanifest.cli import _split_command, main
from pushmanifest.fromargs import (
    DOCKER_ARCHITECTURES,
    docker_architecture,
    expand_template,
    has_placeholder,
    parse_annotations,
    parse_platforms,
    spec_from_args,
    split_values,
    with_annotations,
)
from pushmanifest.platform import Platform
from pushmanifest.reference import Reference
from support.images import head_manifest, read_manifest, seed_image

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


# -- template expansion (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "platform", "expected"),
    [
        ("r/app:OS-ARCH-VARIANT", ("linux", "arm", "v7"), "r/app:linux-arm-v7"),
        ("r/app:OS-ARCH-VARIANT", ("linux", "amd64", ""), "r/app:linux-amd64"),
        ("r/app:ARCH-VARIANT", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/app:ARCH_VARIANT", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/app:ARCH.VARIANT", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/app:ARCH-VARIANT-slim", ("linux", "amd64", ""), "r/app:amd64-slim"),
        ("r/app:ARCH-VARIANT-slim", ("linux", "arm", "v6"), "r/app:arm-v6-slim"),
        # At the start of a tag or path component the separator after it goes instead.
        ("r/app:VARIANT-ARCH", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/VARIANT-app:ARCH", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/app-VARIANT:ARCH", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/app-VARIANT:ARCH", ("linux", "arm", "v7"), "r/app-v7:arm"),
        # Every occurrence (manifest-tool: the first only).
        ("r/OS/app:OS-ARCH-ARCH", ("windows", "amd64", ""), "r/windows/app:windows-amd64-amd64"),
        # Joined placeholders are one word of placeholders.
        ("r/app:ARCHVARIANT", ("linux", "arm", "v7"), "r/app:armv7"),
        ("r/app:ARCHVARIANT", ("linux", "amd64", ""), "r/app:amd64"),
        ("r/app:OSARCH", ("linux", "s390x", ""), "r/app:linuxs390x"),
        # Only whole words: not inside HOST, OS2, ARCHv7, nor lowercase.
        (
            "MYHOST:5000/repos/app:OS-ARCH",
            ("linux", "amd64", ""),
            "MYHOST:5000/repos/app:linux-amd64",
        ),
        ("r/app:OS2-ARCH", ("linux", "amd64", ""), "r/app:OS2-amd64"),
        ("r/app:ARCHv7", ("linux", "arm", "v7"), "r/app:ARCHv7"),
        ("r/arch/os:variant-ARCH", ("linux", "arm", "v7"), "r/arch/os:variant-arm"),
        ("r/app:XARCH-ARCH", ("linux", "arm", "v7"), "r/app:XARCH-arm"),
        # No placeholder: unchanged.
        ("r/app:1.0", ("linux", "arm", "v7"), "r/app:1.0"),
    ],
)
def test_expand_template(template: str, platform: tuple[str, str, str], expected: str) -> None:
    assert expand_template(template, *platform) == expected


def test_expand_template_only_empty_variant_drops_a_separator() -> None:
    # One separator goes with the empty word: the user's doubled one stays doubled.
    assert expand_template("r/app:ARCH--VARIANT", "linux", "amd64", "") == "r/app:amd64-"
    assert expand_template("r/app:VARIANT-VARIANT-ARCH", "linux", "amd64", "") == "r/app:amd64"
    assert expand_template("r/app:ARCH-VARIANT", "linux", "arm64", "v8") == "r/app:arm64-v8"


# -- DOCKERARCH: Docker Hub's architecture names --------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "name"),
    [
        ("linux/amd64", "amd64"),
        ("linux/arm/v5", "arm32v5"),
        ("linux/arm/v6", "arm32v6"),
        ("linux/arm/v7", "arm32v7"),
        ("linux/arm64/v8", "arm64v8"),
        ("linux/arm64", "arm64v8"),
        ("linux/386", "i386"),
        ("linux/ppc64le", "ppc64le"),
        ("linux/s390x", "s390x"),
        ("linux/riscv64", "riscv64"),
        ("linux/mips64le", "mips64le"),
        ("windows/amd64", "windows-amd64"),
        # From the normalized platform, unlike ARCH (the text as written).
        ("linux/aarch64", "arm64v8"),
        ("linux/x86_64", "amd64"),
        ("linux/armhf", "arm32v7"),
        ("linux/i386", "i386"),
    ],
)
def test_dockerarch(platform: str, name: str) -> None:
    os_name, arch, *variant = platform.split("/")
    assert expand_template("r/app:DOCKERARCH", os_name, arch, *variant) == f"r/app:{name}"
    # The official images' per-architecture namespaces: arm32v7/alpine.
    assert expand_template("DOCKERARCH/alpine:3.11", os_name, arch, *variant) == (
        f"{name}/alpine:3.11"
    )


def test_dockerarch_names_each_platform_once() -> None:
    assert len(set(DOCKER_ARCHITECTURES.values())) == len(DOCKER_ARCHITECTURES) - 1  # arm64 twice
    for (os_name, arch, variant), name in DOCKER_ARCHITECTURES.items():
        assert docker_architecture(Platform(os_name, arch, variant)) == name


@pytest.mark.parametrize(
    ("template", "platform", "expected"),
    [
        # Whole words only, as the other placeholders.
        ("r/app:DOCKERARCH-slim", ("linux", "arm", "v7"), "r/app:arm32v7-slim"),
        ("r/app:OS-DOCKERARCH", ("windows", "amd64", ""), "r/app:windows-windows-amd64"),
        ("r/app:MYDOCKERARCH", ("linux", "arm", "v7"), "r/app:MYDOCKERARCH"),
        ("r/app:DOCKERARCH2", ("linux", "arm", "v7"), "r/app:DOCKERARCH2"),
        ("r/app:DOCKER-ARCH", ("linux", "arm", "v7"), "r/app:DOCKER-arm"),
        ("r/app:dockerarch", ("linux", "arm", "v7"), "r/app:dockerarch"),
        # Joined with others it is one word of placeholders, as ARCHVARIANT is.
        ("r/app:DOCKERARCHVARIANT", ("linux", "amd64", ""), "r/app:amd64"),
        # Not asked for: an unnamed platform is no error.
        ("r/app:ARCH", ("linux", "mips", ""), "r/app:mips"),
    ],
)
def test_dockerarch_whole_words(
    template: str, platform: tuple[str, str, str], expected: str
) -> None:
    assert expand_template(template, *platform) == expected


@pytest.mark.parametrize(
    ("platforms", "message"),
    [
        (
            "linux/arm",
            "platform 'linux/arm': DOCKERARCH: Docker Hub has no architecture name "
            "for linux/arm: give the variant (linux/arm/v7 is arm32v7",
        ),
        ("linux/amd64/v3", "no architecture name for linux/amd64/v3 (it has: amd64, arm32v5"),
        ("linux/mips", "no architecture name for linux/mips"),
        ("windows/arm64", "no architecture name for windows/arm64"),
    ],
)
def test_dockerarch_without_a_name_is_an_input_error(platforms: str, message: str) -> None:
    with pytest.raises(InvalidPlatformError) as excinfo:
        spec_from_args(f"linux/amd64,{platforms}", "r/app:DOCKERARCH", "r/app:1")
    assert message in str(excinfo.value)


def test_dockerarch_alone_is_a_placeholder() -> None:
    assert has_placeholder("user/app:DOCKERARCH")
    spec = spec_from_args("linux/arm/v6,linux/arm/v7", "user/app:DOCKERARCH", "user/app:1")
    assert [m.image.tag for m in spec.manifests] == ["arm32v6", "arm32v7"]


def test_has_placeholder() -> None:
    assert has_placeholder("r/app:ARCH")
    assert has_placeholder("r/app:ARCHVARIANT")
    assert not has_placeholder("MYHOST/app:latest")
    assert not has_placeholder("r/app:os-arch-variant")


def test_split_values() -> None:
    assert split_values("a,b") == ["a", "b"]
    assert split_values(["a, b", "c", ""]) == ["a", "b", "c"]
    assert split_values("a,") == ["a"]
    assert split_values(None) == []


def test_parse_platforms_keeps_text_and_normalizes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pushmanifest")
    [amd, arm, aarch] = parse_platforms(["linux/amd64, linux/arm/v7", "linux/aarch64"])
    assert amd.platform == Platform("linux", "amd64")
    assert (arm.os, arm.architecture, arm.variant) == ("linux", "arm", "v7")
    # The template gets the text as written; the list gets the normalized platform.
    assert aarch.architecture == "aarch64"
    assert aarch.platform == Platform("linux", "arm64")
    assert "aarch64" in caplog.text and "arm64" in caplog.text


@pytest.mark.parametrize(
    ("platforms", "message"),
    [
        ("linux", "is not OS/ARCHITECTURE[/VARIANT]"),
        ("linux/arm/v7/x", "is not OS/ARCHITECTURE[/VARIANT]"),
        ("linux//v7", "is not OS/ARCHITECTURE[/VARIANT]"),
        ("linux/amd6", "did you mean 'amd64'"),
        ("linxu/amd64", "did you mean 'linux'"),
        ("linux/amd64/v7", "not a variant of amd64"),
        ("linux/amd64,linux/x86_64", "given twice"),
        ("linux/arm/v7,linux/arm/v7", "given twice"),
    ],
)
def test_parse_platforms_errors(platforms: str, message: str) -> None:
    with pytest.raises(InvalidPlatformError, match="platform") as excinfo:
        parse_platforms(platforms)
    assert message in str(excinfo.value)


def test_parse_platforms_none() -> None:
    with pytest.raises(InputError, match="no platform"):
        parse_platforms(" , ")


def test_parse_annotations() -> None:
    assert parse_annotations(["a=1,b=2", "c=x=y"]) == {"a": "1", "b": "2", "c": "x=y"}
    # A piece without '=' continues the value before it: values may hold commas.
    assert parse_annotations("org.example.list=a,b,c") == {"org.example.list": "a,b,c"}
    assert parse_annotations(["k=", "k2=v"]) == {"k": "", "k2": "v"}
    assert parse_annotations(["a=1", "a=2"]) == {"a": "2"}
    assert parse_annotations(None) == {}
    for bad in ("novalue", "=v", ["a=1", "b"]):
        with pytest.raises(InputError, match="KEY=VALUE"):
            parse_annotations(bad)


def test_spec_from_args() -> None:
    spec = spec_from_args(
        platforms=["linux/amd64,linux/arm/v6", "linux/arm/v7", "linux/arm64/v8"],
        template="127.0.0.1:5000/team/app:OS-ARCH-VARIANT",
        target="127.0.0.1:5000/team/app:1.0",
        tags="1,latest",
        annotations={"org.opencontainers.image.version": "1.0"},
    )
    assert spec.image == Reference.parse("127.0.0.1:5000/team/app:1.0")
    assert spec.tags == ["1", "latest"]
    assert spec.annotations == {"org.opencontainers.image.version": "1.0"}
    assert [(str(e.image), str(e.platform)) for e in spec.manifests] == [
        ("127.0.0.1:5000/team/app:linux-amd64", "linux/amd64"),
        ("127.0.0.1:5000/team/app:linux-arm-v6", "linux/arm/v6"),
        ("127.0.0.1:5000/team/app:linux-arm-v7", "linux/arm/v7"),
        ("127.0.0.1:5000/team/app:linux-arm64-v8", "linux/arm64/v8"),
    ]


def test_spec_from_args_target_defaults_to_latest_and_docker_hub() -> None:
    spec = spec_from_args("linux/amd64", "user/app:ARCH", "user/app")
    assert str(spec.image) == "docker.io/user/app:latest"
    assert str(spec.manifests[0].image) == "docker.io/user/app:amd64"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"template": "r/app:latest"}, InputError, "none of the placeholders"),
        ({"template": "r/app:os-arch"}, InputError, "none of the placeholders"),
        ({"template": "r/app:VARIANT"}, InvalidReferenceError, "gives 'r/app:' for platform"),
        ({"template": "r/ARCH_:x"}, InvalidReferenceError, "not an image reference"),
        ({"template": "r/app:OS"}, InputError, "for both linux/amd64 and linux/arm/v7"),
        ({"target": "r/app@sha256:" + "a" * 64}, InputError, "cannot be a digest"),
        ({"target": "R/App:1"}, InvalidReferenceError, "target: repository name must be"),
        ({"tags": "ok,-bad"}, InvalidReferenceError, "tags: tag '-bad'"),
        ({"platforms": "linux/amd64,linux/mips/v7"}, InvalidPlatformError, "mips"),
    ],
)
def test_spec_from_args_errors(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    args: dict[str, Any] = {
        "platforms": "linux/amd64,linux/arm/v7",
        "template": "r/app:ARCH-VARIANT",
        "target": "r/app:1",
        **kwargs,
    }
    with pytest.raises(error) as excinfo:
        spec_from_args(**args)
    assert message in str(excinfo.value)
    assert not isinstance(excinfo.value, SpecError)


def test_with_annotations_merges_over_the_spec() -> None:
    spec = spec_from_args(
        "linux/amd64", "r/app:ARCH", "r/app:1", annotations={"a": "spec", "b": "1"}
    )
    merged = with_annotations(spec, {"a": "cli", "c": "2"})
    assert merged.annotations == {"a": "cli", "b": "1", "c": "2"}
    assert spec.annotations == {"a": "spec", "b": "1"}
    assert with_annotations(spec, {}) is spec


# -- the command line without a registry ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--platforms", "linux/amd64", "from-args", "--template", "r/a:ARCH", "--target", "r/a"],
        ["--template", "r/a:ARCH", "--target", "r/a", "--tags", "x", "from-args"],
        ["--annotations", "a=b", "push", "from-args", "--debug"],
        ["--tags", "inspect", "from-args"],
    ],
)
def test_split_command_with_new_value_options(argv: list[str]) -> None:
    command, rest = _split_command(argv)
    assert command == "from-args"
    assert len(rest) == len(argv) - argv.count("from-args") - argv.count("push")


def test_help_lists_the_new_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in ("from-spec", "from-args", "inspect"):
        assert command in result.stdout


def test_startup_does_not_import_httpx_or_pydantic() -> None:
    for args in (["--version"], ["--help"], ["from-args", "--help"], ["inspect", "--help"]):
        result = support_cli.run_cli(
            *args, python_args=("-X", "importtime"), hermetic=False, timeout=60
        )
        assert result.returncode == 0
        imported = [line for line in result.stderr.splitlines() if "import time:" in line]
        assert imported, "no -X importtime output"
        assert not [line for line in imported if "httpx" in line or "pydantic" in line], args


def test_from_args_requires_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["from-args", "--platforms", "linux/amd64"]) == 2
    err = capsys.readouterr().err
    assert "--template" in err and "--target" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--platforms", "linux/amd64,linux/armz"], "platform 'linux/armz'"),
        (["--platforms", "amd64"], "is not OS/ARCHITECTURE[/VARIANT]"),
        (["--template", "r/app:latest"], "none of the placeholders"),
        (["--template", "r/app:ARCH-VARIANT:x"], "not an image reference"),
        (["--annotations", "novalue"], "KEY=VALUE"),
        (["--target", "r/app@sha256:" + "0" * 64], "cannot be a digest"),
    ],
)
def test_from_args_bad_input_exits_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {"--platforms": "linux/amd64", "--template": "r/app:ARCH", "--target": "r/app:1"}
    argv = ["from-args"]
    for option, value in args.items():
        if option not in extra:
            argv += [option, value]
    status = main([*argv, *extra])
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert captured.out == ""
    assert "Traceback" not in captured.err


def test_annotations_on_a_docker_list_says_use_type_oci(open_registry: Any) -> None:
    repo = "fromargs/annotations-docker"
    seed(open_registry, repo, {"amd64": "linux/amd64"})
    result = run_cli(
        "from-args",
        "--platforms=linux/amd64",
        f"--template={open_registry.host}/{repo}:ARCH",
        f"--target={open_registry.host}/{repo}:list",
        "--annotations",
        "a=b",
    )
    assert result.returncode == 2
    assert "--type oci" in result.stderr
    assert head_manifest(open_registry, repo, "list") is None


# -- against a real registry ---------------------------------------------------------------------

FOUR = {
    "linux-amd64": "linux/amd64",
    "linux-arm-v6": "linux/arm/v6",
    "linux-arm-v7": "linux/arm/v7",
    "linux-arm64-v8": "linux/arm64/v8",
}


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return support_cli.run_cli(*args, stdin=stdin, hermetic=False, timeout=60)


def run_cli(*args: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    return support_cli.run_cli(*args, cwd=cwd)


def seed(server: Any, repository: str, tags: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """Seed ``tag -> "os/arch[/variant]"``; returns the seeded images by digest."""
    images = {}
    for tag, text in tags.items():
        parts = text.split("/")
        image = seed_image(
            server,
            repository,
            tag,
            os=parts[0],
            architecture=parts[1],
            variant=parts[2] if len(parts) == 3 else "",
            **kwargs,
        )
        images[image.digest] = image
    return images


def digest_line(stdout: str) -> tuple[str, int]:
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("Digest: ")]
    _, digest, size = line.split(" ")
    return digest, int(size)


def check_list(
    server: Any, repository: str, tag: str, seeded: dict[str, Any], digest: str, size: int
) -> dict[str, Any]:
    """The tag holds the list (digest, size); every entry is one of ``seeded``, exact size and
    media type, and resolvable by digest in the list's own repository."""
    body, content_type, served = read_manifest(server, repository, tag)
    assert (served, len(body)) == (digest, size)
    data: dict[str, Any] = json.loads(body)
    assert content_type == data["mediaType"]
    assert len(data["manifests"]) == len(seeded)
    for entry in data["manifests"]:
        image = seeded[entry["digest"]]
        assert entry["size"] == image.size
        assert entry["mediaType"] == image.media_type
        assert entry["platform"] == {
            "architecture": image.platform["architecture"],
            "os": image.platform["os"],
            **({"variant": image.platform["variant"]} if "variant" in image.platform else {}),
        }
        assert head_manifest(server, repository, entry["digest"]) == (
            image.media_type,
            image.digest,
            image.size,
        )
    return data


def test_four_platforms_from_another_repository(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seeded = seed(open_registry, "fromargs/four-src", FOUR)
    result = run_cli(
        "from-args",
        "--platforms",
        "linux/amd64,linux/arm/v6",
        "--platforms",
        "linux/arm/v7",
        "--platforms",
        "linux/arm64/v8",
        "--template",
        f"{host}/fromargs/four-src:OS-ARCH-VARIANT",
        "--target",
        f"{host}/fromargs/four:1.0",
        "--tags",
        "1,latest",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_list(open_registry, "fromargs/four", "1.0", seeded, digest, size)
    assert data["mediaType"] == DOCKER_LIST
    # In the platforms' order.
    assert [seeded[e["digest"]].tag for e in data["manifests"]] == list(FOUR)
    for tag in ("1", "latest"):
        assert read_manifest(open_registry, "fromargs/four", tag)[2] == digest


def test_dangling_separator_before_an_empty_variant(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/dangling"
    seeded = seed(open_registry, repo, {"amd64": "linux/amd64", "arm64_v8": "linux/arm64/v8"})
    result = run_cli(
        "push",  # manifest-tool's spelling
        "from-args",
        "--platforms",
        "linux/amd64,linux/arm64/v8",
        "--template",
        f"{open_registry.host}/{repo}:ARCH_VARIANT",
        "--target",
        f"{open_registry.host}/{repo}:multi",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_list(open_registry, repo, "multi", seeded, digest, size)
    assert [seeded[e["digest"]].tag for e in data["manifests"]] == ["amd64", "arm64_v8"]


def test_dry_run_writes_nothing_then_same_digest(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/dry-run"
    host = open_registry.host
    seeded = seed(open_registry, repo, {"amd64": "linux/amd64", "arm-v7": "linux/arm/v7"})
    args = [
        "from-args",
        "--platforms",
        "linux/amd64,linux/arm/v7",
        "--template",
        f"{host}/{repo}:ARCH-VARIANT",
        "--target",
        f"{host}/{repo}:1",
        "--tags",
        "latest",
    ]
    dry = run_cli(*args, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    digest, size = digest_line(dry.stdout)
    listed = dry.stdout.split("Digest:")[0].strip().encode()
    assert len(listed) == size
    assert {m["digest"] for m in json.loads(listed)["manifests"]} == set(seeded)
    assert "dry run" in dry.stderr
    assert head_manifest(open_registry, repo, "1") is None
    assert head_manifest(open_registry, repo, "latest") is None

    pushed = run_cli(*args, "--json", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    [obj] = [json.loads(line) for line in pushed.stdout.splitlines()]
    assert (obj["digest"], obj["size"]) == (digest, size)
    assert obj["tags"] == ["1", "latest"] and obj["written"] == ["1", "latest"]
    assert [m["image"] for m in obj["manifests"]] == [
        f"{host}/{repo}:amd64",
        f"{host}/{repo}:arm-v7",
    ]
    check_list(open_registry, repo, "latest", seeded, digest, size)


def test_annotations_on_an_oci_index(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/annotations"
    host = open_registry.host
    seeded = seed(open_registry, repo, {"amd64": "linux/amd64", "arm64": "linux/arm64"})
    result = run_cli(
        "from-args",
        "--platforms=linux/amd64,linux/arm64",
        f"--template={host}/{repo}:ARCH",
        f"--target={host}/{repo}:index",
        "--type",
        "oci",
        "--annotations",
        "org.opencontainers.image.version=1.0,org.example.list=a,b",
        "--annotations=org.example.empty=",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_list(open_registry, repo, "index", seeded, digest, size)
    assert data["mediaType"] == OCI_INDEX
    assert data["annotations"] == {
        "org.example.empty": "",
        "org.example.list": "a,b",
        "org.opencontainers.image.version": "1.0",
    }


def test_from_spec_annotations_merged_over_the_spec(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/spec-annotations"
    host = open_registry.host
    seeded = seed(open_registry, repo, {"amd64": "linux/amd64"})
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        image: {host}/{repo}:index
        annotations:
          org.example.from: spec
          org.example.kept: "yes"
        manifests:
          - image: {host}/{repo}:amd64
            platform: {{os: linux, architecture: amd64}}
        """)
    )
    result = run_cli(
        "from-spec",
        str(spec),
        "--type=oci",
        "--annotations",
        "org.example.from=cli",
        "--annotations",
        "org.example.new=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_list(open_registry, repo, "index", seeded, digest, size)
    assert data["annotations"] == {
        "org.example.from": "cli",
        "org.example.kept": "yes",
        "org.example.new": "1",
    }


def test_append_merges_into_the_existing_list(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/append"
    host = open_registry.host
    first = seed(open_registry, repo, {"amd64": "linux/amd64"})
    second = seed(open_registry, repo, {"arm64": "linux/arm64"})
    base = ["from-args", f"--template={host}/{repo}:ARCH", f"--target={host}/{repo}:multi"]
    result = run_cli(*base, "--platforms=linux/amd64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli(*base, "--platforms=linux/arm64", "--append", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_list(open_registry, repo, "multi", {**first, **second}, digest, size)
    assert [e["platform"]["architecture"] for e in data["manifests"]] == ["amd64", "arm64"]


def test_check_and_strict_platform(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/check-platform"
    host = open_registry.host
    # Built under QEMU: tagged arm64, its config says amd64.
    seed(open_registry, repo, {"arm64": "linux/amd64"})
    base = [
        "from-args",
        "--platforms=linux/arm64",
        f"--template={host}/{repo}:ARCH",
        f"--target={host}/{repo}:multi",
    ]
    unchecked = run_cli(*base, "--dry-run", cwd=tmp_path)
    assert unchecked.returncode == 0, unchecked.stderr
    assert "warning" not in unchecked.stderr
    checked = run_cli(*base, "--check-platform", "--dry-run", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "warning" in checked.stderr and "amd64" in checked.stderr
    strict = run_cli(*base, "--strict-platform", cwd=tmp_path)
    assert strict.returncode == 2, strict.stderr
    assert "amd64" in strict.stderr and "Traceback" not in strict.stderr
    assert head_manifest(open_registry, repo, "multi") is None


def test_missing_platform_image_and_ignore_missing(open_registry: Any, tmp_path: Path) -> None:
    repo = "fromargs/missing"
    host = open_registry.host
    seeded = seed(open_registry, repo, {"amd64": "linux/amd64"})
    base = [
        "from-args",
        "--platforms=linux/amd64,linux/s390x",
        f"--template={host}/{repo}:ARCH",
        f"--target={host}/{repo}:multi",
    ]
    missing = run_cli(*base, cwd=tmp_path)
    assert missing.returncode == 1
    assert f"{host}/{repo}:s390x" in missing.stderr
    ignored = run_cli(*base, "--ignore-missing", cwd=tmp_path)
    assert ignored.returncode == 0, ignored.stderr
    assert "s390x" in ignored.stderr
    digest, size = digest_line(ignored.stdout)
    check_list(open_registry, repo, "multi", seeded, digest, size)


def test_seed_tags_by_dockerarch(open_registry: Any, tmp_path: Path) -> None:
    """The seed article's tags (amd64, arm32v6, arm32v7, arm64v8) from one template."""
    repo = "fromargs/dockerarch"
    seeded = seed(
        open_registry,
        repo,
        {
            "amd64": "linux/amd64",
            "arm32v6": "linux/arm/v6",
            "arm32v7": "linux/arm/v7",
            "arm64v8": "linux/arm64/v8",
        },
    )
    result = run_cli(
        "from-args",
        "--platforms",
        "linux/amd64,linux/arm/v6,linux/arm/v7,linux/arm64/v8",
        "--template",
        f"{open_registry.host}/{repo}:DOCKERARCH",
        "--target",
        f"{open_registry.host}/{repo}:latest",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest, size = digest_line(result.stdout)
    data = check_list(open_registry, repo, "latest", seeded, digest, size)
    assert [seeded[e["digest"]].tag for e in data["manifests"]] == [
        "amd64",
        "arm32v6",
        "arm32v7",
        "arm64v8",
    ]
