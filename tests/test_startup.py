"""Start-up work a push does not need, counted without a clock (issue 12, point 1).

A real push of a small list (``from-spec --plain-http`` against the real registry) runs in a
process of its own, under a driver that counts, from its first line on:

* the searches for ``sniffio`` (httpcore tries ``import sniffio`` several times per request;
  where it is missing each try searched the whole ``sys.path`` again). The driver makes sniffio
  missing whether or not it is installed here: every finder answers "not found" for it;
* whether ``importlib.metadata`` was imported (pydantic's plugin loader imports it even when
  every plugin is off);
* CA stores loaded into an SSL context (plain HTTP needs none);
* whether anyio's asyncio backend was imported (3.11+: connections are asyncio's own);
* whether ``difflib`` was imported (only suggestions for a misspelt key or value need it);
* the modules imported by the time the first request is sent: the rooms of features the push
  does not use (--append, copies from elsewhere and their referrers, OCI layouts, filters) are
  not among them, since the first request waits for every module imported before it.

Timings live in ``benchmarks/startup.py``; these counts say what the start-up does, on any
machine under any load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.cli import cli_env
from support.images import seed_platforms

# Runs the command as ``python -m pushmanifest`` does, after installing the counters; prints
# them as one JSON line on stderr at exit.
DRIVER = r"""
import atexit, json, runpy, ssl, sys

counts = {"sniffio_searches": 0, "ca_loads": 0}
before = set(sys.modules)


class _Missing:
    def __init__(self, finder, count):
        self.finder = finder
        self.count = count

    def find_spec(self, name, path=None, target=None):
        if name == "sniffio":
            counts["sniffio_searches"] += self.count  # once per search: the first finder
            return None
        find = getattr(self.finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.modules.pop("sniffio", None)
sys.meta_path[:] = [_Missing(f, int(i == 0)) for i, f in enumerate(sys.meta_path)]


def _counting(method):
    def wrapper(self, *args, **kwargs):
        counts["ca_loads"] += 1
        return method(self, *args, **kwargs)

    return wrapper


for _name in ("load_default_certs", "load_verify_locations", "set_default_verify_paths"):
    setattr(ssl.SSLContext, _name, _counting(getattr(ssl.SSLContext, _name)))


import asyncio.selector_events as _events

_write = _events._SelectorSocketTransport.write


def _first_write(self, data):
    import gc

    counts.setdefault("before_first_request", sorted(set(sys.modules) - before))
    counts.setdefault("gc_at_first_request", [gc.isenabled(), gc.get_freeze_count()])
    return _write(self, data)


_events._SelectorSocketTransport.write = _first_write


def _report():
    counts["imported"] = sorted(set(sys.modules) - before)
    sys.stderr.write("\nCOUNTS " + json.dumps(counts) + "\n")


atexit.register(_report)
import pushmanifest.cli.runner as _runner

_runner._end_process = sys.exit  # (it ends the process without atexit's handlers)
sys.argv = ["pushmanifest", *sys.argv[1:]]
runpy.run_module("pushmanifest", run_name="__main__", alter_sys=True)
"""


def run_counted(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=120,
        check=False,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("COUNTS ")]
    assert lines, proc.stderr
    return proc, json.loads(lines[-1][len("COUNTS ") :])


def test_push_start_up_does_only_what_it_needs(open_registry: Any, tmp_path: Path) -> None:
    seed_platforms(open_registry, "startup/app", [("amd64", "amd64", ""), ("arm64", "arm64", "v8")])
    host = open_registry.host
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"image: {host}/startup/app:list\n"
        "manifests:\n"
        f"  - image: {host}/startup/app:amd64\n"
        "    platform: {os: linux, architecture: amd64}\n"
        f"  - image: {host}/startup/app:arm64\n"
        "    platform: {os: linux, architecture: arm64, variant: v8}\n"
    )
    proc, counts = run_counted(tmp_path, "from-spec", "--plain-http", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "Digest: sha256:" in proc.stdout
    # The push made its requests (4: two sources, the tag's HEAD, its PUT), and httpcore asked
    # for sniffio several times on each. Searched for twice: anyio's own try as it is imported,
    # and pushmanifest's, which records it missing; no more.
    assert "httpcore" in counts["imported"]
    assert counts["sniffio_searches"] <= 2
    assert "importlib.metadata" not in counts["imported"]
    assert counts["ca_loads"] == 0
    assert "difflib" not in counts["imported"]
    # Features this push does not use: not imported at all, or only once its requests are out.
    imported, early = set(counts["imported"]), set(counts["before_first_request"])
    never = {"layouts"}
    later = {"appending", "copying", "referrers"}
    for room in never | later:
        assert f"pushmanifest.pusher.{room}" not in early
    for room in never:
        assert f"pushmanifest.pusher.{room}" not in imported
    for module in ("pushmanifest.layout", "pushmanifest.fromargs", "pushmanifest.metadata"):
        assert module not in imported
    if sys.version_info >= (3, 11):
        # Connections on asyncio's streams (netbackend.AsyncioBackend): anyio's backend, ~20 ms
        # to import, is not needed by a push that goes well.
        assert "anyio._backends._asyncio" not in imported
    # The garbage collector, held while the command started, runs again once the spec has
    # loaded, over what is made from then on (what start-up made is frozen).
    enabled, frozen = counts["gc_at_first_request"]
    assert enabled and frozen > 10_000


def test_a_program_calling_main_keeps_its_garbage_collector_as_it_was() -> None:
    import gc

    from pushmanifest.cli.collector import start_up_ended

    gc.disable()
    try:
        start_up_ended()  # not held by console_main: left alone
        assert not gc.isenabled()
    finally:
        gc.enable()
