"""Protocol edges a real registry won't produce on demand, with respx."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import respx

from pushmanifest import ClientOptions, Credentials, PushOptions, RegistryClient, push
from pushmanifest.errors import (
    AuthenticationError,
    DigestMismatchError,
    MissingSourcesError,
    RegistryError,
)
from pushmanifest.manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, sha256_digest
from pushmanifest.spec import load_spec_text

HOST = "registry.test"
BASE = f"https://{HOST}/v2"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST}).encode()
MANIFEST_DIGEST = sha256_digest(MANIFEST)


def client(**kwargs: object) -> RegistryClient:
    return RegistryClient(HOST, options=ClientOptions(**kwargs))  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@respx.mock
def test_head_without_digest_header_falls_back_to_get_and_hashes() -> None:
    respx.head(f"{BASE}/app/manifests/amd64").respond(
        200, headers={"Content-Type": DOCKER_MANIFEST}
    )
    get = respx.get(f"{BASE}/app/manifests/amd64").respond(
        200, content=MANIFEST, headers={"Content-Type": DOCKER_MANIFEST}
    )

    async def go() -> object:
        async with client() as c:
            return await c.head_manifest("app", "amd64")

    descriptor = run(go())
    assert get.call_count == 1
    assert descriptor.digest == MANIFEST_DIGEST  # type: ignore[attr-defined]
    assert descriptor.size == len(MANIFEST)  # type: ignore[attr-defined]


@respx.mock
def test_get_checks_the_content_against_the_digest_asked_for() -> None:
    wrong = "sha256:" + "0" * 64
    respx.get(f"{BASE}/app/manifests/{wrong}").respond(
        200, content=MANIFEST, headers={"Content-Type": DOCKER_MANIFEST}
    )

    async def go() -> object:
        async with client() as c:
            return await c.get_manifest("app", wrong)

    with pytest.raises(DigestMismatchError):
        run(go())


@respx.mock
def test_put_checks_the_digest_the_registry_reports() -> None:
    respx.put(f"{BASE}/app/manifests/latest").respond(
        201, headers={"Docker-Content-Digest": "sha256:" + "1" * 64}
    )

    async def go() -> object:
        async with client() as c:
            return await c.put_manifest("app", "latest", b"{}", DOCKER_MANIFEST_LIST)

    with pytest.raises(DigestMismatchError, match="registry stored digest"):
        run(go())


@respx.mock
def test_oversized_manifest_is_refused() -> None:
    big = b"x" * (4 * 1024 * 1024 + 1)
    respx.get(f"{BASE}/app/manifests/latest").respond(200, content=big)

    async def go() -> object:
        async with client() as c:
            return await c.get_manifest("app", "latest")

    with pytest.raises(RegistryError, match="more than"):
        run(go())


@respx.mock
def test_denied_push_names_user_operation_and_image() -> None:
    body = {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
    respx.put(f"{BASE}/alice/app/manifests/latest").respond(403, json=body)

    async def go() -> object:
        c = RegistryClient(
            HOST, credentials=Credentials(username="bob", password="hunter2"), options=None
        )
        async with c:
            c._pinged = True  # the token dance is tested in test_auth_token
            return await c.put_manifest("alice/app", "latest", b"{}", DOCKER_MANIFEST_LIST)

    with pytest.raises(AuthenticationError) as excinfo:
        run(go())
    message = str(excinfo.value)
    assert message == (
        f"denied: user 'bob' may not push to {HOST}/alice/app:latest "
        "(requested access to the resource is denied)"
    )
    assert "hunter2" not in message


@respx.mock
def test_error_bodies_that_are_not_json_are_truncated() -> None:
    respx.head(f"{BASE}/app/manifests/latest").respond(500)
    respx.put(f"{BASE}/app/manifests/latest").respond(502, text="<html>" + "x" * 5000)

    async def go() -> object:
        async with client() as c:
            return await c.put_manifest("app", "latest", b"{}", DOCKER_MANIFEST_LIST)

    with pytest.raises(RegistryError) as excinfo:
        run(go())
    assert "HTTP 502" in str(excinfo.value)
    assert len(str(excinfo.value)) < 400


@respx.mock
def test_registry_warning_headers_are_shown(caplog: pytest.LogCaptureFixture) -> None:
    respx.head(f"{BASE}/app/manifests/latest").respond(
        200,
        headers={
            "Docker-Content-Digest": MANIFEST_DIGEST,
            "Content-Length": str(len(MANIFEST)),
            "Content-Type": DOCKER_MANIFEST,
            "Warning": '299 - "this repository is deprecated"',
        },
    )

    async def go() -> object:
        async with client() as c:
            return await c.head_manifest("app", "latest")

    with caplog.at_level(logging.WARNING, logger="pushmanifest"):
        run(go())
    assert "this repository is deprecated" in caplog.text


@respx.mock
def test_nothing_is_written_when_a_source_is_missing() -> None:
    headers = {
        "Docker-Content-Digest": MANIFEST_DIGEST,
        "Content-Length": str(len(MANIFEST)),
        "Content-Type": DOCKER_MANIFEST,
    }
    respx.head(f"{BASE}/app/manifests/amd64").respond(200, headers=headers)
    respx.head(f"{BASE}/app/manifests/arm64").respond(404)
    respx.head(f"{BASE}/app/manifests/riscv64").respond(404)
    respx.head(f"{BASE}/app/manifests/latest").respond(404)
    put = respx.put(url__regex=r".*").respond(201)
    spec = load_spec_text(
        f"""
image: {HOST}/app:latest
manifests:
  - {{image: {HOST}/app:amd64, platform: {{os: linux, architecture: amd64}}}}
  - {{image: {HOST}/app:arm64, platform: {{os: linux, architecture: arm64}}}}
  - {{image: {HOST}/app:riscv64, platform: {{os: linux, architecture: riscv64}}}}
"""
    )
    with pytest.raises(MissingSourcesError) as excinfo:
        push(spec, PushOptions())
    assert put.call_count == 0
    assert excinfo.value.missing == [f"{HOST}/app:arm64", f"{HOST}/app:riscv64"]


def test_sync_push_refuses_a_running_loop() -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="push_async"):
            push([], PushOptions())

    asyncio.run(inside())


@respx.mock
def test_connection_refused_is_one_clear_line() -> None:
    respx.head(f"{BASE}/app/manifests/latest").mock(
        side_effect=httpx.ConnectError("All connection attempts failed")
    )

    async def go() -> object:
        async with client() as c:
            return await c.head_manifest("app", "latest")

    with pytest.raises(RegistryError, match=f"cannot resolve {HOST}/app:latest"):
        run(go())
