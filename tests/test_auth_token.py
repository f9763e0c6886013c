from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from pushmanifest.auth import (
    Credentials,
    Secret,
    TokenAuth,
    covers_scopes,
    normalize_scopes,
)
from pushmanifest.auth.tokenanswer import _parse_rfc3339
from pushmanifest.errors import AuthenticationError, NetworkError

T = TypeVar("T")

REGISTRY = "https://registry.example.com"
REALM = "https://auth.example.com/token"
SERVICE = "registry.example.com"
PASSWORD = "correct-horse-battery-staple"


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def basic_of(request: httpx.Request) -> Optional[tuple[str, str]]:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


class FakeRegistry:
    """A registry doing token auth (or Basic) and its token server, on respx routes.

    Tokens are ``tok-N``; each grants the scopes it was asked for, so the registry can answer
    ``insufficient_scope`` like the real one.
    """

    def __init__(
        self,
        *,
        registry: str = REGISTRY,
        realm: str = REALM,
        service: str = SERVICE,
        users: Optional[dict[str, str]] = None,
        basic_only: bool = False,
    ) -> None:
        self.registry = registry
        self.realm = realm
        self.service = service
        self.users = users if users is not None else {"alice": PASSWORD}
        self.basic_only = basic_only
        self.tokens: dict[str, list[str]] = {}
        self.token_calls: list[httpx.Request] = []
        self.registry_calls: list[httpx.Request] = []
        self.token_body: Callable[[str], dict[str, Any]] = lambda token: {
            "token": token,
            "expires_in": 300,
        }
        self.router = respx.MockRouter(assert_all_called=False)
        self.token_route = self.router.route(url__startswith=realm.split("?")[0]).mock(
            side_effect=self._token
        )
        self.registry_route = self.router.route(url__startswith=registry + "/").mock(
            side_effect=self._registry
        )

    def client(self, auth: TokenAuth) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            auth=auth, transport=httpx.MockTransport(self.router.async_handler)
        )

    def sync_client(self, auth: TokenAuth) -> httpx.Client:
        return httpx.Client(auth=auth, transport=httpx.MockTransport(self.router.handler))

    # -- token server ------------------------------------------------------------------------

    def slow_down(self, seconds: float) -> None:
        """Make the token server take ``seconds`` (async clients only)."""

        async def slow(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(seconds)
            return self._token(request)

        self.token_route.mock(side_effect=slow)

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_calls.append(request)
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            scopes = form.get("scope", [""])[0].split()
        else:
            scopes = request.url.params.get_list("scope")
            basic = basic_of(request)
            if basic is not None and self.users.get(basic[0]) != basic[1]:
                return httpx.Response(401, json={"details": "incorrect username or password"})
        token = f"tok-{len(self.token_calls)}"
        self.tokens[token] = scopes
        return httpx.Response(200, json=self.token_body(token))

    # -- registry ----------------------------------------------------------------------------

    def _needed(self, request: httpx.Request) -> str:
        path = request.url.path
        if "/manifests/" not in path:
            return ""
        repository = path[len("/v2/") : path.index("/manifests/")]
        action = "push" if request.method in ("PUT", "POST", "PATCH") else "pull"
        return f"repository:{repository}:{action}"

    def _registry(self, request: httpx.Request) -> httpx.Response:
        self.registry_calls.append(request)
        needed = self._needed(request)
        header = request.headers.get("Authorization", "")
        if self.basic_only:
            basic = basic_of(request)
            if basic is not None and self.users.get(basic[0]) == basic[1]:
                return httpx.Response(200, json={})
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        challenge = f'Bearer realm="{self.realm}",service="{self.service}"'
        if needed:
            challenge += f',scope="{needed}"'
        if header.startswith("Bearer "):
            granted = self.tokens.get(header[7:])
            if granted is None:
                return httpx.Response(
                    401, headers={"WWW-Authenticate": challenge + ',error="invalid_token"'}
                )
            if not needed or self._grants(granted, needed):
                return httpx.Response(200, json={})
            return httpx.Response(
                401, headers={"WWW-Authenticate": challenge + ',error="insufficient_scope"'}
            )
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    @staticmethod
    def _grants(granted: Iterable[str], needed: str) -> bool:
        kind, rest = needed.split(":", 1)
        name, action = rest.rsplit(":", 1)
        for scope in granted:
            g_kind, g_rest = scope.split(":", 1)
            g_name, g_actions = g_rest.rsplit(":", 1)
            if (g_kind, g_name) == (kind, name) and action in g_actions.split(","):
                return True
        return False

    def statuses(self) -> list[int]:
        return [
            call.response.status_code
            for call in self.registry_route.calls  # type: ignore[union-attr]
        ]


def manifest(repo: str) -> str:
    return f"{REGISTRY}/v2/{repo}/manifests/latest"


# -- scopes ----------------------------------------------------------------------------------


def test_normalize_scopes() -> None:
    assert normalize_scopes(
        ["repository:a:pull", "repository:a:pull,push", " ", "repository:b:pull", "opaque"]
    ) == frozenset({"repository:a:pull,push", "repository:b:pull", "opaque"})
    assert normalize_scopes(["repository:a:push", "repository:a:pull"]) == frozenset(
        {"repository:a:pull,push"}
    )
    assert normalize_scopes(["repository:localhost:5000/x:pull"]) == frozenset(
        {"repository:localhost:5000/x:pull"}
    )


def test_covers_scopes() -> None:
    have = {"repository:a:pull,push", "repository:b:*", "registry:catalog:*"}
    assert covers_scopes(have, {"repository:a:pull"})
    assert covers_scopes(have, {"repository:a:push,pull", "repository:b:delete"})
    assert covers_scopes(have, set())
    assert not covers_scopes(have, {"repository:c:pull"})
    assert not covers_scopes({"repository:a:pull"}, {"repository:a:pull,push"})
    assert covers_scopes({"opaque"}, {"opaque"})
    assert not covers_scopes(set(), {"opaque"})


def test_parse_rfc3339() -> None:
    assert _parse_rfc3339("1970-01-01T00:00:00Z") == 0
    assert _parse_rfc3339("2009-11-10T23:00:00.123456789Z") == pytest.approx(1257894000.123456789)
    assert _parse_rfc3339("2009-11-10T23:00:00+01:00") == 1257894000 - 3600
    assert _parse_rfc3339("2009-11-10T23:00:00-00:30") == 1257894000 + 1800
    for bad in ("", "yesterday", "2009-13-45T99:00:00Z", None, 12):
        assert _parse_rfc3339(bad) is None


# -- the bearer dance ------------------------------------------------------------------------


def test_challenge_then_token_then_retry() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None)

    async def go() -> None:
        async with fake.client(auth) as client:
            response = await client.get(manifest("alice/app"))
            assert response.status_code == 200

    run(go())
    assert fake.statuses() == [401, 200]
    assert auth.token_requests == 1
    (call,) = fake.token_calls
    assert call.method == "GET"
    assert call.url.params.get_list("service") == [SERVICE]
    assert call.url.params.get_list("scope") == ["repository:alice/app:pull"]
    assert "account" not in call.url.params
    assert "Authorization" not in call.headers  # anonymous


