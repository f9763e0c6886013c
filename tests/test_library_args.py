"""Library calls with arguments of the wrong type (issue 10, point 4): a clear error saying what
was expected, raised at the entry point, before anything is sent.

The error is :class:`InvalidArgumentError`: an :class:`InputError` like every bad input of the
project, and a ``TypeError``/``ValueError`` like Python's own, so either ``except`` works.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest

from pushmanifest import (
    ClientOptions,
    Credentials,
    InputError,
    PushOptions,
    Secret,
    inspect,
    load_spec_text,
    push,
)
from pushmanifest.errors import InvalidArgumentError
from pushmanifest.inspecting import InspectOptions

SPEC = load_spec_text(
    "image: 127.0.0.1:9/app:1\nmanifests:\n  - image: 127.0.0.1:9/app:amd64\n"
    "    platform: {os: linux, architecture: amd64}\n",
    "spec.yaml",
)[0]
SPECS = (
    "a ManifestListSpec or a list of them (from load_spec_file, load_spec_text or spec_from_args)"
)

CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("push-str", lambda: push("a:b"), f"push: specs must be {SPECS}, not str 'a:b'"),
    (
        "push-dict",
        lambda: push({"image": "a:b"}),
        f"push: specs must be {SPECS}, not dict {{'image': 'a:b'}}",
    ),
    (
        "push-list-of-str",
        lambda: push(["a:b"]),
        f"push: specs must be {SPECS}; item 0 is str 'a:b'",
    ),
    ("push-int", lambda: push(3), f"push: specs must be {SPECS}, not int 3"),
    (
        "credentials-tuple",
        lambda: push(SPEC, credentials=("a", "b")),
        "PushOptions: credentials must be a Credentials or None, not tuple ('a', 'b')",
    ),
    (
        "client-dict",
        lambda: push(SPEC, client={"plain_http": True}),
        "PushOptions: client must be a ClientOptions, not dict {'plain_http': True}",
    ),
    (
        "dry-run-str",
        lambda: push(SPEC, dry_run="no"),
        "PushOptions: dry_run must be True or False, not str 'no'",
    ),
    (
        "deadline-nan",
        lambda: push(SPEC, deadline=float("nan")),
        "PushOptions: deadline must be a number greater than 0 (or None), not float nan",
    ),
    (
        "deadline-zero",
        lambda: push(SPEC, deadline=0),
        "PushOptions: deadline must be a number greater than 0 (or None), not int 0",
    ),
    (
        "force-str",
        lambda: push(SPEC, force="yes"),
        "PushOptions: force must be True or False, not str 'yes'",
    ),
    (
        "wait-negative",
        lambda: push(SPEC, wait=-1),
        "PushOptions: wait must be a number at least 0 (or None), not int -1",
    ),
    (
        "wait-nan",
        lambda: push(SPEC, wait=float("nan")),
        "PushOptions: wait must be a number at least 0 (or None), not float nan",
    ),
    (
        "options-dict",
        lambda: push(SPEC, {"dry_run": True}),
        "push: options must be a PushOptions or None, not dict {'dry_run': True}",
    ),
    (
        "unknown-option",
        lambda: push(SPEC, dryrun=True),
        "push: unknown option dryrun (known: "
        + ", ".join(sorted(f.name for f in dataclasses.fields(PushOptions)))
        + ")",
    ),
    (
        "timeout-nan",
        lambda: PushOptions(client=ClientOptions(read_timeout=float("nan"))),
        "ClientOptions: read_timeout must be a number greater than 0, not float nan",
    ),
    (
        "concurrency-negative",
        lambda: PushOptions(client=ClientOptions(max_concurrency=-3)),
        "ClientOptions: max_concurrency must be a whole number at least 1, not int -3",
    ),
    (
        "retries-str",
        lambda: PushOptions(client=ClientOptions(retries="5")),  # type: ignore[arg-type]
        "ClientOptions: retries must be a whole number at least 0, not str '5'",
    ),
    (
        "inspect-int",
        lambda: inspect(123),
        "inspect: ref must be an image reference (str), not int 123",
    ),
    (
        "inspect-credentials",
        lambda: inspect("127.0.0.1:9/a:1", credentials=("a", "b")),
        "InspectOptions: credentials must be a Credentials or None, not tuple ('a', 'b')",
    ),
    (
        "inspect-client",
        lambda: inspect("127.0.0.1:9/a:1", client={}),
        "InspectOptions: client must be a ClientOptions, not dict {}",
    ),
    (
        "inspect-options",
        lambda: inspect("127.0.0.1:9/a:1", {"client": None}),
        "inspect: options must be an InspectOptions or None, not dict {'client': None}",
    ),
    (
        "inspect-docker-config",
        lambda: InspectOptions(docker_config=5),  # type: ignore[arg-type]
        "InspectOptions: docker_config must be a path (str) or None, not int 5",
    ),
]


@pytest.mark.parametrize(("call", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_wrong_argument_says_what_was_expected(call: Callable[[], Any], expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    assert str(caught.value) == expected
    assert isinstance(caught.value, InputError)
    assert isinstance(caught.value, TypeError)


def test_right_arguments_are_taken() -> None:
    options = PushOptions(
        dry_run=True,
        deadline=5,
        credentials=Credentials(username="u", password=Secret("p")),
        docker_config="/nowhere",
        client=ClientOptions(retries=0, read_timeout=1),
    )
    assert options.dry_run is True
    assert InspectOptions(credentials=None, client=ClientOptions()).docker_config is None
