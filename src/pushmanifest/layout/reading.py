"""Reading an OCI image layout: ``oci-layout``, ``index.json``, manifests and blobs, bounded.

Everything in a layout is untrusted input, read within bounds: ``index.json`` and each manifest
at most as large as a registry's document may be, indexes nested at most
:data:`MAX_LAYOUT_DEPTH` deep, at most :data:`MAX_LAYOUT_MANIFESTS` manifests and
:data:`MAX_LAYOUT_BLOBS` blobs. A blob is only ever opened as ``blobs/<algorithm>/<hex>`` of a
validated sha256/sha512 digest, and only where its real path stays inside the layout's own
``blobs`` directory (no symlink out of it), as a regular file. Every manifest and every blob is
hashed against its digest and its size checked against its descriptor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import field
from typing import Any, BinaryIO, Optional

from .._records import record
from ..errors import InputError
from ..manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Descriptor
from ..platform import Platform
from ..reference import LayoutReference

#: The annotation of index.json that names an image (``oci:PATH:TAG``'s TAG).
REF_NAME = "org.opencontainers.image.ref.name"
MAX_LAYOUT_FILE_BYTES = 64 * 1024  # oci-layout: {"imageLayoutVersion": "1.0.0"}
#: index.json and each manifest: as large as a registry document may be.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: index.json -> index -> index -> manifest at most.
MAX_LAYOUT_DEPTH = 3
MAX_LAYOUT_MANIFESTS = 1000
MAX_LAYOUT_BLOBS = 10000
#: Blobs are read (hashed, uploaded) this many bytes at a time: the memory a blob takes.
READ_PIECE_BYTES = 1024 * 1024

_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+")
_IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
_INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


class LayoutError(InputError):
    """An OCI layout that is missing, malformed, out of bounds or corrupt (exit status 2)."""


@record
class OciLayout:
    """One layout source, read and verified: the manifest or index it names, every manifest
    under it (bytes, verified) and every blob they name (verified on disk, by size)."""

    ref: LayoutReference
    root: str
    top: Descriptor
    #: digest -> (media type, bytes): the top manifest or index and every manifest under it.
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: digest -> size: every config and layer of every image manifest.
    blobs: dict[str, int] = field(default_factory=dict)
    #: image manifest digest -> the blobs it names (config first).
    blobs_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: index digest -> its children's descriptors.
    children_of: dict[str, tuple[Descriptor, ...]] = field(default_factory=dict)

    def manifest(self, digest: str) -> bytes:
        found = self.manifests.get(digest)
        if found is None:
            raise LayoutError(f"{self.ref}: the layout holds no manifest {digest}")
        return found[1]

    def read_config(self, digest: str) -> bytes:
        """A config blob (small: bounded), read and verified again."""
        size = self.blobs.get(digest)
        if size is None:
            raise LayoutError(f"{self.ref}: the layout holds no blob {digest}")
        if size > MAX_CONFIG_BYTES:
            raise LayoutError(
                f"{self.ref}: config {digest} is {size} bytes, more than {MAX_CONFIG_BYTES}"
            )
        return b"".join(_verified_pieces(self.root, self.ref, digest, size))

    def under(self, digest: str) -> tuple[list[str], list[str]]:
        """The manifests (children first) and blobs that ``digest`` needs in a repository."""
        manifests: dict[str, None] = {}
        blobs: dict[str, None] = {}

        seen: set[str] = set()

        def visit(digest: str) -> None:  # nesting is bounded (MAX_LAYOUT_DEPTH)
            if digest in seen:
                return
            seen.add(digest)
            for child in self.children_of.get(digest, ()):
                visit(child.digest)
            blobs.update(dict.fromkeys(self.blobs_of.get(digest, ())))
            manifests[digest] = None

        visit(digest)
        return list(manifests), list(blobs)


def read_layout(ref: LayoutReference, stop: Optional[threading.Event] = None) -> OciLayout:
    """Read ``ref``'s layout and verify all of it (every blob hashed): raises LayoutError.

    ``stop`` set (the run was cancelled: this runs in a thread, which nothing else can stop)
    ends the reading at its next piece."""
    root = os.path.realpath(ref.path)
    if not os.path.isdir(root):
        what = "is not a directory" if os.path.exists(root) else "does not exist"
        raise LayoutError(f"{ref}: {ref.path} {what} (expected an OCI image layout)")
    _check_layout_file(ref, root)
    index = _json_file(ref, os.path.join(root, "index.json"), "index.json", MAX_DOCUMENT_BYTES)
    top = _select(ref, index)
    layout = OciLayout(ref=ref, root=root, top=top)
    _walk(layout, top, depth=1)
    for digest, size in layout.blobs.items():
        for _ in _verified_pieces(root, ref, digest, size):
            if stop is not None and stop.is_set():
                raise LayoutError(f"{ref}: reading stopped")
    return layout


async def blob_pieces(layout: OciLayout, digest: str) -> AsyncIterator[bytes]:
    """A blob streamed from disk in READ_PIECE_BYTES pieces (each read in a thread), hashed as
    it streams: a size or digest that no longer matches raises at its end, before the last
    piece is handed on, so an upload fed from it is never committed."""
    pieces = _verified_pieces(layout.root, layout.ref, digest, layout.blobs[digest])
    try:
        while True:
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                return
            yield piece
    finally:
        # Cancelled while a thread still reads a piece: the generator is closed (its file with
        # it) when that thread is done with it.
        with contextlib.suppress(ValueError):
            pieces.close()


# -- the layout's files -----------------------------------------------------------------------


def _check_layout_file(ref: LayoutReference, root: str) -> None:
    data = _json_file(ref, os.path.join(root, "oci-layout"), "oci-layout", MAX_LAYOUT_FILE_BYTES)
    version = data.get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise LayoutError(
            f"{ref}: oci-layout has imageLayoutVersion {version!r}; "
            "expected 1.x (an OCI image layout)"
        )


def _json_file(ref: LayoutReference, path: str, name: str, cap: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            data = file.read(cap + 1)
    except FileNotFoundError:
        raise LayoutError(
            f"{ref}: {ref.path} has no {name} file: it is not an OCI image layout"
        ) from None
    except OSError as exc:
        raise LayoutError(f"{ref}: cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise LayoutError(f"{ref}: {name} is larger than {cap} bytes")
    return _json_object(ref, data, name)


def _json_object(ref: LayoutReference, data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except RecursionError:
        raise LayoutError(f"{ref}: {name} is JSON nested too deeply") from None
    except ValueError as exc:
        raise LayoutError(f"{ref}: {name} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise LayoutError(f"{ref}: {name} is not a JSON object")
    return value


def _select(ref: LayoutReference, index: Mapping[str, Any]) -> Descriptor:
    """The descriptor of index.json that ``ref`` names: by its ref name, or the only one."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise LayoutError(f"{ref}: index.json has no 'manifests' array")
    if len(entries) > MAX_LAYOUT_MANIFESTS:
        raise LayoutError(
            f"{ref}: index.json lists {len(entries)} manifests, more than {MAX_LAYOUT_MANIFESTS}"
        )
    descriptors = [_descriptor(ref, e, f"index.json manifests[{i}]") for i, e in enumerate(entries)]
    names = [d.annotations.get(REF_NAME, "") for d in descriptors]
    named = ", ".join(sorted({n for n in names if n})) or "none"
    if ref.tag is None:
        if len(descriptors) == 1:
            return descriptors[0]
        if not descriptors:
            raise LayoutError(f"{ref}: index.json lists no manifest")
        raise LayoutError(
            f"{ref}: the layout holds {len(descriptors)} manifests: name one, "
            f"{ref.familiar_name()}:NAME (names: {named})"
        )
    chosen = [d for d, n in zip(descriptors, names) if n == ref.tag]
    if not chosen:
        raise LayoutError(f"{ref}: no manifest in index.json is named {ref.tag!r} (names: {named})")
    if len({d.digest for d in chosen}) > 1:
        raise LayoutError(f"{ref}: index.json names several different manifests {ref.tag!r}")
    return chosen[0]


