"""Blobs: check, mount, stream from a source, and upload into a session that never dangles.

An upload's session is cancelled (deleted at its latest Location) on any failure, a signal or a
deadline included; see :meth:`BlobTransfers.upload_blob`. A source stream is given up when it
delivers too little for too long (:class:`_RateWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Optional

import httpx

from ..errors import AuthenticationError, NetworkError, RegistryError
from .bodies import MAX_ERROR_BYTES, _read_capped
from .connection import Connection
from .failures import _mismatch, _request_error
from .options import ClientOptions

log = logging.getLogger("pushmanifest")

#: Seconds a cancelled upload may take to end its body and delete its session.
UPLOAD_CANCEL_SECONDS = 10.0
#: upload_blob_in_chunks: the most bytes one PATCH carries (each streamed, never held).
UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024
#: upload_blob_in_chunks: the blob's last bytes, sent in a PATCH of their own once the source
#: has ended (and checked its digest), so that a corrupt blob is never sent whole.
UPLOAD_TAIL_BYTES = 1024 * 1024


class BlobTransfers(Connection):
    """The blob calls of :class:`~pushmanifest.registry.RegistryClient`."""

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
        response = await self._opening_session(
            self._call(
                "POST",
                repository,
                "blobs/uploads/",
                digest,
                operation="mount blob into",
                params={"mount": digest, "from": source_repository},
            )
        )
        if response.status_code == 201:
            return None
        return self._upload_location(response, self.image(repository, digest))

    async def start_upload(self, repository: str) -> str:
        """Open an upload session; returns its URL."""
        response = await self._opening_session(
            self._call(
                "POST",
                repository,
                "blobs/uploads/",
                "",
                operation="push blob to",
                retry=False,  # each POST would open a session of its own
            )
        )
        return self._upload_location(response, self.image(repository))

    async def _opening_session(
        self, post: Awaitable[tuple[httpx.Response, bytes]]
    ) -> httpx.Response:
        """A POST that may open an upload session, let end even when the run is cancelled.

        Cut short, the POST may still open a session on the registry whose URL we never learn:
        it would stay. Cancelled, we wait for the answer (at most UPLOAD_CANCEL_SECONDS) and
        delete the session it opened.
        """
        request = asyncio.ensure_future(post)
        try:
            response, _ = await asyncio.shield(request)
        except asyncio.CancelledError:
            await self._cancel_after(request, "", opening=True)
            raise
        return response

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
        it gave, and distribution refuses to delete it: its partial data would stay.) A
        cancellation during the commit lets the PUT end too before deleting: see
        :meth:`_cancel_after`.
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
        except BaseException:
            await self.delete_upload(latest)
            raise
        await self._commit(latest, digest, image)

    async def upload_blob_in_chunks(
        self, location: str, digest: str, size: int, chunks: AsyncIterator[bytes], image: str
    ) -> None:
        """Fill an upload session in PATCHes of at most UPLOAD_CHUNK_BYTES, then commit it.

        For a source whose size is known (a file): each PATCH has its Content-Range and
        Content-Length and a body streamed from ``chunks``, so memory stays constant. The last
        UPLOAD_TAIL_BYTES are read whole and sent only once ``chunks`` has ended, so a source
        that checks its digest at its end (and raises) fails before the registry holds the
        whole blob; the commit's PUT names the digest, which the registry checks again. On any
        failure or cancellation the session is deleted at its latest Location.
        """
        limit = max(1, UPLOAD_CHUNK_BYTES)
        source = _Pieces(chunks)
        latest = location
        tail = min(size, max(1, UPLOAD_TAIL_BYTES))
        start = 0
        deleted = False  # a PATCH cancelled in flight deletes its session itself
        try:
            while start < size:
                length = min(limit, size - tail - start) if start < size - tail else tail
                last = start + length == size
                body: Any = await source.read_all(length) if last else source.stream(length)
                if last:
                    await source.end(image)
                patch = asyncio.ensure_future(
                    self._request(
                        "PATCH",
                        latest,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{start}-{start + length - 1}",
                            "Content-Length": str(length),
                        },
                        content=body,
                        operation="push blob to",
                        image=image,
                        cap=MAX_ERROR_BYTES,
                        retry=False,  # a stream cannot be sent twice
                    )
                )
                try:
                    response, answer = await asyncio.shield(patch)
                except asyncio.CancelledError:
                    deleted = True
                    await self._cancel_after(patch, latest)
                    raise
                latest = self._next_location(response, latest)
                self._raise_for_status(response, "push blob to", image, answer)
                start += length
            if size == 0:
                await source.end(image)
        except BaseException:
            if not deleted:
                await asyncio.shield(self.delete_upload(latest))
            raise
        await self._commit(latest, digest, image)

    async def _commit(self, latest: str, digest: str, image: str) -> None:
        """The PUT that ends an upload session, with its digest; the session deleted on failure."""
        url = httpx.URL(latest).copy_merge_params({"digest": digest})
        commit = asyncio.ensure_future(
            self._request(
                "PUT",
                str(url),
                headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
                content=b"",
                operation="push blob to",
                image=image,
                cap=MAX_ERROR_BYTES,
                retry=False,  # a failed commit leaves the session in a state we cannot know
            )
        )
        try:
            response, body = await asyncio.shield(commit)
        except asyncio.CancelledError:
            await self._cancel_after(commit, latest, committing=True)
            raise
        except BaseException:
            await self.delete_upload(latest)
            raise
        try:
            self._raise_for_status(response, "push blob to", image, body)
        except BaseException:
            await self.delete_upload(latest)
            raise

    async def _cancel_after(
        self,
        request: asyncio.Future[Any],
        location: str,
        *,
        committing: bool = False,
        opening: bool = False,
    ) -> None:
        """The run was cancelled mid-upload: let the request in flight end, then delete its session.

        Never while the registry still handles that request: distribution resumes the session
        for every request, opening its ``data`` file with O_CREAT, so a DELETE that races the
        commit's PUT (which removes the session) leaves an empty ``data`` file behind that no
        request can reach. A commit that succeeded leaves no session to delete (its Location is
        the blob's, never to be deleted); nor does a POST that mounted the blob (201) or failed.
        """
        latest = location
        try:
            response, _ = await asyncio.wait_for(request, UPLOAD_CANCEL_SECONDS)
        except BaseException as exc:
            log.debug("upload %s did not end cleanly: %r", location, exc)
        else:
            if committing:
                if response.status_code < 400:
                    return
            elif opening and response.status_code != 202:
                return
            else:
                latest = self._next_location(response, location)
        if latest:
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


class _Pieces:
    """A blob stream cut into given lengths: PATCH bodies streamed, or the tail read whole."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks.__aiter__()
        self._held = b""

    async def _next(self) -> bytes:
        if self._held:
            piece, self._held = self._held, b""
            return piece
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""

    async def stream(self, length: int) -> AsyncIterator[bytes]:
        left = length
        while left > 0:
            piece = await self._next()
            if not piece:
                raise RegistryError(f"the blob ended {left} bytes short of its size")
            if len(piece) > left:
                piece, self._held = piece[:left], piece[left:]
            left -= len(piece)
            yield piece

    async def read_all(self, length: int) -> bytes:
        return b"".join([piece async for piece in self.stream(length)])

    async def end(self, image: str) -> None:
        """The source's end (where it checks its digest); more bytes than its size: an error."""
        if await self._next():
            raise RegistryError(f"cannot push blob to {image}: the blob is longer than its size")


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
