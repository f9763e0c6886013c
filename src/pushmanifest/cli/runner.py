"""The runner: the console script's entry point, a command run with its notices on stderr, its
errors reported in one line with the exit status they mean, and interrupts as exit 130/143.

Start-up time matters (it runs in every CI hook), so httpx and pydantic are imported only once a
command actually needs them, never for ``--version`` or ``--help``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn, Optional, TextIO

from .. import __version__
from .._imports import skip_pydantic_plugin_scan
from ..errors import PushManifestError, SpecError
from .collector import hold_gc
from .commands import RUNS
from .parsers import _PARSERS, COMMANDS, USAGE, _split_command
from .signals import _sigterm_as_interrupt

log = logging.getLogger("pushmanifest")


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            message = f"error: {message}"
        elif record.levelno >= logging.WARNING:
            message = f"warning: {message}"
        if record.exc_info and record.levelno >= logging.ERROR:
            message += "\n" + self.formatException(record.exc_info)
        return message


@contextlib.contextmanager
def _logging_to(stream: TextIO, debug: bool) -> Iterator[None]:
    """Send the library's notices to ``stream`` for the duration of one command."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_StderrFormatter())
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script; returns the exit status (also via SystemExit)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command, rest = _split_command(args_list)
    if command is None:
        if "--version" in rest:
            print(f"pushmanifest {__version__}")
            return 0
        if "-h" in rest or "--help" in rest:
            sys.stdout.write(USAGE)
            return 0
        sys.stderr.write(USAGE)
        sys.stderr.write(f"pushmanifest: error: a command is required ({_choices()})\n")
        return 2
    if command not in COMMANDS:
        sys.stderr.write(USAGE)
        sys.stderr.write(f"pushmanifest: error: unknown command {command!r} (try {_choices()})\n")
        return 2
    parser = _PARSERS[command]()
    try:
        args = parser.parse_intermixed_args(rest)
    except SystemExit as exc:
        return int(exc.code or 0)
    with _logging_to(sys.stderr, args.debug):
        try:
            with _sigterm_as_interrupt():
                return RUNS[command](args)
        except PushManifestError as exc:
            _report(exc, args.debug)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            # SIGTERM as SIGINT: uploads cancelled, what was written printed, one line.
            signum = getattr(exc, "signum", signal.SIGINT)
            sys.stderr.write("terminated\n" if signum == signal.SIGTERM else "interrupted\n")
            return 128 + int(signum)


def console_main() -> NoReturn:
    """The console script and ``python -m pushmanifest``: :func:`main` in a process of its own,
    which ends as soon as the command has (:func:`_end_process`)."""
    _skip_unused_imports()
    hold_gc()
    _end_process(main())


def _end_process(status: int) -> NoReturn:
    """End this process with ``status`` once its output is out, without the interpreter's
    clean-up: tearing down every module and object of a run (pydantic's schemas, httpx, the
    event loop's) took 60-100 ms after the command had ended, more than a round trip to a
    registry, in every CI hook. Nothing is left to do by then: the command has closed its
    connections and files, and no thread of it is still running (a credential helper that
    still is, after an interrupt, is not waited for). Output that cannot be written (a closed
    pipe) ends it with 120, as Python's own clean-up would."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream
            status = status or 120
    os._exit(status)


def _skip_unused_imports() -> None:
    """Keep optional packages that a pushmanifest process never uses from being imported.

    Only for a process the CLI owns (never on import of the library). Where these packages are
    installed they cost ~150 ms of a ~450 ms dry run: httpcore imports trio to support it (we
    run on asyncio) and h2 for HTTP/2 (we speak HTTP/1.1), httpx imports its own CLI (click,
    rich, pygments), and pydantic scans every installed distribution's entry points for
    plugins. A user's explicit PYDANTIC_DISABLE_PLUGINS setting is kept.
    """
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]  # None: ImportError
    sys.modules.setdefault("h2", None)  # type: ignore[arg-type]
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    skip_pydantic_plugin_scan()  # its loader imports importlib.metadata even when all are off


def _choices() -> str:
    return ", ".join(COMMANDS[:-1]) + " or " + COMMANDS[-1]


def _report(exc: PushManifestError, debug: bool) -> None:
    if isinstance(exc, SpecError):
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
    else:
        sys.stderr.write(f"error: {exc}\n")
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
