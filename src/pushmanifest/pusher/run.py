"""Push orchestration: resolve every source, build every list, then write. One place.

The order is what keeps a tag from ever pointing at a broken list: nothing is written until every
source of every list in the run has resolved, and every request that does not depend on another
goes out concurrently (one wave of HEADs, one wave of PUTs), so the time a push takes does not
grow with the number of architectures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, TypeVar, Union

from ._checks import (
    check_bool,
    check_client_options,
    check_instance,
    check_number,
    check_option_names,
    check_path,
    check_specs,
)
from ._sync import run_sync
from .auth import Credentials, load_docker_config, resolve_credentials
from .errors import (
    InputError,
    MissingSourcesError,
    NetworkError,
    PushManifestError,
    RegistryError,
)
from .manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ManifestList,
    build_manifest_list,
    descriptor_from_json,
    json_object,
)
from .platform import Platform
from .quirks import put_when_settled
from .reference import Reference
from .registry import ClientOptions, RegistryClient, UploadRestart

if TYPE_CHECKING:
    from .auth import DockerConfig
    from .spec import ManifestEntrySpec, ManifestListSpec

log = logging.getLogger("pushmanifest")

ListType = Literal["auto", "docker", "oci"]
LIST_MEDIA_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
IMAGE_MEDIA_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)

T = TypeVar("T")


@dataclass(frozen=True)
class PushedEntry:
    """One entry of a pushed list: the source as the spec named it, and what it resolved to."""

    image: Reference
    descriptor: Descriptor

    @property
    def platform(self) -> Optional[Platform]:
        return self.descriptor.platform


@dataclass(frozen=True)
class PushResult:
    """What a push did (or, with ``dry_run``, would do)."""

    target: Reference
    tags: tuple[str, ...]
    manifest_list: ManifestList
    entries: tuple[PushedEntry, ...]
    written: tuple[str, ...] = ()
    dry_run: bool = False

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
        }


@dataclass(frozen=True)
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
    #: Seconds the whole run may take (None: no limit beyond each request's timeouts).
    deadline: Optional[float] = None
    #: Used for the targets' registries; sources elsewhere use the docker config.
    credentials: Optional[Credentials] = None
    #: A docker config directory or file; None means $DOCKER_CONFIG or ~/.docker.
    docker_config: Optional[str] = None
    client: ClientOptions = field(default_factory=ClientOptions)

    def __post_init__(self) -> None:
        # Here, so that a wrong type fails where it is given (replace() and kwargs included).
        owner = "PushOptions"
        for flag in ("ignore_missing", "dry_run", "append", "check_platform", "strict_platform"):
            check_bool(owner, flag, getattr(self, flag))
        check_number(owner, "deadline", self.deadline, minimum=0, above_minimum=True, optional=True)
        if self.credentials is not None:
            check_instance(
                owner, "credentials", self.credentials, Credentials, "a Credentials or None"
            )
        check_path(owner, "docker_config", self.docker_config)
        check_client_options(owner, self.client)


SpecInput = Union["ManifestListSpec", Sequence["ManifestListSpec"]]


async def push_async(
    specs: SpecInput, options: Optional[PushOptions] = None, **kwargs: Any
) -> list[PushResult]:
    """Push one list or several in one run (shared connections and tokens); async.

    ``kwargs`` are :class:`PushOptions` fields, for convenience: ``push_async(spec, dry_run=True)``.
    """
    spec_list = check_specs("push", specs)
    opts = _merge_options(options, kwargs)
    async with _Run(opts) as run:
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


@dataclass(frozen=True)
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


def push(
    specs: SpecInput, options: Optional[PushOptions] = None, **kwargs: Any
) -> list[PushResult]:
    """Synchronous :func:`push_async`, for scripts. Not for use inside a running event loop."""
    return run_sync(lambda: push_async(specs, options, **kwargs), "push")


def _merge_options(options: Optional[PushOptions], kwargs: dict[str, Any]) -> PushOptions:
    if options is not None:
        check_instance("push", "options", options, PushOptions, "a PushOptions or None")
    opts = options or PushOptions()
    if kwargs:
        check_option_names("push", kwargs, (f.name for f in dataclasses.fields(PushOptions)))
        opts = dataclasses.replace(opts, **kwargs)
    if opts.strict_platform and not opts.check_platform:
        # Strictness about a check implies making the check.
        opts = dataclasses.replace(opts, check_platform=True)
    if opts.list_type not in ("auto", "docker", "oci"):
        raise InputError(f"unknown list type {opts.list_type!r}: use auto, docker or oci")
    if opts.wait is not None and not 0 <= opts.wait < float("inf"):
        raise InputError(f"--wait must be a number of seconds >= 0, not {opts.wait!r}")
    return opts


@dataclass
class _Source:
    """A spec entry after resolution: the entries it puts in the list."""

    entry: ManifestEntrySpec
    head: Descriptor
    entries: list[Descriptor] = field(default_factory=list)


class _Memo:
    """Concurrent-safe memo of coroutine results: the same manifest or config is fetched once,
    however many entries (or lists in a bulk run) need it, and concurrent askers share the one
    request in flight."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, ...], asyncio.Task[bytes]] = {}

    def get(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[bytes]]) -> Awaitable[bytes]:
        task = self._tasks.get(key)
        if task is None:

            async def run() -> bytes:
                return await fetch()

            task = asyncio.ensure_future(run())
            self._tasks[key] = task
        return task


