"""Media types, descriptors, and building manifest lists with Go-identical bytes.

A manifest list is content-addressed: its digest is the sha256 of its exact bytes. To give the
same digest as manifest-tool for the same spec (so that switching tools does not re-push every
list, and so that digests can be compared across tools), the JSON is written exactly as Go's
``json.MarshalIndent(v, "", "  ")`` writes the structs manifest-tool marshals:

* Docker list entries are ``manifestlist.ManifestDescriptor``: mediaType, size, digest, platform.
* OCI index entries are ``specs-go/v1.Descriptor``: mediaType, digest, size, annotations,
  platform (annotations come before platform in that struct).
* Maps (annotations) have sorted keys; strings use Go's escaping, including its HTML escaping.
* An OCI index's own fields in ``specs-go/v1.Index``'s order: schemaVersion, mediaType,
  artifactType, manifests, subject, annotations (the OCI 1.1 ones, artifactType and subject,
  omitted when empty: a list without them is byte-identical to manifest-tool's).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import Any, Literal, Optional

from ._records import record
from .errors import InputError, RegistryError
from .platform import Platform

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

#: Every manifest media type we read, in the order of containerd's Accept header.
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
)

ListType = Literal["auto", "docker", "oci"]
LIST_TYPES: tuple[str, ...] = ("auto", "docker", "oci")

_OCI_MEDIA_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX})

#: RFC 6838's media type: type "/" subtype (restricted-name characters, at most 127 each).
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z"
)


def is_media_type(text: str) -> bool:
    """Is ``text`` a media type as RFC 6838 writes one (``application/vnd.example+json``)?"""
    return bool(_MEDIA_TYPE.match(text))


@record(frozen=True)
class Descriptor:
    """A reference to a manifest: what a list entry is made of."""

    media_type: str
    digest: str
    size: int
    platform: Optional[Platform] = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # A private copy: the caller's dict changing later must not change a built list's entry.
        object.__setattr__(self, "annotations", dict(self.annotations))


@record(frozen=True)
class ManifestList:
    """A serialized manifest list or index, ready to PUT: ``data`` is what gets sent."""

    media_type: str
    data: bytes
    digest: str
    size: int
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: OCI 1.1 (an OCI index only): the artifact's media type, and the manifest it refers to.
    artifact_type: str = ""
    subject: Optional[Descriptor] = None


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``: ``sha256:<64 hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def choose_list_media_type(entry_media_types: Iterable[str], list_type: str) -> str:
    """The list's media type: as asked, or for "auto" an OCI index when any entry is OCI.

    With only Docker entries "auto" gives a Docker list: manifest-tool's default, so the same
    spec gives the same bytes. OCI entries get an OCI index, the list type made for them.
    """
    if list_type == "docker":
        return DOCKER_MANIFEST_LIST
    if list_type == "oci":
        return OCI_INDEX
    if list_type == "auto":
        if any(media_type in _OCI_MEDIA_TYPES for media_type in entry_media_types):
            return OCI_INDEX
        return DOCKER_MANIFEST_LIST
    raise InputError(f"list type {list_type!r} is not one of: {', '.join(LIST_TYPES)}")


def build_manifest_list(
    entries: Iterable[Descriptor],
    *,
    list_type: str = "auto",
    annotations: Optional[Mapping[str, str]] = None,
    artifact_type: str = "",
    subject: Optional[Descriptor] = None,
) -> ManifestList:
    """Serialize ``entries`` into a Docker manifest list or OCI index, byte for byte as Go does.

    ``artifact_type`` and ``subject`` are OCI 1.1 fields of an index (``subject``: a descriptor
    of the manifest this index refers to; its media type, digest and size are written).
    Raises InputError for annotations, an artifact type or a subject on a Docker list: its
    schema has no place for them.
    """
    manifests = tuple(entries)
    list_annotations = dict(annotations or {})
    _check_annotations(list_annotations, "the list")
    for entry in manifests:
        _check_annotations(entry.annotations, f"entry {entry.digest}")
    media_type = choose_list_media_type((e.media_type for e in manifests), list_type)

    body: dict[str, object] = {"schemaVersion": 2, "mediaType": media_type}
    if media_type == DOCKER_MANIFEST_LIST:
        oci_only = [
            name for name, value in (("artifactType", artifact_type), ("subject", subject)) if value
        ]
        if oci_only:
            raise InputError(
                f"a Docker manifest list cannot carry {' or '.join(oci_only)} (OCI 1.1 fields "
                "of an image index): use --type oci to push an OCI image index instead"
            )
        annotated = [e.digest for e in manifests if e.annotations]
        if list_annotations or annotated:
            where = f"entry {annotated[0]}" if annotated else "the list"
            raise InputError(
                f"a Docker manifest list cannot carry annotations (found on {where}): "
                "use --type oci to push an OCI image index instead"
            )
        body["manifests"] = [_docker_entry(e) for e in manifests]
    else:
        if artifact_type:
            body["artifactType"] = artifact_type
        body["manifests"] = [_oci_entry(e) for e in manifests]
        if subject is not None:
            body["subject"] = _subject(subject)
        if list_annotations:
            body["annotations"] = go_sorted_map(list_annotations)

    data = go_json_marshal_indent(body)
    return ManifestList(
        media_type=media_type,
        data=data,
        digest=sha256_digest(data),
        size=len(data),
        manifests=manifests,
        annotations=list_annotations,
        artifact_type=artifact_type,
        subject=subject,
    )


def _subject(subject: Descriptor) -> dict[str, object]:
    # specs-go/v1.Descriptor: mediaType, digest, size (a subject names the manifest only).
    return {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size}


def _docker_entry(entry: Descriptor) -> dict[str, object]:
    # distribution.Descriptor has omitempty on all three; real entries always have them.
    data: dict[str, object] = {}
    if entry.media_type:
        data["mediaType"] = entry.media_type
    if entry.size:
        data["size"] = entry.size
    if entry.digest:
        data["digest"] = entry.digest
    # ManifestDescriptor.Platform is a struct value, not a pointer: Go always writes it.
    data["platform"] = (
        entry.platform.to_dict() if entry.platform else {"architecture": "", "os": ""}
    )
    return data


def _oci_entry(entry: Descriptor) -> dict[str, object]:
    data: dict[str, object] = {
        "mediaType": entry.media_type,
        "digest": entry.digest,
        "size": entry.size,
    }
    if entry.annotations:
        data["annotations"] = go_sorted_map(entry.annotations)
    if entry.platform is not None:
        data["platform"] = entry.platform.to_dict()
    return data


def _check_annotations(annotations: Mapping[str, str], where: str) -> None:
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError(
                f"annotations of {where} must map strings to strings: {key!r}: {value!r}"
            )


# -- Go's encoding/json ---------------------------------------------------------------------

# What Go escapes: controls, '"', '\\', HTML's '<' '>' '&', and U+2028/U+2029 (JavaScript line
# terminators). Lone surrogates can only come from Python; Go writes invalid UTF-8 as U+FFFD.
_GO_ESCAPED = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')
# Go >= 1.22 writes \b and \f short (older Go wrote \u0008 and \u000c).
_GO_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _GO_SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "\\ufffd"
    return f"\\u{code:04x}"


def go_json_string(text: str) -> str:
    """``text`` as Go's encoding/json quotes it (HTML-safe; other non-ASCII written raw)."""
    return '"' + _GO_ESCAPED.sub(_go_escape, text) + '"'


