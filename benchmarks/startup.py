#!/usr/bin/env python3
"""Time to first request: ``pushmanifest from-spec`` against its floor (``floor.py``), side by
side (issue 12, point 1).

For each command, from just before the process is started to the moment the first request's
line and headers reached the :class:`~support.proxy.HttpProxy` in front of the registry (the
proxy's records and this timer share ``time.monotonic``), without latency; the two commands
alternate run by run so that the machine's load weighs on both alike. Both push the same list
(N archs, a fresh tag each run), open and with token auth, with this checkout's src/ and its
bytecode compiled. Also the process's CPU time (user + system) for the whole run.

Part of ``run.py`` (``bench.Bench.startup_floor``); alone, for working on the start-up:

    python3 benchmarks/startup.py [--runs K] [--archs N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' registries, proxy and seeding

from commands import ROOT, run_checked, subprocess_env  # noqa: E402
from measure import Site  # noqa: E402
from scenarios import spec_document  # noqa: E402

#: Issue 12: pushmanifest's time to first request over the floor's.
FLOOR_RATIO_TARGET = 1.15
#: The list pushed (architectures).
STARTUP_ARCHS = 2


@dataclass
class FirstRequest:
    """Runs of one command: time to first request and CPU time, per run (seconds)."""

    label: str
    first: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.first) and not self.error

    @property
    def median_first(self) -> Optional[float]:
        return statistics.median(self.first) if self.ok else None

    @property
    def median_cpu(self) -> Optional[float]:
        return statistics.median(self.cpu) if self.ok else None


@dataclass
class FloorComparison:
    """pushmanifest and its floor at one registry set-up (``auth``: open or token)."""

    auth: str
    archs: int
    pushmanifest: FirstRequest
    floor: FirstRequest

    @property
    def ratio(self) -> Optional[float]:
        pm, fl = self.pushmanifest.median_first, self.floor.median_first
        return None if pm is None or fl is None or fl <= 0 else pm / fl


def first_request(site: Site, run: Callable[[], None]) -> tuple[float, float]:
    """Run ``run`` once: (seconds from its start to its first request at the proxy, CPU seconds
    of the child processes it ran)."""
    site.proxy.reset()
    if site.server.token_server is not None:
        site.server.token_server.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    starts = [r.start for r in site.proxy.requests]
    if not starts:
        raise RuntimeError("no request reached the proxy")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return min(starts) - started, cpu


def compare(site: Site, make_spec: Callable[[], Path], runs: int, archs: int) -> FloorComparison:
    """``runs`` alternating runs of pushmanifest and the floor at ``site`` (its latency set to 0
    by the caller)."""
    config_dir = site.config_dir
    env = subprocess_env(config_dir)
    commands: dict[str, Callable[[Path], list[str]]] = {
        "pushmanifest": lambda spec: [
            sys.executable,
            "-m",
            "pushmanifest",
            "from-spec",
            "--plain-http",
            "--docker-cfg",
            str(config_dir),
            str(spec),
        ],
        "floor": lambda spec: [
            sys.executable,
            str(HERE / "floor.py"),
            str(spec),
            "--docker-cfg",
            str(config_dir),
        ],
    }
    results = {name: FirstRequest(name) for name in commands}
    # One run of each first, not counted: the page cache, and the registry's first answers.
    for _ in range(runs + 1):
        for name, command in commands.items():
            result = results[name]
            if result.error:
                continue
            args = command(make_spec())

            def run() -> None:
                run_checked(args, env, name)  # noqa: B023  (called at once)

            try:
                first, cpu = first_request(site, run)
            except (RuntimeError, OSError) as exc:
                result.error = str(exc).splitlines()[0][:300]
                continue
            if _ > 0:
                result.first.append(first)
                result.cpu.append(cpu)
    return FloorComparison(site.name, archs, results["pushmanifest"], results["floor"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, metavar="K")
    parser.add_argument("--archs", type=int, default=STARTUP_ARCHS, metavar="N")
    parser.add_argument("--auth", choices=("open", "token", "both"), default="both")
    args = parser.parse_args(argv)
    import compileall
    import tempfile

    from support.registry import start_open_registry, start_token_registry

    compileall.compile_dir(str(ROOT / "src" / "pushmanifest"), quiet=1)
    starts = {"open": start_open_registry, "token": start_token_registry}
    names = ["open", "token"] if args.auth == "both" else [args.auth]
    with tempfile.TemporaryDirectory(prefix="pushmanifest-startup-") as tmp:
        for name in names:
            server = starts[name](Path(tmp) / name)
            site = Site(name, server, Path(tmp))
            try:
                site.seed([f"{site.prefix}/push"], args.archs)

                def make_spec(site: Site = site) -> Path:
                    tag = site.fresh_tag()
                    path = Path(tmp) / f"{site.name}-{tag}.yaml"
                    repo = f"{site.prefix}/push"
                    path.write_text(spec_document(site.host, repo, tag, args.archs))
                    return path

                print(format_comparison(compare(site, make_spec, args.runs, args.archs)))
            finally:
                site.close()
                server.stop()
    return 0


def format_comparison(c: FloorComparison) -> str:
    def ms(value: Optional[float]) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    ratio = "-" if c.ratio is None else f"{c.ratio:.2f}"
    parts = [f"{c.auth}, N={c.archs}:"]
    for r in (c.pushmanifest, c.floor):
        parts.append(
            f"{r.label} first request {ms(r.median_first)} (min {ms(min(r.first, default=None))}),"
            f" CPU {ms(r.median_cpu)}{' ' + r.error if r.error else ''};"
        )
    parts.append(f"ratio {ratio}")
    return " ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
