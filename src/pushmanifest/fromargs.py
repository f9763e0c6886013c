"""A list spec from command-line arguments: manifest-tool's ``from-args``, as a library too.

    spec = spec_from_args(
        platforms="linux/amd64,linux/arm/v7",
        template="registry.example.com/team/app:OS-ARCH-VARIANT",
        target="registry.example.com/team/app:1.4",
    )
    # manifests: team/app:linux-amd64 (linux/amd64), team/app:linux-arm-v7 (linux/arm/v7)

The template names each platform's source image. The placeholders ``OS``, ``ARCH`` and
``VARIANT`` are replaced with the platform's values, everywhere they occur, but only as whole
words: a placeholder is a run of letters and digits made of nothing but placeholders (``ARCH``,
or joined: ``ARCHVARIANT`` gives ``armv7``), so ``HOST`` or ``OS2`` stay as they are.
Placeholders are uppercase, which a repository name cannot be, so a template can never mean a
literal ``OS``. An empty variant (``linux/amd64``) is replaced by nothing, and a separator
(``-``, ``_``, ``.``) left dangling before it goes with it: ``app:ARCH-VARIANT`` gives
``app:amd64``; at the start of a tag or path component the separator after it goes instead
(``app:VARIANT-ARCH`` gives ``app:amd64``).

The placeholders take the platform's text as written in ``--platforms`` (``linux/aarch64``
gives ``aarch64``: the tags of images built per ``uname -m`` say so); the list's entry gets the
normalized platform (``arm64``, with a notice), as a spec would.

``DOCKERARCH`` is the platform's name among Docker Hub's official images, the tag and namespace
names of per-architecture images (``arm32v7/alpine``, ``app:arm64v8``): ``amd64``, ``arm32v5``,
``arm32v6``, ``arm32v7``, ``arm64v8``, ``i386``, ``mips64le``, ``ppc64le``, ``riscv64``,
``s390x``, ``windows-amd64`` (see :data:`DOCKER_ARCHITECTURES`). It is taken from the normalized
platform (``linux/aarch64`` gives ``arm64v8``); a platform without such a name is an input error.

manifest-tool replaces only the first occurrence of each placeholder, anywhere, even inside
another word (its ``HOST`` becomes ``HlinuxT``); for templates where that difference does not
show, both give the same list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Optional, Union

from ._records import record
from .errors import InputError, InvalidPlatformError, InvalidReferenceError
from .platform import Platform, normalize_platform, parse_platform
from .reference import Reference, SourceImage, parse_source

if TYPE_CHECKING:
    from .spec import ManifestListSpec

log = logging.getLogger("pushmanifest")

PLACEHOLDERS = ("OS", "ARCH", "VARIANT", "DOCKERARCH")

#: Docker Hub's architecture names (docker-library's bashbrew: the official images' per-arch
#: namespaces and tags) by normalized (os, architecture, variant).
DOCKER_ARCHITECTURES: Mapping[tuple[str, str, str], str] = {
    ("linux", "amd64", ""): "amd64",
    ("linux", "arm", "v5"): "arm32v5",
    ("linux", "arm", "v6"): "arm32v6",
    ("linux", "arm", "v7"): "arm32v7",
    ("linux", "arm64", ""): "arm64v8",
    ("linux", "arm64", "v8"): "arm64v8",
    ("linux", "386", ""): "i386",
    ("linux", "mips64le", ""): "mips64le",
    ("linux", "ppc64le", ""): "ppc64le",
    ("linux", "riscv64", ""): "riscv64",
    ("linux", "s390x", ""): "s390x",
    ("windows", "amd64", ""): "windows-amd64",
}

#: A word: what a placeholder must be the whole of (letters and digits; '_' separates).
_WORD = re.compile(r"[A-Za-z0-9]+")
#: A word made only of placeholders, and the placeholders in it.
_PLACEHOLDER_WORD = re.compile(r"(?:DOCKERARCH|OS|ARCH|VARIANT)+")
_PLACEHOLDER = re.compile(r"DOCKERARCH|OS|ARCH|VARIANT")
_SEPARATORS = "-_."


@record(frozen=True)
class PlatformArg:
    """One platform of ``--platforms``: the text as written, and the normalized platform."""

    text: str
    os: str
    architecture: str
    variant: str
    platform: Platform


def split_values(values: Union[str, Iterable[str], None]) -> list[str]:
    """``"a,b"`` or ``["a,b", "c"]`` (a repeated option) -> ``["a", "b", "c"]``.

    Blanks around items and empty items (a trailing comma) are dropped.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_platforms(values: Union[str, Iterable[str]]) -> list[PlatformArg]:
    """Parse ``os/arch[/variant]`` items, comma-separated and/or several values.

    Raises :class:`~pushmanifest.InvalidPlatformError` for a malformed or unknown platform, or
    one given twice, and :class:`~pushmanifest.InputError` when there is none.
    """
    items = split_values(values)
    if not items:
        raise InputError("no platform given: list them, e.g. linux/amd64,linux/arm64")
    parsed: list[PlatformArg] = []
    seen: dict[tuple[object, ...], str] = {}
    for text in items:
        parts = [part.strip() for part in text.split("/")]
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidPlatformError(
                f"platform {text!r} is not OS/ARCHITECTURE[/VARIANT], "
                "e.g. linux/amd64 or linux/arm/v7"
            )
        os_name, architecture = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else ""
        try:
            platform, notices = normalize_platform(os_name, architecture, variant)
        except InvalidPlatformError as exc:
            raise InvalidPlatformError(f"platform {text!r}: {exc}", field=exc.field) from None
        for notice in notices:
            log.info("platform %s: %s", text, notice)
        key = platform.key()
        if key in seen:
            same = f" (as {seen[key]!r})" if seen[key] != text else ""
            raise InvalidPlatformError(f"platform {platform} is given twice{same}")
        seen[key] = text
        parsed.append(PlatformArg(text, os_name, architecture, variant, platform))
    return parsed


