#!/usr/bin/env python3
"""Benchmark pushmanifest against ``docker manifest`` on real local registries. One command:

    python3 benchmarks/run.py [--quick] [--runs K] [--out FILE]

What it does, all on 127.0.0.1:

* starts the CNCF distribution registry (``docker-registry``) twice, open and with token auth
  (the tests' own Docker Hub-style token server), and an :class:`~support.proxy.HttpProxy` in
  front of each that counts requests, records their timing and adds a latency to every request
  (the token server gets the same latency);
* seeds tiny images (one per platform) with the tests' independent client;
* pushes one list of N = 2, 4, 8, 16 architectures at 0 and 50 ms per request, open and with
  token auth, with ``python -m pushmanifest from-spec --plain-http`` (a fresh target tag each
  run, so that the PUT really happens) and with ``docker manifest create`` + ``annotate`` +
  ``push`` (the docker CLI needs no daemon for these), and reports requests (proxy + token
  server), sequential depth (in waves: one more run without latency through gated proxies,
  ``waves.py``, the tests' ``WaveGate``; the token server's requests too), wall time (median)
  and the ratio docker / pushmanifest;
* times ``--version``, ``--help`` (``python -m pushmanifest`` and the installed script) and a dry
  run of 8 architectures; pushes 50 lists of 8 architectures in one invocation through 50 ms, as
  is and at ``--max-concurrency`` 16, 32 and 64 (issue 12: 64 no slower than 32, the default
  the fastest);
* measures the CPU time (user+sys) and peak RSS of every pushmanifest run (``rusage.py``), and
  the CPU per request: bulk runs of 10 and of 50 lists without latency, their difference per
  request (start-up left out);
* counts TCP connections against requests (keep-alive), and over TLS (the TLS registry behind
  a TCP forwarder that adds a round-trip time) compares HTTP/1.1 with HTTP/2 (when the ``h2``
  package is installed; ``benchmarks/variant.py`` turns it on).

It prints a Markdown report and writes it to ``--out`` (default
``benchmarks/results/latest.md``).

The parts: ``scenarios.py`` (what is measured, as data), ``measure.py`` (running the commands,
timing them, counting their requests), ``waves.py`` (their depth, through the gate), ``bench.py``
(running the scenarios), ``tls_push.py`` (the TLS section), ``report.py`` and ``targets.py`` (the
Markdown tables), ``rusage.py`` (a command's CPU time and peak memory), this file (the command).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' registries, proxy and image seeding

from bench import Bench  # noqa: E402
from commands import log  # noqa: E402
from report import report  # noqa: E402

from support.registry import RegistryStartError, RegistryUnavailable  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N = 2, 8; one run each (3 for the CPU per request); bulk on the open registry only; "
        "no TLS/HTTP/2 section",
    )
    parser.add_argument("--runs", type=int, default=0, metavar="K", help="runs per measurement")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "latest.md",
        metavar="FILE",
        help="where to write the Markdown report (default benchmarks/results/latest.md)",
    )
    args = parser.parse_args(argv)
    if args.runs < 0:
        parser.error("--runs must be positive")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pushmanifest-bench-") as tmp:
        bench = Bench(args.quick, args.runs, Path(tmp))
        try:
            results = bench.run()
        except (RegistryUnavailable, RegistryStartError) as exc:
            log(f"cannot start the registry: {exc}")
            return 1
    text = report(results, bench.sizes)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"written to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