@dataclass(frozen=True)
class _ExistingList:
    """The list a target tag holds, as --append reads it to merge into."""

    digest: str
    media_type: str
    entries: list[Descriptor]
    annotations: dict[str, str]


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
#: --wait: first poll interval, doubled up to the maximum (each jittered by +-20 %).
WAIT_FIRST_DELAY = 0.5
WAIT_MAX_DELAY = 5.0


class _Run:
    """One run: a client per registry, shared by every list in it."""

    def __init__(self, options: PushOptions) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        self._docker_config: Optional[DockerConfig] = None
        self._fetched = _Memo()
        self._copied = _Memo()
        # Each blob copy may hold a GET from the source and a PUT to the target at once: half
        # the per-registry bound keeps both within it, so copies cannot starve each other.
        self._copy_slots = asyncio.Semaphore(max(1, self.options.client.max_concurrency // 2))
        #: Once writing has begun: every list's result, and the tags written so far.
        self._writing: Optional[list[PushResult]] = None
        self._tags_written: set[tuple[str, str, str]] = set()

    async def __aenter__(self) -> _Run:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))

    def client(self, registry: str) -> RegistryClient:
        return self._clients[registry]

    async def _open_clients(self, specs: list[ManifestListSpec]) -> None:
        """A client per registry of the run, with its credentials.

        Credential helpers are programs that may take a while: they run in threads, all at once.
        """
        targets = {spec.image.registry for spec in specs}
        registries = _unique(
            ref.registry
            for spec in specs
            for ref in [spec.image, *(entry.image for entry in spec.manifests)]
        )
        if any(self.options.credentials is None or r not in targets for r in registries):
            self._docker_config = load_docker_config(self.options.docker_config)

        def credentials_for(registry: str) -> Optional[Credentials]:
            explicit = self.options.credentials if registry in targets else None
            return resolve_credentials(
                registry, explicit=explicit, docker_config=self._docker_config
            )

        found = await _gather(asyncio.to_thread(credentials_for, r) for r in registries)
        for registry, credentials in zip(registries, found):
            if credentials is not None:
                log.debug("%s: credentials of %s", registry, credentials.source or "a user")
            self._clients[registry] = RegistryClient(
                registry, credentials=credentials, options=self.options.client
            )

    async def push(self, specs: list[ManifestListSpec]) -> list[PushResult]:
        _check_inputs(specs)
        dry_run = self.options.dry_run
        await self._open_clients(specs)

        # Every scope first, so that each registry's one token request covers the whole run.
        for spec in specs:
            target = spec.image
            self.client(target.registry).add_scope(
                target.repository, "pull" if dry_run else "pull,push"
            )
            for entry in spec.manifests:
                self.client(entry.image.registry).add_scope(entry.image.repository, "pull")
        await _gather(client.ping() for client in self._clients.values())

        # One wave: every source HEAD, and every target tag HEAD (to skip unchanged PUTs).
        heads = [entry.image for spec in specs for entry in spec.manifests]
        targets = [] if dry_run and not self.options.append else _all_targets(specs)
        wanted = _unique([*heads, *targets])
        found = dict(zip(wanted, await _gather(self._head(ref) for ref in wanted)))
        await self._confirm_missing(heads, found)
        if self.options.wait:
            # After the one confirming GET: a source still missing is polled with HEADs.
            missing = _unique(ref for ref in heads if found[ref] is None)
            found.update(await self._wait_for_sources(missing))

        present = [self._present_sources(spec, found) for spec in specs]
        # Only now, and only where needed: lists, configs, the list to append to (GETs).
        _, existing = await asyncio.gather(
            _gather(self._resolve(source) for sources in present for source in sources),
            _gather(self._existing_list(spec, found.get(spec.image)) for spec in specs),
        )
        built = [
            self._build(spec, sources, old) for spec, sources, old in zip(specs, present, existing)
        ]
        # Everything resolved and built: from here on we write.
        results = [
            self._result(spec, manifest_list, entries, found)
            for spec, (manifest_list, entries) in zip(specs, built)
        ]
        if dry_run:
            return results
        self._writing = results
        await _gather(
            self._copy_entries(spec.image, entries) for spec, (_, entries) in zip(specs, built)
        )
        return await _gather(
            self._write_appended(spec, result, self._own_entries(spec, sources), old, found)
            if self.options.append
            else self._write(spec, result)
            for spec, result, sources, old in zip(specs, results, present, existing)
        )

    async def _write(self, spec: ManifestListSpec, result: PushResult) -> PushResult:
        await _gather(
            self._put(ref, result.manifest_list)
            for ref in _target_refs(spec)
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
        for ref in _target_refs(spec):
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
            tags=tuple(r.identifier for r in _target_refs(spec)),
            manifest_list=manifest_list,
            entries=tuple(entries),
            written=() if dry_run else tuple(written),
            dry_run=dry_run,
        )

    async def _wait_for_sources(
        self, missing: list[Reference]
    ) -> dict[Reference, Optional[Descriptor]]:
        """--wait: poll missing sources with HEADs (no GETs: they count as pulls), backing off,
        until all exist or the time is up; what is still missing is then handled as without."""
        appeared: dict[Reference, Optional[Descriptor]] = {}
        if not missing or not self.options.wait:
            return appeared
        names = ", ".join(r.familiar() for r in missing)
        log.info("waiting up to %g s for %s", self.options.wait, names)
        end = time.monotonic() + self.options.wait
        delay = WAIT_FIRST_DELAY
        while missing:
            left = end - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left, delay * random.uniform(0.8, 1.2)))
            heads = await _gather(self._head(ref) for ref in missing)
            for ref, head in zip(missing, heads):
                if head is not None:
                    log.info("%s exists now", ref.familiar())
                    appeared[ref] = head
            missing = [ref for ref, head in zip(missing, heads) if head is None]
            delay = min(delay * 2, WAIT_MAX_DELAY)
        return appeared

    async def _confirm_missing(
        self, sources: list[Reference], found: dict[Reference, Optional[Descriptor]]
    ) -> None:
        """Some proxies and caches answer HEAD on manifests with 404 while GET works: the first
        source a registry says is missing gets one GET. Where that GET finds it, the registry is
        read with GETs from then on and its other missing sources are asked again; where it does
        not, its HEADs are trusted. So a missing source costs at most one GET per registry (a GET
        counts against pull quotas), and only sources: a missing one ends the run anyway."""
        missing = _unique(ref for ref in sources if found.get(ref) is None)
        first: dict[str, Reference] = {}
        for ref in missing:
            first.setdefault(ref.registry, ref)
        confirmed = await _gather(
            self.client(ref.registry).confirm_absent(ref.repository, ref.identifier)
            for ref in first.values()
        )
        found.update((ref, d) for ref, d in zip(first.values(), confirmed) if d is not None)
        again = [
            ref
            for ref in missing
            if ref not in first.values() and found[first[ref.registry]] is not None
        ]
        found.update(zip(again, await _gather(self._head(ref) for ref in again)))

    async def _head(self, ref: Reference) -> Optional[Descriptor]:
        return await self.client(ref.registry).head_manifest(ref.repository, ref.identifier)

    async def _put(self, ref: Reference, manifest_list: ManifestList) -> str:
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

    def _present_sources(
        self, spec: ManifestListSpec, found: dict[Reference, Optional[Descriptor]]
    ) -> list[_Source]:
        missing = [e.image.familiar() for e in spec.manifests if found[e.image] is None]
        if missing and not self.options.ignore_missing:
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
            present.append(_Source(entry, head))
        if not present:
            raise MissingSourcesError(missing)
        return present

    # -- reading (GETs only where needed) --------------------------------------------------

    def _fetch_manifest(self, image: Reference, digest: str) -> Awaitable[bytes]:
        async def fetch() -> bytes:
            body, _ = await self.client(image.registry).get_manifest(image.repository, digest)
            return body

        return self._fetched.get(("manifest", image.registry, image.repository, digest), fetch)

    def _fetch_blob(self, image: Reference, digest: str) -> Awaitable[bytes]:
        def fetch() -> Awaitable[bytes]:
            return self.client(image.registry).get_blob(image.repository, digest)

        return self._fetched.get(("blob", image.registry, image.repository, digest), fetch)

    async def _resolve(self, source: _Source) -> None:
        if source.head.media_type in LIST_MEDIA_TYPES:
            source.entries = await self._resolve_list(source)
            return
        platform = source.entry.platform
        partial = platform is not None and not platform.os
        if platform is None or partial or self.options.check_platform:
            from_config = await self._config_platform(source.entry.image, source.head.digest)
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
                self._compare_platforms(source.entry.image, platform, from_config)
        source.entries = [_with_platform(source.head, platform, source.entry.annotations)]

    async def _config_platform(self, image: Reference, digest: str) -> Platform:
        manifest = json_object(await self._fetch_manifest(image, digest), image.familiar())
        config = manifest.get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config_digest, str):
            raise RegistryError(
                f"{image.familiar()}: the manifest names no config; give its platform in the spec",
                operation="resolve",
                image=str(image),
            )
        data = json_object(await self._fetch_blob(image, config_digest), image.familiar())
        platform = Platform.from_dict(data)
        if not platform.os or not platform.architecture:
            raise RegistryError(
                f"{image.familiar()}: its config names no os/architecture; "
                "give its platform in the spec",
                operation="resolve",
                image=str(image),
            )
        return platform

    def _compare_platforms(self, image: Reference, given: Platform, actual: Platform) -> None:
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
        if self.options.strict_platform:
            raise InputError(message.replace(": the spec's is used", "") + " (--strict-platform)")
        log.warning("%s", message)

    async def _resolve_list(self, source: _Source) -> list[Descriptor]:
        """A list as a source: its entries, inlined (or the one the spec's platform selects)."""
        image = source.entry.image
        data = json_object(await self._fetch_manifest(image, source.head.digest), image.familiar())
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
            if _is_attestation(descriptor):
                attestations.append(descriptor)
            elif descriptor.platform is None or not descriptor.platform.architecture:
                raise RegistryError(
                    f"{image.familiar()}: its entry {index} ({descriptor.digest}) has no "
                    "platform; name that image with a platform in the spec instead",
                    operation="resolve",
                    image=str(image),
                )
            else:
                images.append(descriptor)
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
            notes = [a for a in attestations if _attested_digest(a) in keep]
            annotations = source.entry.annotations or selected.annotations
            return [_with_platform(selected, selected.platform, annotations), *notes]
        return [*images, *attestations]

    async def _existing_list(
        self, spec: ManifestListSpec, head: Optional[Descriptor]
    ) -> Optional[_ExistingList]:
        """With --append: the list the target tag holds now (None when it holds nothing)."""
        if not self.options.append or head is None:
            return None
        target = spec.image
        if head.media_type not in LIST_MEDIA_TYPES:
            raise RegistryError(
                f"--append: {target.familiar()} holds a single image ({head.media_type}), not a "
                "list to add to; push without --append to replace it",
                operation="resolve",
                image=str(target),
            )
        data = json_object(await self._fetch_manifest(target, head.digest), target.familiar())
        children = data.get("manifests")
        annotations = data.get("annotations")
        return _ExistingList(
            digest=head.digest,
            media_type=head.media_type,
            entries=[
                descriptor_from_json(child, f"{target.familiar()} entry {index}")
                for index, child in enumerate(children if isinstance(children, list) else [])
            ],
            annotations={str(k): str(v) for k, v in annotations.items() if isinstance(v, str)}
            if isinstance(annotations, dict)
            else {},
        )

    # -- building ----------------------------------------------------------------------------

    def _own_entries(self, spec: ManifestListSpec, sources: list[_Source]) -> list[PushedEntry]:
        """This run's entries, from its sources; two of one platform are an input error."""
        entries: list[PushedEntry] = []
        seen: dict[tuple[Any, ...], Reference] = {}
        for source in sources:
            for descriptor in source.entries:
                if not _is_attestation(descriptor):
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
        return entries

    def _build(
        self, spec: ManifestListSpec, sources: list[_Source], existing: Optional[_ExistingList]
    ) -> tuple[ManifestList, list[PushedEntry]]:
        return self._assemble(spec, self._own_entries(spec, sources), existing)

    def _assemble(
        self, spec: ManifestListSpec, own: list[PushedEntry], existing: Optional[_ExistingList]
    ) -> tuple[ManifestList, list[PushedEntry]]:
        entries = list(own)
        list_type: str = self.options.list_type
        annotations = dict(spec.annotations)
        if existing is not None:
            entries = _merge_append(spec.image, existing.entries, own)
            # Merging must not change what it does not touch: an OCI index stays one, and the
            # list's own annotations stay (the spec's win).
            if list_type == "auto" and existing.media_type == OCI_INDEX:
                list_type = "oci"
            annotations = {**existing.annotations, **annotations}
        # Attestations go after the images they describe, as BuildKit writes them.
        entries.sort(key=lambda e: _is_attestation(e.descriptor))
        manifest_list = build_manifest_list(
            [e.descriptor for e in entries],
            list_type=list_type,
            annotations=annotations or None,
        )
        return manifest_list, entries

    # -- appending under concurrency -----------------------------------------------------------

    async def _write_appended(
        self,
        spec: ManifestListSpec,
        result: PushResult,
        own: list[PushedEntry],
        base: Optional[_ExistingList],
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
        refs = _target_refs(spec)
        ours = [e for e in own if not _is_attestation(e.descriptor)]
        replaced: dict[tuple[Any, ...], set[str]] = {}
        _note_replaced(replaced, ours, base)
        manifest_list, entries = result.manifest_list, list(result.entries)
        holds = {ref: _digest_of(found.get(ref)) for ref in refs}
        written: list[str] = []
        current = result
        base_digest = base.digest if base is not None else None
        for attempt in range(1, APPEND_ROUNDS + 1):
            started = time.monotonic()
            head = await self._head(target)
            if _digest_of(head) != base_digest:
                # Someone wrote since we read: merge into what the tag holds now.
                base = await self._existing_list(spec, head)
                base_digest = base.digest if base is not None else None
                _note_replaced(replaced, ours, base)
                manifest_list, entries = self._assemble(spec, own, base)
            holds[target] = _digest_of(head)
            puts = [r for r in refs if self.options.force or holds[r] != manifest_list.digest]
            # What a failure from here on reports as written or not (partial success).
            planned = tuple(_unique([*written, *(r.identifier for r in puts)]))
            current = self._rewriting(
                current,
                dataclasses.replace(
                    result, manifest_list=manifest_list, entries=tuple(entries), written=planned
                ),
            )
            if not puts:
                log.info("%s already holds %s: unchanged", target.familiar(), manifest_list.digest)
                break
            try:
                await _gather(self._put(ref, manifest_list) for ref in puts)
            except RegistryError as exc:
                # The registry refuses a list naming an image it no longer has: an entry we
                # kept whose image was deleted. Drop such entries (once) rather than fail forever.
                if exc.code not in GONE_CODES or base is None:
                    raise
                kept = await self._without_deleted(target, base)
                if kept is base:
                    raise
                base = kept
                manifest_list, entries = self._assemble(spec, own, base)
                await _gather(self._put(ref, manifest_list) for ref in puts)
            for ref in puts:
                holds[ref] = manifest_list.digest
                if ref.identifier not in written:
                    written.append(ref.identifier)
            cycle = time.monotonic() - started
            lost, now = await self._check_appended(spec, ours, replaced, manifest_list, cycle)
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
            manifest_list, entries = self._assemble(spec, own, base)
        if attempt > 1:
            log.info("--append: %s holds our entries after %d writes", target.familiar(), attempt)
        return self._rewriting(
            current,
            dataclasses.replace(
                result, manifest_list=manifest_list, entries=tuple(entries), written=tuple(written)
            ),
        )

    def _rewriting(self, old: PushResult, new: PushResult) -> PushResult:
        """--append rebuilt a list while writing: partial-success reports name the new one."""
        if self._writing is not None:
            self._writing[:] = [new if r is old else r for r in self._writing]
        return new

    async def _without_deleted(self, target: Reference, base: _ExistingList) -> _ExistingList:
        """The list without the entries whose images the repository no longer has (a HEAD
        each); ``base`` itself when it has none such."""
        images = [d for d in base.entries if not _is_attestation(d)]
        heads = await _gather(self._head(target.with_digest(d.digest)) for d in images)
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
                d for d in base.entries if d.digest not in gone and _attested_digest(d) not in gone
            ],
        )

    async def _check_appended(
        self,
        spec: ManifestListSpec,
        ours: list[PushedEntry],
        replaced: dict[tuple[Any, ...], set[str]],
        written: ManifestList,
        cycle: float,
    ) -> tuple[list[PushedEntry], Optional[_ExistingList]]:
        """After our write: our entries the tag lost, and the list it holds then.

        The settle time outlasts a concurrent run's read-to-write gap, which is about one of our
        own read-and-write cycles: a run that read before our write has written by then.
        """
        settle = min(APPEND_SETTLE_MAX, max(APPEND_SETTLE_MIN, APPEND_SETTLE_CYCLES * cycle))
        log.debug(
            "--append: wrote %s in %.3f s; checking it after %.3f s", spec.image, cycle, settle
        )
        for _ in range(APPEND_CHECKS):
            await asyncio.sleep(settle * random.uniform(1.0, 1.5))
            head = await self._head(spec.image)
            if head is not None and head.digest == written.digest:
                continue
            now = await self._existing_list(spec, head)
            lost = _lost_entries(spec.image, ours, now, replaced)
            if lost:
                return lost, now
        return [], None

    # -- writing -------------------------------------------------------------------------------

    async def _copy_entries(self, target: Reference, entries: list[PushedEntry]) -> None:
        """Make every entry resolvable in the target repository before the list names it.

        A registry refuses a list whose entries are elsewhere (MANIFEST_BLOB_UNKNOWN). Entries
        from another repository get their blobs mounted (same registry) or streamed (another
        registry), then their manifest PUT by digest.
        """
        await _gather(
            self._copied.get(
                ("copy", target.registry, target.repository, e.descriptor.digest),
                lambda e=e: self._copy_manifest(e.image, target, e.descriptor),  # type: ignore[misc]
            )
            for e in entries
            if (e.image.registry, e.image.repository) != (target.registry, target.repository)
        )

    async def _copy_manifest(
        self, source: Reference, target: Reference, child: Descriptor
    ) -> bytes:
        client = self.client(target.registry)
        if await client.head_manifest(target.repository, child.digest) is not None:
            return b""
        data = await self._fetch_manifest(source, child.digest)
        manifest = json_object(data, source.familiar())
        blobs = [manifest.get("config"), *(manifest.get("layers") or [])]
        await _gather(
            self._copy_blob(source, target, blob["digest"], int(blob.get("size", 0)))
            for blob in blobs
            if isinstance(blob, dict) and isinstance(blob.get("digest"), str)
        )
        await put_when_settled(client, target.repository, child.digest, data, child.media_type)
        log.info("copied %s into %s", f"{source.familiar()}@{child.digest}", target.name)
        return b""

    async def _copy_blob(
        self, source: Reference, target: Reference, digest: str, size: int
    ) -> None:
        client = self.client(target.registry)
        image = client.image(target.repository, digest)
        if source.registry == target.registry:
            location = await client.mount_blob(target.repository, digest, source.repository)
            if location is None:
                return
            log.info("%s refused to mount %s: copying it through", target.registry, digest)
        elif await client.head_blob(target.repository, digest):
            return
        else:
            location = await client.start_upload(target.repository)
        for attempt in (1, 2):
            uploading = False
            try:
                blob = self.client(source.registry).open_blob(source.repository, digest)
                async with self._copy_slots, blob as chunks:
                    if size >= PROGRESS_MIN_BYTES:
                        chunks = _with_progress(chunks, size, f"{source.familiar()} {digest[:19]}")
                    # From here on the upload cancels its own session, at its latest Location.
                    uploading = True
                    await client.upload_blob(location, digest, size, chunks, image)
                return
            except UploadRestart:
                if attempt == 2:
                    raise
                # A token refused mid-upload and fetched again (GCR, Quay: "cannot reuse body",
                # estesp/manifest-tool#122, #156): a streamed body cannot be resent, so the copy
                # starts over in a new session, with the new token (upload_blob cancelled the
                # old one).
                log.info("%s: token renewed mid-upload; copying %s again", target.registry, digest)
                location = await client.start_upload(target.repository)
            except BaseException:
                if not uploading:  # never leave an upload session we opened dangling
                    await asyncio.shield(client.delete_upload(location))
                raise


