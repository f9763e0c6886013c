"""Image references: parse, normalize (Docker Hub rules), format.

The grammar is distribution/reference's (what docker and manifest-tool accept)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component { "/" path-component }
    domain     := ( host-label { "." host-label } | "[" ipv6 "]" ) [ ":" port ]
    path-comp  := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex

The parser is hand-written rather than one regular expression so that every rejection can say
which part is wrong and how to fix it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Optional, Union

from ._records import record
from .errors import InvalidReferenceError

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"

# Hostnames people (and old docker versions) use for Docker Hub.
DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB_DOMAIN, "index.docker.io", DOCKER_HUB_API_HOST})
OFFICIAL_REPO_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255
TAG_LENGTH_MAX = 128

# Explicit ASCII classes: Python's \w and \d also match non-ASCII letters and digits.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_IPV6_TEXT = re.compile(r"[A-Fa-f0-9:]+")
_PORT = re.compile(r"[0-9]+")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIGEST_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*")
_DIGEST_HEX = re.compile(r"[0-9a-fA-F]{32,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_LOWER_HEX_64 = re.compile(r"[a-f0-9]{64}")
# Hex lengths of the algorithms go-digest knows; others are checked by the grammar only.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@record(frozen=True)
class Reference:
    """A normalized image reference (registry, repository, optional tag and digest)."""

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalize ``text``; adds no default tag. Raises InvalidReferenceError."""
        return _parse(text)

    @property
    def name(self) -> str:
        """The fully qualified repository name: ``docker.io/library/alpine``."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the registry API."""
        if self.registry in DOCKER_HUB_ALIASES:
            return DOCKER_HUB_API_HOST
        return self.registry

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/`` in a registry URL."""
        return self.digest or self.tag or "latest"

    @property
    def is_loopback(self) -> bool:
        """Whether the registry is on this machine (localhost, 127.0.0.0/8, ::1)."""
        host = _split_port(self.registry)[0].lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` and no digest."""
        _check_tag(tag)
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository and tag, pinned to ``digest``."""
        _check_digest(digest)
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form docker prints: ``alpine:3.11``, ``user/app:tag``, ``host:5000/app``."""
        text = self.familiar_name()
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def familiar_name(self) -> str:
        """The short repository name, without tag or digest: ``alpine``, ``user/app``."""
        if self.registry != DOCKER_HUB_DOMAIN:
            return self.name
        short = self.repository[len(OFFICIAL_REPO_PREFIX) :]
        if self.repository.startswith(OFFICIAL_REPO_PREFIX) and "/" not in short:
            # A bare 64-hex name reads back as an image ID (refused): "library/<hex>" does not.
            return self.repository if _LOWER_HEX_64.fullmatch(short) else short
        # docker would print "docker.io/my.org/app" as "my.org/app", which reads back as a
        # registry; keeping the domain makes the short form parse to the same reference.
        if _looks_like_domain(self.repository.partition("/")[0]):
            return self.name
        return self.repository


def parse_reference(text: str) -> Reference:
    """Same as :meth:`Reference.parse`."""
    return _parse(text)


def _fail(message: str) -> InvalidReferenceError:
    return InvalidReferenceError(message)


def _q(text: str) -> str:
    """``repr`` for messages, shortened so that a huge input still gives a one-line error."""
    if len(text) > 80:
        return repr(text[:60]) + f"... ({len(text)} characters)"
    return repr(text)


def _parse(text: str) -> Reference:
    if not isinstance(text, str):
        raise _fail(f"an image reference must be a string, not {type(text).__name__}")
    if not text:
        raise _fail("image reference is empty: expected NAME[:TAG][@DIGEST], e.g. alpine:3.19")
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise _fail(f"image reference {_q(text)} contains whitespace: remove it")
    if _LOWER_HEX_64.fullmatch(text):
        raise _fail(
            f"invalid reference {_q(text)}: a 64-character hex string cannot be a repository "
            "name; to pin a digest write NAME@sha256:<hex>"
        )

    rest, at, digest = text.partition("@")
    if at:
        _check_digest(digest, text)
    # A tag is after the last ':' only if no '/' follows it; an earlier ':' is a registry port.
    colon = rest.rfind(":")
    tag: Optional[str] = None
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        _check_tag(tag, text)
    if not rest:
        raise _fail(f"invalid reference {_q(text)}: the repository name is missing")

    registry, remainder = _split_domain(rest, text)
    _check_repository(remainder, text, registry)
    repository = remainder
    if registry == DOCKER_HUB_DOMAIN and "/" not in remainder:
        repository = OFFICIAL_REPO_PREFIX + remainder
    name = f"{registry}/{repository}"
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _fail(
            f"repository name {_q(name)} is {len(name)} characters long; "
            f"the limit is {NAME_TOTAL_LENGTH_MAX}"
        )
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest or None)


