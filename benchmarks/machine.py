"""What the report says about the machine: CPU, system, Python, registry and docker versions,
the optional packages installed, the load."""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import platform as pyplatform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from commands import find_docker


def machine() -> dict[str, str]:
    return {
        "optional": ", ".join(optional_packages()) or "none",
        "cpus": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "cpu": cpu_model(),
        "python": pyplatform.python_version(),
        "system": f"{pyplatform.system()} {pyplatform.release()}",
        "registry": first_line(["docker-registry", "--version"], "docker-registry", both=True),
        "docker": docker_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": load_average(),
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def first_line(args: Sequence[str], default: str, *, both: bool = False) -> str:
    """The first line a command prints (``both``: stderr when stdout is empty)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr) if both else out.stdout
        return text.strip().splitlines()[0]
    return default


def docker_version() -> str:
    docker = find_docker()
    return first_line([docker, "--version"], "absent") if docker else "absent"


def optional_packages() -> list[str]:
    """Installed or not, these change what a library import costs (httpcore imports trio to
    detect it, httpx its CLI's click/rich/pygments); the pushmanifest command skips them."""
    names = ("trio", "h2", "click", "rich")
    return [name for name in names if importlib.util.find_spec(name) is not None]


def load_average() -> str:
    """The 1-minute load average: other work on the machine makes the wall times noisy."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"
