"""Async client for one registry: ping, HEAD/GET/PUT manifests, GET blobs, errors decoded.

One :class:`RegistryClient` per registry host holds one ``httpx.AsyncClient`` (one connection pool
with keep-alive) and one :class:`~pushmanifest.auth.TokenAuth`, so every request of a run shares
connections and tokens. Register every scope the run needs with :meth:`RegistryClient.add_scope`
before the first request: the token request made by :meth:`RegistryClient.ping` then asks for all
of them at once.

The package, one concept a module:

- :mod:`.options`: :class:`ClientOptions`, how to reach registries;
- :mod:`.connection`: scheme, auth and pool of one registry, requests with retries (backoff,
  Retry-After), each answer bounded in time; the base of :class:`RegistryClient`;
- :mod:`.uploads`: blobs checked, mounted, streamed from a source and uploaded into a session
  that is deleted on any failure or signal;
- :mod:`.client`: :class:`RegistryClient` itself, manifests read, resolved and written;
- :mod:`.bodies`: answers read in bounded memory (size caps, Content-Encoding decoded in pieces);
- :mod:`.failures`: what a failed answer or connection means, in one line.
"""

from __future__ import annotations

from .._imports import remember_missing_sniffio
from .bodies import MAX_CONFIG_BYTES, MAX_ENCODING_LAYERS, MAX_ERROR_BYTES, MAX_MANIFEST_BYTES
from .client import ACCEPT_MANIFESTS, RegistryClient
from .connection import MAX_RETRY_AFTER, RETRY_STATUSES, Connection, _retry_after
from .failures import DocumentTooSlowError, RateLimit, UploadRestart, decode_error, rate_limit
from .options import ClientOptions
from .uploads import UPLOAD_CANCEL_SECONDS, BlobTransfers

# httpcore tries to import sniffio several times per request: where it is missing, once.
remember_missing_sniffio()

__all__ = [
    "ACCEPT_MANIFESTS",
    "MAX_CONFIG_BYTES",
    "MAX_ENCODING_LAYERS",
    "MAX_ERROR_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "UPLOAD_CANCEL_SECONDS",
    "BlobTransfers",
    "ClientOptions",
    "Connection",
    "DocumentTooSlowError",
    "RateLimit",
    "RegistryClient",
    "UploadRestart",
    "_retry_after",
    "decode_error",
    "rate_limit",
]
