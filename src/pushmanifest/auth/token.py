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
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import functools
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import httpx

from ..errors import AuthenticationError, NetworkError
from .challenge import Challenge, parse_www_authenticate
from .credentials import Credentials, Secret

__all__ = ["TokenAuth", "covers_scopes", "normalize_scopes"]

log = logging.getLogger("pushmanifest.auth")

#: Lifetime of a token whose response does not say (docker/distribution's default).
DEFAULT_EXPIRES_IN = 60.0
#: A token is renewed this long before it expires (at most a tenth of its lifetime), so that it
#: does not expire between being attached and reaching the registry.
EXPIRY_MARGIN = 10.0
CLIENT_ID = "pushmanifest"
_DETAIL_LIMIT = 200
#: Request extension marking an Authorization header as set by us (not by the caller).
_MARK = "pushmanifest.auth"

Clock = Callable[[], float]
_Origin = tuple[str, str, int]
_Key = tuple[str, str, frozenset[str]]


# -- scopes ----------------------------------------------------------------------------------


def _split_scope(scope: str) -> Optional[tuple[str, str, tuple[str, ...]]]:
    # "repository:host:5000/name:pull,push": the name may hold colons, the actions never do.
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, tuple(a for a in actions.split(",") if a)


def normalize_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Merge the actions of scopes on the same resource: one scope string per resource.

    Actions are sorted, so that equal sets of scopes are equal strings (``pull,push``).

    ``repository:a:pull`` and ``repository:a:pull,push`` ask for the same thing as
    ``repository:a:pull,push`` alone; sending both would only make cache keys differ.
    """
    merged: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in scopes:
        scope = scope.strip()
        if not scope:
            continue
        parsed = _split_scope(scope)
        if parsed is None:
            opaque.add(scope)
            continue
        kind, name, actions = parsed
        merged.setdefault((kind, name), set()).update(actions)
    out = {f"{kind}:{name}:{','.join(sorted(actions))}" for (kind, name), actions in merged.items()}
    return frozenset(out | opaque)


@functools.lru_cache(maxsize=64)
def _covers(have: frozenset[str], need: frozenset[str]) -> bool:
    # The same two sets meet before every request of a run: compare them once.
    return covers_scopes(have, need)


def covers_scopes(have: Iterable[str], need: Iterable[str]) -> bool:
    """Whether a token granted ``have`` is good for ``need`` (actions compared, not strings)."""
    granted: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in have:
        parsed = _split_scope(scope)
        if parsed is None:
            opaque.add(scope)
        else:
            granted.setdefault(parsed[:2], set()).update(parsed[2])
    for scope in need:
        parsed = _split_scope(scope)
        if parsed is None:
            if scope not in opaque:
                return False
            continue
        actions = granted.get(parsed[:2])
        if actions is None or not ("*" in actions or actions.issuperset(parsed[2])):
            return False
    return True


# -- helpers ---------------------------------------------------------------------------------


def _origin(url: httpx.URL) -> _Origin:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host, port


def _netloc(url: httpx.URL) -> str:
    return url.netloc.decode("ascii", "replace")


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


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):(\d\d))$"
)


def _parse_rfc3339(text: object) -> Optional[float]:
    # By hand: fromisoformat() on Python 3.9 takes neither "Z" nor the nanoseconds Go writes.
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        stamp = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    fraction = float(match.group(7)) if match.group(7) else 0.0
    offset = 0
    if match.group(9):
        offset = (int(match.group(10)) * 60 + int(match.group(11))) * 60
        if match.group(9) == "-":
            offset = -offset
    return stamp + fraction - offset


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _DETAIL_LIMIT:
        return text[:_DETAIL_LIMIT] + "..."
    return text


def _error_detail(response: httpx.Response) -> str:
    """The reason a token server gave: Docker Hub's ``details``, distribution's ``errors``..."""
    try:
        body = response.content
    except httpx.ResponseNotRead:
        return ""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return _one_line(body.decode("utf-8", "replace"))
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return _one_line(str(first.get("message") or first.get("code") or ""))
        for key in ("details", "error_description", "message", "error"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return _one_line(value)
    return _one_line(body.decode("utf-8", "replace"))


# -- state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    value: Secret
    realm: str
    service: str
    scopes: frozenset[str]
    expires_at: float
    lifetime: float
    #: Obtained with the user's credentials (so as sensitive as they are).
    authenticated: bool

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - min(EXPIRY_MARGIN, self.lifetime / 10)


@dataclass(frozen=True)
class _HostAuth:
    """What a host asked for in its challenge."""

    scheme: str  # "bearer" or "basic"
    realm: str = ""
    service: str = ""


@dataclass(frozen=True)
class _Plan:
    """What to attach to a request: Basic, the static registry token, or a token to obtain."""

    kind: str  # "basic", "static", "bearer"
    realm: str = ""
    service: str = ""
    scopes: frozenset[str] = frozenset()

    @property
    def key(self) -> _Key:
        return self.realm, self.service, self.scopes


_Used = Union[_Token, str, None]  # the token attached, "basic", "static", or nothing


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
        self._tokens: dict[_Key, _Token] = {}
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
        if self._cached(plan) is not None:
            return
        async with self._async_lock(plan.key):
            if self._cached(plan) is not None:
                return
            exchange = self._exchange(plan, origin_request)
            token_request = next(exchange)
            while True:
                try:
                    token_response = await client.send(token_request, auth=None)
                except httpx.TransportError as exc:
                    where = _netloc(token_request.url)
                    raise NetworkError(
                        f"cannot reach the token server {where}: {type(exc).__name__}"
                        + (f" ({_one_line(str(exc))})" if str(exc) else ""),
                        operation="authenticate",
                        image=where,
                        user=self._user,
                    ) from exc
                try:
                    token_request = exchange.send(token_response)
                except StopIteration:
                    return

    # -- the flows ---------------------------------------------------------------------------

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._take_over(request):
            yield request  # the caller chose its Authorization; not ours to override
            return
        origin = _origin(request.url)
        plan = self._proactive(origin)
        retried = False
        while True:
            used: _Used = None
            if plan is not None:
                token: Optional[_Token] = None
                if plan.kind == "bearer":
                    token = self._cached(plan)
                    if token is None:
                        async with self._async_lock(plan.key):
                            token = self._cached(plan)
                            if token is None:
                                exchange = self._exchange(plan, request)
                                token_request = next(exchange)
                                while True:
                                    token_response = yield token_request
                                    await token_response.aread()
                                    try:
                                        token_request = exchange.send(token_response)
                                    except StopIteration as done:
                                        token = done.value
                                        break
                used = self._attach(request, plan, token)
            response = yield request
            # A 401 from a host we were redirected to is that host's business, not ours.
            if response.status_code != 401 or retried or _origin(response.request.url) != origin:
                return
            plan = self._learn(origin, response, used)
            if plan is None:
                return
            retried = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The same flow for a sync ``httpx.Client`` (threads instead of tasks)."""
        if not self._take_over(request):
            yield request
            return
        origin = _origin(request.url)
        plan = self._proactive(origin)
        retried = False
        while True:
            used: _Used = None
            if plan is not None:
                token: Optional[_Token] = None
                if plan.kind == "bearer":
                    token = self._cached(plan)
                    if token is None:
                        with self._sync_lock(plan.key):
                            token = self._cached(plan)
                            if token is None:
                                exchange = self._exchange(plan, request)
                                token_request = next(exchange)
                                while True:
                                    token_response = yield token_request
                                    token_response.read()
                                    try:
                                        token_request = exchange.send(token_response)
                                    except StopIteration as done:
                                        token = done.value
                                        break
                used = self._attach(request, plan, token)
            response = yield request
            # A 401 from a host we were redirected to is that host's business, not ours.
            if response.status_code != 401 or retried or _origin(response.request.url) != origin:
                return
            plan = self._learn(origin, response, used)
            if plan is None:
                return
            retried = True

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
        challenges: list[Challenge] = []
        for value in response.headers.get_list("WWW-Authenticate"):
            challenges.extend(parse_www_authenticate(value))
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
                isinstance(used, _Token)
                and used.realm == realm
                and used.service == service
                and used.fresh(self.clock())
                and _covers(used.scopes, asked)
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
            if isinstance(used, _Token):
                self._evict(used)
            return _Plan("bearer", known.realm, known.service, self.scopes)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if basic is not None and creds is not None and creds.has_basic:
            self._hosts[origin] = _HostAuth("basic")
            if used == "basic":
                return None
            return _Plan("basic")
        return None

    def _realm(self, realm: str, response: httpx.Response) -> str:
        where = _netloc(response.request.url)
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

    def _cached(self, plan: _Plan) -> Optional[_Token]:
        now = self.clock()
        best: Optional[_Token] = None
        for token in list(self._tokens.values()):
            if (
                token.realm == plan.realm
                and token.service == plan.service
                and token.fresh(now)
                and _covers(token.scopes, plan.scopes)
                and (best is None or token.expires_at > best.expires_at)
            ):
                best = token
        return best

    def _store(self, token: _Token) -> None:
        now = self.clock()
        with self._mutex:
            for key, old in list(self._tokens.items()):
                if not old.fresh(now):
                    del self._tokens[key]
            self._tokens[(token.realm, token.service, token.scopes)] = token

    def _evict(self, token: _Token) -> None:
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

    def _attach(self, request: httpx.Request, plan: _Plan, token: Optional[_Token]) -> _Used:
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
        where = _netloc(url)
        raise AuthenticationError(
            f"refusing to {doing} {who} to {where} over plain HTTP, where anyone on the network "
            "can read them (use HTTPS, or pass --plain-http or --insecure to allow it)",
            operation="authenticate",
            image=where,
            user=self._user,
        )

    # -- the token request -------------------------------------------------------------------

    def _exchange(
        self, plan: _Plan, origin_request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, _Token]:
        """Yield the token request(s), receive their (read) responses, return the token."""
        creds = self.credentials
        realm = httpx.URL(plan.realm)
        headers = {"Accept": "application/json"}
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
            self.token_requests += 1
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
            self.token_requests += 1
            response = yield httpx.Request(
                "POST", realm, data=form, headers=headers, extensions=extensions
            )
            if response.status_code in (404, 405):
                # A token server without the OAuth2 endpoint: send the refresh token as the
                # password of a Basic token request, as docker/distribution's client does.
                response = yield get(creds.username or "<token>", refresh_token)
        elif creds is not None and creds.has_basic:
            assert creds.username is not None and creds.password is not None
            response = yield get(creds.username, creds.password.reveal())
        else:
            response = yield get()
        token = self._parse_token(response, plan, authenticated)
        self._store(token)
        log.debug(
            "token for %s scopes %s from %s (%s)",
            plan.service or "?",
            scopes,
            plan.realm,
            creds.describe() if creds else "anonymous",
        )
        return token

    def _parse_token(self, response: httpx.Response, plan: _Plan, authenticated: bool) -> _Token:
        where = _netloc(response.request.url)
        user = self._user
        status = response.status_code
        detail = _error_detail(response) if status >= 400 else ""
        reason = f" ({detail})" if detail else ""
        if status in (401, 403):
            creds = self.credentials
            if creds is not None and creds.username:
                whose = f"the credentials of user '{creds.username}'"
            elif creds is not None and creds.identity_token:
                whose = "the identity token"
            else:
                whose = "an anonymous token request"
            raise AuthenticationError(
                f"authentication failed: {where} refused {whose}{reason}",
                operation="authenticate",
                image=where,
                user=user,
                status=status,
            )
        if status >= 400 or status < 200:
            raise AuthenticationError(
                f"authentication failed: token request to {where} answered HTTP {status}{reason}",
                operation="authenticate",
                image=where,
                user=user,
                status=status,
            )
        try:
            data = json.loads(response.content)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            data = None
        value = None
        if isinstance(data, dict):
            value = data.get("token") or data.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthenticationError(
                f"authentication failed: token server {where} answered without a token "
                "(not the JSON of the registry token protocol)",
                operation="authenticate",
                image=where,
                user=user,
                status=status,
            )
        assert isinstance(data, dict)
        now = self.clock()
        lifetime = DEFAULT_EXPIRES_IN
        expires_in = data.get("expires_in")
        if (
            isinstance(expires_in, (int, float))
            and not isinstance(expires_in, bool)
            and expires_in > 0
        ):
            lifetime = float(expires_in)
        issued_at = _parse_rfc3339(data.get("issued_at"))
        # Trust issued_at only when it is plausible: a server clock ahead of ours, or behind by
        # more than the lifetime, would otherwise make every token look expired at birth.
        if issued_at is None or not (0 <= now - issued_at < lifetime):
            issued_at = now
        return _Token(
            value=Secret(value),
            realm=plan.realm,
            service=plan.service,
            scopes=plan.scopes,
            expires_at=issued_at + lifetime,
            lifetime=lifetime,
            authenticated=authenticated,
        )