def has_placeholder(template: str) -> bool:
    """Whether ``template`` holds a placeholder (as a whole word) at all."""
    return any(_PLACEHOLDER_WORD.fullmatch(m.group()) for m in _WORD.finditer(template))


def docker_architecture(platform: Platform) -> str:
    """Docker Hub's name of ``platform`` (``arm32v7`` for linux/arm/v7): ``DOCKERARCH``.

    Raises :class:`~pushmanifest.InvalidPlatformError` for a platform Docker Hub has no name for.
    """
    name = DOCKER_ARCHITECTURES.get((platform.os, platform.architecture, platform.variant))
    if name is not None:
        return name
    hint = ""
    if (platform.os, platform.architecture) == ("linux", "arm") and not platform.variant:
        hint = ": give the variant (linux/arm/v7 is arm32v7, linux/arm/v6 arm32v6)"
    else:
        known = ", ".join(sorted(set(DOCKER_ARCHITECTURES.values())))
        hint = f" (it has: {known})"
    raise InvalidPlatformError(
        f"DOCKERARCH: Docker Hub has no architecture name for {platform}{hint}",
        field="architecture",
    )


def expand_template(template: str, os: str, architecture: str, variant: str = "") -> str:
    """Replace the placeholders ``OS``, ``ARCH``, ``VARIANT`` and ``DOCKERARCH`` in ``template``.

    Only whole words made of placeholders are replaced; an empty variant takes a separator
    (``-``, ``_``, ``.``) left dangling with it. See the module's documentation. ``DOCKERARCH``
    normalizes the platform first (InvalidPlatformError where it has no Docker Hub name).
    """
    values = {"OS": os, "ARCH": architecture, "VARIANT": variant}

    def value(placeholder: str) -> str:
        if placeholder == "DOCKERARCH" and placeholder not in values:
            platform, _ = normalize_platform(os, architecture, variant)
            values[placeholder] = docker_architecture(platform)
        return values[placeholder]

    out: list[str] = []
    pos = 0
    drop_separator_at = -1  # index in template of a separator to skip (after an empty word)
    for match in _WORD.finditer(template):
        word = match.group()
        start, end = match.span()
        between = template[pos:start]
        if pos == drop_separator_at:
            between = between[1:]
        out.append(between)
        pos = end
        if not _PLACEHOLDER_WORD.fullmatch(word):
            out.append(word)
            continue
        replaced = _PLACEHOLDER.sub(lambda m: value(m.group()), word)
        if replaced:
            out.append(replaced)
            continue
        # An empty word (VARIANT of a platform without one): no dangling separator.
        before = "".join(out)
        if before and before[-1] in _SEPARATORS:
            out[:] = [before[:-1]]
        elif end < len(template) and template[end] in _SEPARATORS:
            drop_separator_at = end
    rest = template[pos:]
    if pos == drop_separator_at:
        rest = rest[1:]
    out.append(rest)
    return "".join(out)


