"""Issue 12's TLS table and target (``tls_matrix.py``): what the warm-up (connections, ping and
token while the spec loads) saves over TLS with a TCP-level round-trip time, open and with token
auth. (No docker rows: see tls_matrix.py.)"""

from __future__ import annotations

from bench import Results
from measure import Cell, ms, value, verdict

Row = list[object]
TOOL, BEFORE = "pushmanifest", "pushmanifest, no warm-up"


def _cells(res: Results) -> dict[tuple[str, float, int], dict[str, Cell]]:
    out: dict[tuple[str, float, int], dict[str, Cell]] = {}
    for auth, rtt, n, tool, cell in res.tls_matrix:
        out.setdefault((auth, rtt, n), {})[tool] = cell
    return out


def tls_matrix_section(res: Results) -> list[str]:
    from report import section

    rows: list[Row] = []
    for (auth, rtt, n), tools in _cells(res).items():
        pm, before = tools.get(TOOL), tools.get(BEFORE)
        rows.append(
            [
                auth,
                ms(rtt),
                n,
                ms(pm.wall) if pm else "-",
                value(pm, "connections"),
                ms(before.wall) if before else "-",
                value(before, "connections"),
            ]
        )
    title = (
        "TLS registry, open and with token auth (token server over TLS too), each behind a TCP "
        "forwarder adding the round-trip time (a connection costs one more round trip, its TLS "
        "handshake one more); pushmanifest with and without its warm-up"
    )
    header = ["auth", "RTT", "N", "pushmanifest", "TCP conns", "no warm-up", "TCP conns"]
    return section(title, header, rows)


def tls_targets(res: Results) -> list[Row]:
    out: list[Row] = []
    by_rtt: dict[float, list[tuple[str, int, Cell, Cell | None]]] = {}
    for (auth, rtt, n), tools in _cells(res).items():
        pm = tools.get(TOOL)
        if pm is not None:
            by_rtt.setdefault(rtt, []).append((auth, n, pm, tools.get(BEFORE)))
    for rtt, cases in by_rtt.items():
        saved = [
            (a, n, pm, before)
            for a, n, pm, before in cases
            if before is not None and pm.ok and before.ok
        ]
        if saved:
            measured = "; ".join(
                f"{a} N={n}: {ms(before.wall)} -> {ms(pm.wall)}" for a, n, pm, before in saved
            )
            faster = all((pm.wall or 0) < (before.wall or 0) for _, _, pm, before in saved)
            out.append(
                [
                    "12.2",
                    f"TLS @ {ms(rtt)}: the warm-up hides connection set-up (no warm-up -> with)",
                    measured,
                    verdict(faster),
                ]
            )
    return out
