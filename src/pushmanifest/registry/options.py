"""How to reach registries: the options every :class:`RegistryClient` of a run shares."""

from __future__ import annotations

import functools
import ssl
from typing import Optional, Union

import httpx

from .._records import record


@record(frozen=True)
class ClientOptions:
    """How to reach registries; shared by every :class:`RegistryClient` of a run."""

    plain_http: bool = False
    insecure: bool = False
    ca_file: Optional[str] = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_concurrency: int = 64
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
        from ..tls import client_context

        return client_context(self.ca_file)
