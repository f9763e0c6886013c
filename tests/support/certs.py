"""Keys and certificates for the test registries via the ``openssl`` CLI; RS256 in pure Python.

No Python crypto dependency: ``openssl`` generates the RSA keys and the certificates, this module
reads the key's numbers from its DER encoding and signs with PKCS#1 v1.5 (``pow`` with the CRT).

* :func:`make_signing_key` - an RSA key and a self-signed certificate for a token server; the
  certificate is the registry's ``rootcertbundle``.
* :func:`make_ca` / :func:`make_server_cert` - a CA and a server certificate for 127.0.0.1 and
  localhost (subjectAltName), for a TLS registry.
* :func:`libtrust_key_id` - the key ID that distribution matches a JWT's ``kid`` header against.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

__all__ = [
    "SHA256_DIGEST_INFO",
    "OpensslError",
    "RsaKey",
    "TlsFiles",
    "libtrust_key_id",
    "make_ca",
    "make_server_cert",
    "make_signing_key",
    "openssl",
    "read_der_tlv",
]

PathLike = Union[str, Path]

#: DER prefix of a DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class OpensslError(RuntimeError):
    """The ``openssl`` CLI is missing or failed."""


def openssl(*args: str, input: bytes | None = None) -> bytes:
    """Run ``openssl ARGS...``; return its stdout; raise :class:`OpensslError` with its stderr."""
    exe = shutil.which("openssl")
    if exe is None:
        raise OpensslError("the openssl command is not installed (Debian: apt-get install openssl)")
    proc = subprocess.run([exe, *args], input=input, capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise OpensslError(
            f"openssl {' '.join(args)} failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout


# -- DER ------------------------------------------------------------------------------------------


def read_der_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one DER element at ``pos``: ``(tag, content, position after it)``."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def _der_children(content: bytes) -> list[tuple[int, bytes]]:
    children = []
    pos = 0
    while pos < len(content):
        tag, value, pos = read_der_tlv(content, pos)
        children.append((tag, value))
    return children


def _rsa_private_numbers(der: bytes) -> list[int]:
    """The integers of an RSAPrivateKey (PKCS#1), from PKCS#1 or PKCS#8 (PrivateKeyInfo) DER."""
    tag, content, _ = read_der_tlv(der)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    children = _der_children(content)
    if len(children) >= 3 and children[1][0] == 0x30 and children[2][0] == 0x04:
        # PKCS#8: version, AlgorithmIdentifier, OCTET STRING { RSAPrivateKey }
        return _rsa_private_numbers(children[2][1])
    if not all(t == 0x02 for t, _ in children) or len(children) < 9:
        raise ValueError("not an RSA private key")
    return [int.from_bytes(value, "big", signed=False) for _, value in children]


# -- keys -----------------------------------------------------------------------------------------


def libtrust_key_id(spki_der: bytes) -> str:
    """libtrust's key ID of a public key: what distribution looks a JWT ``kid`` up by.

    SHA-256 of the DER SubjectPublicKeyInfo, its first 240 bits, base32 without padding
    (48 characters), in 12 groups of 4 joined by ``:``.
    """
    encoded = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True)
