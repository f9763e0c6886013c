"""--append: merge into the list the target tag holds, and keep our entries under concurrency.

Registries have no compare-and-swap, so the write is a loop (:func:`write_appended`): re-read
the tag just before writing, write, re-read it after a settle time, and merge and write again
(after a jittered backoff, at most ``APPEND_ROUNDS`` times) where a concurrent run lost ours.
The merge itself (:func:`merge_append`) is pure: same platform replaced in place, others kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import TYPE_CHECKING, Any, Optional

from .._records import record
from ..errors import RegistryError
from ..manifest import Descriptor, ManifestList, descriptor_from_json, json_object
from ..reference import Reference
from . import selecting
from .common import (
    LIST_MEDIA_TYPES,
    attested_digest,
    digest_of,
    gather,
    is_attestation,
    log,
    target_refs,
    unique,
)
from .results import PushedEntry, PushResult

if TYPE_CHECKING:
    from ..spec import ManifestListSpec
    from .run import _Run

#: A PUT of a list refused with one of these codes names an image the registry does not have.
GONE_CODES = ("MANIFEST_BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN")
#: --append: writes per run before giving up on keeping its entries against concurrent pushes.
APPEND_ROUNDS = 8
#: --append: re-reads of the tag after each write, each after the settle time (one read at the
#: settle time sees every write that a run which read before ours makes within it).
APPEND_CHECKS = 1
#: --append: the settle time is this many of our own read-and-write cycles, within these bounds.
APPEND_SETTLE_CYCLES = 4
APPEND_SETTLE_MIN = 0.2
APPEND_SETTLE_MAX = 3.0
APPEND_BACKOFF_MIN = 0.05
APPEND_BACKOFF_MAX = 2.0


@record(frozen=True)
class ExistingList:
    """The list a target tag holds, as --append reads it to merge into."""

    digest: str
    media_type: str
    entries: list[Descriptor]
    annotations: dict[str, str]
    #: An OCI index's artifactType and subject, kept when this run gives none.
    artifact_type: str = ""
    subject: Optional[Descriptor] = None


async def existing_list(
    run: _Run, spec: ManifestListSpec, head: Optional[Descriptor]
) -> Optional[ExistingList]:
    """With --append: the list the target tag holds now (None when it holds nothing)."""
    if not run.options.append or head is None:
        if head is None and run.options.remove_platforms and spec.manifests:
            log.warning("--remove: %s holds no list: nothing to remove", spec.image.familiar())
        return None
    target = spec.image
    if head.media_type not in LIST_MEDIA_TYPES:
        raise RegistryError(
            f"--append: {target.familiar()} holds a single image ({head.media_type}), not a "
            "list to add to; push without --append to replace it",
            operation="resolve",
            image=str(target),
        )
    data = json_object(await run.fetch_manifest(target, head.digest), target.familiar())
    children = data.get("manifests")
    annotations = data.get("annotations")
    subject = data.get("subject")
    artifact_type = data.get("artifactType")
    entries = [
        descriptor_from_json(child, f"{target.familiar()} entry {index}")
        for index, child in enumerate(children if isinstance(children, list) else [])
    ]
    return ExistingList(
        digest=head.digest,
        media_type=head.media_type,
        entries=selecting.without_removed(target, entries, run.options.remove_platforms),
        artifact_type=artifact_type if isinstance(artifact_type, str) else "",
        subject=descriptor_from_json(subject, f"{target.familiar()} subject")
        if isinstance(subject, dict)
        else None,
        annotations={str(k): str(v) for k, v in annotations.items() if isinstance(v, str)}
        if isinstance(annotations, dict)
        else {},
    )


async def write_appended(
    run: _Run,
    spec: ManifestListSpec,
    result: PushResult,
    own: list[PushedEntry],
    base: Optional[ExistingList],
    found: dict[Reference, Optional[Descriptor]],
) -> PushResult:
    """Write a merged list so that a concurrent --append to the same tag does not lose ours.

    Registries have no compare-and-swap. So: re-read the tag just before writing (merging
    anew if it changed since our read); after writing, re-read it after a settle time;
    where it no longer holds our entries (a run that read before our write wrote after it),
    merge into what it holds and write again, after a jittered backoff, at most
    APPEND_ROUNDS times. A run whose entries were overwritten fixes its own loss, so every run
    that exits 0 saw its entries in the tag after the others' writes had landed.
    """
    target = spec.image
    refs = target_refs(spec)
    ours = [e for e in own if not is_attestation(e.descriptor)]
    replaced: dict[tuple[Any, ...], set[str]] = {}
    _note_replaced(replaced, ours, base)
    manifest_list, entries = result.manifest_list, list(result.entries)
    holds = {ref: digest_of(found.get(ref)) for ref in refs}
    written: list[str] = []
    current = result
    base_digest = base.digest if base is not None else None
    for attempt in range(1, APPEND_ROUNDS + 1):
        started = time.monotonic()
        head = await run.head(target)
        if digest_of(head) != base_digest:
            # Someone wrote since we read: merge into what the tag holds now.
            base = await existing_list(run, spec, head)
            base_digest = base.digest if base is not None else None
            _note_replaced(replaced, ours, base)
            manifest_list, entries = run.assemble(spec, own, base)
        holds[target] = digest_of(head)
        puts = [r for r in refs if run.options.force or holds[r] != manifest_list.digest]
        # What a failure from here on reports as written or not (partial success).
        planned = tuple(unique([*written, *(r.identifier for r in puts)]))
        current = run.rewriting(
            current,
            dataclasses.replace(
                result, manifest_list=manifest_list, entries=tuple(entries), written=planned
            ),
        )
        if not puts:
            log.info("%s already holds %s: unchanged", target.familiar(), manifest_list.digest)
            break
        try:
            await gather(run._put(ref, manifest_list) for ref in puts)
        except RegistryError as exc:
            # The registry refuses a list naming an image it no longer has: an entry we
            # kept whose image was deleted. Drop such entries (once) rather than fail forever.
            if exc.code not in GONE_CODES or base is None:
                raise
            kept = await _without_deleted(run, target, base)
            if kept is base:
                raise
            base = kept
            manifest_list, entries = run.assemble(spec, own, base)
            await gather(run._put(ref, manifest_list) for ref in puts)
        for ref in puts:
            holds[ref] = manifest_list.digest
            if ref.identifier not in written:
                written.append(ref.identifier)
        cycle = time.monotonic() - started
        lost, now = await _check_appended(run, spec, ours, replaced, manifest_list, cycle)
        if not lost:
            break
        names = ", ".join(f"{e.image.familiar()} ({e.platform})" for e in lost)
        if attempt == APPEND_ROUNDS:
            raise RegistryError(
                f"--append: {target.familiar()} was overwritten by concurrent pushes "
                f"{attempt} times in a row; these entries are not in it: {names} "
                "(push again)",
                operation="push",
                image=str(target),
            )
        log.warning(
            "--append: a concurrent push to %s dropped %s; merging again (round %d of %d)",
            target.familiar(),
            names,
            attempt + 1,
            APPEND_ROUNDS,
        )
        # Full jitter over a window that doubles each round, in units of our own cycle: the
        # runs that lost together spread out, so that their next writes do not cross.
        window = min(APPEND_BACKOFF_MAX, max(APPEND_BACKOFF_MIN, cycle) * 2**attempt)
        await asyncio.sleep(random.uniform(0, window))
        base, base_digest = now, (now.digest if now is not None else None)
        _note_replaced(replaced, ours, base)
        manifest_list, entries = run.assemble(spec, own, base)
    if attempt > 1:
        log.info("--append: %s holds our entries after %d writes", target.familiar(), attempt)
    return run.rewriting(
        current,
        dataclasses.replace(
            result, manifest_list=manifest_list, entries=tuple(entries), written=tuple(written)
        ),
    )


async def _without_deleted(run: _Run, target: Reference, base: ExistingList) -> ExistingList:
    """The list without the entries whose images the repository no longer has (a HEAD
    each); ``base`` itself when it has none such."""
    images = [d for d in base.entries if not is_attestation(d)]
    heads = await gather(run.head(target.with_digest(d.digest)) for d in images)
    gone = {d.digest for d, head in zip(images, heads) if head is None}
    if not gone:
        return base
    for d in images:
        if d.digest in gone:
            log.warning(
                "--append: dropping %s (%s) from %s: the repository no longer has it",
                d.digest,
                d.platform,
                target.familiar(),
            )
    return dataclasses.replace(
        base,
        entries=[
            d for d in base.entries if d.digest not in gone and attested_digest(d) not in gone
        ],
    )


async def _check_appended(
    run: _Run,
    spec: ManifestListSpec,
    ours: list[PushedEntry],
    replaced: dict[tuple[Any, ...], set[str]],
    written: ManifestList,
    cycle: float,
) -> tuple[list[PushedEntry], Optional[ExistingList]]:
    """After our write: our entries the tag lost, and the list it holds then.

    The settle time outlasts a concurrent run's read-to-write gap, which is about one of our
    own read-and-write cycles: a run that read before our write has written by then.
    """
    settle = min(APPEND_SETTLE_MAX, max(APPEND_SETTLE_MIN, APPEND_SETTLE_CYCLES * cycle))
    log.debug("--append: wrote %s in %.3f s; checking it after %.3f s", spec.image, cycle, settle)
    for _ in range(APPEND_CHECKS):
        await asyncio.sleep(settle * random.uniform(1.0, 1.5))
        head = await run.head(spec.image)
        if head is not None and head.digest == written.digest:
            continue
        now = await existing_list(run, spec, head)
        lost = _lost_entries(spec.image, ours, now, replaced)
        if lost:
            return lost, now
    return [], None


def merge_append(
    target: Reference, existing: list[Descriptor], new: list[PushedEntry]
) -> list[PushedEntry]:
    """The existing list with the new entries merged in, without churn.

    An entry of a platform the new entries have is replaced in place (same position), so an
    identical entry gives the identical list; other platforms come after the existing entries.
    Attestations follow their images: a replaced image's go, a new image's come.
    """
    new_images = {
        e.platform.key(): e for e in new if not is_attestation(e.descriptor) and e.platform
    }
    merged: list[PushedEntry] = []
    placed: set[tuple[Any, ...]] = set()
    for d in existing:
        if is_attestation(d):
            continue
        key = d.platform.key() if d.platform is not None else None
        if key is not None and key in new_images:
            if key not in placed:  # a second existing entry of that platform goes too
                merged.append(new_images[key])
                placed.add(key)
        else:
            merged.append(PushedEntry(image=target.with_digest(d.digest), descriptor=d))
    merged += [e for key, e in new_images.items() if key not in placed]
    images = {e.descriptor.digest for e in merged}
    new_notes: dict[str, list[PushedEntry]] = {}
    for e in new:
        if is_attestation(e.descriptor):
            new_notes.setdefault(attested_digest(e.descriptor), []).append(e)
    for d in existing:
        if not is_attestation(d):
            continue
        attested = attested_digest(d)
        if attested in new_notes:
            merged += new_notes.pop(attested)  # this run's own attestation of that image
        elif attested in images:
            merged.append(PushedEntry(image=target.with_digest(d.digest), descriptor=d))
    merged += [e for notes in new_notes.values() for e in notes]
    kept = sum(1 for d in existing if d.digest in {e.descriptor.digest for e in merged})
    log.info(
        "--append: %d of the %d entries of %s kept as they were",
        kept,
        len(existing),
        target.familiar(),
    )
    return merged


def _note_replaced(
    replaced: dict[tuple[Any, ...], set[str]],
    ours: list[PushedEntry],
    base: Optional[ExistingList],
) -> None:
    """Remember the digests our platforms had in a list we merged into: seeing one of them in
    the tag again means a run that read before our write overwrote it."""
    if base is None:
        return
    mine = {e.platform.key(): e.descriptor.digest for e in ours if e.platform}
    for d in base.entries:
        if d.platform is None or is_attestation(d):
            continue
        key = d.platform.key()
        if key in mine and d.digest != mine[key]:
            replaced.setdefault(key, set()).add(d.digest)


def _lost_entries(
    target: Reference,
    ours: list[PushedEntry],
    now: Optional[ExistingList],
    replaced: dict[tuple[Any, ...], set[str]],
) -> list[PushedEntry]:
    """Our entries the tag no longer holds. Where it holds another image of the same platform
    that we never replaced, a concurrent run pushed a newer build of it: theirs stays."""
    held: dict[tuple[Any, ...], str] = {}
    for d in now.entries if now is not None else []:
        if d.platform is not None and not is_attestation(d):
            held.setdefault(d.platform.key(), d.digest)
    lost = []
    for e in ours:
        assert e.platform is not None
        key = e.platform.key()
        digest = held.get(key)
        if digest == e.descriptor.digest:
            continue
        if digest is None or digest in replaced.get(key, set()):
            lost.append(e)
        else:
            log.warning(
                "--append: %s now holds %s for %s, pushed concurrently: keeping it",
                target.familiar(),
                digest,
                e.platform,
            )
    return lost
