"""The commands: each turns its arguments into the library's options, calls the library, and
prints the outcome (for a push, also what was written when the run failed part-way).

Heavy modules (httpx, pydantic, yaml) are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..errors import InputError, SpecError
from .collector import start_up_ended
from .signals import _run_interruptibly

if TYPE_CHECKING:
    from ..auth import Credentials
    from ..metadata import MetadataFile
    from ..pusher import PushOptions, PushResult
    from ..registry import ClientOptions
    from ..spec import ManifestListSpec

log = logging.getLogger("pushmanifest")


def _run_from_spec(args: argparse.Namespace) -> int:
    from ..pusher.warm import read_spec_text

    options = _push_options(args)  # first: --password-stdin reads stdin before a '-' spec

    def load() -> list[ManifestListSpec]:
        from ..spec import load_spec_file, load_spec_stream

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
            from ..fromargs import parse_annotations, with_annotations

            annotations = parse_annotations(args.annotations)
            specs = [with_annotations(spec, annotations) for spec in specs]
        if args.artifact_type is not None or args.subject is not None:
            from ..fromargs import with_list_fields

            fields = {"artifact_type": args.artifact_type, "subject": args.subject}
            specs = [with_list_fields(spec, **fields) for spec in specs]
        start_up_ended()
        return specs

    # The registries the raw specs name are warmed while they load (pusher.warm); not when one
    # is standard input or a FIFO (read once, by the loader, in this thread).
    read = [read_spec_text(path) if path != "-" else None for path in args.specs]
    texts = [text for text in read if text is not None] if None not in read else []
    return _push_and_print(
        load, options, as_json=args.json, texts=texts, metadata_file=args.metadata_file
    )


def _run_from_args(args: argparse.Namespace) -> int:
    from ..fromargs import parse_annotations, removal_spec, spec_from_args

    # Without --platforms and --template: a run that only removes platforms from the target.
    removal_only = args.platforms is None and args.template is None and bool(args.remove)
    required = ("--target",) if removal_only else ("--platforms", "--template", "--target")
    missing = [option for option in required if getattr(args, option[2:]) is None]
    if missing:
        hint = (
            ""
            if removal_only
            else " (to only remove platforms from the list a tag holds: --target IMAGE "
            "--append --remove PLATFORM)"
        )
        names = ", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1]
        raise InputError(f"from-args needs {names}{hint}")
    if removal_only:
        options = _push_options(args)
        spec = removal_spec(args.target, tags=args.tags)
        return _push_and_print(
            lambda: [spec], options, as_json=args.json, metadata_file=args.metadata_file
        )
    spec = spec_from_args(
        platforms=args.platforms,
        template=args.template,
        target=args.target,
        tags=args.tags,
        annotations=parse_annotations(args.annotations),
        artifact_type=args.artifact_type,
        subject=args.subject,
    )
    return _push_and_print(
        lambda: [spec], _push_options(args), as_json=args.json, metadata_file=args.metadata_file
    )


def _run_validate(args: argparse.Namespace) -> int:
    from ..validate import validate_specs

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
    from ..schema import schema_text

    sys.stdout.write(schema_text())
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from ..inspecting import InspectOptions, inspect

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
    load: Callable[[], Sequence[ManifestListSpec]],
    options: PushOptions,
    *,
    as_json: bool,
    texts: Sequence[str] = (),
    metadata_file: Optional[str] = None,
) -> int:
    if metadata_file is not None or not texts:
        # Standard input, a FIFO: read here, where a signal stops the read. --metadata-file: the
        # spec's errors come before the file's, which is made once the spec has loaded.
        specs = load()
        load, texts = (lambda: specs), ()
    # Before any request: a --metadata-file that cannot be written is exit 2 now, not after.
    with _open_metadata_file(metadata_file, as_json=as_json) as metadata:
        return _push_and_write(load, options, as_json=as_json, metadata=metadata, texts=texts)


def _push_and_write(
    load: Callable[[], Sequence[ManifestListSpec]],
    options: PushOptions,
    *,
    as_json: bool,
    metadata: Optional[MetadataFile],
    texts: Sequence[str] = (),
) -> int:
    from ..pusher import partial_push, push_async
    from ..pusher.warm import push_loading_async

    # --metadata-file -: the document is stdout, instead of a line (or object) per list.
    printing = metadata is None or metadata.path != "-"
    if not texts:
        start_up_ended()  # (from-spec's loader says so itself, when the spec has loaded)
    try:
        if texts:  # the specs load while their registries are warmed (pusher.warm)
            results = _run_interruptibly(lambda: push_loading_async(load, options, texts=texts))
        else:  # loaded already (_push_and_print)
            specs = load()
            results = _run_interruptibly(lambda: push_async(specs, options))
    except BaseException as exc:
        # Scripts read stdout: every list that was written is printed even when the run failed.
        partial = partial_push(exc)
        if partial is not None:
            for result in partial.written if printing else ():
                _print_result(result, as_json=as_json)
            for what in partial.not_written:
                sys.stderr.write(f"not written: {what}\n")
        if metadata is not None:
            _write_failed_metadata(metadata, exc, dry_run=options.dry_run)
        raise
    for result in results if printing else ():
        _print_result(result, as_json=as_json)
    if metadata is not None:
        from ..metadata import run_metadata

        metadata.write(run_metadata(results, dry_run=options.dry_run))
    return 0


def _open_metadata_file(
    path: Optional[str], *, as_json: bool
) -> contextlib.AbstractContextManager[Optional[MetadataFile]]:
    """--metadata-file, checked: its temporary file made (removed on leaving if unused)."""
    if path is None:
        return contextlib.nullcontext(None)
    if path == "-" and as_json:
        raise InputError("--metadata-file - and --json both write stdout: give a file path")
    from ..metadata import MetadataFile

    return MetadataFile(path)  # InputError: "cannot write the metadata file PATH: why"


def _write_failed_metadata(metadata: MetadataFile, exc: BaseException, *, dry_run: bool) -> None:
    """The document of a failed run; failing to write it must not hide why the run failed."""
    from ..errors import PushManifestError
    from ..metadata import failed_run_metadata

    try:
        metadata.write(failed_run_metadata(exc, dry_run=dry_run))
    except PushManifestError as write_error:
        log.error("%s", write_error)


def _push_options(args: argparse.Namespace) -> PushOptions:
    from ..pusher import PushOptions

    filters: dict[str, Any] = {}
    if args.platform is not None or args.remove is not None or args.entry_annotation:
        # (Only then: fromargs is imported when used, a push's first request waits for it.)
        from ..fromargs import parse_entry_annotations, parse_platform_filter

        filters = {
            "platforms": parse_platform_filter(args.platform),
            "remove_platforms": parse_platform_filter(args.remove, "--remove"),
            "entry_annotations": parse_entry_annotations(args.entry_annotation),
        }
    return PushOptions(
        **filters,
        list_type=args.list_type,
        ignore_missing=args.ignore_missing,
        dry_run=args.dry_run,
        append=args.append,
        force=args.force,
        wait=args.wait,
        check_platform=args.check_platform,
        strict_platform=args.strict_platform,
        referrers=args.referrers,
        deadline=args.deadline,
        credentials=_credentials(args),
        docker_config=args.docker_cfg,
        client=_client_options(args),
    )


def _client_options(args: argparse.Namespace) -> ClientOptions:
    from ..registry import ClientOptions

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
    from ..auth import Credentials, Secret

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


#: The function that runs each command, by its name (parsers.COMMANDS).
RUNS: dict[str, Callable[[argparse.Namespace], int]] = {
    "from-spec": _run_from_spec,
    "from-args": _run_from_args,
    "inspect": _run_inspect,
    "validate": _run_validate,
    "schema": _run_schema,
}
