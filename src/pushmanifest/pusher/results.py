"""What a push is given and what it gives back: options, results, partial success."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from .._checks import check_bool, check_client_options, check_instance, check_number, check_path
from .._records import record
from ..auth import Credentials
from ..manifest import Descriptor, ManifestList
from ..platform import Platform
from ..reference import Reference, SourceImage
from ..registry import ClientOptions

if TYPE_CHECKING:
    from ..metadata import ListMetadata
    from ..spec import ManifestListSpec
    from .referrers import Referrer

ListType = Literal["auto", "docker", "oci"]
SpecInput = Union["ManifestListSpec", Sequence["ManifestListSpec"]]


@record(frozen=True)
class PushedEntry:
    """One entry of a pushed list: the source as the spec named it, and what it resolved to."""

    image: SourceImage  # a registry image, or an OCI layout on disk (oci:PATH[:TAG])
    descriptor: Descriptor

    @property
    def platform(self) -> Optional[Platform]:
        return self.descriptor.platform


@record(frozen=True)
class PushResult:
    """What a push did (or, with ``dry_run``, would do)."""

    target: Reference
    tags: tuple[str, ...]
    manifest_list: ManifestList
    entries: tuple[PushedEntry, ...]
    written: tuple[str, ...] = ()
    dry_run: bool = False
    #: The artifacts referring to entries copied from elsewhere (signatures, attestations,
    #: SBOMs), copied into the target repository with them (with ``dry_run``: that would be).
    referrers: tuple[Referrer, ...] = ()

    @property
    def digest(self) -> str:
        return self.manifest_list.digest

    @property
    def size(self) -> int:
        return self.manifest_list.size

    @property
    def media_type(self) -> str:
        return self.manifest_list.media_type

    @property
    def data(self) -> bytes:
        """The exact bytes pushed; their sha256 is :attr:`digest`."""
        return self.manifest_list.data

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "target": str(self.target),
            "tags": list(self.tags),
            "digest": self.digest,
            "size": self.size,
            "mediaType": self.media_type,
            "written": list(self.written),
            "dryRun": self.dry_run,
            "manifests": [
                {
                    "image": str(entry.image),
                    "digest": entry.descriptor.digest,
                    "mediaType": entry.descriptor.media_type,
                    "size": entry.descriptor.size,
                    "platform": entry.platform.to_dict() if entry.platform else None,
                }
                for entry in self.entries
            ],
            "referrers": [referrer.to_dict() for referrer in self.referrers],
        }

    def metadata(self) -> ListMetadata:
        """The list's object of the ``--metadata-file`` document (see :mod:`pushmanifest.metadata`):
        digest, size, media type, full tag references, NAME@DIGEST, entries and their sources."""
        from ..metadata import list_metadata

        return list_metadata(self)


@record(frozen=True)
class PushOptions:
    """Everything about a run that is not in the spec."""

    list_type: ListType = "auto"
    ignore_missing: bool = False
    dry_run: bool = False
    #: Merge into the list the target tag already holds: same platform replaced in place,
    #: others kept; the tag is re-read after writing and rewritten if a concurrent run lost ours.
    append: bool = False
    #: Write the list even when a tag already holds the same digest.
    force: bool = False
    #: Seconds to keep polling (HEAD only) for sources that do not exist yet (None: no wait).
    wait: Optional[float] = None
    #: Also read the configs of entries whose platform the spec gives; warn where they differ.
    check_platform: bool = False
    #: With check_platform: a disagreement is an error instead of a warning.
    strict_platform: bool = False
    #: Copy along the referrers (OCI 1.1 referrers, cosign's signatures, attestations and SBOMs)
    #: of the entries copied from another repository or registry.
    referrers: bool = True
    #: Seconds the whole run may take (None: no limit beyond each request's timeouts).
    deadline: Optional[float] = None
    #: Used for the targets' registries; sources elsewhere use the docker config.
    credentials: Optional[Credentials] = None
    #: A docker config directory or file; None means $DOCKER_CONFIG or ~/.docker.
    docker_config: Optional[str] = None
    client: ClientOptions = field(default_factory=ClientOptions)
    #: Keep only these platforms in the list, from every source (entries whose spec names
    #: another platform are left out before any request); a spec entry's ``platforms`` as well.
    platforms: tuple[Platform, ...] = ()
    #: With ``append``: drop these platforms (and their attestations) from the list the tag holds.
    remove_platforms: tuple[Platform, ...] = ()
    #: Annotations of the entries of each platform (OCI index only), over the spec's.
    entry_annotations: Mapping[Platform, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Here, so that a wrong type fails where it is given (replace() and kwargs included).
        owner = "PushOptions"
        for flag in (
            "ignore_missing",
            "dry_run",
            "append",
            "force",
            "check_platform",
            "strict_platform",
            "referrers",
        ):
            check_bool(owner, flag, getattr(self, flag))
        check_number(owner, "deadline", self.deadline, minimum=0, above_minimum=True, optional=True)
        check_number(owner, "wait", self.wait, minimum=0, optional=True)
        if self.credentials is not None:
            check_instance(
                owner, "credentials", self.credentials, Credentials, "a Credentials or None"
            )
        check_path(owner, "docker_config", self.docker_config)
        check_client_options(owner, self.client)
        for name in ("platforms", "remove_platforms"):
            for item in (*getattr(self, name),):
                check_instance(owner, name, item, Platform, "a tuple of Platform")
        check_instance(owner, "entry_annotations", self.entry_annotations, Mapping, "a mapping")
        for platform, mapping in self.entry_annotations.items():
            check_instance(owner, "entry_annotations", platform, Platform, "keyed by Platform")
            check_instance(owner, "entry_annotations", mapping, Mapping, "of mappings")


@record(frozen=True)
class PartialPush:
    """What a run that failed (or was stopped) while writing did write.

    ``written``: each list now at one or more of its tags, its ``written`` the tags this run
    wrote (a list whose tags all held it already is complete too). ``not_written``: the lists
    and tags that are not where the run meant to put them, as ``image[, :tag...]``.
    """

    written: tuple[PushResult, ...]
    not_written: tuple[str, ...]


def partial_push(exc: BaseException) -> Optional[PartialPush]:
    """The lists a failed :func:`push` wrote before ``exc`` (or its cause); None when none."""
    seen: Optional[BaseException] = exc
    for _ in range(8):  # an interruption is raised from the cancellation that carries it
        if seen is None:
            break
        partial = getattr(seen, "pushmanifest_partial", None)
        if isinstance(partial, PartialPush):
            return partial
        seen = seen.__cause__
    return None
