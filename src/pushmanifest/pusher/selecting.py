"""Which entries a list gets and which fields it may carry: platform filters of list sources
(``platforms:``, ``--platform``), ``--remove`` with ``--append``, ``--entry-annotation``, and
the fields only an OCI index can carry (checked before any request).

Pure: functions of specs, options and descriptors; the run calls them (no I/O here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import InputError, RegistryError
from ..manifest import Descriptor
from ..platform import Platform
from ..reference import Reference, SourceImage
from .common import attested_digest, is_attestation, log, with_platform

if TYPE_CHECKING:
    from ..spec import ManifestEntrySpec, ManifestListSpec
    from .results import PushedEntry, PushOptions


def platform_matches(have: Platform, want: Platform) -> bool:
    """Does an entry's platform match one a user named? A variant not named matches any
    (``linux/arm`` keeps linux/arm/v6 and linux/arm/v7)."""
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    return not want.variant or have.variant == want.variant


def _may_meet(first: Platform, second: Platform) -> bool:
    """Can one entry match both filters' platforms?"""
    return platform_matches(first, second) or platform_matches(second, first)


def _names(platforms: Iterable[Platform]) -> str:
    return ", ".join(str(p) for p in platforms) or "none"


def list_type_of(spec: ManifestListSpec, options: PushOptions) -> str:
    """The list's format: an explicit ``--type`` (not auto), else the spec's ``type``."""
    if options.list_type != "auto":
        return options.list_type
    return spec.list_type or "auto"


def check_before_requests(specs: Sequence[ManifestListSpec], options: PushOptions) -> None:
    """What can be told wrong without a registry: an OCI-only field on a list that will not be
    an OCI index, a filter that meets no platform of another, --remove without --append or of
    a platform this run pushes. InputError (exit 2), at the key's FILE:LINE:COL where a spec
    file gave it."""
    from ..spec.models import oci_only_field

    if options.remove_platforms and not options.append:
        raise InputError("--remove drops entries from the list a tag holds: use it with --append")
    for spec in specs:
        if not spec.manifests and not (options.append and options.remove_platforms):
            raise InputError(
                f"{spec.image.familiar()}: a list spec without entries only removes platforms: "
                "give it entries, or use --append --remove"
            )
        list_type = list_type_of(spec, options)
        if list_type != "oci":
            problem = oci_only_field(spec, with_annotations=list_type == "docker")
            if problem is None and list_type == "docker" and options.entry_annotations:
                problem = ((), "--entry-annotation")
            if problem is not None:
                loc, what = problem
                how = (
                    "--type docker"
                    if options.list_type == "docker"
                    else "type: docker"
                    if spec.list_type == "docker"
                    else "--type auto (a Docker list where every image is a Docker one)"
                )
                raise InputError(
                    f"{spec.where(*loc)}: {what} needs an OCI image index, and {how} may push "
                    "a Docker manifest list, which cannot carry it: use --type oci "
                    "(or type: oci in the spec)"
                )
        for index, entry in enumerate(spec.manifests):
            _check_entry(spec, index, entry, options)
        subject = spec.subject
        if subject is not None and subject.name != spec.image.name:
            log.warning(
                "%s: the subject %s is in another repository: a registry's referrers API lists "
                "an index among the referrers of a manifest of its own repository only",
                spec.where("subject"),
                subject.familiar(),
            )


def _check_entry(
    spec: ManifestListSpec, index: int, entry: ManifestEntrySpec, options: PushOptions
) -> None:
    if (
        entry.platforms
        and options.platforms
        and not any(_may_meet(a, b) for a in entry.platforms for b in options.platforms)
    ):
        raise InputError(
            f"{spec.where('manifests', index, 'platforms')}: manifests[{index}] "
            f"({entry.image.familiar()}) keeps {_names(entry.platforms)} and --platform "
            f"keeps {_names(options.platforms)}: no platform would be left"
        )
    if entry.platform is not None:
        removed = [p for p in options.remove_platforms if platform_matches(entry.platform, p)]
        if removed:
            raise InputError(
                f"{spec.image.familiar()}: --remove {removed[0]}, yet manifests[{index}] "
                f"({entry.image.familiar()}) pushes {entry.platform}"
            )


def kept_by(platform: Platform, wanted: Sequence[Platform]) -> bool:
    """Is ``platform`` among ``wanted`` (a filter; empty keeps everything)?"""
    return not wanted or any(platform_matches(platform, want) for want in wanted)


def narrow_specs(specs: Sequence[ManifestListSpec], options: PushOptions) -> list[ManifestListSpec]:
    """--platform: the entries whose spec names a platform outside it are left out before any
    request (no HEAD for them). A list none of whose entries is kept is exit status 2."""
    if not options.platforms:
        return list(specs)
    narrowed = []
    for spec in specs:
        keep = [
            index
            for index, entry in enumerate(spec.manifests)
            # No platform, or a partial one: known once resolved (resolving.resolve).
            if entry.platform is None
            or not entry.platform.os
            or kept_by(entry.platform, options.platforms)
        ]
        if not keep:
            raise InputError(
                f"{spec.where()}: --platform {_names(options.platforms)} keeps none of the "
                f"entries of {spec.image.familiar()} (they are: "
                f"{_names(e.platform for e in spec.manifests if e.platform)})"
            )
        for index, entry in enumerate(spec.manifests):
            if index not in keep:
                log.info(
                    "--platform: %s (%s) left out of %s",
                    entry.image.familiar(),
                    entry.platform,
                    spec.image.familiar(),
                )
        narrowed.append(spec if len(keep) == len(spec.manifests) else spec.only_manifests(keep))
    return narrowed


