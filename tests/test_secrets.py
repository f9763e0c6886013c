"""Secrets never leak: not on stdout or stderr, not with --debug, not in exceptions or reprs.

Passwords, identity (refresh) tokens, registry tokens, the tokens a token server issues and
Authorization headers are looked for everywhere a user or a CI log could see them:

* the CLI as a subprocess with ``--debug`` (which logs every request and prints tracebacks)
  against the token registry (success, wrong password, denied push, inspect; credentials from
  --password-stdin, --password, the docker config's auths, identity and registry tokens, and a
  credential helper) and the TLS registry (Basic auth: success, wrong password, anonymous);
* in-process: exception messages and reprs along the whole cause chain, every log record at
  DEBUG (httpx's and httpcore's too), and the reprs of Credentials, TokenAuth, RegistryClient,
  DockerConfig and PushOptions;
* and credentials never go over plain HTTP to a host that is not loopback unless the user said
  so with --plain-http or --insecure (respx: a token realm on http://, a redirect to http://).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import stat
import subprocess
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
import respx

import pushmanifest
import support.cli as support_cli
from pushmanifest import ClientOptions, Credentials, PushOptions, RegistryClient
from pushmanifest.auth import DockerConfig, Secret, TokenAuth, load_docker_config
from pushmanifest.cli import main as cli_main
from pushmanifest.errors import AuthenticationError, PushManifestError
from support.images import seed_image
from support.tokenserver import Grant

WRONG_PASSWORD = "not-the-password-9f3b"
HELPER_SECRET = "helper-secret-5d21e"


# -- what must never be seen ---------------------------------------------------------------------


def basic_forms(user: str, password: str) -> list[str]:
    raw = f"{user}:{password}".encode()
    encoded = base64.b64encode(raw).decode()
    return [encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw).decode()]


_CREDENTIAL = re.compile(r"\b(?:Bearer|Basic) +(?![A-Za-z]+=)[A-Za-z0-9._~+/=-]{8,}", re.I)


def assert_no_secret(text: str, secrets: Iterable[str], where: str = "output") -> None:
    """None of ``secrets``, no issued token (JWTs start 'eyJ'), no Authorization header."""
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:3]}...) appears in the {where}:\n{text}"
    assert "eyJ" not in text, f"a JWT appears in the {where}:\n{text}"
    assert "authorization" not in text.lower(), f"an Authorization header in the {where}:\n{text}"
    # A challenge ('Bearer realm="..."', logged by httpcore at DEBUG) is fine; a credential not.
    found = _CREDENTIAL.search(text)
    assert found is None, f"a credential ({found.group()[:10]}...) in the {where}:\n{text}"


def run_cli(
    *args: str,
    cwd: Path,
    stdin: str = "",
    env: Optional[dict[str, str]] = None,
) -> subprocess.CompletedProcess[str]:
    return support_cli.run_cli(*args, stdin=stdin, cwd=cwd, env=env, cli_args=("--debug",))


def spec_file(tmp_path: Path, host: str, repository: str, tag: str = "latest") -> Path:
    path = tmp_path / f"{repository.replace('/', '-')}-{tag}.yaml"
    path.write_text(
        f"image: {host}/{repository}:{tag}\n"
        "manifests:\n"
        f"  - image: {host}/{repository}:amd64\n"
        "    platform: {architecture: amd64, os: linux}\n"
    )
    return path


def seed(server: Any, repository: str, user: Optional[str]) -> None:
    password = server.users[user] if user else None
    seed_image(server, repository, "amd64", username=user, password=password)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def all_passwords(server: Any) -> list[str]:
    secrets = [WRONG_PASSWORD, HELPER_SECRET]
    for user, password in server.users.items():
        secrets += [password, *basic_forms(user, password)]
    secrets += basic_forms("alice", WRONG_PASSWORD)
    return secrets


# -- the CLI with --debug: token registry --------------------------------------------------------


def test_debug_success_with_password_stdin(token_registry: Any, tmp_path: Path) -> None:
    seed(token_registry, "alice/secrets-ok", "alice")
    spec = spec_file(tmp_path, token_registry.host, "alice/secrets-ok")
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        stdin=token_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Digest: sha256:" in result.stdout
    assert "token for" in result.stderr and "(user 'alice')" in result.stderr  # --debug is on
    assert_no_secret(output(result), all_passwords(token_registry))


def test_debug_success_with_password_on_the_command_line(
    token_registry: Any, tmp_path: Path
) -> None:
    seed(token_registry, "alice/secrets-argv", "alice")
    spec = spec_file(tmp_path, token_registry.host, "alice/secrets-argv")
    password = token_registry.users["alice"]
    result = run_cli(
        "from-spec", str(spec), "--username", "alice", "--password", password, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "--password-stdin" in result.stderr  # the warning about argv
    assert_no_secret(output(result), all_passwords(token_registry))


def test_debug_wrong_password(token_registry: Any, tmp_path: Path) -> None:
    seed(token_registry, "alice/secrets-wrong", "alice")
    spec = spec_file(tmp_path, token_registry.host, "alice/secrets-wrong")
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "alice",
        "--password-stdin",
        stdin=WRONG_PASSWORD + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "error: authentication failed" in result.stderr and "'alice'" in result.stderr
    assert "Traceback" in result.stderr  # --debug prints it: it must hold no secret either
    assert_no_secret(output(result), all_passwords(token_registry))


def test_debug_denied_push(token_registry: Any, tmp_path: Path) -> None:
    seed(token_registry, "alice/secrets-denied", "alice")
    spec = spec_file(tmp_path, token_registry.host, "alice/secrets-denied")
    result = run_cli(
        "from-spec",
        str(spec),
        "--username",
        "bob",
        "--password-stdin",
        stdin=token_registry.users["bob"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "user 'bob'" in result.stderr, result.stderr
    assert_no_secret(output(result), all_passwords(token_registry))


def test_debug_inspect_with_credentials(token_registry: Any, tmp_path: Path) -> None:
    seed(token_registry, "alice/secrets-inspect", "alice")
    result = run_cli(
        "inspect",
        f"{token_registry.host}/alice/secrets-inspect:amd64",
        "--username",
        "alice",
        "--password-stdin",
        stdin=token_registry.users["alice"] + "\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert_no_secret(output(result), all_passwords(token_registry))


def identity_token(token_registry: Any, user: str) -> str:
    """A refresh token from the token server's OAuth2 endpoint, as ``docker login`` keeps one."""
    response = httpx.post(
        token_registry.token_server.realm,
        data={
            "grant_type": "password",
            "username": user,
            "password": token_registry.users[user],
            "access_type": "offline",
            "service": token_registry.service,
            "client_id": "test",
        },
    )
    response.raise_for_status()
    return str(response.json()["refresh_token"])


