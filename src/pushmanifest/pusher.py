"""Push orchestration: resolve every source, build every list, then write. One place.

The order is what keeps a tag from ever pointing at a broken list: nothing is written until every
source of every list in the run has resolved, and every request that does not depend on another
goes out concurrently (one wave of HEADs, one wave of PUTs), so the time a push takes does not
grow with the number of architectures.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar, Union

from .auth import Credentials, load_docker_config, resolve_credentials
from .errors import InputError, MissingSourcesError, PushManifestError, RegistryError
from .manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ManifestList,
    build_manifest_list,
)
from .platform import Platform
from .reference import Reference
from .registry import ClientOptions, RegistryClient

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
    #: Merge into the list the target tag already holds: same platform replaced, others kept.
    append: bool = False
    #: Also read the configs of entries whose platform the spec gives; warn where they differ.
    check_platform: bool = False
    #: With check_platform: a disagreement is an error instead of a warning.
    strict_platform: bool = False
    #: Used for the targets' registries; sources elsewhere use the docker config.
    credentials: Optional[Credentials] = None
    #: A docker config directory or file; None means $DOCKER_CONFIG or ~/.docker.
    docker_config: Optional[str] = None
    client: ClientOptions = field(default_factory=ClientOptions)


SpecInput = Union["ManifestListSpec", Sequence["ManifestListSpec"]]


async def push_async(
    specs: SpecInput, options: Optional[PushOptions] = None, **kwargs: Any
) -> list[PushResult]:
    """Push one list or several in one run (shared connections and tokens); async.

    ``kwargs`` are :class:`PushOptions` fields, for convenience: ``push_async(spec, dry_run=True)``.
    """
    from .spec import ManifestListSpec

    spec_list = [specs] if isinstance(specs, ManifestListSpec) else list(specs)
    opts = _merge_options(options, kwargs)
    async with _Run(opts) as run:
        return await run.push(spec_list)


def push(
    specs: SpecInput, options: Optional[PushOptions] = None, **kwargs: Any
) -> list[PushResult]:
    """Synchronous :func:`push_async`, for scripts. Not for use inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(push_async(specs, options, **kwargs))
    raise RuntimeError("push() called from a running event loop: await push_async() instead")


def _merge_options(options: Optional[PushOptions], kwargs: dict[str, Any]) -> PushOptions:
    opts = options or PushOptions()
    if kwargs:
        import dataclasses

        opts = dataclasses.replace(opts, **kwargs)
    if opts.list_type not in ("auto", "docker", "oci"):
        raise InputError(f"unknown list type {opts.list_type!r}: use auto, docker or oci")
    return opts


@dataclass
class _Resolved:
    """A source after the HEAD (and, when the spec gave no platform, the config GET)."""

    entry: ManifestEntrySpec
    descriptor: Optional[Descriptor]