def go_sorted_map(mapping: Mapping[str, object]) -> dict[str, object]:
    """A Go map as encoding/json writes it: keys sorted by their UTF-8 bytes."""
    return {key: mapping[key] for key in sorted(mapping, key=_utf8_key)}


def _utf8_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def go_json_marshal_indent(value: object) -> bytes:
    """Go's ``json.MarshalIndent(value, "", "  ")``: no trailing newline.

    Dicts are written in insertion order, like a Go struct; pass a Go map through
    :func:`go_sorted_map` first. Supports dict, list/tuple, str, int, bool and None.
    """
    out: list[str] = []
    _write(value, out, "\n")
    return "".join(out).encode("utf-8")


def _write(value: object, out: list[str], newline: str) -> None:
    if value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(go_json_string(value))
    elif isinstance(value, Mapping):
        _write_items(
            [(go_json_string(_key(k)) + ": ", v) for k, v in value.items()], "{}", out, newline
        )
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        _write_items([("", v) for v in value], "[]", out, newline)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as Go JSON")


def _write_items(
    items: list[tuple[str, object]], brackets: str, out: list[str], newline: str
) -> None:
    if not items:
        out.append(brackets)  # Go's Indent keeps empty arrays and objects compact
        return
    inner = newline + "  "
    out.append(brackets[0])
    for index, (prefix, item) in enumerate(items):
        out.append(("," if index else "") + inner + prefix)
        _write(item, out, inner)
    out.append(newline + brackets[1])


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"Go JSON object keys are strings, not {type(key).__name__}")
    return key


# -- reading what registries send -------------------------------------------------------------


def json_object(data: bytes, where: str) -> dict[str, Any]:
    """A manifest or config from a registry, as a JSON object; RegistryError when it is not."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise RegistryError(
            f"{where}: the registry sent JSON nested too deeply", image=where
        ) from None
    except ValueError as exc:
        raise RegistryError(
            f"{where}: the registry sent invalid JSON ({exc})", image=where
        ) from None
    if not isinstance(value, dict):
        raise RegistryError(f"{where}: the registry sent JSON that is not an object", image=where)
    return value


def descriptor_from_json(data: object, where: str) -> Descriptor:
    """A descriptor (list entry, config, layer) as a registry sent it."""
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: not a descriptor object", image=where)
    try:
        platform = data.get("platform")
        annotations = data.get("annotations") or {}
        return Descriptor(
            media_type=str(data.get("mediaType") or ""),
            digest=str(data["digest"]),
            size=int(data["size"]),
            platform=Platform.from_dict(platform) if isinstance(platform, dict) else None,
            annotations={str(k): str(v) for k, v in dict(annotations).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: malformed descriptor ({exc})", image=where) from None
