"""The ``pushmanifest`` command: argument parsing and output only.

Start-up time matters (it runs in every CI hook), so httpx and pydantic are imported only once a
command actually needs them, never for ``--version`` or ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional, TextIO, TypeVar, Union

from . import __version__
from .errors import InputError, PushManifestError, SpecError

if TYPE_CHECKING:
    from .auth import Credentials
    from .pusher import PushOptions, PushResult
    from .registry import ClientOptions
    from .spec import ManifestListSpec

log = logging.getLogger("pushmanifest")
T = TypeVar("T")

COMMANDS = ("from-spec", "from-args", "inspect", "validate", "schema")

USAGE = """\
usage: pushmanifest [options] from-spec [--ignore-missing] [--type auto|docker|oci]
                    [--append] [--check-platform] [--strict-platform]
                    [--force] [--wait SECONDS]
                    [--annotations KEY=VALUE,...] [--dry-run] [--json] SPEC [SPEC ...]
       pushmanifest [options] from-args --platforms OS/ARCH[/VARIANT],...
                    --template IMAGE --target IMAGE[:TAG] [--tags TAG,...]
                    [the options of from-spec but SPEC]
       pushmanifest [options] inspect [--raw | --json] IMAGE[:TAG|@DIGEST]
       pushmanifest validate [--allow-unset-env] SPEC [SPEC ...]
       pushmanifest schema

Push multi-architecture manifest lists (Docker manifest list v2, OCI image index).

