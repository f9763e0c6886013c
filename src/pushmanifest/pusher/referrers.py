"""Referrers come along: what refers to an entry copied into the target repository goes with it.

An image copied from another repository or registry leaves its signatures, attestations and
SBOMs behind unless they are copied too: OCI 1.1 referrers (manifests whose ``subject`` is the
image, listed by ``GET /v2/<name>/referrers/<digest>`` or, where a registry lacks that API, by
the referrers tag ``sha256-<hex>``, an OCI index) and cosign's tag-based artifacts (the tags
``sha256-<hex>.sig``, ``.att`` and ``.sbom`` next to the image). Sources already in the target
repository need nothing: their referrers are there (both schemes keep them in the image's own
repository).

Reads, after the sources resolved and before anything is written, every entry's at once (the
depth does not grow with the number of sources or referrers):

1. per copied entry: the referrers API's GET, the referrers tag's HEAD and cosign's tags' HEADs;
2. the referrers tag's index (GET, where the source lacks the API), the manifests the API listed
   and cosign's (GET by digest); in the target, for images that have any: whether it has the
   API (one GET per target repository), its referrers tag and cosign's tags there (HEADs);
3. the manifests the referrers tag listed (GET by digest); the target's referrers tag's index
   (GET, where it lacks the API and has the tag: the entries it holds are kept).

Writes, alongside the entries' copies (the distribution spec: "A registry MUST initially accept
an otherwise valid manifest with a subject field that references a manifest that does not exist
in the repository", so a referrer need not wait for its subject): each referrer's blobs mounted
or streamed and its manifest put by digest (:mod:`.copying`), then cosign's tags and, where the
target lacks the API, its referrers tag merged (the index names the referrers: after them).

One level only: referrers of referrers (a signature of an SBOM) are not followed. A referrer
that is itself an index is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from .._records import record
from ..errors import RegistryError
from ..manifest import OCI_INDEX, Descriptor, json_object
from ..quirks import put_when_settled
from ..reference import LayoutReference, Reference
from .common import LIST_MEDIA_TYPES, gather, is_attestation, log

if TYPE_CHECKING:
    from .results import PushedEntry
    from .run import _Run

#: How each referrer was found (Referrer.found).
FOUND_API = "referrers API"
FOUND_TAG = "referrers tag"
FOUND_COSIGN = "cosign tag"
#: cosign's tag-based artifacts: signatures, attestations, SBOMs.
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
#: The most referrers one image may bring along (each is a manifest GET: a pull on Docker Hub).
MAX_REFERRERS = 100

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
T = TypeVar("T")


@record(frozen=True)
class Referrer:
    """An artifact that refers to an entry of a pushed list, copied into the target repository
    with it (with ``dry_run``: that would be)."""

    #: The digest of the image it refers to (an entry of the list).
    subject: str
    #: The source image, as the spec named it: its repository holds the referrer.
    source: Reference
    digest: str
    media_type: str
    size: int
    #: OCI 1.1's artifactType (else the config's media type); for cosign's tags, the first
    #: layer's media type (the signature's, the attestation's, the SBOM's format).
    artifact_type: str = ""
    #: "referrers API", "referrers tag" (sha256-<hex>) or "cosign tag".
    found: str = FOUND_API
    #: cosign's tag (sha256-<hex>.sig, .att, .sbom) it is written under in the target too.
    tag: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        data: dict[str, Any] = {
            "subject": self.subject,
            "source": str(self.source),
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "artifactType": self.artifact_type,
            "found": self.found,
        }
        if self.tag:
            data["tag"] = self.tag
        return data

    def index_entry(self) -> dict[str, Any]:
        """Its descriptor in a referrers tag's index, as the distribution spec asks."""
        entry: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            entry["artifactType"] = self.artifact_type
        if self.annotations:
            entry["annotations"] = dict(self.annotations)
        return entry


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


