"""Resolving sources: what each spec entry puts in its list, before anything is written.

One wave of HEADs has already run (in :meth:`_Run.push`); here: the one confirming GET for a
source a registry says is missing, ``--wait``'s polling, the sources' checks, lists as sources
(their entries inlined), and platforms read from the images' configs. GETs only where needed.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import field
from typing import TYPE_CHECKING, Optional

from .._records import record
from ..errors import InputError, MissingSourcesError, RegistryError
from ..manifest import Descriptor, descriptor_from_json, json_object
from ..platform import Platform
from ..reference import LayoutReference, Reference, SourceImage
from . import selecting
from .common import (
    IMAGE_MEDIA_TYPES,
    LIST_MEDIA_TYPES,
    attested_digest,
    gather,
    is_attestation,
    log,
    unique,
    with_platform,
)

if TYPE_CHECKING:
    from ..spec import ManifestEntrySpec, ManifestListSpec
    from .run import _Run

#: --wait: first poll interval, doubled up to the maximum (each jittered by +-20 %).
WAIT_FIRST_DELAY = 0.5
WAIT_MAX_DELAY = 5.0


@record
class Source:
    """A spec entry after resolution: the entries it puts in the list."""

    entry: ManifestEntrySpec
    head: Descriptor
    entries: list[Descriptor] = field(default_factory=list)
    #: The platforms of its images, filtered or not (for --platform's error when none is kept).
    platforms_seen: list[str] = field(default_factory=list)


async def confirm_missing(
    run: _Run, sources: list[Reference], found: dict[Reference, Optional[Descriptor]]
) -> None:
    """Some proxies and caches answer HEAD on manifests with 404 while GET works: the first
    source a registry says is missing gets one GET. Where that GET finds it, the registry is
    read with GETs from then on and its other missing sources are asked again; where it does
    not, its HEADs are trusted. So a missing source costs at most one GET per registry (a GET
    counts against pull quotas), and only sources: a missing one ends the run anyway."""
    missing = unique(ref for ref in sources if found.get(ref) is None)
    first: dict[str, Reference] = {}
    for ref in missing:
        first.setdefault(ref.registry, ref)
    confirmed = await gather(
        run.client(ref.registry).confirm_absent(ref.repository, ref.identifier)
        for ref in first.values()
    )
    found.update((ref, d) for ref, d in zip(first.values(), confirmed) if d is not None)
    again = [
        ref
        for ref in missing
        if ref not in first.values() and found[first[ref.registry]] is not None
    ]
    found.update(zip(again, await gather(run.head(ref) for ref in again)))


async def wait_for_sources(
    run: _Run, missing: list[Reference]
) -> dict[Reference, Optional[Descriptor]]:
    """--wait: poll missing sources with HEADs (no GETs: they count as pulls), backing off,
    until all exist or the time is up; what is still missing is then handled as without."""
    appeared: dict[Reference, Optional[Descriptor]] = {}
    wait = run.options.wait
    if not missing or not wait:
        return appeared
    names = ", ".join(r.familiar() for r in missing)
    log.info("waiting up to %g s for %s", wait, names)
    end = time.monotonic() + wait
    delay = WAIT_FIRST_DELAY
    while missing:
        left = end - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(left, delay * random.uniform(0.8, 1.2)))
        heads = await gather(run.head(ref) for ref in missing)
        for ref, head in zip(missing, heads):
            if head is not None:
                log.info("%s exists now", ref.familiar())
                appeared[ref] = head
        missing = [ref for ref, head in zip(missing, heads) if head is None]
        delay = min(delay * 2, WAIT_MAX_DELAY)
    return appeared


def present_sources(
    spec: ManifestListSpec, found: dict[SourceImage, Optional[Descriptor]], ignore_missing: bool
) -> list[Source]:
    """The spec's sources that exist; a missing one is an error unless ``ignore_missing``."""
    missing = [e.image.familiar() for e in spec.manifests if found[e.image] is None]
    if missing and not ignore_missing:
        raise MissingSourcesError(missing)
    for name in missing:
        log.warning("skipping %s: it does not exist (--ignore-missing)", name)
    present = []
    for entry in spec.manifests:
        head = found[entry.image]
        if head is None:
            continue
        if head.media_type not in (*IMAGE_MEDIA_TYPES, *LIST_MEDIA_TYPES):
            raise RegistryError(
                f"{entry.image.familiar()} has media type {head.media_type!r}, which cannot "
                "go in a manifest list (expected a Docker v2 or OCI manifest, or a list)",
                operation="resolve",
                image=str(entry.image),
            )
        present.append(Source(entry, head))
    if not present and spec.manifests:  # (none at all: a run that only removes platforms)
        raise MissingSourcesError(missing)
    return present


