"""Depth in waves: gated proxies (no latency) in front of a registry and its token server.

A command run through a :class:`GatedRoute` has its requests held and released in waves by the
tests' :class:`~support.proxy.WaveGate` (read its docstring): a wave is released only once the
command's process can send nothing more without an answer, so the number of waves is the number
of round trips one after another, however loaded the machine is. The benchmark counts depth in a
separate run through this route, not from the wall-clock overlap of the timed runs.
"""

from __future__ import annotations

from typing import Optional

from support.proxy import HttpProxy, WaveGate
from support.registry import RegistryServer

#: A process that never looks blocked gets a wave after this long, and the depth fails.
STALL_TIMEOUT = 30.0


class GatedRoute:
    """``host`` reaches ``server`` through a gated proxy; with token auth the registry's realm is
    pointed at a gated proxy in front of the token server, so token requests are in the waves."""

    def __init__(self, server: RegistryServer) -> None:
        self.gate = WaveGate(stall_timeout=STALL_TIMEOUT)
        self.tokens: Optional[HttpProxy] = None
        ts = server.token_server
        rewrite = None
        if ts is not None:
            self.tokens = HttpProxy(upstream=f"127.0.0.1:{ts.port}", gate=self.gate).start()
            realm, via = ts.realm, f"{self.tokens.url}/token"

            def rewrite(name: str, value: str) -> str:
                return value.replace(realm, via) if name == "www-authenticate" else value

        self.registry = HttpProxy(
            upstream=server.host, gate=self.gate, rewrite_response_header=rewrite
        ).start()

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def proxies(self) -> list[HttpProxy]:
        return [self.registry] + ([self.tokens] if self.tokens is not None else [])

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.stop()

    def reset(self) -> None:
        """Before a run: no client watched (requests wait for one), waves from 1."""
        self.gate.watch(None)
        for proxy in self.proxies:
            proxy.reset()

    def watch(self, pid: Optional[int]) -> None:
        """The process whose requests go through now (``None`` between two processes)."""
        self.gate.watch(pid)

    def depth(self) -> int:
        """The waves of the run since :meth:`reset`; an error if the gate or a proxy had one.

        Except a bad request: ``docker manifest --insecure`` first tries TLS on a plain-HTTP
        registry, the proxy answers the handshake 400, and docker goes on in plain HTTP. Such an
        attempt is no request: counted neither here nor in the timed runs' requests.
        """
        errors = self.gate.errors
        errors += [e for p in self.proxies for e in p.errors if ": bad request" not in e]
        if errors:
            raise RuntimeError(f"gated run: {errors[0]}")
        if any(r.wave is None for p in self.proxies for r in p.requests):
            raise RuntimeError("gated run: a request did not go through the gate")
        return self.gate.waves
