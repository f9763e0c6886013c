"""Push orchestration: resolve every source, build every list, then write. One place.

The order is what keeps a tag from ever pointing at a broken list: nothing is written until every
source of every list in the run has resolved, and every request that does not depend on another
goes out concurrently (one wave of HEADs, one wave of PUTs), so the time a push takes does not
grow with the number of architectures.

The names below are the package's interface; its modules are its rooms:

* :mod:`.results`: what a push is given and gives back (PushOptions, PushResult, partial_push);
* :mod:`.run`: push/push_async and the run, the hub: clients, resolve -> build -> write;
* :mod:`.resolving`: sources (the confirming GET, --wait, lists as sources, configs' platforms);
* :mod:`.copying`: entries from elsewhere copied into the target repository (mount or stream);
* :mod:`.referrers`: what refers to a copied entry (OCI referrers, cosign tags) copied with it;
* :mod:`.appending`: --append's merge and its write loop under concurrent pushes;
* :mod:`.common`: what they share (media types, attestations, targets, gather).

The tuning constants are read where they are used, at call time: to change one (a test does),
set it on its module (``pusher.appending.APPEND_ROUNDS``), not on this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import IMAGE_MEDIA_TYPES, LIST_MEDIA_TYPES
from .resolving import WAIT_FIRST_DELAY, WAIT_MAX_DELAY
from .results import (
    ListType,
    PartialPush,
    PushedEntry,
    PushOptions,
    PushResult,
    SpecInput,
    partial_push,
)
from .run import _Run, push, push_async

if TYPE_CHECKING:
    from .appending import APPEND_ROUNDS, GONE_CODES
    from .copying import PROGRESS_MIN_BYTES
    from .referrers import MAX_REFERRERS, Referrer

# The rooms of features a push may not use (--append, copies from elsewhere, their referrers)
# are imported when first used, not with the package: a push's first request waits for every
# module imported before it (issue 12: start-up).
_LAZY = {
    "APPEND_ROUNDS": "appending",
    "GONE_CODES": "appending",
    "PROGRESS_MIN_BYTES": "copying",
    "MAX_REFERRERS": "referrers",
    "Referrer": "referrers",
}


def __getattr__(name: str) -> Any:
    room = _LAZY.get(name)
    if room is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{room}"), name)


__all__ = [
    "APPEND_ROUNDS",
    "GONE_CODES",
    "IMAGE_MEDIA_TYPES",
    "LIST_MEDIA_TYPES",
    "MAX_REFERRERS",
    "PROGRESS_MIN_BYTES",
    "WAIT_FIRST_DELAY",
    "WAIT_MAX_DELAY",
    "ListType",
    "PartialPush",
    "PushOptions",
    "PushResult",
    "PushedEntry",
    "Referrer",
    "SpecInput",
    "_Run",
    "partial_push",
    "push",
    "push_async",
]
