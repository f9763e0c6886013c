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
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' registries, proxy and seeding

from commands import ROOT, SUBPROCESS_TIMEOUT, subprocess_env  # noqa: E402
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
    cpu_first: list[float] = field(default_factory=list)  # CPU used by the first request
    cpu: list[float] = field(default_factory=list)
    #: Instructions run to the first request (valgrind; None: not counted), which, unlike the
    #: times, the machine's load does not change.
    instructions: Optional[int] = None
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

    @property
    def median_cpu_first(self) -> Optional[float]:
        return statistics.median(self.cpu_first) if self.ok and self.cpu_first else None


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

    @property
    def cpu_ratio(self) -> Optional[float]:
        """The same ratio in CPU used by the first request (steady under load)."""
        pm, fl = self.pushmanifest.median_cpu_first, self.floor.median_cpu_first
        return None if pm is None or fl is None or fl <= 0 else pm / fl

    @property
    def instructions_ratio(self) -> Optional[float]:
        pm, fl = self.pushmanifest.instructions, self.floor.instructions
        return None if pm is None or fl is None or fl <= 0 else pm / fl


def count_instructions(args: Sequence[str], env: dict[str, str]) -> Optional[int]:
    """Instructions the Python command ``args`` runs up to its first request (valgrind's
    cachegrind, through ``firstwrite.py``); None without valgrind or where it fails."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        args[0],
        str(HERE / "firstwrite.py"),
        *args[1:],
    ]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    return int(found.group(1).replace(",", "")) if found and done.returncode == 0 else None


def task_cpu(pid: int) -> Optional[float]:
    """CPU seconds process ``pid`` has run so far, every thread, to the nanosecond
    (``/proc/PID/task/*/schedstat``); None where there is no such file."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def first_request(site: Site, args: Sequence[str], env: dict[str, str]) -> tuple[float, ...]:
    """Run ``args`` once: (seconds from its start to its first request at the proxy, CPU
    seconds it had used when that request reached the proxy (-1: unknown), CPU
    seconds of the whole run). The CPU to first request does not grow with the machine's load
    as the wall time does: the process is CPU-bound until then."""
    site.proxy.reset()
    if site.server.token_server is not None:
        site.server.token_server.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(
        list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    cpu_at_first: list[float] = []

    def watch() -> None:  # the CPU used by the time the first request has reached the proxy
        # (Not its first connection: pushmanifest opens its connections while the spec loads.)
        while proc.poll() is None:
            if site.proxy.requests:
                cpu = task_cpu(proc.pid)
                cpu_at_first.append(-1.0 if cpu is None else cpu)
                return
            time.sleep(0.0002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{' '.join(args[:4])} timed out") from None
    watcher.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        what = " ".join(args[:4])
        raise RuntimeError(f"{what} failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    starts = [r.start for r in site.proxy.requests]
    if not starts:
        raise RuntimeError("no request reached the proxy")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return min(starts) - started, (cpu_at_first or [-1.0])[0], cpu


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
            try:
                first, cpu_first, cpu = first_request(site, command(make_spec()), env)
            except (RuntimeError, OSError) as exc:
                result.error = str(exc).splitlines()[0][:300]
                continue
            if _ > 0:
                result.first.append(first)
                result.cpu.append(cpu)
                if cpu_first >= 0:
                    result.cpu_first.append(cpu_first)
    for name, command in commands.items():
        if not results[name].error:
            results[name].instructions = count_instructions(command(make_spec()), env)
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


def floor_ratio(comparisons: Sequence[FloorComparison]) -> list[list[str]]:
    """Issue 12.1's row of a targets table: time to first request within FLOOR_RATIO_TARGET x
    the floor script's (#, target, measured, met)."""
    if not comparisons:
        return []

    def ms(value: Optional[float]) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    parts, met = [], True
    for c in comparisons:
        if c.ratio is None:
            parts.append(f"{c.auth}: failed")
            met = False
            continue
        notes = [] if c.cpu_ratio is None else [f"CPU by then: {c.cpu_ratio:.2f}"]
        if c.instructions_ratio is not None:
            notes.append(f"instructions: {c.instructions_ratio:.2f}")
        cpu = f" ({'; '.join(notes)})" if notes else ""
        parts.append(
            f"{c.auth}: {ms(c.pushmanifest.median_first)} / {ms(c.floor.median_first)} = "
            f"{c.ratio:.2f}{cpu}"
        )
        met = met and c.ratio <= FLOOR_RATIO_TARGET
    target = (
        f"time to first request <= {FLOOR_RATIO_TARGET}x the floor's (benchmarks/floor.py, the "
        "same requests with only the three dependencies)"
    )
    return [["12.1", target, "; ".join(parts), "yes" if met else "**no**"]]


def format_comparison(c: FloorComparison) -> str:
    def ms(value: Optional[float]) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    def ratio(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.2f}"

    parts = [f"{c.auth}, N={c.archs}:"]
    for r in (c.pushmanifest, c.floor):
        parts.append(
            f"{r.label} first request {ms(r.median_first)} (min {ms(min(r.first, default=None))}),"
            f" CPU by then {ms(r.median_cpu_first)}, CPU in all {ms(r.median_cpu)}"
            f"{' ' + r.error if r.error else ''};"
        )
    parts.append(f"ratio {ratio(c.ratio)} (in CPU by the first request: {ratio(c.cpu_ratio)})")
    pm, fl = c.pushmanifest.instructions, c.floor.instructions
    if pm is not None and fl is not None:
        parts.append(f"instructions to it: {pm / 1e6:.0f}M / {fl / 1e6:.0f}M = {pm / fl:.3f}")
    return " ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
