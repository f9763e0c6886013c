"""A token server of the tests' own, speaking Docker Hub's ``auth.docker.io`` protocol.

Stdlib only (``http.server.ThreadingHTTPServer`` in a daemon thread); JWTs signed RS256 in pure
Python (:mod:`support.certs`). Point a distribution registry's ``auth.token`` at it::

    key = make_signing_key(tmp)
    with TokenServer(key, service="test-registry", users={"alice": "alice-secret"}) as ts:
        ...  # registry config: realm=ts.realm, service=ts.service, issuer=ts.issuer,
             #                  rootcertbundle=key.cert_file

Protocol (https://distribution.github.io/distribution/spec/auth/token/ and .../oauth/):

* ``GET /token?service=S&scope=repository:NAME:ACTIONS`` (``scope`` may repeat; also
  ``account=U``, ``offline_token=true``) with optional HTTP Basic; anonymous allowed.
  ``offline_token=true`` with credentials also returns a ``refresh_token``.
* ``POST /token`` (form): ``grant_type=password`` with ``username``/``password``, or
  ``grant_type=refresh_token`` with ``refresh_token``; ``scope`` space-separated; ``service``;
  ``access_type=offline`` returns a ``refresh_token``.
* Success: ``{"token", "access_token", "expires_in", "issued_at"}`` (+ ``scope`` for POST,
  + ``refresh_token``). Wrong user or password: 401
  ``{"details":"incorrect username or password"}``.

Policy, like Docker Hub: user U gets pull, push (and delete, ``*``) on ``U/*``; everyone,
anonymous too, gets pull on ``library/*`` and on :attr:`TokenServer.public_repositories`
(exact names or ``fnmatch`` patterns). The granted actions are the allowed subset of the
requested ones: asking for too much is never an error.

Every request is recorded (:attr:`TokenServer.requests`, :attr:`TokenServer.count`,
:meth:`TokenServer.reset`); secrets are never recorded. :attr:`TokenServer.delay` slows every
answer (benchmarks); :attr:`TokenServer.expires_in` is the advertised lifetime and
:attr:`TokenServer.token_lifetime` the JWT's own (``exp - iat``; defaults to ``expires_in``).
Note that distribution accepts a token until 60 s *after* its ``exp`` (clock-skew leeway).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fnmatch
import json
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union
from urllib.parse import parse_qs, urlsplit

from .certs import RsaKey

__all__ = [
    "DEFAULT_USERS",
    "Grant",
    "TokenRequest",
    "TokenServer",
    "decode_jwt",
    "parse_scope",
]

DEFAULT_USERS: Mapping[str, str] = {"alice": "alice-secret", "bob": "bob-secret"}

OWNER_ACTIONS = ("pull", "push", "delete", "*")
_REDACTED = "**********"
_SECRET_FIELDS = frozenset({"password", "refresh_token"})


@dataclass(frozen=True)
class Grant:
    """One resource access: an entry of the JWT's ``access`` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    def to_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (secrets redacted)."""

    method: str  #: "GET" or "POST"
    path: str  #: "/token"
    query: dict[str, list[str]]  #: the URL's query, parsed (``parse_qs``)
    form: dict[str, list[str]]  #: the POST form, ``password``/``refresh_token`` redacted
    user: Optional[str]  #: the authenticated user; None for anonymous or a failed login
    presented_user: Optional[str]  #: the user name the client sent (even with a wrong password)
    auth: str  #: "anonymous", "basic", "password" (POST), "refresh_token" (POST)
    scopes: tuple[str, ...]  #: requested scopes, as sent
    granted: tuple[Grant, ...]  #: what the token allows
    status: int  #: HTTP status of the answer
    start: float  #: time.monotonic() when the request arrived
    end: float  #: time.monotonic() when the answer was sent
    account: Optional[str] = None  #: the ``account`` query parameter

    @property
    def service(self) -> Optional[str]:
        values = self.query.get("service") or self.form.get("service")
        return values[0] if values else None


class _Keep:
    """Marker: leave a setting as it is."""


_KEEP = _Keep()