@pytest.mark.parametrize("kind", ["auth", "identitytoken", "registrytoken", "helper"])
def test_debug_credentials_from_the_docker_config(
    token_registry: Any, tmp_path: Path, kind: str
) -> None:
    repository = f"alice/secrets-{kind}"
    seed(token_registry, repository, "alice")
    host = token_registry.host
    secrets = all_passwords(token_registry)
    env: dict[str, str] = {}
    config: dict[str, Any]
    if kind == "auth":
        config = {"auths": {host: {"auth": basic_forms("alice", token_registry.users["alice"])[0]}}}
    elif kind == "identitytoken":
        token = identity_token(token_registry, "alice")
        secrets.append(token)
        config = {"auths": {host: {"identitytoken": token}}}
    elif kind == "registrytoken":
        grants = [Grant("repository", repository, ("pull", "push"))]
        token = token_registry.token_server.issue("alice", grants)
        secrets.append(token)
        config = {"auths": {host: {"registrytoken": token}}}
    else:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-secrets"
        answer = json.dumps({"ServerURL": host, "Username": "alice", "Secret": HELPER_SECRET})
        # The helper's secret is not alice's password: the push is refused, and says so.
        helper.write_text(f"#!/bin/sh\ncat >/dev/null\ncat <<'EOF'\n{answer}\nEOF\n")
        helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
        env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        config = {"credsStore": "secrets"}
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps(config))
    spec = spec_file(tmp_path, host, repository)
    result = run_cli("--docker-cfg", str(config_dir), "from-spec", str(spec), cwd=tmp_path, env=env)
    if kind == "helper":
        assert result.returncode == 1 and "authentication failed" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
    assert_no_secret(output(result), secrets)


