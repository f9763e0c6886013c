"""One registry's connection: scheme, auth, connection pool, and requests with retries.

:class:`Connection` is the base of :class:`~pushmanifest.registry.RegistryClient`: it learns the
scheme and the auth a registry wants (the ping), sends requests, retries what is safe to retry
(backoff with jitter, Retry-After), bounds each answer in size and time, and turns a failure
status into a decoded error.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import email.utils
import logging
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Callable, Optional, TypeVar, Union

import httpx

from .. import netbackend
from ..auth import Credentials, TokenAuth
from ..errors import AuthenticationError, NetworkError
from ..reference import DOCKER_HUB_DOMAIN, Reference
from .bodies import MAX_ERROR_BYTES, _read_capped
from .failures import (
    DocumentTooSlowError,
    UploadRestart,
    _describe_transport_error,
    _error_code_and_message,
    _https_port_answer,
    _is_certificate_error,
    _is_tls_protocol_error,
    _request_error,
    _suffix,
    decode_error,
    rate_limit,
)
from .options import ClientOptions
from .pool import install as install_pool

log = logging.getLogger("pushmanifest")
T = TypeVar("T")
_Self = TypeVar("_Self", bound="Connection")

#: Statuses that say "try again": timeouts, throttling, gateways and overload.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest a Retry-After may make us wait, whatever the registry asks.
MAX_RETRY_AFTER = 60.0
#: Set in a warm-up's task (see .warmup): its requests are tried once and say nothing (no retry
#: warnings); what failed is left for the run to meet again, and report.
QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("pushmanifest_quiet", default=False)


class Connection:
    """Requests to one registry; the base of :class:`~pushmanifest.registry.RegistryClient`."""

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
        #: "<scheme>://<host>/v2/" and its httpx.URL (see _parsed_url); None: not made yet, or
        #: not usable with this version of httpx.
        self._v2_url: Optional[tuple[str, httpx.URL]] = None
        self._v2_url_usable = True

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
        # httpx hands every answer to http.cookiejar, wrapped with its request, to find what
        # is almost never there (~10% of a HEAD's CPU): looked at only where a cookie is set.
        client._cookies = _CookiesWhereSet(client.cookies)
        netbackend.install(client)
        install_pool(client)  # after the backend: the pool keeps the caching one
        return client

    async def __aenter__(self: _Self) -> _Self:
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
        if self._pinged:  # every request asks: no lock once it is done
            return
        async with self._ping_lock:
            if self._pinged:
                return
            # Without credentials a push only works on an open registry, and there the ping
            # teaches nothing: skip its round trip. Should a 401 come anyway (anonymous pulls
            # from a token registry), the auth flow still answers it, at a few extra requests.
            needed = self.credentials is not None or self._is_docker_hub
            response = await self._ping_once(needed)
            status = response.status_code if response is not None else 0
            if response is not None and status == 401:
                # The token answer is a small document too: bounded in all.
                await self._within_limit(
                    self.auth.prime(self._client, response), "authenticate with", self.host
                )
            elif status >= 400 and status != 404:
                # Some registries answer /v2/ with 404 or 403; they still serve the API below it.
                log.debug("ping %s answered %d", self.host, status)
            # Only once it succeeded: a ping that failed ahead of the run (see .warmup) is made
            # again by the run, which reports its failure.
            self._pinged = True

    async def _ping_once(self, needed: bool) -> Optional[httpx.Response]:
        """The ping's answer; None where it is not ``needed`` and the scheme is known."""
        if self._scheme is not None:
            return await self._send_ping(self._scheme) if needed else None
        # A loopback registry: as Docker does, HTTPS first, plain HTTP when the server does not
        # speak TLS at all (a certificate error stays an error). Where the ping is needed, its
        # plain-HTTP form goes at the same time (without auth: it carries no secret), so that
        # the probe costs no round trip of its own; its answer is used only if TLS failed.
        plain = asyncio.ensure_future(self._send_ping("http")) if needed else None
        try:
            response = await self._send_ping("https")
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
            if plain is None:
                return None
            return await plain
        finally:
            if plain is not None and not (plain.done() and self._scheme == "http"):
                plain.cancel()
                # Its outcome is not wanted (TLS answered, or failed otherwise): retrieved.
                await asyncio.gather(plain, return_exceptions=True)
        self._scheme = "https"
        return response

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

    def _url(self, path: str) -> str:
        assert self._scheme is not None, "ping() first"
        return f"{self._scheme}://{self.host}/v2/{path}"

    #: What a path may hold to be added to a parsed URL as it is: characters httpx leaves
    #: unquoted in a path (no "%", "?", "#").
    _PLAIN_PATH = frozenset(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"
    )

    def _parsed_url(self, url: str) -> Union[str, httpx.URL]:
        """``url`` as the httpx.URL it parses to, made from this registry's parsed ``/v2/`` URL
        where it only adds a plain path to it (httpx parses and checks a URL string character
        by character: ~17 us of a HEAD's ~600 us of CPU); else ``url`` itself, which httpx
        parses. The first one made is checked against httpx's own parse (a version of httpx
        whose URLs are built otherwise is left to parse them all)."""
        if not self._v2_url_usable:
            return url
        prefix = f"{self._scheme}://{self.host}/v2/"
        rest = url[len(prefix) :]
        if (
            not url.startswith(prefix)
            or not rest
            or "/." in "/" + rest  # dot segments: httpx removes them
            or "//" in rest
            or not self._PLAIN_PATH.issuperset(rest)
        ):
            return url
        first = self._v2_url is None or self._v2_url[0] != prefix
        if first:
            self._v2_url = (prefix, httpx.URL(prefix))
        assert self._v2_url is not None
        try:
            base = self._v2_url[1]._uri_reference
            parsed = httpx.URL(self._v2_url[1])
            parsed._uri_reference = base._replace(path=base.path + rest)
        except (AttributeError, TypeError, ValueError):
            self._v2_url_usable = False
            return url
        if first and (parsed != httpx.URL(url) or str(parsed) != url):
            self._v2_url_usable = False
            return url
        return parsed

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
        attempts = max(1, self.options.retries) if retry and not QUIET.get() else 1

        target = self._parsed_url(url)

        def build() -> httpx.Request:  # afresh for each attempt: auth sets its headers
            return self._client.build_request(
                method, target, headers=headers, params=params, content=content
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

        async def exchange() -> tuple[httpx.Response, bytes]:
            # Built once the request may go: a bulk run's hundreds of waiting requests hold no
            # request objects (peak memory).
            request = build()
            response = await self._client.send(
                request,
                auth=auth,  # type: ignore[arg-type]
                stream=True,
            )
            try:
                return response, await _read_capped(response, cap, image, raw=raw)
            finally:
                await response.aclose()
                # httpx's stream refers back to its response (a cycle): left in place, every
                # answer, its request and their headers (a 5 KiB token each) lived on until the
                # cyclic GC ran: 230 requests at the peak of a bulk run with 64 in flight. Once
                # closed, the stream is of no more use (a read raises StreamConsumed either way).
                response.stream = httpx.ByteStream(b"")

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
        for warning in response.headers.get_list("Warning") if not QUIET.get() else ():
            log.warning("%s: registry warning: %s", self.host, warning)
        if log.isEnabledFor(logging.DEBUG):
            limit = rate_limit(response.headers)
            suffix = f" ({limit})" if limit else ""
            sent = response.request
            log.debug("%s %s -> %d%s", sent.method, sent.url, response.status_code, suffix)
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
            if sys.version_info >= (3, 11):
                # In this task: wait_for would make a task of its own for every request.
                async with asyncio.timeout(limit):
                    return await work
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


class _CookiesWhereSet(httpx.Cookies):
    """httpx's cookie jar, which reads an answer's cookies only where it has a Set-Cookie
    header (http.cookiejar reads nothing else: no other answer changes the jar)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "Set-Cookie" in headers or "Set-Cookie2" in headers:
            super().extract_cookies(response)


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
