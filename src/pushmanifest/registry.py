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
import functools
import hashlib
import json
import logging
import os
import random
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, Union

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
T = TypeVar("T")

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
    #: Seconds one small document (manifest, config, token, error body; a blob's headers) may
    #: take in all, however steadily its bytes trickle. None: twice read_timeout, at least 60.
    document_timeout: Optional[float] = None
    #: A blob stream that delivers less than this many bytes per second, measured over each
    #: window of blob_rate_window seconds spent waiting for it, is given up.
    blob_min_rate: float = 10 * 1024
    blob_rate_window: float = 30.0

    @property
    def document_limit(self) -> float:
        if self.document_timeout is not None:
            return self.document_timeout
        return max(60.0, 2 * self.read_timeout)

    @functools.cached_property
    def tls_verify(self) -> Union[ssl.SSLContext, bool]:
        """How the run's clients verify TLS: False with ``insecure``, else one context shared by
        every client of these options, trusting the system store plus ``ca_file`` (see
        :mod:`pushmanifest.tls`). Raises InputError for an unreadable ``ca_file``."""
        if self.insecure:
            return False
        from .tls import client_context

        return client_context(self.ca_file)


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
        #: Learnt in this run: the registry refuses HEAD on manifests; GET instead.
        self._head_refused = False
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
        verify = opts.tls_verify
        limit = max(1, opts.max_concurrency)
        client = httpx.AsyncClient(
            auth=self.auth,
            verify=verify,
            timeout=httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            # identity: a compressed answer could expand past our caps (see _read_capped).
            headers={"User-Agent": opts.user_agent, "Accept-Encoding": "identity"},
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
                # The token answer is a small document too: bounded in all.
                await self._within_limit(
                    self.auth.prime(self._client, response), "authenticate with", self.host
                )
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
                if isinstance(exc.__cause__, httpx.ConnectTimeout):
                    # On loopback a TCP connect is instant: what hung is the TLS handshake, as
                    # a plain-HTTP server waiting for a request line does.
                    raise NetworkError(
                        f"cannot reach {self.host}: it did not answer the TLS handshake within "
                        f"{self.options.connect_timeout:g} s; if it serves plain HTTP, pass "
                        "--plain-http",
                        operation="reach",
                        image=self.host,
                    ) from exc.__cause__
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

    async def _call(
        self,
        method: str,
        repository: str,
        path: str,
        reference: str,
        *,
        operation: str,
        cap: int = MAX_ERROR_BYTES,
        returned: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> tuple[httpx.Response, bytes]:
        """``method /v2/<repository>/<path>``, about ``reference`` (which errors name); a
        failure status raised as a decoded error, but those in ``returned`` returned (a 404 where
        absence is an answer)."""
        image = self.image(repository, reference)
        response, body = await self._api(
            method, f"{repository}/{path}", operation=operation, image=image, cap=cap, **kwargs
        )
        if response.status_code not in returned:
            self._raise_for_status(response, operation, image, body)
        return response, body

    async def _manifest_call(
        self,
        method: str,
        repository: str,
        reference: str,
        operation: str,
        *,
        cap: int,
        media_type: str = "",
        **kwargs: Any,
    ) -> tuple[httpx.Response, bytes]:
        """A request for ``repository``'s manifest ``reference``: any list or image type
        accepted, or (a PUT) ``media_type`` sent."""
        headers = {"Content-Type": media_type} if media_type else {"Accept": ACCEPT_MANIFESTS}
        return await self._call(
            method,
            repository,
            f"manifests/{reference}",
            reference,
            operation=operation,
            cap=cap,
            headers=headers,
            **kwargs,
        )

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
        if self._head_refused:
            return await self._get_as_head(repository, reference)
        response, _ = await self._manifest_call(
            "HEAD",
            repository,
            reference,
            "resolve",
            cap=MAX_ERROR_BYTES,
            returned=(404, 405, 501),  # 405/501: a registry refusing HEAD (GET instead)
        )
        if response.status_code in (405, 501):
            self._refuse_head(response.status_code)
            return await self._get_as_head(repository, reference)
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        length = response.headers.get("Content-Length", "")
        media_type = _media_type(response.headers)
        if not digest or not length.isdigit() or not media_type:
            log.debug("%s: HEAD without digest/size/type headers; falling back to GET", image)
            _, descriptor = await self.get_manifest(repository, reference)
            return descriptor
        if reference.startswith("sha256:") and digest != reference:
            raise _mismatch(image, f"the registry answered with digest {digest}", "resolve")
        return Descriptor(media_type=media_type, digest=digest, size=int(length))

    async def confirm_absent(self, repository: str, reference: str) -> Optional[Descriptor]:
        """After a HEAD said 404: a GET, for registries whose HEAD says 404 while GET works.

        Returns the descriptor when the GET finds the manifest (and reads manifests with GET
        for the rest of the run), None when it is absent indeed.
        """
        if self._head_refused:
            return None  # that answer came from a GET already
        found = await self._get_as_head(repository, reference)
        if found is not None:
            self._refuse_head(404)
        return found

    def _refuse_head(self, status: int) -> None:
        if self._head_refused:
            return
        self._head_refused = True
        log.warning(
            "%s answers HEAD on manifests with %d but GET works: reading manifests with GET for "
            "the rest of this run (a GET counts against pull quotas such as Docker Hub's)",
            self.host,
            status,
        )

    async def _get_as_head(self, repository: str, reference: str) -> Optional[Descriptor]:
        try:
            _, descriptor = await self.get_manifest(repository, reference)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return descriptor

    async def get_manifest(self, repository: str, reference: str) -> tuple[bytes, Descriptor]:
        """The manifest's exact bytes, checked against the digest asked for or announced."""
        image = self.image(repository, reference)
        response, body = await self._manifest_call(
            "GET", repository, reference, "read the manifest of", cap=MAX_MANIFEST_BYTES
        )
        digest = sha256_digest(body)
        expected = reference if reference.startswith("sha256:") else None
        expected = expected or response.headers.get("Docker-Content-Digest") or None
        if expected and expected.startswith("sha256:") and expected != digest:
            raise _mismatch(image, f"the manifest's content hashes to {digest}, not {expected}")
        media_type = _media_type(response.headers) or _media_type_of_body(body)
        return body, Descriptor(media_type=media_type, digest=digest, size=len(body))

    async def get_blob(self, repository: str, digest: str, *, cap: int = MAX_CONFIG_BYTES) -> bytes:
        """A (small) blob such as an image config, checked against its digest."""
        image = self.image(repository, digest)
        response, body = await self._call(
            "GET", repository, f"blobs/{digest}", digest, operation="read blob", cap=cap, raw=True
        )
        encoding = response.headers.get("Content-Encoding", "")
        if encoding and digest.startswith("sha256:") and sha256_digest(body) != digest:
            # Read raw, as a blob is (storage labels .tar.gz objects "gzip"); a server that
            # really compressed a plain blob on the way is undone here, within the same cap.
            decoder = _BoundedDecoder(encoding, cap, image)
            body = b"".join(decoder.decode(body))
        if digest.startswith("sha256:") and sha256_digest(body) != digest:
            raise _mismatch(image, "blob content does not match its digest")
        return body

    async def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> str:
        """PUT a manifest; returns its digest after checking the registry computed the same."""
        image = self.image(repository, reference)
        response, _ = await self._manifest_call(
            "PUT",
            repository,
            reference,
            "push",
            cap=MAX_ERROR_BYTES,
            content=data,
            media_type=media_type,
        )
        local = sha256_digest(data)
        remote = response.headers.get("Docker-Content-Digest")
        if remote and remote != local:
            raise _mismatch(
                image,
                f"the registry stored digest {remote}, but the list pushed is {local}",
                "push",
            )
        return local

    # -- blobs ------------------------------------------------------------------------------

    async def head_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository already holds the blob (a HEAD, no download)."""
        response, _ = await self._call(
            "HEAD", repository, f"blobs/{digest}", digest, operation="check blob", returned=(404,)
        )
        return response.status_code != 404

    async def mount_blob(
        self, repository: str, digest: str, source_repository: str
    ) -> Optional[str]:
        """Mount a blob from another repository of this registry: no bytes move.

        Returns None when mounted (201), or the upload URL of the session the registry opened
        instead (202: it refused the mount), which the caller must fill or delete.
        """
        response, _ = await self._call(
            "POST",
            repository,
            "blobs/uploads/",
            digest,
            operation="mount blob into",
            params={"mount": digest, "from": source_repository},
        )
        if response.status_code == 201:
            return None
        return self._upload_location(response, self.image(repository, digest))

    async def start_upload(self, repository: str) -> str:
        """Open an upload session; returns its URL."""
        response, _ = await self._call(
            "POST",
            repository,
            "blobs/uploads/",
            "",
            operation="push blob to",
            retry=False,  # each POST would open a session of its own
        )
        return self._upload_location(response, self.image(repository))

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
        """Fill an upload session from ``chunks`` and commit it; on any failure, cancel it.

        The blob goes in one PATCH whose body is streamed (chunked), then an empty PUT commits
        it. Should the source fail (a reset, a wrong digest) or the run be cancelled (a signal,
        ``--deadline``), the PATCH body is ended cleanly rather than cut: the registry then
        answers with the session's latest Location, and the session is deleted there. (A body
        cut short leaves the session's data out of step with the ``_state`` of every Location
        it gave, and distribution refuses to delete it: its partial data would stay.)
        """
        feed = _StoppableFeed(chunks)
        patch = asyncio.ensure_future(
            self._request(
                "PATCH",
                location,
                headers={"Content-Type": "application/octet-stream"},
                content=feed.body(),
                operation="push blob to",
                image=image,
                cap=MAX_ERROR_BYTES,
                retry=False,  # a stream cannot be sent twice
            )
        )
        try:
            response, body = await asyncio.shield(patch)
        except asyncio.CancelledError:
            feed.stop()
            await self._cancel_after(patch, location)
            raise
        except BaseException:
            await self.delete_upload(location)
            raise
        latest = self._next_location(response, location)
        if feed.failure is not None:
            await self.delete_upload(latest)
            raise feed.failure
        try:
            self._raise_for_status(response, "push blob to", image, body)
            url = httpx.URL(latest).copy_merge_params({"digest": digest})
            response, body = await self._request(
                "PUT",
                str(url),
                headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
                content=b"",
                operation="push blob to",
                image=image,
                cap=MAX_ERROR_BYTES,
                retry=False,  # a failed commit leaves the session in a state we cannot know
            )
            self._raise_for_status(response, "push blob to", image, body)
        except BaseException:
            await self.delete_upload(latest)
            raise

    async def _cancel_after(self, patch: asyncio.Future[Any], location: str) -> None:
        """The run was cancelled mid-upload: let the PATCH end, then delete its session."""
        latest = location
        try:
            response, _ = await asyncio.wait_for(patch, UPLOAD_CANCEL_SECONDS)
            latest = self._next_location(response, location)
        except BaseException as exc:
            log.debug("upload %s did not end cleanly: %r", location, exc)
        await asyncio.shield(self.delete_upload(latest))

    @staticmethod
    def _next_location(response: httpx.Response, location: str) -> str:
        """The session URL to use next: the one the registry just gave, else the one we had."""
        header = response.headers.get("Location")
        return str(response.url.join(header)) if header else location

    async def delete_upload(self, location: str) -> None:
        """Cancel an upload session (best effort: it expires on its own too)."""
        try:
            response = await asyncio.wait_for(self._client.delete(location), UPLOAD_CANCEL_SECONDS)
        except (httpx.HTTPError, asyncio.TimeoutError, AuthenticationError) as exc:
            log.debug("could not cancel upload %s: %r", location, exc)
            return
        if response.status_code >= 400 and response.status_code != 404:
            log.debug("cancelling upload %s answered %d", location, response.status_code)

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
            response = await self._within_limit(
                self._client.send(request, stream=True), "read blob", image
            )
        except httpx.TransportError as exc:
            raise self._network_error("read blob", image, exc) from exc
        except httpx.RequestError as exc:  # a redirect loop
            raise _request_error("read blob", image, exc) from exc
        try:
            if response.status_code >= 400:
                body = await self._within_limit(
                    _read_capped(response, MAX_ERROR_BYTES, image), "read blob", image
                )
                self._raise_for_status(response, "read blob", image, body)

            async def chunks() -> AsyncIterator[bytes]:
                # Raw bytes, never decoded: a blob is copied byte for byte, whatever
                # Content-Encoding its storage labels it with (.tar.gz objects as "gzip").
                hasher = hashlib.sha256()
                rate = _RateWatch(self.options, self.host, image)
                try:
                    # As received (a chunk size would make httpx hold bytes back until full).
                    async for chunk in rate.watch(response.aiter_raw()):
                        hasher.update(chunk)
                        yield chunk
                except httpx.TransportError as exc:
                    # Named as the source's failure: the upload it feeds is not to blame.
                    raise self._network_error("read blob", image, exc) from exc
                if f"sha256:{hasher.hexdigest()}" != digest and digest.startswith("sha256:"):
                    raise _mismatch(image, "blob content does not match its digest", "read blob")

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
        raw: bool = False,
    ) -> tuple[httpx.Response, bytes]:
        """Send one request, retrying what is safe to retry, and read at most ``cap`` bytes.

        Every request we make is idempotent (HEAD, GET, PUT of a manifest by tag or digest), so
        connection failures, timeouts, 408, 429 and 5xx gateway errors are retried with
        exponential backoff and jitter, honouring Retry-After.
        """
        attempts = max(1, self.options.retries) if retry else 1

        def build() -> httpx.Request:  # afresh for each attempt: auth sets its headers
            return self._client.build_request(
                method, url, headers=headers, params=params, content=content
            )

        small = isinstance(content, (bytes, type(None)))
        for attempt in range(1, attempts + 1):
            try:
                response, body = await self._attempt(build, small, operation, image, cap, auth, raw)
            except NetworkError as exc:
                if (
                    attempt == attempts
                    or _is_tls_protocol_error(exc.__cause__)
                    or _is_certificate_error(exc.__cause__)
                    or isinstance(exc, DocumentTooSlowError)  # would be as slow again
                ):
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
        build: Callable[[], httpx.Request],
        small: bool,
        operation: str,
        image: str,
        cap: int,
        auth: object,
        raw: bool,
    ) -> tuple[httpx.Response, bytes]:
        """One try of a request (``small``: a document, not a streamed upload)."""
        request = build()

        async def exchange() -> tuple[httpx.Response, bytes]:
            response = await self._client.send(
                request,
                auth=auth,  # type: ignore[arg-type]
                stream=True,
            )
            try:
                return response, await _read_capped(response, cap, image, raw=raw)
            finally:
                await response.aclose()

        async with self._limit:
            try:
                if small:
                    # A small document: bounded in all, not only per read.
                    response, body = await self._within_limit(exchange(), operation, image)
                else:  # a streamed blob upload: its source's rate is watched instead
                    response, body = await exchange()
            except AuthenticationError:
                raise
            except httpx.StreamConsumed as exc:
                # The auth flow met a 401 (a token refused mid-run, as GCR and Quay do) and would
                # send again a body that was streamed: the caller starts the upload over.
                raise UploadRestart(
                    f"cannot {operation} {image}: the registry refused the token in the middle "
                    "of a streamed upload (the upload was started over once)",
                    operation=operation,
                    image=image,
                    user=self.user,
                    status=401,
                ) from exc
            except httpx.TransportError as exc:
                raise self._network_error(operation, image, exc) from exc
            except httpx.RequestError as exc:  # a redirect loop: not worth a retry
                raise _request_error(operation, image, exc) from exc
        for warning in response.headers.get_list("Warning"):
            log.warning("%s: registry warning: %s", self.host, warning)
        if log.isEnabledFor(logging.DEBUG):
            limit = rate_limit(response.headers)
            suffix = f" ({limit})" if limit else ""
            log.debug("%s %s -> %d%s", request.method, request.url, response.status_code, suffix)
        return response, body

    def _network_error(self, operation: str, image: str, exc: httpx.TransportError) -> NetworkError:
        reason = _describe_transport_error(exc, self.host)
        return NetworkError(
            f"cannot {operation} {image}: {reason}", operation=operation, image=image
        )

    async def _within_limit(self, work: Awaitable[T], operation: str, image: str) -> T:
        """``work``, given up (NetworkError) once it has taken the document limit in all."""
        limit = self.options.document_limit
        try:
            return await asyncio.wait_for(work, limit)
        except asyncio.TimeoutError:
            raise DocumentTooSlowError(
                f"cannot {operation} {image}: {self.host} took more than {limit:g} s to answer "
                "(the limit for one document)",
                operation=operation,
                image=image,
            ) from None

    def _raise_for_status(
        self, response: httpx.Response, operation: str, image: str, body: bytes = b""
    ) -> None:
        if response.status_code < 400:
            return
        if response.status_code == 400 and _https_port_answer(response, body):
            raise NetworkError(
                f"cannot {operation} {image}: {self.host} speaks HTTPS, not plain HTTP "
                "(drop --plain-http)",
                operation=operation,
                image=image,
                status=400,
            )
        sent = response.request.headers.get("Authorization", "")
        if response.status_code == 401 and self.user and sent[:6].lower() == "basic ":
            # Basic auth has no other meaning for a 401: the user name or password is wrong.
            # (With a token, a 401 can be a scope the token lacks: decode_error says so.)
            _, detail = _error_code_and_message(body)
            raise AuthenticationError(
                f"authentication failed: {self.host} refused the credentials of user "
                f"'{self.user}'{_suffix(detail)}",
                operation="authenticate",
                image=image,
                user=self.user,
                status=401,
            )
        raise decode_error(
            response.status_code,
            body,
            operation=operation,
            image=image,
            user=self.user,
            rate_limit=rate_limit(response.headers),
        )


class UploadRestart(RegistryError):
    """A streamed upload met a 401 and a fresh token: its body cannot be sent again as is."""


#: Seconds a cancelled upload may take to end its body and delete its session.
UPLOAD_CANCEL_SECONDS = 10.0


class _StoppableFeed:
    """An upload body from a blob stream that ends cleanly when the source fails or on stop().

    The source's failure is kept in :attr:`failure` (raised by the uploader once the registry
    has answered), not raised into the HTTP client, which would cut the body short.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks.__aiter__()
        self._stopped = asyncio.Event()
        self.failure: Optional[BaseException] = None

    def stop(self) -> None:
        self._stopped.set()

    async def body(self) -> AsyncIterator[bytes]:
        while not self._stopped.is_set():
            read = asyncio.ensure_future(self._chunks.__anext__())
            stopping = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not read.done():
                read.cancel()
                with contextlib.suppress(BaseException):
                    await read
                return
            try:
                chunk = read.result()
            except StopAsyncIteration:
                return
            except Exception as exc:
                self.failure = exc
                return
            yield chunk