def test_second_request_carries_the_token() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None)

    async def go() -> None:
        async with fake.client(auth) as client:
            await client.get(manifest("alice/app"))
            for _ in range(3):
                assert (await client.get(manifest("alice/app"))).status_code == 200

    run(go())
    assert fake.statuses() == [401, 200, 200, 200, 200]
    assert auth.token_requests == 1


def test_prime_fetches_every_registered_scope_once() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None, scopes=["repository:b/one:pull"])
    auth.add_scopes(
        ["repository:a/two:pull,push", "repository:b/one:pull", "repository:a/two:pull"]
    )

    async def go() -> None:
        async with fake.client(auth) as client:
            ping = await client.get(f"{REGISTRY}/v2/", auth=None)
            assert ping.status_code == 401
            await auth.prime(client, ping)
            await auth.prime(client, ping)  # cached: no second request
            results = await asyncio.gather(
                client.get(manifest("b/one")),
                client.get(manifest("a/two")),
                client.put(manifest("a/two"), content=b"{}"),
            )
            assert [r.status_code for r in results] == [200, 200, 200]

    run(go())
    assert auth.token_requests == 1
    (call,) = fake.token_calls
    # Deduplicated (pull is part of pull,push) and sorted.
    assert call.url.params.get_list("scope") == [
        "repository:a/two:pull,push",
        "repository:b/one:pull",
    ]
    assert fake.statuses() == [401, 200, 200, 200]  # the ping, then no 401 at all