@record
class _Heads:
    """The first wave's answers about one source image."""

    api: Optional[list[Any]]  # the referrers API's descriptors; None: no API
    tag: Optional[Descriptor]  # the referrers tag, where there is one
    cosign: dict[str, Descriptor]  # cosign's tags found, by tag

    @property
    def has_oci(self) -> bool:
        return bool(self.api) or (self.api is None and self.tag is not None)


@record
class _Subject:
    """One entry copied into one target repository, and what comes along."""

    source: Reference
    digest: str
    target: Reference
    referrers: list[Referrer] = field(default_factory=list)
    #: The target's referrers tag entries, where it lacks the API (None: it has it, or nothing
    #: is to go in it); kept when the tag is rewritten.
    target_index: Optional[list[Any]] = None
    #: cosign's tags in the target: tag -> the digest it holds.
    target_tags: dict[str, str] = field(default_factory=dict)


@record
class ReferrerPlan:
    """What a run's discovery found: every subject's referrers, and per list the referrers its
    entries bring along."""

    subjects: list[_Subject]
    per_list: list[tuple[Referrer, ...]]


class _Once:
    """Each key's coroutine run once, its task shared by every caller (the same source image in
    several lists, the same target repository for several images)."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, ...], asyncio.Future[Any]] = {}

    def get(self, key: tuple[str, ...], make: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._tasks[key] = task
        return task


async def discover(
    run: _Run, lists: Sequence[tuple[Reference, Sequence[PushedEntry]]]
) -> ReferrerPlan:
    """Read, for every list, the referrers of its entries copied from elsewhere. Reads only."""
    once = _Once()
    subjects: dict[tuple[str, ...], _Subject] = {}
    per_list_keys: list[list[tuple[str, ...]]] = []
    for target, entries in lists:
        keys: list[tuple[str, ...]] = []
        for entry in entries:
            source = entry.image
            if isinstance(source, LayoutReference):
                continue  # an OCI layout on disk: no registry to find referrers in
            if (source.registry, source.repository) == (target.registry, target.repository):
                continue  # already in the target repository, and so are its referrers
            if is_attestation(entry.descriptor):
                continue  # BuildKit's attestation manifests: artifacts themselves
            digest = entry.descriptor.digest
            key = (source.registry, source.repository, digest, target.registry, target.repository)
            subjects.setdefault(key, _Subject(source, digest, target))
            keys.append(key)
        per_list_keys.append(keys)
    await gather(_discover_subject(run, once, subject) for subject in subjects.values())
    per_list = []
    for keys in per_list_keys:
        found: list[Referrer] = []
        for listed in dict.fromkeys(keys):
            found.extend(subjects[listed].referrers)
        per_list.append(tuple(found))
    if run.options.dry_run:
        for subject in subjects.values():
            for r in subject.referrers:
                log.info(
                    "dry run: would copy %s's referrer %s (%s, %s%s) into %s",
                    subject.source.familiar(),
                    r.digest,
                    r.artifact_type or r.media_type,
                    r.found,
                    f" {r.tag}" if r.tag else "",
                    subject.target.familiar_name(),
                )
    return ReferrerPlan(list(subjects.values()), per_list)


async def _discover_subject(run: _Run, once: _Once, subject: _Subject) -> None:
    source = subject.source
    heads = await once.get(
        ("heads", source.registry, source.repository, subject.digest),
        lambda: _source_heads(run, source, subject.digest),
    )
    referrers, _ = await asyncio.gather(
        once.get(
            ("referrers", source.registry, source.repository, subject.digest),
            lambda: _source_referrers(run, source, subject.digest, heads),
        ),
        _target_state(run, once, subject, heads),
    )
    subject.referrers = [r for r in referrers if not _held_otherwise(subject, r)]


def _held_otherwise(subject: _Subject, referrer: Referrer) -> bool:
    """A cosign tag the target holds with other content: left as it is."""
    held = subject.target_tags.get(referrer.tag) if referrer.tag else None
    if held is None or held == referrer.digest:
        return False
    # cosign keeps every signature of an image in the one manifest at this tag: replacing it
    # would drop the target's own.
    log.warning(
        "%s:%s already holds other content (%s): not replaced by %s's",
        subject.target.familiar_name(),
        referrer.tag,
        held,
        subject.source.familiar(),
    )
    return True


async def _source_heads(run: _Run, source: Reference, digest: str) -> _Heads:
    """Wave 1: the referrers API, the referrers tag, cosign's tags (HEADs cost no pull)."""
    client = run.client(source.registry)
    tag = fallback_tag(digest)
    cosign_tags = [tag + suffix for suffix in COSIGN_SUFFIXES]
    api, tag_head, *cosign = await asyncio.gather(
        client.get_referrers(source.repository, digest),
        run.head(source.with_tag(tag)),
        *(run.head(source.with_tag(t)) for t in cosign_tags),
    )
    found = {t: head for t, head in zip(cosign_tags, cosign) if head is not None}
    return _Heads(api=api, tag=tag_head, cosign=found)


