"""Docker's ``config.json``: ``auths``, ``credsStore``, ``credHelpers`` and the helpers themselves.

We read credentials exactly where ``docker login`` put them, so a user who can ``docker push``
can push a manifest list without logging in again. Lookup for a registry goes
``credHelpers[host]``, then ``credsStore``, then ``auths[host]``; a helper that has nothing for
the host lets the lookup go on, as an empty ``auths`` entry does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Optional, Union

from ..errors import AuthenticationError, InputError
from .credentials import Credentials, Secret

__all__ = [
    "DOCKER_HUB_CONFIG_KEY",
    "DockerConfig",
    "default_docker_config_path",
    "load_docker_config",
    "resolve_credentials",
]

log = logging.getLogger("pushmanifest")

DOCKER_HUB = "docker.io"
#: The key ``docker login`` uses for Docker Hub, and the server URL credential helpers get.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
#: Every spelling of Docker Hub people put in config files, as hostnames.
_DOCKER_HUB_HOSTS = ("index.docker.io", "docker.io", "registry-1.docker.io")

#: What a helper prints (exit status 1) when it holds nothing for the server.
_NOT_FOUND = "credentials not found"
#: The ``Username`` with which a helper says ``Secret`` is an identity token.
_TOKEN_USERNAME = "<token>"

DEFAULT_HELPER_TIMEOUT = 10.0
#: Limits on what we read: docker's config.json is a few KiB, a helper's answer a few hundred
#: bytes. Past them: an error naming the file or the helper, before memory fills.
MAX_DOCKER_CONFIG_BYTES = 1024 * 1024
MAX_HELPER_OUTPUT_BYTES = 1024 * 1024
#: A helper's stderr beyond this is read and dropped (it is only ever shown as one line).
_HELPER_STDERR_KEPT = 64 * 1024
_READ_CHUNK = 64 * 1024

PathLike = Union[str, "os.PathLike[str]"]


def default_docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _hostname(key: str) -> str:
    """The host part of a config key, as docker's ``ConvertToHostname`` has it."""
    text = key.strip()
    lowered = text.lower()
    for prefix in ("https://", "http://"):
        if lowered.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text.split("/", 1)[0].lower()


def _is_docker_hub(registry: str) -> bool:
    return _hostname(registry) in _DOCKER_HUB_HOSTS


