from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from pushmanifest.auth import (
    Credentials,
    DockerConfig,
    Secret,
    load_docker_config,
    resolve_credentials,
)
from pushmanifest.errors import AuthenticationError, InputError

PASSWORD = "s3cr3t-pa55"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_config(directory: Path, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def helper_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on PATH, and nothing else there, for docker-credential-* scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return bin_dir


def make_helper(bin_dir: Path, name: str, body: str) -> Path:
    """A helper that logs its argv and stdin to NAME.log, then runs ``body`` (sh)."""
    script = bin_dir / f"docker-credential-{name}"
    log = bin_dir / f"{name}.log"
    script.write_text(
        f'#!/bin/sh\ninput=$(cat); printf "%s|%s\\n" "$1" "$input" >> "{log}"\n{body}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return log


def answer(server: str, username: str, secret: str) -> str:
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    return f"cat <<'EOF'\n{payload}\nEOF"


# -- loading ---------------------------------------------------------------------------------


def test_missing_file_is_empty(tmp_path: Path) -> None:
    config = load_docker_config(tmp_path / "nope.json")
    assert config.credentials_for("docker.io") is None
    assert load_docker_config(tmp_path).credentials_for("example.com") is None


def test_directory_or_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "d", {"auths": {"example.com": {"auth": b64("u:p")}}})
    for where in (path, path.parent, str(path), str(path.parent)):
        creds = load_docker_config(where).credentials_for("example.com")
        assert creds is not None and creds.username == "u"


def test_default_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "dc", {"auths": {"a.example": {"auth": b64("from-env:p")}}})
    write_config(tmp_path / "home" / ".docker", {"auths": {"a.example": {"auth": b64("home:p")}}})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    creds = load_docker_config().credentials_for("a.example")
    assert creds is not None and creds.username == "from-env"
    monkeypatch.delenv("DOCKER_CONFIG")
    creds = load_docker_config().credentials_for("a.example")
    assert creds is not None and creds.username == "home"


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, '{"auths": {')
    with pytest.raises(InputError) as info:
        load_docker_config(path)
    assert str(path) in str(info.value)


def test_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a JSON object"):
        load_docker_config(write_config(tmp_path, "[1, 2]"))


def test_empty_file_is_empty_config(tmp_path: Path) -> None:
    assert load_docker_config(write_config(tmp_path, "")).credentials_for("docker.io") is None


def test_bad_base64_names_file_and_key_not_secret(tmp_path: Path) -> None:
    secret_garbage = "!!not-base64-" + PASSWORD
    path = write_config(tmp_path, {"auths": {"example.com": {"auth": secret_garbage}}})
    config = load_docker_config(path)
    with pytest.raises(InputError) as info:
        config.credentials_for("example.com")
    message = str(info.value)
    assert str(path) in message and "auths[example.com]" in message
    assert PASSWORD not in message and secret_garbage not in message


def test_auth_without_colon(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"example.com": {"auth": b64(PASSWORD)}}})
    with pytest.raises(InputError) as info:
        load_docker_config(path).credentials_for("example.com")
    assert PASSWORD not in str(info.value)


def test_unpadded_base64_is_accepted(tmp_path: Path) -> None:
    encoded = b64("user:pw").rstrip("=")
    path = write_config(tmp_path, {"auths": {"example.com": {"auth": encoded}}})
    creds = load_docker_config(path).credentials_for("example.com")
    assert creds is not None and creds.password == Secret("pw")


# -- auths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io",
    ],
)
def test_docker_hub_keys(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path, {"auths": {key: {"auth": b64(f"hubuser:{PASSWORD}")}}})
    creds = load_docker_config(path).credentials_for("docker.io")
    assert creds is not None
    assert creds.username == "hubuser"
    assert creds.password == Secret(PASSWORD)
    assert key in creds.source and str(path) in creds.source
    assert PASSWORD not in repr(creds)


def test_docker_hub_canonical_key_wins(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {
                "docker.io": {"auth": b64("second:p")},
                "https://index.docker.io/v1/": {"auth": b64("first:p")},
            }
        },
    )
    creds = load_docker_config(path).credentials_for("docker.io")
    assert creds is not None and creds.username == "first"


@pytest.mark.parametrize(
    "key",
    [
        "registry.example.com:5000",
        "https://registry.example.com:5000",
        "http://registry.example.com:5000",
        "https://registry.example.com:5000/v1/",
        "https://registry.example.com:5000/v2/",
        "REGISTRY.example.com:5000",
    ],
)
def test_other_hosts_match_like_docker(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path, {"auths": {key: {"auth": b64("u:p")}}})
    config = load_docker_config(path)
    assert config.credentials_for("registry.example.com:5000") is not None
    # The port is part of the host: no match without it, nor for another host.
    assert config.credentials_for("registry.example.com") is None
    assert config.credentials_for("other.example.com:5000") is None
    assert config.credentials_for("docker.io") is None