# -- the CLI with --debug: TLS registry, Basic auth ----------------------------------------------


@pytest.mark.parametrize("password", [None, "right", WRONG_PASSWORD])
def test_debug_tls_basic_auth(tls_registry: Any, tmp_path: Path, password: Optional[str]) -> None:
    repository = "team/secrets-tls"
    seed(tls_registry, repository, "alice")
    spec = spec_file(tmp_path, tls_registry.host, repository)
    args = ["from-spec", str(spec), "--ca-file", str(tls_registry.ca_file)]
    stdin = ""
    if password is not None:
        args += ["--username", "alice", "--password-stdin"]
        stdin = (tls_registry.users["alice"] if password == "right" else password) + "\n"
    result = run_cli(*args, stdin=stdin, cwd=tmp_path)
    if password == "right":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        assert "unauthorized" in result.stderr or "authentication failed" in result.stderr
    assert_no_secret(output(result), all_passwords(tls_registry))


# -- in-process: exceptions, their causes, every log record --------------------------------------


def exception_text(exc: BaseException) -> str:
    """str and repr of an exception and of everything in its cause/context chain, and the
    formatted traceback (which is what --debug prints)."""
    parts = ["".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    seen: Optional[BaseException] = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "args", ()))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(("user", "good"), [("alice", False), ("bob", True)])
def test_library_errors_and_debug_logs_hold_no_secret(
    token_registry: Any, caplog: pytest.LogCaptureFixture, user: str, good: bool
) -> None:
    """A wrong password (alice) or a refused push (bob, right password): the exception, its whole
    chain, and every log record of every logger at DEBUG (httpx, httpcore too)."""
    repository = "alice/secrets-lib"
    seed(token_registry, repository, "alice")
    password = token_registry.users[user] if good else WRONG_PASSWORD
    specs = pushmanifest.load_spec_text(
        f"image: {token_registry.host}/{repository}:lib\n"
        f"manifests: [{{image: '{token_registry.host}/{repository}:amd64', "
        "platform: {architecture: amd64, os: linux}}]\n",
        "lib.yaml",
    )
    credentials = Credentials(username=user, password=password, source="test")
    options = PushOptions(credentials=credentials, client=ClientOptions(backoff=0.01))
    # The root logger at DEBUG: every library's records.
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as caught:
        pushmanifest.push(specs, options)
    assert f"'{user}'" in str(caught.value)
    assert_no_secret(exception_text(caught.value), all_passwords(token_registry), "exception")
    assert caplog.records, "nothing was logged at DEBUG"
    assert_no_secret(caplog.text, all_passwords(token_registry), "debug log")


def test_library_success_debug_logs_hold_no_secret(
    token_registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    repository = "alice/secrets-lib-ok"
    seed(token_registry, repository, "alice")
    spec = pushmanifest.ManifestListSpec(
        image=f"{token_registry.host}/{repository}:ok",
        manifests=[
            {
                "image": f"{token_registry.host}/{repository}:amd64",
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    )
    credentials = Credentials(username="alice", password=token_registry.users["alice"])
    options = PushOptions(credentials=credentials)
    with caplog.at_level(logging.DEBUG):
        [result] = pushmanifest.push(spec, options)
    assert result.written == ("ok",)
    assert_no_secret(caplog.text, all_passwords(token_registry), "debug log")
    assert_no_secret(repr(result) + repr(options), all_passwords(token_registry), "repr")


# -- reprs ---------------------------------------------------------------------------------------

PASSWORD = "repr-pa55word-71c"
TOKEN = "repr-t0ken-4e0a"
REGISTRY_TOKEN = "repr-registry-t0ken-b3"


def test_reprs_hold_no_secret(tmp_path: Path) -> None:
    credentials = Credentials(
        username="alice",
        password=PASSWORD,
        identity_token=TOKEN,
        registry_token=REGISTRY_TOKEN,
        source="test",
    )
    auth = TokenAuth(credentials, scopes=["repository:alice/app:pull,push"])
    encoded = basic_forms("alice", PASSWORD)[0]
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "h.example": {"auth": encoded, "identitytoken": TOKEN},
                    "other.example": {"username": "u", "password": PASSWORD},
                    "r.example": {"registrytoken": REGISTRY_TOKEN},
                },
                "credHelpers": {"x.example": "pass"},
            }
        )
    )
    config = load_docker_config(tmp_path)
    found = [config.credentials_for(host) for host in ("h.example", "other.example", "r.example")]

    async def make_client() -> str:
        async with RegistryClient("registry.example.com", credentials=credentials) as client:
            return "\n".join([repr(client), repr(vars(client)), repr(client.auth)])

    texts = [
        repr(credentials),
        str(credentials),
        repr(credentials.password),
        f"{credentials.password}",
        f"{credentials.password:>20}",
        repr(auth),
        repr(vars(auth)),
        repr(config),
        str(config),
        repr(found),
        repr(PushOptions(credentials=credentials)),
        repr(DockerConfig({"auths": {"h": {"password": PASSWORD}}})),
        asyncio.run(make_client()),
    ]
    for text in texts:
        for secret in (PASSWORD, TOKEN, REGISTRY_TOKEN, encoded):
            assert secret not in text, text
    assert "alice" in repr(credentials)  # who, yes: what, no
    assert Secret(PASSWORD).reveal() == PASSWORD


