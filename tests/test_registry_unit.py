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
    kwargs.setdefault("backoff", 0.001)
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
    # A registry without auth on /v2/ (the token dance is tested in test_auth_token).
    ping = respx.get(f"{BASE}/").respond(200)

    async def go() -> object:
        c = RegistryClient(
            HOST, credentials=Credentials(username="bob", password="hunter2"), options=None
        )
        async with c:
            return await c.put_manifest("alice/app", "latest", b"{}", DOCKER_MANIFEST_LIST)

    with pytest.raises(AuthenticationError) as excinfo:
        run(go())
    message = str(excinfo.value)
    assert message == (
        f"denied: user 'bob' may not push to {HOST}/alice/app:latest "
        "(requested access to the resource is denied)"
    )
    assert "hunter2" not in message
    assert ping.call_count == 1


@respx.mock
def test_error_bodies_that_are_not_json_are_truncated() -> None:
    respx.put(f"{BASE}/app/manifests/latest").respond(502, text="<html>" + "x" * 5000)

    async def go() -> object:
        async with client(retries=1) as c:
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
    # The first missing source is confirmed by one GET (some caches answer HEAD with 404:
    # test_quirks); that GET says 404 too, so the registry's other 404s are trusted.
    gets = respx.get(url__regex=r".*/manifests/(arm64|riscv64)$").respond(404)
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
    assert gets.call_count == 1
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


HEAD_OK = {
    "Docker-Content-Digest": MANIFEST_DIGEST,
    "Content-Length": str(len(MANIFEST)),
    "Content-Type": DOCKER_MANIFEST,
}


@respx.mock
def test_throttling_and_gateway_errors_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    route = respx.head(f"{BASE}/app/manifests/latest")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
        httpx.ConnectError("reset"),
        httpx.Response(200, headers=HEAD_OK),
    ]

    async def go() -> object:
        async with client() as c:
            return await c.head_manifest("app", "latest")

    with caplog.at_level(logging.WARNING, logger="pushmanifest"):
        descriptor = run(go())
    assert descriptor.digest == MANIFEST_DIGEST  # type: ignore[attr-defined]
    assert route.call_count == 4
    assert "HTTP 429; retry 1 of 4" in caplog.text
    assert "HTTP 503; retry 2 of 4" in caplog.text


@respx.mock
def test_retries_run_out_with_a_clear_error() -> None:
    route = respx.put(f"{BASE}/app/manifests/latest").respond(503)

    async def go() -> object:
        async with client(retries=3) as c:
            return await c.put_manifest("app", "latest", b"{}", DOCKER_MANIFEST_LIST)

    with pytest.raises(RegistryError, match="HTTP 503"):
        run(go())
    assert route.call_count == 3


@respx.mock
def test_client_errors_are_not_retried() -> None:
    route = respx.put(f"{BASE}/app/manifests/latest").respond(
        400, json={"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid"}]}
    )

    async def go() -> object:
        async with client() as c:
            return await c.put_manifest("app", "latest", b"{}", DOCKER_MANIFEST_LIST)

    with pytest.raises(RegistryError, match="manifest_invalid: HTTP 400"):
        run(go())
    assert route.call_count == 1


def test_retry_after_forms() -> None:
    from pushmanifest.registry import _retry_after

    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@respx.mock
def test_429_names_the_rate_limit_and_how_to_raise_it() -> None:
    respx.head(f"{BASE}/library/app/manifests/latest").respond(
        429,
        headers={"ratelimit-limit": "100;w=21600", "x-ratelimit-remaining": "0;w=21600"},
        json={
            "errors": [
                {"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}
            ]
        },
    )

    async def go() -> object:
        async with client(retries=1) as c:
            return await c.head_manifest("library/app", "latest")

    with pytest.raises(RegistryError) as excinfo:
        run(go())
    message = str(excinfo.value)
    assert "too many requests (429)" in message
    assert "0 of 100 pulls left per 6 h" in message
    assert "logging in raises the limit" in message


@respx.mock
def test_429_without_a_quota_does_not_promise_one_for_logging_in() -> None:
    respx.head(f"{BASE}/library/app/manifests/latest").respond(429)

    async def go() -> object:
        async with client(retries=1) as c:
            return await c.head_manifest("library/app", "latest")

    with pytest.raises(RegistryError) as excinfo:
        run(go())
    assert "too many requests (429)" in str(excinfo.value)
    assert "logging in" not in str(excinfo.value)


def test_rate_limit_header_forms() -> None:
    from pushmanifest.registry import rate_limit

    assert rate_limit(httpx.Headers({})) is None
    limit = rate_limit(httpx.Headers({"x-ratelimit-limit": "200", "x-ratelimit-remaining": "7"}))
    assert limit is not None and str(limit) == "7 of 200 pulls left"
    assert rate_limit(httpx.Headers({"ratelimit-limit": "x", "ratelimit-remaining": "1"})) is None


@pytest.mark.parametrize(
    "path",
    [
        "team/app/manifests/v1.2-rc_3",
        "a/b/c/manifests/sha256:" + "0f" * 32,
        "x/blobs/uploads/",
        "library/alpine/referrers/sha256:" + "ab" * 32,
        # Not plain: left to httpx's parse (quoting, dot segments, a query).
        "a/../b/manifests/t",
        "a/./b",
        "a/%41/manifests/t",
        "a b/manifests/t",
        "a/manifests/t?x=1",
        "é/manifests/t",
    ],
)
@pytest.mark.parametrize("registry", ["127.0.0.1:5000", "registry.example:443", "[::1]:5000"])
def test_a_request_url_is_the_url_httpx_parses(registry: str, path: str) -> None:
    """CPU per request (issue 12): a registry's request URLs are made from its parsed /v2/ URL,
    not parsed each time; each is the URL httpx makes of the string."""

    async def go() -> None:
        async with client(plain_http=True) as connection:
            connection.host = registry
            url = connection._url(path)
            made = httpx.URL(connection._parsed_url(url))
            assert made == httpx.URL(url)
            assert str(made) == str(httpx.URL(url))
            built = connection._client.build_request("HEAD", made).url
            parsed = connection._client.build_request("HEAD", url).url
            assert (built.raw_host, built.port, built.raw_path) == (
                parsed.raw_host,
                parsed.port,
                parsed.raw_path,
            )

    run(go())
