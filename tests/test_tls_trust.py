"""Whom TLS trusts: the system store (certifi only where it is empty), --ca-file adding to it,
SSL_CERT_FILE / SSL_CERT_DIR; a refused certificate is final (no retry); a bad --ca-file is exit 2.

Against real registries: ``tls_registry`` (its CA: ``.ca_file``) and a second TLS registry with a
CA of its own. Attempts are counted as TCP connections by a forwarder in front of the registry.
For a host name that is not loopback (loopback registries get a single HTTPS probe, never
retried), the CLI runs with ``socket.getaddrinfo`` answering 127.0.0.1 for one name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from pushmanifest import ClientOptions, InputError
from pushmanifest.registry import RegistryClient
from pushmanifest.tls import MAX_CA_FILE_BYTES, add_ca_file, client_context
from support.certs import openssl
from support.images import read_manifest, seed_image
from support.registry import (
    RegistryServer,
    RegistryStartError,
    RegistryUnavailable,
    in_ci,
    start_tls_registry,
)

PLATFORMS = [("amd64", "amd64", ""), ("arm32v7", "arm", "v7")]
#: A name that is not loopback, so the client treats the registry as a remote one.
REMOTE_NAME = "registry.pushmanifest.test"

#: ``python -c`` program: the CLI, with REMOTE_NAME resolving to 127.0.0.1 (anyio passes bytes).
_CLI_WITH_NAME = f"""
import socket, sys
_real = socket.getaddrinfo
def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    return _real("127.0.0.1" if name == {REMOTE_NAME!r} else host, *args, **kwargs)
socket.getaddrinfo = _getaddrinfo
from pushmanifest.cli import console_main
raise SystemExit(console_main())
"""


def run_cli(
    *args: str,
    cwd: Path,
    stdin: str = "",
    env: Optional[dict[str, str]] = None,
    remote_name: bool = False,
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DOCKER_", "SSL_CERT_", "SSLKEYLOG"))
    }
    full_env["HOME"] = str(cwd)  # never the developer's ~/.docker
    full_env.update(env or {})
    program = ["-c", _CLI_WITH_NAME] if remote_name else ["-m", "pushmanifest"]
    return subprocess.run(
        [sys.executable, *program, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def seed(server: RegistryServer, repository: str) -> dict[str, Any]:
    return {
        tag: seed_image(
            server,
            repository,
            tag,
            architecture=arch,
            variant=variant,
            username="alice",
            password=server.users["alice"],
        )
        for tag, arch, variant in PLATFORMS
    }


def spec_document(host: str, repository: str) -> str:
    lines = [f"image: {host}/{repository}:latest", "manifests:"]
    for tag, arch, variant in PLATFORMS:
        lines += [
            f"  - image: {host}/{repository}:{tag}",
            "    platform:",
            f"      architecture: {arch}",
            "      os: linux",
        ]
        if variant:
            lines.append(f"      variant: {variant}")
    return "\n".join(lines) + "\n"


def check_list(server: RegistryServer, repository: str, seeded: dict[str, Any]) -> None:
    body, _, _ = read_manifest(
        server, repository, "latest", username="alice", password=server.users["alice"]
    )
    entries = json.loads(body)["manifests"]
    assert sorted(e["digest"] for e in entries) == sorted(i.digest for i in seeded.values())


class TcpCounter:
    """Forwards each connection to 127.0.0.1:``upstream_port`` and counts them.

    ``refuse=True``: accept each connection and close it at once (a retryable failure).
    """

    def __init__(self, upstream_port: int, *, refuse: bool = False) -> None:
        self.upstream_port = upstream_port
        self.refuse = refuse
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()


@pytest.fixture
def counter(tls_registry: RegistryServer) -> Iterator[TcpCounter]:
    forwarder = TcpCounter(tls_registry.port)
    yield forwarder
    forwarder.close()


@pytest.fixture(scope="module")
def other_ca_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A second TLS registry whose certificate comes from a CA of its own."""
    try:
        server = start_tls_registry(tmp_path_factory.mktemp("registry-tls-other-ca"))
    except (RegistryUnavailable, RegistryStartError) as exc:
        if in_ci():
            pytest.fail(f"second TLS registry: {exc}", pytrace=False)
        pytest.skip(f"second TLS registry: {exc}")
    with server:
        yield server


