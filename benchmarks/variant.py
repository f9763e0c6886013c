"""Run the pushmanifest CLI with measurement-only patches: what a change to src/ would give.

    python benchmarks/variant.py [--http2] -- PUSHMANIFEST-ARGUMENTS...

* ``--http2``: every ``httpx.AsyncClient`` is made with ``http2=True`` (needs the ``h2``
  package; HTTP/2 is negotiated over TLS only, by ALPN).
* ``--no-warmup``: no connection set-up while the spec loads (``pusher/warm.py``): the run
  connects, pings and asks for its token once the spec has loaded, as before issue 12.

Nothing here ships: the benchmark uses it to measure a candidate before anyone changes src/.
"""

from __future__ import annotations

import sys
from typing import Any

PATCHES = ("--http2", "--no-warmup")


def _http2() -> None:
    import httpx

    original = httpx.AsyncClient.__init__

    def init(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("http2", True)
        original(self, *args, **kwargs)

    httpx.AsyncClient.__init__ = init  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    patches = []
    while argv and argv[0] != "--":
        patches.append(argv.pop(0))
    argv = argv[1:]
    unknown = [p for p in patches if p not in PATCHES]
    if unknown:
        sys.stderr.write(
            f"variant.py: unknown patch {unknown[0]!r} (known: {', '.join(PATCHES)})\n"
        )
        return 2
    if "--http2" in patches:
        _http2()
    if "--no-warmup" in patches:
        import pushmanifest.pusher.warm as warm

        warm.read_spec_text = lambda path, limit=0: None  # type: ignore[assignment]
    from pushmanifest.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
