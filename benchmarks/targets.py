"""Issue 4's targets, each checked against :class:`~bench.Results`: rows of the report's last
table (``#``, target, measured, met)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from bench import Results
from measure import Cell, median, ms, value, verdict
from scenarios import (
    BULK_ARCHS,
    BULK_CPU_LISTS,
    BULK_LISTS,
    BULK_TARGET,
    CONCURRENCIES,
    CPU_PER_REQUEST_TARGET,
    DELAY,
    MAX_CONCURRENCY,
    PEAK_RSS_TARGET,
    tags_size,
)

Row = list[str]

#: (auth, requests allowed beyond N + 2(T+1), depth allowed).
BOUNDS = (("open", 1, 2), ("token", 3, 4))


def targets(res: Results, sizes: Sequence[int]) -> list[Row]:
    out: list[Row] = []
    for auth, extra, depth_limit in BOUNDS:
        out += request_bounds(res, sizes, auth, extra, depth_limit)
    for auth, _, depth_limit in BOUNDS:
        out += platforms_from_configs(res, sizes, auth, depth_limit)
    out += keep_alive(res)
    out += http2(res)
    out += startup(res)
    out += bulk(res)
    out += one_token(res)
    return out


def request_bounds(
    res: Results, sizes: Sequence[int], auth: str, extra: int, depth_limit: int
) -> list[Row]:
    """1: requests and depth of one list, without and with extra tags."""
    cells = [(n, res.push[(auth, DELAY, n)][0]) for n in sizes if (auth, DELAY, n) in res.push]
    ok_cells = [(n, c) for n, c in cells if c.ok]
    if not ok_cells:
        return [["1", f"{auth}: requests, depth", "failed", verdict(False)]]
    reqs = ", ".join(f"{c.most('requests')}/{n + 2 + extra}" for n, c in ok_cells)
    req_ok = all((c.most("requests") or 0) <= n + 2 + extra for n, c in ok_cells)
    depths = ", ".join(str(c.most("depth")) for _, c in ok_cells)
    depth_ok = all((c.most("depth") or 0) <= depth_limit for _, c in ok_cells)
    gets = sum(c.most("manifest_gets") or 0 for _, c in ok_cells)
    ns = "/".join(str(n) for n, _ in ok_cells)
    rows = [
        [
            "1",
            f"{auth}, T=0: requests <= N+2(T+1)+{extra}, depth <= {depth_limit}, no manifest GET",
            f"N={ns}: requests {reqs} (measured/limit); depth {depths}; manifest GETs {gets}",
            verdict(req_ok and depth_ok and gets == 0 and len(ok_cells) == len(cells)),
        ]
    ]
    tag_cell = res.tags.get(auth)
    if tag_cell is not None and tag_cell.ok:
        rows.append(tags_bound(tag_cell, tags_size(sizes), auth, extra, depth_limit))
    return rows


def tags_bound(cell: Cell, n: int, auth: str, extra: int, depth_limit: int) -> Row:
    limit = n + 2 * 3 + extra
    r, d = cell.most("requests") or 0, cell.most("depth") or 0
    return [
        "1",
        f"{auth}, N={n}, T=2: requests <= {limit}, depth <= {depth_limit}",
        f"requests {r}, depth {d}, manifest GETs {cell.most('manifest_gets')}",
        verdict(r <= limit and d <= depth_limit and not cell.most("manifest_gets")),
    ]


def platforms_from_configs(res: Results, sizes: Sequence[int], auth: str, limit: int) -> list[Row]:
    """2: reading the platforms from the configs costs at most two more round trips."""
    cells = [(n, res.no_platform.get((auth, n))) for n in sizes]
    depths = [(n, c.most("depth")) for n, c in cells if c is not None and c.ok]
    if not depths:
        return []
    return [
        [
            "2",
            f"{auth}, platforms not given: depth <= {limit} + 2",
            ", ".join(f"N={n}: {d}" for n, d in depths),
            verdict(all((d or 0) <= limit + 2 for _, d in depths)),
        ]
    ]


def keep_alive(res: Results) -> list[Row]:
    """3: the bulk push reuses its connections."""
    as_is = [c for label, c in res.bulk if label.endswith("as is") and c.ok]
    if not as_is:
        return []
    conns = "; ".join(
        f"{label}: {c.most('connections')} conns / {c.most('requests')} requests"
        for label, c in res.bulk
        if c.ok
    )
    reuse = all((c.most("connections") or 0) <= MAX_CONCURRENCY for c in as_is)
    target = (
        f"one pool per registry with keep-alive: bulk TCP connections <= {MAX_CONCURRENCY} "
        "(the pool's size)"
    )
    return [["3", target, conns, verdict(reuse)]]


def http2(res: Results) -> list[Row]:
    """3: HTTP/2 only if it is faster everywhere."""
    by_label: dict[str, dict[tuple[str, float], Cell]] = {}
    for case, label, rtt, c in res.tls:
        by_label.setdefault(label, {})[(case, rtt)] = c
    h1, h2 = by_label.get("HTTP/1.1", {}), by_label.get("HTTP/2", {})
    if not h2:
        return []
    parts = []
    better = True
    for key, c2 in h2.items():
        c1: Optional[Cell] = h1.get(key)
        if c1 is None or not (c1.ok and c2.ok):
            continue
        parts.append(f"{key[0]} @ {ms(key[1])}: {ms(c1.wall)} / {ms(c2.wall)}")
        better = better and (c2.wall or 0) < (c1.wall or 0)
    target = (
        "HTTP/2 (httpx's h2 extra) where offered, kept only if it measures better "
        "(TLS; wall: HTTP/1.1 / HTTP/2)"
    )
    outcome = "HTTP/2 better everywhere: adopt" if better else "not better: keep HTTP/1.1"
    return [["3", target, "; ".join(parts), outcome]]


def startup(res: Results) -> list[Row]:
    """4: start-up times."""
    rows = []
    for label, times, target in res.startup:
        if target is not None:
            med = median(times)
            rows.append(["4", f"{label} <= {ms(target)}", ms(med), verdict(med <= target)])
    return rows


def bulk(res: Results) -> list[Row]:
    """5: BULK_LISTS lists in one invocation within BULK_TARGET."""
    rows = []
    for label, cell in res.bulk:
        if cell.ok:
            setup = label.replace(", as is", "")
            rows.append(
                [
                    "5",
                    f"bulk {BULK_LISTS}x{BULK_ARCHS} @ 50 ms, {setup} <= 2 s",
                    f"{ms(cell.wall)}, {value(cell, 'requests')} requests, "
                    f"{value(cell, 'tokens')} token requests",
                    verdict(cell.wall is not None and cell.wall <= BULK_TARGET),
                ]
            )
    return rows


def one_token(res: Results) -> list[Row]:
    """6: one token request per run, however many requests need it."""
    counts = [
        pm.most("tokens") for (auth, _, _), (pm, _) in res.push.items() if auth == "token" and pm.ok
    ]
    counts += [c.most("tokens") for label, c in res.bulk if label.startswith("token") and c.ok]
    if not counts:
        return []
    most = max(t or 0 for t in counts)
    return [
        [
            "6",
            "one token request per run (concurrent requests share it)",
            f"at most {most} token request(s) in any token-auth run ({len(counts)} set-ups)",
            verdict(most == 1),
        ]
    ]


# -- issue 12: bulk scaling with concurrency, CPU per request, peak memory ----------------------

#: Wall times within this factor count as equal (run-to-run noise of a shared machine).
WALL_NOISE = 1.05


def cpu_per_request(res: Results) -> Optional[float]:
    """CPU seconds per request without start-up: the difference between the bulk runs of
    BULK_CPU_LISTS lists, over the difference of their requests."""
    small, large = (res.bulk_cpu.get(n) for n in BULK_CPU_LISTS)
    if small is None or large is None or small.cpu is None or large.cpu is None:
        return None
    requests = (large.most("requests") or 0) - (small.most("requests") or 0)
    return (large.cpu - small.cpu) / requests if requests > 0 else None


def peak_rss(res: Results) -> list[tuple[str, float]]:
    """(what, the largest peak RSS in MiB): one list (every push of the matrix), bulk (the
    default concurrency, every set-up)."""
    out = []
    one = [pm.rss for pm, _ in res.push.values() if pm.rss is not None]
    if one:
        out.append(("one list (any N, auth, latency)", max(one)))
    bulk = [c.rss for label, c in res.bulk if label.endswith("as is") and c.rss is not None]
    if bulk:
        out.append((f"bulk {BULK_LISTS}x{BULK_ARCHS}, default concurrency", max(bulk)))
    return out


def _open_bulk(res: Results) -> dict[int, Cell]:
    """The open registry's bulk cells by requests in flight: the rows that give
    --max-concurrency, else the default's ("as is")."""
    by_limit: dict[int, Cell] = {}
    for label, cell in sorted(res.bulk, key=lambda item: item[0].endswith("as is")):
        if label.startswith("open") and cell.ok:
            by_limit.setdefault(res.bulk_in_flight[label], cell)
    return by_limit