def test_tokens_in_the_cache_are_not_in_reprs() -> None:
    """After a token was fetched and cached, TokenAuth and the client still show none."""
    issued = "eyJ-issued-token-f00d"

    async def go() -> str:
        auth = TokenAuth(Credentials(username="alice", password=PASSWORD))
        async with httpx.AsyncClient(auth=auth) as client:
            response = await client.get("https://registry.example.com/v2/a/manifests/x")
            assert response.status_code == 200
            assert response.request.headers["Authorization"] == f"Bearer {issued}"
            return "\n".join(
                [repr(auth), repr(vars(auth)), repr(client), repr(response.request.headers)]
            )

    with respx.mock:
        challenge = 'Bearer realm="https://auth.example.com/t",service="s"'
        respx.get("https://registry.example.com/v2/a/manifests/x").mock(
            side_effect=lambda request: (
                httpx.Response(200)
                if "Authorization" in request.headers
                else httpx.Response(401, headers={"WWW-Authenticate": challenge})
            )
        )
        respx.get(url__startswith="https://auth.example.com/").respond(
            200, json={"token": issued, "expires_in": 300}
        )
        text = asyncio.run(go())
    assert issued not in text and PASSWORD not in text, text


# -- never over plain HTTP to a remote host, unless asked ----------------------------------------

REMOTE = "registry.test"
REPOSITORY = "alice/app"
IMAGE_DIGEST = "sha256:" + "a" * 64
HTTP_REALM = "http://auth.test/token"


def remote_spec() -> list[Any]:
    return pushmanifest.load_spec_text(
        f"image: {REMOTE}/{REPOSITORY}:1.0\n"
        f"manifests: [{{image: '{REMOTE}/{REPOSITORY}:amd64', "
        "platform: {architecture: amd64, os: linux}}]\n",
        "remote.yaml",
    )


class RemoteRegistry:
    """A token registry on respx at ``scheme://registry.test`` whose realm is on plain HTTP."""

    def __init__(self, router: respx.MockRouter, scheme: str) -> None:
        self.base = f"{scheme}://{REMOTE}/v2/"
        self.token_calls: list[httpx.Request] = []
        self.registry_calls: list[httpx.Request] = []
        router.route(url__startswith=self.base).mock(side_effect=self._registry)
        router.route(url__startswith=HTTP_REALM).mock(side_effect=self._token)

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_calls.append(request)
        return httpx.Response(200, json={"token": "tok-1", "expires_in": 300})

    def _registry(self, request: httpx.Request) -> httpx.Response:
        self.registry_calls.append(request)
        if request.headers.get("Authorization") != "Bearer tok-1":
            challenge = f'Bearer realm="{HTTP_REALM}",service="{REMOTE}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        path = request.url.path
        if request.method == "HEAD" and path.endswith("/manifests/amd64"):
            return httpx.Response(
                200,
                headers={
                    "Docker-Content-Digest": IMAGE_DIGEST,
                    "Content-Length": "500",
                    "Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
                },
            )
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(200)

    def basic_sent(self) -> list[str]:
        return [
            str(r.url)
            for r in [*self.token_calls, *self.registry_calls]
            if r.headers.get("Authorization", "").startswith("Basic ")
        ]