# -- the context ---------------------------------------------------------------------------------


def ca_subjects(context: ssl.SSLContext) -> set[Any]:
    return {repr(cert["subject"]) for cert in context.get_ca_certs()}


def test_verifies_as_create_default_context_does() -> None:
    ours, theirs = client_context(), ssl.create_default_context()
    assert ours.verify_mode == theirs.verify_mode == ssl.CERT_REQUIRED
    assert ours.check_hostname is theirs.check_hostname is True
    assert ours.verify_flags == theirs.verify_flags
    assert ours.options == theirs.options
    assert (ours.minimum_version, ours.maximum_version) == (
        theirs.minimum_version,
        theirs.maximum_version,
    )


def test_trusts_the_system_store_not_certifi(monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    system_file = ssl.get_default_verify_paths().cafile
    if system_file is None:
        pytest.skip("this system has no CA bundle file")
    system = ca_subjects(ssl.create_default_context(cafile=system_file))
    bundled = ca_subjects(ssl.create_default_context(cafile=certifi.where()))
    if system == bundled:
        pytest.skip("the system store holds exactly certifi's CAs: nothing tells them apart")
    context = client_context()
    assert context.cert_store_stats()["x509"] == 0  # nothing loaded before a handshake
    context.load_system_store()
    assert ca_subjects(context) == system


def test_certifi_where_the_system_store_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import certifi

    # A directory without hashed certificates is no store (slim images: /etc/ssl/certs empty
    # but for a README).
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("no certificates here\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "empty"))
    context = client_context()
    context.load_system_store()
    assert ca_subjects(context) == ca_subjects(ssl.create_default_context(cafile=certifi.where()))
    assert f"SSL_CERT_FILE={tmp_path / 'missing.pem'} does not exist" in caplog.text


def test_a_hashed_ca_directory_is_a_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls_registry: RegistryServer
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(str(tls_registry.ca_file), certs / "test-ca.pem")
    openssl("rehash", str(certs))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    context = client_context()
    context.load_system_store()
    assert context.cert_store_stats()["x509"] == 0  # no certifi: the directory is read lazily
    sock = socket.create_connection(("127.0.0.1", tls_registry.port), timeout=30)
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        assert tls.getpeercert()  # verified by the CA found in the directory


def test_ca_file_adds_to_the_system_store(
    monkeypatch: pytest.MonkeyPatch, tls_registry: RegistryServer
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    system = ca_subjects(ssl.create_default_context())
    ours = ca_subjects(ssl.create_default_context(cafile=str(tls_registry.ca_file)))
    context = ClientOptions(ca_file=str(tls_registry.ca_file)).tls_verify
    assert isinstance(context, ssl.SSLContext)
    context.load_system_store()  # type: ignore[attr-defined]
    assert ca_subjects(context) == system | ours
    assert ours - system  # our test CA is in no system store


def test_one_context_per_options_shared_by_clients_and_not_loaded_for_plain_http(
    open_registry: RegistryServer,
) -> None:
    # Without --plain-http a loopback registry gets an HTTPS probe first: that loads the store.
    options = ClientOptions(plain_http=True)

    async def run() -> None:
        async with (
            RegistryClient(open_registry.host, options=options) as a,
            RegistryClient("127.0.0.1:1", options=options) as b,
        ):
            assert a._client._transport._pool._ssl_context is options.tls_verify  # type: ignore[attr-defined]
            assert b._client._transport._pool._ssl_context is options.tls_verify  # type: ignore[attr-defined]
            assert await a.head_manifest("tls-trust/none", "latest") is None  # a real request

    asyncio.run(run())
    assert options.tls_verify.system_store_loaded is False  # type: ignore[union-attr]


def test_insecure_verifies_nothing() -> None:
    assert ClientOptions(insecure=True, ca_file="/does/not/matter").tls_verify is False


def test_ca_file_formats(tmp_path: Path, tls_registry: RegistryServer) -> None:
    import certifi

    # A bundle with comments, non-ASCII text among them, between its certificates.
    bundle = tmp_path / "bundle.pem"
    first_of_certifi = Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0]
    bundle.write_text(
        "# Émetteur : « pushmanifest test CA »\n"
        + Path(tls_registry.ca_file).read_text()
        + "\n# Ünd noch eine\n"
        + first_of_certifi
        + "-----END CERTIFICATE-----\n"
    )
    assert add_ca_file(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), str(bundle)) == 2
    whole = add_ca_file(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), certifi.where())
    assert whole == ssl.create_default_context(cafile=certifi.where()).cert_store_stats()["x509"]
    der = tmp_path / "ca.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(Path(tls_registry.ca_file).read_text()))
    assert add_ca_file(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), str(der)) == 1
    # A pipe (--ca-file <(...)).
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as w:
        w.write(Path(tls_registry.ca_file).read_bytes())
    try:
        path = f"/dev/fd/{read_end}"
        if not os.path.exists(path):
            pytest.skip("no /dev/fd")
        assert add_ca_file(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path) == 1
    finally:
        os.close(read_end)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the CA file {path}: No such file or directory"),
        ("", "the CA file {path} is empty"),
        ("not a certificate\n", "the CA file {path} holds no certificate: neither PEM"),
        (
            "-----BEGIN CERTIFICATE-----\nMII!!not base64\n-----END CERTIFICATE-----\n",
            "the CA file {path} holds a PEM certificate that cannot be read",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
            "the CA file {path} holds no certificate, only other PEM data",
        ),
    ],
)
def test_bad_ca_file_is_an_input_error(
    tmp_path: Path, content: Optional[str], message: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError) as info:
        client_context(str(path))
    assert str(info.value).startswith(message.format(path=path))