async def resolve(run: _Run, source: Source) -> None:
    """Fill in ``source.entries``: a list's entries, or the image with its platform."""
    if source.head.media_type in LIST_MEDIA_TYPES:
        source.entries = await _resolve_list(run, source)
        return
    if source.entry.platforms is not None:
        raise selecting.not_a_list(source.entry.image)
    platform = source.entry.platform
    partial = platform is not None and not platform.os
    if platform is None or partial or run.options.check_platform:
        from_config = await _config_platform(run, source.entry.image, source.head.digest)
        if platform is not None and partial:
            platform = _complete(platform, from_config)
            log.info(
                "%s: platform %s (completed from its config)",
                source.entry.image.familiar(),
                platform,
            )
        elif platform is None:
            log.info(
                "%s: platform %s (from its config)", source.entry.image.familiar(), from_config
            )
            platform = from_config
        else:
            _compare_platforms(
                source.entry.image, platform, from_config, strict=run.options.strict_platform
            )
    source.platforms_seen = [str(platform)]
    if not selecting.kept_by(platform, run.options.platforms):
        log.info("--platform: %s (%s) left out", source.entry.image.familiar(), platform)
        source.entries = []
        return
    source.entries = [with_platform(source.head, platform, source.entry.annotations)]


async def _config_platform(run: _Run, image: SourceImage, digest: str) -> Platform:
    manifest = json_object(await run.fetch_manifest(image, digest), image.familiar())
    config = manifest.get("config")
    config_digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(config_digest, str):
        raise RegistryError(
            f"{image.familiar()}: the manifest names no config; give its platform in the spec",
            operation="resolve",
            image=str(image),
        )
    data = json_object(await run.fetch_blob(image, config_digest), image.familiar())
    platform = Platform.from_dict(data)
    if not platform.os or not platform.architecture:
        raise RegistryError(
            f"{image.familiar()}: its config names no os/architecture; "
            "give its platform in the spec",
            operation="resolve",
            image=str(image),
        )
    return platform


def _compare_platforms(image: SourceImage, given: Platform, actual: Platform, strict: bool) -> None:
    if (given.os, given.architecture, given.variant) == (
        actual.os,
        actual.architecture,
        actual.variant or given.variant,
    ):
        return
    message = (
        f"{image.familiar()}: the spec says {given}, its config says {actual} "
        "(an image built under QEMU carries the build machine's platform: "
        "the spec's is used)"
    )
    if strict:
        raise InputError(message.replace(": the spec's is used", "") + " (--strict-platform)")
    log.warning("%s", message)


async def _resolve_list(run: _Run, source: Source) -> list[Descriptor]:
    """A list as a source: its entries, inlined (or the one the spec's platform selects)."""
    image = source.entry.image
    data = json_object(await run.fetch_manifest(image, source.head.digest), image.familiar())
    children = data.get("manifests")
    if not isinstance(children, list):
        raise RegistryError(
            f"{image.familiar()}: the list has no 'manifests' array",
            operation="resolve",
            image=str(image),
        )
    images: list[Descriptor] = []
    attestations: list[Descriptor] = []
    for index, child in enumerate(children):
        descriptor = descriptor_from_json(child, f"{image.familiar()} entry {index}")
        if is_attestation(descriptor):
            attestations.append(descriptor)
        elif (descriptor.platform is None or not descriptor.platform.architecture) and (
            isinstance(image, LayoutReference)
        ):
            # An OCI layout's index without platforms (some tools write none): the configs say.
            platform = await _config_platform(run, image, descriptor.digest)
            images.append(with_platform(descriptor, platform))
        elif descriptor.platform is None or not descriptor.platform.architecture:
            raise RegistryError(
                f"{image.familiar()}: its entry {index} ({descriptor.digest}) has no "
                "platform; name that image with a platform in the spec instead",
                operation="resolve",
                image=str(image),
            )
        else:
            images.append(descriptor)
    source.platforms_seen = [str(d.platform) for d in images]
    wanted = source.entry.platform
    if wanted is not None:
        chosen = [d for d in images if d.platform and _same_platform(d.platform, wanted)]
        if not chosen:
            have = ", ".join(str(d.platform) for d in images) or "none"
            raise RegistryError(
                f"{image.familiar()} is a list without an entry for {wanted} (it has: {have})",
                operation="resolve",
                image=str(image),
            )
        selected = chosen[0]
        keep = {selected.digest}
        notes = [a for a in attestations if attested_digest(a) in keep]
        annotations = source.entry.annotations or selected.annotations
        return [with_platform(selected, selected.platform, annotations), *notes]
    return selecting.filter_list_entries(image, source.entry, run.options, images, attestations)


def _complete(partial: Platform, config: Platform) -> Platform:
    """A platform the spec gave in part (no os): the rest from the image's config."""
    same_arch = partial.architecture == config.architecture
    return Platform(
        os=config.os,
        architecture=partial.architecture,
        variant=partial.variant or (config.variant if same_arch else ""),
        os_version=partial.os_version or config.os_version,
        os_features=partial.os_features or config.os_features,
        features=partial.features or config.features,
    )


def _same_platform(have: Platform, want: Platform) -> bool:
    """Does a list entry match the platform the spec asks for? An unset variant matches any."""
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    return not want.variant or have.variant == want.variant