def parse_annotations(values: Union[str, Iterable[str], None]) -> dict[str, str]:
    """``KEY=VALUE`` items, comma-separated and/or several values, into a dict (last wins).

    A comma-separated piece without ``=`` continues the value before it, so that a value may
    hold commas: ``org.example.tags=a,b`` is one annotation. Raises InputError for an item
    without ``=`` or with an empty key.
    """
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    pairs: list[list[str]] = []
    for value in values:
        first = True
        for piece in value.split(","):
            if "=" not in piece and not first:
                pairs[-1][1] += "," + piece
                continue
            first = False
            if not piece.strip():
                continue
            key, equals, text = piece.partition("=")
            key = key.strip()
            if not equals or not key:
                raise InputError(
                    f"annotation {piece.strip()!r} is not KEY=VALUE, "
                    "e.g. org.opencontainers.image.source=https://example.com/app"
                )
            pairs.append([key, text])
    return {key: text for key, text in pairs}


def spec_from_args(
    platforms: Union[str, Iterable[str]],
    template: str,
    target: Union[str, Reference],
    *,
    tags: Union[str, Iterable[str], None] = None,
    annotations: Optional[Mapping[str, str]] = None,
    artifact_type: Optional[str] = None,
    subject: Union[str, Reference, None] = None,
) -> ManifestListSpec:
    """The list spec manifest-tool's ``from-args`` describes: a source per platform.

    ``platforms``: ``os/arch[/variant]`` items (a string, comma-separated, or several);
    ``template``: the source image of each platform, with ``OS``, ``ARCH``, ``VARIANT`` or
    ``DOCKERARCH`` (Docker Hub's name: ``arm32v7``);
    ``target``: the list to push (``latest`` when it has no tag); ``tags``: more tags for it;
    ``annotations``: the list's (an OCI index's: a Docker list has none, the push refuses them);
    ``artifact_type`` and ``subject``: OCI 1.1 fields of the index (see :func:`with_list_fields`).

    Raises :class:`~pushmanifest.InputError` (and its subclasses) naming what is wrong: a bad
    platform, a template without placeholders, an expansion that is no image reference, two
    platforms naming the same image, a target that is a digest, a bad tag.
    """
    from .spec import ManifestEntrySpec, ManifestListSpec

    target_ref, tag_list = _target_and_tags(target, tags)
    parsed = parse_platforms(platforms)
    if not has_placeholder(template):
        raise InputError(
            f"template {template!r} has none of the placeholders OS, ARCH, VARIANT, DOCKERARCH "
            "(uppercase, whole words), so every platform would name the same image: "
            "e.g. registry.example.com/app:OS-ARCH-VARIANT or user/app:DOCKERARCH"
        )
    entries = []
    named: dict[SourceImage, PlatformArg] = {}
    for item in parsed:
        try:
            text = expand_template(template, item.os, item.architecture, item.variant)
        except InvalidPlatformError as exc:
            raise InvalidPlatformError(f"platform {item.text!r}: {exc}", field=exc.field) from None
        try:
            image = parse_source(text)  # oci:PATH[:TAG] too: a layout per platform
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(
                f"template {template!r} gives {text!r} for platform {item.text}, "
                f"which is not an image reference: {exc}"
            ) from None
        other = named.get(image)
        if other is not None:
            raise InputError(
                f"template {template!r} gives {image.familiar()} for both {other.text} and "
                f"{item.text}: add the placeholder that tells them apart (OS, ARCH, VARIANT)"
            )
        named[image] = item
        entries.append(ManifestEntrySpec(image=image, platform=item.platform))
    spec = ManifestListSpec(
        image=target_ref,
        tags=tag_list,
        annotations=dict(annotations or {}),
        manifests=entries,
    )
    return with_list_fields(spec, artifact_type=artifact_type, subject=subject)


def removal_spec(
    target: Union[str, Reference], *, tags: Union[str, Iterable[str], None] = None
) -> ManifestListSpec:
    """A list spec without entries of its own: for a run that only removes platforms from the
    list the target holds (``PushOptions(append=True, remove_platforms=...)``; from-args'
    ``--append --remove`` without ``--platforms``). Any other run refuses it before any request.
    """
    from .spec import ManifestListSpec

    target_ref, tag_list = _target_and_tags(target, tags)
    # Built without validation: a spec's manifests may not be empty, but this one says so.
    return ManifestListSpec.model_construct(
        image=target_ref.with_tag(target_ref.tag or "latest"),
        tags=tag_list,
        list_type=None,
        artifact_type=None,
        subject=None,
        annotations={},
        manifests=[],
        origin="",
    )