def filter_list_entries(
    image: SourceImage,
    entry: ManifestEntrySpec,
    options: PushOptions,
    images: list[Descriptor],
    attestations: list[Descriptor],
) -> list[Descriptor]:
    """A list source's entries after ``platforms:`` and ``--platform``: the images kept, then
    the attestations of those images. An entry's ``platforms:`` keeping none of them is an error
    naming the list's platforms; ``--platform`` keeping none leaves the list out (notice)."""
    if not entry.platforms and not options.platforms:
        return [*images, *attestations]  # as before filters: every entry, as the list has it
    have = _names(d.platform for d in images if d.platform)
    kept = [
        d for d in images if d.platform is not None and kept_by(d.platform, entry.platforms or ())
    ]
    if not kept:
        raise RegistryError(
            f"{image.familiar()} has none of the platforms {_names(entry.platforms or ())} "
            f"(it has: {have})",
            operation="resolve",
            image=str(image),
        )
    kept = [d for d in kept if d.platform is not None and kept_by(d.platform, options.platforms)]
    if not kept:
        log.info("--platform: %s has none of them (it has: %s)", image.familiar(), have)
        return []
    if len(kept) < len(images):
        log.info("%s: %d of its %d images kept", image.familiar(), len(kept), len(images))
    digests = {d.digest for d in kept}
    return [*kept, *(a for a in attestations if attested_digest(a) in digests)]


def nothing_left(
    spec: ManifestListSpec,
    options: PushOptions,
    found: Sequence[tuple[SourceImage, Sequence[str]]],
) -> RegistryError:
    """--platform left none of a list's sources' images: an error naming each source and the
    platforms it has (``found``: each source and the platforms it had)."""
    names = "; ".join(f"{image.familiar()}: {', '.join(have) or 'none'}" for image, have in found)
    return RegistryError(
        f"--platform {_names(options.platforms)}: no image of {spec.image.familiar()}'s sources "
        f"is of these platforms ({names})",
        operation="resolve",
        image=str(spec.image),
    )


def not_a_list(image: SourceImage) -> RegistryError:
    return RegistryError(
        f"{image.familiar()} is a single image, not a list: 'platforms' keeps entries of a "
        "list (give 'platform' for an image)",
        operation="resolve",
        image=str(image),
    )


def without_removed(
    target: Reference, entries: list[Descriptor], remove: Sequence[Platform]
) -> list[Descriptor]:
    """--remove: the entries of the list a tag holds without the removed platforms' images and
    their attestations. A platform the list does not hold is a notice, not a failure."""
    if not remove:
        return entries
    gone = {
        d.digest
        for d in entries
        if not is_attestation(d)
        and d.platform is not None
        and any(platform_matches(d.platform, p) for p in remove)
    }
    for platform in remove:
        if not any(
            d.platform is not None and platform_matches(d.platform, platform)
            for d in entries
            if d.digest in gone
        ):
            log.warning("--remove %s: %s holds no such entry", platform, target.familiar())
    for d in entries:
        if d.digest in gone:
            log.info("--remove: dropping %s (%s) from %s", d.digest, d.platform, target.familiar())
    return [d for d in entries if d.digest not in gone and attested_digest(d) not in gone]


def check_not_emptied(
    spec: ManifestListSpec, entries: Sequence[PushedEntry], existing: object
) -> None:
    """A run must leave an entry in the list: a removal that would take the last one, or a
    removal from a tag that holds no list, is refused before anything is written."""
    if entries:
        return
    target = spec.image.familiar()
    if existing is None:
        raise RegistryError(
            f"--remove: {target} holds no list to remove from", operation="resolve", image=target
        )
    raise InputError(
        f"--remove: {target} would be left without any entry (a list needs one): delete the "
        "tag instead, or keep a platform"
    )


def check_not_removed(
    spec: ManifestListSpec, own: Sequence[PushedEntry], remove: Sequence[Platform]
) -> None:
    """This run's own entries must not be of a platform it removes (known once resolved)."""
    for e in own:
        platform = e.descriptor.platform
        if platform is None or is_attestation(e.descriptor):
            continue
        for p in remove:
            if platform_matches(platform, p):
                raise InputError(
                    f"{spec.image.familiar()}: --remove {p}, yet {e.image.familiar()} "
                    f"pushes {platform}"
                )


def with_entry_annotations(
    spec: ManifestListSpec,
    own: list[PushedEntry],
    annotations: Mapping[Platform, Mapping[str, str]],
) -> list[PushedEntry]:
    """--entry-annotation: each platform's annotations merged over its entry's (theirs win).
    A platform no entry of this run has is an input error."""
    if not annotations:
        return own
    from .results import PushedEntry

    out = list(own)
    for want, extra in annotations.items():
        hits = [
            i
            for i, e in enumerate(out)
            if not is_attestation(e.descriptor)
            and e.descriptor.platform is not None
            and platform_matches(e.descriptor.platform, want)
        ]
        if not hits:
            have = _names(
                e.descriptor.platform
                for e in out
                if e.descriptor.platform and not is_attestation(e.descriptor)
            )
            raise InputError(
                f"--entry-annotation {want}: {spec.image.familiar()} gets no entry of that "
                f"platform (it gets: {have})"
            )
        for i in hits:
            d = out[i].descriptor
            merged = {**d.annotations, **extra}
            out[i] = PushedEntry(
                image=out[i].image, descriptor=with_platform(d, d.platform, merged)
            )
    return out