def _walk(layout: OciLayout, descriptor: Descriptor, depth: int) -> None:
    """Read (verified) the manifest or index ``descriptor`` names, and what is under it."""
    ref = layout.ref
    if descriptor.digest in layout.manifests:
        return
    if depth > MAX_LAYOUT_DEPTH:
        raise LayoutError(f"{ref}: indexes nested more than {MAX_LAYOUT_DEPTH} deep")
    if len(layout.manifests) >= MAX_LAYOUT_MANIFESTS:
        raise LayoutError(f"{ref}: more than {MAX_LAYOUT_MANIFESTS} manifests")
    if descriptor.size > MAX_DOCUMENT_BYTES:
        raise LayoutError(
            f"{ref}: manifest {descriptor.digest} is {descriptor.size} bytes, "
            f"more than {MAX_DOCUMENT_BYTES}"
        )
    data = b"".join(_verified_pieces(layout.root, ref, descriptor.digest, descriptor.size))
    document = _json_object(ref, data, f"manifest {descriptor.digest}")
    media_type = descriptor.media_type or str(document.get("mediaType") or "")
    if not media_type:  # neither says (older tools): OCI's, by the document's shape
        if "manifests" in document:
            media_type = OCI_INDEX
        elif "config" in document and "layers" in document:
            media_type = OCI_MANIFEST
    layout.manifests[descriptor.digest] = (media_type, data)
    where = f"manifest {descriptor.digest}"
    if media_type in _INDEX_TYPES:
        children = document.get("manifests")
        if not isinstance(children, list):
            raise LayoutError(f"{ref}: index {descriptor.digest} has no 'manifests' array")
        if len(children) > MAX_LAYOUT_MANIFESTS:
            raise LayoutError(f"{ref}: index {descriptor.digest} lists too many manifests")
        found = tuple(
            _descriptor(ref, c, f"{where} manifests[{i}]") for i, c in enumerate(children)
        )
        layout.children_of[descriptor.digest] = found
        for child in found:
            _walk(layout, child, depth + 1)
    elif media_type in _IMAGE_TYPES:
        config = document.get("config")
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise LayoutError(f"{ref}: {where} has no 'layers' array")
        blobs = [_descriptor(ref, config, f"{where} config")]
        blobs += [_descriptor(ref, b, f"{where} layers[{i}]") for i, b in enumerate(layers)]
        for blob in blobs:
            known = layout.blobs.setdefault(blob.digest, blob.size)
            if known != blob.size:
                raise LayoutError(
                    f"{ref}: blob {blob.digest} is given sizes {known} and {blob.size}"
                )
        if len(layout.blobs) > MAX_LAYOUT_BLOBS:
            raise LayoutError(f"{ref}: more than {MAX_LAYOUT_BLOBS} blobs")
        layout.blobs_of[descriptor.digest] = tuple(dict.fromkeys(b.digest for b in blobs))
    else:
        raise LayoutError(
            f"{ref}: {where} has media type {media_type!r}: expected an OCI or Docker v2 "
            "manifest or index"
        )