def test_username_password_fields(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"h": {"username": "u", "password": "p"}}})
    creds = load_docker_config(path).credentials_for("h")
    assert creds is not None
    assert (creds.username, creds.password, creds.identity_token) == ("u", Secret("p"), None)


def test_identity_and_registry_tokens(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {
                "idt.example": {"username": "u", "identitytoken": "refresh-me"},
                "rt.example": {"registrytoken": "bearer-me"},
            }
        },
    )
    config = load_docker_config(path)
    idt = config.credentials_for("idt.example")
    assert idt is not None and idt.identity_token == Secret("refresh-me") and idt.username == "u"
    rt = config.credentials_for("rt.example")
    assert rt is not None and rt.registry_token == Secret("bearer-me") and rt.username is None


def test_empty_entry_is_anonymous(tmp_path: Path) -> None:
    # What docker writes into auths when a credsStore holds the secret.
    path = write_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {}}})
    assert load_docker_config(path).credentials_for("docker.io") is None


def test_wrong_types_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="auths"):
        load_docker_config(write_config(tmp_path / "a", {"auths": []}))
    with pytest.raises(InputError, match="credHelpers"):
        load_docker_config(write_config(tmp_path / "b", {"credHelpers": {"h": 1}}))
    with pytest.raises(InputError, match="credsStore"):
        load_docker_config(write_config(tmp_path / "c", {"credsStore": ["x"]}))
    config = load_docker_config(write_config(tmp_path / "d", {"auths": {"h": {"username": 1}}}))
    with pytest.raises(InputError, match="username"):
        config.credentials_for("h")


def test_repr_shows_no_secret(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"h": {"auth": b64(f"u:{PASSWORD}")}}})
    config = load_docker_config(path)
    assert PASSWORD not in repr(config)
    assert b64(f"u:{PASSWORD}") not in repr(config)


# -- resolve ---------------------------------------------------------------------------------


def test_resolve_order(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"h": {"auth": b64("config:p")}}})
    config = load_docker_config(path)
    explicit = Credentials(username="cli", password=Secret("p"), source="--username")
    assert resolve_credentials("h", explicit=explicit, docker_config=config) is explicit
    found = resolve_credentials("h", explicit=None, docker_config=config)
    assert found is not None and found.username == "config"
    assert resolve_credentials("other", explicit=None, docker_config=config) is None
    assert resolve_credentials("h", explicit=None, docker_config=None) is None


# -- credential helpers ----------------------------------------------------------------------


def test_cred_helper_for_docker_hub(tmp_path: Path, helper_dir: Path) -> None:
    log = make_helper(
        helper_dir, "pass", answer("https://index.docker.io/v1/", "hubuser", PASSWORD)
    )
    path = write_config(
        tmp_path,
        {
            "credHelpers": {"https://index.docker.io/v1/": "pass"},
            "auths": {"https://index.docker.io/v1/": {"auth": b64("fromauths:p")}},
        },
    )
    config = load_docker_config(path)
    creds = config.credentials_for("docker.io")
    assert creds is not None
    assert creds.username == "hubuser" and creds.password == Secret(PASSWORD)
    assert (
        creds.source
        == "docker config credHelpers[https://index.docker.io/v1/] (docker-credential-pass)"
    )
    assert log.read_text() == "get|https://index.docker.io/v1/\n"
    # Asked once per run, however many lookups.
    config.credentials_for("docker.io")
    assert log.read_text().count("\n") == 1


def test_cred_helper_for_host_gets_hostname(tmp_path: Path, helper_dir: Path) -> None:
    log = make_helper(helper_dir, "ecr", answer("x", "AWS", "pw"))
    path = write_config(tmp_path, {"credHelpers": {"123.dkr.example.com": "ecr"}})
    creds = load_docker_config(path).credentials_for("123.dkr.example.com")
    assert creds is not None and creds.username == "AWS"
    assert log.read_text() == "get|123.dkr.example.com\n"


def test_identity_token_from_helper(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "tok", answer("h", "<token>", "refresh-token-value"))
    path = write_config(tmp_path, {"credsStore": "tok"})
    creds = load_docker_config(path).credentials_for("h.example")
    assert creds is not None
    assert creds.username is None and creds.password is None
    assert creds.identity_token == Secret("refresh-token-value")
    assert creds.source == "docker config credsStore (docker-credential-tok)"


