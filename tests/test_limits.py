"""Size caps on untrusted input outside the registry's own answers (issue 10, point 3).

Token answers, credential helpers' output, ``WWW-Authenticate`` headers and docker config files
each have a cap; past it the run ends with one line saying what was too large, memory stays near
the cap, and nothing hangs. The hostile peers are real: a server on loopback
(:mod:`support.hostile_auth`), helper scripts on PATH, FIFOs and ``/dev/zero``.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from pushmanifest.auth import DockerConfig, TokenAuth, load_docker_config
from pushmanifest.auth.challenge import (
    MAX_CHALLENGES,
    MAX_HEADER_CHARS,
    MAX_PARAMS,
    ChallengeLimitError,
    parse_www_authenticate,
)
from pushmanifest.auth.dockerconfig import (
    MAX_DOCKER_CONFIG_BYTES,
    MAX_HELPER_OUTPUT_BYTES,
)
from pushmanifest.auth.token import MAX_TOKEN_RESPONSE_BYTES
from pushmanifest.errors import AuthenticationError, InputError
from support.hostile_auth import HostileAuthServer

SRC = str(Path(__file__).resolve().parents[1] / "src")
MiB = 1024 * 1024

# Runs the CLI in a process of its own, within 2 GiB of address space (a regression must not
# take the machine's memory with it), and writes its peak RSS (KiB) to PEAK_FILE: VmHWM, as
# ru_maxrss would also count the pytest process it was forked from.
_MEASURED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from pushmanifest.cli.runner import _skip_unused_imports, main

_skip_unused_imports()  # as console_main, which ends the process without returning

def peak_kib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

try:
    code = main()
finally:
    with open(os.environ["PEAK_FILE"], "w") as peak:
        peak.write(str(peak_kib()))
sys.exit(code)
"""