def test_prime_on_200_does_nothing() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None, scopes=["repository:a:pull"])
    fake.registry_route.mock(return_value=httpx.Response(200))

    async def go() -> None:
        async with fake.client(auth) as client:
            ping = await client.get(f"{REGISTRY}/v2/", auth=None)
            await auth.prime(client, ping)
            assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    assert auth.token_requests == 0
    assert "Authorization" not in fake.registry_route.calls[-1].request.headers  # type: ignore[union-attr]


def test_prime_without_scopes_waits_for_the_first_request() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None)

    async def go() -> None:
        async with fake.client(auth) as client:
            ping = await client.get(f"{REGISTRY}/v2/", auth=None)
            await auth.prime(client, ping)
            assert auth.token_requests == 0
            assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    assert auth.token_requests == 1


def test_single_flight_twenty_concurrent_requests() -> None:
    fake = FakeRegistry()
    fake.slow_down(0.05)
    auth = TokenAuth(None)

    async def go() -> None:
        async with fake.client(auth) as client:
            results = await asyncio.gather(*(client.get(manifest("a/b")) for _ in range(20)))
            assert all(r.status_code == 200 for r in results)

    run(go())
    assert auth.token_requests == 1
    assert len(fake.token_calls) == 1


def test_single_flight_on_expiry_and_proactive_renewal() -> None:
    fake = FakeRegistry()
    fake.slow_down(0.02)
    clock = FakeClock()
    auth = TokenAuth(None, scopes=["repository:a/b:pull"], clock=clock)

    async def go() -> None:
        async with fake.client(auth) as client:
            ping = await client.get(f"{REGISTRY}/v2/", auth=None)
            await auth.prime(client, ping)
            clock.now += 1000  # long expired
            results = await asyncio.gather(*(client.get(manifest("a/b")) for _ in range(20)))
            assert all(r.status_code == 200 for r in results)

    run(go())
    assert auth.token_requests == 2
    # Renewed up front: not one of the 20 paid a 401.
    assert fake.statuses() == [401] + [200] * 20


def test_sync_client_flow() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)))
    with fake.sync_client(auth) as client:
        assert client.get(manifest("alice/app")).status_code == 200
        assert client.put(manifest("alice/app"), content=b"{}").status_code == 200
        assert client.put(manifest("alice/app"), content=b"{}").status_code == 200
    # GET: 401 + 200; PUT: 401 (push scope missing) + 200; PUT: 200 with the new token.
    assert fake.statuses() == [401, 200, 401, 200, 200]
    assert auth.token_requests == 2
    assert fake.token_calls[1].url.params.get_list("scope") == ["repository:alice/app:pull,push"]


def test_sync_single_flight_threads() -> None:
    import concurrent.futures

    fake = FakeRegistry()
    auth = TokenAuth(None, scopes=["repository:a:pull"])
    with fake.sync_client(auth) as client:
        client.get(manifest("a"))  # learn the challenge
        assert auth.token_requests == 1
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: client.get(manifest("a")).status_code, range(16)))
    assert codes == [200] * 16
    assert auth.token_requests == 1


# -- caching and expiry ----------------------------------------------------------------------


def _requests_at(times: list[float], body: Callable[[str, float], dict[str, Any]]) -> int:
    fake = FakeRegistry()
    clock = FakeClock(0)
    fake.token_body = lambda token: body(token, clock.now)
    auth = TokenAuth(None, scopes=["repository:a:pull"], clock=clock)

    async def go() -> None:
        async with fake.client(auth) as client:
            for moment in times:
                clock.now = moment
                assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    return auth.token_requests


def test_token_reused_until_shortly_before_expiry() -> None:
    def body(token: str, now: float) -> dict[str, Any]:
        return {"token": token, "expires_in": 300}

    assert _requests_at([0, 100, 289], body) == 1
    assert _requests_at([0, 291], body) == 2  # inside the 10 s margin
    assert _requests_at([0, 400], body) == 2


def test_default_lifetime_is_60s() -> None:
    def body(token: str, now: float) -> dict[str, Any]:
        return {"access_token": token}

    assert _requests_at([0, 50], body) == 1
    assert _requests_at([0, 55], body) == 2


