"""The referrers API's answers a real registry will not give on demand, from a hostile server
(``support.hostile``): no API, pages, a next page on another host, endless pages, a malformed
index, more referrers than are copied along. Each is None (no API), the pages joined, or one
clear error; nothing is written when discovery fails.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Optional

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec, RegistryClient, RegistryError
from pushmanifest.pusher import MAX_REFERRERS
from support.hostile import HostileServer, Reply, Request, registry_route
from support.images import build_image, head_manifest, sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "ab" * 32
FAST = ClientOptions(plain_http=True, backoff=0.01, retries=1)


def index(*digests: str) -> bytes:
    entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": 10} for d in digests]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


def fake(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def referrers_route(answer: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
    def route(request: Request) -> Reply:
        if request.path == "/v2/":
            return Reply(200, {"content-type": "application/json"}, b"{}")
        return answer(request)

    return route


def get_referrers(host: str) -> Optional[list[Any]]:
    async def run() -> Optional[list[Any]]:
        async with RegistryClient(host, options=FAST) as client:
            return await client.get_referrers("x/app", DIGEST)

    return asyncio.run(run())


@pytest.mark.parametrize(
    "reply",
    [
        Reply(404, {"content-type": "text/plain"}, b"404 page not found\n"),
        Reply(405, {"content-type": "text/plain"}, b""),
        Reply(403, {"content-type": "application/json"}, b'{"errors":[{"code":"DENIED"}]}'),
        Reply(400, {"content-type": "text/plain"}, b"unsupported"),
        Reply(200, {"content-type": "text/html"}, b"<html>a portal</html>"),
    ],
    ids=["404", "405", "403", "400", "html"],
)
def test_no_referrers_api_is_none(reply: Reply) -> None:
    with HostileServer(referrers_route(lambda r: reply)) as server:
        assert get_referrers(server.host) is None


def test_pages_are_joined() -> None:
    def answer(request: Request) -> Reply:
        headers = {"content-type": OCI_INDEX}
        if "page=2" not in request.path:
            headers["link"] = f'</v2/x/app/referrers/{DIGEST}?page=2>; rel="next"'
            return Reply(200, headers, index(fake(1)))
        return Reply(200, headers, index(fake(2)))

    with HostileServer(referrers_route(answer)) as server:
        found = get_referrers(server.host)
    assert [d["digest"] for d in found or []] == [fake(1), fake(2)]


def test_a_next_page_on_another_host_is_refused() -> None:
    with HostileServer(referrers_route(lambda r: Reply(200, {}, b""))) as elsewhere:
        link = f'<http://{elsewhere.host}/v2/x/app/referrers/{DIGEST}?page=2>; rel="next"'
        reply = Reply(200, {"content-type": OCI_INDEX, "link": link}, index(fake(1)))
        refused = pytest.raises(RegistryError, match="next page is on another server")
        with HostileServer(referrers_route(lambda r: reply)) as server, refused:
            get_referrers(server.host)
        assert elsewhere.requests == []  # our credentials never went there


def test_endless_pages_are_bounded() -> None:
    link = f'</v2/x/app/referrers/{DIGEST}?again=1>; rel="next"'
    reply = Reply(200, {"content-type": OCI_INDEX, "link": link}, index(fake(1)))
    with HostileServer(referrers_route(lambda r: reply)) as server:
        with pytest.raises(RegistryError, match="more than 8 pages"):
            get_referrers(server.host)
        assert len(server.requests) == 1 + 8  # the ping, 8 pages


def test_an_index_without_manifests_is_an_error() -> None:
    reply = Reply(200, {"content-type": OCI_INDEX}, b'{"schemaVersion": 2}')
    refused = pytest.raises(RegistryError, match="without 'manifests'")
    with HostileServer(referrers_route(lambda r: reply)) as server, refused:
        get_referrers(server.host)


def test_more_referrers_than_copied_along_stops_before_writing(open_registry: Any) -> None:
    manifest, media_type, platform, blobs = build_image(oci=True)
    image = registry_route("src/app", manifest, media_type, blobs)
    many = index(*(fake(n) for n in range(MAX_REFERRERS + 1)))

    def route(request: Request) -> Reply:
        if "/referrers/" in request.path:
            return Reply(200, {"content-type": OCI_INDEX}, many)
        return image(request)

    with HostileServer(route) as source:
        spec = ManifestListSpec(
            image=f"{open_registry.host}/edges/too-many:1",
            manifests=[{"image": f"{source.host}/src/app:latest", "platform": platform}],
        )
        with pytest.raises(RegistryError, match=r"101 referrers.*--no-referrers"):
            pushmanifest.push(spec, client=FAST)
        # Nothing was written: not the image, not the list.
        assert head_manifest(open_registry, "edges/too-many", sha256(manifest)) is None
        assert head_manifest(open_registry, "edges/too-many", "1") is None
        # Without referrers the same push goes through, and asks nothing about them.
        before = len(source.requests)
        [result] = pushmanifest.push(spec, client=FAST, referrers=False)
        assert result.referrers == ()
        asked = [r.path for r in source.requests[before:]]
        assert asked and not any("/referrers/" in p or "sha256-" in p for p in asked), asked
