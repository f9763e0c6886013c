"""Imports that httpcore and pydantic would otherwise repeat or make for nothing.

* :func:`remember_missing_sniffio`: httpcore asks which async library runs (asyncio or trio)
  each time it sets up a lock, an event, a semaphore or a cancellation shield, several times per
  request, and each time tries ``import sniffio``. sniffio is no dependency of httpx or anyio
  any more (trio brings it), so where it is missing every try searches the whole ``sys.path``
  again and fails: ~0.1 ms each, 45 per push, ~4,900 in a bulk run (18 % of its CPU). Recorded
  once as missing (``None`` in ``sys.modules``, which Python's import system answers with
  ImportError at once), the later tries fail at once, and httpcore still answers "asyncio" as it
  did. Where sniffio is installed nothing changes.
* :func:`skip_pydantic_plugin_scan`: pydantic looks for plugins when it builds a model's
  validator, through ``pydantic.plugin._loader``, whose import alone loads ``importlib.metadata``
  (and ``email``, ``zipfile``, ``csv``: ~15 ms) even where ``PYDANTIC_DISABLE_PLUGINS`` turns
  every plugin off. Only for the command's own process, where it is off.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterable

__all__ = ["remember_missing_sniffio", "skip_pydantic_plugin_scan"]

#: The values of PYDANTIC_DISABLE_PLUGINS by which pydantic loads no plugin at all.
_ALL_PLUGINS_OFF = ("__all__", "1", "true")
_PLUGIN_LOADER = "pydantic.plugin._loader"


def remember_missing_sniffio() -> None:
    """Where sniffio is not installed, make ``import sniffio`` fail at once from now on."""
    if "sniffio" in sys.modules:
        return
    import importlib.util

    try:
        missing = importlib.util.find_spec("sniffio") is None
    except (ImportError, ValueError):  # a broken installation: leave it to the import itself
        return
    if missing:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # None: ImportError at once


def _no_plugins() -> Iterable[object]:
    """pydantic's ``get_plugins`` when every plugin is off: none."""
    return ()


def skip_pydantic_plugin_scan() -> None:
    """Where PYDANTIC_DISABLE_PLUGINS turns every plugin off and pydantic's plugin loader is not
    loaded yet, stand in for it: it would find no plugin, after importing importlib.metadata."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in _ALL_PLUGINS_OFF:
        return
    if _PLUGIN_LOADER in sys.modules:
        return
    loader = types.ModuleType(_PLUGIN_LOADER, "pushmanifest: every pydantic plugin is off")
    loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
    sys.modules[_PLUGIN_LOADER] = loader