async def _source_referrers(
    run: _Run, source: Reference, digest: str, heads: _Heads
) -> list[Referrer]:
    """Waves 2 and 3: the manifests of every referrer (GETs by digest), checked."""
    where = f"{source.familiar()}@{digest}"

    async def oci() -> list[Referrer]:
        listed, found = heads.api, FOUND_API
        if listed is None:
            if heads.tag is None:
                return []
            listed, found = await _index_entries(run, source, heads.tag, where), FOUND_TAG
        wanted: dict[str, Descriptor] = {}
        for index, item in enumerate(listed):
            descriptor = _listed_descriptor(item, f"{where} referrer {index}")
            wanted.setdefault(descriptor.digest, descriptor)
        _check_count(len(wanted), where)
        got = await gather(_read_referrer(run, source, digest, d, found) for d in wanted.values())
        return [r for r in got if r is not None]

    async def cosign() -> list[Referrer]:
        got = await gather(
            _read_referrer(run, source, digest, head, FOUND_COSIGN, tag)
            for tag, head in heads.cosign.items()
        )
        return [r for r in got if r is not None]

    listed, tagged = await asyncio.gather(oci(), cosign())
    return [*listed, *tagged]


async def _index_entries(run: _Run, image: Reference, head: Descriptor, where: str) -> list[Any]:
    """The ``manifests`` of a referrers tag's index (read by digest: what the HEAD saw)."""
    data = json_object(await run.fetch_manifest(image, head.digest), where)
    manifests = data.get("manifests")
    if data.get("mediaType", head.media_type) != OCI_INDEX or not isinstance(manifests, list):
        raise RegistryError(
            f"{where}: the referrers tag {fallback_tag(head.digest)} does not hold an OCI index",
            operation="read the referrers of",
            image=where,
        )
    return manifests


def _listed_descriptor(item: Any, where: str) -> Descriptor:
    if not isinstance(item, dict):
        raise RegistryError(f"{where}: not a descriptor object", image=where)
    digest, media_type, size = item.get("digest"), item.get("mediaType"), item.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RegistryError(f"{where}: malformed digest {str(digest)[:80]!r}", image=where)
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise RegistryError(f"{where}: malformed descriptor (mediaType, size)", image=where)
    return Descriptor(media_type=media_type, digest=digest, size=size)


def _check_count(count: int, where: str) -> None:
    if count > MAX_REFERRERS:
        raise RegistryError(
            f"{where} has {count} referrers, more than the {MAX_REFERRERS} copied along; "
            "copy them by other means and push with --no-referrers",
            operation="read the referrers of",
            image=where,
        )


