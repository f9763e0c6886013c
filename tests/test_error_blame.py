"""Errors that point at the right thing: whose credentials, which protocol, which side failed.

(A source that dies mid-copy is named as the source: tests/test_uploads.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

import pushmanifest
from pushmanifest import ClientOptions, Credentials, ManifestListSpec, PushOptions
from pushmanifest.errors import AuthenticationError, NetworkError, RegistryError
from support.hostile import HostileServer, Reply, Request
from support.images import seed_image


def _spec(registry: Any, repository: str) -> ManifestListSpec:
    return ManifestListSpec(
        image=f"{registry.host}/{repository}:latest",
        manifests=[
            {
                "image": f"{registry.host}/{repository}:amd64",
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    )


def test_wrong_password_on_basic_auth_says_the_credentials_were_refused(
    tls_registry: Any,
) -> None:
    repository = "alice/blame-basic"
    seed_image(
        tls_registry, repository, "amd64", username="alice", password=tls_registry.users["alice"]
    )
    options = PushOptions(
        credentials=Credentials(username="alice", password="not-her-password"),
        client=ClientOptions(ca_file=str(tls_registry.ca_file), retries=1),
    )
    with pytest.raises(AuthenticationError) as caught:
        pushmanifest.push(_spec(tls_registry, repository), options)
    message = str(caught.value)
    assert f"{tls_registry.host} refused the credentials of user 'alice'" in message, message
    assert "may not" not in message


@pytest.mark.parametrize("command", ["inspect", "push"])
def test_plain_http_against_a_tls_port_says_it_speaks_https(
    tls_registry: Any, command: str
) -> None:
    """Go's TLS server answers plain HTTP with a bare 400 (a body only a GET reads)."""
    client = ClientOptions(plain_http=True, retries=1)
    with pytest.raises(RegistryError) as caught:
        if command == "inspect":  # a GET
            pushmanifest.inspect(f"{tls_registry.host}/alice/anything:1", client=client)
        else:  # HEADs first
            pushmanifest.push(_spec(tls_registry, "alice/blame-plain"), client=client)
    message = str(caught.value)
    assert f"{tls_registry.host} speaks HTTPS" in message, message
    assert "--plain-http" in message


def test_nginx_style_plain_http_refusal_is_recognised_too() -> None:
    body = b"<html><center>The plain HTTP request was sent to HTTPS port</center></html>"

    def route(request: Request) -> Reply:
        return Reply(400, {"content-type": "text/html"}, body)

    with HostileServer(route) as server, pytest.raises(RegistryError, match="speaks HTTPS"):
        pushmanifest.inspect(
            f"{server.host}/a/b:1", client=ClientOptions(plain_http=True, retries=1)
        )


def test_loopback_server_silent_to_the_tls_hello_gets_a_plain_http_hint(silent_port: int) -> None:
    options = ClientOptions(connect_timeout=0.5, read_timeout=0.5, retries=1)
    with pytest.raises(NetworkError) as caught:
        pushmanifest.inspect(f"127.0.0.1:{silent_port}/a/b:1", client=options)
    message = str(caught.value)
    assert "did not answer the TLS handshake" in message, message
    assert "--plain-http" in message
