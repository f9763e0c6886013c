"""The ``pushmanifest`` command: argument parsing and output only.

Start-up time matters (it runs in every CI hook), so httpx and pydantic are imported only once a
command actually needs them, never for ``--version`` or ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Optional, TextIO

from . import __version__
from .errors import InputError, PushManifestError, SpecError

if TYPE_CHECKING:
    from .auth import Credentials
    from .pusher import PushResult

log = logging.getLogger("pushmanifest")

COMMANDS = ("from-spec",)

USAGE = """\
usage: pushmanifest [options] from-spec [--ignore-missing] [--type auto|docker|oci]
                    [--dry-run] [--json] SPEC [SPEC ...]

Push multi-architecture manifest lists (Docker manifest list v2, OCI image index).

commands:
  from-spec SPEC...   push the list(s) described by YAML spec files
                      ("push from-spec", manifest-tool's spelling, works too)

Options may stand before or after the command. "pushmanifest from-spec --help" lists them all.
"""

# Options that take a value: needed to find the command word among options in any order.
_VALUE_OPTIONS = {
    "--username",
    "--password",
    "--docker-cfg",
    "--ca-file",
    "--type",
    "--timeout",
    "--max-concurrency",
    "--retries",
}


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry options")
    group.add_argument("--username", help="registry user name (for the target registry)")
    group.add_argument(
        "--password", help="registry password or token (prefer --password-stdin: argv is public)"
    )
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    group.add_argument(
        "--docker-cfg",
        metavar="PATH",
        help="docker config directory or config.json (default: $DOCKER_CONFIG or ~/.docker)",
    )
    group.add_argument(
        "--plain-http", action="store_true", help="talk plain HTTP to the registries"
    )
    group.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (dangerous)"
    )
    group.add_argument("--ca-file", metavar="PATH", help="trust this CA bundle for TLS")
    group.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="read timeout per request (default 30; connect timeout 10)",
    )
    group.add_argument(
        "--max-concurrency",
        type=int,
        default=16,
        metavar="N",
        help="requests in flight per registry (default 16)",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="attempts per request on connection errors, 408, 429 and 5xx (default 5)",
    )
    group.add_argument("--debug", action="store_true", help="log every request; tracebacks")
    group.add_argument("--version", action="version", version=f"pushmanifest {__version__}")


def _from_spec_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushmanifest from-spec",
        description="Push the manifest list(s) described by YAML spec files. Several files, or "
        "several YAML documents in one file, push several lists in one run.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="YAML spec file ('-': stdin)")
    parser.add_argument(
        "--ignore-missing",
        action="store_true",
        help="skip source images that do not exist (with a warning) instead of failing",
    )
    parser.add_argument(
        "--type",
        dest="list_type",
        choices=("auto", "docker", "oci"),
        default="auto",
        help="list format: auto (OCI index if any entry is OCI, else Docker list), docker, oci",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve everything and print the list that would be pushed; write nothing",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per list instead of Digest:"
    )
    _add_global_options(parser)
    return parser


def _split_command(argv: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """Find the command word wherever the options put it; return it and the other arguments."""
    rest: list[str] = []
    command: Optional[str] = None
    expect_value = False
    for arg in argv:
        if expect_value:
            rest.append(arg)
            expect_value = False
        elif command is None and arg in _VALUE_OPTIONS:
            rest.append(arg)
            expect_value = True
        elif command is None and not arg.startswith("-"):
            if arg == "push":  # manifest-tool's "push from-spec"
                continue
            command = arg
        else:
            rest.append(arg)
    return command, rest


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
        sys.stderr.write("pushmanifest: error: a command is required (from-spec)\n")
        return 2
    if command not in COMMANDS:
        sys.stderr.write(USAGE)
        sys.stderr.write(f"pushmanifest: error: unknown command {command!r} (try from-spec)\n")
        return 2
    parser = _from_spec_parser()
    try:
        args = parser.parse_intermixed_args(rest)
    except SystemExit as exc:
        return int(exc.code or 0)
    with _logging_to(sys.stderr, args.debug):
        try:
            return _run_from_spec(args)
        except PushManifestError as exc:
            _report(exc, args.debug)
            return exc.exit_code
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            return 130


def _report(exc: PushManifestError, debug: bool) -> None:
    if isinstance(exc, SpecError):
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
    else:
        sys.stderr.write(f"error: {exc}\n")
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _run_from_spec(args: argparse.Namespace) -> int:
    from .pusher import PushOptions, push
    from .registry import ClientOptions
    from .spec import load_spec_file, load_spec_text

    credentials = _credentials(args)
    specs = []
    problems = []

    for path in args.specs:
        try:
            if path == "-":
                specs.extend(load_spec_text(sys.stdin.read(), "<stdin>"))
            else:
                specs.extend(load_spec_file(path))
        except SpecError as exc:
            problems.extend(exc.problems)
        except OSError as exc:
            raise InputError(f"cannot read spec {path}: {exc.strerror or exc}") from exc
    if problems:
        raise SpecError(problems)
    if args.insecure:
        log.warning("--insecure: TLS certificates are not verified")
    options = PushOptions(
        list_type=args.list_type,
        ignore_missing=args.ignore_missing,
        dry_run=args.dry_run,
        credentials=credentials,
        docker_config=args.docker_cfg,
        client=ClientOptions(
            plain_http=args.plain_http,
            insecure=args.insecure,
            ca_file=args.ca_file,
            read_timeout=args.timeout,
            max_concurrency=args.max_concurrency,
            retries=args.retries,
        ),
    )
    results = push(specs, options)
    for result in results:
        _print_result(result, as_json=args.json)
    return 0


def _credentials(args: argparse.Namespace) -> Optional[Credentials]:
    from .auth import Credentials, Secret

    password: Optional[str] = args.password
    if args.password_stdin:
        if args.password is not None:
            raise InputError("--password and --password-stdin exclude each other")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InputError("--password-stdin: standard input held no password")
    elif password is not None:
        log.warning(
            "--password on the command line is visible to other users; use --password-stdin"
        )
    if (args.username is None) != (password is None):
        raise InputError("--username and a password go together (--password-stdin)")
    if args.username is None or password is None:
        return None
    return Credentials(username=args.username, password=Secret(password), source="--username")


def _print_result(result: PushResult, *, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        data = result.to_dict()
        if result.dry_run:
            data["manifest"] = json.loads(result.data)
        out.write(json.dumps(data) + "\n")
        return
    if result.dry_run:
        out.write(result.data.decode("utf-8") + "\n")
        log.info("dry run: nothing was written to %s", result.target.familiar())
    out.write(f"Digest: {result.digest} {result.size}\n")
    out.flush()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