def run_measured(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in MiB) of ``pushmanifest ARGS``."""
    peak_file = tmp_path / "peak"
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["PEAK_FILE"] = str(peak_file)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,  # only a real hang gets here
    )
    return done.returncode, done.stderr, int(peak_file.read_text()) // 1024


@pytest.fixture(scope="module")
def baseline_mib(tmp_path_factory: pytest.TempPathFactory) -> int:
    """The peak RSS of a run that fails at once (nothing listens on port 9): what the command
    costs before any input is read. The caps are judged against it, not against a constant."""
    tmp = tmp_path_factory.mktemp("baseline")
    status, stderr, peak = run_measured(
        tmp, "inspect", "--docker-cfg", str(tmp), "--retries", "1", "127.0.0.1:9/app:1"
    )
    assert status == 1, stderr
    return peak


#: What a capped input may add to the baseline: the 1 MiB cap, its copies, and slack.
HEADROOM_MIB = 64


def assert_one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- token answers -----------------------------------------------------------------------------


def test_huge_token_answer_is_refused_as_it_streams_with_memory_near_the_cap(
    tmp_path: Path, baseline_mib: int
) -> None:
    # Before the cap: 200 MB reached 1.6 GB RSS and ended in "Broken pipe" retries.
    with HostileAuthServer(token_bytes=100 * MiB) as server:
        status, stderr, peak = run_measured(
            tmp_path, "inspect", "--plain-http", "--retries", "1", f"{server.host}/app:1"
        )
        sent = server.token_bytes_sent
    line = assert_one_line(stderr)
    assert status == 1
    assert line == (
        f"error: authentication failed: the token server {server.host} sent more than the "
        f"{MAX_TOKEN_RESPONSE_BYTES} bytes allowed for a token answer"
    )
    assert peak < baseline_mib + HEADROOM_MIB, f"peak RSS {peak} MiB, baseline {baseline_mib}"
    assert sent < 50 * MiB  # the client stopped near the cap (the rest: socket buffers at most)


def test_token_answer_declared_too_large_is_refused_before_reading() -> None:
    server = HostileAuthServer(token_bytes=MAX_TOKEN_RESPONSE_BYTES + 1, declare_length=True)
    with server, pytest.raises(AuthenticationError) as caught:
        _get_with_token_auth(server)
    assert str(caught.value) == (
        f"authentication failed: the token server {server.host} sent "
        f"{MAX_TOKEN_RESPONSE_BYTES + 1} bytes, more than the {MAX_TOKEN_RESPONSE_BYTES} bytes "
        "allowed for a token answer"
    )


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_token_answer_over_the_cap_in_the_auth_flow(sync: bool) -> None:
    # Not primed: the 401 of the request itself starts the token request (both drivers).
    with HostileAuthServer(token_bytes=64 * MiB) as server:
        with pytest.raises(AuthenticationError, match="more than the 1048576 bytes allowed"):
            _get_with_token_auth(server, sync=sync)
        # What socket buffers can hold (Linux: up to 32 MiB received + 4 MiB sent), not more.
        assert server.token_bytes_sent < 48 * MiB


def test_token_answer_at_the_cap_is_read() -> None:
    with HostileAuthServer(token_bytes=MAX_TOKEN_RESPONSE_BYTES) as server:
        _get_with_token_auth(server)  # the token is taken and sent (the server refuses it)
    assert server.paths.count("/token") == 1


def test_encoded_token_answer_is_refused() -> None:
    server = HostileAuthServer(content_encoding="gzip, gzip, gzip")
    with server, pytest.raises(AuthenticationError) as caught:
        _get_with_token_auth(server)
    assert str(caught.value) == (
        f"authentication failed: the token server {server.host} sent its answer encoded "
        "(gzip, gzip, gzip) though asked for it as it is (identity)"
    )


def _get_with_token_auth(server: HostileAuthServer, *, sync: bool = False) -> httpx.Response:
    url = f"http://{server.host}/v2/app/manifests/1"
    auth = TokenAuth(None)
    if sync:
        with httpx.Client(auth=auth, timeout=30) as client:
            return client.get(url)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            return await client.get(url)

    return asyncio.run(go())


# -- WWW-Authenticate --------------------------------------------------------------------------


def test_challenge_limits_in_the_parser() -> None:
    params = ",".join(f"p{i}=v" for i in range(MAX_PARAMS))
    assert len(parse_www_authenticate(f"Bearer {params}")[0].params) == MAX_PARAMS
    with pytest.raises(ChallengeLimitError, match=f"more than {MAX_PARAMS} parameters"):
        parse_www_authenticate(f"Bearer {params},one=more")
    schemes = ", ".join(["Basic"] * MAX_CHALLENGES)
    assert len(parse_www_authenticate(schemes)) == MAX_CHALLENGES
    with pytest.raises(ChallengeLimitError, match=f"more than {MAX_CHALLENGES} challenges"):
        parse_www_authenticate(schemes + ", Basic")
    long = 'Bearer realm="' + "r" * MAX_HEADER_CHARS + '"'
    with pytest.raises(ChallengeLimitError, match=f"more than the {MAX_HEADER_CHARS} allowed"):
        parse_www_authenticate(long)


# ~90 KiB of parameters, just under h11's 100 KiB for all of a response's headers: the most a
# server can send us.
HUGE_CHALLENGE = (
    'Bearer realm="http://127.0.0.1:1/token",' + ",".join(f"p{i}=x" for i in range(15000))
)[:90_000]


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (HUGE_CHALLENGE, "of 90000 characters, more than the 8192 allowed"),
        (
            'Bearer realm="http://127.0.0.1:1/token",' + ",".join(f"p{i}=x" for i in range(40)),
            "with more than 32 parameters in one challenge",
        ),
        (", ".join(["Basic"] * 40), "with more than 16 challenges"),
    ],
    ids=["huge", "many-params", "many-challenges"],
)
def test_oversized_challenge_is_one_clear_error(
    tmp_path: Path, challenge: str, expected: str
) -> None:
    with HostileAuthServer(challenge=challenge) as server:
        status, stderr, _peak = run_measured(
            tmp_path, "inspect", "--plain-http", "--retries", "1", f"{server.host}/app:1"
        )
    line = assert_one_line(stderr)
    assert status == 1
    assert line == (
        f"error: authentication failed: {server.host} sent a WWW-Authenticate header {expected}"
    )
    assert "/token" not in server.paths


# -- credential helpers ------------------------------------------------------------------------


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return directory


def make_helper(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_helper_printing_without_end_is_stopped_at_the_cap(
    tmp_path: Path, bin_dir: Path, baseline_mib: int
) -> None:
    # Before the cap: 500 MB of output reached 1.5 GB RSS (then "not its JSON protocol").
    make_helper(bin_dir, "loud", "head -c 524288000 /dev/zero | tr '\\0' a")
    (tmp_path / "config.json").write_text('{"credsStore": "loud"}')
    status, stderr, peak = run_measured(
        tmp_path,
        "inspect",
        "--docker-cfg",
        str(tmp_path),
        "--plain-http",
        "127.0.0.1:9/app:1",  # never reached: the helper's answer comes first
        env={"PATH": os.environ["PATH"]},
    )
    line = assert_one_line(stderr)
    assert status == 1
    assert line == (
        "error: credential helper docker-credential-loud printed more than the "
        f"{MAX_HELPER_OUTPUT_BYTES} bytes allowed for its answer"
    )
    assert peak < baseline_mib + HEADROOM_MIB, f"peak RSS {peak} MiB, baseline {baseline_mib}"


def test_helper_answer_at_the_cap_is_read(tmp_path: Path, bin_dir: Path) -> None:
    # A JSON answer padded with spaces to exactly the cap, and a chatty stderr (dropped).
    answer = '{"Username": "u", "Secret": "s"}'
    padding = MAX_HELPER_OUTPUT_BYTES - len(answer)
    make_helper(
        bin_dir,
        "padded",
        f"head -c 5000000 /dev/zero | tr '\\0' e >&2; printf '%s' '{answer}'; "
        f"head -c {padding} /dev/zero | tr '\\0' ' '",
    )
    config = DockerConfig({"credsStore": "padded"}, path=tmp_path / "config.json")
    found = config.credentials_for("h.example")
    assert found is not None and found.username == "u"


def test_helper_still_bounded_by_its_timeout_while_printing(tmp_path: Path, bin_dir: Path) -> None:
    # Output trickling under the cap must not reset the clock.
    make_helper(bin_dir, "trickle", "while :; do printf x; sleep 0.1; done")
    config = DockerConfig(
        {"credsStore": "trickle"}, path=tmp_path / "config.json", helper_timeout=0.5
    )
    with pytest.raises(AuthenticationError, match=r"did not answer within 0\.5 s"):
        config.credentials_for("h.example")


# -- docker config files -----------------------------------------------------------------------


def test_docker_config_larger_than_the_cap(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    file.write_bytes(b"{" + b" " * MAX_DOCKER_CONFIG_BYTES + b"}")
    with pytest.raises(InputError) as caught:
        load_docker_config(file)
    assert str(caught.value) == (
        f"docker config {file} is larger than the {MAX_DOCKER_CONFIG_BYTES} bytes allowed"
    )
    file.write_bytes(b"{" + b" " * (MAX_DOCKER_CONFIG_BYTES - 2) + b"}")
    assert load_docker_config(file).auths == {}


def test_docker_config_fifo_does_not_hang(tmp_path: Path) -> None:
    # Before: a FIFO with no writer hung the run (and /dev/zero, below, ended in MemoryError).
    path = tmp_path / "config.json"
    os.mkfifo(path)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_docker_config(path)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=60)  # only a hang gets near this
    assert not worker.is_alive(), "load_docker_config hung"
    assert len(outcome) == 1 and isinstance(outcome[0], InputError), outcome
    assert str(outcome[0]) == f"cannot read docker config {path}: not a regular file"


def test_docker_config_dev_zero_from_the_cli_is_exit_2(tmp_path: Path, baseline_mib: int) -> None:
    status, stderr, peak = run_measured(
        tmp_path, "inspect", "--docker-cfg", "/dev/zero", "127.0.0.1:9/app:1"
    )
    assert status == 2
    assert assert_one_line(stderr) == (
        "error: cannot read docker config /dev/zero: not a regular file"
    )
    assert peak < baseline_mib + HEADROOM_MIB, f"peak RSS {peak} MiB, baseline {baseline_mib}"
