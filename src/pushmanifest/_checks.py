"""Checks of what the library's callers pass at its entry points (``push``, ``inspect``, the
options dataclasses): a wrong type is a clear :class:`InvalidArgumentError` saying what was
expected, not an ``AttributeError`` from deep inside, nor a string that counts as true."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from typing import Any, TypeVar

import httpx

from .errors import InvalidArgumentError

__all__ = [
    "check_bool",
    "check_client_options",
    "check_instance",
    "check_number",
    "check_path",
    "options_with",
]

OptionsT = TypeVar("OptionsT")


def _shown(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_instance(owner: str, name: str, value: object, kinds: Any, expected: str) -> None:
    if not isinstance(value, kinds):
        raise InvalidArgumentError(f"{owner}: {name} must be {expected}, not {_shown(value)}")


def check_bool(owner: str, name: str, value: object) -> None:
    # Exactly a bool: "no" and 0.0 would count as true and false by accident.
    check_instance(owner, name, value, bool, "True or False")


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: float,
    above_minimum: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """A finite int (or float, unless ``integer``) not below ``minimum``; not a bool."""
    if optional and value is None:
        return
    kinds = (int,) if integer else (int, float)
    low = f"greater than {minimum:g}" if above_minimum else f"at least {minimum:g}"
    expected = f"{'a whole number' if integer else 'a number'} {low}" + (
        " (or None)" if optional else ""
    )
    ok = (
        isinstance(value, kinds)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if above_minimum else value >= minimum)
    )
    if not ok:
        raise InvalidArgumentError(f"{owner}: {name} must be {expected}, not {_shown(value)}")


def check_path(owner: str, name: str, value: object) -> None:
    if value is not None:
        check_instance(owner, name, value, (str, os.PathLike), "a path (str) or None")


def check_client_options(owner: str, value: object) -> None:
    from .registry import ClientOptions

    check_instance(owner, "client", value, ClientOptions, "a ClientOptions")
    assert isinstance(value, ClientOptions)
    where = "ClientOptions"
    for flag in ("plain_http", "insecure"):
        check_bool(where, flag, getattr(value, flag))
    check_path(where, "ca_file", value.ca_file)
    for seconds in ("connect_timeout", "read_timeout"):
        check_number(where, seconds, getattr(value, seconds), minimum=0, above_minimum=True)
    check_number(where, "backoff", value.backoff, minimum=0)
    check_number(where, "max_concurrency", value.max_concurrency, minimum=1, integer=True)
    check_number(where, "retries", value.retries, minimum=0, integer=True)
    if value.transport is not None:
        check_instance(
            where, "transport", value.transport, httpx.AsyncBaseTransport, "an httpx transport"
        )
    check_instance(where, "user_agent", value.user_agent, str, "a str")


def check_option_names(owner: str, names: Iterable[str], known: Iterable[str]) -> None:
    known = sorted(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InvalidArgumentError(
            f"{owner}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(known)})"
        )


def options_with(
    owner: str, options: object, kinds: type[OptionsT], expected: str, kwargs: dict[str, Any]
) -> OptionsT:
    """An entry point's options dataclass: ``options`` (checked; a default one when None) with
    the keyword arguments given for convenience (``push(spec, dry_run=True)``) replaced in it."""
    if options is not None:
        check_instance(owner, "options", options, kinds, expected)
    opts: OptionsT = options if options is not None else kinds()  # type: ignore[assignment]
    if kwargs:
        known = (f.name for f in dataclasses.fields(kinds))  # type: ignore[arg-type]
        check_option_names(owner, kwargs, known)
        opts = dataclasses.replace(opts, **kwargs)  # type: ignore[type-var]
    return opts


def check_specs(owner: str, specs: object) -> list[Any]:
    """``specs`` as a list of ManifestListSpec: one spec, or an iterable of them."""
    from collections.abc import Mapping

    from .spec import ManifestListSpec

    expected = (
        "a ManifestListSpec or a list of them (from load_spec_file, load_spec_text or "
        "spec_from_args)"
    )
    if isinstance(specs, ManifestListSpec):
        return [specs]
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Iterable):
        raise InvalidArgumentError(f"{owner}: specs must be {expected}, not {_shown(specs)}")
    spec_list = list(specs)
    for index, spec in enumerate(spec_list):
        if not isinstance(spec, ManifestListSpec):
            raise InvalidArgumentError(
                f"{owner}: specs must be {expected}; item {index} is {_shown(spec)}"
            )
    return spec_list
