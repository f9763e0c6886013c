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
  server), sequential depth (longest chain of requests each starting after the previous one
  ended, over the proxy's and the token server's records together), wall time (median) and the
  ratio docker / pushmanifest;
* times ``--version``, ``--help`` (``python -m pushmanifest`` and the installed script) and a dry
  run of 8 architectures; pushes 50 lists of 8 architectures in one invocation through 50 ms;
* counts TCP connections against requests (keep-alive), and over TLS (the TLS registry behind
  a TCP forwarder that adds a round-trip time) compares HTTP/1.1 with HTTP/2 (when the ``h2``
  package is installed; ``benchmarks/variant.py`` turns it on).

It prints a Markdown report and writes it to ``--out`` (default
``benchmarks/results/latest.md``).
"""

from __future__ import annotations

import argparse
import base64
import compileall
import concurrent.futures
import contextlib
import datetime
import importlib.util
import json
import os
import platform as pyplatform
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from tcpdelay import TcpDelay  # noqa: E402

from support.images import SeedClient, seed_image  # noqa: E402
from support.proxy import HttpProxy, depth_of  # noqa: E402
from support.registry import (  # noqa: E402
    RegistryServer,
    RegistryStartError,
    RegistryUnavailable,
    start_open_registry,
    start_tls_registry,
    start_token_registry,
)

#: Distinct platforms, valid for pushmanifest and for ``docker manifest annotate``.
PLATFORMS: list[tuple[str, str, str]] = [
    ("linux", "amd64", ""),
    ("linux", "arm", "v6"),
    ("linux", "arm", "v7"),
    ("linux", "arm64", "v8"),
    ("linux", "386", ""),
    ("linux", "ppc64le", ""),
    ("linux", "s390x", ""),
    ("linux", "riscv64", ""),
    ("linux", "mips64le", ""),
    ("linux", "mips64", ""),
    ("netbsd", "386", ""),
    ("linux", "arm", "v5"),
    ("freebsd", "amd64", ""),
    ("freebsd", "386", ""),
    ("netbsd", "amd64", ""),
    ("openbsd", "amd64", ""),
]
DELAY = 0.05
BULK_LISTS, BULK_ARCHS = 50, 8
#: pushmanifest's default --max-concurrency: the size of its connection pool per registry.
MAX_CONCURRENCY = 16
#: Targets of issue 4 (seconds).
VERSION_TARGET, HELP_TARGET, DRY_RUN_TARGET, BULK_TARGET = 0.100, 0.150, 0.350, 2.0
SUBPROCESS_TIMEOUT = 300


# -- small helpers --------------------------------------------------------------------------------


def ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_docker() -> Optional[str]:
    found = shutil.which("docker")
    if found:
        return found
    return "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else None


def find_script() -> Optional[str]:
    """The installed console script: next to this interpreter first (a pyenv shim on PATH is a
    bash script that would add its own start-up to the measurement)."""
    beside = Path(sys.executable).with_name("pushmanifest")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("pushmanifest")


def subprocess_env(config_dir: Optional[Path] = None) -> dict[str, str]:
    """The environment of every measured command: this checkout's src first, no stray docker
    settings, HOME and DOCKER_CONFIG pointing at our own config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if config_dir is not None:
        env["HOME"] = str(config_dir)
        env["DOCKER_CONFIG"] = str(config_dir)
    return env