def test_oversized_ca_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.pem"
    with open(path, "wb") as f:
        f.truncate(MAX_CA_FILE_BYTES + 1)  # sparse
    with pytest.raises(InputError, match="larger than 16 MiB"):
        client_context(str(path))
    with pytest.raises(InputError, match="larger than 16 MiB"):
        client_context("/dev/zero")  # endless


# -- real runs -----------------------------------------------------------------------------------


def test_ssl_cert_file_is_honoured(tls_registry: RegistryServer, tmp_path: Path) -> None:
    repo = "tls-trust/env-file"
    seeded = seed(tls_registry, repo)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_document(tls_registry.host, repo))
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        stdin=tls_registry.users["alice"] + "\n",
        env={"SSL_CERT_FILE": str(tls_registry.ca_file)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    check_list(tls_registry, repo, seeded)


def test_ssl_cert_dir_is_honoured(tls_registry: RegistryServer, tmp_path: Path) -> None:
    """A CA directory as update-ca-certificates makes one: certificates under their hash."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tls_registry.ca_file, certs / "test-ca.pem")  # type: ignore[arg-type]
    openssl("rehash", str(certs))
    result = run_cli(
        "inspect",
        f"{tls_registry.host}/tls-trust/none:latest",
        "--username",
        "alice",
        "--password-stdin",
        stdin=tls_registry.users["alice"] + "\n",
        env={"SSL_CERT_DIR": str(certs)},
        cwd=tmp_path,
    )
    # Trusted: the registry is reached and says the tag does not exist.
    line = one_error_line(result, 1)
    assert "not trusted" not in line and "tls-trust/none" in line, line


def test_ca_file_adds_to_the_store_in_one_run(
    tls_registry: RegistryServer, other_ca_registry: RegistryServer, tmp_path: Path
) -> None:
    """Registry A is trusted through the default store (SSL_CERT_FILE), registry B through
    --ca-file: one run pushes a list to each. --ca-file used to replace the store: A failed."""
    repo = "tls-trust/two-cas"
    seeded_a, seeded_b = seed(tls_registry, repo), seed(other_ca_registry, repo)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        spec_document(tls_registry.host, repo)
        + "---\n"
        + spec_document(other_ca_registry.host, repo)
    )
    args = ["from-spec", str(spec), "--username", "alice", "--password-stdin"]
    stdin = tls_registry.users["alice"] + "\n"
    assert tls_registry.users["alice"] == other_ca_registry.users["alice"]
    result = run_cli(
        *args,
        "--ca-file",
        str(other_ca_registry.ca_file),
        stdin=stdin,
        env={"SSL_CERT_FILE": str(tls_registry.ca_file)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [ln.startswith("Digest: ") for ln in result.stdout.splitlines()] == [True, True]
    check_list(tls_registry, repo, seeded_a)
    check_list(other_ca_registry, repo, seeded_b)

    # Control: each CA is needed, and each is trusted only where the test put it.
    without_env = run_cli(
        *args, "--ca-file", str(other_ca_registry.ca_file), stdin=stdin, cwd=tmp_path
    )
    assert without_env.returncode == 1
    assert f"certificate of {tls_registry.host} is not trusted" in without_env.stderr
    without_ca_file = run_cli(
        *args, stdin=stdin, env={"SSL_CERT_FILE": str(tls_registry.ca_file)}, cwd=tmp_path
    )
    assert without_ca_file.returncode == 1
    assert f"certificate of {other_ca_registry.host} is not trusted" in without_ca_file.stderr


@pytest.mark.parametrize("command", ["inspect", "from-spec"])
def test_untrusted_certificate_fails_once(
    command: str, counter: TcpCounter, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    host = f"{REMOTE_NAME}:{counter.port}"
    if command == "inspect":
        args = ["inspect", f"{host}/tls-trust/app:latest"]
    else:
        spec = tmp_path / "spec.yaml"
        # One source; a dry run asks nothing of the target: exactly one request.
        spec.write_text(
            f"image: {host}/tls-trust/app:latest\nmanifests:\n"
            f"  - image: {host}/tls-trust/app:amd64\n"
            "    platform: {architecture: amd64, os: linux}\n"
        )
        args = ["from-spec", str(spec), "--dry-run"]
    result = run_cli(*args, "--retries", "3", cwd=tmp_path, remote_name=True)
    line = one_error_line(result, 1)
    assert f"the TLS certificate of {host} is not trusted" in line, line
    assert counter.connections == 1


def test_connection_failures_are_still_retried(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    """The counter sees retries where they belong: a connection closed at once is retried."""
    refusing = TcpCounter(tls_registry.port, refuse=True)
    try:
        host = f"{REMOTE_NAME}:{refusing.port}"
        result = run_cli(
            "inspect",
            f"{host}/tls-trust/app:latest",
            "--retries",
            "3",
            cwd=tmp_path,
            remote_name=True,
        )
    finally:
        refusing.close()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert refusing.connections == 3
    assert result.stderr.count("retry ") == 2


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "No such file or directory"), ("garbage\n", "holds no certificate")],
)
def test_bad_ca_file_exits_2_before_any_request(
    content: Optional[str],
    words: str,
    counter: TcpCounter,
    tmp_path: Path,
) -> None:
    ca_file = tmp_path / "corp-ca.pem"
    if content is not None:
        ca_file.write_text(content)
    result = run_cli(
        "inspect",
        f"127.0.0.1:{counter.port}/tls-trust/app:latest",
        "--ca-file",
        str(ca_file),
        cwd=tmp_path,
    )
    line = one_error_line(result, 2)
    assert line.startswith("error: --ca-file: ") and str(ca_file) in line and words in line, line
    assert counter.connections == 0
