"""Token scopes (``repository:alice/app:pull,push``): merged per resource, and compared by action.

A token is asked for every scope of a run at once; whether a token already held covers what a
request needs is a question of actions on resources, not of equal strings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Optional

__all__ = ["covers", "covers_scopes", "normalize_scopes"]


def _split_scope(scope: str) -> Optional[tuple[str, str, tuple[str, ...]]]:
    # "repository:host:5000/name:pull,push": the name may hold colons, the actions never do.
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, tuple(a for a in actions.split(",") if a)


def normalize_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Merge the actions of scopes on the same resource: one scope string per resource.

    Actions are sorted, so that equal sets of scopes are equal strings (``pull,push``).

    ``repository:a:pull`` and ``repository:a:pull,push`` ask for the same thing as
    ``repository:a:pull,push`` alone; sending both would only make cache keys differ.
    """
    merged: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in scopes:
        scope = scope.strip()
        if not scope:
            continue
        parsed = _split_scope(scope)
        if parsed is None:
            opaque.add(scope)
            continue
        kind, name, actions = parsed
        merged.setdefault((kind, name), set()).update(actions)
    out = {f"{kind}:{name}:{','.join(sorted(actions))}" for (kind, name), actions in merged.items()}
    return frozenset(out | opaque)


@functools.lru_cache(maxsize=64)
def covers(have: frozenset[str], need: frozenset[str]) -> bool:
    """:func:`covers_scopes` of normalized sets, cached: the same two meet before every request."""
    return covers_scopes(have, need)


def covers_scopes(have: Iterable[str], need: Iterable[str]) -> bool:
    """Whether a token granted ``have`` is good for ``need`` (actions compared, not strings)."""
    granted: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in have:
        parsed = _split_scope(scope)
        if parsed is None:
            opaque.add(scope)
        else:
            granted.setdefault(parsed[:2], set()).update(parsed[2])
    for scope in need:
        parsed = _split_scope(scope)
        if parsed is None:
            if scope not in opaque:
                return False
            continue
        actions = granted.get(parsed[:2])
        if actions is None or not ("*" in actions or actions.issuperset(parsed[2])):
            return False
    return True