class RsaKey:
    """An RSA private key (its numbers) and its files; signs RS256 in pure Python."""

    key_file: Path  #: PEM private key
    cert_file: Path  #: PEM self-signed certificate of the public key (may equal a CA's cert)
    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int
    spki_der: bytes  #: DER SubjectPublicKeyInfo

    @classmethod
    def load(cls, key_file: PathLike, cert_file: PathLike) -> RsaKey:
        """Read a PEM RSA key (any format openssl reads) and pair it with ``cert_file``."""
        der = openssl("pkey", "-in", str(key_file), "-outform", "DER")
        _version, n, e, d, p, q, dp, dq, qinv = _rsa_private_numbers(der)[:9]
        spki = openssl("pkey", "-in", str(key_file), "-pubout", "-outform", "DER")
        return cls(Path(key_file), Path(cert_file), n, e, d, p, q, dp, dq, qinv, spki)

    @property
    def size(self) -> int:
        """The modulus length in bytes."""
        return (self.n.bit_length() + 7) // 8

    @property
    def kid(self) -> str:
        """The libtrust key ID of the public key (the JWT header's ``kid``)."""
        return libtrust_key_id(self.spki_der)

    def sign_rs256(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (JWS ``RS256``)."""
        t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        k = self.size
        if k < len(t) + 11:
            raise ValueError("RSA key too short")
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(em, "big")
        # Chinese remainder theorem: about 3x faster than pow(m, d, n).
        m1 = pow(m, self.dp, self.p)
        m2 = pow(m, self.dq, self.q)
        h = (self.qinv * (m1 - m2)) % self.p
        s = m2 + h * self.q
        return s.to_bytes(k, "big")

    def verify_rs256(self, message: bytes, signature: bytes) -> bool:
        """Check an RS256 signature with the public key (for the tests of this module)."""
        if len(signature) != self.size:
            return False
        em = pow(int.from_bytes(signature, "big"), self.e, self.n).to_bytes(self.size, "big")
        t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        return em == b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t

    def jwt(self, claims: bytes, *, header_extra: dict[str, str] | None = None) -> str:
        """A compact JWS: header ``{"typ":"JWT","alg":"RS256","kid":...}``, ``claims`` as given."""
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid, **(header_extra or {})}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + _b64url(claims)
        )
        signature = self.sign_rs256(signing_input.encode("ascii"))
        return signing_input + "." + _b64url(signature)


def _genrsa(key_file: Path, bits: int) -> None:
    openssl("genrsa", "-out", str(key_file), str(bits))
    key_file.chmod(0o600)


def make_signing_key(
    directory: PathLike,
    *,
    name: str = "token",
    subject: str = "/CN=pushmanifest test token signer",
    bits: int = 2048,
    days: int = 3650,
) -> RsaKey:
    """An RSA key ``NAME.key`` and a self-signed certificate ``NAME.crt`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    _genrsa(key_file, bits)
    openssl(
        "req",
        "-new",
        "-x509",
        "-sha256",
        "-key",
        str(key_file),
        "-out",
        str(cert_file),
        "-days",
        str(days),
        "-subj",
        subject,
    )
    return RsaKey.load(key_file, cert_file)


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate signed by it."""

    ca_file: Path  #: the CA certificate (PEM): what clients trust
    ca_key: Path
    cert_file: Path  #: the server certificate (PEM)
    key_file: Path  #: the server key (PEM)


def make_ca(
    directory: PathLike,
    *,
    name: str = "ca",
    subject: str = "/CN=pushmanifest test CA",
    days: int = 3650,
) -> tuple[Path, Path]:
    """A self-signed CA: ``(NAME.crt, NAME.key)`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    _genrsa(key_file, 2048)
    openssl(
        "req",
        "-new",
        "-x509",
        "-sha256",
        "-key",
        str(key_file),
        "-out",
        str(cert_file),
        "-days",
        str(days),
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    )
    return cert_file, key_file


def make_server_cert(
    directory: PathLike,
    ca_file: PathLike,
    ca_key: PathLike,
    *,
    name: str = "server",
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> TlsFiles:
    """A server key and certificate for ``hosts`` (IPs and DNS names in subjectAltName)."""
    import ipaddress

    directory = Path(directory)
    key_file, csr_file = directory / f"{name}.key", directory / f"{name}.csr"
    cert_file, ext_file = directory / f"{name}.crt", directory / f"{name}.ext"
    _genrsa(key_file, 2048)
    openssl(
        "req",
        "-new",
        "-sha256",
        "-key",
        str(key_file),
        "-out",
        str(csr_file),
        "-subj",
        f"/CN={hosts[0]}",
    )
    alt_names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            alt_names.append(f"IP:{host}")
        except ValueError:
            alt_names.append(f"DNS:{host}")
    ext_file.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(alt_names)}\n"
        "authorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509",
        "-req",
        "-sha256",
        "-in",
        str(csr_file),
        "-CA",
        str(ca_file),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert_file),
        "-days",
        str(days),
        "-extfile",
        str(ext_file),
    )
    return TlsFiles(Path(ca_file), Path(ca_key), cert_file, key_file)
