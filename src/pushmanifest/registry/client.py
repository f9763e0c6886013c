"""The registry client: manifests read, resolved and written; blobs (see :mod:`.uploads`)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Optional

import httpx

from ..errors import RegistryError
from ..manifest import MANIFEST_MEDIA_TYPES, OCI_INDEX, Descriptor, sha256_digest
from .bodies import MAX_CONFIG_BYTES, MAX_ERROR_BYTES, MAX_MANIFEST_BYTES, _BoundedDecoder
from .failures import _mismatch
from .uploads import BlobTransfers

log = logging.getLogger("pushmanifest")

ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)

#: The referrers API's answer may come in pages (Link: <...>; rel="next"): at most this many are
#: read, each within MAX_MANIFEST_BYTES.
MAX_REFERRERS_PAGES = 8
#: Statuses meaning "this registry has no referrers API": the spec says 404; others answer an
#: unknown path with 400, 405, 406 or 501, or, behind some proxies, 401/403 to a path they do
#: not know while the repository itself is readable (its HEADs worked with the same token).
NO_REFERRERS_API = (400, 401, 403, 404, 405, 406, 501)


class RegistryClient(BlobTransfers):
    """Talks to one registry. Use as an async context manager, or call :meth:`aclose`."""

    #: Learnt in this run: the registry refuses HEAD on manifests; GET instead.
    _head_refused = False
    #: The HEADs past the waiting line (made at the first HEAD, on the run's event loop).
    _head_admission: Optional[asyncio.Semaphore] = None

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

    # -- manifests --------------------------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str) -> Optional[Descriptor]:
        """Digest, size and media type of a manifest without downloading it; None when absent.

        Falls back to a GET (and hashes the body) only when the registry leaves out the headers.
        A HEAD does not count against Docker Hub's pull rate limit; a GET does.
        """
        # A bulk run asks for hundreds of HEADs at once, and --max-concurrency of them can be
        # in flight: the others wait here, before any state of their requests exists (peak
        # memory: 450 queued HEADs held ~1.3 MiB further down).
        if self._head_admission is None:
            self._head_admission = asyncio.Semaphore(max(1, self.options.max_concurrency))
        async with self._head_admission:
            return await self._head_manifest(repository, reference)

    async def _head_manifest(self, repository: str, reference: str) -> Optional[Descriptor]:
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

        Returns the descriptor when the GET finds the manifest, None when it is absent indeed.
        Where the GET finds it, one more HEAD tells a HEAD that lies (still 404: manifests are
        read with GET for the rest of the run) from a registry whose reads lag behind a push
        just made (GHCR: the HEAD finds it now too, and HEADs are trusted as before).
        """
        if self._head_refused:
            return None  # that answer came from a GET already
        found = await self._get_as_head(repository, reference)
        if found is not None and await self.head_manifest(repository, reference) is None:
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

    async def get_referrers(self, repository: str, digest: str) -> Optional[list[Any]]:
        """OCI 1.1's referrers API: the descriptors of the manifests whose ``subject`` is
        ``digest`` (raw JSON objects, for the caller to check); None where the registry has no
        such API (it answers 404, or with something else than an OCI index)."""
        image = self.image(repository, digest)
        headers = {"Accept": OCI_INDEX}
        operation = "read the referrers of"
        response, body = await self._call(
            "GET",
            repository,
            f"referrers/{digest}",
            digest,
            operation=operation,
            cap=MAX_MANIFEST_BYTES,
            returned=NO_REFERRERS_API,
            headers=headers,
        )
        descriptors: list[Any] = []
        for page in range(MAX_REFERRERS_PAGES):
            if response.status_code in NO_REFERRERS_API:
                if page == 0:
                    log.debug(
                        "%s: the referrers API answered %d: none", image, response.status_code
                    )
                    return None
                self._raise_for_status(response, operation, image, body)
            if _media_type(response.headers) != OCI_INDEX:
                if page == 0:
                    log.debug("%s: the referrers API answered %s: no API", image, response)
                    return None
                raise RegistryError(
                    f"{image}: page {page + 1} of the referrers is not an OCI index",
                    operation=operation,
                    image=image,
                )
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                data = None
            manifests = data.get("manifests") if isinstance(data, dict) else None
            if not isinstance(manifests, list):
                raise RegistryError(
                    f"{image}: the referrers API answered an index without 'manifests'",
                    operation=operation,
                    image=image,
                )
            descriptors.extend(manifests)
            following = response.links.get("next", {}).get("url")
            if not following:
                return descriptors
            url = response.url.join(following)
            if (url.scheme, url.host, url.port) != (
                response.url.scheme,
                response.url.host,
                response.url.port,
            ):
                # Our credentials go with each request: never to a host the answer names.
                raise RegistryError(
                    f"{image}: the referrers API's next page is on another server ({url.host})",
                    operation=operation,
                    image=image,
                )
            response, body = await self._request(
                "GET",
                str(url),
                operation=operation,
                image=image,
                cap=MAX_MANIFEST_BYTES,
                headers=headers,
            )
            if response.status_code >= 400:
                self._raise_for_status(response, operation, image, body)
        raise RegistryError(
            f"{image}: the referrers API answered more than {MAX_REFERRERS_PAGES} pages",
            operation=operation,
            image=image,
        )

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
