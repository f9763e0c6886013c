#!/usr/bin/env python3
"""Run a command and write its CPU time and peak memory to a file:

    python3 benchmarks/rusage.py OUT -- COMMAND...

OUT gets one line: ``<user+sys seconds> <peak RSS in KiB>`` of COMMAND alone (``os.wait4``);
the exit status is COMMAND's. Why not the benchmark's own ``subprocess``: Python starts children
with ``vfork``, and Linux then counts the parent's peak memory (the benchmark's, with its
registries' proxies) as the child's. Here the child is forked from this small process and
execs at once. (``/usr/bin/time -f "%U %S %M"`` measures the same where it is installed.)
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: rusage.py OUT -- COMMAND...\n")
        return 2
    out, command = argv[0], argv[2:]
    pid = os.fork()
    if pid == 0:  # the child: becomes COMMAND
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    with open(out, "w") as handle:
        handle.write(f"{usage.ru_utime + usage.ru_stime:.4f} {usage.ru_maxrss}\n")
    return os.waitstatus_to_exitcode(status) if status else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
