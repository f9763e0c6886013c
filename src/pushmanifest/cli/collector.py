"""The garbage collector of the command's own process, held while it starts (console_main).

Imports and the spec's models make hundreds of thousands of objects, none of them garbage; the
collector's passes over them were ~3 % of a push's instructions before its first request.
"""

from __future__ import annotations

import gc

__all__ = ["hold_gc", "start_up_ended"]

#: Whether the collector waits for the start-up to end (only in the command's own process).
_gc_held = False


def hold_gc() -> None:
    """No garbage collection while the command starts (see above); :func:`start_up_ended`
    turns it back on."""
    global _gc_held
    _gc_held = True
    gc.disable()


def start_up_ended() -> None:
    """The command has loaded what it runs on (its spec): garbage collection again, over what
    is made from now on (what start-up made is frozen: later collections skip it). Only where
    :func:`hold_gc` held it: a program that calls :func:`main` keeps its own settings."""
    global _gc_held
    if _gc_held:
        _gc_held = False
        gc.freeze()
        gc.enable()
