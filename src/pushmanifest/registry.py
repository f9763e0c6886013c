"""Async client for one registry: ping, HEAD/GET/PUT manifests, GET blobs, errors decoded.

One :class:`RegistryClient` per registry host holds one ``httpx.AsyncClient`` (one connection pool
with keep-alive) and one :class:`~pushmanifest.auth.TokenAuth`, so every request of a run shares
connections and tokens. Register every scope the run needs with :meth:`RegistryClient.add_scope`
before the first request: the token request made by :meth:`RegistryClient.ping` then asks for all
of them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import hashlib
import json
import logging
import os
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import httpx

from . import netbackend
from .auth import Credentials, TokenAuth
from .errors import (
    AuthenticationError,
    DigestMismatchError,
    NetworkError,
    RegistryError,
)
from .manifest import MANIFEST_MEDIA_TYPES, Descriptor, sha256_digest
from .reference import DOCKER_HUB_DOMAIN, Reference

log = logging.getLogger("pushmanifest")

#: The OCI image spec's limit for a manifest; a larger body is refused rather than read.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024

ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)

#: Statuses that say "try again": timeouts, throttling, gateways and overload.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest a Retry-After may make us wait, whatever the registry asks.
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class ClientOptions:
    """How to reach registries; shared by every :class:`RegistryClient` of a run."""

    plain_http: bool = False
    insecure: bool = False
    ca_file: Optional[str] = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_concurrency: int = 16
    #: Attempts per request (1 = no retry) and the first backoff in seconds (doubling).
    retries: int = 5
    backoff: float = 0.5
    #: Replaces the network transport (tests: respx, fault injection).
    transport: Optional[httpx.AsyncBaseTransport] = None
    user_agent: str = "pushmanifest"


class RegistryClient:
    """Talks to one registry. Use as an async context manager, or call :meth:`aclose`."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Optional[Credentials] = None,
        options: Optional[ClientOptions] = None,
    ) -> None:
        self.registry = registry
        self.options = options or ClientOptions()
        self.credentials = credentials
        self.host = Reference(registry=registry, repository="x").api_host
        self.loopback = Reference(registry=registry, repository="x").is_loopback
        self._is_docker_hub = registry == DOCKER_HUB_DOMAIN
        self.auth = TokenAuth(
            credentials,
            allow_insecure_credentials=self.options.plain_http or self.options.insecure,
        )
        self._scheme: Optional[str] = None  # loopback: learnt by the ping
        if self.options.plain_http:
            self._scheme = "http"
        elif not self.loopback:
            self._scheme = "https"
        self._ping_lock = asyncio.Lock()
        self._pinged = False
        self._limit = asyncio.Semaphore(max(1, self.options.max_concurrency))
        self._client = self._make_client()

    @property
    def user(self) -> Optional[str]:
        return self.credentials.username if self.credentials else None

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client this one sends through (its connection pool; for tests)."""
        return self._client

    def _make_client(self) -> httpx.AsyncClient:
        opts = self.options
        verify: ssl.SSLContext | bool
        if opts.insecure:
            verify = False
        elif opts.ca_file:
            verify = ssl.create_default_context(cafile=opts.ca_file)
        else:
            verify = True
        limit = max(1, opts.max_concurrency)
        client = httpx.AsyncClient(
            auth=self.auth,
            verify=verify,
            timeout=httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            headers={"User-Agent": opts.user_agent},
            transport=opts.transport,
            # Blob GETs redirect to storage hosts; httpx drops Authorization on a cross-origin
            # redirect, which is what we want.
            follow_redirects=True,
        )
        netbackend.install(client)
        return client

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def add_scope(self, repository: str, actions: str) -> None:
        """Ask for ``actions`` ("pull" or "pull,push") on ``repository`` in the run's token."""
        self.auth.add_scopes([f"repository:{repository}:{actions}"])

    def image(self, repository: str, reference: str = "") -> str:
        """How messages name an image of this registry: ``host/repo[:tag|@digest]``."""
        name = Reference(registry=self.registry, repository=repository).familiar()
        if not reference:
            return name
        sep = "@" if ":" in reference else ":"
        return f"{name}{sep}{reference}"

    # -- connection set-up ------------------------------------------------------------------

    async def ping(self) -> None:
        """Learn the scheme and the auth the registry wants; fetch the run's token once."""
        async with self._ping_lock:
            if self._pinged:
                return
            self._pinged = True
            if self.credentials is None and self._scheme is not None and not self._is_docker_hub:
                # Without credentials a push only works on an open registry, and there the ping
                # teaches nothing: skip its round trip. Should a 401 come anyway (anonymous pulls
                # from a token registry), the auth flow still answers it, at a few extra requests.
                return
            response = await self._ping_once()
            if response.status_code == 401:
                await self.auth.prime(self._client, response)
            elif response.status_code >= 400 and response.status_code != 404:
                # Some registries answer /v2/ with 404 or 403; they still serve the API below it.
                log.debug("ping %s answered %d", self.host, response.status_code)

    async def _ping_once(self) -> httpx.Response:
        if self._scheme is None:
            # As Docker does for loopback registries: HTTPS first, plain HTTP when the server
            # does not speak TLS at all (a certificate error stays an error).
            try:
                response = await self._send_ping("https")
                self._scheme = "https"
                return response
            except NetworkError as exc:
                if not _is_tls_protocol_error(exc.__cause__):
                    raise
                log.debug("%s does not speak TLS; using plain HTTP", self.host)
                self._scheme = "http"
        return await self._send_ping(self._scheme)

    async def _send_ping(self, scheme: str) -> httpx.Response:
        url = f"{scheme}://{self.host}/v2/"
        # The ping goes without auth: its 401 is how we learn the challenge.
        response, _ = await self._request(
            "GET",
            url,
            operation="reach",
            image=self.host,
            auth=None,
            cap=MAX_ERROR_BYTES,
            retry=scheme == "http" or not self.loopback or self._scheme is not None,
        )
        return response

    async def _api(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, bytes]:
        """A request to ``/v2/<path>``, once the ping has set up scheme and auth."""
        await self.ping()
        return await self._request(method, self._url(path), **kwargs)

    def _url(self, path: str) -> str:
        assert self._scheme is not None, "ping() first"
        return f"{self._scheme}://{self.host}/v2/{path}"

    # -- manifests --------------------------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str) -> Optional[Descriptor]:
        """Digest, size and media type of a manifest without downloading it; None when absent.

        Falls back to a GET (and hashes the body) only when the registry leaves out the headers.
        A HEAD does not count against Docker Hub's pull rate limit; a GET does.
        """
        image = self.image(repository, reference)
        response, _ = await self._api(
            "HEAD",
            f"{repository}/manifests/{reference}",
            headers={"Accept": ACCEPT_MANIFESTS},
            operation="resolve",
            image=image,
            cap=MAX_ERROR_BYTES,
        )
        if response.status_code == 404:
            return None
        self._raise_for_status(response, "resolve", image)
        digest = response.headers.get("Docker-Content-Digest", "")
        length = response.headers.get("Content-Length", "")
        media_type = _media_type(response.headers)
        if not digest or not length.isdigit() or not media_type:
            log.debug("%s: HEAD without digest/size/type headers; falling back to GET", image)
            _, descriptor = await self.get_manifest(repository, reference)
            return descriptor
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(
                f"{image}: the registry answered with digest {digest}",
                operation="resolve",
                image=image,
            )
        return Descriptor(media_type=media_type, digest=digest, size=int(length))

    async def get_manifest(self, repository: str, reference: str) -> tuple[bytes, Descriptor]:
        """The manifest's exact bytes, checked against the digest asked for or announced."""
        image = self.image(repository, reference)
        response, body = await self._api(
            "GET",
            f"{repository}/manifests/{reference}",
            headers={"Accept": ACCEPT_MANIFESTS},
            operation="read the manifest of",
            image=image,
            cap=MAX_MANIFEST_BYTES,
        )
        self._raise_for_status(response, "read the manifest of", image, body)
        digest = sha256_digest(body)
        expected = reference if reference.startswith("sha256:") else None
        expected = expected or response.headers.get("Docker-Content-Digest") or None
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatchError(
                f"{image}: the manifest's content hashes to {digest}, not {expected}",
                operation="read",
                image=image,
            )
        media_type = _media_type(response.headers) or _media_type_of_body(body)
        return body, Descriptor(media_type=media_type, digest=digest, size=len(body))

    async def get_blob(self, repository: str, digest: str, *, cap: int = MAX_CONFIG_BYTES) -> bytes:
        """A (small) blob such as an image config, checked against its digest."""
        image = self.image(repository, digest)
        response, body = await self._api(
            "GET",
            f"{repository}/blobs/{digest}",
            operation="read the config of",
            image=image,
            cap=cap,
        )
        self._raise_for_status(response, "read blob of", image, body)
        if digest.startswith("sha256:") and sha256_digest(body) != digest:
            raise DigestMismatchError(
                f"{image}: blob content does not match its digest",
                operation="read",
                image=image,
            )
        return body

    async def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> str:
        """PUT a manifest; returns its digest after checking the registry computed the same."""
        image = self.image(repository, reference)
        response, body = await self._api(
            "PUT",
            f"{repository}/manifests/{reference}",
            headers={"Content-Type": media_type},
            content=data,
            operation="push",
            image=image,
            cap=MAX_ERROR_BYTES,
        )
        self._raise_for_status(response, "push", image, body)
        local = sha256_digest(data)
        remote = response.headers.get("Docker-Content-Digest")
        if remote and remote != local:
            raise DigestMismatchError(
                f"{image}: the registry stored digest {remote}, but the list pushed is {local}",
                operation="push",
                image=image,
            )
        return local

    # -- blobs ------------------------------------------------------------------------------

    async def head_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository already holds the blob (a HEAD, no download)."""
        image = self.image(repository, digest)
        response, _ = await self._api(
            "HEAD",
            f"{repository}/blobs/{digest}",
            operation="check blob of",
            image=image,
            cap=MAX_ERROR_BYTES,
        )
        if response.status_code == 404:
            return False
        self._raise_for_status(response, "check blob of", image)
        return True

    async def mount_blob(
        self, repository: str, digest: str, source_repository: str
    ) -> Optional[str]:
        """Mount a blob from another repository of this registry: no bytes move.

        Returns None when mounted (201), or the upload URL of the session the registry opened
        instead (202: it refused the mount), which the caller must fill or delete.
        """
        image = self.image(repository, digest)
        response, body = await self._api(
            "POST",
            f"{repository}/blobs/uploads/",
            params={"mount": digest, "from": source_repository},
            operation="mount blob into",
            image=image,
            cap=MAX_ERROR_BYTES,
        )
        self._raise_for_status(response, "mount blob into", image, body)
        if response.status_code == 201:
            return None
        return self._upload_location(response, image)

    async def start_upload(self, repository: str) -> str:
        """Open an upload session; returns its URL."""
        image = self.image(repository)
        response, body = await self._api(
            "POST",
            f"{repository}/blobs/uploads/",
            operation="push blob to",
            image=image,
            cap=MAX_ERROR_BYTES,
            retry=False,  # each POST would open a session of its own
        )
        self._raise_for_status(response, "push blob to", image, body)
        return self._upload_location(response, image)

    def _upload_location(self, response: httpx.Response, image: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(
                f"cannot push blob to {image}: the registry opened an upload without a Location",
                operation="push blob to",
                image=image,
            )
        return str(response.url.join(location))

    async def upload_blob(
        self, location: str, digest: str, size: int, chunks: AsyncIterator[bytes], image: str
    ) -> None:
        """Finish an upload session with the whole blob in one monolithic PUT, streamed."""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        response, body = await self._request(
            "PUT",
            str(url),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=chunks,
            operation="push blob to",
            image=image,
            cap=MAX_ERROR_BYTES,
            retry=False,  # a stream cannot be sent twice
        )
        self._raise_for_status(response, "push blob to", image, body)

    async def delete_upload(self, location: str) -> None:
        """Cancel an upload session (best effort: it expires on its own too)."""
        try:
            await self._client.delete(location)
        except httpx.HTTPError as exc:
            log.debug("could not cancel upload %s: %s", location, exc)

    @contextlib.asynccontextmanager
    async def open_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a blob, in constant memory, checking its digest as it streams.

        The digest check raises at the end of the stream, before the consumer (an upload) can
        complete, so a corrupt blob is never committed under its digest.
        """
        await self.ping()
        image = self.image(repository, digest)
        request = self._client.build_request("GET", self._url(f"{repository}/blobs/{digest}"))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot read blob {image}: {_describe_transport_error(exc, self.host)}",
                operation="read blob",
                image=image,
            ) from exc
        try:
            if response.status_code >= 400:
                body = await _read_capped(response, MAX_ERROR_BYTES, image)
                self._raise_for_status(response, "read blob", image, body)

            async def chunks() -> AsyncIterator[bytes]:
                hasher = hashlib.sha256()
                async for chunk in response.aiter_bytes(1 << 16):
                    hasher.update(chunk)
                    yield chunk
                if f"sha256:{hasher.hexdigest()}" != digest and digest.startswith("sha256:"):
                    raise DigestMismatchError(
                        f"{image}: blob content does not match its digest",
                        operation="read blob",
                        image=image,
                    )

            yield chunks()
        finally:
            await response.aclose()

    # -- transport --------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        image: str,
        cap: int,
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, str]] = None,
        content: Union[bytes, AsyncIterator[bytes], None] = None,
        auth: object = httpx.USE_CLIENT_DEFAULT,
        retry: bool = True,
    ) -> tuple[httpx.Response, bytes]:
        """Send one request, retrying what is safe to retry, and read at most ``cap`` bytes.

        Every request we make is idempotent (HEAD, GET, PUT of a manifest by tag or digest), so
        connection failures, timeouts, 408, 429 and 5xx gateway errors are retried with
        exponential backoff and jitter, honouring Retry-After.
        """
        attempts = max(1, self.options.retries) if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response, body = await self._attempt(
                    method, url, operation, image, cap, headers, params, content, auth
                )
            except NetworkError as exc:
                if attempt == attempts or _is_tls_protocol_error(exc.__cause__):
                    raise
                cause = exc.__cause__
                if isinstance(cause, httpx.TransportError):
                    reason = _describe_transport_error(cause, self.host)
                else:
                    reason = str(exc)
                wait = None
            else:
                if response.status_code not in RETRY_STATUSES or attempt == attempts:
                    return response, body
                reason = f"HTTP {response.status_code}"
                wait = _retry_after(response.headers.get("Retry-After"))
            delay = self._backoff(attempt, wait)
            log.warning(
                "%s %s: %s; retry %d of %d in %.1f s",
                method,
                image,
                reason,
                attempt,
                attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        base = self.options.backoff
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        # Full jitter: concurrent requests that failed together do not retry together.
        return random.uniform(0, base * 2 ** (attempt - 1)) + base / 2

    async def _attempt(
        self,
        method: str,
        url: str,
        operation: str,
        image: str,
        cap: int,
        headers: Optional[Mapping[str, str]],
        params: Optional[Mapping[str, str]],
        content: Union[bytes, AsyncIterator[bytes], None],
        auth: object,
    ) -> tuple[httpx.Response, bytes]:
        request = self._client.build_request(
            method, url, headers=headers, params=params, content=content
        )
        async with self._limit:
            try:
                response = await self._client.send(
                    request,
                    auth=auth,  # type: ignore[arg-type]
                    stream=True,
                )
                try:
                    body = await _read_capped(response, cap, image)
                finally:
                    await response.aclose()
            except AuthenticationError:
                raise
            except httpx.TransportError as exc:
                raise NetworkError(
                    f"cannot {operation} {image}: {_describe_transport_error(exc, self.host)}",
                    operation=operation,
                    image=image,
                ) from exc
        for warning in response.headers.get_list("Warning"):
            log.warning("%s: registry warning: %s", self.host, warning)
        if log.isEnabledFor(logging.DEBUG):
            limit = rate_limit(response.headers)
            suffix = f" ({limit})" if limit else ""
            log.debug("%s %s -> %d%s", method, url, response.status_code, suffix)
        return response, body

    def _raise_for_status(
        self, response: httpx.Response, operation: str, image: str, body: bytes = b""
    ) -> None:
        if response.status_code < 400:
            return
        raise decode_error(
            response.status_code,
            body,
            operation=operation,
            image=image,
            user=self.user,
            rate_limit=rate_limit(response.headers),
        )


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


@dataclass(frozen=True)
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
            if isinstance(detail, (str, int)) and str(detail) and str(detail) not in message:
                message = f"{message}: {detail}" if message else str(detail)
            return code, message[:300]
        for key in ("details", "detail", "message", "error"):
            if isinstance(data.get(key), str):
                return None, str(data[key])[:300]
    return None, ""


async def _read_capped(response: httpx.Response, cap: int, image: str) -> bytes:
    if response.request.method == "HEAD":
        # A HEAD response has no body, but httpx returns the connection to the pool only
        # once the response has been read: closing it unread would drop the connection.
        await response.aread()
        return b""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap and response.status_code < 400:
        raise RegistryError(
            f"{image}: the registry sent {declared} bytes, more than the {cap} allowed",
            image=image,
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > cap:
            if response.status_code >= 400:
                # An oversized error body is truncated, not an error of its own.
                break
            raise RegistryError(
                f"{image}: the registry sent more than the {cap} bytes allowed", image=image
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Retry-After in seconds, or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _media_type(headers: httpx.Headers) -> str:
    value: str = headers.get("Content-Type", "")
    return value.split(";", 1)[0].strip()


def _media_type_of_body(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    value = data.get("mediaType", "") if isinstance(data, dict) else ""
    return value if isinstance(value, str) else ""


def _is_tls_protocol_error(exc: Optional[BaseException]) -> bool:
    """True when the server answered a TLS hello with something that is not TLS."""
    text = str(exc).lower()
    markers = ("wrong version number", "record layer failure", "unexpected eof", "http request")
    return isinstance(exc, httpx.ConnectError) and any(m in text for m in markers)


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