class DocumentTooSlowError(NetworkError):
    """A small document took longer than :attr:`ClientOptions.document_limit` in all."""


class _RateWatch:
    """Gives up a blob stream whose source delivers too little for too long.

    Only time spent waiting for the source counts (not the time the consumer, an upload, takes),
    so a slow target is never blamed on the source. A read timeout alone lets a server that
    sends a byte every few seconds take days.
    """

    def __init__(self, options: ClientOptions, host: str, image: str) -> None:
        self.min_rate = options.blob_min_rate
        self.window = options.blob_rate_window
        self.host = host
        self.image = image

    async def watch(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        waited = 0.0
        received = 0
        iterator = chunks.__aiter__()
        while True:
            started = time.monotonic()
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            waited += time.monotonic() - started
            received += len(chunk)
            if waited >= self.window:
                if received < self.min_rate * waited:
                    raise NetworkError(
                        f"cannot read blob {self.image}: {self.host} sent {received} bytes in "
                        f"{waited:.0f} s, less than the minimum of {self.min_rate:g} bytes/s",
                        operation="read blob",
                        image=self.image,
                    )
                waited, received = 0.0, 0
            yield chunk


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
            if isinstance(detail, dict) and isinstance(detail.get("message"), str):
                detail = detail["message"]  # Quay: "detail": {"message": "..."}
            if isinstance(detail, (str, int)) and str(detail) and str(detail) not in message:
                message = f"{message}: {detail}" if message else str(detail)
            return code, message[:300]
        for key in ("details", "detail", "message", "error"):
            if isinstance(data.get(key), str):
                return None, str(data[key])[:300]
    return None, ""


async def _read_capped(
    response: httpx.Response, cap: int, image: str, *, raw: bool = False
) -> bytes:
    """The body, at most ``cap`` bytes of it once decoded, in memory that stays near ``cap``.

    We ask for ``Accept-Encoding: identity``; a server that compresses anyway is decoded here, a
    bounded piece at a time (httpx's own decoders expand a whole chunk at once: 269 bytes of
    triple gzip become 1 GB), and the cap counts decoded bytes. ``raw``: the bytes as sent (a
    blob's, whose digest is over them), never decoded.
    """
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
    encoding = (
        "" if raw and response.status_code < 400 else response.headers.get("Content-Encoding", "")
    )
    decoder = _BoundedDecoder(encoding, cap, image)
    chunks: list[bytes] = []
    total = 0
    async for received in response.aiter_raw():
        for chunk in decoder.decode(received):
            total += len(chunk)
            if total > cap:
                if response.status_code >= 400:
                    # An oversized error body is truncated, not an error of its own.
                    return b"".join(chunks)
                raise RegistryError(
                    f"{image}: the registry sent more than the {cap} bytes allowed"
                    f"{decoder.describe()}",
                    image=image,
                )
            chunks.append(chunk)
    return b"".join(chunks)


#: Content-Encodings we decode (a server that ignores ``Accept-Encoding: identity``); others are
#: refused. Layers beyond this many are refused too: no registry stacks encodings.
_ZLIB_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
}
MAX_ENCODING_LAYERS = 4
#: The most one decoding step may produce at once.
_DECODE_PIECE = 64 * 1024


