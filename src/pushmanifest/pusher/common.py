"""What the pusher's modules share: media types, attestation entries, targets, concurrency."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from ..errors import InputError, PushManifestError
from ..manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Descriptor
from ..platform import Platform
from ..reference import Reference

if TYPE_CHECKING:
    from ..spec import ManifestListSpec

log = logging.getLogger("pushmanifest")

LIST_MEDIA_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
IMAGE_MEDIA_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ATTESTATION_TYPE = "vnd.docker.reference.type"
ATTESTATION_DIGEST = "vnd.docker.reference.digest"

T = TypeVar("T")


class Memo:
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


def is_attestation(descriptor: Descriptor) -> bool:
    return descriptor.annotations.get(ATTESTATION_TYPE) == "attestation-manifest"


def attested_digest(descriptor: Descriptor) -> str:
    return descriptor.annotations.get(ATTESTATION_DIGEST, "")


def digest_of(descriptor: Optional[Descriptor]) -> Optional[str]:
    return descriptor.digest if descriptor is not None else None


def with_platform(
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


def target_refs(spec: ManifestListSpec) -> list[Reference]:
    """The target and each extra tag, in order, without repeats."""
    refs = [spec.image]
    refs.extend(spec.image.with_tag(tag) for tag in spec.tags)
    return unique(refs)


def all_targets(specs: list[ManifestListSpec]) -> list[Reference]:
    return unique(ref for spec in specs for ref in target_refs(spec))


def check_inputs(specs: list[ManifestListSpec]) -> None:
    if not specs:
        raise InputError("nothing to push: no spec given")
    owner: dict[Reference, ManifestListSpec] = {}
    for spec in specs:
        for ref in target_refs(spec):
            other = owner.get(ref)
            if other is not None and other is not spec:
                raise InputError(
                    f"two lists in this run push to {ref.familiar()} "
                    f"({_origin(other)} and {_origin(spec)}): give each list its own tags"
                )
            owner[ref] = spec


def _origin(spec: ManifestListSpec) -> str:
    return spec.origin or spec.image.familiar()


def unique(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))


async def gather(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; when several fail, raise the first failure and log the others."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    raise_first_failure(results)
    return results  # type: ignore[return-value]


def raise_first_failure(results: Iterable[object]) -> None:
    """Where some of ``results`` are failures (exceptions): raise the first, log the others."""
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for extra in errors[1:]:
            if isinstance(extra, PushManifestError):
                log.error("%s", extra)
        raise errors[0]
