"""Connection set-up: a loopback registry's scheme probe costs no round trip of its own (issue 12,
point 3), and connections, the ping and the token start while the spec still loads (point 2).

Depth is counted in waves (``support.proxy.WaveGate``), never judged by wall-clock time: the CLI
runs as a subprocess through gated proxies, as in ``test_request_counts.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from pushmanifest.auth import Credentials, Secret
from pushmanifest.errors import SpecError
from pushmanifest.pusher import PushOptions
from pushmanifest.pusher.warm import (
    MAX_WARM_HOSTS,
    Warmup,
    push_loading_async,
    scan_spec_text,
    warm_scopes,
)
from pushmanifest.registry import ClientOptions
from pushmanifest.registry.warmup import ReadyConnections
from pushmanifest.spec import ManifestListSpec, load_spec_text
from support.cli import run_cli
from support.images import seed_platforms
from support.routes import Route, route_to

pytestmark = pytest.mark.registry

PLATFORMS = [("amd64", ""), ("arm64", "v8")]
USER = "alice"
_seeded: set[tuple[str, str]] = set()
_tags = iter(range(1_000_000))


def fresh_tag() -> str:
    return f"w{os.getpid()}-{next(_tags)}"


def seeded(server: Any, repo: str, user: Optional[str]) -> str:
    if (server.url, repo) not in _seeded:
        platforms = [(f"src{i}", arch, variant) for i, (arch, variant) in enumerate(PLATFORMS)]
        seed_platforms(server, repo, platforms, user=user)
        _seeded.add((server.url, repo))
    return repo


def spec_text(host: str, repo: str, tag: str) -> str:
    lines = [f"image: {host}/{repo}:{tag}", "manifests:"]
    for i, (arch, variant) in enumerate(PLATFORMS):
        lines += [f"  - image: {host}/{repo}:src{i}", "    platform:"]
        lines += [f"      architecture: {arch}", "      os: linux"]
        if variant:
            lines.append(f"      variant: {variant}")
    return "\n".join(lines) + "\n"


def gated(server: Any, *, gate_requests: bool = True) -> contextlib.AbstractContextManager[Route]:
    """Proxies in front of ``server``; the warm-up's TLS probes of them are no error."""
    return route_to(server, gate_requests=gate_requests, tls_probes=True)


def push(
    route: Route,
    server: Any,
    tmp_path: Path,
    *args: str,
    user: Optional[str] = None,
    python_args: tuple[str, ...] = (),
) -> Any:
    repo = seeded(server, f"{user or 'warm'}/probe", user)
    spec = tmp_path / f"{fresh_tag()}.yaml"
    spec.write_text(spec_text(route.registry.host, repo, fresh_tag()))
    auth: list[str] = []
    stdin = ""
    if user is not None:
        auth, stdin = ["--username", user, "--password-stdin"], server.users[user] + "\n"
    for p in route.proxies:
        p.reset()
    assert route.gate is not None
    result = run_cli(
        "from-spec",
        *auth,
        *args,
        str(spec),
        stdin=stdin,
        cwd=tmp_path,
        on_start=route.gate.watch,
        python_args=python_args,
    )
    assert result.returncode == 0, result.stderr
    assert "Digest: sha256:" in result.stdout
    return result


# -- point 3: the loopback probe --------------------------------------------------------------


@pytest.mark.parametrize("plain_http", [True, False])
def test_loopback_open_registry_depth_is_two_with_or_without_plain_http(
    open_registry: Any, tmp_path: Path, plain_http: bool
) -> None:
    """HTTPS is tried first (a TLS hello the plain-HTTP server refuses), then plain HTTP: no ping
    of its own without credentials, so the HEADs are the first wave and the PUT the second."""
    with gated(open_registry) as route:
        push(route, open_registry, tmp_path, *(["--plain-http"] if plain_http else []))
        assert route.depth == 2
        assert route.registry.count("GET", "/v2/") == 0  # no ping: nothing to learn from it


@pytest.mark.parametrize("plain_http", [True, False])
def test_loopback_token_registry_depth_is_four_with_or_without_plain_http(
    token_registry: Any, tmp_path: Path, plain_http: bool
) -> None:
    """With credentials the ping is needed: its plain-HTTP form goes with the HTTPS probe, so
    the probe adds no wave: ping, token, HEADs, PUT."""
    with gated(token_registry) as route:
        push(route, token_registry, tmp_path, *(["--plain-http"] if plain_http else []), user=USER)
        assert route.depth == 4
        assert route.tokens is not None and route.tokens.count() == 1
        pings = [r for r in route.registry.requests if r.path == "/v2/"]
        assert len(pings) == 1 and pings[0].wave == 1


