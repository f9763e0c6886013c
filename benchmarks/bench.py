"""Running the scenarios of ``scenarios.py`` against the registries, into :class:`Results`."""

from __future__ import annotations

import compileall
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from commands import ROOT, find_docker, find_script, log, subprocess_env, timed
from machine import load_average, machine
from measure import Cell, Site, ms, repeat
from scenarios import (
    BULK_ARCHS,
    BULK_CASES,
    BULK_CPU_LISTS,
    BULK_LISTS,
    BULK_PER_FILE,
    DELAY,
    QUICK_BULK_CASES,
    SITES,
    BulkCase,
    sizes,
    spec_document,
    startup_cases,
    tags_size,
)
from startup import STARTUP_ARCHS, FloorComparison, compare

from support.registry import start_open_registry, start_token_registry


@dataclass
class Results:
    info: dict[str, str]
    runs: int
    command: str
    push: dict[tuple[str, float, int], tuple[Cell, Optional[Cell]]] = field(default_factory=dict)
    tags: dict[str, Cell] = field(default_factory=dict)
    no_platform: dict[tuple[str, int], Cell] = field(default_factory=dict)
    startup: list[tuple[str, list[float], Optional[float]]] = field(default_factory=list)
    floor: list[FloorComparison] = field(default_factory=list)  # time to first request
    bulk: list[tuple[str, Cell]] = field(default_factory=list)
    bulk_in_flight: dict[str, int] = field(default_factory=dict)  # label -> --max-concurrency
    bulk_cpu: dict[int, Cell] = field(default_factory=dict)  # lists -> bulk runs, no latency
    tls: list[tuple[str, str, float, Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_after: str = ""


class Bench:
    def __init__(self, quick: bool, runs: int, workdir: Path) -> None:
        self.quick = quick
        self.runs = runs or (1 if quick else 5)
        self.sizes = sizes(quick)
        self.delays = [0.0, DELAY]
        self.workdir = workdir
        self.docker = find_docker()
        self.sites: dict[str, Site] = {}
        command = "python3 benchmarks/run.py" + (" --quick" if quick else "")
        if runs:
            command += f" --runs {runs}"
        self.results = Results(info=machine(), runs=self.runs, command=command)

    def note(self, text: str) -> None:
        self.results.notes.append(text)

    @contextlib.contextmanager
    def registries(self) -> Iterator[None]:
        starts = {"open": start_open_registry, "token": start_token_registry}
        with contextlib.ExitStack() as stack:
            log("starting registries")
            servers = {}
            for name in SITES:
                servers[name] = starts[name](self.workdir / name)
                stack.callback(servers[name].stop)
            for name, server in servers.items():
                site = Site(name, server, self.workdir)
                stack.callback(site.close)
                self.sites[name] = site
            yield

    def run(self) -> Results:
        with self.registries():
            self.seed()
            self.startup()
            self.startup_floor()
            self.push_matrix()
            self.extra_tags_and_configs()
            self.bulk()
            self.bulk_cpu()
        if not self.quick:
            from tls_push import tls_section

            tls_section(self)
        self.results.load_after = load_average()
        return self.results

    def seed(self) -> None:
        log("seeding")
        bulk_sites = {case.site for case in self.bulk_cases()}
        for name, site in self.sites.items():
            site.seed([f"{site.prefix}/push"], max(self.sizes))
            if name in bulk_sites:
                site.seed([f"{site.prefix}/bulk{j:02d}" for j in range(BULK_LISTS)], BULK_ARCHS)

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
                    # The depth once per set-up (it does not depend on the latency).
                    depth = delay > 0
                    self.results.push[(name, delay, n)] = (
                        self.push_pm(site, n, depth),
                        self.push_dk(site, n, depth),
                    )
        if not self.docker:
            self.note("docker CLI not found: its columns are skipped")

    def push_pm(self, site: Site, n: int, depth: bool) -> Cell:
        def make() -> Callable[[], float]:
            return site.pushmanifest([self.spec(site, n)])

        return repeat(self.runs, site, make, depth=depth)

    def push_dk(self, site: Site, n: int, depth: bool) -> Optional[Cell]:
        docker = self.docker
        if not docker:
            return None
        repo = f"{site.prefix}/push"

        def make() -> Callable[[], float]:
            return site.docker(docker, repo, site.fresh_tag(), n)

        return repeat(self.runs, site, make, depth=depth)

    def extra_tags_and_configs(self) -> None:
        for name, site in self.sites.items():
            site.set_delay(DELAY)
            self.extra_tags(name, site)
            for size in self.sizes:
                self.platforms_from_configs(name, site, size)

    def extra_tags(self, name: str, site: Site) -> None:
        n = tags_size(self.sizes)
        log(f"push: {name}, N={n}, T=2")

        def push() -> Callable[[], float]:
            return site.pushmanifest(
                [self.spec(site, n, tags=[site.fresh_tag(), site.fresh_tag()])]
            )

        self.results.tags[name] = repeat(min(self.runs, 3), site, push, depth=True)

    def platforms_from_configs(self, name: str, site: Site, size: int) -> None:
        log(f"push: {name}, N={size}, platforms from the configs")
        self.results.no_platform[(name, size)] = repeat(
            min(self.runs, 3),
            site,
            lambda: site.pushmanifest([self.spec(site, size, platforms=False)]),
            depth=True,
        )

    # -- start-up -------------------------------------------------------------------------------

    def startup(self) -> None:
        count = 5 if self.quick else 11
        env = subprocess_env(self.workdir)
        # pip install compiles a package's bytecode; this checkout's src/ may have none (and
        # PYTHONDONTWRITEBYTECODE keeps Python from writing it), which would time the compiler.
        compileall.compile_dir(str(ROOT / "src" / "pushmanifest"), quiet=1)
        self.note("start-up is timed with the bytecode compiled, as pip install leaves it")
        script = find_script()
        if not script:
            self.note("the pushmanifest console script is not installed: its start-up is skipped")
        site = self.sites["open"]
        spec = self.workdir / "dry-run.yaml"
        # Straight to the registry, no proxy: the local registry of the target.
        spec.write_text(spec_document(site.server.host, f"{site.prefix}/push", "dry", 8))
        for case in startup_cases(script, spec):
            log(f"start-up: {case.label}")
            timed(case.args, env)  # warm the page cache
            times = [timed(case.args, env) for _ in range(count)]
            self.results.startup.append((case.label, times, case.target))

    def startup_floor(self) -> None:
        """Time to first request, pushmanifest and ``floor.py`` alternating (``startup.py``)."""
        runs = 5 if self.quick else 11
        for name, site in self.sites.items():
            log(f"start-up: time to first request, pushmanifest and its floor, {name}")
            site.set_delay(0.0)

            def make_spec(site: Site = site) -> Path:
                return self.spec(site, STARTUP_ARCHS)

            self.results.floor.append(compare(site, make_spec, runs, STARTUP_ARCHS))

    # -- bulk -----------------------------------------------------------------------------------

    def bulk_specs(self, site: Site, lists: int = BULK_LISTS) -> list[Path]:
        """``lists`` lists in files of BULK_PER_FILE YAML documents each."""
        paths = []
        for f in range(lists // BULK_PER_FILE):
            docs = []
            for j in range(f * BULK_PER_FILE, (f + 1) * BULK_PER_FILE):
                repo = f"{site.prefix}/bulk{j:02d}"
                docs.append(spec_document(site.host, repo, site.fresh_tag(), BULK_ARCHS))
            path = self.workdir / f"bulk-{site.name}-{site.fresh_tag()}.yaml"
            path.write_text("---\n".join(docs))
            paths.append(path)
        return paths

    def bulk_cases(self) -> list[BulkCase]:
        return QUICK_BULK_CASES if self.quick else BULK_CASES

    def bulk(self) -> None:
        runs = 1 if self.quick else min(self.runs, 3)
        for case in self.bulk_cases():
            self.results.bulk.append((case.name, self.bulk_case(case, runs)))
            self.results.bulk_in_flight[case.name] = case.in_flight

    def bulk_case(self, case: BulkCase, runs: int) -> Cell:
        site = self.sites[case.site]
        site.set_delay(DELAY)
        log(f"bulk: {case.site} {case.label}")

        def make() -> Callable[[], float]:
            return site.pushmanifest(self.bulk_specs(site), variant=case.variant, extra=case.extra)

        return repeat(runs, site, make, depth=True)

    def bulk_cpu(self) -> None:
        """Issue 12: CPU per request. Bulk runs without latency at the default concurrency, of
        BULK_CPU_LISTS lists: what the larger costs more, per request more, is the requests'
        (and their lists') CPU, start-up left out. Median CPU of several runs (CPU time varies
        less than wall time on a loaded machine)."""
        site = self.sites["open"]
        site.set_delay(0.0)
        runs = 3 if self.quick else 5
        for lists in BULK_CPU_LISTS:
            log(f"bulk CPU: {lists} lists, no latency")

            def make(lists: int = lists) -> Callable[[], float]:
                return site.pushmanifest(self.bulk_specs(site, lists))

            self.results.bulk_cpu[lists] = repeat(runs, site, make)
