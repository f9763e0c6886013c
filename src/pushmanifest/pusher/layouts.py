"""OCI image layouts on disk as sources: read and verified before anything is written, then
uploaded into each target repository that names them.

Reading (:func:`read_layouts`) happens with the sources' HEADs, before any write: every layout
of the run is read whole, each manifest and blob hashed against its digest (in threads, so
layouts are read at once). Resolving a layout source is resolving.py's, fed from the layout
(:func:`manifest`, :func:`config`). Uploading (:func:`upload_manifest`): a manifest the target
already holds is skipped (one HEAD); else each blob it names is HEADed and, where missing,
streamed from disk into the target in PATCHes (hashed again as it streams), then the manifest is
PUT by its digest. The entries of a layout's index are uploaded one by one, like the entries of
a list copied from another repository.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Optional

from ..layout import OciLayout, blob_pieces, read_layout
from ..manifest import Descriptor
from ..quirks import put_when_settled
from ..reference import LayoutReference, Reference
from ..registry import UploadRestart
from .common import gather, log, unique

if TYPE_CHECKING:
    from ..spec import ManifestListSpec
    from .run import _Run

#: Blobs at least this large report their progress on stderr while they are uploaded.
PROGRESS_MIN_BYTES = 16 * 1024 * 1024


def layout_sources(specs: list[ManifestListSpec]) -> list[LayoutReference]:
    return unique(
        entry.image
        for spec in specs
        for entry in spec.manifests
        if isinstance(entry.image, LayoutReference)
    )


async def read_layouts(
    run: _Run, specs: list[ManifestListSpec]
) -> dict[LayoutReference, Optional[Descriptor]]:
    """Every layout of the run, read and verified (every blob hashed); their top descriptors."""
    refs = layout_sources(specs)
    layouts = await _read_all(refs)
    run.layouts.update(zip(refs, layouts))
    for ref, layout in zip(refs, layouts):
        manifests, blobs = layout.under(layout.top.digest)
        size = sum(layout.blobs[b] for b in blobs)
        what = "would upload" if run.options.dry_run else "to upload"
        targets = unique(
            spec.image.name for spec in specs if any(entry.image == ref for entry in spec.manifests)
        )
        log.info(
            "%s: %s up to %s (%s) and %s to %s (those it holds are skipped)",
            ref,
            what,
            _count(len(blobs), "blob"),
            _size(size),
            _count(len(manifests) - _is_index(layout), "manifest"),
            ", ".join(targets),
        )
    return {ref: _head(layout) for ref, layout in zip(refs, layouts)}


def _head(layout: OciLayout) -> Descriptor:
    """What a HEAD would say of the layout's image or index: its index.json annotations (the
    layout's own ref name) stay in the layout, as a registry's tag stays in the registry."""
    media_type = layout.manifests[layout.top.digest][0]
    return Descriptor(media_type=media_type, digest=layout.top.digest, size=layout.top.size)


async def _read_all(refs: list[LayoutReference]) -> list[OciLayout]:
    """The layouts, read at once (threads); the first to fail, or a cancellation, stops the
    others at their next piece (a thread cannot be cancelled), and its error is the one raised."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def read(ref: LayoutReference) -> OciLayout:
        try:
            return read_layout(ref, stop)
        except BaseException as exc:
            if not stop.is_set():
                failures.append(exc)
                stop.set()
            raise

    try:
        results = await asyncio.gather(
            *(asyncio.to_thread(read, ref) for ref in refs), return_exceptions=True
        )
    except asyncio.CancelledError:
        stop.set()
        raise
    if failures:
        raise failures[0]
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, OciLayout)]


def layout_of(run: _Run, ref: LayoutReference) -> OciLayout:
    return run.layouts[ref]


async def manifest(run: _Run, ref: LayoutReference, digest: str) -> bytes:
    """A manifest of the layout (already read and verified)."""
    return layout_of(run, ref).manifest(digest)


def config(run: _Run, ref: LayoutReference, digest: str) -> Awaitable[bytes]:
    """A config blob of the layout (small: read again, verified again)."""
    return asyncio.to_thread(layout_of(run, ref).read_config, digest)


async def upload_manifest(
    run: _Run, ref: LayoutReference, target: Reference, child: Descriptor
) -> bytes:
    """Make the layout's image (or index) ``child`` resolvable in ``target``'s repository."""
    layout = layout_of(run, ref)
    client = run.client(target.registry)
    if await client.head_manifest(target.repository, child.digest) is not None:
        return b""
    media_type, data = layout.manifests[child.digest]
    children = layout.children_of.get(child.digest, ())
    await gather(_upload_manifest_once(run, ref, target, c) for c in children)
    await gather(
        _upload_blob_once(run, layout, target, b) for b in layout.blobs_of.get(child.digest, ())
    )
    await put_when_settled(
        client, target.repository, child.digest, data, child.media_type or media_type
    )
    log.info("uploaded %s@%s into %s", ref, child.digest, target.name)
    return b""


def _upload_manifest_once(
    run: _Run, ref: LayoutReference, target: Reference, child: Descriptor
) -> Awaitable[bytes]:
    return run.copied.get(
        ("copy", target.registry, target.repository, child.digest),
        lambda: upload_manifest(run, ref, target, child),
    )


def _upload_blob_once(
    run: _Run, layout: OciLayout, target: Reference, digest: str
) -> Awaitable[bytes]:
    async def upload() -> bytes:
        await _upload_blob(run, layout, target, digest)
        return b""

    return run.copied.get(("blob", target.registry, target.repository, digest), upload)


async def _upload_blob(run: _Run, layout: OciLayout, target: Reference, digest: str) -> None:
    client = run.client(target.registry)
    if await client.head_blob(target.repository, digest):
        return
    size = layout.blobs[digest]
    image = client.image(target.repository, digest)
    for attempt in (1, 2):
        async with run.copy_slots:
            location = await client.start_upload(target.repository)
            pieces = blob_pieces(layout, digest)
            if size >= PROGRESS_MIN_BYTES:
                from .copying import _with_progress

                pieces = _with_progress(pieces, size, f"{layout.ref} {digest[:19]}")
            try:
                # The session is the upload's from here: deleted by it on any failure.
                await client.upload_blob_in_chunks(location, digest, size, pieces, image)
                return
            except UploadRestart:
                if attempt == 2:
                    raise
                # A token refused mid-upload and fetched again: a streamed body cannot be sent
                # again, so the blob starts over in a new session, with the new token.
                log.info(
                    "%s: token renewed mid-upload; uploading %s again", target.registry, digest
                )
            finally:
                await pieces.aclose()  # type: ignore[attr-defined]


def _is_index(layout: OciLayout) -> int:
    return 1 if layout.top.digest in layout.children_of else 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size} bytes"
    return f"{size / (1024 * 1024):.1f} MiB"