# -- point 2: set-up while the spec loads -------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition()`` holds; only a real hang reaches the bound."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def run_loading(
    load: Callable[[], list[ManifestListSpec]], options: PushOptions, texts: list[str]
) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(push_loading_async(load, options, texts=texts), 60)

    return asyncio.run(main())


def test_ping_and_token_while_the_spec_loads_and_the_run_reuses_them(
    token_registry: Any,
) -> None:
    """The spec's loading waits until the token server has answered: only the warm-up can have
    asked it. The run then uses that token (one token request in all) and that ping."""
    repo = seeded(token_registry, f"{USER}/probe", USER)
    with gated(token_registry, gate_requests=False) as route:
        assert route.tokens is not None
        text = spec_text(route.registry.host, repo, fresh_tag())
        during: list[tuple[str, str]] = []

        def load() -> list[ManifestListSpec]:
            assert route.tokens is not None
            wait_until(lambda: route.tokens.count() == 1, "the token request, ahead")
            during.extend((r.method, r.path) for r in route.registry.requests)
            return load_spec_text(text)

        credentials = Credentials(
            username=USER, password=Secret(token_registry.users[USER]), source="test"
        )
        options = PushOptions(credentials=credentials, client=ClientOptions(plain_http=True))
        (result,) = run_loading(load, options, [text])
        assert result.written == ("latest",) or result.written
        assert during == [("GET", "/v2/")]
        assert route.tokens.count() == 1
        assert route.registry.count("GET", "/v2/") == 1
        assert route.registry.count("HEAD") == len(PLATFORMS) + 1


def test_loopback_scheme_probed_and_connections_opened_while_the_spec_loads(
    open_registry: Any,
) -> None:
    """No --plain-http: a TLS handshake is tried on a connection per first-wave request (2
    sources and the target tag; the first to fail decides plain HTTP), then those connections
    are opened again for plain HTTP, all before the spec has loaded; the run opens no other."""
    repo = seeded(open_registry, "warm/probe", None)
    with gated(open_registry, gate_requests=False) as route:
        text = spec_text(route.registry.host, repo, fresh_tag())
        ahead = 2 * (len(PLATFORMS) + 1)  # one per HEAD: TLS tried, then plain

        def load() -> list[ManifestListSpec]:
            wait_until(lambda: route.registry.connections >= ahead, "the connections, ahead")
            assert route.registry.requests == []
            return load_spec_text(text)

        run_loading(load, PushOptions(), [text])
        assert route.registry.connections == ahead
        assert route.registry.count("HEAD") == len(PLATFORMS) + 1
        assert route.registry.count("PUT") == 1
        assert route.registry.count("GET", "/v2/") == 0


@pytest.mark.parametrize("credentials_from", ["options", "docker config"])
def test_the_loader_thread_starts_once_the_connections_are_opening(
    open_registry: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, credentials_from: str
) -> None:
    """The spec's loader thread starts only once the warm-up has imported the network layers
    and started opening its connections (one per first-wave request): two threads running
    Python at once take turns on one GIL, which cost ~40 ms of CPU before the first request.
    The user's credentials, or docker's config without a credential helper: no thread is
    needed to find them, so the connections come first, deterministically."""
    repo = seeded(open_registry, "warm/order", None)
    opened: list[int] = []  # connections started ahead, per open_ahead call
    open_ahead = ReadyConnections.open_ahead

    def counting(self: ReadyConnections, host: str, port: int, count: int, **kw: Any) -> Any:
        opened.append(count)
        return open_ahead(self, host, port, count, **kw)

    monkeypatch.setattr(ReadyConnections, "open_ahead", counting)
    with gated(open_registry, gate_requests=False) as route:
        text = spec_text(route.registry.host, repo, fresh_tag())
        at_load: list[int] = []

        def load() -> list[ManifestListSpec]:
            at_load.append(sum(opened))
            return load_spec_text(text)

        if credentials_from == "options":
            credentials = Credentials(username="someone", password=Secret("pw"), source="test")
            options = PushOptions(credentials=credentials, client=ClientOptions(plain_http=True))
        else:
            (tmp_path / "config.json").write_text('{"auths": {}}')
            options = PushOptions(docker_config=tmp_path, client=ClientOptions(plain_http=True))
        run_loading(load, options, [text])
        assert at_load == [len(PLATFORMS) + 1]
        assert route.registry.connections == len(PLATFORMS) + 1


HELPER = """#!{python}
import json, os, sys, time
sys.stdin.read()
flag = os.environ["LOADED_FLAG"]
deadline = time.monotonic() + 60
while not os.path.exists(flag) and time.monotonic() < deadline:
    time.sleep(0.01)
with open(os.environ["HELPER_SAW"], "w") as seen:
    seen.write(str(os.path.exists(flag)))
print(json.dumps({{"ServerURL": "x", "Username": "u", "Secret": "s"}}))
"""


