"""Every CLI option with a bad value: exit 2, one line, no traceback (issue 10, point 4).

The options are read from the command's own argparse parsers, so that a new option is swept
without anyone adding it here: numbers past the bounds their ``type=`` states, ``nan``, ``inf``,
words; choices with a word not among them; flags given a value. Options taking free text need
bad values of their own (:data:`BAD_TEXT`): a test fails for any option missing from it.

Every case must fail before anything is sent: the registry named is 127.0.0.1:9, where nothing
listens, so a bad value that slipped through would end in a connection error (exit 1) instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushmanifest import cli

SRC = str(Path(__file__).resolve().parents[1] / "src")
NOWHERE = "127.0.0.1:9"

SPEC = f"""\
image: {NOWHERE}/app:1
manifests:
  - image: {NOWHERE}/app:amd64
    platform: {{os: linux, architecture: amd64}}
"""

#: Valid arguments for each command; one of them at a time is swapped for a bad one.
BASE: dict[str, list[str]] = {
    "from-spec": ["SPEC"],
    "from-args": [
        "--platforms",
        "linux/amd64",
        "--template",
        f"{NOWHERE}/app:ARCH",
        "--target",
        f"{NOWHERE}/app:1",
    ],
    "inspect": [f"{NOWHERE}/app:1"],
    "validate": ["SPEC"],
    "schema": [],
}
#: The commands that talk to registries: a bad value that slipped through would be retried.
NETWORK = ("from-spec", "from-args", "inspect")

#: Bad values for the options (and positionals, by dest) that take free text. "BAD_JSON" is a
#: file holding a broken docker config, "MISSING" a path that does not exist.
BAD_TEXT: dict[str, list[str]] = {
    "--username": [""],  # a user with no password
    "--password": [""],  # a password with no user
    "--docker-cfg": ["/dev/zero", "BAD_JSON"],
    "--ca-file": ["MISSING", "BAD_JSON"],
    "--platforms": ["bogus", "linux", "linux/amd64/v7/x", ""],
    "--template": ["", "UPPER/app:ARCH", f"{NOWHERE}/app::ARCH"],
    "--target": ["", "UPPER/app", f"{NOWHERE}/app@sha256:zz"],
    "--tags": ["bad tag!", "-leading-dash", "t" * 129],
    "--annotations": ["noequals", "=value"],
    "--artifact-type": ["", "noslash", "a/b/c"],
    "--subject": ["", "UPPER::bad", f"{NOWHERE}/app@sha256:zz"],
    "--entry-annotation": ["linux/amd64", "k=v", "linux/bogus:k=v", "linux/amd64:=v"],
    "--platform": ["bogus", "linux", ""],
    "--remove": ["bogus", "", "linux/amd64"],  # the last: without --append
    "--metadata-file": ["", "/", "/nonexistent-dir/metadata.json"],
    "specs": ["MISSING", "BAD_JSON"],
    "ref": ["", "UPPER::bad", f"{NOWHERE}/app@sha256:zz"],
}


def _bad_numbers(kind: cli._Number) -> list[str]:
    below = kind.minimum if kind.above_minimum else kind.minimum - 1
    values = ["nan", "inf", "-inf", "", "abc", f"{below:g}", f"{kind.maximum + 1:g}", "9" * 400]
    if kind.kind is int:
        values.append("1.5")
    return values


def _cases() -> Iterator[tuple[str, str, str]]:
    """(command, option or positional dest, bad value) for every argument of every command."""
    for command, make_parser in cli._PARSERS.items():
        parser = make_parser()
        for action in parser._actions:  # argparse has no public list of its arguments
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            if isinstance(action.type, cli._Number):
                bad = _bad_numbers(action.type)
            elif action.choices is not None:
                bad = ["bogus"]
            elif action.nargs == 0:
                bad = ["=yes"]  # a flag given a value
            else:
                assert name in BAD_TEXT, f"{command} {name}: add bad values to BAD_TEXT"
                bad = BAD_TEXT[name]
            for value in bad:
                yield command, name, value


def _params() -> Iterator[object]:
    for command, name, value in _cases():
        yield pytest.param(command, name, value, id=f"{command} {name} {value[:20]!r}")


def _argv(command: str, name: str, value: str, files: dict[str, str]) -> list[str]:
    value = files.get(value, value)
    base = [files.get(arg, arg) for arg in BASE[command]]
    retries = ["--retries", "1"] if command in NETWORK and name != "--retries" else []
    if not name.startswith("-"):  # a positional: replace the valid one
        if command in ("from-spec", "validate"):
            base = [value]
        else:
            base = [value if arg == f"{NOWHERE}/app:1" else arg for arg in base]
        return [command, *base, *retries]
    if name in base:  # from-args' own options: replace their valid value
        index = base.index(name)
        base = base[:index] + base[index + 2 :]
    # "--opt=value": a value starting with "-" stays a value; "=yes" is a flag given one.
    option = [name + value] if value == "=yes" else [f"{name}={value}"]
    return [command, *base, *option, *retries]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("cli-options")
    spec = directory / "spec.yaml"
    spec.write_text(SPEC)
    broken = directory / "broken.json"
    broken.write_text("{ not json")
    return {"SPEC": str(spec), "BAD_JSON": str(broken), "MISSING": str(directory / "missing")}


def test_the_sweep_covers_every_command_and_the_numeric_options() -> None:
    swept = {(command, name) for command, name, _ in _cases()}
    assert {command for command, _ in swept} == set(cli.COMMANDS)
    for command in NETWORK:
        for option in ("--timeout", "--deadline", "--max-concurrency", "--retries"):
            assert (command, option) in swept
    assert ("from-args", "--platforms") in swept
    assert ("inspect", "--raw") in swept


@pytest.mark.parametrize(("command", "name", "value"), list(_params()))
def test_bad_value_is_exit_2_one_line_no_traceback(
    command: str,
    name: str,
    value: str,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _argv(command, name, value, files)
    status = cli.main(argv)  # an exception escaping here is the traceback a user would see
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert status == 2, (argv, err)
    assert len(lines) == 1, (argv, err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["inspect", "--timeout", "nan", f"{NOWHERE}/a:1"],
            "pushmanifest inspect: error: argument --timeout: 'nan' is not a number of seconds "
            "greater than 0 up to 86400 (see --help)",
        ),
        (
            ["--deadline", "-5", "from-spec", "x.yaml"],
            "pushmanifest from-spec: error: argument --deadline: '-5' is not a number of "
            "seconds greater than 0 up to 604800 (see --help)",
        ),
        (
            ["from-args", "--max-concurrency", "-3"],
            "pushmanifest from-args: error: argument --max-concurrency: '-3' is not a whole "
            "number from 1 to 1024 (see --help)",
        ),
        (
            ["inspect", "--retries", "-1", f"{NOWHERE}/a:1"],
            "pushmanifest inspect: error: argument --retries: '-1' is not a whole number from "
            "1 to 10 (see --help)",
        ),
    ],
)
def test_the_command_says_what_it_expected(argv: list[str], expected: str) -> None:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "pushmanifest", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == expected + "\n"
    assert done.stdout == ""


def test_good_values_at_the_bounds_are_taken() -> None:
    parser = cli._PARSERS["inspect"]()
    at_the_bounds = ["--timeout", "86400", "--deadline", "0.5", "--max-concurrency", "1"]
    args = parser.parse_intermixed_args([*at_the_bounds, "--retries", "10", "x"])
    assert (args.timeout, args.deadline, args.max_concurrency, args.retries) == (
        86400.0,
        0.5,
        1,
        10,
    )