def parse_scope(scope: str) -> Optional[tuple[str, str, tuple[str, ...]]]:
    """``"repository:team/app:pull,push"`` -> ``("repository", "team/app", ("pull", "push"))``.

    The type may carry a class (``repository(plugin)``); the name may not contain ``:`` in
    practice but is split from the right anyway. None for anything unparseable.
    """
    parts = scope.split(":", 1)
    if len(parts) != 2:
        return None
    rtype, rest = parts
    if ":" not in rest:
        return None
    name, actions = rest.rsplit(":", 1)
    if not rtype or not name:
        return None
    return rtype, name, tuple(a for a in actions.split(",") if a)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of a compact JWS, without verifying it (for assertions in tests)."""
    header, claims, _signature = token.split(".")
    return json.loads(_b64url_decode(header)), json.loads(_b64url_decode(claims))


def _rfc3339(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"


class TokenServer:
    """The token server. Start with :meth:`start` or ``with``; thread-safe."""

    def __init__(
        self,
        key: RsaKey,
        *,
        service: str = "pushmanifest-test-registry",
        issuer: str = "pushmanifest-test-token-server",
        users: Optional[Mapping[str, str]] = None,
        public_repositories: Iterable[str] = (),
        expires_in: int = 300,
        token_lifetime: Optional[int] = None,
        delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.key = key
        self.service = service
        self.issuer = issuer
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.public_repositories: set[str] = set(public_repositories)
        self.expires_in = expires_in
        self.token_lifetime = token_lifetime
        self.delay = delay
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._count = 0
        self._refresh_tokens: dict[str, str] = {}
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> TokenServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"token_server": self})
        httpd = ThreadingHTTPServer((self._host, self._port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"token-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("token server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self._host}:{self.port}"

    @property
    def realm(self) -> str:
        """``http://127.0.0.1:PORT/token``: the registry's ``auth.token.realm``."""
        return self.url + "/token"

    @contextlib.contextmanager
    def settings(
        self,
        *,
        delay: Optional[float] = None,
        expires_in: Optional[int] = None,
        token_lifetime: Union[int, _Keep, None] = _KEEP,
        public_repositories: Optional[Iterable[str]] = None,
    ) -> Iterator[TokenServer]:
        """Change ``delay``/``expires_in``/``token_lifetime``/``public_repositories`` for a
        ``with`` block, then restore them (for tests sharing a session's token server)."""
        saved = (self.delay, self.expires_in, self.token_lifetime, set(self.public_repositories))
        try:
            if delay is not None:
                self.delay = delay
            if expires_in is not None:
                self.expires_in = expires_in
            if not isinstance(token_lifetime, _Keep):
                self.token_lifetime = token_lifetime
            if public_repositories is not None:
                self.public_repositories = set(public_repositories)
            yield self
        finally:
            self.delay, self.expires_in, self.token_lifetime, self.public_repositories = saved

    # -- records --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        """A copy of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        """How many requests arrived since the start or the last :meth:`reset`."""
        with self._lock:
            return self._count

    def reset(self) -> None:
        """Forget the recorded requests; the count starts again from 0 (tokens stay valid)."""
        with self._lock:
            self._requests.clear()
            self._count = 0

    def _arrived(self) -> None:
        with self._lock:
            self._count += 1

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # -- policy and tokens ----------------------------------------------------------------------

    def is_public(self, name: str) -> bool:
        if name.startswith("library/"):
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.public_repositories)

    def allowed_actions(self, user: Optional[str], name: str) -> frozenset[str]:
        """What ``user`` (None: anonymous) may do on repository ``name``."""
        allowed: set[str] = set()
        if user and name.startswith(user + "/"):
            allowed.update(OWNER_ACTIONS)
        if self.is_public(name):
            allowed.add("pull")
        return frozenset(allowed)

    def grant(self, user: Optional[str], scopes: Iterable[str]) -> tuple[Grant, ...]:
        """The allowed subset of the requested scopes, merged per resource, in request order."""
        merged: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            rtype, name, actions = parsed
            if rtype != "repository":
                continue  # registry:catalog:* and the like: nobody here
            allowed = self.allowed_actions(user, name)
            granted = merged.setdefault((rtype, name), [])
            for action in actions:
                if action in allowed and action not in granted:
                    granted.append(action)
        return tuple(
            Grant(rtype, name, tuple(actions))
            for (rtype, name), actions in merged.items()
            if actions
        )

    def issue(
        self,
        user: Optional[str],
        grants: Sequence[Grant],
        *,
        audience: Optional[str] = None,
        lifetime: Optional[int] = None,
        now: Optional[float] = None,
    ) -> str:
        """A signed JWT for ``user`` with ``grants`` (tests may mint their own, e.g. expired)."""
        now = time.time() if now is None else now
        iat = int(now)
        if lifetime is None:
            lifetime = self.expires_in if self.token_lifetime is None else self.token_lifetime
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": audience or self.service,
            "exp": iat + lifetime,
            "nbf": iat - 1,
            "iat": iat,
            "jti": secrets.token_hex(16),
            "access": [g.to_claim() for g in grants],
        }
        return self.key.jwt(json.dumps(claims, separators=(",", ":")).encode())

    def check_password(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and secrets.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        )

    def _new_refresh_token(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[token] = user
        return token

    def _refresh_user(self, token: str) -> Optional[str]:
        with self._lock:
            return self._refresh_tokens.get(token)


class _Handler(BaseHTTPRequestHandler):
    token_server: TokenServer  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "pushmanifest-test-token-server/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    # -- plumbing -------------------------------------------------------------------------------

    def _send_json(
        self, status: int, body: Mapping[str, Any], headers: Optional[Mapping[str, str]] = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _basic(self) -> tuple[Optional[str], Optional[str], bool]:
        """``(user, password, malformed)`` from an Authorization: Basic header."""
        header = self.headers.get("Authorization")
        if not header:
            return None, None, False
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, None, True
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None, True
        user, sep, password = decoded.partition(":")
        if not sep:
            return None, None, True
        return user, password, False

    def _answer(self, **record: Any) -> None:
        ts = self.token_server
        status: int = record.pop("status")
        body: dict[str, Any] = record.pop("body")
        headers: Mapping[str, str] = record.pop("headers", {})
        if ts.delay > 0:
            time.sleep(ts.delay)
        end = time.monotonic()
        ts._record(TokenRequest(status=status, end=end, **record))
        self._send_json(status, body, headers)

    def _success_body(
        self,
        user: Optional[str],
        grants: tuple[Grant, ...],
        audience: str,
        *,
        oauth: bool,
        refresh_token: Optional[str],
    ) -> dict[str, Any]:
        ts = self.token_server
        now = time.time()
        token = ts.issue(user, grants, audience=audience, now=now)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": ts.expires_in,
            "issued_at": _rfc3339(now),
        }
        if oauth:
            body["scope"] = " ".join(f"{g.type}:{g.name}:{','.join(g.actions)}" for g in grants)
        if refresh_token:
            body["refresh_token"] = refresh_token
        return body

    # -- GET ------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        ts = self.token_server
        start = time.monotonic()
        ts._arrived()
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        account = (query.get("account") or [None])[0]
        base = {
            "method": "GET",
            "path": url.path,
            "query": query,
            "form": {},
            "scopes": scopes,
            "start": start,
            "account": account,
        }
        if url.path.rstrip("/") != "/token":
            self._answer(
                status=404,
                body={"details": "not found"},
                user=None,
                presented_user=None,
                auth="anonymous",
                granted=(),
                **base,
            )
            return
        user, password, malformed = self._basic()
        if malformed:
            self._answer(
                status=401,
                body={"details": "incorrect username or password"},
                user=None,
                presented_user=None,
                auth="basic",
                granted=(),
                **base,
            )
            return
        if user is not None:
            assert password is not None
            if not ts.check_password(user, password):
                self._answer(
                    status=401,
                    body={"details": "incorrect username or password"},
                    user=None,
                    presented_user=user,
                    auth="basic",
                    granted=(),
                    **base,
                )
                return
        audience = (query.get("service") or [ts.service])[0] or ts.service
        grants = ts.grant(user, scopes)
        offline = (query.get("offline_token") or ["false"])[0].lower() == "true"
        refresh = ts._new_refresh_token(user) if (offline and user) else None
        body = self._success_body(user, grants, audience, oauth=False, refresh_token=refresh)
        self._answer(
            status=200,
            body=body,
            user=user,
            presented_user=user,
            auth="basic" if user else "anonymous",
            granted=grants,
            **base,
        )

    do_HEAD = do_GET

    # -- POST (OAuth2) --------------------------------------------------------------------------

    def do_POST(self) -> None:
        ts = self.token_server
        start = time.monotonic()
        ts._arrived()
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        redacted = {
            k: ([_REDACTED] * len(v) if k in _SECRET_FIELDS else v) for k, v in form.items()
        }

        def one(name: str) -> Optional[str]:
            values = form.get(name)
            return values[0] if values else None

        scopes = tuple(s for value in form.get("scope", []) for s in value.split(" ") if s)
        grant_type = one("grant_type") or ""
        base = {
            "method": "POST",
            "path": url.path,
            "query": query,
            "form": redacted,
            "scopes": scopes,
            "start": start,
            "account": (query.get("account") or [None])[0],
        }
        if url.path.rstrip("/") != "/token":
            self._answer(
                status=404,
                body={"details": "not found"},
                user=None,
                presented_user=None,
                auth="anonymous",
                granted=(),
                **base,
            )
            return
        if grant_type == "password":
            user, password = one("username"), one("password")
            if not user or password is None or not ts.check_password(user, password):
                self._answer(
                    status=401,
                    body={"details": "incorrect username or password"},
                    user=None,
                    presented_user=user,
                    auth="password",
                    granted=(),
                    **base,
                )
                return
        elif grant_type == "refresh_token":
            user = ts._refresh_user(one("refresh_token") or "")
            if user is None:
                self._answer(
                    status=401,
                    body={"error": "invalid_grant", "details": "invalid or expired refresh token"},
                    user=None,
                    presented_user=None,
                    auth="refresh_token",
                    granted=(),
                    **base,
                )
                return
        else:
            self._answer(
                status=400,
                body={
                    "error": "unsupported_grant_type",
                    "details": f"unsupported grant_type {grant_type!r}",
                },
                user=None,
                presented_user=one("username"),
                auth=grant_type or "anonymous",
                granted=(),
                **base,
            )
            return
        audience = one("service") or ts.service
        grants = ts.grant(user, scopes)
        refresh: Optional[str] = None
        if (one("access_type") or "") == "offline":
            refresh = (
                ts._new_refresh_token(user) if grant_type == "password" else one("refresh_token")
            )
        body = self._success_body(user, grants, audience, oauth=True, refresh_token=refresh)
        self._answer(
            status=200,
            body=body,
            user=user,
            presented_user=user,
            auth=grant_type,
            granted=grants,
            **base,
        )
