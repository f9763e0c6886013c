"""pydantic's validation errors in plain words, each at the position of what it is about.

Positions come from the marks the loader kept for every key and value (:class:`Marks`); a spec
built in code has none, and its problems are named by path (:class:`PathProblem`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Optional, Union

import yaml
from pydantic import ValidationError

from .._records import record
from ..errors import SpecProblem

__all__ = [
    "CODE_FILENAME",
    "ENTRY_KEYS",
    "LIST_KEYS",
    "PLATFORM_KEYS",
    "Loc",
    "Marks",
    "PathProblem",
    "line_note",
    "position",
    "unknown_key",
    "validation_problems",
]

Loc = tuple[Union[str, int], ...]

CODE_FILENAME = "<spec>"

# The keys a spec may use at each level, for "did you mean" and for messages.
LIST_KEYS = ("image", "tags", "type", "artifactType", "subject", "annotations", "manifests")
ENTRY_KEYS = ("image", "platform", "platforms", "annotations")
PLATFORM_KEYS = (
    "architecture",
    "os",
    "variant",
    "osversion",
    "os.version",
    "osfeatures",
    "os.features",
    "features",
)


class PathProblem(SpecProblem):
    """A problem in a spec built in code: there is no line or column to give."""

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@record
class Marks:
    keys: dict[Loc, yaml.Mark]
    values: dict[Loc, yaml.Mark]


def _shape(loc: Loc) -> tuple[str, ...]:
    return tuple("*" if isinstance(part, int) else part for part in loc)


_EXPECTED: dict[tuple[str, ...], str] = {
    (): "a mapping with 'image' and 'manifests'",
    ("image",): "an image reference",
    ("tags",): "a list of strings",
    ("annotations",): "a mapping of strings to strings",
    ("manifests",): "a list of entries, each with 'image' and 'platform'",
    ("manifests", "*"): "a mapping with 'image' and 'platform'",
    ("manifests", "*", "image"): "an image reference",
    ("manifests", "*", "annotations"): "a mapping of strings to strings",
    ("manifests", "*", "platforms"): "a list of platforms, e.g. [linux/amd64, linux/arm64]",
    ("artifactType",): "a media type",
    ("subject",): "an image reference",
    ("manifests", "*", "platform"): "a mapping with 'os' and 'architecture'",
    ("manifests", "*", "platform", "osfeatures"): "a list of strings",
    ("manifests", "*", "platform", "os.features"): "a list of strings",
    ("manifests", "*", "platform", "features"): "a list of strings",
}

_KNOWN_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): LIST_KEYS,
    ("manifests", "*"): ENTRY_KEYS,
    ("manifests", "*", "platform"): PLATFORM_KEYS,
}

_MISSING_HINTS = {
    ("manifests",): ": list the images of the list, one per platform",
    ("image",): ": the list to push, e.g. 'registry.example.com/app:1.0'",
    ("manifests", "*", "image"): ": the image for this platform",
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _display(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]" if text else repr(part)
    return text or "the spec"


def _prefixed(loc: Loc, message: str) -> str:
    return f"{_display(loc)}: {message}" if loc else message


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def _suggestion(key: str, known: tuple[str, ...]) -> Optional[str]:
    import difflib  # here: only a spec with an unknown key needs it (start-up)

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    # "arch" is too short for difflib to match "architecture", but clearly meant it.
    prefixed = [k for k in known if len(key) >= 2 and k.startswith(key.lower())]
    return prefixed[0] if prefixed else None


def unknown_key(key: str, known: tuple[str, ...]) -> str:
    suggestion = _suggestion(key, known)
    if suggestion is not None:
        return f"unknown key '{key}' — did you mean '{suggestion}'?"
    return f"unknown key '{key}' (known keys: {', '.join(known)})"


def _type_message(loc: Loc, value: Any) -> str:
    if loc:
        container = _EXPECTED.get(_shape(loc[:-1]), "")
        if container in ("a list of strings", "a mapping of strings to strings"):
            return f"'{_display(loc[:-1])}' must be {container}: {_display(loc)} is {_kind(value)}"
    expected = _EXPECTED.get(_shape(loc), "a string")
    if value is None:
        return f"'{_display(loc)}' has no value: give {expected}"
    return f"'{_display(loc)}' must be {expected}, not {_kind(value)}"


_TYPE_ERRORS = frozenset(
    {
        "not_text",
        "string_type",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "none_required",
    }
)


def validation_problems(
    exc: ValidationError,
    filename: str,
    marks: Optional[Marks],
    *,
    skip: Collection[Loc] = (),
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []

    def add(loc: Loc, message: str, how: str = "value") -> None:
        if marks is None:
            problems.append(PathProblem(filename, 0, 0, message))
            return
        mark = position(marks, loc, how)
        problems.append(SpecProblem(filename, mark.line + 1, mark.column + 1, message))

    errors = exc.errors(include_url=False)
    # A misspelt required key is reported once, as the unknown key with its suggestion.
    meant: set[Loc] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            parent = tuple(error["loc"][:-1])
            suggestion = _suggestion(str(error["loc"][-1]), _KNOWN_KEYS.get(_shape(parent), ()))
            if suggestion is not None:
                meant.add((*parent, suggestion))

    for error in errors:
        loc: Loc = tuple(error["loc"])
        if any(loc[: len(broken)] == broken for broken in skip):
            continue
        kind = error["type"]
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        if kind == "duplicate_platform":
            for later, earlier, text in ctx["pairs"]:
                add(
                    ("manifests", later, "platform"),
                    f"manifests[{later}]{line_note(marks, later)} has platform {text}, "
                    f"as manifests[{earlier}]{line_note(marks, earlier)} has",
                    how="key",
                )
        elif kind == "missing":
            if loc in meant:
                continue
            parent, key = loc[:-1], loc[-1]
            hint = _MISSING_HINTS.get(_shape(loc), "")
            add(loc, _prefixed(parent, f"'{key}' is required{hint}"), how="parent")
        elif kind == "extra_forbidden":
            parent, key = loc[:-1], str(loc[-1])
            known = _KNOWN_KEYS.get(_shape(parent), ())
            add(loc, _prefixed(parent, unknown_key(key, known)), how="key")
        elif kind == "spec":
            under = ctx.get("key")
            target = (*loc, under) if under else loc
            message = str(ctx["message"])
            add(target, message if ctx.get("whole") else _prefixed(target, message))
        elif kind in _TYPE_ERRORS:
            add(loc, _type_message(loc, error["input"]))
        else:
            add(loc, _prefixed(loc, error["msg"]))
    return problems


def line_note(marks: Optional[Marks], index: int) -> str:
    if marks is None:
        return ""
    mark = marks.values.get(("manifests", index))
    return "" if mark is None else f" (line {mark.line + 1})"


def position(marks: Marks, loc: Loc, how: str) -> yaml.Mark:
    """The mark of the deepest node of ``loc`` the document has.

    ``how``: "key" points at the key itself, "parent" at the key holding the missing one (or the
    start of its mapping), "value" at the value.
    """
    if how == "parent":
        loc = loc[:-1]
    if how in ("key", "parent") and loc in marks.keys:
        return marks.keys[loc]
    for end in range(len(loc), 0, -1):
        found = marks.values.get(loc[:end])
        if found is not None:
            return found
    return marks.values[()]
