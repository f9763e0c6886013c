"""Issue 12's TLS rows: one list of N architectures pushed to a TLS registry, open and with token
auth (the token server over TLS too), each behind a :class:`~tcpdelay.TcpDelay` forwarder that
adds a round-trip time at the TCP level, so that DNS-free connection set-up (TCP + TLS) costs
what it would on a network: pushmanifest as it is, and pushmanifest without its warm-up (the
connections, ping and token started while the spec loads: ``variant.py --no-warmup``).

No docker rows: ``docker manifest push`` (docker 28.2) to a TLS registry on 127.0.0.1 fails
(it treats loopback registries as insecure and its PUT ends in "EOF" / "connection reset by
peer"), with ``--insecure`` and with our CA in ``SSL_CERT_FILE`` alike; ``create`` works.

In ``--quick``: 50 ms only, one run each. Results: ``Results.tls_matrix``.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from commands import HERE, SUBPROCESS_TIMEOUT, log, subprocess_env
from measure import Cell, Sample, ms, seed_sources
from scenarios import spec_document
from tcpdelay import TcpDelay

from support.certs import make_ca, make_server_cert, make_signing_key
from support.registry import RegistryServer, start_registry
from support.tokenserver import TokenServer

if TYPE_CHECKING:
    from bench import Bench

USER, PASSWORD = "alice", "tls-matrix-secret"
#: Round-trip times added at the TCP level (``--quick``: the first only).
TLS_MATRIX_RTTS = (0.05, 0.15)
#: (label, variant.py patches).
TOOLS: list[tuple[str, Sequence[str]]] = [
    ("pushmanifest", ()),
    ("pushmanifest, no warm-up", ("--no-warmup",)),
]
DOCKER_NOTE = (
    "TLS matrix: no docker rows: docker manifest push (docker 28.2) to a TLS registry on "
    "127.0.0.1 fails (EOF / connection reset: it treats loopback as insecure), with --insecure "
    "and with the CA in SSL_CERT_FILE"
)


@dataclass
class TlsSite:
    """A TLS registry behind a forwarder (and its TLS token server behind another)."""

    name: str  # "open" or "token"
    server: RegistryServer
    fwd: TcpDelay
    token_fwd: Optional[TcpDelay]
    ca_file: Path
    config_dir: Path

    @property
    def host(self) -> str:
        return self.fwd.host

    def set_rtt(self, rtt: float) -> None:
        for fwd in (self.fwd, self.token_fwd):
            if fwd is not None:
                fwd.rtt = rtt


def _serve_tls(ts: TokenServer, cert: Path, key: Path) -> None:
    """The token server over TLS (handshakes in its handler threads, not in accept)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    httpd = ts._httpd
    assert httpd is not None
    httpd.socket = context.wrap_socket(
        httpd.socket, server_side=True, do_handshake_on_connect=False
    )


@contextmanager
def tls_sites(workdir: Path) -> Iterator[dict[str, TlsSite]]:
    root = workdir / "tls-matrix"
    tls_dir = root / "tls"
    ca_file, ca_key = make_ca(tls_dir)
    files = make_server_cert(tls_dir, ca_file, ca_key, hosts=("127.0.0.1", "localhost"))
    tls = {"certificate": str(files.cert_file), "key": str(files.key_file)}
    with ExitStack() as stack:
        sites: dict[str, TlsSite] = {}
        # Open.
        server = start_registry(root / "open", kind="tls-open", tls=tls, ca_file=ca_file)
        stack.callback(server.stop)
        fwd = stack.enter_context(TcpDelay(server.host))
        sites["open"] = TlsSite("open", server, fwd, None, ca_file, _config(root / "open", None))
        # Token auth: the realm is the token server's forwarder, over TLS.
        key = make_signing_key(root / "token-key")
        ts = TokenServer(key, users={USER: PASSWORD}).start()
        stack.callback(ts.stop)
        _serve_tls(ts, files.cert_file, files.key_file)
        token_fwd = stack.enter_context(TcpDelay(f"127.0.0.1:{ts.port}"))
        auth = {
            "token": {
                "realm": f"https://{token_fwd.host}/token",
                "service": ts.service,
                "issuer": ts.issuer,
                "rootcertbundle": str(key.cert_file),
            }
        }
        server = start_registry(
            root / "token",
            kind="tls-token",
            auth=auth,
            tls=tls,
            users={USER: PASSWORD},
            token_server=ts,
            ca_file=ca_file,
        )
        stack.callback(server.stop)
        fwd = stack.enter_context(TcpDelay(server.host))
        sites["token"] = TlsSite(
            "token", server, fwd, token_fwd, ca_file, _config(root / "token", fwd.host)
        )
        yield sites


def _config(directory: Path, auth_host: Optional[str]) -> Path:
    """A docker config dir: the user's credentials for ``auth_host`` (docker and pushmanifest
    both read them from there)."""
    directory.mkdir(parents=True, exist_ok=True)
    auths = {}
    if auth_host is not None:
        auths[auth_host] = {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return directory


def tls_matrix_section(bench: Bench) -> None:
    rtts = TLS_MATRIX_RTTS[:1] if bench.quick else TLS_MATRIX_RTTS
    runs = 1 if bench.quick else min(bench.runs, 5)
    log("TLS matrix: registries")
    with tls_sites(bench.workdir) as sites:
        for name, site in sites.items():
            repo = f"{USER}/matrix" if name == "token" else "team/matrix"
            user = USER if name == "token" else None
            # The seeding client talks to the registry itself (no forwarder), trusting our CA.
            seed_sources(site.server, [repo], max(bench.sizes), user)
            for rtt in rtts:
                site.set_rtt(rtt)
                for n in bench.sizes:
                    for label, variant in TOOLS:
                        log(f"TLS matrix: {name}, rtt {ms(rtt)}, N={n}, {label}")
                        cell = Cell()
                        for run in range(runs):
                            tag = f"m{len(bench.results.tls_matrix)}-{run}"
                            if not _push(bench, site, repo, tag, n, variant, cell):
                                break
                        bench.results.tls_matrix.append((name, rtt, n, label, cell))
    bench.note(DOCKER_NOTE)


def _push(
    bench: Bench,
    site: TlsSite,
    repo: str,
    tag: str,
    n: int,
    variant: Sequence[str],
    cell: Cell,
) -> bool:
    """One timed push through the forwarder into ``cell``; whether it succeeded."""
    site.fwd.reset()
    spec = bench.workdir / f"tls-matrix-{site.name}-{tag}.yaml"
    spec.write_text(spec_document(site.host, repo, tag, n))
    args = [sys.executable, str(HERE / "variant.py"), *variant, "--", "from-spec"]
    args += ["--ca-file", str(site.ca_file), "--docker-cfg", str(site.config_dir), str(spec)]
    start = time.perf_counter()
    ok = _run(args, site.config_dir, cell)
    wall = time.perf_counter() - start
    if ok:
        cell.samples.append(Sample(wall, 0, 0, site.fwd.connections, 0))
    return ok


def _run(args: Sequence[str], config_dir: Path, cell: Cell) -> bool:
    try:
        proc = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=subprocess_env(config_dir),
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.SubprocessError as exc:
        cell.error = str(exc)
        return False
    if proc.returncode != 0:
        cell.error = proc.stderr.strip()[-300:]
        log(f"  failed: {cell.error}")
        return False
    return True