def _split_domain(name: str, text: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: ``(registry, remainder)``, without the ``library/`` prefix."""
    first, slash, remainder = name.partition("/")
    # docker also takes an uppercase first component as a host ("User/app" -> host "User"); that
    # is never what anyone means, so it falls through to the lowercase check below instead.
    if slash and _looks_like_domain(first):
        registry = _check_domain(first, text)
    else:
        registry, remainder = DOCKER_HUB_DOMAIN, name
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB_DOMAIN
    return registry, remainder


def _looks_like_domain(component: str) -> bool:
    return ":" in component or "." in component or component.lower() == "localhost"


def _split_port(domain: str) -> tuple[str, Optional[str]]:
    if domain.startswith("["):
        end = domain.find("]")
        if end != -1:
            after = domain[end + 1 :]
            if after.startswith(":"):
                return domain[: end + 1], after[1:]
            if not after:
                return domain, None
        return domain, None
    host, colon, port = domain.partition(":")
    return host, port if colon else None


def _within(part: str, text: str) -> str:
    return f" in {_q(text)}" if text and text != part else ""


def _check_domain(domain: str, text: str) -> str:
    """Validate ``host[:port]`` and return it with the host lowercased."""
    host, port = _split_port(domain)
    where = _within(domain, text)
    hint = "expected HOST[:PORT], e.g. registry.example.com:5000, 127.0.0.1:5000 or [::1]:5000"
    if host.startswith("["):
        inner = host[1:-1] if host.endswith("]") else ""
        if not (_IPV6_TEXT.fullmatch(inner) and _is_ipv6(inner)):
            raise _fail(f"registry {_q(domain)}{where}: {_q(host)} is not an IPv6 address; {hint}")
    elif not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise _fail(
            f"registry {_q(domain)}{where} is not a valid host name: host names use letters, "
            f"digits, '-' and '.'; {hint}"
        )
    if port is None:
        return host.lower()
    if not _PORT.fullmatch(port):
        raise _fail(f"registry {_q(domain)}{where}: port {_q(port)} is not a number; {hint}")
    if len(port) > 5:  # before int(): Python refuses to convert more than 4300 digits
        raise _fail(
            f"registry {_q(domain)}{where}: port {_q(port)} has {len(port)} digits; ports are "
            "between 1 and 65535"
        )
    if not 0 < int(port) < 65536:
        raise _fail(f"registry {_q(domain)}{where}: port {port} is not between 1 and 65535")
    return f"{host.lower()}:{port}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_repository(repository: str, text: str, registry: str) -> None:
    if not repository:
        raise _fail(
            f"invalid reference {_q(text)}: the repository name is missing after registry "
            f"{registry!r}; write {registry}/NAME"
        )
    lowered = repository.lower()
    if lowered != repository and all(_PATH_COMPONENT.fullmatch(c) for c in lowered.split("/")):
        raise _fail(
            f"repository name must be lowercase: {_q(repository)} -> did you mean {lowered!r}?"
        )
    where = _within(repository, text)
    for component in repository.split("/"):
        if not component:
            raise _fail(
                f"repository name {_q(repository)}{where} has an empty path component: "
                "remove the extra '/'"
            )
        if not _PATH_COMPONENT.fullmatch(component):
            raise _fail(
                f"repository name {_q(repository)}{where}: {_q(component)} is not a valid "
                "path component (lowercase letters and digits, separated by '.', '_', '__' or "
                "'-', starting and ending with a letter or digit)" + _registry_hint(component)
            )


def _registry_hint(component: str) -> str:
    if ":" in component or "[" in component:
        return f"; if {_q(component)} is a registry, add the repository: {component}/NAME"
    return ""


def _check_tag(tag: str, text: str = "") -> None:
    where = _within(tag, text)
    if not tag:
        raise _fail(f"tag is empty{where}: remove the ':' or write a tag after it")
    if len(tag) > TAG_LENGTH_MAX:
        raise _fail(
            f"tag {_q(tag)}{where} is {len(tag)} characters long; the limit is {TAG_LENGTH_MAX}"
        )
    if not _TAG.fullmatch(tag):
        raise _fail(
            f"tag {_q(tag)}{where} is invalid: tags use letters, digits, '_', '.' and '-', "
            "and cannot start with '.' or '-'"
        )


def _check_digest(digest: str, text: str = "") -> None:
    where = _within(digest, text)
    algorithm, colon, hex_part = digest.partition(":")
    known_length = _DIGEST_HEX_LENGTHS.get(algorithm.lower())
    if known_length is None or not colon:
        if not _DIGEST_ALGORITHM.fullmatch(algorithm) or not _DIGEST_HEX.fullmatch(hex_part):
            raise _fail(
                f"digest {_q(digest)}{where} is invalid: expected ALGORITHM:HEX, "
                "e.g. sha256:<64 hex digits>"
            )
        return
    if algorithm != algorithm.lower():
        raise _fail(f"digest {_q(digest)}{where}: write the algorithm {algorithm.lower()!r}")
    if not _HEX.fullmatch(hex_part) and hex_part:
        raise _fail(f"digest {_q(digest)}{where} is invalid: the part after ':' must be hex")
    if len(hex_part) != known_length:
        raise _fail(
            f"digest {_q(digest)}{where} is invalid: a {algorithm} digest has {known_length} "
            f"hex digits, this one has {len(hex_part)}"
        )
    if hex_part != hex_part.lower():
        raise _fail(f"digest {_q(digest)}{where}: write the hex digits in lowercase")


# --------------------------------------------------------------------------------------------
# OCI image layouts as sources: ``oci:PATH[:TAG]``

#: The transport prefix of an OCI image layout source (skopeo's, podman's, buildx's spelling).
LAYOUT_PREFIX = "oci:"
#: containers/image's rule for an image name in an OCI layout (its ``refRegexp``): components of
#: letters and digits joined by ``-._:@+`` or ``--``, separated by ``/``.
_LAYOUT_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_LAYOUT_REF_NAME = re.compile(rf"{_LAYOUT_COMPONENT}(?:/{_LAYOUT_COMPONENT})*")
#: A path and a ref name longer than this are no layout anyone wrote.
LAYOUT_TEXT_MAX = 4096


@record(frozen=True)
class LayoutReference:
    """An OCI image layout on disk (``oci:PATH[:TAG]``) as a source: a directory and,
    optionally, the ``org.opencontainers.image.ref.name`` of the image or index in it."""

    path: str
    tag: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> LayoutReference:
        """``oci:PATH[:TAG]`` (or ``PATH[:TAG]``), split as skopeo splits it: at the first
        ``:``, so the path holds none; the tag follows containers/image's ref name rule."""
        return parse_layout_reference(text)

    def __str__(self) -> str:
        return f"{LAYOUT_PREFIX}{self.path}" + (f":{self.tag}" if self.tag else "")

    def familiar(self) -> str:
        return str(self)

    def familiar_name(self) -> str:
        return f"{LAYOUT_PREFIX}{self.path}"


#: A source: an image in a registry, or an OCI image layout on disk.
SourceImage = Union[Reference, LayoutReference]


def is_layout_text(text: object) -> bool:
    """Whether ``text`` names an OCI layout (``oci:...``) rather than a registry image."""
    return isinstance(text, str) and text.startswith(LAYOUT_PREFIX)


def parse_source(text: str) -> SourceImage:
    """A source as a spec or a template writes it: ``oci:PATH[:TAG]``, else a reference."""
    if is_layout_text(text):
        return parse_layout_reference(text)
    return _parse(text)


def parse_layout_reference(text: str) -> LayoutReference:
    if not isinstance(text, str):
        raise _fail(f"an OCI layout source must be a string, not {type(text).__name__}")
    body = text[len(LAYOUT_PREFIX) :] if text.startswith(LAYOUT_PREFIX) else text
    example = "e.g. oci:./build/oci:v1 or oci:/tmp/layout"
    if len(text) > LAYOUT_TEXT_MAX:
        raise _fail(f"OCI layout source {_q(text)} is longer than {LAYOUT_TEXT_MAX} characters")
    if any(ch in body for ch in "\0\n\r"):
        raise _fail(f"OCI layout source {_q(text)} holds a control character")
    # skopeo (containers/image) cuts at the first ':': a path cannot hold one.
    path, colon, tag = body.partition(":")
    if not path:
        raise _fail(f"OCI layout source {_q(text)} names no directory: {example}")
    if colon and not tag:
        raise _fail(f"OCI layout source {_q(text)}: the tag after ':' is empty; {example}")
    if tag and not _LAYOUT_REF_NAME.fullmatch(tag):
        raise _fail(
            f"OCI layout source {_q(text)}: {_q(tag)} is not a valid image name in a layout "
            "(letters and digits, joined by '-', '.', '_', ':', '@', '+' or '--', "
            "components separated by '/'); a directory cannot hold ':'"
        )
    return LayoutReference(path=path, tag=tag or None)