async def _read_referrer(
    run: _Run,
    source: Reference,
    subject: str,
    listed: Descriptor,
    found: str,
    tag: str = "",
) -> Optional[Referrer]:
    """A referrer's manifest, read (the copy reuses the bytes) and checked."""
    where = f"{source.familiar()}@{listed.digest}"
    try:
        data = await run.fetch_manifest(source, listed.digest)
    except RegistryError as exc:
        if exc.status != 404 or found == FOUND_COSIGN:
            raise
        # A referrers tag is written by clients, not the registry: it may name what is gone.
        log.warning("%s: listed as a referrer of %s but gone: not copied", where, subject)
        return None
    manifest = json_object(data, where)
    media_type = manifest.get("mediaType") or listed.media_type
    if not isinstance(media_type, str) or media_type in LIST_MEDIA_TYPES:
        log.warning("%s: a referrer that is an index (%s) is not copied", where, media_type)
        return None
    config = manifest.get("config")
    config = config if isinstance(config, dict) else {}
    layers = manifest.get("layers")
    layers = [x for x in layers if isinstance(x, dict)] if isinstance(layers, list) else []
    if found != FOUND_COSIGN:
        subject_of = manifest.get("subject")
        if not isinstance(subject_of, dict) or subject_of.get("digest") != subject:
            log.warning("%s: listed as a referrer of %s but its subject differs", where, subject)
            return None
        artifact_type = manifest.get("artifactType") or config.get("mediaType") or ""
    else:
        artifact_type = manifest.get("artifactType") or (
            layers[0].get("mediaType") if layers else ""
        )
    annotations = manifest.get("annotations")
    return Referrer(
        subject=subject,
        source=source,
        digest=listed.digest,
        media_type=media_type,
        size=len(data),
        artifact_type=str(artifact_type or ""),
        found=found,
        tag=tag,
        annotations={str(k): str(v) for k, v in annotations.items()}
        if isinstance(annotations, dict)
        else {},
    )


async def _target_state(run: _Run, once: _Once, subject: _Subject, heads: _Heads) -> None:
    """Waves 2 and 3 in the target: its API, its referrers tag, cosign's tags there."""
    target = subject.target
    client = run.client(target.registry)

    async def index() -> None:
        if not heads.has_oci:
            return
        tag = fallback_tag(subject.digest)
        # The tag's HEAD goes with the API's GET (a HEAD costs no pull): one wave, not two.
        has_api, head = await asyncio.gather(
            once.get(
                ("target api", target.registry, target.repository),
                lambda: client.get_referrers(target.repository, subject.digest),
            ),
            run.head(target.with_tag(tag)),
        )
        if has_api is not None:
            return
        where = f"{target.familiar_name()}:{tag}"
        if head is None:
            subject.target_index = []
        else:
            subject.target_index = await _index_entries(run, target, head, where)

    async def cosign() -> None:
        tags = list(heads.cosign)
        found = await gather(run.head(target.with_tag(t)) for t in tags)
        subject.target_tags = {t: h.digest for t, h in zip(tags, found) if h is not None}

    await asyncio.gather(index(), cosign())


async def copy_referrers(run: _Run, plan: ReferrerPlan) -> None:
    """Write: every referrer into its target repository, then the tags that find them."""
    await gather(_write_subject(run, subject) for subject in plan.subjects)


async def _write_subject(run: _Run, subject: _Subject) -> None:
    from .copying import copy_once  # (imported when a referrer is copied, not by every push)

    target, client = subject.target, run.client(subject.target.registry)
    await gather(
        copy_once(run, r.source, target, Descriptor(r.media_type, r.digest, r.size))
        for r in subject.referrers
    )
    writes: list[Awaitable[str]] = []
    for r in subject.referrers:
        if not r.tag:
            continue
        if subject.target_tags.get(r.tag) == r.digest:
            continue
        data = await run.fetch_manifest(r.source, r.digest)
        writes.append(put_when_settled(client, target.repository, r.tag, data, r.media_type))
    listed = [r for r in subject.referrers if not r.tag]
    if subject.target_index is not None and listed:
        kept = subject.target_index
        have = {e.get("digest") for e in kept if isinstance(e, dict)}
        new = [r.index_entry() for r in listed if r.digest not in have]
        if new:
            body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*kept, *new]}
            data = json.dumps(body, separators=(",", ":")).encode()
            tag = fallback_tag(subject.digest)
            writes.append(put_when_settled(client, target.repository, tag, data, OCI_INDEX))
    await gather(writes)
    if subject.referrers:
        log.info(
            "copied %d referrer(s) of %s into %s",
            len(subject.referrers),
            f"{subject.source.familiar()}@{subject.digest}",
            target.familiar_name(),
        )