def test_a_credential_helper_runs_while_the_spec_loads(
    open_registry: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A credential helper is a program that may take its time: the warm-up runs it in a
    thread, and the spec loads meanwhile (the helper here waits until the spec has started
    loading, and says whether it saw that)."""
    repo = seeded(open_registry, "warm/helper", None)
    helper = tmp_path / "bin" / "docker-credential-waits"
    helper.parent.mkdir()
    helper.write_text(HELPER.format(python=sys.executable))
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOADED_FLAG", str(tmp_path / "loaded"))
    monkeypatch.setenv("HELPER_SAW", str(tmp_path / "saw"))
    (tmp_path / "config.json").write_text('{"credsStore": "waits"}')
    with gated(open_registry, gate_requests=False) as route:
        text = spec_text(route.registry.host, repo, fresh_tag())

        def load() -> list[ManifestListSpec]:
            (tmp_path / "loaded").write_text("")
            return load_spec_text(text)

        options = PushOptions(docker_config=tmp_path, client=ClientOptions(plain_http=True))
        run_loading(load, options, [text])
    assert (tmp_path / "saw").read_text() == "True"


def test_a_silent_host_warmed_does_not_hold_up_an_invalid_spec(silent_port: int) -> None:
    """Its handshake would wait 600 s: the spec's error comes at once, the warm-up stopped."""
    text = f"image: 127.0.0.1:{silent_port}/a/b:1\nmanifests: []\n"

    def load() -> list[ManifestListSpec]:
        return load_spec_text(text, "bad.yaml")

    options = PushOptions(client=ClientOptions(connect_timeout=600, read_timeout=600))
    with pytest.raises(SpecError) as caught:
        run_loading(load, options, [text])
    assert "bad.yaml:2" in str(caught.value)


def test_a_silent_host_warmed_does_not_hold_up_a_run_elsewhere(
    open_registry: Any, silent_port: int
) -> None:
    """The raw text named a host the loaded spec does not use: its warm-up is stopped."""
    repo = seeded(open_registry, "warm/probe", None)
    wrong = spec_text(f"127.0.0.1:{silent_port}", repo, "x")
    right = spec_text(open_registry.host, repo, fresh_tag())

    def load() -> list[ManifestListSpec]:
        return load_spec_text(right)

    options = PushOptions(client=ClientOptions(connect_timeout=600, read_timeout=600))
    (result,) = run_loading(load, options, [wrong])
    assert result.written


def _clean(stderr: str) -> None:
    for sign in ("Traceback", "Task was destroyed", "ResourceWarning", "Exception ignored"):
        assert sign not in stderr, stderr


def test_invalid_spec_exits_2_with_the_loader_s_errors_and_writes_nothing(
    token_registry: Any, tmp_path: Path
) -> None:
    """The warm-up may ping and fetch a token; nothing else, and the output is the loader's."""
    with gated(token_registry, gate_requests=False) as route:
        text = spec_text(route.registry.host, f"{USER}/probe", "t").replace("os: linux", "os: 1")
        spec = tmp_path / "bad.yaml"
        spec.write_text(text)
        with pytest.raises(SpecError) as caught:
            load_spec_text(text, str(spec))
        expected = "".join(f"{problem}\n" for problem in caught.value.problems)
        result = run_cli(
            "from-spec",
            "--username",
            USER,
            "--password-stdin",
            str(spec),
            stdin=token_registry.users[USER] + "\n",
            cwd=tmp_path,
            python_args=("-W", "error"),
        )
        assert result.returncode == 2
        assert result.stderr == expected
        assert result.stdout == ""
        writes = [r for r in route.registry.requests if r.method not in ("GET", "HEAD")]
        assert writes == []
        assert {r.path for r in route.registry.requests} <= {"/v2/"}


@pytest.mark.parametrize("site", ["open", "token"])
def test_no_task_or_socket_left_behind(site: str, request: Any, tmp_path: Path) -> None:
    """-W error: a warmed run ends with every task done and every socket closed."""
    server = request.getfixturevalue(f"{site}_registry")
    user = USER if site == "token" else None
    with gated(server) as route:
        result = push(route, server, tmp_path, user=user, python_args=("-W", "error"))
    _clean(result.stderr)


def test_scan_finds_targets_and_sources_as_the_loader_names_them() -> None:
    text = (
        "image: alpine:3\nmanifests:\n  - image: docker.io/library/alpine:a # amd64\n"
        "    platform: {os: linux, architecture: amd64}\n"
        "  - image: 'ghcr.io/o/app:b'\n  - image: oci:out/riscv64:2\n"
        "---\nimage: localhost:5000/x\nmanifests:\n"
        "- image: localhost:5000/y@sha256:" + "a" * 64 + "\n"
    )
    images, complete = scan_spec_text(text)
    assert complete
    assert [(str(i.reference), i.target) for i in images] == [
        ("docker.io/library/alpine:3", True),
        ("docker.io/library/alpine:a", False),
        ("ghcr.io/o/app:b", False),
        ("localhost:5000/x", True),
        ("localhost:5000/y@sha256:" + "a" * 64, False),
    ]
    assert warm_scopes(images, dry_run=False)["docker.io"] == [
        "repository:library/alpine:pull,push",
        "repository:library/alpine:pull",
    ]
    assert set(warm_scopes(images, dry_run=True)["localhost:5000"]) == {
        "repository:x:pull",
        "repository:y:pull",
    }


@pytest.mark.parametrize(
    "text",
    [
        "image: ${REGISTRY}/app:1\nmanifests: []\n",
        "image: r.io/app:1\nmanifests:\n  - {image: r.io/app:a}\n",
        'image: r.io/app:1\nmanifests:\n  - "image": r.io/app:a\n',
        "image: NOT A REFERENCE\n",
    ],
)
def test_scan_says_when_it_may_have_missed_an_image(text: str) -> None:
    _, complete = scan_spec_text(text)
    assert not complete


def test_warm_up_is_bounded_in_hosts() -> None:
    text = "".join(f"image: r{i}.example/app:1\n---\n" for i in range(MAX_WARM_HOSTS + 3))

    async def main() -> int:
        warmup = Warmup.start([text], PushOptions())
        try:
            return len(warmup._tasks)
        finally:
            await warmup.aclose()

    assert asyncio.run(main()) == MAX_WARM_HOSTS


@pytest.mark.parametrize("how", ["fifo", "stdin"])
def test_a_spec_read_once_is_left_to_the_loader(
    open_registry: Any, tmp_path: Path, how: str
) -> None:
    """A FIFO or standard input can be read once: the warm-up does not peek at it."""
    repo = seeded(open_registry, "warm/probe", None)
    text = spec_text(open_registry.host, repo, fresh_tag())
    if how == "stdin":
        result = run_cli("from-spec", "--dry-run", "-", stdin=text, cwd=tmp_path, timeout=60)
    else:
        fifo = tmp_path / "spec.yaml"
        os.mkfifo(fifo)

        def write() -> None:
            with open(fifo, "w") as stream:
                stream.write(text)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        result = run_cli("from-spec", "--dry-run", str(fifo), cwd=tmp_path, timeout=60)
        writer.join(10)
    assert result.returncode == 0, result.stderr
    assert "Digest: sha256:" in result.stdout


def test_tls_loopback_registry_is_probed_by_a_handshake_and_never_downgraded(
    tls_registry: Any,
) -> None:
    """The probe's handshake succeeds: HTTPS, and that connection (and the others opened ahead,
    handshaken already) serve the run's requests: the pool opens none of its own."""
    from pushmanifest.registry import RegistryClient
    from pushmanifest.registry.warmup import ReadyConnections, close_ready, warm_client

    repo = seeded(tls_registry, f"{USER}/probe", USER)
    credentials = Credentials(
        username=USER, password=Secret(tls_registry.users[USER]), source="test"
    )
    options = ClientOptions(ca_file=str(tls_registry.ca_file))

    async def main() -> None:
        client = RegistryClient(tls_registry.host, credentials=credentials, options=options)
        try:
            await warm_client(client, 2)
            assert client._scheme == "https" and client._pinged
            backend = client.http._transport._pool._network_backend  # type: ignore[attr-defined]
            assert isinstance(backend, ReadyConnections)
            opened = []
            original = backend._backend.connect_tcp

            async def counting(*args: Any, **kwargs: Any) -> Any:
                opened.append(args)
                return await original(*args, **kwargs)

            backend._backend.connect_tcp = counting  # type: ignore[method-assign]
            found = await asyncio.gather(
                *(client.head_manifest(repo, f"src{i}") for i in range(len(PLATFORMS)))
            )
            assert all(d is not None for d in found)
            assert opened == []  # the ping's connection and the one opened ahead
        finally:
            await client.aclose()
            await close_ready(client)

    asyncio.run(main())


def test_dry_run_warms_with_the_scopes_a_dry_run_asks_for(
    token_registry: Any, tmp_path: Path
) -> None:
    """A dry run pings, authenticates and makes HEADs too: warmed, with pull for the target
    (what its run registers), so that the warm token is the run's one token."""
    with gated(token_registry) as route:
        push(route, token_registry, tmp_path, "--dry-run", "--plain-http", user=USER)
        assert route.tokens is not None
        (token,) = route.tokens.requests
        assert "pull%2Cpush" not in token.path and "pull,push" not in token.path
        assert route.registry.count("PUT") == 0
        assert route.depth == 3  # ping, token, HEADs
        assert route.registry.connections == len(PLATFORMS)  # none for the target: no HEAD