def test_issued_at_shortens_the_lifetime() -> None:
    def body(token: str, now: float) -> dict[str, Any]:
        # Issued 100 s ago by the server's clock, valid for 300 s: 200 s left.
        return {"token": token, "expires_in": 300, "issued_at": _rfc3339(now - 100)}

    assert _requests_at([0, 150], body) == 1
    assert _requests_at([0, 195], body) == 2


def test_implausible_issued_at_is_ignored() -> None:
    def body(token: str, now: float) -> dict[str, Any]:
        # The server clock is a day behind: trusting it would expire every token at birth.
        return {"token": token, "expires_in": 300, "issued_at": _rfc3339(now - 86400)}

    assert _requests_at([0, 100, 200], body) == 1


def test_bad_expires_in_means_default() -> None:
    def body(token: str, now: float) -> dict[str, Any]:
        return {"token": token, "expires_in": "soon", "issued_at": "not a date"}

    assert _requests_at([0, 45], body) == 1
    assert _requests_at([0, 60], body) == 2


def _rfc3339(stamp: float) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def test_superset_token_is_reused() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None, scopes=["repository:a:pull,push", "repository:b:pull"])

    async def go() -> None:
        async with fake.client(auth) as client:
            ping = await client.get(f"{REGISTRY}/v2/", auth=None)
            await auth.prime(client, ping)
            assert (await client.get(manifest("a"))).status_code == 200
            assert (await client.get(manifest("b"))).status_code == 200

    run(go())
    assert auth.token_requests == 1


def test_new_scope_from_challenge_gets_a_bigger_token() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None, scopes=["repository:a:pull"])

    async def go() -> None:
        async with fake.client(auth) as client:
            await auth.prime(client, await client.get(f"{REGISTRY}/v2/", auth=None))
            assert (await client.get(manifest("other"))).status_code == 200
            assert (await client.get(manifest("a"))).status_code == 200
            assert (await client.get(manifest("other"))).status_code == 200

    run(go())
    assert auth.token_requests == 2
    assert fake.token_calls[1].url.params.get_list("scope") == [
        "repository:a:pull",
        "repository:other:pull",
    ]
    assert fake.statuses() == [401, 401, 200, 200, 200]


def test_refused_with_a_fresh_token_does_not_loop() -> None:
    fake = FakeRegistry()
    # The token server grants nothing, whatever we ask (no push right, say).
    original = fake._token

    def stingy(request: httpx.Request) -> httpx.Response:
        response = original(request)
        token = json.loads(response.content)["token"]
        fake.tokens[token] = []
        return response

    fake.token_route.mock(side_effect=stingy)
    auth = TokenAuth(None)

    async def go() -> None:
        async with fake.client(auth) as client:
            first = await client.put(manifest("a"), content=b"{}")
            second = await client.put(manifest("a"), content=b"{}")
            assert first.status_code == second.status_code == 401

    run(go())
    # First: 401 -> token -> retry -> 401, returned. Second: token up front -> 401, returned.
    assert auth.token_requests == 1
    assert fake.statuses() == [401, 401, 401]


def test_invalid_token_gets_one_fresh_token() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(None, scopes=["repository:a:pull"])

    async def go() -> None:
        async with fake.client(auth) as client:
            assert (await client.get(manifest("a"))).status_code == 200
            fake.tokens.clear()  # the registry forgets (revokes) every token
            assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    assert auth.token_requests == 2
    assert fake.statuses() == [401, 200, 401, 200]


# -- credentials at the token server ---------------------------------------------------------


def test_basic_credentials_and_account_at_the_token_server() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)))

    async def go() -> None:
        async with fake.client(auth) as client:
            assert (await client.get(manifest("alice/app"))).status_code == 200

    run(go())
    (call,) = fake.token_calls
    assert basic_of(call) == ("alice", PASSWORD)
    assert call.url.params["account"] == "alice"
    # The registry only ever sees the token, never the password.
    for request in fake.registry_calls:
        assert not request.headers.get("Authorization", "").startswith("Basic")


