"""Packaging as a user meets it: ``python -m build``, ``twine check``, a wheel installed in a venv.

The build runs as a user's does: in an isolated environment with setuptools from PyPI, on a copy
of the tree (building writes ``*.egg-info`` next to the sources).
"""

from __future__ import annotations

import email
import email.message
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import pushmanifest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "multi-arch-manifest.yaml"
_NOT_COPIED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".venv"
)


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed: pip install -e '.[test]'")
        pytest.skip(f"{module} is not installed (it is in the test extra)")


def _run(*args: object, cwd: Path | None = None, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass
class Dist:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dist]:
    _need("build")
    _need("twine")
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_COPIED)
    out = base / "dist"
    _run(sys.executable, "-m", "build", "--outdir", out, tree)
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    yield Dist(wheel=wheels[0], sdist=sdists[0])


def _metadata(dist: Dist) -> email.message.Message:
    with zipfile.ZipFile(dist.wheel) as wheel:
        name = f"pushmanifest-{pushmanifest.__version__}.dist-info/METADATA"
        return email.message_from_bytes(wheel.read(name))


def test_twine_check_passes(dist: Dist) -> None:
    output = _run(sys.executable, "-m", "twine", "check", "--strict", dist.wheel, dist.sdist)
    assert output.count("PASSED") == 2


def test_file_names_carry_the_one_version(dist: Dist) -> None:
    version = pushmanifest.__version__
    assert dist.wheel.name == f"pushmanifest-{version}-py3-none-any.whl"
    assert dist.sdist.name == f"pushmanifest-{version}.tar.gz"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert '\nversion = "' not in pyproject  # no second copy of the version
    assert 'version = { attr = "pushmanifest.__version__" }' in pyproject


def test_metadata(dist: Dist) -> None:
    meta = _metadata(dist)
    assert meta["Name"] == "pushmanifest"
    assert meta["Version"] == pushmanifest.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.9"
    assert meta["Description-Content-Type"] == "text/markdown"
    classifiers = meta.get_all("Classifier") or []
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    runtime = sorted(
        r.split(">")[0].split("<")[0].split("=")[0].strip()
        for r in meta.get_all("Requires-Dist") or []
        if "extra ==" not in r
    )
    assert runtime == ["httpx", "pydantic", "pyyaml"]


def test_wheel_ships_the_schema_the_license_and_the_command(dist: Dist) -> None:
    version = pushmanifest.__version__
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        assert (
            wheel.read("pushmanifest/spec.schema.json")
            == (ROOT / "src" / "pushmanifest" / "spec.schema.json").read_bytes()
        )
        assert "pushmanifest/py.typed" in names
        assert (
            wheel.read(f"pushmanifest-{version}.dist-info/licenses/LICENSE")
            == (ROOT / "LICENSE").read_bytes()
        )
        entry_points = wheel.read(f"pushmanifest-{version}.dist-info/entry_points.txt").decode()
    assert "pushmanifest = pushmanifest.cli:console_main" in entry_points
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]


def test_sdist_holds_what_its_tests_need(dist: Dist) -> None:
    prefix = f"pushmanifest-{pushmanifest.__version__}/"
    with tarfile.open(dist.sdist) as sdist:
        names = {n[len(prefix) :] for n in sdist.getnames()}
    assert {
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "src/pushmanifest/spec.schema.json",
        "tests/conftest.py",
        "tests/support/__init__.py",
        "tests/data/specs/seed.yaml",
        "examples/multi-arch-manifest.yaml",
        ".pre-commit-hooks.yaml",
    } <= names
    assert not [n for n in names if "__pycache__" in n]


def test_the_wheel_works_in_a_fresh_virtual_environment(dist: Dist, tmp_path: Path) -> None:
    """What pipx, uvx and the GitHub Action do: a venv of its own, dependencies from PyPI."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", dist.wheel)
    command = bin_dir / "pushmanifest"
    assert _run(command, "--version") == f"pushmanifest {pushmanifest.__version__}\n"
    assert _run(command, "validate", SPEC, cwd=tmp_path) == "1 file, 1 list: valid\n"
    shipped = _run(
        bin_dir / "python",
        "-c",
        "from importlib import resources; import sys; "
        "sys.stdout.write(resources.files('pushmanifest').joinpath('spec.schema.json')"
        ".read_text('utf-8'))",
        cwd=tmp_path,
    )
    assert _run(command, "schema", cwd=tmp_path) == shipped


def test_importing_the_package_stays_light() -> None:
    """The version lives in __init__.py, which imports nothing heavy (it is read statically)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pushmanifest; pushmanifest.__version__"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "pushmanifest" in imported
    assert not imported & {"httpx", "pydantic", "yaml", "httpcore", "anyio"}
