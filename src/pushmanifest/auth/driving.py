"""The two drivers of the auth flow: the only code that differs between httpx's two clients.

The flow (:meth:`TokenAuth._flow <pushmanifest.auth.token.TokenAuth>`) decides everything and
does no I/O: it yields the requests to send, and two kinds of waiting it cannot do itself. A
driver does them: the async one (``httpx.AsyncClient``) waits on an ``asyncio.Lock`` and reads
with ``aread()``, the sync one (``httpx.Client``) waits on a ``threading.Lock`` and reads with
``read()``. That is httpx's own ``Auth`` design (``auth_flow``, driven by ``sync_auth_flow`` and
``async_auth_flow``), with the lock of the single flight added as a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any, Callable, Optional, Union

import httpx

from .._records import record

__all__ = ["Acquire", "Flow", "Read", "Step", "drive_async", "drive_sync"]

Key = Any  # what a lock is for (TokenAuth: the token's realm, service and scopes)


@record(frozen=True)
class Acquire:
    """Wait for, then hold, the lock of ``key``; the driver sends the lock back (to release)."""

    key: Key


@record(frozen=True)
class Read:
    """Read ``response`` whole (the flow has capped it first)."""

    response: httpx.Response


#: A step: send the request and send back its response, or :class:`Acquire`, or :class:`Read`.
Step = Union[httpx.Request, Acquire, Read]
Flow = Generator[Step, Any, Any]


def _advance(flow: Flow, answer: Any) -> Optional[Step]:
    try:
        return flow.send(answer)
    except StopIteration:
        return None


async def drive_async(
    flow: Flow, lock: Callable[[Key], asyncio.Lock]
) -> AsyncGenerator[httpx.Request, httpx.Response]:
    """Run ``flow`` for ``httpx.AsyncClient``; closing this closes the flow (its locks go back)."""
    with contextlib.closing(flow):
        back: Any = None  # what goes back to the flow
        while (step := _advance(flow, back)) is not None:
            back = (yield step) if isinstance(step, httpx.Request) else await _do_async(step, lock)


def drive_sync(
    flow: Flow, lock: Callable[[Key], threading.Lock]
) -> Generator[httpx.Request, httpx.Response, None]:
    """Run ``flow`` for ``httpx.Client``; closing this closes the flow (its locks go back)."""
    with contextlib.closing(flow):
        back: Any = None  # what goes back to the flow
        while (step := _advance(flow, back)) is not None:
            back = (yield step) if isinstance(step, httpx.Request) else _do_sync(step, lock)


async def _do_async(step: Union[Acquire, Read], lock: Callable[[Key], asyncio.Lock]) -> Any:
    if isinstance(step, Read):
        return await step.response.aread()
    wanted = lock(step.key)
    await wanted.acquire()  # cancelled while waiting: the flow holds nothing to give back
    return wanted


def _do_sync(step: Union[Acquire, Read], lock: Callable[[Key], threading.Lock]) -> Any:
    if isinstance(step, Read):
        return step.response.read()
    wanted = lock(step.key)
    wanted.acquire()
    return wanted