#: Blobs at least this large report their progress on stderr while they are copied.
PROGRESS_MIN_BYTES = 16 * 1024 * 1024
PROGRESS_EVERY_SECONDS = 2.0


async def _with_progress(
    chunks: AsyncIterator[bytes], total: int, what: str
) -> AsyncIterator[bytes]:
    done = 0
    last = time.monotonic()
    mib = 1024 * 1024
    async for chunk in chunks:
        done += len(chunk)
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS:
            last = now
            log.info("copying %s: %.1f of %.1f MiB", what, done / mib, total / mib)
        yield chunk
    log.info("copied %s: %.1f MiB", what, done / mib)


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


def _all_targets(specs: list[ManifestListSpec]) -> list[Reference]:
    return _unique(ref for spec in specs for ref in _target_refs(spec))


ATTESTATION_TYPE = "vnd.docker.reference.type"
ATTESTATION_DIGEST = "vnd.docker.reference.digest"


def _is_attestation(descriptor: Descriptor) -> bool:
    return descriptor.annotations.get(ATTESTATION_TYPE) == "attestation-manifest"


def _attested_digest(descriptor: Descriptor) -> str:
    return descriptor.annotations.get(ATTESTATION_DIGEST, "")


def _same_platform(have: Platform, want: Platform) -> bool:
    """Does a list entry match the platform the spec asks for? An unset variant matches any."""
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    return not want.variant or have.variant == want.variant