class _Run:
    """One run: a client per registry, shared by every list in it."""

    def __init__(self, options: PushOptions) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        self._docker_config: Optional[DockerConfig] = None

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
        sources = _unique(entry.image for spec in specs for entry in spec.manifests)
        targets = [] if dry_run else _unique(t for spec in specs for t in _target_refs(spec))
        heads = await _gather(self._head(ref) for ref in [*sources, *targets])
        found = dict(zip([*sources, *targets], heads))

        resolved = [self._check_sources(spec, found) for spec in specs]
        await self._fill_platforms([r for rs in resolved for r in rs])

        lists = [self._build(spec, entries) for spec, entries in zip(specs, resolved)]

        results: list[PushResult] = []
        writes: list[Awaitable[str]] = []
        for spec, (manifest_list, pushed_entries) in zip(specs, lists):
            written: list[str] = []
            for ref in _target_refs(spec):
                existing = found.get(ref)
                if dry_run:
                    continue
                if existing is not None and existing.digest == manifest_list.digest:
                    log.info("%s already holds %s: unchanged", ref.familiar(), manifest_list.digest)
                    continue
                written.append(ref.identifier)
                writes.append(self._put(ref, manifest_list))
            results.append(
                PushResult(
                    target=spec.image,
                    tags=tuple(r.identifier for r in _target_refs(spec)),
                    manifest_list=manifest_list,
                    entries=tuple(pushed_entries),
                    written=tuple(written),
                    dry_run=dry_run,
                )
            )
        await _gather(writes)
        return results

    async def _head(self, ref: Reference) -> Optional[Descriptor]:
        return await self.client(ref.registry).head_manifest(ref.repository, ref.identifier)

    async def _put(self, ref: Reference, manifest_list: ManifestList) -> str:
        digest = await self.client(ref.registry).put_manifest(
            ref.repository, ref.identifier, manifest_list.data, manifest_list.media_type
        )
        log.info("pushed %s to %s", digest, ref.familiar())
        return digest

    def _check_sources(
        self, spec: ManifestListSpec, found: dict[Reference, Optional[Descriptor]]
    ) -> list[_Resolved]:
        resolved = [_Resolved(entry, found[entry.image]) for entry in spec.manifests]
        missing = [r.entry.image.familiar() for r in resolved if r.descriptor is None]
        if missing and not self.options.ignore_missing:
            raise MissingSourcesError(missing)
        for name in missing:
            log.warning("skipping %s: it does not exist (--ignore-missing)", name)
        present = [r for r in resolved if r.descriptor is not None]
        if not present:
            raise MissingSourcesError(missing)
        for r in present:
            assert r.descriptor is not None
            media_type = r.descriptor.media_type
            if media_type in LIST_MEDIA_TYPES:
                raise RegistryError(
                    f"{r.entry.image.familiar()} is itself a multi-arch list ({media_type}); "
                    "name its per-architecture images instead (lists as sources come later)",
                    operation="resolve",
                    image=str(r.entry.image),
                )
            if media_type not in IMAGE_MEDIA_TYPES:
                raise RegistryError(
                    f"{r.entry.image.familiar()} has media type {media_type!r}, which cannot "
                    "go in a manifest list (expected a Docker v2 or OCI image manifest)",
                    operation="resolve",
                    image=str(r.entry.image),
                )
        return present

    async def _fill_platforms(self, resolved: list[_Resolved]) -> None:
        """For entries without a platform, read it from the image's config.

        Two waves whatever their number: all manifest GETs, then all config GETs. Entries whose
        platform the spec gives cost no GET at all (Docker Hub counts GETs as pulls).
        """
        todo = _unique_by_digest(r for r in resolved if r.entry.platform is None)
        if not todo:
            return
        manifests = await _gather(self._get_manifest(r) for r in todo)
        configs = await _gather(
            self._get_config(r, manifest) for r, manifest in zip(todo, manifests)
        )
        by_digest = {r.descriptor.digest: p for r, p in zip(todo, configs) if r.descriptor}
        for r in resolved:
            if r.entry.platform is None and r.descriptor is not None:
                r.descriptor = _with_platform(r.descriptor, by_digest[r.descriptor.digest])

    async def _get_manifest(self, r: _Resolved) -> dict[str, Any]:
        assert r.descriptor is not None
        image = r.entry.image
        body, _ = await self.client(image.registry).get_manifest(
            image.repository, r.descriptor.digest
        )
        return _json_object(body, image.familiar())

    async def _get_config(self, r: _Resolved, manifest: dict[str, Any]) -> Platform:
        image = r.entry.image
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str):
            raise RegistryError(
                f"{image.familiar()}: the manifest names no config; give its platform in the spec",
                operation="resolve",
                image=str(image),
            )
        body = await self.client(image.registry).get_blob(image.repository, digest)
        data = _json_object(body, image.familiar())
        platform = Platform.from_dict(data)
        if not platform.os or not platform.architecture:
            raise RegistryError(
                f"{image.familiar()}: its config names no os/architecture; "
                "give its platform in the spec",
                operation="resolve",
                image=str(image),
            )
        log.info("%s: platform %s (from the image config)", image.familiar(), platform)
        return platform

    def _build(
        self, spec: ManifestListSpec, resolved: list[_Resolved]
    ) -> tuple[ManifestList, list[PushedEntry]]:
        entries: list[PushedEntry] = []
        seen: dict[tuple[Any, ...], Reference] = {}
        for r in resolved:
            assert r.descriptor is not None
            platform = r.entry.platform or r.descriptor.platform
            descriptor = _with_platform(r.descriptor, platform, r.entry.annotations)
            key = platform.key() if platform else ()
            if key in seen:
                raise InputError(
                    f"{spec.image.familiar()}: {seen[key].familiar()} and "
                    f"{r.entry.image.familiar()} both have platform {platform}"
                )
            seen[key] = r.entry.image
            entries.append(PushedEntry(image=r.entry.image, descriptor=descriptor))
        manifest_list = build_manifest_list(
            [e.descriptor for e in entries],
            list_type=self.options.list_type,
            annotations=dict(spec.annotations) or None,
        )
        return manifest_list, entries


def _with_platform(
    descriptor: Descriptor,
    platform: Optional[Platform],
    annotations: Optional[dict[str, str]] = None,
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
        for entry in spec.manifests:
            source = entry.image
            if (source.registry, source.repository) != (spec.image.registry, spec.image.repository):
                raise InputError(
                    f"{source.familiar()} is not in the target's repository "
                    f"{spec.image.name}: sources in other repositories are not supported yet; "
                    "push the per-architecture images to the target repository first"
                )


def _origin(spec: ManifestListSpec) -> str:
    return spec.origin or spec.image.familiar()


def _json_object(body: bytes, image: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RegistryError(
            f"{image}: the registry sent invalid JSON ({exc})", image=image
        ) from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{image}: the registry sent JSON that is not an object", image=image)
    return data


def _unique(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))


def _unique_by_digest(items: Iterable[_Resolved]) -> list[_Resolved]:
    seen: dict[str, _Resolved] = {}
    for r in items:
        assert r.descriptor is not None
        seen.setdefault(r.descriptor.digest, r)
    return list(seen.values())


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