def test_refused_credentials_clear_error_without_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeRegistry(realm="http://127.0.0.1:5001/token")
    fake.router.route(url__startswith="http://127.0.0.1:5001/").mock(side_effect=fake._token)
    auth = TokenAuth(Credentials(username="bob", password=Secret(PASSWORD)))

    async def go() -> None:
        async with fake.client(auth) as client:
            await client.get(manifest("a"))

    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        run(go())
    message = str(info.value)
    assert message == (
        "authentication failed: 127.0.0.1:5001 refused the credentials of user 'bob' "
        "(incorrect username or password)"
    )
    assert info.value.user == "bob" and info.value.status == 401
    assert PASSWORD not in message and PASSWORD not in caplog.text
    assert base64.b64encode(f"bob:{PASSWORD}".encode()).decode() not in caplog.text


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"details": "incorrect username or password"},
            "refused an anonymous token request (incorrect username or password)",
        ),
        (
            403,
            {"errors": [{"code": "DENIED", "message": "access denied"}]},
            "refused an anonymous token request (access denied)",
        ),
        (
            401,
            {"error": "invalid_grant", "error_description": "bad refresh"},
            "refused an anonymous token request (bad refresh)",
        ),
        (401, "plain\ntext  reason", "refused an anonymous token request (plain text reason)"),
        (500, "boom", "token request to auth.example.com answered HTTP 500 (boom)"),
        (502, "", "token request to auth.example.com answered HTTP 502"),
    ],
)
def test_token_server_errors(status: int, body: Any, expected: str) -> None:
    fake = FakeRegistry()
    if isinstance(body, str):
        response = httpx.Response(status, text=body)
    else:
        response = httpx.Response(status, json=body)
    fake.token_route.mock(return_value=response)
    auth = TokenAuth(None)

    async def go() -> None:
        async with fake.client(auth) as client:
            await client.get(manifest("a"))

    with pytest.raises(AuthenticationError) as info:
        run(go())
    assert str(info.value) == f"authentication failed: auth.example.com {expected}".replace(
        "auth.example.com token request to auth.example.com", "token request to auth.example.com"
    )
    assert info.value.status == status


def test_long_error_body_is_truncated() -> None:
    fake = FakeRegistry()
    fake.token_route.mock(return_value=httpx.Response(401, text="x" * 5000))

    async def go() -> None:
        async with fake.client(TokenAuth(None)) as client:
            await client.get(manifest("a"))

    with pytest.raises(AuthenticationError) as info:
        run(go())
    assert len(str(info.value)) < 300
    assert str(info.value).endswith("...)")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json={"nothing": "here"}),
        httpx.Response(200, json=["token"]),
        httpx.Response(200, json={"token": 42}),
    ],
)
def test_token_response_without_token(response: httpx.Response) -> None:
    fake = FakeRegistry()
    fake.token_route.mock(return_value=response)

    async def go() -> None:
        async with fake.client(TokenAuth(None)) as client:
            await client.get(manifest("a"))

    with pytest.raises(AuthenticationError, match="answered without a token"):
        run(go())


def test_identity_token_uses_oauth2_post() -> None:
    fake = FakeRegistry()
    creds = Credentials(username="alice", identity_token=Secret("refresh-123"))
    auth = TokenAuth(creds, scopes=["repository:b:pull", "repository:a:pull,push"])

    async def go() -> None:
        async with fake.client(auth) as client:
            await auth.prime(client, await client.get(f"{REGISTRY}/v2/", auth=None))
            assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    (call,) = fake.token_calls
    assert call.method == "POST"
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in call.headers
    form = parse_qs(call.content.decode())
    assert form == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-123"],
        "client_id": ["pushmanifest"],
        "service": [SERVICE],
        "scope": ["repository:a:pull,push repository:b:pull"],
    }


@pytest.mark.parametrize("status", [404, 405])
def test_identity_token_falls_back_to_get(status: int) -> None:
    fake = FakeRegistry(users={"alice": "refresh-123"})
    fake.router.routes.clear()
    post = fake.router.post(REALM).mock(return_value=httpx.Response(status))
    get = fake.router.get(url__startswith=REALM).mock(side_effect=fake._token)
    fake.router.route(url__startswith=REGISTRY + "/").mock(side_effect=fake._registry)
    auth = TokenAuth(Credentials(username="alice", identity_token=Secret("refresh-123")))

    async def go() -> None:
        async with fake.client(auth) as client:
            assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    assert post.call_count == 1 and get.call_count == 1
    assert auth.token_requests == 2
    request = get.calls[0].request  # type: ignore[union-attr]
    assert basic_of(request) == ("alice", "refresh-123")
    assert request.url.params["account"] == "alice"