def _merge_append(
    target: Reference, existing: list[Descriptor], new: list[PushedEntry]
) -> list[PushedEntry]:
    """The existing list with the new entries merged in, without churn.

    An entry of a platform the new entries have is replaced in place (same position), so an
    identical entry gives the identical list; other platforms come after the existing entries.
    Attestations follow their images: a replaced image's go, a new image's come.
    """
    new_images = {
        e.platform.key(): e for e in new if not _is_attestation(e.descriptor) and e.platform
    }
    merged: list[PushedEntry] = []
    placed: set[tuple[Any, ...]] = set()
    for d in existing:
        if _is_attestation(d):
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
        if _is_attestation(e.descriptor):
            new_notes.setdefault(_attested_digest(e.descriptor), []).append(e)
    for d in existing:
        if not _is_attestation(d):
            continue
        attested = _attested_digest(d)
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
    base: Optional[_ExistingList],
) -> None:
    """Remember the digests our platforms had in a list we merged into: seeing one of them in
    the tag again means a run that read before our write overwrote it."""
    if base is None:
        return
    mine = {e.platform.key(): e.descriptor.digest for e in ours if e.platform}
    for d in base.entries:
        if d.platform is None or _is_attestation(d):
            continue
        key = d.platform.key()
        if key in mine and d.digest != mine[key]:
            replaced.setdefault(key, set()).add(d.digest)