class DockerConfig:
    """A loaded ``config.json``; :meth:`credentials_for` runs helpers on demand (once each)."""

    def __init__(
        self,
        data: Optional[Mapping[str, Any]] = None,
        *,
        path: Optional[PathLike] = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
    ) -> None:
        self.path = str(path) if path is not None else "<docker config>"
        self.helper_timeout = helper_timeout
        data = data or {}
        self.auths: dict[str, dict[str, Any]] = _mapping_of_mappings(
            data.get("auths"), self, "auths"
        )
        helpers = data.get("credHelpers") or {}
        if not isinstance(helpers, Mapping) or not all(
            isinstance(v, str) for v in helpers.values()
        ):
            raise InputError(f"{self.path}: 'credHelpers' must map hosts to helper names")
        self.cred_helpers: dict[str, str] = {str(k): v for k, v in helpers.items()}
        store = data.get("credsStore") or ""
        if not isinstance(store, str):
            raise InputError(f"{self.path}: 'credsStore' must be a helper name")
        self.creds_store: str = store
        self._helper_cache: dict[tuple[str, str], Optional[Credentials]] = {}

    def __repr__(self) -> str:
        return (
            f"DockerConfig(path={self.path!r}, auths={sorted(self.auths)!r}, "
            f"credsStore={self.creds_store!r}, credHelpers={self.cred_helpers!r})"
        )

    def credentials_for(self, registry: str) -> Optional[Credentials]:
        """Credentials for a normalized registry name (``docker.io``, ``host[:port]``), or None."""
        hub = _is_docker_hub(registry)
        server_url = DOCKER_HUB_CONFIG_KEY if hub else _hostname(registry)

        helper_key = self._find_key(self.cred_helpers, registry)
        if helper_key is not None:
            helper = self.cred_helpers[helper_key]
            found = self._from_helper(helper, server_url, f"credHelpers[{helper_key}]")
            if found is not None:
                return found
        if self.creds_store:
            found = self._from_helper(self.creds_store, server_url, "credsStore")
            if found is not None:
                return found
        auth_key = self._find_key(self.auths, registry)
        if auth_key is not None:
            return self._from_auths_entry(auth_key, self.auths[auth_key])
        return None

    def runs_helper_for(self, registry: str) -> bool:
        """Whether :meth:`credentials_for` may run a credential helper (a program) for it."""
        return bool(self.creds_store) or self._find_key(self.cred_helpers, registry) is not None

    def _find_key(self, table: Mapping[str, object], registry: str) -> Optional[str]:
        """The key of ``table`` that names ``registry``: the canonical spelling first."""
        if _is_docker_hub(registry):
            preferred = [DOCKER_HUB_CONFIG_KEY, *_DOCKER_HUB_HOSTS]
            wanted = set(_DOCKER_HUB_HOSTS)
        else:
            preferred = [registry]
            wanted = {_hostname(registry)}
        for key in preferred:
            if key in table:
                return key
        # Then in file order, so that the choice between "host" and "https://host" is stable.
        for key in table:
            if _hostname(key) in wanted:
                return key
        return None

    def _from_auths_entry(self, key: str, entry: Mapping[str, Any]) -> Optional[Credentials]:
        username = _str_field(entry, "username", self.path, key)
        password = _str_field(entry, "password", self.path, key)
        encoded = _str_field(entry, "auth", self.path, key)
        if encoded:
            username, password = _decode_auth(encoded, self.path, key)
        identity_token = _str_field(entry, "identitytoken", self.path, key)
        registry_token = _str_field(entry, "registrytoken", self.path, key)
        credentials = Credentials(
            username=username or None,
            password=Secret(password) if password else None,
            identity_token=Secret(identity_token) if identity_token else None,
            registry_token=Secret(registry_token) if registry_token else None,
            source=f"docker config auths[{key}] ({self.path})",
        )
        return None if credentials.is_empty else credentials

    def _from_helper(self, helper: str, server_url: str, where: str) -> Optional[Credentials]:
        cache_key = (helper, server_url)
        if cache_key not in self._helper_cache:
            self._helper_cache[cache_key] = run_credential_helper(
                helper,
                server_url,
                timeout=self.helper_timeout,
                source=f"docker config {where} (docker-credential-{helper})",
            )
        return self._helper_cache[cache_key]


