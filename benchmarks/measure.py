"""Measuring: the commands run as subprocesses (pushmanifest, docker), their wall time, and the
requests they make, counted by the tests' :class:`~support.proxy.HttpProxy` in front of each
registry (and the token server's own records). The depth is counted in waves, in one more run
without latency through a :class:`~waves.GatedRoute` (``repeat(..., depth=True)``).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from commands import HERE, log, run_checked, subprocess_env
from scenarios import PLATFORMS
from waves import GatedRoute

from support.images import SeedClient, seed_image
from support.proxy import HttpProxy
from support.registry import RegistryServer

# -- for the tables --------------------------------------------------------------------------------


def ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def value(cell: Optional[Cell], name: str) -> str:
    """A count for a table: the largest over the runs."""
    if cell is None:
        return "skipped"
    if not cell.ok:
        return "failed"
    return str(cell.most(name))


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- measurements ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One measured run."""

    wall: float
    requests: int  # through the proxy, plus token requests
    tokens: int
    connections: int
    manifest_gets: int
    aside: float = 0.0  # time inside the run not counted in wall (docker annotate)
    cpu: Optional[float] = None  # pushmanifest's user+sys seconds (rusage.py)
    rss: Optional[float] = None  # pushmanifest's peak RSS in MiB (rusage.py)


@dataclass
class Cell:
    """Several runs of one thing: median wall, and the counts of the last run (deterministic)."""

    samples: list[Sample] = field(default_factory=list)
    error: str = ""
    waves: Optional[int] = None  # the depth: waves of one more run, through the GatedRoute

    @property
    def ok(self) -> bool:
        return bool(self.samples) and not self.error

    @property
    def wall(self) -> Optional[float]:
        return median([s.wall for s in self.samples]) if self.ok else None

    @property
    def aside(self) -> Optional[float]:
        return median([s.aside for s in self.samples]) if self.ok else None

    @property
    def cpu(self) -> Optional[float]:
        """Median CPU seconds (user+sys) of pushmanifest's runs."""
        found = [s.cpu for s in self.samples if s.cpu is not None]
        return median(found) if self.ok and found else None

    @property
    def rss(self) -> Optional[float]:
        """The largest peak RSS (MiB) over the runs: a bound holds for every run."""
        found = [s.rss for s in self.samples if s.rss is not None]
        return max(found) if self.ok and found else None

    def most(self, name: str) -> Optional[int]:
        """The largest value of a count over the runs (a bound holds for every run); ``depth``:
        the waves of the gated run."""
        if not self.ok:
            return None
        if name == "depth":
            return self.waves
        most: int = max(getattr(s, name) for s in self.samples)
        return most