commands:
  from-spec SPEC...   push the list(s) described by YAML spec files
  from-args           push a list of an image per platform, named by a template
                      (OS, ARCH, VARIANT, DOCKERARCH in --template are replaced)
  inspect IMAGE       show what a tag or digest holds: a list's entries, or an image's
                      platform and layers (--raw: the registry's exact bytes)
  validate SPEC...    check spec files without a network (exit 2 on any problem)
  schema              print the JSON Schema of a spec file (for editors)

"push from-spec" and "push from-args" (manifest-tool's spelling) work too.
Options may stand before or after the command. "pushmanifest COMMAND --help" lists them all.
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
    "--deadline",
    "--platforms",
    "--template",
    "--target",
    "--tags",
    "--annotations",
    "--wait",
}


class _Parser(argparse.ArgumentParser):
    """A usage error is one line naming the option (exit 2), not the usage block before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Number:
    """An argparse ``type=``: a number within bounds, else a usage error that gives the range.

    ``nan`` and ``inf`` are never meant (Python's float() takes them, the options cannot).
    The bounds are attributes, so that a test can sweep every numeric option past them.
    """

    def __init__(
        self,
        kind: type[Union[int, float]],
        *,
        minimum: float,
        maximum: float,
        above_minimum: bool = False,
        what: str,
    ) -> None:
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.above_minimum = above_minimum
        low = f"greater than {minimum:g}" if above_minimum else f"from {minimum:g}"
        self.expected = f"{what} {low} {'up ' if above_minimum else ''}to {maximum:g}"

    def __call__(self, text: str) -> Union[int, float]:
        try:
            value = self.kind(text)
        except (ValueError, OverflowError):
            value = None
        if (
            value is None
            or (isinstance(value, float) and not math.isfinite(value))
            or value > self.maximum
            or value < self.minimum
            or (self.above_minimum and value == self.minimum)
        ):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not {self.expected}")
        return value


# Beyond a day per read and a week per run, a timeout is a typo, not a wish.
_SECONDS = _Number(float, minimum=0, maximum=86400, above_minimum=True, what="a number of seconds")
_DEADLINE = _Number(
    float, minimum=0, maximum=604800, above_minimum=True, what="a number of seconds"
)
_CONCURRENCY = _Number(int, minimum=1, maximum=1024, what="a whole number")
_ATTEMPTS = _Number(int, minimum=1, maximum=10, what="a whole number")
_WAIT = _Number(float, minimum=0, maximum=86400, what="a number of seconds")


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
    group.add_argument(
        "--ca-file",
        metavar="PATH",
        help="trust the CA certificate(s) of this file (PEM or DER) too, besides the system's",
    )
    group.add_argument(
        "--timeout",
        type=_SECONDS,
        default=30.0,
        metavar="SECONDS",
        help="read timeout per request (default 30; connect timeout 10)",
    )
    group.add_argument(
        "--max-concurrency",
        type=_CONCURRENCY,
        default=16,
        metavar="N",
        help="requests in flight per registry (default 16)",
    )
    group.add_argument(
        "--retries",
        type=_ATTEMPTS,
        default=5,
        metavar="N",
        help="attempts per request on connection errors, 408, 429 and 5xx (default 5)",
    )
    group.add_argument(
        "--deadline",
        type=_DEADLINE,
        default=None,
        metavar="SECONDS",
        help="give up (exit 1) when a push has not finished after this long",
    )
    group.add_argument("--debug", action="store_true", help="log every request; tracebacks")
    group.add_argument("--version", action="version", version=f"pushmanifest {__version__}")


def _add_push_options(parser: argparse.ArgumentParser) -> None:
    """What from-spec and from-args share: how the list is built and what is written."""
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
        "--append",
        action="store_true",
        help="merge into the list the target already holds: entries of the same platform are "
        "replaced, the others kept",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the list even where a tag already holds the same digest",
    )
    parser.add_argument(
        "--wait",
        type=_WAIT,
        default=None,
        metavar="SECONDS",
        help="poll sources that do not exist yet (HEAD only) for up to SECONDS before failing "
        "or skipping them",
    )
    parser.add_argument(
        "--check-platform",
        action="store_true",
        help="read each image's config and warn where its platform differs from the one given",
    )
    parser.add_argument(
        "--strict-platform",
        action="store_true",
        help="as --check-platform, but a difference is an error",
    )
    parser.add_argument(
        "--annotations",
        action="append",
        metavar="KEY=VALUE,...",
        help="annotations of the list (OCI index only: use with --type oci); repeatable or "
        "comma-separated; for from-spec, merged over the spec's own",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve everything and print the list that would be pushed; write nothing",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per list instead of Digest:"
    )


def _from_spec_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pushmanifest from-spec",
        description="Push the manifest list(s) described by YAML spec files. Several files, or "
        "several YAML documents in one file, push several lists in one run.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="YAML spec file ('-': stdin)")
    _add_push_options(parser)
    _add_global_options(parser)
    return parser


def _from_args_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pushmanifest from-args",
        description="Push a manifest list of one image per platform, as manifest-tool's "
        "from-args: each platform's image is --template with the words OS, ARCH and VARIANT "
        "replaced by its values (whole uppercase words, every occurrence; an empty variant "
        "takes a separator left dangling with it: app:ARCH-VARIANT gives app:amd64). DOCKERARCH is "
        "Docker Hub's name of the platform: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, "
        "s390x, riscv64, mips64le, windows-amd64.",
        epilog="example: pushmanifest from-args --platforms linux/amd64,linux/arm/v7 "
        "--template user/app:OS-ARCH-VARIANT --target user/app:1.0 --tags latest",
    )
    parser.add_argument(
        "--platforms",
        action="append",
        required=True,
        metavar="OS/ARCH[/VARIANT],...",
        help="the platforms of the list, comma-separated or repeated",
    )
    parser.add_argument(
        "--template",
        required=True,
        metavar="IMAGE",
        help="each platform's source image, with OS, ARCH, VARIANT or DOCKERARCH in it",
    )
    parser.add_argument(
        "--target",
        required=True,
        metavar="IMAGE[:TAG]",
        help="the list to push (tag latest when none)",
    )
    parser.add_argument(
        "--tags",
        action="append",
        metavar="TAG,...",
        help="more tags for the list, comma-separated or repeated",
    )
    _add_push_options(parser)
    _add_global_options(parser)
    return parser


def _inspect_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pushmanifest inspect",
        description="Show what a tag or digest holds: for a list, its digest, media type, size, "
        "annotations and entries; for an image, its platform (from its config), layers and total "
        "size. Only pull access is asked for; anonymous unless credentials are found.",
    )
    parser.add_argument(
        "ref", metavar="IMAGE[:TAG|@DIGEST]", help="what to inspect (tag latest when none)"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--raw", action="store_true", help="print the registry's exact bytes, nothing added"
    )
    output.add_argument("--json", action="store_true", help="print a JSON object")
    _add_global_options(parser)
    return parser


def _validate_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pushmanifest validate",
        description="Check spec files as from-spec would load them, without a network: YAML, "
        "keys, references, tags, platforms, duplicates, ${VAR}; and that no tag is pushed by "
        "two lists. Every problem is printed as FILE:LINE:COL: message (exit status 2); a "
        "valid set prints one summary line.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="YAML spec file ('-': stdin)")
    parser.add_argument(
        "--allow-unset-env",
        action="store_true",
        help="an unset ${VAR} without default is not a problem (for CI variables not set where "
        "the hook runs); the rest of its value is still checked",
    )
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def _schema_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pushmanifest schema",
        description="Print the JSON Schema (draft 2020-12) of a spec file, for editors: "
        "# yaml-language-server: $schema=<url or path of this file>",
    )
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


_PARSERS = {
    "from-spec": _from_spec_parser,
    "from-args": _from_args_parser,
    "inspect": _inspect_parser,
    "validate": _validate_parser,
    "schema": _schema_parser,
}


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
    run = {
        "from-spec": _run_from_spec,
        "from-args": _run_from_args,
        "inspect": _run_inspect,
        "validate": _run_validate,
        "schema": _run_schema,
    }
    with _logging_to(sys.stderr, args.debug):
        try:
            with _sigterm_as_interrupt():
                return run[command](args)
        except PushManifestError as exc:
            _report(exc, args.debug)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            # SIGTERM as SIGINT: uploads cancelled, what was written printed, one line.
            signum = getattr(exc, "signum", signal.SIGINT)
            sys.stderr.write("terminated\n" if signum == signal.SIGTERM else "interrupted\n")
            return 128 + int(signum)


class _Interrupted(KeyboardInterrupt):
    """A signal stopped the command (SIGINT or SIGTERM, in ``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, ``docker stop``) stops the command as Ctrl-C does."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_interruptibly(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``start()`` on an event loop where SIGINT and SIGTERM cancel it, cleanly.

    A signal cancels the run's task (its uploads end and delete their sessions, see
    RegistryClient.upload_blob) and then raises :class:`_Interrupted`; a second signal stops at
    once.
    """
    import asyncio

    async def run() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []

        def on_signal(signum: int) -> None:
            if received:
                raise _Interrupted(received[0])
            received.append(signum)
            task.cancel()

        installed = []
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass
        try:
            return await start()
        except asyncio.CancelledError as exc:
            if received:
                raise _Interrupted(received[0]) from exc
            raise
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])

    return asyncio.run(run())


def console_main() -> int:
    """The console script and ``python -m pushmanifest``: :func:`main` in a process of its own."""
    _skip_unused_imports()
    return main()


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


def _run_from_spec(args: argparse.Namespace) -> int:
    from .spec import load_spec_file, load_spec_stream

    options = _push_options(args)  # first: --password-stdin reads stdin before a '-' spec
    specs = []
    problems = []
    for path in args.specs:
        try:
            if path == "-":
                specs.extend(load_spec_stream(sys.stdin, "<stdin>"))
            else:
                specs.extend(load_spec_file(path))
        except SpecError as exc:
            problems.extend(exc.problems)
        except OSError as exc:
            raise InputError(f"cannot read spec {path}: {exc.strerror or exc}") from exc
    if problems:
        raise SpecError(problems)
    if args.annotations:
        from .fromargs import parse_annotations, with_annotations

        annotations = parse_annotations(args.annotations)
        specs = [with_annotations(spec, annotations) for spec in specs]
    return _push_and_print(specs, options, as_json=args.json)


def _run_from_args(args: argparse.Namespace) -> int:
    from .fromargs import parse_annotations, spec_from_args

    spec = spec_from_args(
        platforms=args.platforms,
        template=args.template,
        target=args.target,
        tags=args.tags,
        annotations=parse_annotations(args.annotations),
    )
    return _push_and_print([spec], _push_options(args), as_json=args.json)


def _run_validate(args: argparse.Namespace) -> int:
    from .validate import validate_specs

    report = validate_specs(
        args.specs, allow_unset_env=args.allow_unset_env, read_stdin=sys.stdin.read
    )
    if report.problems:
        for problem in report.problems:
            sys.stderr.write(f"{problem}\n")
        return 2
    sys.stdout.write(report.summary() + "\n")
    return 0


def _run_schema(args: argparse.Namespace) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text())
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from .inspecting import InspectOptions, inspect

    options = InspectOptions(
        credentials=_credentials(args),
        docker_config=args.docker_cfg,
        client=_client_options(args),
    )
    result = inspect(args.ref, options)
    out = sys.stdout
    if args.raw:
        out.flush()
        buffer = getattr(out, "buffer", None)
        if buffer is not None:
            buffer.write(result.data)
            buffer.flush()
        else:  # a text-only stream (tests replacing sys.stdout)
            out.write(result.data.decode("utf-8", "replace"))
    elif args.json:
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        out.write(result.to_text())
    out.flush()
    return 0


def _push_and_print(
    specs: Sequence[ManifestListSpec], options: PushOptions, *, as_json: bool
) -> int:
    from .pusher import partial_push, push_async

    try:
        results = _run_interruptibly(lambda: push_async(specs, options))
    except BaseException as exc:
        # Scripts read stdout: every list that was written is printed even when the run failed.
        partial = partial_push(exc)
        if partial is not None:
            for result in partial.written:
                _print_result(result, as_json=as_json)
            for what in partial.not_written:
                sys.stderr.write(f"not written: {what}\n")
        raise
    for result in results:
        _print_result(result, as_json=as_json)
    return 0


def _push_options(args: argparse.Namespace) -> PushOptions:
    from .pusher import PushOptions

    return PushOptions(
        list_type=args.list_type,
        ignore_missing=args.ignore_missing,
        dry_run=args.dry_run,
        append=args.append,
        force=args.force,
        wait=args.wait,
        check_platform=args.check_platform,
        strict_platform=args.strict_platform,
        deadline=args.deadline,
        credentials=_credentials(args),
        docker_config=args.docker_cfg,
        client=_client_options(args),
    )


def _client_options(args: argparse.Namespace) -> ClientOptions:
    from .registry import ClientOptions

    if args.insecure:
        log.warning("--insecure: TLS certificates are not verified")
    options = ClientOptions(
        plain_http=args.plain_http,
        insecure=args.insecure,
        ca_file=args.ca_file,
        read_timeout=args.timeout,
        max_concurrency=args.max_concurrency,
        retries=args.retries,
    )
    try:
        _ = options.tls_verify  # reads --ca-file now: a bad one stops the run before any request
    except InputError as exc:
        raise InputError(f"--ca-file: {exc}") from None
    return options


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