def _shown(key: object) -> str:
    """A config key as an error shows it: as written, or quoted where it would break the line."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def _mapping_of_mappings(value: object, config: DockerConfig, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{config.path}: '{name}' must be an object")
    out: dict[str, Any] = {}
    for key, entry in value.items():
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise InputError(f"{config.path}: '{name}[{_shown(key)}]' must be an object")
        out[str(key)] = dict(entry)
    return out


def _str_field(entry: Mapping[str, Any], name: str, path: str, key: str) -> str:
    value = entry.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{path}: auths[{_shown(key)}].{name} must be a string")
    return value


def _decode_auth(encoded: str, path: str, key: str) -> tuple[str, str]:
    # The value is a secret: the messages below say what is wrong with it, never what it is.
    text = encoded.strip()
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InputError(
            f"{path}: auths[{_shown(key)}].auth is not valid base64 of 'user:password'"
        ) from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise InputError(
            f"{path}: auths[{_shown(key)}].auth does not hold 'user:password'"
        ) from None
    return username, password


def load_docker_config(
    path: Optional[PathLike] = None, *, helper_timeout: float = DEFAULT_HELPER_TIMEOUT
) -> DockerConfig:
    """Load docker's config: ``path`` is its directory or the file itself; default chain otherwise.

    A missing file is an empty config (anonymous access); unreadable JSON is an :class:`InputError`
    naming the file.
    """
    if path is None:
        file = default_docker_config_path()
    else:
        file = Path(os.path.expanduser(os.fspath(path)))
        if file.is_dir():
            file = file / "config.json"
    try:
        text = _read_config_file(file).decode("utf-8-sig")
    except FileNotFoundError:
        log.debug("no docker config at %s", file)
        return DockerConfig({}, path=file, helper_timeout=helper_timeout)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot read docker config {file}: {reason}") from None
    if not text.strip():
        return DockerConfig({}, path=file, helper_timeout=helper_timeout)
    try:
        data = json.loads(text)
    except ValueError as exc:
        # json's message gives line and column and, unlike the file, no secrets.
        raise InputError(f"docker config {file} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"docker config {file} is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"docker config {file} is not a JSON object")
    return DockerConfig(data, path=file, helper_timeout=helper_timeout)


def _read_config_file(file: Path) -> bytes:
    """The file's bytes, at most :data:`MAX_DOCKER_CONFIG_BYTES`; only from a regular file.

    Opened without blocking, so that a FIFO with no writer cannot hang the run; a FIFO, a device
    (``/dev/zero``) or anything else that is not a regular file is refused before it is read.
    """
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb", buffering=0, closefd=True) as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"cannot read docker config {file}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_DOCKER_CONFIG_BYTES:
            chunk = stream.read(MAX_DOCKER_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    data = b"".join(chunks)
    if len(data) > MAX_DOCKER_CONFIG_BYTES:
        raise InputError(
            f"docker config {file} is larger than the {MAX_DOCKER_CONFIG_BYTES} bytes allowed"
        )
    return data


def resolve_credentials(
    registry: str,
    *,
    explicit: Optional[Credentials] = None,
    docker_config: Optional[DockerConfig] = None,
) -> Optional[Credentials]:
    """Explicit credentials first, then docker's config; None means anonymous."""
    if explicit is not None:
        return explicit
    if docker_config is not None:
        return docker_config.credentials_for(registry)
    return None


# -- credential helpers ----------------------------------------------------------------------


def run_credential_helper(
    helper: str,
    server_url: str,
    *,
    timeout: float = DEFAULT_HELPER_TIMEOUT,
    source: str = "",
) -> Optional[Credentials]:
    """``docker-credential-HELPER get`` for ``server_url``.

    None when the helper has nothing for the server, fails, or is not installed (docker goes on
    anonymously then, and so do we). A helper that hangs or answers garbage is an
    :class:`AuthenticationError`: going on anonymously would hide the real problem.
    """
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        log.warning(
            "credential helper %s is not installed (not on PATH); continuing without credentials "
            "for %s",
            program,
            server_url,
        )
        return None
    stdout, stderr, status = _run(program, executable, server_url, timeout)
    if status != 0:
        message = (stdout.strip() or stderr.strip()).splitlines()
        first = message[0][:200] if message else f"exit status {status}"
        if _NOT_FOUND in first.lower():
            log.debug("%s has no credentials for %s", program, server_url)
        else:
            if '"secret"' in first.lower():
                # Its answer (or a shell trace of it) after all: the message must not show it.
                first = f"exit status {status}, with output holding a Secret (not shown)"
            log.warning("%s get failed for %s: %s", program, server_url, first)
        return None
    if _NOT_FOUND in stdout.lower():
        # Some helpers say so with exit status 0.
        log.debug("%s has no credentials for %s", program, server_url)
        return None
    try:
        data = json.loads(stdout)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k, ""), str) for k in ("Username", "Secret")
    ):
        raise AuthenticationError(
            f"credential helper {program} answered something other than its JSON protocol "
            f"for {server_url}",
            operation="authenticate",
        )
    username: str = data.get("Username", "")
    secret: str = data.get("Secret", "")
    if not secret:
        return None
    source = source or f"{program}"
    if username == _TOKEN_USERNAME:
        return Credentials(identity_token=Secret(secret), source=source)
    return Credentials(username=username or None, password=Secret(secret), source=source)