class _BoundedDecoder:
    """Undo a body's Content-Encoding layers a bounded piece at a time.

    Each layer's output is capped too (at ``cap`` plus a margin): an inner layer that expands to
    nothing (empty deflate blocks) would otherwise burn CPU without limit.
    """

    def __init__(self, header: str, cap: int, image: str) -> None:
        names = [n.strip().lower() for n in header.split(",") if n.strip()]
        names = [n for n in names if n != "identity"]
        self.names = names
        self.image = image
        if len(names) > MAX_ENCODING_LAYERS:
            raise RegistryError(
                f"{image}: the registry answered with {len(names)} layers of Content-Encoding "
                f"({header[:80]}); at most {MAX_ENCODING_LAYERS} are decoded",
                image=image,
            )
        unknown = [n for n in names if n not in _ZLIB_WBITS]
        if unknown:
            raise RegistryError(
                f"{image}: the registry answered with Content-Encoding {unknown[0]!r}, which "
                "pushmanifest does not decode (it asks for identity)",
                image=image,
            )
        # Encodings are listed in the order they were applied: undo the last one first.
        self._layers = [zlib.decompressobj(_ZLIB_WBITS[n]) for n in reversed(names)]
        self._produced = [0] * len(self._layers)
        self._layer_cap = cap + _DECODE_PIECE

    def describe(self) -> str:
        return f" (decoded from Content-Encoding {', '.join(self.names)})" if self.names else ""

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not self._layers:
            if data:
                yield data
            return
        yield from self._through(0, data)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._layers):
            yield data
            return
        layer = self._layers[index]
        while True:
            try:
                out = layer.decompress(data, _DECODE_PIECE)
            except zlib.error as exc:
                raise RegistryError(
                    f"{self.image}: the registry's {self.names[-1 - index]} answer does not "
                    f"decode ({exc})",
                    image=self.image,
                ) from None
            data = layer.unconsumed_tail
            if out:
                self._produced[index] += len(out)
                if self._produced[index] > self._layer_cap:
                    raise RegistryError(
                        f"{self.image}: the registry sent more than the "
                        f"{self._layer_cap - _DECODE_PIECE} bytes allowed{self.describe()}",
                        image=self.image,
                    )
                yield from self._through(index + 1, out)
            # A full piece may leave output pending inside zlib even with no input left.
            if not out or (not data and len(out) < _DECODE_PIECE):
                return


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
