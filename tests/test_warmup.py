"""Connection set-up: a loopback registry's scheme probe costs no round trip of its own (issue 12,
point 3), and connections, the ping and the token start while the spec still loads (point 2).

Depth is counted in waves (``support.proxy.WaveGate``), never judged by wall-clock time: the CLI
runs as a subprocess through gated proxies, as in ``test_request_counts.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from support.cli import run_cli
from support.images import seed_platforms
from support.proxy import HttpProxy, WaveGate

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


class Route:
    def __init__(self, gate: WaveGate, registry: HttpProxy, tokens: Optional[HttpProxy]) -> None:
        self.gate, self.registry, self.tokens = gate, registry, tokens

    @property
    def proxies(self) -> list[HttpProxy]:
        return [self.registry] + ([self.tokens] if self.tokens is not None else [])

    @property
    def depth(self) -> int:
        waves = {r.wave for p in self.proxies for r in p.requests}
        assert None not in waves
        return len(waves)


def _is_tls_hello(error: str) -> bool:
    """The proxy speaks plain HTTP: a TLS ClientHello is a bad request to it (the probe)."""
    return "bad request" in error and "\\x00" in error


@contextlib.contextmanager
def gated(server: Any) -> Iterator[Route]:
    """Gated proxies in front of ``server`` and its token server (if any)."""
    gate = WaveGate()
    with contextlib.ExitStack() as stack:
        tokens = None
        rewrite = None
        ts = getattr(server, "token_server", None)
        if ts is not None:
            tokens = stack.enter_context(HttpProxy(upstream=f"127.0.0.1:{ts.port}", gate=gate))
            realm, via = ts.realm, f"{tokens.url}/token"

            def rewrite(name: str, value: str) -> str:
                return value.replace(realm, via) if name == "www-authenticate" else value

        registry = stack.enter_context(
            HttpProxy(upstream=server.host, gate=gate, rewrite_response_header=rewrite)
        )
        route = Route(gate, registry, tokens)
        yield route
        for p in route.proxies:
            assert [e for e in p.errors if not _is_tls_hello(e)] == []


def push(route: Route, server: Any, tmp_path: Path, *args: str, user: Optional[str] = None) -> Any:
    repo = seeded(server, f"{user or 'warm'}/probe", user)
    spec = tmp_path / f"{fresh_tag()}.yaml"
    spec.write_text(spec_text(route.registry.host, repo, fresh_tag()))
    auth: list[str] = []
    stdin = ""
    if user is not None:
        auth, stdin = ["--username", user, "--password-stdin"], server.users[user] + "\n"
    for p in route.proxies:
        p.reset()
    result = run_cli(
        "from-spec", *auth, *args, str(spec), stdin=stdin, cwd=tmp_path, on_start=route.gate.watch
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
