"""inspect on a terminal prints whole digests, as on a pipe: a digest is copied to be pasted
(``cosign sign NAME@DIGEST``, ``docker pull NAME@DIGEST``), and a shortened one is useless there.
docker's ``image ls`` shortens IDs on a terminal; ``docker buildx imagetools inspect`` and
``docker manifest inspect`` do not, and neither does pushmanifest.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pushmanifest
from pushmanifest.fromargs import spec_from_args
from support.cli import cli_env
from support.images import read_manifest, seed_platforms

pytestmark = pytest.mark.registry


def run_on_a_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """The CLI with its stdout on a pseudo-terminal; what it printed there."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pushmanifest", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=cli_env(cwd),
        cwd=cwd,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError as exc:  # EIO: the terminal's other end is closed (the process ended)
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    return process.returncode, b"".join(chunks).decode().replace("\r\n", "\n")


def test_inspect_on_a_terminal_prints_whole_digests(open_registry: Any, tmp_path: Path) -> None:
    host = open_registry.host
    seeded = seed_platforms(
        open_registry, "inspect/tty", [("amd64", "amd64", ""), ("arm64", "arm64", "")]
    )
    spec = spec_from_args(
        "linux/amd64,linux/arm64", f"{host}/inspect/tty:ARCH", f"{host}/inspect/tty:list"
    )
    pushmanifest.push(spec)
    digest = read_manifest(open_registry, "inspect/tty", "list")[2]

    status, out = run_on_a_terminal("inspect", f"{host}/inspect/tty:list", cwd=tmp_path)

    assert status == 0
    assert f"Digest:      {digest}\n" in out
    for image in seeded.values():
        assert image.digest in out
    # No digest anywhere is cut short (sha256: and fewer than 64 hex digits).
    assert not re.search(r"sha256:[0-9a-f]{1,63}(?![0-9a-f])", out), out
