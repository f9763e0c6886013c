"""What a failed answer or connection means, in one clear line.

A registry's error body decoded (:func:`decode_error`), Docker Hub's rate limit, httpx's transport
errors described in the OS's words, and the errors of our own that the client raises.
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Optional

import httpx

from .._records import record
from ..errors import AuthenticationError, DigestMismatchError, NetworkError, RegistryError


class UploadRestart(RegistryError):
    """A streamed upload met a 401 and a fresh token: its body cannot be sent again as is."""


class DocumentTooSlowError(NetworkError):
    """A small document took longer than :attr:`ClientOptions.document_limit` in all."""


def decode_error(
    status: int,
    body: bytes,
    *,
    operation: str,
    image: str,
    user: Optional[str],
    rate_limit: Optional[RateLimit] = None,
) -> RegistryError:
    """One clear line from a registry error: what was refused, to whom, and why."""
    code, detail = _error_code_and_message(body)
    who = f"user '{user}'" if user else "anonymous"
    cls: type[RegistryError] = RegistryError
    if status in (401, 403) or code in ("DENIED", "UNAUTHORIZED"):
        cls = AuthenticationError
        verb = {"push": "push to", "resolve": "read"}.get(operation, operation)
        hint = "" if user else " (log in: docker login, or --username/--password-stdin)"
        reason = f" ({detail})" if detail else ""
        label = "denied" if status == 403 or code == "DENIED" else "unauthorized"
        message = f"{label}: {who} may not {verb} {image}{reason}{hint}"
    elif status == 429:
        message = f"cannot {operation} {image}: too many requests (429){_suffix(detail)}"
        if rate_limit is not None:
            message += f"; {rate_limit}"
            if not user:
                # A pull quota (Docker Hub's) is per account: an anonymous one is the lowest.
                message += "; logging in raises the limit (docker login, or --username)"
    else:
        what = f"{code.lower()}: " if code else ""
        message = f"cannot {operation} {image}: {what}HTTP {status}{_suffix(detail)}"
    return cls(message, operation=operation, image=image, user=user, status=status, code=code)


@record(frozen=True)
class RateLimit:
    """Docker Hub's pull quota: ``ratelimit-limit: 100;w=21600``, ``ratelimit-remaining``."""

    limit: int
    remaining: int
    window: Optional[int] = None

    def __str__(self) -> str:
        per = f" per {self.window // 3600} h" if self.window and self.window % 3600 == 0 else ""
        if self.window and not per:
            per = f" per {self.window} s"
        return f"{self.remaining} of {self.limit} pulls left{per}"


def rate_limit(headers: httpx.Headers) -> Optional[RateLimit]:
    """The rate limit a response announces (with or without Docker Hub's old ``x-`` prefix)."""

    def field(name: str) -> tuple[Optional[int], Optional[int]]:
        value = headers.get(name) or headers.get(f"x-{name}")
        if not value:
            return None, None
        amount, _, rest = value.partition(";")
        window = rest.strip()[2:] if rest.strip().startswith("w=") else ""
        try:
            return int(amount.strip()), int(window) if window.isdigit() else None
        except ValueError:
            return None, None

    limit, window = field("ratelimit-limit")
    remaining, _ = field("ratelimit-remaining")
    if limit is None or remaining is None:
        return None
    return RateLimit(limit=limit, remaining=remaining, window=window)


def _suffix(detail: str) -> str:
    return f" ({detail})" if detail else ""


def _error_code_and_message(body: bytes) -> tuple[Optional[str], str]:
    if not body:
        return None, ""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # a body nested too deeply is not an error message
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")
        return None, text[:200] + ("..." if len(text) > 200 else "")
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = str(first.get("code", "")) or None
            message = str(first.get("message", "") or "")
            detail = first.get("detail")
            if isinstance(detail, dict) and isinstance(detail.get("message"), str):
                detail = detail["message"]  # Quay: "detail": {"message": "..."}
            if isinstance(detail, (str, int)) and str(detail) and str(detail) not in message:
                message = f"{message}: {detail}" if message else str(detail)
            return code, message[:300]
        for key in ("details", "detail", "message", "error"):
            if isinstance(data.get(key), str):
                return None, str(data[key])[:300]
    return None, ""


def _request_error(operation: str, image: str, exc: httpx.RequestError) -> RegistryError:
    """One line for httpx's errors that are not the network's (TooManyRedirects, ...).

    Only the host of the last URL is named: a storage redirect's query may hold a signature.
    """
    try:
        where = exc.request.url.netloc.decode("ascii", "replace")
    except RuntimeError:  # no request attached
        where = ""
    if isinstance(exc, httpx.TooManyRedirects):
        reason = "too many redirects (a redirect loop?)"
        if where:
            reason += f", the last to {where}"
    else:
        reason = f"{type(exc).__name__}" + (f" at {where}" if where else "")
    return RegistryError(f"cannot {operation} {image}: {reason}", operation=operation, image=image)


def _mismatch(image: str, what: str, operation: str = "read") -> DigestMismatchError:
    return DigestMismatchError(f"{image}: {what}", operation=operation, image=image)


def _https_port_answer(response: httpx.Response, body: bytes) -> bool:
    """A TLS server's answer to a plain-HTTP request (Go's: bare ``HTTP/1.0 400``; nginx's)."""
    if response.url.scheme != "http":
        return False
    markers = (b"Client sent an HTTP request to an HTTPS server", b"plain HTTP request was sent")
    if any(marker in body for marker in markers):
        return True
    # Go's answer has no header at all, which no registry's own 400 lacks; a HEAD reads no body.
    return not response.headers


def _is_tls_protocol_error(exc: Optional[BaseException]) -> bool:
    """True when the server answered a TLS hello with something that is not TLS."""
    text = str(exc).lower()
    markers = ("wrong version number", "record layer failure", "unexpected eof", "http request")
    return isinstance(exc, httpx.ConnectError) and any(m in text for m in markers)


def _is_certificate_error(exc: Optional[BaseException]) -> bool:
    """True when the server's certificate was refused: permanent, so never retried."""
    seen = exc
    for _ in range(32):  # a chain is short; a cycle must not hang us
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _root_cause(exc: BaseException) -> str:
    """The OS's words for a failed connection ("Connection refused"), which httpx hides."""
    seen: BaseException | None = exc
    found = ""
    while seen is not None:
        if isinstance(seen, OSError) and (seen.errno or seen.strerror):
            found = os.strerror(seen.errno) if seen.errno else str(seen.strerror)
        seen = seen.__cause__ or seen.__context__
    return found


def _describe_transport_error(exc: httpx.TransportError, host: str) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"the TLS certificate of {host} is not trusted ({text.split(']')[-1].strip()}); "
            "pass --ca-file with its CA, or --insecure to skip verification"
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"{host} timed out ({type(exc).__name__})"
    # httpx's errors often have no text ("ReadError"): the OS's words are in the cause chain.
    detail = _root_cause(exc) or text or type(exc).__name__
    return detail if isinstance(exc, httpx.ConnectError) else f"{host}: {detail}"
