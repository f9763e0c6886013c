"""Reading answers in bounded memory: a size cap, and Content-Encoding undone a piece at a time."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from ..errors import RegistryError

#: The OCI image spec's limit for a manifest; a larger body is refused rather than read.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024


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
