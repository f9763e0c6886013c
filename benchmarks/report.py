"""The Markdown report of :class:`~bench.Results`: a table per section, then issue 4's targets
(``targets.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional

from bench import Results
from measure import Cell, median, ms, value, verdict
from scenarios import (
    BULK_ARCHS,
    BULK_LISTS,
    BULK_PER_FILE,
    BULK_TARGET,
    CPU_PER_REQUEST_TARGET,
    DELAY,
    PEAK_RSS_TARGET,
    tags_size,
)
from targets import cpu_per_request, issue12_targets, peak_rss, targets
from tls_targets import tls_matrix_section, tls_targets

Row = list[object]


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def section(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return ["", f"### {title}", "", *table(header, rows)]


def report(res: Results, sizes: Sequence[int]) -> str:
    lines = introduction(res)
    lines += push_section(res)
    lines += tags_section(res, sizes)
    lines += startup_section(res)
    lines += floor_section(res)
    lines += bulk_section(res)
    lines += cpu_memory_section(res)
    if res.tls:
        lines += tls_section(res)
    if res.tls_matrix:
        lines += tls_matrix_section(res)
    lines += section("Targets of issue 4", ["#", "target", "measured", "met"], targets(res, sizes))
    lines += section(
        "Targets of issue 12 (bulk, memory)",
        ["#", "target", "measured", "met"],
        issue12_targets(res),
    )
    if res.tls_matrix:
        lines += section(
            "Targets of issue 12 (TLS, TCP-level round-trip time)",
            ["#", "target", "measured", "met"],
            tls_targets(res),
        )
    if res.notes:
        lines += ["", *(f"- {n}" for n in res.notes)]
    return "\n".join(lines) + "\n"


def introduction(res: Results) -> list[str]:
    info = res.info
    return [
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
        "token requests. Depth = round trips one after another, counted in waves in one more run "
        "of each set-up, without latency, through proxies that hold every request and release "
        "them together only once the command's process can send nothing more without an answer "
        "(the tests' `WaveGate`, tests/support/proxy.py): no load on the machine changes it. It "
        "is shown once per set-up, in the 50 ms rows. Docker's wall time is `docker manifest "
        "create` + `push`; its `annotate` calls (local, no requests) are shown apart and left "
        "out of the ratio.",
    ]


PUSH_HEADER = [
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
]


def push_section(res: Results) -> list[str]:
    rows = [push_row(auth, delay, n, pm, dk) for (auth, delay, n), (pm, dk) in res.push.items()]
    return section("One list, platforms given, no extra tag", PUSH_HEADER, rows)


def push_row(auth: str, delay: float, n: int, pm: Cell, dk: Optional[Cell]) -> Row:
    ratio = "-"
    if dk is not None and dk.ok and pm.ok and pm.wall:
        ratio = f"{(dk.wall or 0) / pm.wall:.1f}x"
    # The depth does not depend on the latency: it is counted once, shown in the 50 ms rows.
    depth: Callable[[Optional[Cell], str], str] = value if delay else (lambda cell, name: "-")
    pm_columns = [value(pm, "requests"), depth(pm, "depth"), value(pm, "connections"), ms(pm.wall)]
    dk_columns = [value(dk, "requests"), depth(dk, "depth")]
    dk_columns += [ms(dk.wall), ms(dk.aside)] if dk else ["skipped", "skipped"]
    return [auth, ms(delay), n, *pm_columns, *dk_columns, ratio]


def tags_section(res: Results, sizes: Sequence[int]) -> list[str]:
    def counts(cell: Cell) -> Row:
        return [value(cell, "requests"), value(cell, "depth"), ms(cell.wall)]

    n = tags_size(sizes)
    rows = [[auth, n, "given", 2, *counts(cell)] for auth, cell in res.tags.items()]
    rows += [
        [auth, size, "from configs", 0, *counts(cell)]
        for (auth, size), cell in res.no_platform.items()
    ]
    title = "Extra tags and platforms from the images' configs (50 ms)"
    return section(title, ["auth", "N", "platforms", "T", "requests", "depth", "wall"], rows)


def startup_section(res: Results) -> list[str]:
    rows = []
    for label, times, target in res.startup:
        med = median(times)
        met = verdict(None if target is None else med <= target)
        rows.append([label, ms(med), ms(min(times)), ms(target) if target else "-", met])
    title = "Start-up (median of runs, wall clock, subprocess)"
    return section(title, ["command", "median", "min", "target", "met"], rows)


def floor_section(res: Results) -> list[str]:
    # Imported here, so that report.py's own import lines stay as other changes left them.
    from startup import FLOOR_RATIO_TARGET, floor_ratio

    header = [
        "auth",
        "N",
        "pushmanifest: first request",
        "floor: first request",
        "ratio",
        f"<= {FLOOR_RATIO_TARGET}",
        "CPU by the first request: pushmanifest / floor",
        "ratio",
        "CPU in all: pushmanifest / floor",
        "instructions to the first request: pushmanifest / floor (valgrind)",
        "ratio",
    ]
    rows = []
    for c in res.floor:
        pm, fl = c.pushmanifest, c.floor
        ratio = "failed" if c.ratio is None else f"{c.ratio:.2f}"
        met = verdict(None if c.ratio is None else c.ratio <= FLOOR_RATIO_TARGET)
        firsts = [ms(pm.median_first), ms(fl.median_first)]
        cpu_first = f"{ms(pm.median_cpu_first)} / {ms(fl.median_cpu_first)}"
        cpu_ratio = "-" if c.cpu_ratio is None else f"{c.cpu_ratio:.2f}"
        cpu = f"{ms(pm.median_cpu)} / {ms(fl.median_cpu)}"
        counts = "-"
        if pm.instructions is not None and fl.instructions is not None:
            counts = f"{pm.instructions / 1e6:.0f}M / {fl.instructions / 1e6:.0f}M"
        counts_ratio = "-" if c.instructions_ratio is None else f"{c.instructions_ratio:.3f}"
        rows.append(
            [c.auth, c.archs, *firsts, ratio, met, cpu_first, cpu_ratio, cpu, counts, counts_ratio]
        )
    if not rows:
        return []
    title = (
        "Start-up: time to first request, pushmanifest vs its floor (benchmarks/floor.py: the "
        "same job with only httpx, pyyaml and pydantic), runs alternating, no latency, medians; "
        "the CPU a process has used by its first request grows less with the machine's load, "
        "the instructions it has run (valgrind, one run each) not at all"
    )
    target = ["#", "target", "measured", "met"]
    return section(title, header, rows) + section(
        "Target of issue 12.1 (start-up)", target, floor_ratio(res.floor)
    )


BULK_HEADER = [
    "set-up",
    "wall",
    "floor: requests / in flight x 50 ms",
    "requests",
    "token requests",
    "depth",
    "TCP conns",
    "CPU",
    "peak RSS",
    "<= 2 s",
]


def bulk_section(res: Results) -> list[str]:
    rows = [bulk_row(res, label, cell) for label, cell in res.bulk]
    title = (
        f"Bulk: {BULK_LISTS} lists x {BULK_ARCHS} archs in one invocation, 50 ms "
        f"({BULK_LISTS // BULK_PER_FILE} spec files of {BULK_PER_FILE} YAML documents)"
    )
    return section(title, BULK_HEADER, rows)


def bulk_row(res: Results, label: str, cell: Cell) -> Row:
    floor = None
    if cell.ok:
        in_flight = res.bulk_in_flight[label]
        waves = -(-(cell.most("requests") or 0) // in_flight)
        floor = waves * DELAY
    counts = [value(cell, k) for k in ("requests", "tokens", "depth", "connections")]
    met = verdict(None if cell.wall is None else cell.wall <= BULK_TARGET)
    return [label, ms(cell.wall), ms(floor), *counts, ms(cell.cpu), mib(cell.rss), met]


def mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} MiB"


def cpu_memory_section(res: Results) -> list[str]:
    """Issue 12: CPU per request (bulk without latency) and peak memory."""
    rows: list[Row] = []
    for lists, cell in res.bulk_cpu.items():
        requests = cell.most("requests")
        per = f"{(cell.cpu or 0) / requests * 1000:.2f} ms" if cell.cpu and requests else "-"
        rows.append(
            [
                f"bulk {lists} lists x {BULK_ARCHS}, 0 ms",
                ms(cell.cpu),
                value(cell, "requests"),
                per,
                mib(cell.rss),
            ]
        )
    marginal = cpu_per_request(res)
    if marginal is not None:
        rows.append(
            [
                "the difference (per request: without start-up)",
                "-",
                "-",
                f"{marginal * 1000:.2f} ms (target <= {CPU_PER_REQUEST_TARGET * 1000:.1f} ms)",
                "-",
            ]
        )
    for label, rss in peak_rss(res):
        rows.append(
            [f"peak RSS, {label}", "-", "-", "-", f"{mib(rss)} (target <= {PEAK_RSS_TARGET:g})"]
        )
    title = (
        "CPU and memory (CPU: user+sys of the command, median of runs; peak RSS: the largest of "
        "the runs; benchmarks/rusage.py)"
    )
    return section(title, ["run", "CPU", "requests", "CPU per request", "peak RSS"], rows)


def tls_section(res: Results) -> list[str]:
    rows = [
        [case, ms(rtt), label, ms(cell.wall), value(cell, "connections")]
        for case, label, rtt, cell in res.tls
    ]
    title = (
        "TLS registry (htpasswd) behind a TCP forwarder adding the round-trip time "
        "(a new connection costs one more round trip, its TLS handshake one more)"
    )
    return section(title, ["push", "RTT", "client", "wall", "TCP conns"], rows)
