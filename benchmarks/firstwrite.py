#!/usr/bin/env python3
"""Run a Python command and end its process at its first write to a socket: its first request
(plain HTTP), for counting the instructions a start-up takes to get there (``startup.py``, under
valgrind, whose count does not vary with the machine's load as times do).

    python3 benchmarks/firstwrite.py -m pushmanifest from-spec --plain-http SPEC
    python3 benchmarks/firstwrite.py benchmarks/floor.py SPEC
"""

from __future__ import annotations

import asyncio.selector_events
import os
import runpy
import sys


def _end(self: object, data: object) -> None:
    os._exit(0)


# asyncio's socket transport: where httpx's first request (and nothing before it) is written.
asyncio.selector_events._SelectorSocketTransport.write = _end  # type: ignore[attr-defined]

if __name__ == "__main__":
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit("the command ended without a request")
