"""OCI image layouts on disk as sources (``oci:PATH[:TAG]``): read, bounded and verified.

A layout is read whole before anything is written (:func:`read_layout`: every manifest and
every blob hashed against its digest), then streamed again, piece by piece and hashed again,
while it is uploaded (:func:`blob_pieces`). It does file I/O and no network I/O; the pure
modules never import it.
"""

from __future__ import annotations

from .reading import (
    MAX_LAYOUT_BLOBS,
    MAX_LAYOUT_DEPTH,
    MAX_LAYOUT_MANIFESTS,
    READ_PIECE_BYTES,
    LayoutError,
    OciLayout,
    blob_pieces,
    read_layout,
)

__all__ = [
    "MAX_LAYOUT_BLOBS",
    "MAX_LAYOUT_DEPTH",
    "MAX_LAYOUT_MANIFESTS",
    "READ_PIECE_BYTES",
    "LayoutError",
    "OciLayout",
    "blob_pieces",
    "read_layout",
]
