"""What the benchmark measures, as data: platforms, sizes, latencies, the start-up commands, the
bulk set-ups and the TLS cases. A new case is a line in one of these lists; ``bench.py`` runs
them, ``report.py`` puts them in tables.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
#: Bulk specs: BULK_LISTS lists in files of this many YAML documents.
BULK_PER_FILE = 5
#: pushmanifest's default --max-concurrency: the size of its connection pool per registry.
MAX_CONCURRENCY = 64
#: Targets of issue 4 (seconds).
VERSION_TARGET, HELP_TARGET, DRY_RUN_TARGET, BULK_TARGET = 0.100, 0.150, 0.350, 2.0
#: Targets of issue 12: CPU per request (seconds, bulk without latency), peak RSS (MiB).
CPU_PER_REQUEST_TARGET, PEAK_RSS_TARGET = 0.0011, 45.0
#: CPU per request: bulk runs of this many lists (of BULK_ARCHS) without latency; the
#: difference between them is the cost of the requests (and of their lists), without start-up.
BULK_CPU_LISTS = (10, BULK_LISTS)
#: The registry set-ups (``bench.Bench.registries`` starts them): open, and token auth.
SITES = ("open", "token")


def sizes(quick: bool) -> list[int]:
    """N, the number of architectures of the pushed list."""
    return [2, 8] if quick else [2, 4, 8, 16]


def tags_size(sizes: Sequence[int]) -> int:
    """N of the runs with extra tags."""
    return 8 if 8 in sizes else max(sizes)


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


# -- start-up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartupCase:
    label: str
    args: list[str]
    target: Optional[float]


def startup_cases(script: Optional[str], dry_run_spec: Path) -> list[StartupCase]:
    """The timed commands; ``script`` is the installed console script (``None``: skipped)."""
    module = [sys.executable, "-m", "pushmanifest"]
    cases = [
        StartupCase("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"], None),
        StartupCase("python -m pushmanifest --version", [*module, "--version"], VERSION_TARGET),
        StartupCase("python -m pushmanifest --help", [*module, "--help"], HELP_TARGET),
    ]
    if script:
        cases += [
            StartupCase("pushmanifest --version (script)", [script, "--version"], VERSION_TARGET),
            StartupCase("pushmanifest --help (script)", [script, "--help"], HELP_TARGET),
        ]
    dry_run = [*module, "from-spec", "--plain-http", "--dry-run", str(dry_run_spec)]
    label = "python -m pushmanifest from-spec --dry-run (8 archs, local registry)"
    return [*cases, StartupCase(label, dry_run, DRY_RUN_TARGET)]


# -- bulk -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkCase:
    """BULK_LISTS lists of BULK_ARCHS in one invocation at DELAY, on ``site``."""

    site: str
    label: str
    variant: Sequence[str] = ()  # variant.py patches
    extra: Sequence[str] = ()  # pushmanifest options

    @property
    def name(self) -> str:
        return f"{self.site}, {self.label}"

    @property
    def in_flight(self) -> int:
        """Requests in flight at the most: --max-concurrency."""
        options = list(self.extra)
        if "--max-concurrency" in options:
            return int(options[options.index("--max-concurrency") + 1])
        return MAX_CONCURRENCY


def _concurrency(site: str, limit: int) -> BulkCase:
    return BulkCase(site, f"--max-concurrency {limit}", extra=("--max-concurrency", str(limit)))


#: The concurrencies compared (issue 12: 64 in flight no slower than 32; the default the best).
CONCURRENCIES = (16, 32, 64)
BULK_CASES = [
    BulkCase("open", "as is"),
    BulkCase("token", "as is"),
    *(_concurrency("open", limit) for limit in CONCURRENCIES),
    _concurrency("token", 32),
]
QUICK_BULK_CASES = [BulkCase("open", "as is"), *(_concurrency("open", n) for n in CONCURRENCIES)]


# -- TLS ------------------------------------------------------------------------------------------

#: Round-trip times the TCP forwarder adds in front of the TLS registry.
TLS_RTTS = (0.0, DELAY)
#: (label, how many lists of 8) pushed in one invocation.
TLS_PUSHES = (("1 list x 8", 1), ("20 lists x 8", 20))
TLS_REPOS = [f"team/tls{j:02d}" for j in range(20)]
#: (label, variant.py patches); HTTP/2 only where the h2 package is installed.
TLS_CLIENTS: list[tuple[str, Sequence[str]]] = [("HTTP/1.1", ()), ("HTTP/2", ("--http2",))]
