"""Proxies in front of a test registry (and its token server), counting requests and, gated,
counting their waves: what tests/test_request_counts.py and tests/test_warmup.py push through."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

from .proxy import HttpProxy, WaveGate


@dataclass
class Route:
    """The proxies a push goes through: ``registry`` (its ``host`` goes in the spec) and, with
    token auth, ``tokens`` in front of the token server; ``gate`` where requests go in waves."""

    gate: Optional[WaveGate]
    registry: HttpProxy
    tokens: Optional[HttpProxy]

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def proxies(self) -> list[HttpProxy]:
        return [self.registry] + ([self.tokens] if self.tokens is not None else [])

    @property
    def depth(self) -> int:
        """Round trips one after another: the waves the gate released requests in."""
        waves = {r.wave for p in self.proxies for r in p.requests}
        assert None not in waves
        return len(waves)

    def reset(self) -> None:
        for p in self.proxies:
            p.reset()


def _is_tls_hello(error: str) -> bool:
    """The proxy speaks plain HTTP: a TLS ClientHello is a bad request to it (a scheme probe)."""
    return "bad request" in error and "\\x" in error


@contextlib.contextmanager
def route_to(
    server: Any, *, gate_requests: bool = True, tls_probes: bool = False
) -> Iterator[Route]:
    """Proxies, gated (or only counting), in front of ``server`` and its token server (if any).
    At the end, no proxy may have met an error; ``tls_probes``: but TLS hellos (a loopback
    registry's scheme probed without --plain-http)."""
    gate = WaveGate() if gate_requests else None
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
            assert [e for e in p.errors if not (tls_probes and _is_tls_hello(e))] == []


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
