"""A token server's answer: read within a cap, its reason on refusal, parsed to a :class:`Token`.

A token answer is untrusted input: it is read only up to :data:`MAX_TOKEN_RESPONSE_BYTES` as it
streams in (:func:`cap_token_answer`, before anything reads it), an error answer gives its reason
in one short line, and a successful one must be the JSON of the registry token protocol.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Optional, Union

import httpx

from .._records import record
from ..errors import AuthenticationError
from .credentials import Credentials, Secret

__all__ = [
    "MAX_TOKEN_RESPONSE_BYTES",
    "Token",
    "cap_token_answer",
    "netloc",
    "one_line",
    "parse_token",
]

#: Lifetime of a token whose response does not say (docker/distribution's default).
DEFAULT_EXPIRES_IN = 60.0
#: A token is renewed this long before it expires (at most a tenth of its lifetime), so that it
#: does not expire between being attached and reaching the registry.
EXPIRY_MARGIN = 10.0
#: The largest token answer read (Docker Hub's are 1-4 KiB): a larger one is refused as it
#: streams in, before it can fill the memory; a larger error answer is cut there.
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
_DETAIL_LIMIT = 200


@record(frozen=True)
class Token:
    """A token granted for ``scopes`` by ``realm`` for ``service``."""

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


def netloc(url: httpx.URL) -> str:
    return url.netloc.decode("ascii", "replace")


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


def one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _DETAIL_LIMIT:
        return text[:_DETAIL_LIMIT] + "..."
    return text


def error_detail(response: httpx.Response) -> str:
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
        return one_line(body.decode("utf-8", "replace"))
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return one_line(str(first.get("message") or first.get("code") or ""))
        for key in ("details", "error_description", "message", "error"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return one_line(value)
    return one_line(body.decode("utf-8", "replace"))


class _CappedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that stops at ``cap`` bytes: raises ``too_large``, or just ends (``None``).

    Put in place of a token answer's stream before anything reads it, so that httpx's own read
    (and its re-read once the flow has moved on) never holds more than ``cap`` bytes.
    """

    def __init__(
        self,
        stream: Union[httpx.SyncByteStream, httpx.AsyncByteStream],
        cap: int,
        too_large: Optional[Exception],
    ) -> None:
        self._stream = stream
        self._cap = cap
        self._too_large = too_large
        self._total = 0

    def _admit(self, chunk: bytes) -> tuple[bytes, bool]:
        """The part of ``chunk`` within the cap, and whether the cap is reached (read no more)."""
        self._total += len(chunk)
        over = self._total - self._cap
        if over <= 0:
            return chunk, False
        if self._too_large is not None:
            raise self._too_large
        return chunk[: max(len(chunk) - over, 0)], True

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._stream, httpx.SyncByteStream)
        for chunk in self._stream:
            kept, full = self._admit(chunk)
            if kept:
                yield kept
            if full:
                return

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._stream, httpx.AsyncByteStream)
        async for chunk in self._stream:
            kept, full = self._admit(chunk)
            if kept:
                yield kept
            if full:
                return

    def close(self) -> None:
        if isinstance(self._stream, httpx.SyncByteStream):
            self._stream.close()

    async def aclose(self) -> None:
        if isinstance(self._stream, httpx.AsyncByteStream):
            await self._stream.aclose()


def _too_large(
    response: httpx.Response, declared: Optional[str], user: Optional[str]
) -> AuthenticationError:
    where = netloc(response.request.url)
    sent = f"{declared} bytes, more than the" if declared else "more than the"
    return AuthenticationError(
        f"authentication failed: the token server {where} sent {sent} "
        f"{MAX_TOKEN_RESPONSE_BYTES} bytes allowed for a token answer",
        operation="authenticate",
        image=where,
        user=user,
        status=response.status_code,
    )


def cap_token_answer(response: httpx.Response, user: Optional[str]) -> None:
    """Before a token answer is read: refuse what cannot be one, and stop reading at the cap.

    An error answer is only cut (its start says why); a successful one over the cap is an
    error. We ask for ``identity``: a body encoded anyway is refused, because httpx would decode
    each chunk whole before any cap saw it (a few hundred bytes of gzip can hold gigabytes).
    """
    if response.status_code >= 400:
        response.stream = _CappedBody(response.stream, MAX_TOKEN_RESPONSE_BYTES, None)
        return
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_TOKEN_RESPONSE_BYTES:
        raise _too_large(response, declared, user)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        where = netloc(response.request.url)
        raise AuthenticationError(
            f"authentication failed: the token server {where} sent its answer encoded "
            f"({one_line(encoding)}) though asked for it as it is (identity)",
            operation="authenticate",
            image=where,
            user=user,
            status=response.status_code,
        )
    response.stream = _CappedBody(
        response.stream,
        MAX_TOKEN_RESPONSE_BYTES,
        _too_large(response, None, user),
    )


def parse_token(
    response: httpx.Response,
    *,
    realm: str,
    service: str,
    scopes: frozenset[str],
    credentials: Optional[Credentials],
    authenticated: bool,
    now: float,
) -> Token:
    """The token of a (read) answer, or the AuthenticationError saying why there is none.

    ``issued_at`` is trusted only when plausible against ``now`` (the caller's clock).
    """
    where = netloc(response.request.url)
    user = credentials.username if credentials else None
    status = response.status_code
    detail = error_detail(response) if status >= 400 else ""
    reason = f" ({detail})" if detail else ""
    if status in (401, 403):
        if credentials is not None and credentials.username:
            whose = f"the credentials of user '{credentials.username}'"
        elif credentials is not None and credentials.identity_token:
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
    if len(response.content) > MAX_TOKEN_RESPONSE_BYTES:
        # Read whole by a transport of the caller's (nothing of ours streamed it).
        raise _too_large(response, str(len(response.content)), user)
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
    lifetime = DEFAULT_EXPIRES_IN
    expires_in = data.get("expires_in")
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = float(expires_in)
    issued_at = _parse_rfc3339(data.get("issued_at"))
    # Trust issued_at only when it is plausible: a server clock ahead of ours, or behind by
    # more than the lifetime, would otherwise make every token look expired at birth.
    if issued_at is None or not (0 <= now - issued_at < lifetime):
        issued_at = now
    return Token(
        value=Secret(value),
        realm=realm,
        service=service,
        scopes=scopes,
        expires_at=issued_at + lifetime,
        lifetime=lifetime,
        authenticated=authenticated,
    )