class Site:
    """A registry behind a latency proxy, with the credentials both tools use; and behind a
    :class:`~waves.GatedRoute`, used inside :meth:`gated` (``host`` is then the route's)."""

    def __init__(self, name: str, server: RegistryServer, workdir: Path) -> None:
        self.name = name
        self.server = server
        self.proxy = HttpProxy(upstream=server.host).start()
        self.route = GatedRoute(server)
        self._gated = False
        self.user: Optional[str] = "alice" if server.token_server is not None else None
        self.prefix = "alice" if self.user else "bench"
        self.workdir = workdir
        self.config_dir = workdir / f"docker-config-{name}"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        auths = {}
        if self.user:
            secret = f"{self.user}:{server.users[self.user]}".encode()
            for host in (self.proxy.host, self.route.host):
                auths[host] = {"auth": base64.b64encode(secret).decode()}
        (self.config_dir / "config.json").write_text(json.dumps({"auths": auths}))
        self._tags = 0
        self._usage: Optional[tuple[float, float]] = None  # (cpu s, peak RSS MiB) of the last run

    def close(self) -> None:
        self.proxy.stop()
        self.route.close()

    @property
    def host(self) -> str:
        return self.route.host if self._gated else self.proxy.host

    @property
    def on_start(self) -> Optional[Callable[[Optional[int]], None]]:
        """What a command run here tells its process id (inside :meth:`gated`: the gate)."""
        return self.route.watch if self._gated else None

    @contextlib.contextmanager
    def gated(self) -> Iterator[None]:
        """Commands made inside go through the gated route, with no latency at the token
        server."""
        ts = self.server.token_server
        delay = ts.delay if ts is not None else 0.0
        self._gated = True
        if ts is not None:
            ts.delay = 0.0
        try:
            yield
        finally:
            self._gated = False
            if ts is not None:
                ts.delay = delay

    def fresh_tag(self) -> str:
        self._tags += 1
        return f"run{self._tags}"

    def set_delay(self, delay: float) -> None:
        self.proxy.delay = delay
        if self.server.token_server is not None:
            self.server.token_server.delay = delay

    def measure(self, action: Callable[[], float]) -> Sample:
        ts = self.server.token_server
        self.proxy.reset()
        if ts is not None:
            ts.reset()
        self._usage = None
        start = time.perf_counter()
        aside = action()
        wall = time.perf_counter() - start - aside
        cpu, rss = self._usage or (None, None)
        records = self.proxy.requests
        token_records = ts.requests if ts is not None else []
        return Sample(
            wall=wall,
            requests=len(records) + len(token_records),
            tokens=len(token_records),
            connections=self.proxy.connections,
            manifest_gets=sum(1 for r in records if r.method == "GET" and "/manifests/" in r.path),
            aside=aside,
            cpu=cpu,
            rss=rss,
        )

    def waves(self, action: Callable[[], float]) -> int:
        """The depth of ``action`` (made inside :meth:`gated`), in waves."""
        self.route.reset()
        action()
        return self.route.depth()

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, repos: Sequence[str], n: int) -> None:
        seed_sources(self.server, repos, n, self.user)

    # -- the two tools --------------------------------------------------------------------------

    def pushmanifest(
        self,
        specs: Sequence[Path],
        *,
        extra: Sequence[str] = (),
        variant: Sequence[str] = (),
    ) -> Callable[[], float]:
        if variant:
            head = [sys.executable, str(HERE / "variant.py"), *variant, "--"]
        else:
            head = [sys.executable, "-m", "pushmanifest"]
        args = [
            *head,
            "from-spec",
            "--plain-http",
            "--docker-cfg",
            str(self.config_dir),
            *extra,
            *map(str, specs),
        ]
        env = subprocess_env(self.config_dir)
        on_start = self.on_start
        usage = self.workdir / f"usage-{self.name}.txt"
        if on_start is None:  # measured, not gated: its CPU time and peak memory too
            args = [sys.executable, str(HERE / "rusage.py"), str(usage), "--", *args]

        def action() -> float:
            run_checked(args, env, "pushmanifest", on_start=on_start)
            if on_start is None:
                cpu, kib = usage.read_text().split()
                self._usage = (float(cpu), int(kib) / 1024)
            return 0.0

        return action

    def docker(self, docker: str, repo: str, tag: str, n: int) -> Callable[[], float]:
        target = f"{self.host}/{repo}:{tag}"
        sources = [f"{self.host}/{repo}:src{i}" for i in range(n)]
        on_start = self.on_start

        def action() -> float:
            # A fresh config per run: docker keeps created lists under DOCKER_CONFIG/manifests.
            config = Path(tempfile.mkdtemp(dir=self.workdir, prefix="docker-"))
            shutil.copy(self.config_dir / "config.json", config / "config.json")
            env = subprocess_env(config)
            run_checked(
                [docker, "manifest", "create", "--insecure", target, *sources],
                env,
                "create",
                on_start=on_start,
            )
            start = time.perf_counter()
            for source, (os_name, arch, variant) in zip(sources, PLATFORMS):
                annotate = [docker, "manifest", "annotate", target, source]
                annotate += ["--os", os_name, "--arch", arch]
                if variant:
                    annotate += ["--variant", variant]
                run_checked(annotate, env, "annotate")
            aside = time.perf_counter() - start
            push = [docker, "manifest", "push", "--insecure", target]
            run_checked(push, env, "push", on_start=on_start)
            shutil.rmtree(config, ignore_errors=True)
            return aside

        return action


def seed_sources(server: RegistryServer, repos: Sequence[str], n: int, user: Optional[str]) -> None:
    """``src0..src{n-1}`` (PLATFORMS) in each repository, a thread per few repositories."""
    password = server.users[user] if user else None

    def one(repo: str) -> None:
        with SeedClient(server, username=user, password=password) as client:
            for i, (os_name, arch, variant) in enumerate(PLATFORMS[:n]):
                seed_image(
                    server,
                    repo,
                    f"src{i}",
                    os=os_name,
                    architecture=arch,
                    variant=variant,
                    client=client,
                )

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, repos))


def repeat(
    runs: int, site: Site, make: Callable[[], Callable[[], float]], *, depth: bool = False
) -> Cell:
    """``runs`` measured runs of ``make()`` at ``site``; the first failure ends them. ``depth``:
    then one more run, through the gate, for the depth in waves."""
    cell = Cell()
    try:
        for _ in range(runs):
            cell.samples.append(site.measure(make()))
        if depth:
            with site.gated():
                cell.waves = site.waves(make())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cell.error = str(exc).splitlines()[0][:300]
        log(f"  failed: {exc}")
    return cell
