"""The Docker Hub example hook itself, unchanged, as Docker Hub runs it (issue 9, points 1 and 2).

Docker Hub builds each architecture separately and runs ``hooks/post_push`` as each finishes, with
``DOCKER_REPO`` set and the build's login in the docker config. Here: a token-auth registry (the
token server speaks auth.docker.io's protocol), the login in a ``DOCKER_CONFIG`` directory, and
the four seed architectures pushed one at a time, the hook run after each.

Offline-safe: the hook installs a wheel of this checkout (``PUSHMANIFEST_PACKAGE``) into the
private virtual environment it creates itself, with ``PIP_NO_INDEX`` so pip never downloads;
the dependencies (httpx, pyyaml, pydantic) come from the test interpreter's site-packages on
``PYTHONPATH``, where pip finds them already satisfied. Where the machine has Debian's
externally-managed python3, the hook runs with that one, as on today's builders.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from support.images import SPEC_PLATFORMS, read_manifest, seed_image

pytestmark = pytest.mark.registry

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "examples" / "dockerhub" / "hooks" / "post_push"
DEBIAN_PYTHON = Path("/usr/bin/python3")


def _externally_managed(python: Path) -> bool:
    probe = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and (Path(probe.stdout.strip()) / "EXTERNALLY-MANAGED").exists()


def _has_venv(python: Path) -> bool:
    probe = [str(python), "-c", "import venv, ensurepip"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def builder_python() -> Path:
    """Debian's externally-managed python3 where there is one (today's builders), else ours."""
    if DEBIAN_PYTHON.exists() and _externally_managed(DEBIAN_PYTHON) and _has_venv(DEBIAN_PYTHON):
        version = subprocess.run(
            [str(DEBIAN_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if version == str(sys.version_info[:2]):  # our site-packages must suit it
            return DEBIAN_PYTHON
    return Path(sys.executable)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout (a copy is built: the checkout stays clean).

    Offline where the build backend pyproject.toml asks for is installed; otherwise with pip's
    isolated build, which fetches that backend from PyPI (the only network the tests use, as in
    tests/test_packaging.py). The hook's own run never downloads (PIP_NO_INDEX).
    """
    base = tmp_path_factory.mktemp("checkout")
    source = base / "pushmanifest"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    dist = base / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    errors = []
    offline = ("--no-build-isolation", "--no-index")
    for options in (offline, ()):
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *options]
        build = subprocess.run(
            [*command, "-w", str(dist), str(source)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        if build.returncode == 0:
            return next(dist.glob("pushmanifest-*.whl"))
        errors.append(f"pip wheel {' '.join(options)}: {build.stderr.strip()[-500:]}")
    pytest.fail("cannot build a wheel of the checkout:\n" + "\n".join(errors))


def hook_env(tmp_path: Path, python: Path, server: Any, user: str, wheel: Path) -> dict[str, str]:
    """What Docker Hub gives the hook (DOCKER_REPO, a logged-in docker config), and no more."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(python)
    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    login = base64.b64encode(f"{user}:{server.users[user]}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {server.host: {"auth": login}}}))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "DOCKER_CONFIG": str(config),
        "DOCKER_REPO": f"{server.host}/{user}/app",
        "PUSHMANIFEST_PACKAGE": str(wheel),
        "PUSHMANIFEST_VENV": str(tmp_path / "venv"),
        "PIP_NO_INDEX": "1",
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
    }


def run_hook(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HOOK)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def read_list(server: Any, user: str) -> tuple[dict[str, Any], str]:
    body, _, digest = read_manifest(
        server, f"{user}/app", "latest", username=user, password=server.users[user]
    )
    return json.loads(body), digest


def test_old_hook_install_is_refused_by_an_externally_managed_python(
    builder_python: Path, wheel: Path, tmp_path: Path
) -> None:
    """Why the hook changed: `pip install --user` on Debian 12 / Ubuntu 24.04's python3."""
    if not _externally_managed(builder_python):
        pytest.skip(f"{builder_python} is not externally managed on this machine")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PIP_NO_INDEX": "1"}
    refused = subprocess.run(
        [str(builder_python), "-m", "pip", "install", "--user", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "externally-managed-environment" in refused.stderr


def test_hook_after_each_architecture_build(
    token_registry: Any, builder_python: Path, wheel: Path, tmp_path: Path
) -> None:
    """Four builds finishing one at a time, the hook after each: every run exits 0, each adds
    its architecture, the last leaves the full list; a rebuild replaces its entry in place and
    a rerun changes nothing."""
    user = "alice"
    repo = f"{user}/app"
    env = hook_env(tmp_path, builder_python, token_registry, user, wheel)
    password = token_registry.users[user]
    context = tmp_path / "build-context"  # Docker Hub runs hooks in the build context
    context.mkdir()
    pushed: dict[str, Any] = {}
    for tag, platform in SPEC_PLATFORMS.items():
        os_, arch, *variant = platform.split("/")
        pushed[tag] = seed_image(
            token_registry,
            repo,
            tag,
            os=os_,
            architecture=arch,
            variant=variant[0] if variant else "",
            username=user,
            password=password,
        )
        result = run_hook(env, context)
        assert result.returncode == 0, f"after {tag}:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        data, digest = read_list(token_registry, user)
        assert [e["digest"] for e in data["manifests"]] == [p.digest for p in pushed.values()]
        assert f"Digest: {digest} " in result.stdout
    # The venv is the hook's own: pushmanifest was installed into it from the wheel.
    venv_python = tmp_path / "venv" / "bin" / "python"
    where = subprocess.run(
        [str(venv_python), "-c", "import pushmanifest; print(pushmanifest.__file__)"],
        capture_output=True,
        text=True,
        env={"PATH": env["PATH"], "PYTHONPATH": env["PYTHONPATH"]},
    )
    assert where.stdout.startswith(str(tmp_path / "venv")), where

    data, full = read_list(token_registry, user)
    platforms = [e["platform"] for e in data["manifests"]]
    assert platforms == [p.platform for p in pushed.values()]

    # A rerun of the last build: nothing changes.
    rerun = run_hook(env, context)
    assert rerun.returncode == 0, rerun.stderr
    assert read_list(token_registry, user)[1] == full

    # A rebuild of arm32v7: its entry replaced where it stands.
    rebuilt = seed_image(
        token_registry,
        repo,
        "arm32v7",
        architecture="arm",
        variant="v7",
        username=user,
        password=password,
    )
    again = run_hook(env, context)
    assert again.returncode == 0, again.stderr
    data, _ = read_list(token_registry, user)
    pushed["arm32v7"] = rebuilt
    assert [e["digest"] for e in data["manifests"]] == [p.digest for p in pushed.values()]


def test_hook_uses_a_container_only_without_a_usable_python(tmp_path: Path) -> None:
    """No python3 that can make a virtual environment: the container route, with the build's
    docker config read-only and the same arguments. (docker is a stand-in that records its
    arguments: what is checked is the hook's choice and command line, not docker.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text("#!/bin/sh\nexit 1\n")  # a python3 that cannot do it
    record = tmp_path / "docker-args"
    (bin_dir / "docker").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    for program in bin_dir.iterdir():
        program.chmod(0o755)
    config = tmp_path / "docker-config"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(config),
        "DOCKER_REPO": "index.docker.io/someone/app",
        "PUSHMANIFEST_PACKAGE": "pushmanifest==0.1.0",
        "PUSHMANIFEST_VENV": str(tmp_path / "venv"),
    }
    result = run_hook(env, tmp_path)
    assert result.returncode == 0, result.stderr
    args = record.read_text().splitlines()
    assert f"{config}:/root/.docker:ro" in args
    assert f"{HOOK.parent.parent}:/src:ro" in args
    assert args[-5:] == [
        "pushmanifest==0.1.0",
        "from-spec",
        "--append",
        "--ignore-missing",
        "multi-arch-manifest.yaml",
    ]
    assert "DOCKER_REPO" in args

    # A path cannot go into the container: a clear error, not a half-working run.
    env["PUSHMANIFEST_PACKAGE"] = str(tmp_path)
    refused = run_hook(env, tmp_path)
    assert refused.returncode == 1
    assert "virtual environment" in refused.stderr