def test_registry_token_is_sent_directly() -> None:
    fake = FakeRegistry()
    fake.tokens["static-tok"] = ["repository:a:pull"]
    auth = TokenAuth(Credentials(registry_token=Secret("static-tok")))

    async def go() -> None:
        async with fake.client(auth) as client:
            assert (await client.get(manifest("a"))).status_code == 200
            assert (await client.get(manifest("a"))).status_code == 200
            # Not enough for this one: no token request can help, the 401 comes back.
            assert (await client.put(manifest("a"), content=b"")).status_code == 401

    run(go())
    assert auth.token_requests == 0
    assert fake.statuses() == [401, 200, 200, 401]
    assert fake.registry_calls[1].headers["Authorization"] == "Bearer static-tok"


# -- Basic -----------------------------------------------------------------------------------


def test_basic_challenge() -> None:
    fake = FakeRegistry(basic_only=True)
    auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)))

    async def go() -> None:
        async with fake.client(auth) as client:
            ping = await client.get(f"{REGISTRY}/v2/", auth=None)
            await auth.prime(client, ping)
            assert (await client.get(manifest("a"))).status_code == 200
            assert (await client.get(manifest("a"))).status_code == 200

    run(go())
    assert fake.statuses() == [401, 200, 200]  # Basic from the start after the ping
    assert basic_of(fake.registry_calls[1]) == ("alice", PASSWORD)
    assert auth.token_requests == 0


def test_basic_challenge_wrong_password_returns_401_once() -> None:
    fake = FakeRegistry(basic_only=True)
    auth = TokenAuth(Credentials(username="alice", password=Secret("wrong")))

    async def go() -> None:
        async with fake.client(auth) as client:
            assert (await client.get(manifest("a"))).status_code == 401

    run(go())
    assert fake.statuses() == [401, 401]


def test_basic_challenge_anonymous_returns_401() -> None:
    fake = FakeRegistry(basic_only=True)

    async def go() -> None:
        async with fake.client(TokenAuth(None)) as client:
            assert (await client.get(manifest("a"))).status_code == 401

    run(go())
    assert fake.statuses() == [401]


# -- hygiene ---------------------------------------------------------------------------------


def test_no_credentials_over_plain_http_to_remote_hosts() -> None:
    fake = FakeRegistry(registry="http://registry.example.com", basic_only=True)
    creds = Credentials(username="alice", password=Secret(PASSWORD), source="--username")

    async def go(auth: TokenAuth) -> int:
        async with fake.client(auth) as client:
            return (await client.get("http://registry.example.com/v2/a/manifests/x")).status_code

    with pytest.raises(AuthenticationError) as info:
        run(go(TokenAuth(creds)))
    assert "plain HTTP" in str(info.value) and "user 'alice'" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert [c.headers.get("Authorization") for c in fake.registry_calls] == [None]

    assert run(go(TokenAuth(creds, allow_insecure_credentials=True))) == 200
    # Anonymous: nothing to protect.
    assert run(go(TokenAuth(None))) == 401


def test_no_credentials_to_plain_http_realm() -> None:
    fake = FakeRegistry(realm="http://auth.example.com/token")

    async def go() -> None:
        auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)))
        async with fake.client(auth) as client:
            await client.get(manifest("a"))

    with pytest.raises(AuthenticationError, match="plain HTTP"):
        run(go())
    assert fake.token_calls == []


def test_loopback_over_plain_http_is_fine() -> None:
    for host in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000"):
        fake = FakeRegistry(
            registry=f"http://{host}", realm=f"http://{host}/token", users={"u": "p"}
        )
        auth = TokenAuth(Credentials(username="u", password=Secret("p")))

        async def go(
            client_host: str = host, auth: TokenAuth = auth, fake: FakeRegistry = fake
        ) -> int:
            async with fake.client(auth) as client:
                return (await client.get(f"http://{client_host}/v2/a/manifests/x")).status_code

        assert run(go()) == 200, host


