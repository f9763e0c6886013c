"""The command line's grammar: the usage text, one parser per command, the option validators, and
the command word found among options in any order. Parsing only: nothing here runs a command.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import NoReturn, Optional, Union

from .. import __version__

COMMANDS = ("from-spec", "from-args", "inspect", "validate", "schema")

USAGE = """\
usage: pushmanifest [options] from-spec [--ignore-missing] [--type auto|docker|oci]
                    [--append] [--check-platform] [--strict-platform]
                    [--force] [--wait SECONDS] [--no-referrers]
                    [--platform OS/ARCH[/VARIANT],...] [--remove OS/ARCH[/VARIANT],...]
                    [--artifact-type TYPE] [--subject IMAGE[:TAG|@DIGEST]]
                    [--entry-annotation PLATFORM:KEY=VALUE,...]
                    [--annotations KEY=VALUE,...] [--dry-run] [--json]
                    [--metadata-file FILE] SPEC [SPEC ...]
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
    "--artifact-type",
    "--subject",
    "--entry-annotation",
    "--platform",
    "--remove",
    "--metadata-file",
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
        default=64,
        metavar="N",
        help="requests in flight per registry (default 64)",
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
    _add_list_field_options(parser)
    parser.add_argument(
        "--no-referrers",
        dest="referrers",
        action="store_false",
        help="do not copy the signatures, attestations and SBOMs (OCI referrers, cosign tags) "
        "of images copied from another repository or registry",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve everything and print the list that would be pushed; write nothing",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per list instead of Digest:"
    )
    parser.add_argument(
        "--metadata-file",
        metavar="FILE",
        help="write the run's result to FILE as one JSON document (digests, tags, entries; "
        "docker buildx's keys too), atomically, also when the run fails; '-': stdout instead of "
        "the Digest: lines",
    )


def _add_list_field_options(parser: argparse.ArgumentParser) -> None:
    """OCI 1.1 fields, entry annotations and --remove (from-spec and from-args)."""
    parser.add_argument(
        "--artifact-type",
        metavar="TYPE",
        help="OCI 1.1: the index's artifactType, a media type (needs --type oci); for "
        "from-spec, over the spec's",
    )
    parser.add_argument(
        "--subject",
        metavar="IMAGE[:TAG|@DIGEST]",
        help="OCI 1.1: the manifest the index refers to, read with a HEAD (needs --type oci); "
        "for from-spec, over the spec's",
    )
    parser.add_argument(
        "--entry-annotation",
        action="append",
        metavar="PLATFORM:KEY=VALUE,...",
        help="annotations of the entry of a platform, e.g. linux/amd64:org.example.k=v "
        "(OCI index only); repeatable; over the spec's",
    )
    parser.add_argument(
        "--platform",
        action="append",
        metavar="OS/ARCH[/VARIANT],...",
        help="keep only these platforms in the list, from every source, lists' attestations "
        "with their images (a variant not given matches any); comma-separated or repeated",
    )
    parser.add_argument(
        "--remove",
        action="append",
        metavar="OS/ARCH[/VARIANT],...",
        help="with --append: drop these platforms (and their attestations) from the list the "
        "tag holds; comma-separated or repeated",
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
        metavar="OS/ARCH[/VARIANT],...",
        help="the platforms of the list, comma-separated or repeated (required, but for "
        "--append --remove alone)",
    )
    parser.add_argument(
        "--template",
        metavar="IMAGE",
        help="each platform's source image, with OS, ARCH, VARIANT or DOCKERARCH in it "
        "(required with --platforms)",
    )
    parser.add_argument(
        "--target",
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
