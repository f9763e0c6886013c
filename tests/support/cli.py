"""The CLI as a subprocess: one runner for every test file (``python -m pushmanifest ...``).

``run_cli(*args)`` runs ``sys.executable -m pushmanifest ARGS`` with ``stdin`` as its input and
returns the :class:`subprocess.CompletedProcess` (text, or bytes with ``binary=True``: ``inspect
--raw`` must be byte-exact). The child inherits this process's environment (so ``PYTHONPATH``
points it at the code under test), and by default it is kept away from the developer's Docker
set-up: ``DOCKER_*`` variables are dropped and ``HOME`` is ``cwd`` (or the current directory), so
``~/.docker/config.json`` is never read. ``hermetic=False`` passes the environment unchanged.

``on_start(pid)`` is called once the process has started (a :class:`~support.proxy.WaveGate`
watches it). ``python_args`` go before ``-m`` (e.g. ``("-X", "importtime")``), ``cli_args``
after ``pushmanifest`` and before ``args`` (e.g. ``("--debug",)``). ``timeout`` bounds the run
generously: only a hang reaches it.

The fixture ``cli`` (in conftest.py) is this function.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Union

__all__ = ["cli_env", "run_cli", "run_watched"]


def cli_env(
    cwd: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    *,
    hermetic: bool = True,
) -> dict[str, str]:
    """The child's environment (see the module text); ``env`` is added last."""
    if hermetic:
        full = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        full["HOME"] = str(cwd or Path.cwd())  # never the developer's ~/.docker
    else:
        full = dict(os.environ)
    full.update(env or {})
    return full


def run_cli(
    *args: str,
    stdin: str = "",
    cwd: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    hermetic: bool = True,
    binary: bool = False,
    timeout: float = 120,
    python_args: Sequence[str] = (),
    cli_args: Sequence[str] = (),
    on_start: Optional[Callable[[int], None]] = None,
) -> subprocess.CompletedProcess[Any]:
    command = [sys.executable, *python_args, "-m", "pushmanifest", *cli_args, *args]
    full_env = cli_env(cwd, env, hermetic=hermetic)
    data: Union[str, bytes] = stdin.encode() if binary else stdin
    if on_start is None:
        return subprocess.run(
            command,
            input=data,
            capture_output=True,
            text=not binary,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
        )
    return run_watched(
        command, data, env=full_env, cwd=cwd, timeout=timeout, text=not binary, on_start=on_start
    )


def run_watched(
    command: Sequence[str],
    data: Union[str, bytes],
    *,
    env: Mapping[str, str],
    timeout: float,
    on_start: Callable[[int], None],
    cwd: Optional[Path] = None,
    text: bool = True,
) -> subprocess.CompletedProcess[Any]:
    """Run ``command`` with ``data`` as its input, telling ``on_start`` its pid once it has
    started (a :class:`~support.proxy.WaveGate` watches it); killed if anything goes wrong."""
    with subprocess.Popen(
        list(command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        env=dict(env),
        cwd=cwd,
    ) as process:
        try:
            on_start(process.pid)
            stdout, stderr = process.communicate(data, timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)
