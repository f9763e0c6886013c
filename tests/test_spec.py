"""The YAML spec: loading, positions of problems, ${VAR}, aliases, specs built in code."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any, Optional

import pydantic
import pytest

from pushmanifest.errors import InputError, SpecError
from pushmanifest.platform import Platform
from pushmanifest.reference import Reference
from pushmanifest.spec import (
    ManifestEntrySpec,
    ManifestListSpec,
    PlatformSpec,
    load_spec_file,
    load_spec_text,
)

# Each test runs with libyaml's parser and with the pure-Python loader (conftest.py).
pytestmark = pytest.mark.usefixtures("yaml_loader")

SPECS = Path(__file__).parent / "data" / "specs"
EXAMPLE = Path(__file__).parent.parent / "examples" / "multi-arch-manifest.yaml"


def load(text: str, env: Optional[dict[str, str]] = None) -> list[ManifestListSpec]:
    return load_spec_text(dedent(text).lstrip("\n"), "s.yaml", env=env or {})


def problems(text: str, env: Optional[dict[str, str]] = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(text, env)
    return [str(p) for p in caught.value.problems]


def problem(text: str, env: Optional[dict[str, str]] = None) -> str:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pushmanifest"]


# --------------------------------------------------------------------------------------------
# The seed: the write-up's spec, and its indentation slip


def test_seed_broken_gives_one_problem_at_line_18() -> None:
    path = SPECS / "seed-broken.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec_file(path, env={})
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:18:14: 'platform:' is indented 5 spaces but 'image:' above it (line 17) is at 4: "
        "keys of the same entry must line up (remove 1 space)"
    ]
    only = caught.value.problems[0]
    assert (only.line, only.column) == (18, 14)
    assert caught.value.exit_code == 2


def test_seed_fixed_loads() -> None:
    (spec,) = load_spec_file(SPECS / "seed.yaml", env={})
    assert spec.image == Reference.parse("virtualzone/compose-updater:latest")
    assert spec.tags == []
    assert spec.origin == f"{SPECS / 'seed.yaml'}:1"
    assert [e.image.tag for e in spec.manifests] == ["amd64", "arm32v6", "arm32v7", "arm64v8"]
    platforms = [e.platform for e in spec.manifests]
    assert all(isinstance(p, Platform) for p in platforms)
    assert [(p.os, p.architecture) for p in platforms if p] == [
        ("linux", "amd64"),
        ("linux", "arm"),
        ("linux", "arm"),
        ("linux", "arm64"),
    ]
    assert [p.variant for p in platforms if p][1:3] == ["v6", "v7"]


def test_seed_files_differ_only_in_the_slip() -> None:
    broken = (SPECS / "seed-broken.yaml").read_text().splitlines()
    fixed = (SPECS / "seed.yaml").read_text().splitlines()
    assert broken[:17] == fixed[:17]
    assert broken[17] == "     platform:"
    assert [line[1:] for line in broken[17:]] == fixed[17:]


def test_example_defaults_to_local_registry() -> None:
    (spec,) = load_spec_file(EXAMPLE, env={})
    assert str(spec.image) == "127.0.0.1:5000/demo/compose-updater:latest"
    assert [str(e.image) for e in spec.manifests] == [
        f"127.0.0.1:5000/demo/compose-updater:{tag}"
        for tag in ("amd64", "arm32v6", "arm32v7", "arm64v8")
    ]


def test_example_follows_registry_variable() -> None:
    (spec,) = load_spec_file(EXAMPLE, env={"REGISTRY": "localhost:5001"})
    assert spec.image.registry == "localhost:5001"
    assert {e.image.registry for e in spec.manifests} == {"localhost:5001"}


def test_load_spec_file_takes_str_paths_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (SPECS / "seed.yaml").read_bytes())
    (spec,) = load_spec_file(str(path), env={})
    assert spec.origin == f"{path}:1"


def test_load_spec_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"image: a/b:1\nannotations: {x: caf\xe9}\n")
    with pytest.raises(SpecError) as caught:
        load_spec_file(path, env={})
    assert str(caught.value) == f"{path}:2:21: not UTF-8 text (byte 0xe9): save the file as UTF-8"


def test_load_spec_file_missing_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_spec_file(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------
# Size: a spec is read up to its limit and no further, from a file, a pipe or standard input

MIB = 1 << 20
TOO_LARGE = (
    "the spec is larger than 1 MiB (1048576 bytes), the most a spec may hold: "
    "is this the right file?"
)
#: Ten bytes a line: byte 1048577 (the first past the limit) is line 104858, column 7.
COMMENT = b"# comment\n"
PAST_THE_LIMIT = "104858:7"


def _run_spec_command(*args: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    # With 2 GiB of address space, a read without end fails with MemoryError rather than taking
    # the machine's memory (ulimit in a shell: preexec_fn is not safe in a threaded parent).
    command = [sys.executable, "-m", "pushmanifest", "from-spec", "--dry-run", *args]
    return subprocess.run(
        ["sh", "-c", 'ulimit -v 2097152 && exec "$0" "$@"', *command],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_a_file_past_the_limit_is_refused_where_it_passes_it(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(COMMENT * (MIB // len(COMMENT) + 1))
    with pytest.raises(SpecError) as caught:
        load_spec_file(path, env={})
    assert str(caught.value) == f"{path}:{PAST_THE_LIMIT}: {TOO_LARGE}"


def test_a_file_at_the_limit_loads(tmp_path: Path) -> None:
    head = b"image: a/b:1\nmanifests: [{image: a/b:2}]\n"
    path = tmp_path / "full.yaml"
    path.write_bytes(head + b"#" * (MIB - len(head) - 1) + b"\n")
    assert path.stat().st_size == MIB
    (spec,) = load_spec_file(path, env={})
    assert str(spec.image) == "docker.io/a/b:1"


def test_text_past_the_limit_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text("#" * MIB + "\n", "big.yaml")
    assert str(caught.value) == f"big.yaml:1:{MIB + 1}: {TOO_LARGE}"
    # Counted in UTF-8 bytes, not characters: 'é' is two.
    with pytest.raises(SpecError) as caught:
        load_spec_text("#" + "é" * (MIB // 2), "big.yaml")
    assert str(caught.value) == f"big.yaml:1:{MIB + 1}: {TOO_LARGE}"


class _EndlessZeros(io.RawIOBase):
    """/dev/zero as a stream, counting the bytes it gave."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), 64 * 1024)  # short reads, as a pipe gives
        buffer[:size] = bytes(size)
        self.given += size
        return size


