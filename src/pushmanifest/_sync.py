"""The sync API: one async core, run on an event loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def run_sync(start: Callable[[], Coroutine[Any, Any, T]], name: str) -> T:
    """Run ``start()`` to completion; refused inside a running event loop (await instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop: run one, outside the except, so that errors do not chain to this one
    else:
        raise RuntimeError(
            f"{name}() called from a running event loop: await {name}_async() instead"
        )
    return asyncio.run(start())