def issue12_targets(res: Results) -> list[Row]:
    rows: list[Row] = []
    by_limit = _open_bulk(res)
    walls = {n: c.wall for n, c in by_limit.items() if n in CONCURRENCIES and c.wall}
    if 32 in walls and 64 in walls:
        cpus = {n: by_limit[n].cpu for n in (32, 64)}
        rows.append(
            [
                "12.4",
                f"bulk {BULK_LISTS}x{BULK_ARCHS} @ 50 ms: 64 in flight no slower than 32 "
                f"(wall within {WALL_NOISE:.2f}x)",
                f"32: {ms(walls[32])} (CPU {ms(cpus[32])}); 64: {ms(walls[64])} "
                f"(CPU {ms(cpus[64])})",
                verdict(walls[64] <= walls[32] * WALL_NOISE),
            ]
        )
    if walls:
        best = min(walls, key=lambda n: walls[n])
        default = by_limit.get(MAX_CONCURRENCY)
        measured = ", ".join(
            f"{n}: {ms(w)} (depth {by_limit[n].most('depth')})" for n, w in sorted(walls.items())
        )
        ok = default is not None and (default.wall or 0) <= walls[best] * WALL_NOISE
        rows.append(
            [
                "12.4",
                f"the default --max-concurrency ({MAX_CONCURRENCY}) is the fastest measured "
                f"(wall within {WALL_NOISE:.2f}x; depth: round trips one after another)",
                f"{measured} (fastest: {best})",
                verdict(ok),
            ]
        )
    per_request = cpu_per_request(res)
    if per_request is not None:
        rows.append(
            [
                "12.4",
                f"CPU per request, bulk without latency <= {CPU_PER_REQUEST_TARGET * 1000:.1f} ms "
                f"(runs of {BULK_CPU_LISTS[1]} lists minus {BULK_CPU_LISTS[0]}, per request)",
                f"{per_request * 1000:.2f} ms",
                verdict(per_request <= CPU_PER_REQUEST_TARGET),
            ]
        )
    for label, rss in peak_rss(res):
        rows.append(
            [
                "12.5",
                f"peak RSS <= {PEAK_RSS_TARGET:g} MiB: {label}",
                f"{rss:.1f} MiB",
                verdict(rss <= PEAK_RSS_TARGET),
            ]
        )
    return rows