def test_a_stream_is_read_up_to_the_limit_and_no_further() -> None:
    from pushmanifest.spec import load_spec_stream

    stream = _EndlessZeros()
    with pytest.raises(SpecError) as caught:
        load_spec_stream(stream, "zeros")
    assert str(caught.value) == f"zeros:1:{MIB + 1}: {TOO_LARGE}"
    assert stream.given <= MIB + 64 * 1024


def test_a_text_stream_loads_and_is_bounded_in_bytes() -> None:
    from pushmanifest.spec import load_spec_stream

    (spec,) = load_spec_stream(io.StringIO("image: a/b:1\nmanifests: [{image: a/b:2}]\n"))
    assert spec.origin == "<stdin>:1"
    with pytest.raises(SpecError) as caught:
        load_spec_stream(io.StringIO("#" + "é" * MIB), "<stdin>")
    assert str(caught.value) == f"<stdin>:1:{MIB + 1}: {TOO_LARGE}"


def test_a_strict_text_stream_that_is_not_utf8() -> None:
    from pushmanifest.spec import load_spec_stream

    stream = io.TextIOWrapper(io.BytesIO(b"image: caf\xe9\n"), encoding="utf-8", errors="strict")
    with pytest.raises(SpecError) as caught:
        load_spec_stream(stream)
    assert str(caught.value) == "<stdin>:1:1: not UTF-8 text: save the file as UTF-8"


def test_command_refuses_dev_zero() -> None:
    result = _run_spec_command("/dev/zero")
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == f"/dev/zero:1:{MIB + 1}: {TOO_LARGE}\n"


def test_command_refuses_endless_standard_input() -> None:
    with subprocess.Popen(["yes", "# comment"], stdout=subprocess.PIPE) as endless:
        try:
            result = _run_spec_command("-", stdin=endless.stdout)
        finally:
            endless.kill()
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == f"<stdin>:{PAST_THE_LIMIT}: {TOO_LARGE}\n"