def run_checked(args: Sequence[str], env: dict[str, str], what: str, stdin: str = "") -> str:
    proc = subprocess.run(
        list(args),
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def timed(args: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    run_checked(args, env, " ".join(args[:4]))
    return time.perf_counter() - start


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    registry = "docker-registry"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["docker-registry", "--version"], capture_output=True, text=True, timeout=10
        )
        registry = (out.stdout or out.stderr).strip().splitlines()[0]
    docker = find_docker()
    docker_version = "absent"
    if docker:
        with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
            out = subprocess.run([docker, "--version"], capture_output=True, text=True, timeout=10)
            docker_version = out.stdout.strip().splitlines()[0]
    # Installed or not, these change what a library import costs (httpcore imports trio to
    # detect it, httpx its CLI's click/rich/pygments); the pushmanifest command skips them.
    optional = [
        name
        for name in ("trio", "h2", "click", "rich")
        if importlib.util.find_spec(name) is not None
    ]
    return {
        "optional": ", ".join(optional) or "none",
        "cpus": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "cpu": cpu,
        "python": pyplatform.python_version(),
        "system": f"{pyplatform.system()} {pyplatform.release()}",
        "registry": registry,
        "docker": docker_version,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": load_average(),
    }


def load_average() -> str:
    """The 1-minute load average: other work on the machine makes the wall times noisy."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


# -- specs ----------------------------------------------------------------------------------------


def platform_yaml(os_name: str, arch: str, variant: str) -> str:
    extra = f", variant: {variant}" if variant else ""
    return f"{{os: {os_name}, architecture: {arch}{extra}}}"


def spec_document(
    host: str, repo: str, tag: str, n: int, *, tags: Sequence[str] = (), platforms: bool = True
) -> str:
    lines = [f"image: {host}/{repo}:{tag}"]
    if tags:
        lines.append(f"tags: [{', '.join(tags)}]")
    lines.append("manifests:")
    for i, (os_name, arch, variant) in enumerate(PLATFORMS[:n]):
        lines.append(f"  - image: {host}/{repo}:src{i}")
        if platforms:
            lines.append(f"    platform: {platform_yaml(os_name, arch, variant)}")
    return "\n".join(lines) + "\n"


# -- measurements ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One measured run."""

    wall: float
    requests: int  # through the proxy, plus token requests
    tokens: int
    depth: int
    connections: int
    manifest_gets: int
    aside: float = 0.0  # time inside the run not counted in wall (docker annotate)


@dataclass
class Cell:
    """Several runs of one thing: median wall, and the counts of the last run (deterministic)."""

    samples: list[Sample] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.samples) and not self.error

    @property
    def wall(self) -> Optional[float]:
        return median([s.wall for s in self.samples]) if self.ok else None

    @property
    def aside(self) -> Optional[float]:
        return median([s.aside for s in self.samples]) if self.ok else None

    def most(self, name: str) -> Optional[int]:
        """The largest value of a count over the runs (a bound holds for every run)."""
        return max(getattr(s, name) for s in self.samples) if self.ok else None


