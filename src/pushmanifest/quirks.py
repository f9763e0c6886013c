"""What hosted registries do differently when a manifest is PUT, and how a push copes.

Kept apart from :mod:`registry` (the protocol) and :mod:`pusher` (the order of things): these are
answers a registry gives that the protocol does not foresee. The README's "Registries" section
lists each quirk with its source; ``tests/test_quirks.py`` reproduces every one.

* Nexus and Artifactory may answer a list's PUT with BLOB_UNKNOWN (400) or MANIFEST_UNKNOWN (404)
  for a short while after its entries were pushed (estesp/manifest-tool#191): where the entries
  are known to exist, that is a transient, retried with backoff (bounded by ``--retries``).
* A refusal whose cause the registry states in its own words gets the remedy appended: an
  immutable tag (ECR's TAG_INVALID), a registry that takes no lists at all (Harbor 1.x, old Quay),
  an OCI index with annotations (Quay before quay/quay#3357).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Optional

from .errors import RegistryError
from .manifest import DOCKER_MANIFEST_LIST, OCI_INDEX

if TYPE_CHECKING:
    from .registry import RegistryClient

log = logging.getLogger("pushmanifest")

#: Codes a registry gives for entries it has not finished storing; only a transient where the
#: entries are known to have been written (a list's PUT after its entries were copied).
UNSETTLED_CODES = frozenset({"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"})
LIST_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)


def is_unsettled(exc: RegistryError) -> bool:
    return exc.status in (400, 404) and (exc.code or "").upper() in UNSETTLED_CODES


async def put_when_settled(
    client: RegistryClient, repository: str, reference: str, data: bytes, media_type: str
) -> str:
    """PUT a manifest whose references exist, retrying while the registry has not caught up."""
    attempts = max(1, client.options.retries)
    for attempt in range(1, attempts + 1):
        try:
            return await client.put_manifest(repository, reference, data, media_type)
        except RegistryError as exc:
            if attempt == attempts or not is_unsettled(exc):
                raise explain_put_error(exc, data, media_type) from None
            base = client.options.backoff
            delay = random.uniform(0, base * 2 ** (attempt - 1)) + base / 2
            log.warning(
                "PUT %s: the registry does not know its entries yet (%s: not settled yet, as "
                "Nexus and Artifactory answer right after a push); retry %d of %d in %.1f s",
                client.image(repository, reference),
                exc.code,
                attempt,
                attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def explain_put_error(exc: RegistryError, data: bytes, media_type: str) -> RegistryError:
    """The same error, with the remedy appended where the registry's answer names a known cause."""
    hint = _hint(exc, data, media_type)
    if not hint:
        return exc
    return exc.reworded(f"{exc}; {hint}")


def _hint(exc: RegistryError, data: bytes, media_type: str) -> Optional[str]:
    text = str(exc).lower()
    code = (exc.code or "").upper()
    if code == "TAG_INVALID" or "immutable" in text:
        return (
            "the tag is immutable (TAG_INVALID: the repository keeps a tag on its first "
            "manifest, as ECR's immutable tags do): push the list to a new tag"
        )
    if media_type not in LIST_TYPES:
        return None
    if media_type == OCI_INDEX and "annotations" in text and b'"annotations"' in _top(data):
        return (
            "this registry does not accept annotations on an OCI index (Quay before "
            "quay/quay#3357): push without the list's annotations "
            "(the spec's 'annotations:' and --annotations)"
        )
    refused = (
        exc.status == 415
        or code in ("UNSUPPORTED_MEDIA_TYPE", "MANIFEST_INVALID", "UNSUPPORTED")
        or (exc.status == 500 and media_type == OCI_INDEX)
    )
    if not refused:
        return None
    other = "docker" if media_type == OCI_INDEX else "oci"
    return (
        f"this registry does not accept manifest lists of type {media_type} (Harbor 1.x and old "
        f"Quay take none): try --type {other}, or upgrade the registry"
    )


def _top(data: bytes) -> bytes:
    """The list's bytes without its entries: annotations of entries are not the list's."""
    head, sep, rest = data.partition(b'"manifests"')
    if not sep:
        return data
    depth = 0
    for index, byte in enumerate(rest):
        if byte == ord("["):
            depth += 1
        elif byte == ord("]"):
            depth -= 1
            if depth == 0:
                return head + rest[index + 1 :]
    return head