def test_command_refuses_an_endless_fifo_and_reads_a_short_one(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    writer = ["sh", "-c", 'exec yes "# comment" > "$0"', str(fifo)]
    with subprocess.Popen(writer, stderr=subprocess.DEVNULL) as endless:
        try:
            result = _run_spec_command(str(fifo))
        finally:
            endless.kill()
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == f"{fifo}:{PAST_THE_LIMIT}: {TOO_LARGE}\n"
    # As from a shell's <(...): a FIFO holding a spec is read as a file is.
    writer = ["sh", "-c", 'printf "image: a/b:1\\nmanifests: []\\n" > "$0"', str(fifo)]
    with subprocess.Popen(writer):
        result = _run_spec_command(str(fifo))
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"{fifo}:2:12: manifests must not be empty: list at least one image\n"


def test_command_refuses_a_directory(tmp_path: Path) -> None:
    result = _run_spec_command(str(tmp_path))
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == f"error: cannot read spec {tmp_path}: Is a directory\n"


# --------------------------------------------------------------------------------------------
# Documents


def test_several_documents_give_several_lists() -> None:
    specs = load_spec_file(SPECS / "multi-document.yaml", env={})
    assert [s.image.familiar() for s in specs] == [
        "registry.example.com/app:1.0",
        "registry.example.com/tool:2.0",
    ]
    assert specs[0].tags == ["latest"]
    assert [s.origin.rsplit(":", 1)[1] for s in specs] == ["2", "10"]


def test_problems_of_every_document_are_reported() -> None:
    assert problems(
        """
        image: a/b:1
        manifests: []
        ---
        image: c/d:1
        manifest: []
        """
    ) == [
        "s.yaml:2:12: manifests must not be empty: list at least one image",
        "s.yaml:5:1: unknown key 'manifest' — did you mean 'manifests'?",
    ]


def test_a_syntax_error_in_a_later_document_keeps_earlier_problems() -> None:
    assert problems("image: a/b:1\nmanifests: []\n---\nimage: x\n  tags: [x]\n") == [
        "s.yaml:2:12: manifests must not be empty: list at least one image",
        "s.yaml:5:7: 'tags:' is indented 2 spaces but 'image:' above it (line 4) is at 0: "
        "keys of the same mapping must line up (remove 2 spaces)",
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n---\n"])
def test_empty_file(text: str) -> None:
    assert problem(text) == (
        "s.yaml:1:1: the spec is empty: it needs 'image' (the list to push) and 'manifests' "
        "(one image per platform)"
    )


def test_document_that_is_a_list() -> None:
    assert problem("- image: a/b:1\n- image: c/d:1\n") == (
        "s.yaml:1:1: the document is a list, not a mapping: a spec is a mapping with 'image' "
        "and 'manifests' (for several lists, write one document each, separated by '---')"
    )


def test_document_that_is_a_scalar() -> None:
    assert problem("# x\nhello\n") == (
        "s.yaml:2:1: the document is the value 'hello', not a mapping: a spec is a mapping "
        "with 'image' and 'manifests'"
    )


# --------------------------------------------------------------------------------------------
# Keys


def test_unknown_keys_at_every_level_with_suggestions() -> None:
    assert problems(
        """
        imgae: a/b:1
        manifests:
          - image: a/b:2
            platfrom: {os: linux, architecture: amd64}
          - image: a/b:3
            platform: {os: linux, architecture: arm, varient: v7, foo: 1}
        """
    ) == [
        "s.yaml:1:1: unknown key 'imgae' — did you mean 'image'?",
        "s.yaml:4:5: manifests[0]: unknown key 'platfrom' — did you mean 'platform'?",
        "s.yaml:6:46: manifests[1].platform: unknown key 'varient' — did you mean 'variant'?",
        "s.yaml:6:59: manifests[1].platform: unknown key 'foo' (known keys: architecture, os, "
        "variant, osversion, os.version, osfeatures, os.features, features)",
    ]


def test_short_prefix_is_suggested() -> None:
    assert (
        problem(
            """
        image: a/b:1
        manifests:
          - image: a/b:2
            platform: {os: linux, arch: amd64}
        """
        )
        == "s.yaml:4:27: manifests[0].platform: unknown key 'arch' — did you mean 'architecture'?"
    )


def test_origin_is_not_a_key_of_the_file() -> None:
    assert problem("image: a/b:1\norigin: x\nmanifests: [{image: a/b:2}]\n") == (
        "s.yaml:2:1: unknown key 'origin' (known keys: image, tags, type, artifactType, "
        "subject, annotations, manifests)"
    )


def test_keys_that_are_not_strings() -> None:
    assert problems(
        """
        image: a/b:1
        1: x
        yes: y
        ? [a, b]
        : z
        ~: n
        manifests: [{image: a/b:2}]
        """
    ) == [
        "s.yaml:2:1: key '1' is a number, not a string: quote it ('1')",
        "s.yaml:3:1: key 'yes' is a boolean (YAML reads yes/no/on/off/true/false so), "
        "not a string: quote it ('yes')",
        "s.yaml:4:3: a key must be a plain string, not a list",
        "s.yaml:6:1: a key is empty: give it a name",
    ]


def test_quoted_number_keys_are_fine_in_annotations() -> None:
    (spec,) = load("image: a/b:1\nannotations: {'1': one}\nmanifests: [{image: a/b:2}]\n")
    assert spec.annotations == {"1": "one"}


def test_duplicate_keys_name_both_lines() -> None:
    assert problems(
        """
        image: a/b:1
        manifests:
          - image: a/b:2
            platform: {os: linux, architecture: amd64}
            image: a/b:3
        image: a/b:4
        """
    ) == [
        "s.yaml:5:5: key 'image' appears twice in this mapping, on lines 3 and 5: keep one "
        "(YAML would silently use the last)",
        "s.yaml:6:1: key 'image' appears twice in this mapping, on lines 1 and 6: keep one "
        "(YAML would silently use the last)",
    ]


def test_missing_keys_point_at_their_parent() -> None:
    assert problems(
        """
        tags: [x]
        manifests:
          - platform:
              os: linux
          - image: a/b:3
            platform:
              variant: v7
        """
    ) == [
        "s.yaml:1:1: 'image' is required: the list to push, e.g. 'registry.example.com/app:1.0'",
        "s.yaml:3:5: manifests[0]: 'image' is required: the image for this platform",
        "s.yaml:3:5: manifests[0].platform: 'architecture' is required",
        "s.yaml:6:5: manifests[1].platform: 'architecture' is required",
    ]


def test_platform_without_os_is_partial() -> None:
    # Completed from the image's config at push time (a partial platform).
    [spec] = load_spec_text(
        "image: a/b:1\nmanifests:\n  - {image: a/b:2, platform: {architecture: arm, variant: v7}}",
        "s.yaml",
    )
    platform = spec.manifests[0].platform
    assert platform is not None
    assert (platform.os, platform.architecture, platform.variant) == ("", "arm", "v7")


def test_missing_manifests() -> None:
    assert problem("image: a/b:1\n") == (
        "s.yaml:1:1: 'manifests' is required: list the images of the list, one per platform"
    )


def test_extension_keys_hold_anchors() -> None:
    (spec,) = load(
        """
        x-linux: &linux {os: linux}
        image: a/b:1
        manifests:
          - image: a/b:2
            platform: {<<: *linux, architecture: amd64}
          - image: a/b:3
            x-note: ignored
            platform:
              <<: *linux
              architecture: arm64
        """
    )
    assert [str(e.platform) for e in spec.manifests] == ["linux/amd64", "linux/arm64"]


def test_merge_keys_are_overridden_by_own_keys() -> None:
    (spec,) = load(
        """
        image: a/b:1
        manifests:
          - {image: a/b:2, platform: &p {os: linux, architecture: amd64}}
          - image: a/b:3
            platform: {<<: *p, architecture: arm64}
        """
    )
    assert [str(e.platform) for e in spec.manifests] == ["linux/amd64", "linux/arm64"]


def test_merge_of_a_scalar() -> None:
    assert problem("image: a/b:1\nmanifests: [{image: a/b:2, <<: x}]\n") == (
        "s.yaml:2:32: '<<' merges a mapping, or a list of mappings (e.g. *name)"
    )


def test_recursive_alias() -> None:
    assert problem("image: a/b:1\nmanifests: &m [{image: a/b:2}, *m]\n") == (
        "s.yaml:2:12: this alias refers to the node that contains it"
    )


# --------------------------------------------------------------------------------------------
# Expansion bombs: aliases and merge keys count against the same limits, whatever their mix.
# Each runs the command in a subprocess with a timeout that only a hang reaches.


def _fan(name: str, level: int, fan: int = 9) -> str:
    return ", ".join([f"*{name}{level - 1}"] * fan)


def _merge_chain(levels: int) -> str:
    """The issue's bomb: each level merges the one below nine times (<<: [*prev x 9])."""
    lines = ["x-l0: &l0 {}"]
    lines += [f"x-l{i}: &l{i} {{<<: [{_fan('l', i)}]}}" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


_TAIL = "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform: {<<: *%s, architecture: amd64}\n"

#: name -> the spec's text
EXPANSION_BOMBS = {
    # 763 bytes in the issue; ran for days. Every level's own mapping is empty, so no value is
    # built: only the merges themselves can count.
    "merge-chain": _merge_chain(11) + _TAIL % "l11",
    # Merge keys whose value is an alias of a list of aliases of merged mappings.
    "merge-of-aliases-of-merges": (
        "x-m0: &m0 {}\n"
        + "".join(
            f"x-s{i}: &s{i} [{_fan('m', i)}]\nx-m{i}: &m{i} {{<<: *s{i}}}\n" for i in range(1, 12)
        )
        + _TAIL % "m11"
    ),
    # Lists of aliases (each level counted as values) whose items merge a bomb of their own.
    "merges-inside-sequences": (
        _merge_chain(4)
        + "x-q0: &q0 [{<<: *l4, image: a/b:2, platform: {os: linux, architecture: amd64}}]\n"
        + "".join(f"x-q{i}: &q{i} [{_fan('q', i)}]\n" for i in range(1, 8))
        + "image: a/b:1\nmanifests: *q7\n"
    ),
}


def assert_refused_at_a_position(path: Path, message: str) -> None:
    """The command, given the spec at ``path``, exits 2 with one line: PATH:LINE:COL: message.

    Within a timeout that only a hang reaches. ``message`` is a regular expression.
    """
    result = subprocess.run(
        [sys.executable, "-m", "pushmanifest", "from-spec", "--dry-run", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    pattern = re.escape(str(path)) + r":\d+:\d+: " + message + "\n"
    assert re.fullmatch(pattern, result.stderr), result.stderr


@pytest.mark.parametrize("name", sorted(EXPANSION_BOMBS))
def test_expansion_bombs_are_refused_at_a_position(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(EXPANSION_BOMBS[name])
    assert_refused_at_a_position(
        path,
        r"the document expands to more than 100000 values through aliases \('\*name'\) and "
        r"merge keys \('<<'\): a spec needs far fewer",
    )


def test_documents_count_against_one_limit_together() -> None:
    # Each document expands to ~30,000 values, within the limit of one; 30 of them are not.
    document = _merge_chain(4).replace("{}", "{os: linux}", 1) + _TAIL % "l4"
    assert len(load(document)) == 1
    found = problems("---\n".join([document] * 30))
    assert len(found) == 1, found
    # Reported at the start of the document that went past the limit, and loading stops there.
    match = re.fullmatch(
        r"s\.yaml:(\d+):1: the documents expand to more than 400000 values in all through "
        r"aliases \('\*name'\) and merge keys \('<<'\): a spec needs far fewer",
        found[0],
    )
    assert match, found
    lines_per_document = document.count("\n") + 1  # and its '---'
    assert (int(match.group(1)) - 1) % lines_per_document == 0


def test_the_issue_bomb_is_under_a_kilobyte() -> None:
    assert len(EXPANSION_BOMBS["merge-chain"]) < 1024


def test_merge_chains_cannot_nest_deeper_than_the_stack(tmp_path: Path) -> None:
    # One merge per level: no fan-out, but 2000 merges deep exhaust a recursive builder's stack.
    chain = "".join(f"x-l{i}: &l{i} {{<<: *l{i - 1}}}\n" for i in range(1, 2000))
    path = tmp_path / "chain.yaml"
    path.write_text("x-l0: &l0 {k: v}\n" + chain + _TAIL % "l1999")
    assert_refused_at_a_position(
        path,
        r"the document nests more than 50 levels deep; a spec needs 5 at most \(manifests, an "
        r"entry, its platform, features\) \(through merge keys\)",
    )


def test_plain_alias_bomb_is_refused_at_a_position() -> None:
    # Billion laughs, as lists of aliases: caught before merge keys were; kept so it stays so.
    levels = "".join(f"x-a{i}: &a{i} [{_fan('a', i)}]\n" for i in range(1, 10))
    text = "x-a0: &a0 [x]\n" + levels + "image: a/b:1\nmanifests: [*a9]\n"
    found = problems(text)
    assert len(found) == 1, found
    assert re.fullmatch(r"s\.yaml:\d+:\d+: the document expands to more than 100000 .*", found[0])


def test_a_few_merges_of_merges_load() -> None:
    """Merge keys well within the limits: merged through aliases of merges, in sequences."""
    (spec,) = load(
        """
        x-os: &os {os: linux}
        x-amd: &amd {<<: *os, architecture: amd64}
        x-both: &both [*amd, {variant: v8}]
        image: a/b:1
        manifests:
          - {image: a/b:2, platform: *amd}
          - {image: a/b:3, platform: {<<: *both, architecture: arm64}}
        """
    )
    assert [str(e.platform) for e in spec.manifests] == ["linux/amd64", "linux/arm64/v8"]


# --------------------------------------------------------------------------------------------
# Types


def test_type_errors_in_plain_words() -> None:
    assert problems(
        """
        image: [a]
        tags: latest
        annotations: [x]
        manifests:
          - just-a-string
          - image: a/b:1
            platform: linux/amd64
            annotations: {a: [1], b: c}
          - image:
            platform: {os: linux, architecture: arm64, osfeatures: x, features: [a, {b: c}]}
        """
    ) == [
        "s.yaml:1:8: 'image' must be an image reference, not a list",
        "s.yaml:2:7: 'tags' must be a list of strings, not the string 'latest'",
        "s.yaml:3:14: 'annotations' must be a mapping of strings to strings, not a list",
        "s.yaml:5:5: 'manifests[0]' must be a mapping with 'image' and 'platform', "
        "not the string 'just-a-string'",
        "s.yaml:7:15: 'manifests[1].platform' must be a mapping with 'os' and 'architecture', "
        "not the string 'linux/amd64'",
        "s.yaml:8:22: 'manifests[1].annotations' must be a mapping of strings to strings: "
        "manifests[1].annotations.a is a list",
        "s.yaml:9:11: 'manifests[2].image' has no value: give an image reference",
        "s.yaml:10:60: 'manifests[2].platform.osfeatures' must be a list of strings, "
        "not the string 'x'",
        "s.yaml:10:77: 'manifests[2].platform.features' must be a list of strings: "
        "manifests[2].platform.features[1] is a mapping",
    ]


def test_tags_must_be_a_list_of_strings() -> None:
    assert problems("image: a/b:1\ntags: [ok, {a: b}, ~]\nmanifests: [{image: a/b:2}]\n") == [
        "s.yaml:2:12: 'tags' must be a list of strings: tags[1] is a mapping",
        "s.yaml:2:20: 'tags' must be a list of strings: tags[2] is empty",
    ]


def test_manifests_must_not_be_empty() -> None:
    assert problem("image: a/b:1\nmanifests: []\n") == (
        "s.yaml:2:12: manifests must not be empty: list at least one image"
    )
    assert problem("image: a/b:1\nmanifests:\n") == (
        "s.yaml:2:11: 'manifests' has no value: give a list of entries, each with 'image' "
        "and 'platform'"
    )


def test_scalars_keep_their_text() -> None:
    (spec,) = load(
        """
        image: a/b:1
        tags: [1.10, 2, yes]
        annotations: {n: 1.50, flag: true}
        manifests:
          - image: a/b:2
            platform: {os: linux, architecture: 386}
        """
    )
    assert spec.tags == ["1.10", "2", "yes"]
    assert spec.annotations == {"n": "1.50", "flag": "true"}
    platform = spec.manifests[0].platform
    assert platform is not None and platform.architecture == "386"


def test_platform_is_optional() -> None:
    (spec,) = load("image: a/b:1\nmanifests: [{image: a/b:2}]\n")
    assert spec.manifests[0].platform is None


# --------------------------------------------------------------------------------------------
# References


def test_target_without_tag_gets_latest_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pushmanifest")
    (spec,) = load(
        """
        # target
        image: registry.example.com/app
        manifests: [{image: registry.example.com/app:1}]
        """
    )
    assert spec.image.tag == "latest"
    assert notices(caplog) == [
        "s.yaml:2:8: no tag on target 'registry.example.com/app': pushing to "
        "'registry.example.com/app:latest'"
    ]


def test_notices_are_not_logged_for_a_spec_with_problems(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pushmanifest")
    problems("image: a/b\nmanifests: []\n")
    assert notices(caplog) == []


def test_target_must_not_be_a_digest() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    message = problem(f"image: a/b@{digest}\nmanifests: [{{image: a/b:1}}]\n")
    assert message.startswith(
        f"s.yaml:1:8: image: the target cannot be a digest reference ('a/b@{digest}')"
    )


def test_sources_may_be_tags_or_digests() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    (spec,) = load(f"image: a/b:1\nmanifests: [{{image: a/b@{digest}}}, {{image: a/b:2}}]\n")
    assert spec.manifests[0].image.digest == digest
    assert spec.manifests[0].image.tag is None
    assert spec.manifests[1].image.tag == "2"


def test_invalid_source_reference_is_reported_at_its_value() -> None:
    found = problems(
        """
        image: a/b:1
        manifests:
          - image: a/b:2
          - image: Upper/Case:1
          - image: "a/b:bad tag"
        """
    )
    assert len(found) == 2
    assert found[0].startswith("s.yaml:4:12: manifests[1].image: ")
    assert "Upper/Case" in found[0]
    assert found[1].startswith("s.yaml:5:12: manifests[2].image: ")
    assert "a/b:bad tag" in found[1]


def test_invalid_tags_are_reported_each() -> None:
    found = problems("image: a/b:1\ntags: [ok, 'bad tag', -dash]\nmanifests: [{image: a/b:2}]\n")
    assert [f.split(": ", 1)[0] for f in found] == ["s.yaml:2:12", "s.yaml:2:23"]
    assert found[0].startswith("s.yaml:2:12: tags[1]: ") and "bad tag" in found[0]
    assert found[1].startswith("s.yaml:2:23: tags[2]: ") and "-dash" in found[1]


# --------------------------------------------------------------------------------------------
# Platforms


def test_oci_and_manifest_tool_spellings() -> None:
    (spec,) = load_spec_file(SPECS / "windows.yaml", env={})
    first, second = (e.platform for e in spec.manifests)
    assert first is not None and second is not None
    assert (first.os, first.architecture, first.os_version) == (
        "windows",
        "amd64",
        "10.0.17763.1879",
    )
    assert second.os_version == "10.0.20348.643"
    assert second.os_features == ("win32k",)
    assert spec.manifests[1].annotations == {
        "org.opencontainers.image.description": "Windows Server 2022"
    }


def test_os_version_given_twice() -> None:
    assert problem(
        """
        image: a/b:1
        manifests:
          - image: a/b:2
            platform:
              os: windows
              architecture: amd64
              osversion: "10.0.1"
              os.version: "10.0.2"
        """
    ) == (
        "s.yaml:8:19: manifests[0].platform['os.version']: give 'osversion' or 'os.version', "
        "not both (they are the same field)"
    )


def test_os_features_given_twice() -> None:
    assert problem(
        """
        image: a/b:1
        manifests:
          - image: a/b:2
            platform:
              os: windows
              os.features: [a]
              architecture: amd64
              osfeatures: [b]
        """
    ) == (
        "s.yaml:8:19: manifests[0].platform.osfeatures: give 'os.features' or 'osfeatures', "
        "not both (they are the same field)"
    )


def test_invalid_platform_points_at_the_field() -> None:
    found = problems(
        """
        image: a/b:1
        manifests:
          - image: a/b:2
            platform: {os: linx, architecture: amd64}
          - image: a/b:3
            platform:
              os: linux
              architecture: amd46
        """
    )
    assert len(found) == 2
    assert found[0].startswith("s.yaml:4:20: manifests[0].platform.os: ") and "linx" in found[0]
    assert found[1].startswith("s.yaml:8:21: manifests[1].platform.architecture: ")
    assert "amd46" in found[1]


def test_alias_is_normalized_with_a_positioned_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pushmanifest")
    (spec,) = load(
        """
        image: a/b:1
        manifests:
          - image: a/b:2
            platform:
              os: linux
              architecture: aarch64
        """
    )
    platform = spec.manifests[0].platform
    assert platform is not None and platform.architecture == "arm64"
    (notice,) = notices(caplog)
    assert notice.startswith("s.yaml:6:21: ")
    assert "aarch64" in notice


def test_duplicate_platforms_name_both_entries() -> None:
    assert problems(
        """
        image: a/b:1
        manifests:
          - image: a/b:amd64
            platform: {os: linux, architecture: amd64}
          - image: a/b:arm
            platform: {os: linux, architecture: arm, variant: v7}
          - image: a/b:arm-again
            platform: {os: linux, architecture: arm, variant: v7}
          - image: a/b:x86
            platform: {os: linux, architecture: x86_64}
        """
    ) == [
        "s.yaml:8:5: manifests[2] (line 7) has platform linux/arm/v7, as manifests[1] (line 5) has",
        "s.yaml:10:5: manifests[3] (line 9) has platform linux/amd64, as manifests[0] (line 3) has",
    ]


def test_duplicate_platforms_are_reported_with_other_problems() -> None:
    found = problems(
        """
        image: a/b:1
        manifests:
          - image: a/b:1
            platform: {os: linux, architecture: amd64}
          - image: a/b:2
            platform: {os: linux, architecture: amd64}
          - image: BAD/Ref
        """
    )
    assert len(found) == 2
    assert found[0] == (
        "s.yaml:6:5: manifests[1] (line 5) has platform linux/amd64, as manifests[0] (line 3) has"
    )
    assert found[1].startswith("s.yaml:7:12: manifests[2].image: ")


def test_entries_without_platform_are_not_duplicates() -> None:
    (spec,) = load("image: a/b:1\nmanifests: [{image: a/b:2}, {image: a/b:3}]\n")
    assert len(spec.manifests) == 2


# --------------------------------------------------------------------------------------------
# ${VAR}


def test_variables_expand_in_image_tags_and_sources() -> None:
    (spec,) = load_spec_file(SPECS / "env.yaml", env={"REPO": "team/app", "VERSION": "1.2"})
    assert str(spec.image) == "127.0.0.1:5000/team/app:1.2"
    assert spec.tags == ["1.2-final", "latest"]
    assert str(spec.manifests[0].image) == "127.0.0.1:5000/team/app:1.2-amd64"
    assert spec.annotations == {"price": "$$5 stays ${AS_IS}"}


def test_variable_defaults() -> None:
    (spec,) = load_spec_file(SPECS / "env.yaml", env={"REPO": "r", "REGISTRY": "localhost:5001"})
    assert str(spec.image) == "localhost:5001/r:dev"
    assert spec.tags == ["dev-final", "latest"]


def test_default_applies_to_empty_with_colon_only() -> None:
    (spec,) = load(
        """
        image: a/b:1
        tags: ["${EMPTY:-x}", "${EMPTY-}y", "${UNSET-z}", "v${SET}"]
        manifests: [{image: a/b:2}]
        """,
        env={"EMPTY": "", "SET": "1"},
    )
    assert spec.tags == ["x", "y", "z", "v1"]


def test_dollar_dollar_is_a_literal_dollar() -> None:
    found = problem("image: a/b:1\ntags: ['$${X}']\nmanifests: [{image: a/b:2}]\n")
    assert found.startswith("s.yaml:2:8: tags[0]: ")
    assert "'${X}'" in found
    assert found.endswith("(expanded from '$${X}')")


def test_annotations_are_not_expanded() -> None:
    (spec,) = load(
        """
        image: a/b:1
        annotations: {a: '${X}'}
        manifests: [{image: a/b:2, annotations: {b: '${Y}'}}]
        """
    )
    assert spec.annotations == {"a": "${X}"}
    assert spec.manifests[0].annotations == {"b": "${Y}"}


def test_unset_variable_is_reported_at_its_value() -> None:
    assert problems(
        """
        image: ${DOCKER_REPO}:latest
        tags: ["${A}-${B}", "${1X}", "${OPEN"]
        manifests:
          - image: ${DOCKER_REPO}:amd64
        """
    ) == [
        "s.yaml:1:8: image: ${DOCKER_REPO} is not set: export it, or write ${DOCKER_REPO:-default}",
        "s.yaml:2:8: tags[0]: ${A} and ${B} are not set: export them, or give defaults "
        "(${NAME:-default})",
        "s.yaml:2:21: tags[1]: '${1X}' is not a variable: write ${NAME} or ${NAME:-default} "
        "(names are letters, digits and '_'), or $$ for a literal '$'",
        "s.yaml:2:30: tags[2]: '${' at '${OPEN' is not closed: write ${NAME}, "
        "or $$ for a literal '$'",
        "s.yaml:4:12: manifests[0].image: ${DOCKER_REPO} is not set: export it, or write "
        "${DOCKER_REPO:-default}",
    ]


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHMANIFEST_TEST_REPO", "env/app")
    (spec,) = load_spec_text(
        "image: ${PUSHMANIFEST_TEST_REPO}:1\nmanifests: [{image: '${PUSHMANIFEST_TEST_REPO}:2'}]\n"
    )
    assert spec.image.repository == "env/app"
    assert spec.origin == "<spec>:1"


# --------------------------------------------------------------------------------------------
# YAML syntax errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform:\n      os: linux\n"
            "     architecture: arm\n",
            "s.yaml:6:6: 'architecture:' is indented 5 spaces but 'os:' above it (line 5) is at "
            "6: keys of the same mapping must line up (add 1 space), or remove 1 space to line "
            "it up with 'platform:' (line 4)",
        ),
        (
            "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform:\n      os: linux\n"
            "       architecture: arm\n",
            "s.yaml:6:20: 'architecture:' is indented 7 spaces but 'os:' above it (line 5) is at "
            "6: keys of the same mapping must line up (remove 1 space)",
        ),
        (
            "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform:\n      os: linux\n"
            "   annotations: {}\n",
            "s.yaml:6:4: 'annotations:' is indented 3 spaces but 'platform:' above it (line 4) "
            "is at 4: keys of the same entry must line up (add 1 space)",
        ),
        (
            "image: a/b:1\nmanifests:\n  - image: a/b:2\n  platform: {os: linux}\n",
            "s.yaml:4:3: 'platform:' is indented 2 spaces but 'image:' above it (line 3) is at "
            "4: keys of the same entry must line up (add 2 spaces), or remove 2 spaces to line "
            "it up with 'manifests:' (line 2)",
        ),
        (
            "image: a/b:1\ntags:\n  - latest\n    foo: bar\n",
            "s.yaml:4:8: 'foo:' is indented under line 3, which holds a plain value "
            "('- latest'), not keys: a key cannot continue a value; line 'foo:' up with the keys "
            "of its mapping",
        ),
        (
            "image: a/b:1\nmanifests:\n\t- image: a/b:2\n",
            "s.yaml:3:1: line 3 is indented with a tab: YAML allows only spaces for indentation "
            "(replace the tab with spaces)",
        ),
        (
            "image:\ta/b:1\n",
            "s.yaml:1:7: a tab follows ':': write a space instead (YAML allows no tabs here)",
        ),
        (
            "image: 'a/b:1\nmanifests: []\n",
            "s.yaml:1:8: the quote ' opened here is never closed: add the closing ' at the end "
            "of the value",
        ),
        (
            'image: "a/b:1\n',
            's.yaml:1:8: the quote " opened here is never closed: add the closing " at the end '
            "of the value",
        ),
        (
            "image: 'a/b:1\ntags: ['x']\nmanifests: []\n",
            "s.yaml:1:8: the quote ' opened here is not closed on its line, so YAML read on to "
            "line 2: add the closing ' at the end of the value",
        ),
        (
            "image: a/b:1\ntags: [a, b\nmanifests: []\n",
            "s.yaml:2:7: '[' opened here is never closed: add ']' after the last item",
        ),
        (
            "image: a/b:1\ntags: [a, b\n",
            "s.yaml:2:7: '[' opened here is never closed: add ']' after the last item",
        ),
        (
            "image: a/b:1\nmanifests:\n  - {image: a/b:2, platform: {os: linux}\n",
            "s.yaml:3:5: '{' opened here is never closed: add '}' after the last item",
        ),
        ("image: a/b:1\ntags: [a, b}\n", "s.yaml:2:12: '[' (line 2) is closed with '}': use ']'"),
        (
            "image: a/b:1\nannotations:\n  desc: note: this\n",
            "s.yaml:3:13: the value of 'desc:' contains ': ', which YAML takes for another key: "
            'quote the value (desc: "note: this")',
        ),
        (
            "image: a/b:1\n- x\n",
            "s.yaml:2:1: a list item cannot go here, among 'key: value' lines: put the list under "
            "a key that has no value, indented",
        ),
        (
            "image: *img\n",
            "s.yaml:1:8: '*img' refers to no anchor: define '&img' before this point",
        ),
        (
            "a: &x 1\nb: &x 2\n",
            "s.yaml:2:4: anchor '&x' is defined twice (first on line 1): rename one",
        ),
        (
            "image: a/b:1\nmanifests\n",
            "s.yaml:2:1: line 2 ('manifests') is not a 'key: value' pair: add ':' after the key, "
            "or indent the line if it continues the value above",
        ),
        (
            "image: @a/b\n",
            "s.yaml:1:8: a plain value cannot start with '@': quote the value (\"@...\")",
        ),
        ("image: a\x00b\n", "s.yaml:1:9: the character U+0000 is not allowed in YAML: remove it"),
        (
            "image: a/b:1\nmanifests: [{image: ${X}:2}]\n",
            "s.yaml:2:21: inside '{...}', a value with ${VAR} must be quoted (\"${VAR}\"): YAML "
            "reads its braces as a mapping",
        ),
        (
            "image: a/b:1\ntags: [a, ${X}-b]\n",
            "s.yaml:2:11: inside '[...]', a value with ${VAR} must be quoted (\"${VAR}\"): YAML "
            "reads its braces as a mapping",
        ),
    ],
)
def test_syntax_errors_in_plain_words(text: str, expected: str) -> None:
    assert problems(text) == [expected]


# --------------------------------------------------------------------------------------------
# Specs built in code


def test_spec_built_in_code() -> None:
    spec = ManifestListSpec(
        image="reg.example.com/app:1.0",
        tags=["latest"],
        manifests=[
            {
                "image": "reg.example.com/app:amd64",
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    )
    assert spec.image == Reference.parse("reg.example.com/app:1.0")
    assert spec.tags == ["latest"]
    entry = spec.manifests[0]
    assert isinstance(entry, ManifestEntrySpec)
    assert entry.platform is not None and str(entry.platform) == "linux/amd64"
    assert spec.origin == ""


def test_spec_built_from_objects() -> None:
    platform = Platform(os="linux", architecture="arm", variant="v7")
    entry = ManifestEntrySpec(image=Reference.parse("a/b:arm"), platform=platform)
    spec = ManifestListSpec(image=Reference.parse("a/b:1"), manifests=[entry])
    assert spec.manifests[0].platform == platform
    assert spec.model_dump()["manifests"][0]["platform"] == platform.to_dict()
    assert spec.model_dump()["image"] == str(Reference.parse("a/b:1"))


def test_platform_spec_in_code() -> None:
    spec = PlatformSpec(os="windows", architecture="amd64", os_version="10.0.17763.1")
    assert spec.platform.os_version == "10.0.17763.1"
    assert (
        PlatformSpec.model_validate({"os": "linux", "architecture": "arm64"}).platform.os == "linux"
    )


def test_code_built_target_gets_latest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pushmanifest")
    spec = ManifestListSpec(image="a/b", manifests=[{"image": "a/b:1"}])
    assert spec.image.tag == "latest"
    assert notices(caplog) == ["no tag on target 'a/b': pushing to 'a/b:latest'"]


def test_code_built_errors_are_spec_errors_with_paths() -> None:
    with pytest.raises(SpecError) as caught:
        ManifestListSpec(
            image="a/b:1",
            tags=[1],
            manifests=[
                {"image": "a/b:2", "platfrom": {}},
                {"image": "a/b:3", "platform": {"os": "linux"}},
            ],
        )
    assert [str(p) for p in caught.value.problems] == [
        "<spec>: 'tags' must be a list of strings: tags[0] is a number",
        "<spec>: manifests[0]: unknown key 'platfrom' — did you mean 'platform'?",
        "<spec>: manifests[1].platform: 'architecture' is required",
    ]
    assert isinstance(caught.value, InputError)


def test_code_built_duplicates_and_empty() -> None:
    entry = {"image": "a/b:2", "platform": {"os": "linux", "architecture": "amd64"}}
    with pytest.raises(SpecError) as caught:
        ManifestListSpec(image="a/b:1", manifests=[entry, dict(entry, image="a/b:3")])
    assert str(caught.value) == "<spec>: manifests[1] has platform linux/amd64, as manifests[0] has"
    with pytest.raises(SpecError) as caught:
        ManifestListSpec(image="a/b:1", manifests=[])
    assert str(caught.value) == "<spec>: manifests must not be empty: list at least one image"


def test_model_validate_raises_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        ManifestListSpec.model_validate({"image": "a/b@sha256:" + "0" * 64, "manifests": [{}]})
    found = [str(p) for p in caught.value.problems]
    assert found[0].startswith("<spec>: image: the target cannot be a digest reference")
    assert found[1] == "<spec>: manifests[0]: 'image' is required: the image for this platform"


def test_code_built_specs_do_not_expand_variables() -> None:
    with pytest.raises(SpecError) as caught:
        ManifestListSpec(image="${REPO}:1", manifests=[{"image": "a/b:1"}])
    assert str(caught.value).startswith("<spec>: image: ")


def test_specs_are_frozen() -> None:
    spec = ManifestListSpec(image="a/b:1", manifests=[{"image": "a/b:2"}])
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        spec.image = Reference.parse("c/d:1")  # type: ignore[misc]
    assert str(spec.image) == "docker.io/a/b:1"


# --------------------------------------------------------------------------------------------
# The package's walls: pure (no network layer), and paid for only by commands that read a spec


def test_the_spec_package_imports_no_network_layer() -> None:
    code = (
        "import sys\n"
        "import pushmanifest.spec\n"
        "from pushmanifest.spec import load_spec_text\n"
        "try:\n"
        "    load_spec_text('a: [')\n"  # a syntax error loads the diagnostics too
        "except pushmanifest.spec.SpecError:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore', 'h11')\n"
        "             or m.startswith(('pushmanifest.registry', 'pushmanifest.pusher',\n"
        "                              'pushmanifest.auth', 'pushmanifest.netbackend'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_version_imports_neither_the_spec_nor_pydantic() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pushmanifest", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "pushmanifest.cli" in imported  # the listing is what was imported
    assert not {m for m in imported if m.split(".")[0] in ("pydantic", "yaml")}
    assert not {m for m in imported if m.startswith("pushmanifest.spec")}
