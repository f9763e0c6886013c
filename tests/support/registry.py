"""Real CNCF distribution registries (``docker-registry serve``) on 127.0.0.1, for tests and demos.

Three set-ups, each a function returning a started :class:`RegistryServer` (also a context
manager; :meth:`RegistryServer.stop` is idempotent)::

    with start_open_registry(tmpdir) as reg:          # plain HTTP, no auth
        print(reg.url)                                 # http://127.0.0.1:PORT
    with start_token_registry(tmpdir) as reg:         # token auth, our own token server
        reg.token_server.count
    with start_tls_registry(tmpdir) as reg:           # HTTPS (our own CA) + htpasswd
        reg.ca_file

Usable outside pytest (``sys.path.insert(0, "<repo>/tests")``; ``from support.registry import
...``). Raises :class:`RegistryUnavailable` when a needed program is missing and
:class:`RegistryStartError` (with the registry's log) when it does not come up.

Each registry gets a free port, its storage, config, log and keys under ``tmpdir``; ``REGISTRY_*``
environment variables (which would override the config) are not passed on.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Optional, Union

from .certs import OpensslError, make_ca, make_server_cert, make_signing_key
from .tokenserver import DEFAULT_USERS, TokenServer

__all__ = [
    "DEFAULT_USERS",
    "INSTALL_HINT",
    "RegistryServer",
    "RegistryStartError",
    "RegistryUnavailable",
    "find_registry_binary",
    "free_port",
    "in_ci",
    "start_open_registry",
    "start_registry",
    "start_tls_registry",
    "start_token_registry",
]

PathLike = Union[str, Path]

INSTALL_HINT = (
    "install the CNCF distribution registry: apt-get install docker-registry "
    "(or set PUSHMANIFEST_TEST_REGISTRY to a registry binary)"
)
HTPASSWD_HINT = "install htpasswd: apt-get install apache2-utils"
DEFAULT_SERVICE = "pushmanifest-test-registry"
DEFAULT_ISSUER = "pushmanifest-test-token-server"
START_TIMEOUT = 30.0


class RegistryUnavailable(RuntimeError):
    """A program the registry set-up needs is not installed."""


class RegistryStartError(RuntimeError):
    """The registry did not come up; the message includes its log."""


def in_ci() -> bool:
    """True under ``CI=true`` (also ``1``/``yes``): a missing registry must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def find_registry_binary() -> str:
    """``$PUSHMANIFEST_TEST_REGISTRY`` or ``docker-registry`` on PATH (or /usr/bin)."""
    explicit = os.environ.get("PUSHMANIFEST_TEST_REGISTRY")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise RegistryUnavailable(f"PUSHMANIFEST_TEST_REGISTRY={explicit} is not executable")
        return explicit
    found = shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if os.access("/usr/bin/docker-registry", os.X_OK) else None
    )
    if not found:
        raise RegistryUnavailable(f"docker-registry not found: {INSTALL_HINT}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- config ---------------------------------------------------------------------------------------


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a YAML double-quoted scalar


def _to_yaml(data: Mapping[str, Any], indent: int = 0) -> str:
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key}:")
            lines.append(_to_yaml(value, indent + 1))
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_yaml_scalar(value)}")
    return "\n".join(lines)


