"""``pushmanifest validate``: offline checks of spec files, and the pre-commit hook that runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pushmanifest.validate import validate_specs
from support.cli import run_cli

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "tests" / "data" / "specs"
EXAMPLES = ROOT / "examples"
GOOD = [
    EXAMPLES / "multi-arch-manifest.yaml",
    SPECS / "seed.yaml",
    SPECS / "multi-document.yaml",
    SPECS / "windows.yaml",
]
LINUX_AMD64 = "{os: linux, architecture: amd64}"


def run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, stdin=stdin, env=env, timeout=60)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_valid_files_give_one_summary_line() -> None:
    result = run("validate", *map(str, GOOD))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "4 files, 5 lists: valid\n"
    assert result.stderr == ""


def test_one_file_one_list_singular() -> None:
    result = run("validate", str(SPECS / "seed.yaml"))
    assert (result.returncode, result.stdout) == (0, "1 file, 1 list: valid\n")


def test_every_problem_of_every_file_at_file_line_col(tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "bad.yaml",
        "image: a/b:1\n"
        "manifests:\n"
        "  - image: a/b:amd64\n"
        "    platform: {os: linux, architecture: amd64}\n"
        "  - image: 'a/b:bad tag'\n"
        "    platform: {os: linux, architecture: amd64}\n"
        "  - image: a/c:x\n"
        "    platfrom: {os: linux, architecture: arm64}\n",
    )
    result = run("validate", str(SPECS / "seed-broken.yaml"), bad, str(SPECS / "seed.yaml"))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{SPECS / 'seed-broken.yaml'}:18:14: 'platform:' is indented")
    assert lines[1].startswith(f"{bad}:5:12: manifests[1].image: ") and "bad tag" in lines[1]
    assert lines[2].startswith(f"{bad}:8:5: ") and "platform" in lines[2]
    assert len(lines) == 3
    assert all(": " in line for line in lines)


def test_duplicate_platforms_and_keys(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "dup.yaml",
        "image: a/b:1\n"
        "image: a/b:2\n"
        "manifests:\n"
        "  - {image: a/b:x, platform: {os: linux, architecture: amd64}}\n"
        "  - {image: a/b:y, platform: {os: linux, architecture: x86_64}}\n",
    )
    result = run("validate", spec)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{spec}:2:1: key 'image' appears twice")
    assert any(line.startswith(f"{spec}:5:") and "linux/amd64" in line for line in lines)


def test_a_tag_pushed_by_two_lists_or_twice_by_one(tmp_path: Path) -> None:
    entry = "manifests: [{image: a/b:x, platform: {os: linux, architecture: amd64}}]\n"
    first = write(tmp_path, "one.yaml", "image: r.example/a/b:1\n" + entry)
    second = write(tmp_path, "two.yaml", "# another\nimage: r.example/a/b:2\ntags: ['1']\n" + entry)
    twice = write(tmp_path, "three.yaml", "image: r.example/a/c:1\ntags: [x, x]\n" + entry)
    result = run("validate", first, second, twice)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{second}:2:1: r.example/a/b:1 is pushed by the list at {first}:1 too: one tag, one "
        "list (the last pushed would win)",
        f"{twice}:1:1: the list pushes r.example/a/c:x twice",
    ]
    # The same file named twice is one file, not two lists pushing the same tags.
    again = run("validate", first, first)
    assert (again.returncode, again.stdout) == (0, "1 file, 1 list: valid\n")


def test_unset_variables_are_problems_unless_allowed() -> None:
    spec = str(EXAMPLES / "dockerhub" / "multi-arch-manifest.yaml")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_REPO"}
    strict = run("validate", spec, env=env)
    assert strict.returncode == 2
    assert strict.stderr.splitlines()[0] == (
        f"{spec}:3:8: image: ${{DOCKER_REPO}} is not set: export it, or write "
        "${DOCKER_REPO:-default}"
    )
    allowed = run("validate", "--allow-unset-env", spec, env=env)
    assert (allowed.returncode, allowed.stdout, allowed.stderr) == (
        0,
        "1 file, 1 list: valid\n",
        "",
    )
    with_value = run("validate", spec, env={**env, "DOCKER_REPO": "index.docker.io/me/app"})
    assert with_value.returncode == 0, with_value.stderr


@pytest.mark.usefixtures("yaml_loader")  # libyaml's parser and the pure loader
@pytest.mark.parametrize(
    "image",
    [
        "${REGISTRY}/app:${TAG}",  # a host and a tag
        "${IMAGE}",  # a whole reference
        "app@${DIGEST}",  # a whole digest
        "app@sha256:${HEX}",  # a digest's hex
        "${REGISTRY}/app@${DIGEST}",  # one of each: every combination is tried
    ],
)
def test_unset_variables_may_stand_anywhere(image: str) -> None:
    text = f"image: a/b:1\nmanifests: [{{image: '{image}', platform: {LINUX_AMD64}}}]\n"
    report = validate_specs(["-"], env={}, allow_unset_env=True, read_stdin=lambda: text)
    assert report.problems == []
    assert report.lists == 1
    strict = validate_specs(["-"], env={}, read_stdin=lambda: text)
    assert len(strict.problems) == 1 and "not set" in strict.problems[0].message


@pytest.mark.usefixtures("yaml_loader")  # libyaml's parser and the pure loader
@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("a/b:bad ${TAG}", "bad unset"),  # the rest of the value is still checked
        ("a/b:${TAG:-bad tag}", "bad tag"),  # a default is used, and checked
        ("a/B:${TAG}", "lowercase"),
    ],
)
def test_allowing_unset_variables_still_checks_the_rest(image: str, expected: str) -> None:
    text = f"image: '{image}'\nmanifests: [{{image: a/b:x, platform: {LINUX_AMD64}}}]\n"
    report = validate_specs(["-"], env={}, allow_unset_env=True, read_stdin=lambda: text)
    assert [(p.file, p.line, p.column) for p in report.problems] == [("<stdin>", 1, 8)]
    assert expected in report.problems[0].message


@pytest.mark.usefixtures("yaml_loader")  # libyaml's parser and the pure loader
def test_a_default_is_used_for_an_unset_variable_with_allow_unset_env() -> None:
    text = "image: 'a/b:${TAG:-1.0}'\nmanifests: [{image: a/b:x}]\n"
    report = validate_specs(["-"], env={}, allow_unset_env=True, read_stdin=lambda: text)
    assert report.problems == []


def test_stdin_and_unreadable_files(tmp_path: Path) -> None:
    result = run("validate", "-", stdin=(SPECS / "seed.yaml").read_text())
    assert (result.returncode, result.stdout) == (0, "1 file, 1 list: valid\n")
    missing = str(tmp_path / "missing.yaml")
    result = run("validate", missing, str(SPECS / "seed.yaml"))
    assert result.returncode == 2
    assert result.stderr == f"{missing}:1:1: cannot read the file: No such file or directory\n"


def test_usage_errors_exit_2() -> None:
    result = run("validate")
    assert result.returncode == 2
    assert "SPEC" in result.stderr
    assert "validate SPEC" in run("--help").stdout


def test_validate_never_imports_httpx(tmp_path: Path) -> None:
    """The hook runs offline on every commit: no network layer is even imported."""
    spec = write(tmp_path, "bad.yaml", "image: a/b:1\nmanifests: [{image: 'a/b:bad tag'}]\n")
    for args in (["validate", str(SPECS / "seed.yaml")], ["validate", spec]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "pushmanifest", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        imported = [
            line.rsplit("|", 1)[-1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:")
        ]
        assert "pushmanifest.validate" in imported  # the check sees the command's imports
        assert "pydantic" in imported
        network = [m for m in imported if m.split(".")[0] in ("httpx", "httpcore", "anyio", "h11")]
        assert network == []


# --------------------------------------------------------------------------------------------
# The pre-commit hook


def _pre_commit() -> list[str]:
    try:
        import pre_commit  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("pre-commit is not installed: pip install -e '.[test]'")
        pytest.skip("pre-commit is not installed (pip install pre-commit, or the test extra)")
    return [sys.executable, "-m", "pre_commit"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def test_pre_commit_try_repo(tmp_path: Path) -> None:
    """The hook as a user's pre-commit runs it: installed by pip from this repository."""
    pre_commit = _pre_commit()
    if shutil.which("git") is None:
        pytest.fail("git is needed to run pre-commit")
    repo = tmp_path / "user-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    spec = (EXAMPLES / "dockerhub" / "multi-arch-manifest.yaml").read_text()  # ${DOCKER_REPO}
    write(repo, "multi-arch-manifest.yaml", spec)
    write(repo, "deploy/app.multiarch.yml", (SPECS / "seed-broken.yaml").read_text())
    write(repo, "k8s/deployment-manifest.yaml", "apiVersion: apps/v1\nkind: Deployment\n")
    _git(repo, "add", ".")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DOCKER_REPO")}
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def try_repo() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *pre_commit,
                "try-repo",
                str(ROOT),
                "pushmanifest-validate",
                "--all-files",
                "--verbose",
                "--color",
                "never",
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
        )

    result = try_repo()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "deploy/app.multiarch.yml:18:14: 'platform:' is indented" in output
    assert "multi-arch-manifest.yaml:" not in output  # valid: ${DOCKER_REPO} may be unset
    assert "k8s/" not in output  # not a spec name

    (repo / "deploy" / "app.multiarch.yml").write_text((SPECS / "seed.yaml").read_text())
    _git(repo, "add", ".")
    result = try_repo()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 files, 2 lists: valid" in output