def with_list_fields(
    spec: ManifestListSpec,
    *,
    artifact_type: Optional[str] = None,
    subject: Union[str, Reference, None] = None,
) -> ManifestListSpec:
    """``spec`` with the OCI 1.1 fields of an index set (over its own; None keeps its own).

    ``artifact_type``: a media type (``application/vnd.example.bundle.v1+json``);
    ``subject``: the image the index refers to (a tag or a digest), read with a HEAD when the
    list is pushed. Both need an OCI index (``--type oci``): the push says so before any request.
    """
    from .manifest import is_media_type

    update: dict[str, object] = {}
    if artifact_type is not None:
        if not isinstance(artifact_type, str) or not is_media_type(artifact_type):
            raise InputError(
                f"artifact type {artifact_type!r} is not a media type (TYPE/SUBTYPE, e.g. "
                "application/vnd.example.bundle.v1+json)"
            )
        update["artifact_type"] = artifact_type
    if subject is not None:
        try:
            update["subject"] = (
                subject if isinstance(subject, Reference) else Reference.parse(subject)
            )
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"subject: {exc}") from None
    return spec.model_copy(update=update) if update else spec


def parse_platform_filter(
    values: Union[str, Iterable[str], None], option: str = "--platform"
) -> tuple[Platform, ...]:
    """``os/arch[/variant]`` items (comma-separated and/or several values) for a filter or
    ``--remove``; empty for None. A variant not given matches any when filtering."""
    if values is None:
        return ()
    if not split_values(values):
        raise InputError(f"{option}: no platform given: list them, e.g. linux/amd64,linux/arm64")
    try:
        return tuple(item.platform for item in parse_platforms(values or ()))
    except InvalidPlatformError as exc:
        raise InvalidPlatformError(f"{option}: {exc}", field=exc.field) from None


def parse_entry_annotations(
    values: Union[str, Iterable[str], None],
) -> dict[Platform, dict[str, str]]:
    """``PLATFORM:KEY=VALUE[,KEY=VALUE...]`` items (``linux/arm/v7:org.example.k=v``), one per
    value: each platform's entry annotations (several values of a platform merge, last wins)."""
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    found: dict[Platform, dict[str, str]] = {}
    for value in values:
        platform_text, colon, rest = value.partition(":")
        if not colon or "=" in platform_text or not rest.strip():
            raise InputError(
                f"--entry-annotation {value!r} is not PLATFORM:KEY=VALUE, e.g. "
                "linux/amd64:org.opencontainers.image.title=app"
            )
        try:
            platform, notices = parse_platform(platform_text)
        except InvalidPlatformError as exc:
            raise InvalidPlatformError(f"--entry-annotation: {exc}", field=exc.field) from None
        for notice in notices:
            log.info("platform %s: %s", platform_text, notice)
        try:
            pairs = parse_annotations(rest)
        except InputError as exc:
            raise InputError(f"--entry-annotation {value!r}: {exc}") from None
        found.setdefault(platform, {}).update(pairs)
    return found


def with_annotations(spec: ManifestListSpec, annotations: Mapping[str, str]) -> ManifestListSpec:
    """``spec`` with ``annotations`` merged over its own (theirs win on the same key)."""
    if not annotations:
        return spec
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError(f"annotations must map strings to strings: {key!r}: {value!r}")
    merged = {**spec.annotations, **annotations}
    return spec.model_copy(update={"annotations": merged})


def _target_and_tags(
    target: Union[str, Reference], tags: Union[str, Iterable[str], None]
) -> tuple[Reference, list[str]]:
    """The target checked (a tag, not a digest) and its extra tags, each a valid tag for it."""
    target_ref = _target(target)
    tag_list = split_values(tags)
    for tag in tag_list:
        try:
            target_ref.with_tag(tag)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"tags: {exc}") from None
    return target_ref, tag_list


def _target(target: Union[str, Reference]) -> Reference:
    try:
        ref = target if isinstance(target, Reference) else Reference.parse(target)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"target: {exc}") from None
    if ref.digest:
        example = ref.with_tag(ref.tag or "latest").familiar()
        raise InputError(
            f"the target cannot be a digest reference ({ref.familiar()}): a list is pushed to "
            f"a tag, e.g. {example}"
        )
    return ref