def _run(program: str, executable: str, server_url: str, timeout: float) -> tuple[str, str, int]:
    """Run the helper: its answer within ``timeout`` seconds and its output within the caps.

    The pipes are read as the output arrives (not all at once at the end), so a helper printing
    without end costs at most the cap in memory and is stopped there.
    """
    posix = sys.platform != "win32"
    try:
        process = subprocess.Popen(
            [executable, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group, so that a timeout kills the helper's children too (a pass
            # helper runs gpg, which may sit waiting for a pinentry nobody will see).
            start_new_session=posix,
        )
    except OSError as exc:
        log.warning("cannot run %s: %s; continuing without credentials", program, exc.strerror)
        return "", "", -1
    deadline = time.monotonic() + timeout
    changed = threading.Event()
    assert process.stdout is not None and process.stderr is not None
    stdout = _PipeReader(process.stdout, MAX_HELPER_OUTPUT_BYTES, changed, stop_when_full=True)
    stderr = _PipeReader(process.stderr, _HELPER_STDERR_KEPT, changed, stop_when_full=False)
    stdout.start()
    stderr.start()
    with contextlib.suppress(OSError):  # it may exit without reading: a broken pipe
        assert process.stdin is not None
        process.stdin.write(server_url.encode())
        process.stdin.close()

    def timed_out() -> AuthenticationError:
        _kill(process, posix)
        return AuthenticationError(
            f"credential helper {program} did not answer within {timeout:g} s "
            f"(is it waiting for a password prompt?)",
            operation="authenticate",
        )

    while True:
        changed.clear()  # before looking: a reader finishing now sets it again
        if stdout.full:
            _kill(process, posix)
            raise AuthenticationError(
                f"credential helper {program} printed more than the "
                f"{MAX_HELPER_OUTPUT_BYTES} bytes allowed for its answer",
                operation="authenticate",
            )
        if stdout.done and stderr.done:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out()
        changed.wait(remaining)
    try:
        # Its pipes closed but still running: the timeout is on the process, not on EOF.
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise timed_out() from None
    return stdout.text(), stderr.text(), process.returncode


class _PipeReader(threading.Thread):
    """Reads one pipe of a helper as it comes, keeping at most ``keep`` bytes.

    Past ``keep`` it stops (``stop_when_full``: the caller kills the helper) or reads on and
    drops the rest (stderr, only ever shown as one line). It closes its pipe when done: nobody
    else touches it, so a kill never closes a pipe under a read in progress.
    """

    def __init__(
        self, stream: IO[bytes], keep: int, changed: threading.Event, *, stop_when_full: bool
    ) -> None:
        super().__init__(daemon=True, name="credential-helper-pipe")
        self._stream = stream
        self._keep = keep
        self._changed = changed
        self._stop_when_full = stop_when_full
        self._chunks: list[bytes] = []
        self._size = 0
        self.full = False
        self.done = False

    def run(self) -> None:
        fd = self._stream.fileno()
        try:
            while True:
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except OSError:
                    break
                if not chunk:
                    break
                room = self._keep - self._size
                if len(chunk) > room:
                    self.full = True
                    chunk = chunk[:room]
                self._chunks.append(chunk)
                self._size += len(chunk)
                if self.full and self._stop_when_full:
                    break
        finally:
            with contextlib.suppress(OSError):
                self._stream.close()
            self.done = True
            self._changed.set()

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


def _kill(process: subprocess.Popen[bytes], posix: bool) -> None:
    with contextlib.suppress(OSError):
        if posix:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    # Reap the helper. Its pipes may be held open by grandchildren: their readers end with
    # them, and close them (closing them here could pull a pipe from under a read).
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
