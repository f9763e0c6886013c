"""Whom a run trusts over TLS: the system's CA store, plus the CAs of ``--ca-file``.

* The system store, as OpenSSL finds it (:func:`ssl.SSLContext.load_default_certs`): on Linux the
  distribution's bundle and directory, so a CA installed with ``update-ca-certificates`` (or
  ``update-ca-trust``) is trusted; on Windows the system's certificate stores. ``SSL_CERT_FILE``
  and ``SSL_CERT_DIR`` replace the default file and directory, as for ``openssl`` itself.
* certifi's bundle (it comes with httpx) only where that store is missing or empty: Python
  installers that ship no CA file of their own (python.org's macOS build, some slim images).
* ``ca_file`` adds to the store, never replaces it: a run that reads from Docker Hub and writes
  to a registry behind a private CA trusts both.

The system store costs ~20 ms to load (Debian 12: 144 certificates parsed), so it is loaded at
the context's first TLS handshake: a run that only speaks plain HTTP never pays for it. The
``ca_file`` is read at once, so a missing or unreadable file is an input error before anything
is sent.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import sys
import threading
from typing import Any, Optional

from .errors import InputError

#: The largest CA file read (certifi's whole bundle is ~0.3 MB): more is refused, not read.
MAX_CA_FILE_BYTES = 16 * 1024 * 1024

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL
)
#: How OpenSSL looks a CA up in a directory: by subject hash (c_rehash, update-ca-certificates).
_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.\d+")
_load_lock = threading.Lock()

log = logging.getLogger("pushmanifest")


class TrustContext(ssl.SSLContext):
    """A client context that loads the system's CA store at its first handshake.

    Every way a connection starts TLS goes through :meth:`wrap_socket` (sync) or
    :meth:`wrap_bio` (asyncio, anyio, trio); both load the store first, once.
    """

    system_store_loaded = False

    def load_system_store(self) -> None:
        """Load the system store (certifi's bundle where it is empty) now; once per context."""
        if self.system_store_loaded:
            return
        with _load_lock:
            if not self.system_store_loaded:
                _load_system_store(self)
                self.system_store_loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.load_system_store()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self.load_system_store()
        return super().wrap_bio(*args, **kwargs)


def client_context(ca_file: Optional[str] = None) -> TrustContext:
    """A client context trusting the system store and ``ca_file`` (PEM or DER, one or many CAs).

    Verifies certificates and host names as :func:`ssl.create_default_context` does. Raises
    :class:`~pushmanifest.InputError` naming ``ca_file`` when it cannot be read or holds no
    certificate.
    """
    context = TrustContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    if sys.version_info >= (3, 13):
        # What create_default_context sets from 3.13 on: stop at the first trust anchor, and
        # no workarounds for broken certificates.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog  # as create_default_context: for Wireshark
    if ca_file:
        add_ca_file(context, ca_file)
    return context


def add_ca_file(context: ssl.SSLContext, path: str) -> int:
    """Trust the certificates of ``path`` too; returns how many were added.

    PEM (any number of ``BEGIN CERTIFICATE`` blocks; other text, such as the comments of a
    bundle, is skipped) or DER. A pipe works too (``--ca-file <(...)``). Raises InputError.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CA_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read the CA file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CA_FILE_BYTES:
        raise InputError(
            f"the CA file {path} is larger than {MAX_CA_FILE_BYTES // (1024 * 1024)} MiB: "
            "not a CA bundle"
        )
    if not data.strip():
        raise InputError(f"the CA file {path} is empty")
    blocks = _PEM_CERTIFICATE.findall(data)
    before = context.cert_store_stats()["x509"]
    if blocks:
        try:
            context.load_verify_locations(cadata=b"\n".join(blocks).decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError):
            raise InputError(
                f"the CA file {path} holds a PEM certificate that cannot be read (damaged)"
            ) from None
    elif b"-----BEGIN" in data:
        raise InputError(
            f"the CA file {path} holds no certificate, only other PEM data "
            "(a CA certificate starts with -----BEGIN CERTIFICATE-----)"
        )
    else:
        try:
            context.load_verify_locations(cadata=data)  # DER, one certificate or several
        except ssl.SSLError:
            raise InputError(
                f"the CA file {path} holds no certificate: neither PEM "
                "(-----BEGIN CERTIFICATE-----) nor DER"
            ) from None
    # Not only CA certificates: a self-signed server certificate is its own trust anchor.
    return int(context.cert_store_stats()["x509"] - before)


def _load_system_store(context: ssl.SSLContext) -> None:
    for variable, exists in (("SSL_CERT_FILE", os.path.isfile), ("SSL_CERT_DIR", os.path.isdir)):
        value = os.environ.get(variable)
        if value and not exists(value):
            log.warning("%s=%s does not exist: its CAs are not trusted", variable, value)
    before = context.cert_store_stats()["x509_ca"]
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if context.cert_store_stats()["x509_ca"] > before or _has_hashed_certificates(
        ssl.get_default_verify_paths().capath
    ):
        return
    # No system store (a CA directory is read lazily: its certificates are not counted above).
    try:
        import certifi
    except ImportError:  # httpx depends on it; an installation without it trusts what it has
        return
    context.load_verify_locations(cafile=certifi.where())


def _has_hashed_certificates(directory: Optional[str]) -> bool:
    if not directory:
        return False
    try:
        with os.scandir(directory) as entries:
            return any(_HASHED_NAME.fullmatch(entry.name) for entry in entries)
    except OSError:
        return False