class Site:
    """A registry behind a latency proxy, with the credentials both tools use."""

    def __init__(self, name: str, server: RegistryServer, workdir: Path) -> None:
        self.name = name
        self.server = server
        self.proxy = HttpProxy(upstream=server.host).start()
        self.user: Optional[str] = "alice" if server.token_server is not None else None
        self.prefix = "alice" if self.user else "bench"
        self.workdir = workdir
        self.config_dir = workdir / f"docker-config-{name}"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        auths = {}
        if self.user:
            secret = f"{self.user}:{server.users[self.user]}".encode()
            auths[self.proxy.host] = {"auth": base64.b64encode(secret).decode()}
        (self.config_dir / "config.json").write_text(json.dumps({"auths": auths}))
        self._tags = 0

    def close(self) -> None:
        self.proxy.stop()

    @property
    def host(self) -> str:
        return self.proxy.host

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
        start = time.perf_counter()
        aside = action()
        wall = time.perf_counter() - start - aside
        records = self.proxy.requests
        token_records = ts.requests if ts is not None else []
        intervals = [(r.start, r.end) for r in records]
        intervals += [(r.start, r.end) for r in token_records]
        return Sample(
            wall=wall,
            requests=len(records) + len(token_records),
            tokens=len(token_records),
            depth=depth_of(intervals),
            connections=self.proxy.connections,
            manifest_gets=sum(1 for r in records if r.method == "GET" and "/manifests/" in r.path),
            aside=aside,
        )

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, repos: Sequence[str], n: int) -> None:
        """``src0..src{n-1}`` in each repository, a thread per few repositories."""
        password = self.server.users[self.user] if self.user else None

        def one(repo: str) -> None:
            with SeedClient(self.server, username=self.user, password=password) as client:
                for i, (os_name, arch, variant) in enumerate(PLATFORMS[:n]):
                    seed_image(
                        self.server,
                        repo,
                        f"src{i}",
                        os=os_name,
                        architecture=arch,
                        variant=variant,
                        client=client,
                    )

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, repos))

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

        def action() -> float:
            run_checked(args, env, "pushmanifest")
            return 0.0

        return action

    def docker(self, docker: str, repo: str, tag: str, n: int) -> Callable[[], float]:
        target = f"{self.host}/{repo}:{tag}"
        sources = [f"{self.host}/{repo}:src{i}" for i in range(n)]

        def action() -> float:
            # A fresh config per run: docker keeps created lists under DOCKER_CONFIG/manifests.
            config = Path(tempfile.mkdtemp(dir=self.workdir, prefix="docker-"))
            shutil.copy(self.config_dir / "config.json", config / "config.json")
            env = subprocess_env(config)
            run_checked(
                [docker, "manifest", "create", "--insecure", target, *sources], env, "create"
            )
            start = time.perf_counter()
            for source, (os_name, arch, variant) in zip(sources, PLATFORMS):
                annotate = [docker, "manifest", "annotate", target, source]
                annotate += ["--os", os_name, "--arch", arch]
                if variant:
                    annotate += ["--variant", variant]
                run_checked(annotate, env, "annotate")
            aside = time.perf_counter() - start
            run_checked([docker, "manifest", "push", "--insecure", target], env, "push")
            shutil.rmtree(config, ignore_errors=True)
            return aside

        return action


def repeat(runs: int, make: Callable[[], Callable[[], float]], site: Site) -> Cell:
    cell = Cell()
    for _ in range(runs):
        try:
            cell.samples.append(site.measure(make()))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            cell.error = str(exc).splitlines()[0][:300]
            log(f"  failed: {exc}")
            break
    return cell


# -- the benchmark --------------------------------------------------------------------------------


