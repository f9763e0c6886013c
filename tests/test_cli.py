"""The command line without a registry: parsing, exit statuses, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pushmanifest import __version__
from pushmanifest.cli import _split_command, main
from support.cli import run_cli

DATA = Path(__file__).parent / "data" / "specs"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli(*args, stdin=stdin, hermetic=False, timeout=60)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pushmanifest {__version__}"


def test_help_lists_the_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "from-spec" in result.stdout


def test_no_command_is_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert "a command is required" in result.stderr


def test_unknown_command() -> None:
    result = run("frm-spec", "x.yaml")
    assert result.returncode == 2
    assert "unknown command 'frm-spec'" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "from-spec", "a.yaml"],
        ["from-spec", "--debug", "a.yaml"],
        ["from-spec", "a.yaml", "--debug"],
        ["push", "from-spec", "a.yaml", "--debug"],
        ["--username", "from-spec", "from-spec", "a.yaml", "--debug"],
        ["--docker-cfg=/x", "push", "from-spec", "--debug", "a.yaml"],
    ],
)
def test_options_anywhere(argv: list[str]) -> None:
    command, rest = _split_command(argv)
    assert command == "from-spec"
    assert "--debug" in rest and "a.yaml" in rest


def test_seed_spec_unfixed_exits_2_naming_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["push", "from-spec", str(DATA / "seed-broken.yaml")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert "seed-broken.yaml:18:14: 'platform:' is indented 5 spaces" in captured.err
    assert "Traceback" not in captured.err


def test_every_bad_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("image: app:latest\nmanifests:\n  - image: app:amd64\n    platfrom: {}\n")
    status = main(["from-spec", str(DATA / "seed-broken.yaml"), str(bad)])
    err = capsys.readouterr().err
    assert status == 2
    assert "seed-broken.yaml:18:14" in err
    assert "bad.yaml:4:5" in err and "did you mean 'platform'" in err


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["from-spec", str(tmp_path / "nope.yaml")])
    assert status == 2
    assert "cannot read spec" in capsys.readouterr().err


def test_bad_type_is_usage_error() -> None:
    result = run("from-spec", "--type", "zip", "a.yaml")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_password_without_username(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["from-spec", str(DATA / "seed.yaml"), "--password", "x"])
    err = capsys.readouterr().err
    assert status == 2
    assert "--username" in err


def test_password_stdin_empty() -> None:
    result = run("from-spec", str(DATA / "seed.yaml"), "--username", "u", "--password-stdin")
    assert result.returncode == 2
    assert "no password" in result.stderr


def test_reads_spec_from_stdin_and_reports_position() -> None:
    result = run("from-spec", "-", stdin="image: Bad/Name\nmanifests: []\n")
    assert result.returncode == 2
    assert result.stderr.startswith("<stdin>:1:8: ")


SKIPPED_PACKAGES = ("trio", "h2", "click", "rich", "pygments")


def test_the_command_skips_packages_it_never_uses(tmp_path: Path) -> None:
    """trio, h2 and httpx's CLI (click, rich) cost start-up where installed; the command process
    (console_main) imports none of them, and httpx and the push machinery still work.

    Installed or not here, each of them is: a stand-in package of that name, first on the path,
    writes its name to a log when imported (so the test fails wherever the skipping breaks)."""
    log = tmp_path / "imported.log"
    fakes = tmp_path / "fakes"
    for name in SKIPPED_PACKAGES:
        (fakes / name).mkdir(parents=True)
        (fakes / name / "__init__.py").write_text(
            "import os\n"
            "with open(os.environ['FAKE_IMPORT_LOG'], 'a') as log:\n"
            "    log.write(__name__ + '\\n')\n"
        )
    path = os.pathsep.join(p for p in (str(fakes), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "FAKE_IMPORT_LOG": str(log)}
    code = (
        "import sys\n"
        "from pushmanifest.cli import _skip_unused_imports\n"
        "_skip_unused_imports()\n"
        "import httpx, pushmanifest.pusher, pushmanifest.spec\n"
        "httpx.AsyncClient()\n"
        "print(sorted(m for m in ('trio', 'h2', 'click', 'rich', 'pygments')\n"
        "             if sys.modules.get(m) is not None))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
    assert not log.exists(), log.read_text()
    # The stand-ins are importable: without the skipping, they would have been imported.
    check = subprocess.run(
        [sys.executable, "-c", f"import {', '.join(SKIPPED_PACKAGES)}"], env=env, timeout=60
    )
    assert check.returncode == 0
    assert log.read_text().split() == list(SKIPPED_PACKAGES)