def test_authorization_only_to_the_host_that_challenged() -> None:
    fake = FakeRegistry()
    other_port = "https://registry.example.com:8443/v2/"
    other = fake.router.route(url__startswith="https://other.example.com/").mock(
        return_value=httpx.Response(200)
    )
    fake.router.routes.add(respx.Route(url__startswith=other_port), name="port")
    fake.router.routes["port"].mock(return_value=httpx.Response(200))
    auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)))

    async def go() -> None:
        async with fake.client(auth) as client:
            assert (await client.get(manifest("a"))).status_code == 200
            assert (await client.get("https://other.example.com/blob")).status_code == 200
            # Same host name, another port: another origin.
            assert (await client.get(other_port)).status_code == 200

    run(go())
    assert "Authorization" not in other.calls[0].request.headers  # type: ignore[union-attr]
    port_calls = fake.router.routes["port"].calls
    assert "Authorization" not in port_calls[0].request.headers  # type: ignore[union-attr]
    # The token server got the Basic credentials of the token request, and no token.
    for call in fake.token_calls:
        assert call.headers["Authorization"].startswith("Basic ")


def test_caller_authorization_is_left_alone() -> None:
    fake = FakeRegistry()

    async def go() -> None:
        async with fake.client(TokenAuth(None)) as client:
            response = await client.get(manifest("a"), headers={"Authorization": "Bearer mine"})
            assert response.status_code == 401

    run(go())
    assert fake.token_calls == []


def test_unusable_realm() -> None:
    fake = FakeRegistry(realm="ftp://auth.example.com/token")

    async def go() -> None:
        async with fake.client(TokenAuth(None)) as client:
            await client.get(manifest("a"))

    with pytest.raises(AuthenticationError, match="unusable realm"):
        run(go())


def test_debug_log_names_user_not_token(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeRegistry()
    auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)))

    async def go() -> None:
        async with fake.client(auth) as client:
            await client.get(manifest("a"))

    with caplog.at_level(logging.DEBUG):
        run(go())
    records = [r for r in caplog.records if r.name == "pushmanifest.auth"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert text == (f"token for {SERVICE} scopes ['repository:a:pull'] from {REALM} (user 'alice')")
    assert "tok-1" not in caplog.text
    assert PASSWORD not in caplog.text


def test_repr_hides_secrets() -> None:
    auth = TokenAuth(Credentials(username="alice", password=Secret(PASSWORD)), scopes=["x:y:z"])
    assert PASSWORD not in repr(auth)
    assert "alice" in repr(auth)


def test_resent_request_object_gets_a_fresh_token() -> None:
    fake = FakeRegistry()
    clock = FakeClock()
    auth = TokenAuth(None, scopes=["repository:a:pull"], clock=clock)

    async def go() -> None:
        async with fake.client(auth) as client:
            request = client.build_request("GET", manifest("a"))
            assert (await client.send(request)).status_code == 200
            clock.now += 1000
            fake.tokens.clear()
            # Sent again as is (a caller's retry): the stale header is ours, so it is replaced.
            assert (await client.send(request)).status_code == 200

    run(go())
    assert auth.token_requests == 2
    assert fake.statuses() == [401, 200, 200]
    assert fake.registry_calls[-1].headers["Authorization"] == "Bearer tok-2"


def test_prime_network_error_names_the_token_server() -> None:
    fake = FakeRegistry()
    fake.token_route.mock(side_effect=httpx.ConnectError("connection refused"))
    auth = TokenAuth(None, scopes=["repository:a:pull"])

    async def go() -> None:
        async with fake.client(auth) as client:
            await auth.prime(client, await client.get(f"{REGISTRY}/v2/", auth=None))

    with pytest.raises(NetworkError) as info:
        run(go())
    assert str(info.value) == (
        "cannot reach the token server auth.example.com: ConnectError (connection refused)"
    )


def test_401_after_redirect_to_another_host_is_not_ours() -> None:
    fake = FakeRegistry()
    fake.registry_route.mock(
        return_value=httpx.Response(307, headers={"Location": "https://storage.example.com/b"})
    )
    storage = fake.router.route(url__startswith="https://storage.example.com/").mock(
        return_value=httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://evil.example.com/t"'}
        )
    )

    async def go() -> None:
        async with httpx.AsyncClient(
            auth=TokenAuth(Credentials(username="alice", password=Secret(PASSWORD))),
            transport=httpx.MockTransport(fake.router.async_handler),
            follow_redirects=True,
        ) as client:
            assert (await client.get(manifest("a"))).status_code == 401

    run(go())
    assert storage.call_count == 1
    assert fake.token_calls == []