@dataclass
class Results:
    info: dict[str, str]
    runs: int
    command: str
    push: dict[tuple[str, float, int], tuple[Cell, Optional[Cell]]] = field(default_factory=dict)
    tags: dict[str, Cell] = field(default_factory=dict)
    no_platform: dict[tuple[str, int], Cell] = field(default_factory=dict)
    startup: list[tuple[str, list[float], Optional[float]]] = field(default_factory=list)
    bulk: list[tuple[str, Cell]] = field(default_factory=list)
    bulk_in_flight: dict[str, int] = field(default_factory=dict)  # label -> --max-concurrency
    tls: list[tuple[str, str, float, Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_after: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.runs: int = args.runs or (1 if self.quick else 5)
        self.sizes = [2, 8] if self.quick else [2, 4, 8, 16]
        self.delays = [0.0, DELAY]
        self.workdir = workdir
        self.docker = find_docker()
        self.sites: dict[str, Site] = {}
        command = "python3 benchmarks/run.py" + (" --quick" if self.quick else "")
        if args.runs:
            command += f" --runs {args.runs}"
        self.results = Results(info=machine(), runs=self.runs, command=command)

    def note(self, text: str) -> None:
        self.results.notes.append(text)

    @contextlib.contextmanager
    def registries(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            log("starting registries")
            open_server = start_open_registry(self.workdir / "open")
            stack.callback(open_server.stop)
            token_server = start_token_registry(self.workdir / "token")
            stack.callback(token_server.stop)
            for name, server in (("open", open_server), ("token", token_server)):
                site = Site(name, server, self.workdir)
                stack.callback(site.close)
                self.sites[name] = site
            yield

    def run(self) -> Results:
        with self.registries():
            log("seeding")
            largest = max(self.sizes)
            bulk_sites = {name for name, _, _, _ in self.bulk_cases()}
            for name, site in self.sites.items():
                site.seed([f"{site.prefix}/push"], largest)
                if name in bulk_sites:
                    repos = [f"{site.prefix}/bulk{j:02d}" for j in range(BULK_LISTS)]
                    site.seed(repos, BULK_ARCHS)
            self.startup()
            self.push_matrix()
            self.extra_tags_and_configs()
            self.bulk()
        if not self.quick:
            self.tls()
        self.results.load_after = load_average()
        return self.results

    # -- one list -------------------------------------------------------------------------------

    def spec(self, site: Site, n: int, *, tags: Sequence[str] = (), platforms: bool = True) -> Path:
        tag = site.fresh_tag()
        path = self.workdir / f"{site.name}-{tag}.yaml"
        doc = spec_document(
            site.host, f"{site.prefix}/push", tag, n, tags=tags, platforms=platforms
        )
        path.write_text(doc)
        return path

    def push_matrix(self) -> None:
        for delay in self.delays:
            for name, site in self.sites.items():
                site.set_delay(delay)
                for n in self.sizes:
                    log(f"push: {name}, {ms(delay)}, N={n}")
                    pm = repeat(
                        self.runs, lambda s=site, n=n: s.pushmanifest([self.spec(s, n)]), site
                    )
                    dk: Optional[Cell] = None
                    if self.docker:
                        dk = repeat(
                            self.runs,
                            lambda s=site, n=n: s.docker(
                                self.docker or "", f"{s.prefix}/push", s.fresh_tag(), n
                            ),
                            site,
                        )
                    self.results.push[(name, delay, n)] = (pm, dk)
        if not self.docker:
            self.note("docker CLI not found: its columns are skipped")

    def extra_tags_and_configs(self) -> None:
        n = 8 if 8 in self.sizes else max(self.sizes)
        for name, site in self.sites.items():
            site.set_delay(DELAY)
            log(f"push: {name}, N={n}, T=2")
            self.results.tags[name] = repeat(
                min(self.runs, 3),
                lambda s=site: s.pushmanifest(
                    [self.spec(s, n, tags=[s.fresh_tag(), s.fresh_tag()])]
                ),
                site,
            )
            for size in self.sizes:
                log(f"push: {name}, N={size}, platforms from the configs")
                self.results.no_platform[(name, size)] = repeat(
                    min(self.runs, 3),
                    lambda s=site, size=size: s.pushmanifest([self.spec(s, size, platforms=False)]),
                    site,
                )

    # -- start-up -------------------------------------------------------------------------------

    def startup(self) -> None:
        count = 5 if self.quick else 11
        env = subprocess_env(self.workdir)
        # pip install compiles a package's bytecode; this checkout's src/ may have none (and
        # PYTHONDONTWRITEBYTECODE keeps Python from writing it), which would time the compiler.
        compileall.compile_dir(str(ROOT / "src" / "pushmanifest"), quiet=1)
        self.note("start-up is timed with the bytecode compiled, as pip install leaves it")
        module = [sys.executable, "-m", "pushmanifest"]
        script = find_script()
        cases: list[tuple[str, list[str], Optional[float]]] = [
            ("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"], None),
            ("python -m pushmanifest --version", [*module, "--version"], VERSION_TARGET),
            ("python -m pushmanifest --help", [*module, "--help"], HELP_TARGET),
        ]
        if script:
            cases += [
                ("pushmanifest --version (script)", [script, "--version"], VERSION_TARGET),
                ("pushmanifest --help (script)", [script, "--help"], HELP_TARGET),
            ]
        else:
            self.note("the pushmanifest console script is not installed: its start-up is skipped")
        site = self.sites["open"]
        spec = self.workdir / "dry-run.yaml"
        # Straight to the registry, no proxy: the local registry of the target.
        spec.write_text(spec_document(site.server.host, f"{site.prefix}/push", "dry", 8))
        cases.append(
            (
                "python -m pushmanifest from-spec --dry-run (8 archs, local registry)",
                [*module, "from-spec", "--plain-http", "--dry-run", str(spec)],
                DRY_RUN_TARGET,
            )
        )
        for label, args, target in cases:
            log(f"start-up: {label}")
            timed(args, env)  # warm the page cache
            times = [timed(args, env) for _ in range(count)]
            self.results.startup.append((label, times, target))

    # -- bulk -----------------------------------------------------------------------------------

    def bulk_specs(self, site: Site) -> list[Path]:
        """50 lists in 10 files of 5 YAML documents each."""
        paths = []
        per_file = 5
        for f in range(BULK_LISTS // per_file):
            docs = []
            for j in range(f * per_file, (f + 1) * per_file):
                repo = f"{site.prefix}/bulk{j:02d}"
                docs.append(spec_document(site.host, repo, site.fresh_tag(), BULK_ARCHS))
            path = self.workdir / f"bulk-{site.name}-{site.fresh_tag()}.yaml"
            path.write_text("---\n".join(docs))
            paths.append(path)
        return paths

    def bulk_cases(self) -> list[tuple[str, str, Sequence[str], Sequence[str]]]:
        """(site, label, variant.py patches, extra options); --quick: open, as is only."""
        if self.quick:
            return [("open", "as is", (), ())]
        wider = ("--max-concurrency", "32")
        return [
            ("open", "as is", (), ()),
            ("token", "as is", (), ()),
            ("open", "--max-concurrency 32", (), wider),
            ("token", "--max-concurrency 32", (), wider),
        ]

    def bulk(self) -> None:
        runs = 1 if self.quick else min(self.runs, 3)
        for name, label, variant, extra in self.bulk_cases():
            site = self.sites[name]
            site.set_delay(DELAY)
            log(f"bulk: {name} {label}")
            cell = repeat(
                runs,
                lambda s=site, v=variant, e=extra: s.pushmanifest(
                    self.bulk_specs(s), variant=v, extra=e
                ),
                site,
            )
            self.results.bulk.append((f"{name}, {label}", cell))
            options = list(extra)
            if "--max-concurrency" in options:
                in_flight = int(options[options.index("--max-concurrency") + 1])
            else:
                in_flight = MAX_CONCURRENCY
            self.results.bulk_in_flight[f"{name}, {label}"] = in_flight

    # -- TLS: keep-alive and HTTP/2 ----------------------------------------------------------------

    def tls(self) -> None:
        try:
            import h2  # type: ignore[import-not-found]  # noqa: F401

            have_h2 = True
        except ImportError:
            have_h2 = False
            self.note("h2 is not installed: the HTTP/2 rows are skipped (pip install h2)")
        log("TLS registry")
        server = start_tls_registry(self.workdir / "tls")
        try:
            user = "alice"
            password = server.users[user]
            repos = [f"team/tls{j:02d}" for j in range(20)]

            def seed(repo: str) -> None:
                with SeedClient(server, username=user, password=password) as client:
                    for i, (os_name, arch, variant) in enumerate(PLATFORMS[:8]):
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
                list(pool.map(seed, repos))
            variants: list[tuple[str, Sequence[str]]] = [
                ("HTTP/1.1", ()),
            ]
            if have_h2:
                variants.append(("HTTP/2", ("--http2",)))
            counter = [0]
            for rtt in (0.0, DELAY):
                with TcpDelay(server.host, rtt=rtt) as fwd:
                    for case, lists in (("1 list x 8", 1), ("20 lists x 8", 20)):
                        for label, variant in variants:
                            log(f"TLS: rtt {ms(rtt)}, {case}, {label}")
                            cell = Cell()
                            for _ in range(min(self.runs, 3)):
                                counter[0] += 1
                                docs = [
                                    spec_document(fwd.host, repo, f"run{counter[0]}", 8)
                                    for repo in repos[:lists]
                                ]
                                spec = self.workdir / f"tls-{counter[0]}.yaml"
                                spec.write_text("---\n".join(docs))
                                args = [
                                    sys.executable,
                                    str(HERE / "variant.py"),
                                    *variant,
                                    "--",
                                    "from-spec",
                                    "--ca-file",
                                    str(server.ca_file),
                                    "--username",
                                    user,
                                    "--password-stdin",
                                    str(spec),
                                ]
                                fwd.reset()
                                start = time.perf_counter()
                                try:
                                    proc = subprocess.run(
                                        args,
                                        input=password + "\n",
                                        capture_output=True,
                                        text=True,
                                        env=subprocess_env(self.workdir),
                                        timeout=SUBPROCESS_TIMEOUT,
                                        check=False,
                                    )
                                except subprocess.SubprocessError as exc:
                                    cell.error = str(exc)
                                    break
                                wall = time.perf_counter() - start
                                if proc.returncode != 0:
                                    cell.error = proc.stderr.strip()[-300:]
                                    log(f"  failed: {cell.error}")
                                    break
                                cell.samples.append(Sample(wall, 0, 0, 0, fwd.connections, 0))
                            self.results.tls.append((case, label, rtt, cell))
        finally:
            server.stop()


# -- the report -----------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def value(cell: Optional[Cell], name: str) -> str:
    if cell is None:
        return "skipped"
    if not cell.ok:
        return "failed"
    return str(cell.most(name))


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def report(res: Results, sizes: Sequence[int]) -> str:
    info = res.info
    lines = [
        "## Benchmark: pushmanifest vs docker manifest",
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu']}), {info['system']}, Python "
        f"{info['python']} (optional packages installed, which the command does not import: "
        f"{info['optional']}); registry: {info['registry']} on 127.0.0.1; docker CLI: "
        f"{info['docker']}. Date: {info['date']}. Command: `{res.command}` (wall times: median "
        f"of {res.runs} run{'s' if res.runs != 1 else ''}; pushmanifest from this checkout's "
        f"src/). Load average (1 min) at the start: {info['load']}, at the end: "
        f"{res.load_after}.",
        "",
        "Latency: an HTTP proxy in front of the registry adds the delay to every request, and "
        "the token server answers after the same delay. Requests = requests through the proxy + "
        "token requests. Depth = the longest chain of requests each starting after the previous "
        "one ended (round trips one after another). Docker's wall time is `docker manifest "
        "create` + `push`; its `annotate` calls (local, no requests) are shown apart and left "
        "out of the ratio. Depth is shown where there is latency only: without it, requests sent "
        "together need not overlap.",
        "",
        "### One list, platforms given, no extra tag",
        "",
    ]
    rows = []
    for (auth, delay, n), (pm, dk) in res.push.items():
        ratio = "-"
        if dk is not None and dk.ok and pm.ok and pm.wall:
            ratio = f"{(dk.wall or 0) / pm.wall:.1f}x"
        # Without latency, requests sent together need not overlap: depth says nothing there.
        depth = value if delay else (lambda cell, name: "-")
        rows.append(
            [
                auth,
                ms(delay),
                n,
                value(pm, "requests"),
                depth(pm, "depth"),
                value(pm, "connections"),
                ms(pm.wall),
                value(dk, "requests"),
                depth(dk, "depth"),
                ms(dk.wall) if dk else "skipped",
                ms(dk.aside) if dk else "skipped",
                ratio,
            ]
        )
    lines += table(
        [
            "auth",
            "delay",
            "N",
            "pushmanifest requests",
            "depth",
            "TCP conns",
            "wall",
            "docker requests",
            "depth",
            "wall",
            "+ annotate",
            "docker / pushmanifest",
        ],
        rows,
    )
    lines += ["", "### Extra tags and platforms from the images' configs (50 ms)", ""]
    rows = []
    for auth, cell in res.tags.items():
        n = 8 if 8 in sizes else max(sizes)
        rows.append(
            [auth, n, "given", 2, *(value(cell, k) for k in ("requests", "depth")), ms(cell.wall)]
        )
    for (auth, n), cell in res.no_platform.items():
        rows.append(
            [
                auth,
                n,
                "from configs",
                0,
                *(value(cell, k) for k in ("requests", "depth")),
                ms(cell.wall),
            ]
        )
    lines += table(["auth", "N", "platforms", "T", "requests", "depth", "wall"], rows)
    lines += ["", "### Start-up (median of runs, wall clock, subprocess)", ""]
    rows = []
    for label, times, target in res.startup:
        med = median(times)
        met = verdict(None if target is None else med <= target)
        rows.append([label, ms(med), ms(min(times)), ms(target) if target else "-", met])
    lines += table(["command", "median", "min", "target", "met"], rows)
    lines += [
        "",
        f"### Bulk: {BULK_LISTS} lists x {BULK_ARCHS} archs in one invocation, 50 ms "
        "(10 spec files of 5 YAML documents)",
        "",
    ]
    rows = []
    for label, cell in res.bulk:
        floor = None
        if cell.ok:
            in_flight = res.bulk_in_flight.get(label, MAX_CONCURRENCY)
            waves = -(-(cell.most("requests") or 0) // in_flight)
            floor = waves * DELAY
        rows.append(
            [
                label,
                ms(cell.wall),
                ms(floor),
                value(cell, "requests"),
                value(cell, "tokens"),
                value(cell, "depth"),
                value(cell, "connections"),
                verdict(None if cell.wall is None else cell.wall <= BULK_TARGET),
            ]
        )
    lines += table(
        [
            "set-up",
            "wall",
            "floor: requests / in flight x 50 ms",
            "requests",
            "token requests",
            "depth",
            "TCP conns",
            "<= 2 s",
        ],
        rows,
    )
    if res.tls:
        lines += [
            "",
            "### TLS registry (htpasswd) behind a TCP forwarder adding the round-trip time "
            "(a new connection costs one more round trip, its TLS handshake one more)",
            "",
        ]
        rows = []
        for case, label, rtt, cell in res.tls:
            rows.append([case, ms(rtt), label, ms(cell.wall), value(cell, "connections")])
        lines += table(["push", "RTT", "client", "wall", "TCP conns"], rows)
    lines += ["", "### Targets of issue 4", ""]
    lines += table(["#", "target", "measured", "met"], targets(res, sizes))
    if res.notes:
        lines += ["", *(f"- {n}" for n in res.notes)]
    return "\n".join(lines) + "\n"


def targets(res: Results, sizes: Sequence[int]) -> list[list[str]]:
    out: list[list[str]] = []

    def bound_row(num: str, auth: str, extra: int, depth_limit: int) -> None:
        cells = [(n, res.push[(auth, DELAY, n)][0]) for n in sizes if (auth, DELAY, n) in res.push]
        ok_cells = [(n, c) for n, c in cells if c.ok]
        if not ok_cells:
            out.append([num, f"{auth}: requests, depth", "failed", verdict(False)])
            return
        reqs = ", ".join(f"{c.most('requests')}/{n + 2 + extra}" for n, c in ok_cells)
        req_ok = all((c.most("requests") or 0) <= n + 2 + extra for n, c in ok_cells)
        depths = ", ".join(str(c.most("depth")) for _, c in ok_cells)
        depth_ok = all((c.most("depth") or 0) <= depth_limit for _, c in ok_cells)
        gets = sum(c.most("manifest_gets") or 0 for _, c in ok_cells)
        ns = "/".join(str(n) for n, _ in ok_cells)
        out.append(
            [
                num,
                f"{auth}, T=0: requests <= N+2(T+1)+{extra}, depth <= {depth_limit}, "
                "no manifest GET",
                f"N={ns}: requests {reqs} (measured/limit); depth {depths}; manifest GETs {gets}",
                verdict(req_ok and depth_ok and gets == 0 and len(ok_cells) == len(cells)),
            ]
        )
        tag_cell = res.tags.get(auth)
        if tag_cell is not None and tag_cell.ok:
            n = 8 if 8 in sizes else max(sizes)
            limit = n + 2 * 3 + extra
            r, d = tag_cell.most("requests") or 0, tag_cell.most("depth") or 0
            out.append(
                [
                    num,
                    f"{auth}, N={n}, T=2: requests <= {limit}, depth <= {depth_limit}",
                    f"requests {r}, depth {d}, manifest GETs {tag_cell.most('manifest_gets')}",
                    verdict(r <= limit and d <= depth_limit and not tag_cell.most("manifest_gets")),
                ]
            )

    bound_row("1", "open", 1, 2)
    bound_row("1", "token", 3, 4)
    for auth, limit in (("open", 2), ("token", 4)):
        cells = [(n, res.no_platform.get((auth, n))) for n in sizes]
        depths = [(n, c.most("depth")) for n, c in cells if c is not None and c.ok]
        if depths:
            out.append(
                [
                    "2",
                    f"{auth}, platforms not given: depth <= {limit} + 2",
                    ", ".join(f"N={n}: {d}" for n, d in depths),
                    verdict(all((d or 0) <= limit + 2 for _, d in depths)),
                ]
            )
    as_is = [c for label, c in res.bulk if label.endswith("as is") and c.ok]
    if as_is:
        conns = "; ".join(
            f"{label}: {c.most('connections')} conns / {c.most('requests')} requests"
            for label, c in res.bulk
            if c.ok
        )
        reuse = all((c.most("connections") or 0) <= MAX_CONCURRENCY for c in as_is)
        out.append(
            [
                "3",
                f"one pool per registry with keep-alive: bulk TCP connections <= "
                f"{MAX_CONCURRENCY} (the pool's size)",
                conns,
                verdict(reuse),
            ]
        )
    by_label: dict[str, dict[tuple[str, float], Cell]] = {}
    for case, label, rtt, c in res.tls:
        by_label.setdefault(label, {})[(case, rtt)] = c
    h1 = by_label.get("HTTP/1.1", {})
    h2 = by_label.get("HTTP/2", {})
    if h2:
        parts = []
        better = True
        for key, c2 in h2.items():
            c1 = h1.get(key)
            if c1 is None or not (c1.ok and c2.ok):
                continue
            parts.append(f"{key[0]} @ {ms(key[1])}: {ms(c1.wall)} / {ms(c2.wall)}")
            better = better and (c2.wall or 0) < (c1.wall or 0)
        out.append(
            [
                "3",
                "HTTP/2 (httpx's h2 extra) where offered, kept only if it measures better "
                "(TLS; wall: HTTP/1.1 / HTTP/2)",
                "; ".join(parts),
                "HTTP/2 better everywhere: adopt" if better else "not better: keep HTTP/1.1",
            ]
        )
    for label, times, target in res.startup:
        if target is not None:
            med = median(times)
            out.append(["4", f"{label} <= {ms(target)}", ms(med), verdict(med <= target)])
    for label, cell in res.bulk:
        if cell.ok:
            setup = label.replace(", as is", "")
            out.append(
                [
                    "5",
                    f"bulk {BULK_LISTS}x{BULK_ARCHS} @ 50 ms, {setup} <= 2 s",
                    f"{ms(cell.wall)}, {value(cell, 'requests')} requests, "
                    f"{value(cell, 'tokens')} token requests",
                    verdict(cell.wall is not None and cell.wall <= BULK_TARGET),
                ]
            )
    token_counts = [
        pm.most("tokens") for (auth, _, _), (pm, _) in res.push.items() if auth == "token" and pm.ok
    ]
    token_counts += [
        c.most("tokens") for label, c in res.bulk if label.startswith("token") and c.ok
    ]
    if token_counts:
        out.append(
            [
                "6",
                "one token request per run (concurrent requests share it)",
                f"at most {max(t or 0 for t in token_counts)} token request(s) in any "
                f"token-auth run ({len(token_counts)} set-ups)",
                verdict(max(t or 0 for t in token_counts) == 1),
            ]
        )
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N = 2, 8; one run each; bulk on the open registry only; no TLS/HTTP/2 section",
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
        bench = Bench(args, Path(tmp))
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