def _descriptor(ref: LayoutReference, data: object, where: str) -> Descriptor:
    if not isinstance(data, dict):
        raise LayoutError(f"{ref}: {where} is not a descriptor object")
    digest, size = data.get("digest"), data.get("size")
    if not isinstance(digest, str):
        raise LayoutError(f"{ref}: {where} has no digest")
    _check_digest(ref, digest, where)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"{ref}: {where} has no valid size ({size!r})")
    platform = data.get("platform")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise LayoutError(f"{ref}: {where} has annotations that are not an object")
    try:
        return Descriptor(
            media_type=str(data.get("mediaType") or ""),
            digest=digest,
            size=size,
            platform=Platform.from_dict(platform) if isinstance(platform, dict) else None,
            annotations={str(k): str(v) for k, v in annotations.items()},
        )
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{ref}: {where} is malformed ({exc})") from None


def _check_digest(ref: LayoutReference, digest: str, where: str) -> None:
    algorithm, _, hex_part = digest.partition(":")
    length = _HEX_LENGTHS.get(algorithm)
    if length is None or len(hex_part) != length or not _LOWER_HEX.fullmatch(hex_part):
        raise LayoutError(
            f"{ref}: {where} has digest {digest[:80]!r}: expected sha256:<64 hex> or "
            "sha512:<128 hex>, in lowercase"
        )


def _blob_path(root: str, ref: LayoutReference, digest: str) -> str:
    """``blobs/<algorithm>/<hex>``, its real path inside the layout's ``blobs`` directory."""
    _check_digest(ref, digest, "a descriptor")
    algorithm, _, hex_part = digest.partition(":")
    blobs = os.path.join(root, "blobs")
    path = os.path.realpath(os.path.join(blobs, algorithm, hex_part))
    if os.path.commonpath([path, blobs]) != blobs:
        raise LayoutError(
            f"{ref}: blob {digest} is a link out of the layout's blobs directory: refused"
        )
    return path


def _verified_pieces(
    root: str, ref: LayoutReference, digest: str, size: int
) -> Generator[bytes, None, None]:
    """The blob's bytes in pieces; at its end, its size and digest are checked (LayoutError),
    before the last piece is given out."""
    path = _blob_path(root, ref, digest)
    # O_NONBLOCK: opening a FIFO put in as a blob must not wait for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        missing = f"blobs/{digest.replace(':', '/')}"
        raise LayoutError(f"{ref}: blob {digest} is missing ({missing})") from None
    except OSError as exc:
        raise LayoutError(f"{ref}: cannot read blob {digest}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LayoutError(f"{ref}: blob {digest} is not a regular file")
    try:
        yield from _checked_pieces(os.fdopen(fd, "rb", buffering=0), ref, digest, size)
    except OSError as exc:
        raise LayoutError(f"{ref}: cannot read blob {digest}: {exc.strerror or exc}") from None


def _checked_pieces(
    file: BinaryIO, ref: LayoutReference, digest: str, size: int
) -> Generator[bytes, None, None]:
    with file:
        hasher = hashlib.new(digest.partition(":")[0])
        done = 0
        held: Optional[bytes] = None
        while True:
            piece = file.read(min(READ_PIECE_BYTES, size + 1 - done))
            if not piece:
                break
            done += len(piece)
            if done > size:
                raise LayoutError(
                    f"{ref}: blob {digest} is larger on disk than its descriptor's {size} bytes"
                )
            hasher.update(piece)
            if held is not None:
                yield held
            held = piece
        if done != size:
            raise LayoutError(
                f"{ref}: blob {digest} is {done} bytes on disk, its descriptor says {size}"
            )
        if f"{digest.partition(':')[0]}:{hasher.hexdigest()}" != digest:
            raise LayoutError(
                f"{ref}: blob {digest} does not match its digest (corrupt or changed on disk)"
            )
        if held is not None:
            yield held