def _registry_config(
    root: Path,
    port: int,
    *,
    auth: Optional[Mapping[str, Any]],
    tls: Optional[Mapping[str, str]],
    log_level: str,
) -> dict[str, Any]:
    http: dict[str, Any] = {
        "addr": f"127.0.0.1:{port}",
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls:
        http["tls"] = dict(tls)
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": log_level, "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth:
        config["auth"] = dict(auth)
    return config


# -- the handle -----------------------------------------------------------------------------------


class RegistryServer:
    """A running ``docker-registry`` (and, for token auth, its token server)."""

    def __init__(
        self,
        *,
        kind: str,
        root: Path,
        port: int,
        scheme: str,
        process: subprocess.Popen[bytes],
        log_handle: IO[bytes],
        users: Mapping[str, str],
        token_server: Optional[TokenServer] = None,
        ca_file: Optional[Path] = None,
        service: Optional[str] = None,
    ) -> None:
        self.kind = kind  #: "open", "token" or "tls" (or "AUTH+tls" combinations)
        self.root = root  #: its directory: config.yml, registry.log, storage/, keys
        self.port = port
        self.scheme = scheme  #: "http" or "https"
        self.host = f"127.0.0.1:{port}"  #: what goes into image references
        self.url = f"{scheme}://{self.host}"
        self.users: dict[str, str] = dict(users)  #: user -> password ({} when open)
        self.token_server = token_server  #: the token server (token auth), else None
        self.ca_file = ca_file  #: the CA certificate to trust (TLS), else None
        self.service = service  #: the token ``service`` (token auth), else None
        self.config_file = root / "config.yml"
        self.log_file = root / "registry.log"
        self.storage_dir = root / "storage"
        self.process = process
        self._log_handle = log_handle
        self._stopped = False
        atexit.register(self.stop)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"pid {self.process.pid}"
        return f"<RegistryServer {self.kind} {self.url} {state}>"

    @property
    def verify(self) -> Union[bool, ssl.SSLContext]:
        """For ``httpx.Client(verify=...)``: an SSL context trusting :attr:`ca_file`, or True."""
        return self.ssl_context() if self.ca_file else True

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts :attr:`ca_file` (the system CAs when there is none)."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def log(self) -> str:
        """The registry's output so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return not self._stopped and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate, wait, kill if needed; stop the token server. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        _terminate(self.process, timeout)
        with contextlib.suppress(OSError):
            self._log_handle.close()
        if self.token_server is not None:
            self.token_server.stop()

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout)


def _probe(port: int, context: Optional[ssl.SSLContext]) -> Optional[int]:
    """The status of ``GET /v2/``, or None if nothing answers yet."""
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def start_registry(
    tmpdir: PathLike,
    *,
    kind: str = "open",
    auth: Optional[Mapping[str, Any]] = None,
    tls: Optional[Mapping[str, str]] = None,
    users: Optional[Mapping[str, str]] = None,
    token_server: Optional[TokenServer] = None,
    ca_file: Optional[Path] = None,
    service: Optional[str] = None,
    log_level: str = "warn",
    timeout: float = START_TIMEOUT,
    attempts: int = 3,
) -> RegistryServer:
    """Start ``docker-registry serve`` with the given ``auth``/``tls`` config sections.

    The building block of the three ``start_*_registry`` functions. Waits until ``GET /v2/``
    answers (200 or 401); retries on another port if the chosen one was taken meanwhile.
    """
    binary = find_registry_binary()
    root = Path(tmpdir)
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    context = None
    if tls:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    last_error = ""
    for _attempt in range(max(1, attempts)):
        port = free_port()
        config = _registry_config(root, port, auth=auth, tls=tls, log_level=log_level)
        config_file = root / "config.yml"
        config_file.write_text(_to_yaml(config) + "\n")
        log_file = root / "registry.log"
        log_handle = open(log_file, "wb")  # noqa: SIM115 - closed by RegistryServer.stop
        try:
            process = subprocess.Popen(
                [binary, "serve", str(config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
                start_new_session=True,
            )
        except OSError as exc:
            log_handle.close()
            raise RegistryStartError(f"cannot run {binary}: {exc}") from exc
        server = RegistryServer(
            kind=kind,
            root=root,
            port=port,
            scheme="https" if tls else "http",
            process=process,
            log_handle=log_handle,
            users=users or {},
            token_server=token_server,
            ca_file=ca_file,
            service=service,
        )
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            status = _probe(port, context)
            if status is not None:
                break
            time.sleep(0.05)
        if status in (200, 401):
            return server
        log = server.log()
        exited = process.poll()
        # Keep the token server: it may serve the next attempt.
        server.token_server = None
        server.stop()
        if exited is not None and "address already in use" in log:
            last_error = log
            continue
        if exited is not None:
            why = f"exited with status {exited}"
        elif status is not None:
            why = f"answered GET /v2/ with HTTP {status}"
        else:
            why = f"did not answer GET /v2/ within {timeout:g}s"
        raise RegistryStartError(
            f"docker-registry ({kind}) on {server.url} {why}; config {config_file}; "
            f"log:\n{log.strip() or '(empty)'}"
        )
    raise RegistryStartError(f"docker-registry ({kind}): no free port found; log:\n{last_error}")


# -- the three set-ups ----------------------------------------------------------------------------


def start_open_registry(tmpdir: PathLike, **kwargs: Any) -> RegistryServer:
    """A registry without auth, plain HTTP."""
    return start_registry(tmpdir, kind="open", **kwargs)


def start_token_registry(
    tmpdir: PathLike,
    users: Optional[Mapping[str, str]] = None,
    *,
    public_repositories: Iterable[str] = (),
    service: str = DEFAULT_SERVICE,
    issuer: str = DEFAULT_ISSUER,
    expires_in: int = 300,
    token_lifetime: Optional[int] = None,
    delay: float = 0.0,
    **kwargs: Any,
) -> RegistryServer:
    """A registry with token auth, plain HTTP, and our token server (``.token_server``)."""
    find_registry_binary()
    root = Path(tmpdir)
    try:
        key = make_signing_key(root / "token")
    except OpensslError as exc:
        raise RegistryUnavailable(str(exc)) from exc
    users = dict(DEFAULT_USERS if users is None else users)
    ts = TokenServer(
        key,
        service=service,
        issuer=issuer,
        users=users,
        public_repositories=public_repositories,
        expires_in=expires_in,
        token_lifetime=token_lifetime,
        delay=delay,
    ).start()
    auth = {
        "token": {
            "realm": ts.realm,
            "service": service,
            "issuer": issuer,
            "rootcertbundle": str(key.cert_file),
        }
    }
    try:
        return start_registry(
            root, kind="token", auth=auth, users=users, token_server=ts, service=service, **kwargs
        )
    except BaseException:
        ts.stop()
        raise


def make_htpasswd(path: PathLike, users: Mapping[str, str]) -> Path:
    """An htpasswd file (bcrypt, as distribution requires) via ``htpasswd -Bbn``."""
    exe = shutil.which("htpasswd")
    if exe is None:
        raise RegistryUnavailable(f"htpasswd not found: {HTPASSWD_HINT}")
    lines = []
    for user, password in users.items():
        proc = subprocess.run(
            [exe, "-Bbn", user, password], capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise RegistryStartError(f"htpasswd -Bbn {user} failed: {proc.stderr.strip()}")
        lines.append(proc.stdout.strip())
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def start_tls_registry(
    tmpdir: PathLike,
    users: Optional[Mapping[str, str]] = None,
    *,
    hosts: Iterable[str] = ("127.0.0.1", "localhost"),
    **kwargs: Any,
) -> RegistryServer:
    """A registry over HTTPS (certificate from our own CA: ``.ca_file``) with htpasswd auth."""
    find_registry_binary()
    root = Path(tmpdir)
    users = dict(DEFAULT_USERS if users is None else users)
    tls_dir = root / "tls"
    try:
        ca_file, ca_key = make_ca(tls_dir)
        files = make_server_cert(tls_dir, ca_file, ca_key, hosts=tuple(hosts))
    except OpensslError as exc:
        raise RegistryUnavailable(str(exc)) from exc
    htpasswd = make_htpasswd(root / "htpasswd", users)
    return start_registry(
        root,
        kind="tls",
        auth={"htpasswd": {"realm": "pushmanifest-test-realm", "path": str(htpasswd)}},
        tls={"certificate": str(files.cert_file), "key": str(files.key_file)},
        users=users,
        ca_file=ca_file,
        **kwargs,
    )
