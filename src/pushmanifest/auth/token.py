"""``TokenAuth``: the registry auth dance as an ``httpx.Auth``, with a shared token cache.

Registries answer an unauthenticated request with ``401`` and a challenge: ``Basic`` (send the
password) or ``Bearer realm=...,service=...,scope=...`` (get a token from the realm, then retry
with it). Paying that round trip on every request would double a push's requests, so:

* a host that challenged once gets its token (or Basic) attached up front from then on;
* one token covers every scope the run registered (:meth:`TokenAuth.add_scopes`), fetched once
  by :meth:`TokenAuth.prime` from the ping's 401;
* concurrent requests needing the same token wait for a single token request (single flight);
* a token is reused until shortly before it expires, then fetched again up front.

Secrets are only ever put in headers: they are not logged, not put in exceptions, not sent over
plain HTTP to a remote host unless the user allowed it, and not sent to a host that did not
challenge us (the token server gets the credentials it asked for, and nothing else).

Here: the decisions (one flow, no I/O) and the token cache. Elsewhere: scopes (:mod:`.scopes`),
reading and parsing a token answer (:mod:`.tokenanswer`), the two drivers (:mod:`.driving`).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any, Callable, Optional, Union

import httpx

from .._records import record
from ..errors import AuthenticationError, NetworkError
from .challenge import (
    MAX_CHALLENGES,
    MAX_HEADER_CHARS,
    Challenge,
    ChallengeLimitError,
    parse_www_authenticate,
)
from .credentials import Credentials
from .driving import Acquire, Flow, Read, drive_async, drive_sync
from .scopes import covers, covers_scopes, normalize_scopes
from .tokenanswer import (
    MAX_TOKEN_RESPONSE_BYTES,
    Token,
    cap_token_answer,
    netloc,
    one_line,
    parse_token,
)

# covers_scopes, normalize_scopes and MAX_TOKEN_RESPONSE_BYTES: importable from here as before.
__all__ = ["MAX_TOKEN_RESPONSE_BYTES", "TokenAuth", "covers_scopes", "normalize_scopes"]

log = logging.getLogger("pushmanifest.auth")

CLIENT_ID = "pushmanifest"
#: Request extension marking an Authorization header as set by us (not by the caller).
_MARK = "pushmanifest.auth"

Clock = Callable[[], float]
_Origin = tuple[str, str, int]
_Key = tuple[str, str, frozenset[str]]


# -- helpers ---------------------------------------------------------------------------------


def _origin(url: httpx.URL) -> _Origin:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host, port


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _basic(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@record(frozen=True)
class _HostAuth:
    """What a host asked for in its challenge."""

    scheme: str  # "bearer" or "basic"
    realm: str = ""
    service: str = ""


@record(frozen=True)
class _Plan:
    """What to attach to a request: Basic, the static registry token, or a token to obtain."""

    kind: str  # "basic", "static", "bearer"
    realm: str = ""
    service: str = ""
    scopes: frozenset[str] = frozenset()

    @property
    def key(self) -> _Key:
        return self.realm, self.service, self.scopes


_Used = Union[Token, str, None]  # the token attached, "basic", "static", or nothing


class TokenAuth(httpx.Auth):
    """Registry auth for one ``httpx`` client: Basic or Bearer tokens, cached and shared.

    ``clock`` returns the wall-clock time in seconds (token ``issued_at`` stamps are wall-clock);
    tests inject a fake one.
    """

    def __init__(
        self,
        credentials: Optional[Credentials],
        *,
        scopes: Iterable[str] = (),
        allow_insecure_credentials: bool = False,
        clock: Clock = time.time,
    ) -> None:
        self.credentials = (
            credentials if credentials is not None and not credentials.is_empty else None
        )
        self.allow_insecure_credentials = allow_insecure_credentials
        self.clock = clock
        #: Token requests sent so far (fallback requests included).
        self.token_requests = 0
        self._scopes: set[str] = set()
        self._normalized: Optional[frozenset[str]] = None
        self._hosts: dict[_Origin, _HostAuth] = {}
        self._tokens: dict[_Key, Token] = {}
        self._async_locks: dict[_Key, asyncio.Lock] = {}
        self._sync_locks: dict[_Key, threading.Lock] = {}
        self._mutex = threading.Lock()
        self.add_scopes(scopes)

    def __repr__(self) -> str:
        who = self.credentials.describe() if self.credentials else "anonymous"
        return f"TokenAuth({who}, scopes={sorted(self.scopes)!r})"

    # -- public ------------------------------------------------------------------------------

    @property
    def scopes(self) -> frozenset[str]:
        """Every scope the next token will ask for (registered, and learned from challenges)."""
        # Asked before every request: normalized once per change, not per request.
        with self._mutex:
            if self._normalized is None:
                self._normalized = normalize_scopes(self._scopes)
            return self._normalized

    def add_scopes(self, scopes: Iterable[str]) -> None:
        """Register scopes (``repository:alice/app:pull,push``) for the tokens to come."""
        if isinstance(scopes, str):
            scopes = [scopes]
        new = {s.strip() for s in scopes if s.strip()}
        with self._mutex:
            if not new <= self._scopes:
                self._scopes |= new
                self._normalized = None

    async def prime(self, client: httpx.AsyncClient, response: httpx.Response) -> None:
        """From the ping's response, get the token every registered scope needs, once.

        A 401 teaches us the host's challenge; afterwards every request to the host carries its
        token from the start. Any other response means the host wants no auth.
        """
        if response.status_code != 401:
            return
        origin_request = response.request
        plan = self._learn(_origin(origin_request.url), response, used=None)
        if plan is None or plan.kind != "bearer" or not plan.scopes:
            # Basic and static tokens need no request; with no scope registered there is no
            # token worth fetching yet (the first request's challenge will name its scope).
            return
        # The flow's own token steps, driven as the flows are; only the sending is ours.
        driver = drive_async(self._obtain(plan, origin_request), self._async_lock)
        try:
            token_request = await driver.__anext__()
            while True:
                token_response = await self._send_token_request(client, token_request)
                try:
                    token_request = await driver.asend(token_response)
                except httpx.TransportError as exc:  # while reading the answer
                    raise self._unreachable(token_request, exc) from exc
                finally:
                    await token_response.aclose()
        except StopAsyncIteration:
            return  # the token is cached (or was already)
        finally:
            await driver.aclose()

    async def _send_token_request(
        self, client: httpx.AsyncClient, request: httpx.Request
    ) -> httpx.Response:
        try:
            return await client.send(request, auth=None, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(request, exc) from exc

    def _unreachable(self, request: httpx.Request, exc: Exception) -> NetworkError:
        where = netloc(request.url)
        return NetworkError(
            f"cannot reach the token server {where}: {type(exc).__name__}"
            + (f" ({one_line(str(exc))})" if str(exc) else ""),
            operation="authenticate",
            image=where,
            user=self._user,
        )

    # -- the flow ----------------------------------------------------------------------------
    #
    # One generator, _flow, decides everything: what to attach, when a token is needed, what a
    # 401 means. It does no I/O and never blocks: it yields the requests to send and the waits
    # (a lock, a read) that a driver does (see .driving): drive_async for httpx.AsyncClient,
    # drive_sync for httpx.Client.

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return drive_async(self._flow(request), self._async_lock)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        return drive_sync(self._flow(request), self._sync_lock)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The sync flow (httpx calls :meth:`sync_auth_flow`; this is the same)."""
        return self.sync_auth_flow(request)

    def _flow(self, request: httpx.Request) -> Flow:
        if not self._take_over(request):
            yield request  # the caller chose its Authorization; not ours to override
            return
        origin = _origin(request.url)
        plan = self._proactive(origin)
        retried = False
        while True:
            used: _Used = None
            if plan is not None:
                token: Optional[Token] = None
                if plan.kind == "bearer":
                    token = yield from self._obtain(plan, request)
                used = self._attach(request, plan, token)
            response = yield request
            # A 401 from a host we were redirected to is that host's business, not ours.
            if response.status_code != 401 or retried or _origin(response.request.url) != origin:
                return
            plan = self._learn(origin, response, used)
            if plan is None:
                return
            retried = True

    def _obtain(self, plan: _Plan, origin_request: httpx.Request) -> Flow:
        """The token ``plan`` needs: cached, or fetched by one flow while the others wait."""
        token = self._cached(plan)
        if token is not None:
            return token
        lock = yield Acquire(plan.key)
        try:  # given back however the flow ends: done, failed, or closed by its driver
            # Another flow may have fetched it while this one waited for the lock.
            token = self._cached(plan)
            if token is None:
                token = yield from self._exchange(plan, origin_request)
        finally:
            lock.release()
        return token

    # -- decisions (no I/O) ------------------------------------------------------------------

    @staticmethod
    def _take_over(request: httpx.Request) -> bool:
        """Whether we handle the request's auth: not when its caller set Authorization itself.

        A header we set on an earlier send of the same request object is ours, and is dropped:
        the token in it may have expired since.
        """
        if "Authorization" not in request.headers:
            return True
        if request.extensions.get(_MARK):
            del request.headers["Authorization"]
            return True
        return False

    def _proactive(self, origin: _Origin) -> Optional[_Plan]:
        host = self._hosts.get(origin)
        if host is None:
            return None
        if host.scheme == "basic":
            return _Plan("basic")
        if self.credentials is not None and self.credentials.registry_token:
            return _Plan("static")
        plan = _Plan("bearer", host.realm, host.service, self.scopes)
        if not plan.scopes and self._cached(plan) is None:
            # No scope known yet: a token for nothing would only earn a 401 naming the scope.
            # Let this request's challenge name it instead.
            return None
        return plan

    def _learn(self, origin: _Origin, response: httpx.Response, used: _Used) -> Optional[_Plan]:
        """From a 401, what to try next; None when trying again cannot help."""
        challenges = self._challenges(response)
        creds = self.credentials
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.get("realm")), None)
        if bearer is not None:
            realm = self._realm(bearer.get("realm"), response)
            service = bearer.get("service")
            self._hosts[origin] = _HostAuth("bearer", realm, service)
            if creds is not None and creds.registry_token:
                return None if used == "static" else _Plan("static")
            asked = normalize_scopes(bearer.get("scope").split())
            if (
                isinstance(used, Token)
                and used.realm == realm
                and used.service == service
                and used.fresh(self.clock())
                and covers(used.scopes, asked)
            ):
                if bearer.get("error") != "invalid_token":
                    # Our token was fine and covered what was asked: the registry refuses us,
                    # and a new token would be refused too. The caller decodes the 401.
                    return None
                # Revoked or rejected before its time (clock skew): one fresh token, once.
                self._evict(used)
            self.add_scopes(asked)
            return _Plan("bearer", realm, service, self.scopes)
        known = self._hosts.get(origin)
        static = creds is not None and creds.registry_token
        if not challenges and known is not None and known.scheme == "bearer" and not static:
            # Harbor answers some 401s without a challenge (goharbor/harbor#12192, #18305): the
            # one learnt before still holds, and the token sent is presumably stale: one fresh
            # token, once (the caller decodes the 401 if that is refused too).
            if isinstance(used, Token):
                self._evict(used)
            return _Plan("bearer", known.realm, known.service, self.scopes)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if basic is not None and creds is not None and creds.has_basic:
            self._hosts[origin] = _HostAuth("basic")
            if used == "basic":
                return None
            return _Plan("basic")
        return None

    def _challenges(self, response: httpx.Response) -> list[Challenge]:
        """Every challenge of a 401, within the limits of :mod:`.challenge` (all headers)."""
        values = response.headers.get_list("WWW-Authenticate")
        challenges: list[Challenge] = []
        try:
            total = sum(len(value) for value in values)
            if total > MAX_HEADER_CHARS:
                raise ChallengeLimitError(
                    f"of {total} characters, more than the {MAX_HEADER_CHARS} allowed"
                )
            for value in values:
                challenges.extend(parse_www_authenticate(value))
                if len(challenges) > MAX_CHALLENGES:
                    raise ChallengeLimitError(f"with more than {MAX_CHALLENGES} challenges")
        except ChallengeLimitError as exc:
            where = netloc(response.request.url)
            raise AuthenticationError(
                f"authentication failed: {where} sent a WWW-Authenticate header {exc}",
                operation="authenticate",
                image=where,
                user=self._user,
                status=response.status_code,
            ) from None
        return challenges

    def _realm(self, realm: str, response: httpx.Response) -> str:
        where = netloc(response.request.url)
        try:
            url = response.request.url.join(realm)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise AuthenticationError(
                f"authentication failed: {where} asked for a token from an unusable realm",
                operation="authenticate",
                image=where,
                user=self._user,
            )
        return str(url)

    def _cached(self, plan: _Plan) -> Optional[Token]:
        now = self.clock()
        best: Optional[Token] = None
        for token in list(self._tokens.values()):
            if (
                token.realm == plan.realm
                and token.service == plan.service
                and token.fresh(now)
                and covers(token.scopes, plan.scopes)
                and (best is None or token.expires_at > best.expires_at)
            ):
                best = token
        return best

    def _store(self, token: Token) -> None:
        now = self.clock()
        with self._mutex:
            for key, old in list(self._tokens.items()):
                if not old.fresh(now):
                    del self._tokens[key]
            self._tokens[(token.realm, token.service, token.scopes)] = token

    def _evict(self, token: Token) -> None:
        with self._mutex:
            key = (token.realm, token.service, token.scopes)
            if self._tokens.get(key) is token:
                del self._tokens[key]

    def _async_lock(self, key: _Key) -> asyncio.Lock:
        # Created lazily: on Python 3.9 a lock binds to the loop current at its creation.
        with self._mutex:
            lock = self._async_locks.get(key)
            if lock is None:
                lock = self._async_locks[key] = asyncio.Lock()
            return lock

    def _sync_lock(self, key: _Key) -> threading.Lock:
        with self._mutex:
            return self._sync_locks.setdefault(key, threading.Lock())

    @property
    def _user(self) -> Optional[str]:
        return self.credentials.username if self.credentials else None

    # -- headers -----------------------------------------------------------------------------

    def _attach(self, request: httpx.Request, plan: _Plan, token: Optional[Token]) -> _Used:
        creds = self.credentials
        if plan.kind == "basic":
            assert creds is not None and creds.username and creds.password is not None
            self._check_transport(request.url, "send the credentials of")
            request.headers["Authorization"] = _basic(creds.username, creds.password.reveal())
            request.extensions[_MARK] = True
            return "basic"
        if plan.kind == "static":
            assert creds is not None and creds.registry_token is not None
            self._check_transport(request.url, "send the registry token of")
            request.headers["Authorization"] = f"Bearer {creds.registry_token.reveal()}"
            request.extensions[_MARK] = True
            return "static"
        assert token is not None
        if token.authenticated:
            self._check_transport(request.url, "send a token obtained with the credentials of")
        request.headers["Authorization"] = f"Bearer {token.value.reveal()}"
        request.extensions[_MARK] = True
        return token

    def _check_transport(self, url: httpx.URL, doing: str) -> None:
        if url.scheme == "https" or self.allow_insecure_credentials or _is_loopback(url.host):
            return
        who = self.credentials.describe() if self.credentials else "anonymous"
        where = netloc(url)
        raise AuthenticationError(
            f"refusing to {doing} {who} to {where} over plain HTTP, where anyone on the network "
            "can read them (use HTTPS, or pass --plain-http or --insecure to allow it)",
            operation="authenticate",
            image=where,
            user=self._user,
        )

    # -- the token request -------------------------------------------------------------------

    def _exchange(self, plan: _Plan, origin_request: httpx.Request) -> Flow:
        """Yield the token request(s), receive their (read) responses, return the token."""
        creds = self.credentials
        realm = httpx.URL(plan.realm)
        # identity: a body is capped as it arrives; a compressed one could not be (see above).
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        user_agent = origin_request.headers.get("User-Agent")
        if user_agent:
            headers["User-Agent"] = user_agent
        extensions: dict[str, Any] = {}
        if "timeout" in origin_request.extensions:
            # Requests made by an auth flow skip the client's defaults: carry its timeout over.
            extensions["timeout"] = origin_request.extensions["timeout"]
        scopes = sorted(plan.scopes)

        def get(username: str = "", password: str = "") -> httpx.Request:
            params: dict[str, Union[str, list[str]]] = {}
            if plan.service:
                params["service"] = plan.service
            if scopes:
                params["scope"] = scopes
            get_headers = dict(headers)
            if username or password:
                self._check_transport(realm, "send the credentials of")
                params["account"] = username
                get_headers["Authorization"] = _basic(username, password)
            return httpx.Request(
                "GET", realm.copy_merge_params(params), headers=get_headers, extensions=extensions
            )

        authenticated = creds is not None and bool(creds.identity_token or creds.has_basic)
        if creds is not None and creds.identity_token:
            refresh_token = creds.identity_token.reveal()
            self._check_transport(realm, "send the identity token of")
            form = {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": CLIENT_ID,
            }
            if plan.service:
                form["service"] = plan.service
            if scopes:
                form["scope"] = " ".join(scopes)
            response = yield from self._ask(
                httpx.Request("POST", realm, data=form, headers=headers, extensions=extensions)
            )
            if response.status_code in (404, 405):
                # A token server without the OAuth2 endpoint: send the refresh token as the
                # password of a Basic token request, as docker/distribution's client does.
                response = yield from self._ask(get(creds.username or "<token>", refresh_token))
        elif creds is not None and creds.has_basic:
            assert creds.username is not None and creds.password is not None
            response = yield from self._ask(get(creds.username, creds.password.reveal()))
        else:
            response = yield from self._ask(get())
        token = parse_token(
            response,
            realm=plan.realm,
            service=plan.service,
            scopes=plan.scopes,
            credentials=creds,
            authenticated=authenticated,
            now=self.clock(),
        )
        self._store(token)
        log.debug(
            "token for %s scopes %s from %s (%s)",
            plan.service or "?",
            scopes,
            plan.realm,
            creds.describe() if creds else "anonymous",
        )
        return token

    def _ask(self, request: httpx.Request) -> Flow:
        """Send a token request; return its answer, read within the cap (see .tokenanswer)."""
        self.token_requests += 1
        response = yield request
        cap_token_answer(response, self._user)
        yield Read(response)
        return response
