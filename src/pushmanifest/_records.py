"""``record``: :func:`dataclasses.dataclass` for pushmanifest's own records, made without
compiling code.

``dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` (and, when
frozen, ``__setattr__`` and ``__delattr__``) as source text and compiles it: ~4M instructions
(1-2 ms) per class, on Python before 3.13, for every class at every start-up. A push imports
~25 records before its first request: that compiling was a tenth of its start-up (issue 12).
Here ``dataclass`` itself still collects the fields (so :func:`dataclasses.fields`,
:func:`~dataclasses.replace` and :func:`~dataclasses.asdict` work as before) and the methods are
shared functions that read the fields' names from the class, with the same behaviour: positional
or keyword arguments, defaults and default factories, ``__post_init__``, equality by the fields
between instances of one class, a hash of the fields (without those marked ``hash=False``) for
frozen records, no assignment to a frozen one. Type checkers see ``dataclass`` itself.

What it does not take (``order``, ``slots``, ``kw_only``, ``InitVar``, fields with ``init`` or
``compare`` off, ``unsafe_hash``): nothing of ours uses it, and it is refused rather than
half-done.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import TYPE_CHECKING, Any, Callable, Optional

__all__ = ["record"]

_MISSING: Any = dataclasses.MISSING


def _init_for(cls: type, frozen: bool) -> Callable[..., None]:
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    known = frozenset(names)
    defaults = {f.name: f.default for f in fields if f.default is not _MISSING}
    factories: dict[str, Callable[[], Any]] = {
        f.name: f.default_factory  # type: ignore[misc]  # (not MISSING: filtered)
        for f in fields
        if f.default_factory is not _MISSING
    }
    count = len(names)
    post_init = hasattr(cls, "__post_init__")
    qualname = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(
                f"{qualname}.__init__() takes {count + 1} positional arguments but "
                f"{len(args) + 1} were given"
            )
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in known:
                raise TypeError(
                    f"{qualname}.__init__() got an unexpected keyword argument {name!r}"
                )
            if name in values:
                raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
            values[name] = value
        if len(values) < count:
            for name in names:
                if name in values:
                    continue
                if name in defaults:
                    values[name] = defaults[name]
                elif name in factories:
                    values[name] = factories[name]()
                else:
                    raise TypeError(
                        f"{qualname}.__init__() missing 1 required positional argument: {name!r}"
                    )
        if frozen:
            # As dataclass's own __init__ (object.__setattr__): past the frozen __setattr__.
            self.__dict__.update(values)
        else:
            for name in names:
                setattr(self, name, values[name])
        if post_init:
            self.__post_init__()

    return __init__


def _repr_for(cls: type) -> Callable[[Any], str]:
    names = tuple(f.name for f in dataclasses.fields(cls) if f.repr)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _getter(names: tuple[str, ...]) -> Callable[[Any], Any]:
    """The fields' values as one tuple (attrgetter gives a bare value for one name)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        (name,) = names
        return lambda obj: (getattr(obj, name),)
    return operator.attrgetter(*names)


def _eq_for(cls: type) -> Callable[[Any, Any], Any]:
    values = _getter(tuple(f.name for f in dataclasses.fields(cls) if f.compare))

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash_for(cls: type) -> Callable[[Any], int]:
    fields = dataclasses.fields(cls)
    values = _getter(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))

    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _frozen_methods(cls: type[Any]) -> tuple[Callable[..., None], Callable[..., None]]:
    names = frozenset(f.name for f in dataclasses.fields(cls))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__


def _set(cls: type, name: str, value: Any) -> None:
    """As dataclass does: a method the class defines itself is kept."""
    if name not in cls.__dict__:
        value.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, value)


def _check_supported(cls: type) -> None:
    for f in dataclasses.fields(cls):
        if not f.init or not f.compare or getattr(f, "kw_only", False) is True:
            raise TypeError(f"record {cls.__qualname__}.{f.name}: use dataclasses.dataclass")


def _make(cls: type, frozen: bool) -> type:
    # dataclass writes a class without a docstring one from inspect.signature(), which for an
    # __init__ not yet written is object's, parsed from its text with tokenize's regexes
    # (~10M instructions, the first time): one from the fields instead, once they are known.
    undocumented = cls.__doc__ is None
    if undocumented:
        cls.__doc__ = "-"  # (non-empty: dataclass writes none over it)
    # The fields only: no method written, nothing compiled.
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    if undocumented:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in dataclasses.fields(cls))})"
    _check_supported(cls)
    _set(cls, "__init__", _init_for(cls, frozen))
    _set(cls, "__repr__", _repr_for(cls))
    class_hash = cls.__dict__.get("__hash__", _MISSING)
    explicit_hash = not (
        class_hash is _MISSING or (class_hash is None and "__eq__" in cls.__dict__)
    )
    _set(cls, "__eq__", _eq_for(cls))
    if not explicit_hash:
        # dataclass's rule with eq on: frozen, a hash of the fields; else unhashable.
        cls.__hash__ = _hash_for(cls) if frozen else None  # type: ignore[assignment,method-assign]
    if frozen:
        setter, deleter = _frozen_methods(cls)
        if "__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__:
            raise TypeError(f"record {cls.__qualname__}: frozen, yet defines __setattr__")
        _set(cls, "__setattr__", setter)
        _set(cls, "__delattr__", deleter)
    return cls


def _record(cls: Optional[type] = None, /, *, frozen: bool = False) -> Any:
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


if TYPE_CHECKING:
    from dataclasses import dataclass as record
else:
    record = _record
