"""The TLS section: keep-alive and HTTP/2 against the TLS registry (htpasswd) behind a
:class:`~tcpdelay.TcpDelay` forwarder that adds a round-trip time (not in ``--quick``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from commands import HERE, SUBPROCESS_TIMEOUT, log, subprocess_env
from measure import Cell, Sample, ms, seed_sources
from scenarios import TLS_CLIENTS, TLS_PUSHES, TLS_REPOS, TLS_RTTS, spec_document
from tcpdelay import TcpDelay

from support.registry import RegistryServer, start_tls_registry

if TYPE_CHECKING:
    from bench import Bench

USER = "alice"


def tls_section(bench: Bench) -> None:
    clients = TLS_CLIENTS
    if importlib.util.find_spec("h2") is None:
        clients = [c for c in TLS_CLIENTS if "--http2" not in c[1]]
        bench.note("h2 is not installed: the HTTP/2 rows are skipped (pip install h2)")
    log("TLS registry")
    server = start_tls_registry(bench.workdir / "tls")
    try:
        seed_sources(server, TLS_REPOS, 8, USER)
        runs = [0]
        for rtt in TLS_RTTS:
            with TcpDelay(server.host, rtt=rtt) as fwd:
                for case, lists in TLS_PUSHES:
                    for label, variant in clients:
                        log(f"TLS: rtt {ms(rtt)}, {case}, {label}")
                        cell = Cell()
                        for _ in range(min(bench.runs, 3)):
                            runs[0] += 1
                            spec = write_spec(bench.workdir, fwd.host, lists, runs[0])
                            if not push_once(cell, server, fwd, spec, variant, bench.workdir):
                                break
                        bench.results.tls.append((case, label, rtt, cell))
    finally:
        server.stop()


def write_spec(workdir: Path, host: str, lists: int, run: int) -> Path:
    docs = [spec_document(host, repo, f"run{run}", 8) for repo in TLS_REPOS[:lists]]
    spec = workdir / f"tls-{run}.yaml"
    spec.write_text("---\n".join(docs))
    return spec


def push_once(
    cell: Cell,
    server: RegistryServer,
    fwd: TcpDelay,
    spec: Path,
    variant: Sequence[str],
    workdir: Path,
) -> bool:
    """One timed push through ``fwd`` into ``cell``; whether it succeeded."""
    args = [sys.executable, str(HERE / "variant.py"), *variant, "--", "from-spec"]
    args += ["--ca-file", str(server.ca_file), "--username", USER, "--password-stdin", str(spec)]
    fwd.reset()
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            args,
            input=server.users[USER] + "\n",
            capture_output=True,
            text=True,
            env=subprocess_env(workdir),
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.SubprocessError as exc:
        cell.error = str(exc)
        return False
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        cell.error = proc.stderr.strip()[-300:]
        log(f"  failed: {cell.error}")
        return False
    cell.samples.append(Sample(wall, 0, 0, fwd.connections, 0))
    return True