def test_credentials_refused_to_a_plain_http_realm_of_a_remote_registry() -> None:
    credentials = Credentials(username="alice", password=PASSWORD)
    with respx.mock(assert_all_called=False) as router:
        remote = RemoteRegistry(router, "https")
        with pytest.raises(AuthenticationError) as caught:
            pushmanifest.push(remote_spec(), PushOptions(credentials=credentials))
    message = str(caught.value)
    assert "refusing to send the credentials of user 'alice' to auth.test over plain HTTP" in (
        message
    )
    assert "--plain-http or --insecure" in message
    assert remote.token_calls == [], "the token server got a request"
    assert remote.basic_sent() == []
    assert PASSWORD not in exception_text(caught.value)


@pytest.mark.parametrize(
    ("scheme", "flag"), [("http", {"plain_http": True}), ("https", {"insecure": True})]
)
def test_credentials_go_over_plain_http_when_asked(scheme: str, flag: dict[str, bool]) -> None:
    credentials = Credentials(username="alice", password=PASSWORD)
    options = PushOptions(credentials=credentials, client=ClientOptions(backoff=0.01, **flag))
    with respx.mock(assert_all_called=False) as router:
        remote = RemoteRegistry(router, scheme)
        [result] = pushmanifest.push(remote_spec(), options)
    assert result.written == ("1.0",)
    # Asked for: the token request carried alice's Basic credentials over http://.
    assert remote.basic_sent() == [str(remote.token_calls[0].url)]
    assert remote.token_calls[0].url.scheme == "http"


def test_the_cli_refuses_too_and_says_how_to_allow_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setattr(sys, "stdin", _Stdin(PASSWORD + "\n"))
    spec = tmp_path / "remote.yaml"
    spec.write_text(
        f"image: {REMOTE}/{REPOSITORY}:1.0\n"
        f"manifests: [{{image: '{REMOTE}/{REPOSITORY}:amd64', "
        "platform: {architecture: amd64, os: linux}}]\n"
    )
    with respx.mock(assert_all_called=False) as router:
        remote = RemoteRegistry(router, "https")
        status = cli_main(
            ["--debug", "from-spec", str(spec), "--username", "alice", "--password-stdin"]
        )
    captured = capsys.readouterr()
    assert status == 1
    assert "over plain HTTP" in captured.err and "--plain-http or --insecure" in captured.err
    assert remote.token_calls == [] and remote.basic_sent() == []
    assert_no_secret(captured.out + captured.err, [PASSWORD, *basic_forms("alice", PASSWORD)])


class _Stdin:
    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

    def read(self) -> str:
        text = "".join(self._lines)
        self._lines = []
        return text


def test_no_authorization_follows_a_redirect_to_plain_http() -> None:
    """An https registry redirecting a request to http:// of the same host: the token stays."""
    credentials = Credentials(username="alice", password=PASSWORD)
    realm = "https://auth.test/token"
    sent_over_http: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer tok-1":
            challenge = f'Bearer realm="{realm}",service="{REMOTE}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        location = str(request.url.copy_with(scheme="http"))
        return httpx.Response(307, headers={"Location": location})

    def plain(request: httpx.Request) -> httpx.Response:
        sent_over_http.append(request)
        return httpx.Response(404)

    async def go() -> Any:
        async with RegistryClient(REMOTE, credentials=credentials) as client:
            client.add_scope(REPOSITORY, "pull")
            return await client.head_manifest(REPOSITORY, "amd64")

    with respx.mock(assert_all_called=False) as router:
        router.route(url__startswith=f"https://{REMOTE}/").mock(side_effect=registry)
        router.route(url__startswith=f"http://{REMOTE}/").mock(side_effect=plain)
        router.route(url__startswith=realm).respond(200, json={"token": "tok-1"})
        # What the client makes of the 404 is not the point here.
        with contextlib.suppress(PushManifestError):
            asyncio.run(go())
    assert sent_over_http, "the redirect was not followed"
    assert all("Authorization" not in r.headers for r in sent_over_http)
