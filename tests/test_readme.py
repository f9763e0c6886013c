"""The README is true word for word: its examples are run, its tables checked against the code.

* Every ``console`` block is run: each ``$ pushmanifest …`` command against a real registry
  seeded with the images it names (hosts rewritten to the test registry's), and what it printed
  compared with what the README shows. In the README's output, ``…`` stands for any text, and a
  whole digest (``sha256:`` and 64 hex digits) for any digest (tiny test images get new digests
  each run); everything else, sizes included, must match.
* Every ``sh``/``bash`` block parses (``bash -n``); every spec in a ``yaml`` block loads.
* The option table lists every option of every command, and nothing else.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli

from support.images import seed_image

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = [
    (m.group(1), m.group(2), README.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(README)
]
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
SEED_PLATFORMS = [("amd64", "amd64", ""), ("arm32v6", "arm", "v6"), ("arm32v7", "arm", "v7"),
                  ("arm64v8", "arm64", "v8")]  # fmt: skip


def blocks(*languages: str) -> list[Any]:
    return [
        pytest.param(text, id=f"README.md:{line}")
        for language, text, line in BLOCKS
        if language in languages
    ]


def commands(text: str) -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of a console block (continuations joined), each with its output."""
    found: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("$ "):
            command = lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            found.append((command, []))
        elif found:
            found[-1][1].append(lines[i])
        i += 1
    return found


def line_pattern(line: str) -> str:
    """A regular expression for one line of the README's output: ``…`` any text, a digest any."""
    parts = []
    for part in line.rstrip().split("…"):
        pieces = DIGEST.split(part)
        parts.append(DIGEST.pattern.join(re.escape(piece) for piece in pieces))
    return ".*".join(parts) + r"[ ]*\n"


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, where a line of ``…`` alone stands for any number of lines."""
    pattern = "".join(
        r"(?:.*\n)*" if line.strip() == "…" else line_pattern(line) for line in expected
    )
    return re.fullmatch(pattern, "".join(f"{ln}\n" for ln in actual)) is not None


@pytest.fixture(scope="module")
def readme_registry(open_registry: Any) -> Any:
    """The images the README's examples name, in the test registry."""
    for repository in ("demo/compose-updater", "myuser/compose-updater"):
        for tag, arch, variant in SEED_PLATFORMS:
            seed_image(open_registry, repository, tag, architecture=arch, variant=variant)
    for os_arch_variant in ("linux-amd64", "linux-arm-v7", "linux-arm64-v8"):
        _, arch, *variant = os_arch_variant.split("-")
        seed_image(
            open_registry,
            "myuser/app",
            os_arch_variant,
            architecture=arch,
            variant="".join(variant),
        )
    # What the inspect example reads: the seed's list at demo/app:latest.
    spec = (ROOT / "examples" / "multi-arch-manifest.yaml").read_text()
    spec = spec.replace("demo/compose-updater:latest", "demo/app:latest")
    result = run_cli("from-spec", "-", stdin=spec, env={"REGISTRY": open_registry.host})
    assert result.returncode == 0, result.stderr
    return open_registry


@pytest.mark.parametrize("text", blocks("console"))
def test_console_block_is_what_the_command_prints(
    text: str, readme_registry: Any, tmp_path: Path
) -> None:
    host = readme_registry.host
    # The files the README's commands name, where a user would have them.
    shutil.copy(ROOT / "tests" / "data" / "specs" / "seed-broken.yaml", tmp_path / "broken.yaml")
    seed = (ROOT / "examples" / "multi-arch-manifest.yaml").read_text()
    (tmp_path / "multi-arch-manifest.yaml").write_text(
        seed.replace("${REGISTRY:-127.0.0.1:5000}", host)
    )
    for command, expected in commands(text):
        words = command.split()
        assert words[0] == "pushmanifest", command
        # Images on Docker Hub (myuser/...) and the README's local registry: the test's.
        args = [
            re.sub(r"^myuser/", f"{host}/myuser/", w.replace("127.0.0.1:5000", host))
            for w in words[1:]
        ]
        cwd = ROOT if any(w.startswith(("examples/", "tests/")) for w in args) else tmp_path
        result = run_cli(*args, cwd=cwd)
        actual = (result.stdout + result.stderr).replace(host, "127.0.0.1:5000").splitlines()
        actual = [ln for ln in actual if not ln.startswith("pushed sha256:")]  # notices
        assert matches(expected, actual), (
            f"$ {command}\n--- README shows:\n" + "\n".join(expected)
            + "\n--- the command printed:\n" + "\n".join(actual)
        )  # fmt: skip


@pytest.mark.parametrize("text", blocks("sh", "bash"))
def test_shell_block_parses(text: str) -> None:
    result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("text", [p for p in blocks("yaml") if "manifests:" in p.values[0]])
def test_spec_block_loads(text: str) -> None:
    from pushmanifest.spec import load_spec_text

    # The README shortens digests as "sha256:…"; give them a whole one.
    text = text.replace("sha256:…", "sha256:" + "0" * 64)
    if "\nname:" in text or text.startswith("name:"):
        pytest.skip("a workflow, not a spec")
    assert load_spec_text(text, "README.md", env={"DOCKER_REPO": "user/app"})


def test_option_table_lists_every_option_and_no_other() -> None:
    from pushmanifest import cli

    documented: set[str] = set()
    for row in re.findall(r"^\| (`--.*?) \| ", README, re.MULTILINE):  # an option row's 1st cell
        documented |= set(re.findall(r"`(--[a-z-]+)", row))
    options: set[str] = set()
    for make in cli._PARSERS.values():
        for action in make()._actions:
            options |= {o for o in action.option_strings if o.startswith("--")}
    options -= {"--help", "--version"}
    assert sorted(options - documented) == [], "options the README's table does not list"
    assert sorted(documented - options) == [], "options the README lists that do not exist"


def test_readme_install_commands_use_a_virtual_environment() -> None:
    """Users' Pythons are often externally managed: no ``--user``, no bare system pip."""
    for language, text, line in BLOCKS:
        if language not in ("sh", "bash", "console", "yaml"):
            continue
        for command in text.splitlines():
            assert "--user" not in command, f"README.md:{line}: {command}"
            if re.search(r"(^|\s)(python3 -m )?pip install", command):
                assert ".venv" in command or "venv" in text or "pipx" in text, (
                    f"README.md:{line}: a pip install outside a virtual environment: {command}"
                )
