"""Shared fixtures: real ``docker-registry`` processes on 127.0.0.1 (see tests/support/).

* ``open_registry``  - no auth, plain HTTP.
* ``token_registry`` - token auth with our own Docker Hub-style token server (``.token_server``).
* ``tls_registry``   - HTTPS with our own CA (``.ca_file``) and htpasswd basic auth.

Each is session-scoped and yields a :class:`support.registry.RegistryServer` (``host``, ``url``,
``users``, ...). Tests share them: use repository names of their own. Without the registry binary
(or if it does not start) the tests that use them are skipped, and under ``CI=true`` they fail.
Tests using them get the ``registry`` marker (``pytest -m "not registry"`` leaves them out).

* ``cli`` - the CLI as a subprocess (:func:`support.cli.run_cli`; test files wrap it as ``run``).
* ``yaml_loader`` - runs a spec test twice: with libyaml's parser (where PyYAML has it, as a run
  does) and with the pure-Python loader (PyYAML without libyaml; every text with an error).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from support import routes
from support.cli import run_cli
from support.registry import (
    RegistryServer,
    RegistryStartError,
    RegistryUnavailable,
    in_ci,
    start_open_registry,
    start_tls_registry,
    start_token_registry,
)

REGISTRY_FIXTURES = frozenset({"open_registry", "token_registry", "tls_registry"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if REGISTRY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


def _start(
    factory: pytest.TempPathFactory, name: str, starter: Callable[[Path], RegistryServer]
) -> RegistryServer:
    try:
        return starter(factory.mktemp(name))
    except (RegistryUnavailable, RegistryStartError) as exc:
        reason = f"{name}: {exc}"
        if in_ci():
            pytest.fail(
                f"{reason} (CI=true: a missing or failing registry is an error)", pytrace=False
            )
        pytest.skip(reason)


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry without auth over plain HTTP."""
    server = _start(tmp_path_factory, "registry-open", start_open_registry)
    with server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry with token auth; ``.token_server`` speaks Docker Hub's protocol.

    Users alice/alice-secret and bob/bob-secret; U may pull and push ``U/*``; everyone may pull
    ``library/*`` and ``public/*``.
    """
    server = _start(
        tmp_path_factory,
        "registry-token",
        lambda path: start_token_registry(path, public_repositories=["public/*"]),
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry over HTTPS (trust ``.ca_file``) with htpasswd basic auth (alice, bob)."""
    server = _start(tmp_path_factory, "registry-tls", start_tls_registry)
    with server:
        yield server


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[Any]]:
    """The CLI as a subprocess: :func:`support.cli.run_cli` (options there)."""
    return run_cli


@pytest.fixture(scope="module", params=["libyaml", "pure"])
def yaml_loader(request: pytest.FixtureRequest) -> Iterator[str]:
    """The spec loader's YAML parser: libyaml's (skipped where PyYAML has none) or the pure one.

    Module-scoped (hypothesis examples share it): the tests of a module run once with each.
    """
    from pushmanifest.spec import nodes

    saved = nodes.FAST_LOADER
    if request.param == "libyaml" and saved is None:
        pytest.skip("PyYAML is built without libyaml")
    if request.param == "pure":
        nodes.FAST_LOADER = None
    try:
        yield request.param
    finally:
        nodes.FAST_LOADER = saved


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word."""
    with routes.silent_port() as port:
        yield port
