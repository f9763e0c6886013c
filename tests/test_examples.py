"""The examples the README points to run as documented, against a real registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from support.images import read_manifest, seed_image

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_script_pushes_and_reads_back() -> None:
    """``examples/quickstart.sh``, word for word as the README gives it."""
    result = subprocess.run(
        ["bash", "examples/quickstart.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [digest_line] = [ln for ln in result.stdout.splitlines() if ln.startswith("Digest: ")]
    assert digest_line.endswith(" 1316")  # the size the README shows for the seed's list
    assert "linux/arm64/v8" in result.stdout
    assert "async rerun: same digest True, tags written ()" in result.stdout


def test_library_example_against_a_registry_holding_the_quickstarts_images(
    open_registry: Any,
) -> None:
    for tag, arch, variant in (("amd64", "amd64", ""), ("arm64v8", "arm64", "v8")):
        seed_image(open_registry, "demo/compose-updater", tag, architecture=arch, variant=variant)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library_push.py"), open_registry.host],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [pushed] = [ln for ln in result.stdout.splitlines() if ln.startswith("pushed ")]
    digest = pushed.split()[1]
    for tag in ("1.4", "1", "latest"):
        assert read_manifest(open_registry, "demo/app", tag)[2] == digest
    assert "async rerun: same digest True, tags written ()" in result.stdout


def test_library_example_says_what_it_needs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library_push.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "usage:" in result.stderr and "REGISTRY" in result.stderr
