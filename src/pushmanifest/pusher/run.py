"""The run: one client per registry, shared by every list; resolve -> build -> write.

The order is what keeps a tag from ever pointing at a broken list: nothing is written until every
source of every list in the run has resolved, and every request that does not depend on another
goes out concurrently (one wave of HEADs, one wave of PUTs), so the time a push takes does not
grow with the number of architectures. :class:`_Run` is the hub; resolving sources, copying into
the target repository and --append's write loop are functions of their own modules taking it.

The modules of features a run may not use (``appending``, ``copying``, ``layouts``,
``referrers``) are imported where first used, after the first wave of requests is out: each
module imported before it delays a push's first request (issue 12: start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Optional

from .._checks import check_specs, options_with
from .._sync import run_sync
from ..auth import Credentials, load_docker_config, resolve_credentials
from ..errors import InputError, NetworkError, RegistryError
from ..manifest import OCI_INDEX, Descriptor, ManifestList, build_manifest_list
from ..quirks import put_when_settled
from ..reference import LayoutReference, Reference, SourceImage
from ..registry import RegistryClient
from . import resolving, selecting
from .common import (
    Memo,
    all_targets,
    check_inputs,
    gather,
    is_attestation,
    log,
    raise_first_failure,
    target_refs,
    unique,
)
from .results import PartialPush, PushedEntry, PushOptions, PushResult, SpecInput

if TYPE_CHECKING:
    from ..auth import DockerConfig
    from ..layout import OciLayout
    from ..spec import ManifestListSpec
    from .appending import ExistingList
    from .resolving import Source
    from .warm import Warmup


async def push_async(
    specs: SpecInput,
    options: Optional[PushOptions] = None,
    *,
    warmup: Optional[Warmup] = None,
    **kwargs: Any,
) -> list[PushResult]:
    """Push one list or several in one run (shared connections and tokens); async.

    ``kwargs`` are :class:`PushOptions` fields, for convenience: ``push_async(spec, dry_run=True)``.
    ``warmup``: clients set up ahead (:mod:`.warm`), used where they fit the run.
    """
    spec_list = check_specs("push", specs)
    opts = _merge_options(options, kwargs)
    async with _Run(opts, warmup) as run:
        try:
            if opts.deadline is None:
                return await run.push(spec_list)
            try:
                return await asyncio.wait_for(run.push(spec_list), opts.deadline)
            except asyncio.TimeoutError:
                raise NetworkError(
                    f"the push did not finish within its deadline of {opts.deadline:g} s",
                    operation="push",
                ) from None
        except BaseException as exc:
            # Failed or cancelled once lists were being written: say which were.
            partial = run.partial()
            if partial is not None:
                with contextlib.suppress(AttributeError):  # an exception without a __dict__
                    exc.pushmanifest_partial = partial  # type: ignore[attr-defined]
            raise


def push(
    specs: SpecInput, options: Optional[PushOptions] = None, **kwargs: Any
) -> list[PushResult]:
    """Synchronous :func:`push_async`, for scripts. Not for use inside a running event loop."""
    return run_sync(lambda: push_async(specs, options, **kwargs), "push")


def _merge_options(options: Optional[PushOptions], kwargs: dict[str, Any]) -> PushOptions:
    opts = options_with("push", options, PushOptions, "a PushOptions or None", kwargs)
    if opts.strict_platform and not opts.check_platform:
        # Strictness about a check implies making the check.
        opts = dataclasses.replace(opts, check_platform=True)
    if opts.list_type not in ("auto", "docker", "oci"):
        raise InputError(f"unknown list type {opts.list_type!r}: use auto, docker or oci")
    return opts


class _Run:
    """One run: a client per registry, shared by every list in it."""

    def __init__(self, options: PushOptions, warmup: Optional[Warmup] = None) -> None:
        self.options = options
        self._warmup = warmup
        self._clients: dict[str, RegistryClient] = {}
        self._docker_config: Optional[DockerConfig] = None
        self._fetched = Memo()
        #: The copies into target repositories (copying.py): each made once per run.
        self.copied = Memo()
        # Each blob copy may hold a GET from the source and a PUT to the target at once: half
        # the per-registry bound keeps both within it, so copies cannot starve each other.
        self.copy_slots = asyncio.Semaphore(max(1, self.options.client.max_concurrency // 2))
        #: The OCI layouts the run's sources name (layouts.py), read and verified.
        self.layouts: dict[LayoutReference, OciLayout] = {}
        #: Once writing has begun: every list's result, and the tags written so far.
        self._writing: Optional[list[PushResult]] = None
        self._tags_written: set[tuple[str, str, str]] = set()
        #: Each spec's subject (OCI 1.1), as the wave of HEADs found it.
        self.subjects: dict[Reference, Descriptor] = {}

    async def __aenter__(self) -> _Run:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))
        if self._warmup is not None:  # what the run did not claim, and what it never used
            await self._warmup.aclose()

    def client(self, registry: str) -> RegistryClient:
        return self._clients[registry]

    async def _open_clients(self, specs: list[ManifestListSpec]) -> None:
        """A client per registry of the run, with its credentials.

        Credential helpers are programs that may take a while: they run in threads, all at once.
        """
        targets = {spec.image.registry for spec in specs}
        registries = unique(
            ref.registry
            for spec in specs
            for ref in [spec.image, *(entry.image for entry in spec.manifests)]
            + ([spec.subject] if spec.subject is not None else [])
            if isinstance(ref, Reference)  # not an OCI layout on disk
        )
        if self._warmup is not None:
            self._clients.update(await self._warmup.claim(registries, targets))
            registries = [r for r in registries if r not in self._clients]
        if any(self.options.credentials is None or r not in targets for r in registries):
            self._docker_config = load_docker_config(self.options.docker_config)

        def credentials_for(registry: str) -> Optional[Credentials]:
            explicit = self.options.credentials if registry in targets else None
            return resolve_credentials(
                registry, explicit=explicit, docker_config=self._docker_config
            )

        found = await gather(asyncio.to_thread(credentials_for, r) for r in registries)
        for registry, credentials in zip(registries, found):
            if credentials is not None:
                log.debug("%s: credentials of %s", registry, credentials.source or "a user")
            self._clients[registry] = RegistryClient(
                registry, credentials=credentials, options=self.options.client
            )

    async def push(self, specs: list[ManifestListSpec]) -> list[PushResult]:
        check_inputs(specs)
        selecting.check_before_requests(specs, self.options)
        specs = selecting.narrow_specs(specs, self.options)
        dry_run = self.options.dry_run
        await self._open_clients(specs)

        # Every scope first, so that each registry's one token request covers the whole run.
        for spec in specs:
            target = spec.image
            self.client(target.registry).add_scope(
                target.repository, "pull" if dry_run else "pull,push"
            )
            for entry in spec.manifests:
                if isinstance(entry.image, Reference):
                    self.client(entry.image.registry).add_scope(entry.image.repository, "pull")
            if spec.subject is not None:
                self.client(spec.subject.registry).add_scope(spec.subject.repository, "pull")
        await gather(client.ping() for client in self._clients.values())

        # One wave: every source HEAD, and every target tag HEAD (to skip unchanged PUTs).
        # OCI layouts on disk are read meanwhile, every blob hashed: nothing is written before.
        heads = [
            entry.image
            for spec in specs
            for entry in spec.manifests
            if isinstance(entry.image, Reference)
        ]
        targets = [] if dry_run and not self.options.append else all_targets(specs)
        subjects = [spec.subject for spec in specs if spec.subject is not None]
        wanted = unique([*heads, *targets, *subjects])
        reading = asyncio.ensure_future(self._read_layouts(specs))
        try:
            answers = await self._head_wave(wanted)
        except BaseException:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            raise
        in_layouts = await reading
        found = dict(zip(wanted, answers))
        self._subjects_found(specs, found)
        await resolving.confirm_missing(self, heads, found)
        if self.options.wait:
            # After the one confirming GET: a source still missing is polled with HEADs.
            missing = unique(ref for ref in heads if found[ref] is None)
            found.update(await resolving.wait_for_sources(self, missing))

        in_sources: dict[SourceImage, Optional[Descriptor]] = dict(found.items())
        in_sources.update(in_layouts.items())
        present = [
            resolving.present_sources(spec, in_sources, self.options.ignore_missing)
            for spec in specs
        ]
        from . import appending, referrers

        # Only now, and only where needed: lists, configs, the list to append to (GETs).
        _, existing = await asyncio.gather(
            gather(resolving.resolve(self, source) for sources in present for source in sources),
            gather(appending.existing_list(self, spec, found.get(spec.image)) for spec in specs),
        )
        built = [
            self._build(spec, sources, old) for spec, sources, old in zip(specs, present, existing)
        ]
        results = [
            self._result(spec, manifest_list, entries, found)
            for spec, (manifest_list, entries) in zip(specs, built)
        ]
        plan = None
        if self.options.referrers:
            # One wave for every entry copied from elsewhere: what refers to it (reads only).
            plan = await referrers.discover(
                self, [(spec.image, entries) for spec, (_, entries) in zip(specs, built)]
            )
            results = [
                dataclasses.replace(result, referrers=found_referrers)
                for result, found_referrers in zip(results, plan.per_list)
            ]
        # Everything resolved, built and read: from here on we write.
        if dry_run:
            return results
        self._writing = results
        await gather(
            [
                *(
                    self._copy_entries(spec.image, entries)
                    for spec, (_, entries) in zip(specs, built)
                ),
                *([referrers.copy_referrers(self, plan)] if plan is not None else []),
            ]
        )
        return await gather(
            appending.write_appended(
                self, spec, result, self._own_entries(spec, sources), old, found
            )
            if self.options.append
            else self._write(spec, result)
            for spec, result, sources, old in zip(specs, results, present, existing)
        )

    async def _read_layouts(
        self, specs: list[ManifestListSpec]
    ) -> dict[LayoutReference, Optional[Descriptor]]:
        """The OCI layouts on disk the sources name, read and verified (none: nothing to do)."""
        if not any(isinstance(e.image, LayoutReference) for s in specs for e in s.manifests):
            return {}
        from . import layouts

        return await layouts.read_layouts(self, specs)

    async def _write(self, spec: ManifestListSpec, result: PushResult) -> PushResult:
        await gather(
            self._put(ref, result.manifest_list)
            for ref in target_refs(spec)
            if ref.identifier in result.written
        )
        return result

    def _result(
        self,
        spec: ManifestListSpec,
        manifest_list: ManifestList,
        entries: list[PushedEntry],
        found: dict[Reference, Optional[Descriptor]],
    ) -> PushResult:
        written: list[str] = []
        for ref in target_refs(spec):
            existing = found.get(ref)
            if (
                existing is not None
                and existing.digest == manifest_list.digest
                and not self.options.force
            ):
                log.info("%s already holds %s: unchanged", ref.familiar(), manifest_list.digest)
            else:
                written.append(ref.identifier)
        dry_run = self.options.dry_run
        return PushResult(
            target=spec.image,
            tags=tuple(r.identifier for r in target_refs(spec)),
            manifest_list=manifest_list,
            entries=tuple(entries),
            written=() if dry_run else tuple(written),
            dry_run=dry_run,
        )

    def _subjects_found(
        self, specs: list[ManifestListSpec], found: dict[Reference, Optional[Descriptor]]
    ) -> None:
        """A subject is a descriptor of what the HEAD found (no GET); a missing one fails."""
        for spec in specs:
            if spec.subject is None:
                continue
            head = found.get(spec.subject)
            if head is None:
                raise RegistryError(
                    f"{spec.where('subject')}: the subject {spec.subject.familiar()} does not "
                    "exist",
                    operation="resolve",
                    image=str(spec.subject),
                )
            self.subjects[spec.subject] = Descriptor(head.media_type, head.digest, head.size)

    # -- requests every part of the run makes ------------------------------------------------

    async def head(self, ref: Reference) -> Optional[Descriptor]:
        return await self.client(ref.registry).head_manifest(ref.repository, ref.identifier)

    async def _head_wave(self, refs: list[Reference]) -> list[Optional[Descriptor]]:
        """``gather(self.head(ref) for ref in refs)``, each registry's HEADs started in order
        and at most --max-concurrency at a time (as its client admits them): the others wait as
        references, not as tasks (a bulk run's wave of 500 HEADs held a task and four coroutines
        for each, ~0.6 MiB at its peak, while 64 were in flight). As gather: every HEAD runs,
        the first failure is raised and the others logged."""

        limit = max(1, self.options.client.max_concurrency)
        answers: list[Any] = [None] * len(refs)
        waiting: dict[str, list[int]] = {}
        for index, ref in enumerate(refs):
            waiting.setdefault(ref.registry, []).append(index)
        for queue in waiting.values():
            queue.reverse()  # popped from the end: in order

        async def one_slot(queue: list[int]) -> None:
            while queue:
                index = queue.pop()
                try:
                    answers[index] = await self.head(refs[index])
                except Exception as exc:
                    answers[index] = exc

        slots = [one_slot(q) for q in waiting.values() for _ in range(min(limit, len(q)))]
        await asyncio.gather(*slots)
        raise_first_failure(answers)
        return answers

    async def _put(self, ref: Reference, manifest_list: ManifestList) -> str:
        """Every list PUT of the run, recorded for partial success."""
        digest = await put_when_settled(
            self.client(ref.registry),
            ref.repository,
            ref.identifier,
            manifest_list.data,
            manifest_list.media_type,
        )
        self._tags_written.add((ref.registry, ref.repository, ref.identifier))
        log.info("pushed %s to %s", digest, ref.familiar())
        return digest

    def fetch_manifest(self, image: SourceImage, digest: str) -> Awaitable[bytes]:
        """A manifest by digest, fetched once per run however many ask (GETs only where
        needed: lists as sources, configs' manifests, the list to append to, copies)."""
        if isinstance(image, LayoutReference):
            from . import layouts

            return layouts.manifest(self, image, digest)
        ref = image

        async def fetch() -> bytes:
            body, _ = await self.client(ref.registry).get_manifest(ref.repository, digest)
            return body

        return self._fetched.get(("manifest", ref.registry, ref.repository, digest), fetch)

    def fetch_blob(self, image: SourceImage, digest: str) -> Awaitable[bytes]:
        if isinstance(image, LayoutReference):
            from . import layouts

            return layouts.config(self, image, digest)
        ref = image

        def fetch() -> Awaitable[bytes]:
            return self.client(ref.registry).get_blob(ref.repository, digest)

        return self._fetched.get(("blob", ref.registry, ref.repository, digest), fetch)

    async def _copy_entries(self, target: Reference, entries: list[PushedEntry]) -> None:
        # A method (like _put) so that a test can act between the copies and the writes.
        from . import copying

        await copying.copy_entries(self, target, entries)

    # -- partial success -----------------------------------------------------------------------

    def partial(self) -> Optional[PartialPush]:
        """After a failure: the lists written (wholly or at some tags) and those not."""
        if self._writing is None:
            return None
        written: list[PushResult] = []
        missing: list[str] = []
        for result in self._writing:
            where = (result.target.registry, result.target.repository)
            done = tuple(tag for tag in result.written if (*where, tag) in self._tags_written)
            left = [tag for tag in result.written if tag not in done]
            if done or not result.written:
                written.append(dataclasses.replace(result, written=done))
            if left:
                name = result.target.familiar_name()
                missing.append(", ".join([f"{name}:{left[0]}", *(f":{t}" for t in left[1:])]))
        if not any(r.written for r in written) and not missing:
            return None
        return PartialPush(written=tuple(written), not_written=tuple(missing))

    def rewriting(self, old: PushResult, new: PushResult) -> PushResult:
        """--append rebuilt a list while writing: partial-success reports name the new one."""
        if self._writing is not None:
            self._writing[:] = [new if r is old else r for r in self._writing]
        return new

    # -- building ----------------------------------------------------------------------------

    def _own_entries(self, spec: ManifestListSpec, sources: list[Source]) -> list[PushedEntry]:
        """This run's entries, from its sources; two of one platform are an input error."""
        entries: list[PushedEntry] = []
        seen: dict[tuple[Any, ...], SourceImage] = {}
        for source in sources:
            for descriptor in source.entries:
                if not is_attestation(descriptor):
                    assert descriptor.platform is not None
                    key = descriptor.platform.key()
                    if key in seen:
                        raise InputError(
                            f"{spec.image.familiar()}: {seen[key].familiar()} and "
                            f"{source.entry.image.familiar()} both have platform "
                            f"{descriptor.platform}"
                        )
                    seen[key] = source.entry.image
                entries.append(PushedEntry(image=source.entry.image, descriptor=descriptor))
        if not seen and sources:  # --platform kept no image of any source
            seen_by = [(s.entry.image, s.platforms_seen) for s in sources]
            raise selecting.nothing_left(spec, self.options, seen_by)
        return entries

    def _build(
        self, spec: ManifestListSpec, sources: list[Source], existing: Optional[ExistingList]
    ) -> tuple[ManifestList, list[PushedEntry]]:
        return self.assemble(spec, self._own_entries(spec, sources), existing)

    def assemble(
        self, spec: ManifestListSpec, own: list[PushedEntry], existing: Optional[ExistingList]
    ) -> tuple[ManifestList, list[PushedEntry]]:
        """The list of this run's entries (merged into ``existing`` with --append)."""
        own = selecting.with_entry_annotations(spec, own, self.options.entry_annotations)
        selecting.check_not_removed(spec, own, self.options.remove_platforms)
        entries = list(own)
        list_type = selecting.list_type_of(spec, self.options)
        annotations = dict(spec.annotations)
        artifact_type = spec.artifact_type or ""
        subject = self.subjects.get(spec.subject) if spec.subject is not None else None
        if existing is not None:
            from .appending import merge_append

            entries = merge_append(spec.image, existing.entries, own)
            # Merging must not change what it does not touch: an OCI index stays one, and the
            # list's own annotations stay (the spec's win).
            if list_type == "auto" and existing.media_type == OCI_INDEX:
                list_type = "oci"
            annotations = {**existing.annotations, **annotations}
            artifact_type = artifact_type or existing.artifact_type
            subject = subject or existing.subject
        selecting.check_not_emptied(spec, entries, existing)
        # Attestations go after the images they describe, as BuildKit writes them.
        entries.sort(key=lambda e: is_attestation(e.descriptor))
        manifest_list = build_manifest_list(
            [e.descriptor for e in entries],
            list_type=list_type,
            annotations=annotations or None,
            artifact_type=artifact_type,
            subject=subject,
        )
        return manifest_list, entries