def _lost_entries(
    target: Reference,
    ours: list[PushedEntry],
    now: Optional[_ExistingList],
    replaced: dict[tuple[Any, ...], set[str]],
) -> list[PushedEntry]:
    """Our entries the tag no longer holds. Where it holds another image of the same platform
    that we never replaced, a concurrent run pushed a newer build of it: theirs stays."""
    held: dict[tuple[Any, ...], str] = {}
    for d in now.entries if now is not None else []:
        if d.platform is not None and not _is_attestation(d):
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


def _digest_of(descriptor: Optional[Descriptor]) -> Optional[str]:
    return descriptor.digest if descriptor is not None else None


def _with_platform(
    descriptor: Descriptor,
    platform: Optional[Platform],
    annotations: Optional[Mapping[str, str]] = None,
) -> Descriptor:
    return Descriptor(
        media_type=descriptor.media_type,
        digest=descriptor.digest,
        size=descriptor.size,
        platform=platform,
        annotations=dict(annotations or descriptor.annotations),
    )


def _target_refs(spec: ManifestListSpec) -> list[Reference]:
    """The target and each extra tag, in order, without repeats."""
    refs = [spec.image]
    refs.extend(spec.image.with_tag(tag) for tag in spec.tags)
    return _unique(refs)


def _check_inputs(specs: list[ManifestListSpec]) -> None:
    if not specs:
        raise InputError("nothing to push: no spec given")
    owner: dict[Reference, ManifestListSpec] = {}
    for spec in specs:
        for ref in _target_refs(spec):
            other = owner.get(ref)
            if other is not None and other is not spec:
                raise InputError(
                    f"two lists in this run push to {ref.familiar()} "
                    f"({_origin(other)} and {_origin(spec)}): give each list its own tags"
                )
            owner[ref] = spec


def _origin(spec: ManifestListSpec) -> str:
    return spec.origin or spec.image.familiar()


def _unique(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))


async def _gather(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; when several fail, raise the first failure and log the others."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for extra in errors[1:]:
            if isinstance(extra, PushManifestError):
                log.error("%s", extra)
        raise errors[0]
    return results  # type: ignore[return-value]
