"""Running a command as a subprocess: its environment (this checkout's src/, our own docker
config), its output or a clear error, its process id for a WaveGate, its wall time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUBPROCESS_TIMEOUT = 300


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_docker() -> Optional[str]:
    found = shutil.which("docker")
    if found:
        return found
    return "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else None


def find_script() -> Optional[str]:
    """The installed console script: next to this interpreter first (a pyenv shim on PATH is a
    bash script that would add its own start-up to the measurement)."""
    beside = Path(sys.executable).with_name("pushmanifest")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("pushmanifest")


def subprocess_env(config_dir: Optional[Path] = None) -> dict[str, str]:
    """The environment of every measured command: this checkout's src first, no stray docker
    settings, HOME and DOCKER_CONFIG pointing at our own config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if config_dir is not None:
        env["HOME"] = str(config_dir)
        env["DOCKER_CONFIG"] = str(config_dir)
    return env


def run_checked(
    args: Sequence[str],
    env: dict[str, str],
    what: str,
    stdin: str = "",
    on_start: Optional[Callable[[Optional[int]], None]] = None,
) -> str:
    """Run ``args``; its output, or RuntimeError. ``on_start(pid)`` once it has started (a
    WaveGate watches it), ``on_start(None)`` once it has ended."""
    if on_start is None:
        proc = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    else:
        proc = run_watched(args, env, stdin, on_start)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def run_watched(
    args: Sequence[str], env: dict[str, str], stdin: str, on_start: Callable[[Optional[int]], None]
) -> subprocess.CompletedProcess[str]:
    from support import cli as support_cli  # tests/ is on sys.path once run.py has set it

    try:
        return support_cli.run_watched(
            args, stdin, env=env, timeout=SUBPROCESS_TIMEOUT, on_start=on_start
        )
    finally:
        on_start(None)


def timed(args: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    run_checked(args, env, " ".join(args[:4]))
    return time.perf_counter() - start
