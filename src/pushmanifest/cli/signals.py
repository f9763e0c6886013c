"""Signals: SIGTERM stops a command as Ctrl-C does, and a run on the event loop is cancelled
cleanly (uploads end and delete their sessions) rather than killed mid-request.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Coroutine, Iterator
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class _Interrupted(KeyboardInterrupt):
    """A signal stopped the command (SIGINT or SIGTERM, in ``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, ``docker stop``) stops the command as Ctrl-C does."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_interruptibly(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``start()`` on an event loop where SIGINT and SIGTERM cancel it, cleanly.

    A signal cancels the run's task (its uploads end and delete their sessions, see
    RegistryClient.upload_blob) and then raises :class:`_Interrupted`; a second signal stops at
    once.
    """
    import asyncio

    async def run() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []

        def on_signal(signum: int) -> None:
            if received:
                raise _Interrupted(received[0])
            received.append(signum)
            task.cancel()

        installed = []
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass
        try:
            return await start()
        except asyncio.CancelledError as exc:
            if received:
                raise _Interrupted(received[0]) from exc
            raise
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])

    return asyncio.run(run())
