"""Copying into the target repository what a list names from elsewhere, before it is written.

A registry refuses a list whose entries are elsewhere (MANIFEST_BLOB_UNKNOWN). Entries from
another repository get their blobs mounted (same registry) or streamed (another registry), then
their manifest PUT by digest. Each copy is made once per run, however many lists need it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING

from ..manifest import Descriptor, json_object
from ..quirks import put_when_settled
from ..reference import LayoutReference, Reference, SourceImage
from ..registry import UploadRestart
from .common import gather, log

if TYPE_CHECKING:
    from .results import PushedEntry
    from .run import _Run

#: Blobs at least this large report their progress on stderr while they are copied.
PROGRESS_MIN_BYTES = 16 * 1024 * 1024
PROGRESS_EVERY_SECONDS = 2.0


async def copy_entries(run: _Run, target: Reference, entries: list[PushedEntry]) -> None:
    """Make every entry resolvable in the target repository before the list names it."""
    await gather(
        copy_once(run, e.image, target, e.descriptor)
        for e in entries
        if isinstance(e.image, LayoutReference)
        or (e.image.registry, e.image.repository) != (target.registry, target.repository)
    )


def copy_once(
    run: _Run, source: SourceImage, target: Reference, child: Descriptor
) -> Awaitable[bytes]:
    """The manifest ``child`` of ``source``'s repository (or OCI layout: uploaded from disk)
    copied into ``target``'s (its blobs, then the manifest by digest), once per run however many
    lists (or referrers) need it."""

    def copy() -> Awaitable[bytes]:
        if isinstance(source, LayoutReference):
            from . import layouts  # only for OCI layouts: not imported by every push

            return layouts.upload_manifest(run, source, target, child)
        return _copy_manifest(run, source, target, child)

    return run.copied.get(("copy", target.registry, target.repository, child.digest), copy)


async def _copy_manifest(
    run: _Run, source: Reference, target: Reference, child: Descriptor
) -> bytes:
    client = run.client(target.registry)
    if await client.head_manifest(target.repository, child.digest) is not None:
        return b""
    data = await run.fetch_manifest(source, child.digest)
    manifest = json_object(data, source.familiar())
    blobs = [manifest.get("config"), *(manifest.get("layers") or [])]
    await gather(
        _copy_blob_once(run, source, target, blob["digest"], int(blob.get("size", 0)))
        for blob in blobs
        if isinstance(blob, dict) and isinstance(blob.get("digest"), str)
    )
    await put_when_settled(client, target.repository, child.digest, data, child.media_type)
    log.info("copied %s into %s", f"{source.familiar()}@{child.digest}", target.name)
    return b""


def _copy_blob_once(
    run: _Run, source: Reference, target: Reference, digest: str, size: int
) -> Awaitable[bytes]:
    """One copy of a blob into a repository per run, however many manifests share it (an OCI
    artifact's empty config, a base layer): two concurrent mounts or uploads of one digest race
    in a registry's storage (distribution's filesystem driver rewrites the repository's link
    file in place: a manifest PUT in between found the blob unknown). The key is the one
    layouts.py uses for its uploads."""

    async def copy() -> bytes:
        await _copy_blob(run, source, target, digest, size)
        return b""

    return run.copied.get(("blob", target.registry, target.repository, digest), copy)


async def _copy_blob(
    run: _Run, source: Reference, target: Reference, digest: str, size: int
) -> None:
    client = run.client(target.registry)
    image = client.image(target.repository, digest)
    if source.registry == target.registry:
        location = await client.mount_blob(target.repository, digest, source.repository)
        if location is None:
            return
        log.info("%s refused to mount %s: copying it through", target.registry, digest)
    elif await client.head_blob(target.repository, digest):
        return
    else:
        location = await client.start_upload(target.repository)
    for attempt in (1, 2):
        uploading = False
        try:
            blob = run.client(source.registry).open_blob(source.repository, digest)
            async with run.copy_slots, blob as chunks:
                if size >= PROGRESS_MIN_BYTES:
                    chunks = _with_progress(chunks, size, f"{source.familiar()} {digest[:19]}")
                # From here on the upload cancels its own session, at its latest Location.
                uploading = True
                await client.upload_blob(location, digest, size, chunks, image)
            return
        except UploadRestart:
            if attempt == 2:
                raise
            # A token refused mid-upload and fetched again (GCR, Quay: "cannot reuse body",
            # estesp/manifest-tool#122, #156): a streamed body cannot be resent, so the copy
            # starts over in a new session, with the new token (upload_blob cancelled the
            # old one).
            log.info("%s: token renewed mid-upload; copying %s again", target.registry, digest)
            location = await client.start_upload(target.repository)
        except BaseException:
            if not uploading:  # never leave an upload session we opened dangling
                await asyncio.shield(client.delete_upload(location))
            raise


async def _with_progress(
    chunks: AsyncIterator[bytes], total: int, what: str
) -> AsyncIterator[bytes]:
    done = 0
    last = time.monotonic()
    mib = 1024 * 1024
    async for chunk in chunks:
        done += len(chunk)
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS:
            last = now
            log.info("copying %s: %.1f of %.1f MiB", what, done / mib, total / mib)
        yield chunk
    log.info("copied %s: %.1f MiB", what, done / mib)