def test_helper_precedence(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "specific", answer("h", "from-credhelpers", "p"))
    make_helper(helper_dir, "store", answer("h", "from-store", "p"))
    path = write_config(
        tmp_path,
        {
            "credHelpers": {"h.example": "specific"},
            "credsStore": "store",
            "auths": {"h.example": {"auth": b64("from-auths:p")}, "o.example": {}},
        },
    )
    config = load_docker_config(path)
    creds = config.credentials_for("h.example")
    assert creds is not None and creds.username == "from-credhelpers"
    creds = config.credentials_for("o.example")
    assert creds is not None and creds.username == "from-store"


def test_helper_not_found_falls_through(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "store", 'echo "credentials not found in native keychain"; exit 1')
    path = write_config(
        tmp_path, {"credsStore": "store", "auths": {"h.example": {"auth": b64("fallback:p")}}}
    )
    config = load_docker_config(path)
    creds = config.credentials_for("h.example")
    assert creds is not None and creds.username == "fallback"
    assert config.credentials_for("none.example") is None


def test_helper_not_found_with_status_0(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "lax", 'echo "credentials not found in native keychain"')
    path = write_config(tmp_path, {"credsStore": "lax"})
    assert load_docker_config(path).credentials_for("h.example") is None


def test_helper_failure_falls_through_with_warning(
    tmp_path: Path, helper_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_helper(helper_dir, "broken", 'echo "gpg: decryption failed" >&2; exit 2')
    path = write_config(tmp_path, {"credsStore": "broken"})
    with caplog.at_level(logging.WARNING, logger="pushmanifest"):
        assert load_docker_config(path).credentials_for("h.example") is None
    assert "decryption failed" in caplog.text


def test_missing_helper_warns_and_falls_through(
    tmp_path: Path, helper_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(
        tmp_path,
        {"credHelpers": {"h.example": "nonexistent"}, "auths": {"h.example": {"auth": b64("a:p")}}},
    )
    with caplog.at_level(logging.WARNING, logger="pushmanifest"):
        creds = load_docker_config(path).credentials_for("h.example")
    assert creds is not None and creds.username == "a"
    assert "docker-credential-nonexistent" in caplog.text
    assert "not installed" in caplog.text


def test_helper_garbage_is_an_error_naming_it(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "garbage", f"echo 'not json {PASSWORD}'")
    path = write_config(tmp_path, {"credsStore": "garbage"})
    with pytest.raises(AuthenticationError) as info:
        load_docker_config(path).credentials_for("h.example")
    assert "docker-credential-garbage" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_helper_wrong_json_shape(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "shape", """echo '{"Username": 1, "Secret": "x"}'""")
    path = write_config(tmp_path, {"credsStore": "shape"})
    with pytest.raises(AuthenticationError, match="docker-credential-shape"):
        load_docker_config(path).credentials_for("h.example")


def test_helper_empty_secret_is_none(tmp_path: Path, helper_dir: Path) -> None:
    make_helper(helper_dir, "empty", answer("h", "", ""))
    path = write_config(tmp_path, {"credsStore": "empty"})
    assert load_docker_config(path).credentials_for("h.example") is None


def test_hanging_helper_is_killed(tmp_path: Path, helper_dir: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The helper's child holds the pipes open too: the whole group must go.
    make_helper(helper_dir, "hang", f"sleep 30 & echo $! > {pid_file}; wait")
    path = write_config(tmp_path, {"credsStore": "hang"})
    config = load_docker_config(path, helper_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        config.credentials_for("h.example")
    assert time.monotonic() - started < 5
    assert "docker-credential-hang" in str(info.value)
    assert "0.5 s" in str(info.value)
    child = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the helper's child survived the timeout")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Killed but not reaped yet (its parent is gone; init reaps it when it gets round to it).
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_docker_config_constructed_directly() -> None:
    config = DockerConfig({"auths": {"h": {"username": "u", "password": "p"}}})
    creds = config.credentials_for("h")
    assert creds is not None and creds.username == "u"


def test_a_key_that_would_break_the_line_is_quoted_in_the_error() -> None:
    # Found by test_fuzz: a key holding a newline made a two-line error.
    with pytest.raises(InputError) as caught:
        DockerConfig({"auths": {"bad\nhost": 5}}, path="cfg.json").credentials_for("h.example")
    assert str(caught.value) == "cfg.json: 'auths['bad\\nhost']' must be an object"
