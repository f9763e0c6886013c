"""The YAML spec: pydantic models, loading with FILE:LINE:COL errors, ``${VAR}`` expansion.

A spec file holds one manifest list per YAML document, in manifest-tool's format::

    image: registry.example.com/app:1.0
    tags: [latest]
    manifests:
      - image: registry.example.com/app:1.0-amd64
        platform: {os: linux, architecture: amd64}

Loading composes the YAML into nodes (which know their line and column), builds plain Python data
from them while remembering where every key and value came from, and validates that data with
the pydantic models. Every problem found, in every document, is reported at once as a
:class:`~pushmanifest.errors.SpecError`, each at its ``FILE:LINE:COL`` and in plain words.

Specs can be built in code too (``ManifestListSpec(image=..., manifests=[...])``); their problems
raise :class:`SpecError` as well, named by path rather than position.

pydantic is imported here and only here: the CLI imports this module lazily, so that commands
which do not read a spec do not pay for it.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Annotated, Any, Optional, Union, cast

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Self, TypeAlias
from yaml.reader import ReaderError

from .errors import InvalidPlatformError, InvalidReferenceError, SpecError, SpecProblem
from .platform import Platform, normalize_platform
from .reference import Reference

__all__ = [
    "MAX_SPEC_BYTES",
    "ManifestEntrySpec",
    "ManifestListSpec",
    "PlatformSpec",
    "load_spec_file",
    "load_spec_stream",
    "load_spec_text",
]

log = logging.getLogger("pushmanifest")

Loc = tuple[Union[str, int], ...]

CODE_FILENAME = "<spec>"

#: The most a spec (a file, a stream, a text) may hold, in UTF-8 bytes. A spec of a thousand lists
#: of five images is ~600 KiB and takes PyYAML seconds to read; more is not a spec but the wrong
#: file, /dev/zero or a pipe without end, which are read this far and no further.
MAX_SPEC_BYTES = 1 << 20
_TOO_LARGE = (
    f"the spec is larger than 1 MiB ({MAX_SPEC_BYTES} bytes), the most a spec may hold: "
    "is this the right file?"
)

# The keys a spec may use at each level, for "did you mean" and for messages.
LIST_KEYS = ("image", "tags", "annotations", "manifests")
ENTRY_KEYS = ("image", "platform", "annotations")
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

_CONTEXT_KEY = "pushmanifest.spec"


# --------------------------------------------------------------------------------------------
# Problems named by path (specs built in code have no positions)


class _PathProblem(SpecProblem):
    """A problem in a spec built in code: there is no line or column to give."""

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


# --------------------------------------------------------------------------------------------
# ${VAR} expansion

_VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-)(?P<default>.*))?\Z", re.S)


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` (unset or empty) and ``${VAR-default}`` (unset).

    ``$$`` is a literal ``$``, and so is a ``$`` followed by anything but ``{``: references and
    tags never contain ``$``, so a stray one is reported by the reference grammar, which names it.
    Raises ValueError with a message for the user.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    unset: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
            continue
        if following != "{":
            out.append("$")
            i += 1
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise ValueError(
                f"'${{' at {text[i:]!r} is not closed: write ${{NAME}}, or $$ for a literal '$'"
            )
        body = text[i + 2 : end]
        match = _VARIABLE.match(body)
        if match is None:
            raise ValueError(
                f"'${{{body}}}' is not a variable: write ${{NAME}} or ${{NAME:-default}} "
                "(names are letters, digits and '_'), or $$ for a literal '$'"
            )
        name, op, default = match.group("name", "op", "default")
        value = env.get(name)
        if (op == ":-" and not value) or (op == "-" and value is None):
            value = default
        if value is None:
            unset.append(name)
        else:
            out.append(value)
        i = end + 1
    if unset:
        names = list(dict.fromkeys(unset))
        if len(names) == 1:
            raise ValueError(
                f"${{{names[0]}}} is not set: export it, or write ${{{names[0]}:-default}}"
            )
        listed = ", ".join(f"${{{n}}}" for n in names[:-1]) + f" and ${{{names[-1]}}}"
        raise ValueError(
            f"{listed} are not set: export them, or give defaults (${{NAME:-default}})"
        )
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Validation context: present only while loading YAML


@dataclass
class _LoadContext:
    env: Mapping[str, str]
    # Notices at a fixed path (the target's default tag).
    notices: list[tuple[Loc, str]] = field(default_factory=list)
    # Platform notices, keyed by id() of the raw mapping they came from: a platform validator
    # does not know where in the document it is, but the loader knows where each mapping was.
    platform_notices: dict[int, list[tuple[Optional[str], str]]] = field(default_factory=dict)


def _load_context(info: ValidationInfo) -> Optional[_LoadContext]:
    context = info.context
    if isinstance(context, dict):
        found = context.get(_CONTEXT_KEY)
        if isinstance(found, _LoadContext):
            return found
    return None


def _problem_error(message: str, *, key: Optional[str] = None, whole: bool = False) -> Exception:
    """A validation error carrying our own message.

    ``key`` names a key under the failing node to point at; ``whole`` says the message already
    names its subject, so it gets no path prefix.
    """
    return PydanticCustomError(
        "spec", "{message}", {"message": message, "key": key, "whole": whole}
    )


def _not_text_error() -> Exception:
    return PydanticCustomError("not_text", "a string is expected")


def _expanded(value: str, info: ValidationInfo) -> str:
    context = _load_context(info)
    if context is None:
        return value
    try:
        return _expand(value, context.env)
    except ValueError as exc:
        raise _problem_error(str(exc)) from None


def _from_note(raw: str, text: str) -> str:
    return "" if raw == text else f" (expanded from {raw!r})"


def _parse_reference(value: Any, info: ValidationInfo) -> tuple[Reference, str]:
    """The reference and the text it was parsed from (after ${VAR} expansion)."""
    if isinstance(value, Reference):
        return value, str(value)
    if not isinstance(value, str):
        raise _not_text_error()
    text = _expanded(value, info)
    try:
        return Reference.parse(text), text
    except InvalidReferenceError as exc:
        raise _problem_error(f"{exc}{_from_note(value, text)}") from None


def _source_reference(value: Any, info: ValidationInfo) -> Reference:
    return _parse_reference(value, info)[0]


def _target_reference(value: Any, info: ValidationInfo) -> Reference:
    ref, text = _parse_reference(value, info)
    if ref.digest:
        example = ref.with_tag(ref.tag or "latest").familiar()
        raise _problem_error(
            f"the target cannot be a digest reference ({text!r}): a list is pushed to a tag, "
            f"e.g. '{example}'"
        )
    if ref.tag is None:
        tagged = ref.with_tag("latest")
        notice = f"no tag on target {text!r}: pushing to {tagged.familiar()!r}"
        context = _load_context(info)
        if context is None:
            log.info("%s", notice)
        else:
            context.notices.append((("image",), notice))
        ref = tagged
    return ref


@lru_cache(maxsize=1)
def _tag_probe() -> Reference:
    return Reference.parse("pushmanifest.invalid/tag-check")


def _tag(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise _not_text_error()
    text = _expanded(value, info)
    try:
        _tag_probe().with_tag(text)
    except InvalidReferenceError as exc:
        raise _problem_error(f"{exc}{_from_note(value, text)}") from None
    return text


def _platform_input(value: Platform) -> dict[str, Any]:
    data: dict[str, Any] = {"os": value.os, "architecture": value.architecture}
    if value.variant:
        data["variant"] = value.variant
    if value.os_version:
        data["os.version"] = value.os_version
    if value.os_features:
        data["os.features"] = list(value.os_features)
    if value.features:
        data["features"] = list(value.features)
    return data


def _entry_platform(value: Optional[PlatformSpec]) -> Optional[Platform]:
    return None if value is None else value.platform


def _reference_text(value: Reference) -> str:
    return str(value)


def _serialize_platform(value: Optional[Platform]) -> Optional[dict[str, object]]:
    return None if value is None else value.to_dict()


if TYPE_CHECKING:
    SourceReference: TypeAlias = Reference
    TargetReference: TypeAlias = Reference
    TagText: TypeAlias = str
    PlatformField: TypeAlias = Optional[Platform]
else:
    SourceReference = Annotated[
        Reference,
        PlainValidator(_source_reference),
        PlainSerializer(_reference_text, return_type=str),
    ]
    TargetReference = Annotated[
        Reference,
        PlainValidator(_target_reference),
        PlainSerializer(_reference_text, return_type=str),
    ]
    TagText = Annotated[str, PlainValidator(_tag)]


# --------------------------------------------------------------------------------------------
# Models


class _SpecModel(BaseModel):
    """Turns pydantic's ValidationError into SpecError for models built in code."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise SpecError(_validation_problems(exc, CODE_FILENAME, None)) from None

    # Tells pydantic this __init__ only wraps the base one. Without it pydantic would call it for
    # nested models too, without the validation context: no ${VAR} expansion, no positions.
    # (RootModel marks its __init__ the same way.)
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise SpecError(_validation_problems(exc, CODE_FILENAME, None)) from None


class PlatformSpec(_SpecModel):
    """A platform as a spec writes it, in manifest-tool's spelling or OCI's.

    Validation normalizes it (aliases, known values) into :attr:`platform`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    architecture: str
    # Optional: a partial platform (architecture only) takes the rest from the image's config.
    os: Optional[str] = None
    variant: Optional[str] = None
    osversion: Optional[str] = None
    os_version: Optional[str] = Field(None, alias="os.version")
    osfeatures: Optional[list[str]] = None
    os_features: Optional[list[str]] = Field(None, alias="os.features")
    features: Optional[list[str]] = None

    _platform: Optional[Platform] = PrivateAttr(None)

    @property
    def platform(self) -> Platform:
        assert self._platform is not None  # set by the validator, always
        return self._platform

    @model_validator(mode="wrap")
    @classmethod
    def _normalize(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> PlatformSpec:
        if isinstance(data, Platform):
            data = _platform_input(data)
        spec = cast(PlatformSpec, handler(data))
        keys = [k for k in data if isinstance(k, str)] if isinstance(data, Mapping) else []
        platform, notices = spec._to_platform(keys)
        spec._platform = platform
        context = _load_context(info)
        if context is not None and isinstance(data, dict):
            context.platform_notices[id(data)] = notices
        else:
            for _, notice in notices:
                log.info("platform %s: %s", platform, notice)
        return spec

    def _to_platform(self, keys: list[str]) -> tuple[Platform, list[tuple[Optional[str], str]]]:
        def given(*names: str) -> list[str]:
            return [n for n in keys if n in names]

        # Three spellings of each: manifest-tool's, OCI's, and the attribute name (for code).
        spellings = (
            ("osversion", "os.version", "os_version"),
            ("osfeatures", "os.features", "os_features"),
        )
        for names in spellings:
            used = given(*names)
            if len(used) > 1:
                raise _problem_error(
                    f"give '{used[0]}' or '{used[1]}', not both (they are the same field)",
                    key=used[1],
                )
        os_version = self.os_version if self.os_version is not None else self.osversion
        os_features = self.os_features if self.os_features is not None else self.osfeatures
        os_version_key = (given(*spellings[0]) or ["os.version"])[0]
        os_features_key = (given(*spellings[1]) or ["os.features"])[0]
        # InvalidPlatformError.field may use the attribute name or either spelling of the key.
        key_of = {
            "os": "os",
            "architecture": "architecture",
            "variant": "variant",
            "features": "features",
            "os_version": os_version_key,
            "osversion": os_version_key,
            "os.version": os_version_key,
            "os_features": os_features_key,
            "osfeatures": os_features_key,
            "os.features": os_features_key,
        }
        try:
            platform, notices = normalize_platform(
                self.os or "",
                self.architecture,
                self.variant or "",
                os_version=os_version or "",
                os_features=tuple(os_features or ()),
                features=tuple(self.features or ()),
            )
        except InvalidPlatformError as exc:
            key = key_of.get(exc.field or "", exc.field)
            raise _problem_error(str(exc), key=key if key in keys else None) from None
        values = {
            "architecture": self.architecture,
            "os": self.os or "",
            "variant": self.variant or "",
            os_version_key: os_version or "",
        }
        return platform, [(_notice_key(n, values, keys), n) for n in notices]


def _notice_key(notice: str, values: Mapping[str, str], keys: list[str]) -> Optional[str]:
    """The key a platform notice is about, to log it at that key's position."""
    for key, value in values.items():
        if key in keys and (notice.startswith(f"{key} ") or (value and f"'{value}'" in notice)):
            return key
    return None


if not TYPE_CHECKING:
    # Validated as the input model, stored as the normalized Platform the rest of the code uses.
    PlatformField = Annotated[
        Optional[PlatformSpec],
        AfterValidator(_entry_platform),
        PlainSerializer(_serialize_platform, return_type=Optional[dict[str, object]]),
    ]


class ManifestEntrySpec(_SpecModel):
    """One image of a list: the source and, unless it is to be read from the image, its platform."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: SourceReference
    platform: PlatformField = None
    annotations: dict[str, str] = Field(default_factory=dict)


class ManifestListSpec(_SpecModel):
    """One manifest list to push: the target, extra tags, and its entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: TargetReference
    tags: list[TagText] = Field(default_factory=list)
    annotations: dict[str, str] = Field(default_factory=dict)
    manifests: list[ManifestEntrySpec]
    origin: str = ""

    @field_validator("manifests")
    @classmethod
    def _not_empty(cls, value: list[ManifestEntrySpec]) -> list[ManifestEntrySpec]:
        if not value:
            raise _problem_error("manifests must not be empty: list at least one image", whole=True)
        return value

    @model_validator(mode="after")
    def _no_duplicate_platforms(self) -> Self:
        pairs = _duplicate_platforms(list(enumerate(e.platform for e in self.manifests)))
        if pairs:
            message = "; ".join(
                f"manifests[{later}] has platform {text}, as manifests[{earlier}] has"
                for later, earlier, text in pairs
            )
            raise PydanticCustomError(
                "duplicate_platform", "{message}", {"message": message, "pairs": pairs}
            )
        return self


def _duplicate_platforms(
    platforms: list[tuple[int, Optional[Platform]]],
) -> list[tuple[int, int, str]]:
    """(later index, earlier index, platform) for each entry whose platform another has."""
    seen: dict[Any, int] = {}
    pairs: list[tuple[int, int, str]] = []
    for index, platform in platforms:
        if platform is None:
            continue  # read from the image at push time, checked there
        key = platform.key()
        if key in seen:
            pairs.append((index, seen[key], str(platform)))
        else:
            seen[key] = index
    return pairs


# --------------------------------------------------------------------------------------------
# From YAML nodes to data, remembering positions


_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases and merge keys ('<<') let a short text expand to far more data than it holds: a spec
# needs some hundreds of values, a large one some thousands; every value built and every mapping
# merged counts.
_MAX_VALUES = 100_000
_TOO_MANY = (
    f"the document expands to more than {_MAX_VALUES} values through aliases ('*name') and "
    "merge keys ('<<'): a spec needs far fewer"
)
# All the documents of a text together: each is bounded by _MAX_VALUES, their number by the size
# of the text, but not their product without this.
_MAX_VALUES_IN_ALL = 4 * _MAX_VALUES
_TOO_MANY_IN_ALL = (
    f"the documents expand to more than {_MAX_VALUES_IN_ALL} values in all through aliases "
    "('*name') and merge keys ('<<'): a spec needs far fewer"
)
# A spec nests 5 levels deep (manifests, an entry, its platform, features, a feature); far
# deeper nesting exhausts the stack of PyYAML's (recursive) composer and of the builder below.
_MAX_DEPTH = 50
_TOO_DEEP = (
    f"the document nests more than {_MAX_DEPTH} levels deep; a spec needs 5 at most "
    "(manifests, an entry, its platform, features)"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALAR_KINDS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean (YAML reads yes/no/on/off/true/false so)",
    "tag:yaml.org,2002:timestamp": "a date",
    _NULL_TAG: "empty",
}


class _Builder:
    """Builds Python data from a composed document, with the mark of every key and value.

    Scalars keep their source text whatever YAML resolves them to, as Go's yaml does for string
    fields: ``tags: [1.10]`` means the tag "1.10", ``architecture: 386`` the string "386".
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.key_marks: dict[Loc, yaml.Mark] = {}
        self.value_marks: dict[Loc, yaml.Mark] = {}
        self.mapping_paths: dict[int, Loc] = {}
        self.problems: list[SpecProblem] = []
        # Paths whose value could not be built: validation errors there only repeat the problem.
        self.broken: set[Loc] = set()
        # Values built and mappings merged, counted against _MAX_VALUES.
        self.count = 0
        self._too_many = False
        self._too_deep = False

    def problem(self, mark: yaml.Mark, message: str) -> None:
        self.problems.append(SpecProblem(self.filename, mark.line + 1, mark.column + 1, message))

    def _within_limits(self, mark: yaml.Mark, path: Loc, depth: int, through: str) -> bool:
        """Count one value (or one merged mapping) at ``depth``; False, reported once, past a limit.

        Once past the count, every later call fails at once: nothing more is built or merged.
        """
        self.count += 1
        if self.count > _MAX_VALUES:
            if not self._too_many:
                self._too_many = True
                self.problem(mark, _TOO_MANY)
        elif depth > _MAX_DEPTH:  # through aliases or merges: their events nest no deeper
            if not self._too_deep:
                self._too_deep = True
                self.problem(mark, f"{_TOO_DEEP} (through {through})")
        else:
            return True
        self.broken.add(path)
        return False

    def build(self, node: yaml.Node, path: Loc, active: tuple[yaml.Node, ...] = ()) -> Any:
        self.value_marks[path] = node.start_mark
        if not self._within_limits(node.start_mark, path, len(path), "aliases"):
            return None
        if any(node is a for a in active):
            self.problem(node.start_mark, "this alias refers to the node that contains it")
            self.broken.add(path)
            return None
        if isinstance(node, yaml.ScalarNode):
            if self._not_text(node):
                self.broken.add(path)
                return None
            return None if node.tag == _NULL_TAG else node.value
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, (*path, index), (*active, node))
                for index, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        result = self.mapping(node, path, (*active, node))
        self.mapping_paths[id(result)] = path
        return result

    def mapping(
        self, node: yaml.MappingNode, path: Loc, active: tuple[yaml.Node, ...]
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # Merged keys (<<: *anchor) first, so that the mapping's own keys override them.
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node):
                    if any(source is a for a in active):
                        self.problem(value_node.start_mark, "this merge refers to its own mapping")
                        continue
                    # A merged mapping counts as a value, and each merge as a level (``active``
                    # holds the enclosing collections and merged mappings): merges of merges of
                    # empty mappings build no value at all, yet can expand without end.
                    depth = len(active) + 1
                    if not self._within_limits(value_node.start_mark, path, depth, "merge keys"):
                        return result
                    result.update(self.mapping(source, path, (*active, source)))
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node)
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.problem(
                    key_node.start_mark,
                    f"key '{key}' appears twice in this mapping, on lines {first_line[key]} "
                    f"and {line}: keep one (YAML would silently use the last)",
                )
                continue
            first_line[key] = line
            key_path = (*path, key)
            self.key_marks[key_path] = key_node.start_mark
            result[key] = self.build(value_node, key_path, active)
        return result

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(item, yaml.MappingNode) for item in node.value
        ):
            return list(node.value)
        self.problem(node.start_mark, "'<<' merges a mapping, or a list of mappings (e.g. *name)")
        return []

    def _not_text(self, node: yaml.ScalarNode) -> bool:
        """Report a scalar holding a lone surrogate, which a "\\uD83D" escape can produce.

        It is not text: it cannot be encoded (in a list's JSON, in a message), so it must not
        get past loading.
        """
        found = _SURROGATE.search(node.value)
        if found is None:
            return False
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        self.problem(
            node.start_mark,
            f"{shown!r} holds U+{ord(found.group()):04X}, half of a UTF-16 surrogate pair "
            "(from a '\\u' escape), which is not a character: write the character itself, or "
            "escape it whole with '\\U' and 8 hex digits",
        )
        return True

    def key(self, node: yaml.Node) -> Optional[str]:
        if isinstance(node, yaml.ScalarNode):
            if self._not_text(node):
                return None
            if node.tag == _STR_TAG:
                return str(node.value)
            kind = _SCALAR_KINDS.get(node.tag, f"of type {node.tag}")
            if node.tag == _NULL_TAG:
                self.problem(node.start_mark, "a key is empty: give it a name")
            else:
                self.problem(
                    node.start_mark,
                    f"key {node.value!r} is {kind}, not a string: quote it ('{node.value}')",
                )
            return None
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        self.problem(node.start_mark, f"a key must be a plain string, not {kind}")
        return None


# --------------------------------------------------------------------------------------------
# pydantic errors in plain words


@dataclass
class _Marks:
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
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    # "arch" is too short for difflib to match "architecture", but clearly meant it.
    prefixed = [k for k in known if len(key) >= 2 and k.startswith(key.lower())]
    return prefixed[0] if prefixed else None


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
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


def _validation_problems(
    exc: ValidationError,
    filename: str,
    marks: Optional[_Marks],
    *,
    skip: Collection[Loc] = (),
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []

    def add(loc: Loc, message: str, how: str = "value") -> None:
        if marks is None:
            problems.append(_PathProblem(filename, 0, 0, message))
            return
        mark = _position(marks, loc, how)
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
                    f"manifests[{later}]{_line_note(marks, later)} has platform {text}, "
                    f"as manifests[{earlier}]{_line_note(marks, earlier)} has",
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
            add(loc, _prefixed(parent, _unknown_key(key, known)), how="key")
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


def _line_note(marks: Optional[_Marks], index: int) -> str:
    if marks is None:
        return ""
    mark = marks.values.get(("manifests", index))
    return "" if mark is None else f" (line {mark.line + 1})"


def _position(marks: _Marks, loc: Loc, how: str) -> yaml.Mark:
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


# --------------------------------------------------------------------------------------------
# YAML syntax errors in plain words

_KEY_LINE = re.compile(
    r"(?P<lead>[ ]*(?:-[ ]+)*)"
    r"(?P<key>\"[^\"]*\"|'[^']*'|[^\s#\"'\[\]{},&*!|>%@`][^#]*?)"
    r"[ ]*(?P<colon>:)(?=[ ]|$)[ ]*(?P<value>.*)$"
)
_OPENS_BLOCK = re.compile(r"(?:(?:[&!]\S*)\s*)*(?:[|>][-+0-9]*\s*)?(?:#.*)?\Z")


@dataclass(frozen=True)
class _KeyLine:
    number: int  # 1-based
    key: str
    column: int
    dash: bool
    value: str
    colon: int

    @property
    def has_value(self) -> bool:
        return not _OPENS_BLOCK.match(self.value)


def _key_line(lines: list[str], index: int) -> Optional[_KeyLine]:
    match = _KEY_LINE.match(lines[index])
    if match is None:
        return None
    lead = match.group("lead")
    return _KeyLine(
        number=index + 1,
        key=match.group("key"),
        column=len(lead),
        dash="-" in lead,
        value=match.group("value").strip(),
        colon=match.start("colon"),
    )


def _significant(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _line_up(lines: list[str], index: int, *, deeper_needs_value: bool) -> Optional[str]:
    """Explain a key whose indentation lines up with no key above it, or None.

    The candidates are the nearest key above and the keys of the mappings enclosing it (each
    less indented than the last); the nearest in indentation wins, the nearest in lines on a tie.
    """
    current = _key_line(lines, index)
    if current is None:
        return None
    candidates: list[_KeyLine] = []
    for above in range(index - 1, -1, -1):
        if lines[above].startswith(("---", "...")):
            break
        if not _significant(lines[above]):
            continue
        found = _key_line(lines, above)
        if found is None:
            continue
        if not candidates or found.column < candidates[-1].column:
            candidates.append(found)
        if found.column == 0:
            break
    if not candidates:
        return None
    best = min(candidates, key=lambda c: abs(c.column - current.column))
    if best.column == current.column:
        return None
    if current.column > best.column and deeper_needs_value and not best.has_value:
        return None  # nesting under a key without a value is fine: something else is wrong
    diff = current.column - best.column
    fix = f"remove {_plural(diff, 'space')}" if diff > 0 else f"add {_plural(-diff, 'space')}"
    what = "entry" if _in_list_entry(lines, best) else "mapping"
    message = (
        f"'{current.key}:' is indented {_plural(current.column, 'space')} but '{best.key}:' "
        f"above it (line {best.number}) is at {best.column}: keys of the same {what} must "
        f"line up ({fix})"
    )
    for other in candidates:
        if other is not best and abs(other.column - current.column) == abs(diff):
            other_diff = current.column - other.column
            verb = "remove" if other_diff > 0 else "add"
            message += (
                f", or {verb} {_plural(abs(other_diff), 'space')} to line it up with "
                f"'{other.key}:' (line {other.number})"
            )
    return message


def _in_list_entry(lines: list[str], key: _KeyLine) -> bool:
    """Whether ``key`` belongs to a mapping that is an item of a list ("- image: ...")."""
    if key.dash:
        return True
    for above in range(key.number - 2, -1, -1):
        if not _significant(lines[above]):
            continue
        found = _key_line(lines, above)
        indent = len(lines[above]) - len(lines[above].lstrip(" "))
        if found is not None and found.column == key.column:
            if found.dash:
                return True
            continue
        if (found.column if found is not None else indent) < key.column:
            return False
    return False


def _previous_significant(lines: list[str], index: int) -> Optional[int]:
    for above in range(index - 1, -1, -1):
        if _significant(lines[above]):
            return above
    return None


_QUOTE_START = re.compile(r"[ ]*(?:-[ ]+)*(?:[^\s#'\"][^#]*?:[ ]+)?(?P<quote>['\"])")


def _quote_end(text: str, quote: str) -> int:
    """Index just after the closing quote in ``text`` (which starts after the opening), or -1."""
    i = 0
    while i < len(text):
        char = text[i]
        if quote == '"' and char == "\\":
            i += 2
            continue
        if char == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return -1


def _unclosed_quote(lines: list[str], error_line: int) -> Optional[tuple[int, int, str, int]]:
    """A quote opened before ``error_line`` and closed only on a later line (or never).

    Returns (line index, column, quote, line index where it closes or -1).
    """
    for index in range(error_line - 1, -1, -1):
        line = lines[index]
        if line.startswith(("---", "...")):
            break
        match = _QUOTE_START.match(line)
        if match is None:
            continue
        column = match.start("quote")
        quote = match.group("quote")
        if _quote_end(line[column + 1 :], quote) >= 0:
            continue
        for later in range(index + 1, len(lines)):
            if _quote_end(lines[later], quote) >= 0:
                return (index, column, quote, later) if later <= error_line else None
        return index, column, quote, -1
    return None


def _char_at(lines: list[str], line: int, column: int) -> str:
    """The character at a mark, or "" when the mark is past the end (YAML marks end of stream)."""
    if 0 <= line < len(lines) and 0 <= column < len(lines[line]):
        return lines[line][column]
    return ""


def _flow_opener(
    lines: list[str], context_mark: yaml.Mark, mark: yaml.Mark
) -> Optional[tuple[int, int, str]]:
    """The '[' or '{' a flow-collection error is about: (line index, column, bracket), or None.

    The context mark is that bracket for "while parsing a flow sequence/mapping"; for "while
    parsing a flow node" it is where the missing node was expected (possibly the end of the
    stream), so the innermost bracket still open before the problem is found by scanning.
    """
    char = _char_at(lines, context_mark.line, context_mark.column)
    if char in ("[", "{"):
        return context_mark.line, context_mark.column, char
    stack: list[tuple[int, int, str]] = []
    for index in range(min(mark.line + 1, len(lines))):
        text = lines[index] if index < mark.line else lines[index][: mark.column]
        quote = ""
        column = 0
        while column < len(text):
            char = text[column]
            if quote:
                if char == "\\" and quote == '"':
                    column += 1
                elif char == quote:
                    quote = ""
            elif char in ("'", '"'):
                quote = char
            elif char == "#" and (column == 0 or text[column - 1] in " \t"):
                break
            elif char in ("[", "{"):
                stack.append((index, column, char))
            elif char in ("]", "}") and stack:
                stack.pop()
            column += 1
    return stack[-1] if stack else None


def _syntax_problem(text: str, filename: str, exc: yaml.YAMLError) -> SpecProblem:
    lines = text.splitlines() or [""]
    if isinstance(exc, ReaderError):
        before = text[: exc.position]
        line = before.count("\n")
        column = exc.position - (before.rfind("\n") + 1)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return SpecProblem(
            filename,
            line + 1,
            column + 1,
            f"the character U+{ord(char):04X} is not allowed in YAML: remove it",
        )
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return SpecProblem(filename, 1, 1, f"invalid YAML: {exc}")
    mark = exc.problem_mark
    line, column = mark.line, mark.column
    message, at = _explain(lines, exc)
    if at is not None:
        line, column = at
    return SpecProblem(filename, line + 1, column + 1, message)


def _explain(lines: list[str], exc: yaml.MarkedYAMLError) -> tuple[str, Optional[tuple[int, int]]]:
    """A plain-words message for a YAML error, and where to put it if not at the problem mark."""
    problem = exc.problem or ""
    context = exc.context or ""
    mark = exc.problem_mark
    assert mark is not None
    context_mark = exc.context_mark
    line = mark.line
    text = lines[line] if line < len(lines) else ""

    if context == "while scanning a quoted scalar" and context_mark is not None:
        quote = _char_at(lines, context_mark.line, context_mark.column) or '"'
        return (
            f"the quote {quote} opened here is never closed: add the closing {quote} at the end "
            "of the value",
            (context_mark.line, context_mark.column),
        )
    if "'\\t'" in problem:
        if not text[: mark.column].strip():
            return (
                f"line {line + 1} is indented with a tab: YAML allows only spaces "
                "for indentation (replace the tab with spaces)",
                None,
            )
        if text[: mark.column].rstrip("\t").endswith(":"):
            return "a tab follows ':': write a space instead (YAML allows no tabs here)", None
        return "a tab is not allowed here: use spaces", None
    cannot_start = re.match(r"found character '(.)' that cannot start any token", problem)
    if cannot_start:
        char = cannot_start.group(1)
        return f"a plain value cannot start with '{char}': quote the value (\"{char}...\")", None
    flow = None
    if context.startswith("while parsing a flow ") and context_mark is not None:
        flow = _flow_opener(lines, context_mark, mark)
    if flow is not None:
        # "while parsing a flow node" marks where a node was expected, not the opening bracket.
        open_line, open_column, opener = flow
        closer = "]" if opener == "[" else "}"
        variable = text.rfind("${", 0, mark.column + 1)
        if variable >= 0 or "${" in text:
            return (
                f"inside '{opener}...{closer}', a value with ${{VAR}} must be quoted "
                '("${VAR}"): YAML reads its braces as a mapping',
                (line, variable if variable >= 0 else text.index("${")),
            )
        got = re.search(r"but (?:got|found) '(.*)'$", problem)
        found = got.group(1) if got else ""
        if found in ("]", "}") and found != closer:
            return (
                f"'{opener}' (line {open_line + 1}) is closed with '{found}': use '{closer}'",
                None,
            )
        if found == "<stream end>" or line > open_line:
            return (
                f"'{opener}' opened here is never closed: add '{closer}' after the last item",
                (open_line, open_column),
            )
        return f"expected ',' or '{closer}' here: separate items with ', '", None
    if "found undefined alias" in problem:
        name = problem.rsplit(" ", 1)[-1].strip("'")
        return f"'*{name}' refers to no anchor: define '&{name}' before this point", None
    if "found duplicate anchor" in context and context_mark is not None:
        anchor = re.search(r"anchor '?([^';]*)'?", context)
        label = anchor.group(1) if anchor else "?"
        return (
            f"anchor '&{label}' is defined twice (first on line {context_mark.line + 1}): "
            "rename one",
            None,
        )

    quoted = _unclosed_quote(lines, line)
    if quoted is not None and not problem.startswith("found"):
        index, column, quote, closes = quoted
        if closes >= 0:
            return (
                f"the quote {quote} opened here is not closed on its line, so YAML read on to "
                f"line {closes + 1}: add the closing {quote} at the end of the value",
                (index, column),
            )

    if problem == "mapping values are not allowed here":
        own = _key_line(lines, line) if line < len(lines) else None
        if own is not None and own.colon < mark.column:
            value = own.value.replace('"', '\\"')
            return (
                f"the value of '{own.key}:' contains ': ', which YAML takes for another key: "
                f'quote the value ({own.key}: "{value}")',
                None,
            )
        lined_up = _line_up(lines, line, deeper_needs_value=True)
        if lined_up is not None:
            return lined_up, None
        previous = _previous_significant(lines, line)
        if own is not None and previous is not None and _key_line(lines, previous) is None:
            return (
                f"'{own.key}:' is indented under line {previous + 1}, which holds a plain value "
                f"({lines[previous].strip()!r}), not keys: a key cannot continue a value; line "
                f"'{own.key}:' up with the keys of its mapping",
                None,
            )
        key = f"'{own.key}:'" if own is not None else "a key"
        return (
            f"{key} cannot start here: check this line's indentation against the lines above, "
            "or quote the value if it contains ': '",
            None,
        )
    if problem.startswith("expected <block end>, but found"):
        if problem.endswith("'-'"):
            return (
                "a list item cannot go here, among 'key: value' lines: put the list under a key "
                "that has no value, indented",
                None,
            )
        lined_up = _line_up(lines, line, deeper_needs_value=False)
        if lined_up is not None:
            return lined_up, None
        return (
            "this line does not fit the structure above it: check its indentation",
            None,
        )
    if problem == "could not find expected ':'" and context_mark is not None:
        start = (lines[context_mark.line] if context_mark.line < len(lines) else "").strip()
        return (
            f"line {context_mark.line + 1} ({start!r}) is not a 'key: value' pair: add ':' after "
            "the key, or indent the line if it continues the value above",
            (context_mark.line, context_mark.column),
        )
    where = ""
    if context and context_mark is not None:
        where = f" ({context}, line {context_mark.line + 1} column {context_mark.column + 1})"
    return f"invalid YAML: {problem}{where}", None


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Document:
    spec: Optional[ManifestListSpec]
    problems: list[SpecProblem]
    notices: list[SpecProblem]
    values: int = 0  # values built and mappings merged, counted against _MAX_VALUES_IN_ALL


def load_spec_text(
    text: str, filename: str = CODE_FILENAME, *, env: Optional[Mapping[str, str]] = None
) -> list[ManifestListSpec]:
    """Load every manifest list of a YAML spec, one per document.

    ``filename`` names the text in messages; ``env`` (default: the process environment) gives
    the values of ``${VAR}`` in ``image``, ``tags`` and ``manifests[].image``.
    Raises :class:`SpecError` with every problem found.
    """
    if len(text) * 4 > MAX_SPEC_BYTES:  # else it cannot be too large: no need to encode it
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError([_too_large(data, filename)])
    variables: Mapping[str, str] = os.environ if env is None else env
    problems: list[SpecProblem] = []
    notices: list[SpecProblem] = []
    specs: list[ManifestListSpec] = []
    documents = 0
    values = 0
    try:
        for node in yaml.compose_all(text, Loader=_SpecLoader):
            if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
                continue  # an empty document, e.g. after a trailing '---'
            documents += 1
            document = _load_document(node, filename, variables)
            problems.extend(document.problems)
            notices.extend(document.notices)
            if document.spec is not None:
                specs.append(document.spec)
            values += document.values
            if values > _MAX_VALUES_IN_ALL:
                start = node.start_mark
                problems.append(
                    SpecProblem(filename, start.line + 1, start.column + 1, _TOO_MANY_IN_ALL)
                )
                break
    except yaml.YAMLError as exc:
        problems.append(_syntax_problem(text, filename, exc))
    except _TooDeep as exc:
        line, column = (exc.mark.line, exc.mark.column) if exc.mark is not None else (0, 0)
        raise SpecError([SpecProblem(filename, line + 1, column + 1, _TOO_DEEP)]) from None
    if not documents and not problems:
        problems.append(
            SpecProblem(
                filename,
                1,
                1,
                "the spec is empty: it needs 'image' (the list to push) and 'manifests' "
                "(one image per platform)",
            )
        )
    if problems:
        unique = dict.fromkeys(problems)
        raise SpecError(sorted(unique, key=lambda p: (p.line, p.column)))
    for notice in notices:
        log.info("%s", notice)
    return specs


class _TooDeep(Exception):
    def __init__(self, mark: Optional[yaml.Mark]) -> None:
        super().__init__(_TOO_DEEP)
        self.mark = mark


class _SpecLoader(yaml.SafeLoader):
    """A SafeLoader whose composer stops where the text nests deeper than any spec does.

    PyYAML's composer recurses once per level, and would raise RecursionError.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Optional[yaml.Node], index: int) -> Optional[yaml.Node]:
        if not self.check_event(yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_spec_file(
    path: Union[str, os.PathLike[str]], *, env: Optional[Mapping[str, str]] = None
) -> list[ManifestListSpec]:
    """Load a spec file (see :func:`load_spec_text`). OSError if it cannot be read.

    A FIFO (a shell's ``<(...)``) is read as a file is. At most :data:`MAX_SPEC_BYTES` are read:
    past them, a :class:`SpecError` says so.
    """
    name = os.fspath(path)
    with open(name, "rb") as file:
        data = _read_at_most(file, MAX_SPEC_BYTES + 1)
    return _load_bytes(data, name, env)


def load_spec_stream(
    stream: Union[IO[bytes], IO[str]],
    filename: str = "<stdin>",
    *,
    env: Optional[Mapping[str, str]] = None,
) -> list[ManifestListSpec]:
    """Load a spec from an open binary or text stream, e.g. ``sys.stdin`` (see load_spec_text).

    Reads at most :data:`MAX_SPEC_BYTES` (and a byte, to know there is more), never to the end of
    a stream that has none. A text stream is read as it decodes (``sys.stdin`` may have given a
    ``--password-stdin`` line first) and counted in UTF-8 bytes.
    """
    try:
        data = _read_at_most(stream, MAX_SPEC_BYTES + 1)
    except UnicodeDecodeError:  # a text stream decoding strictly: where, it does not say
        raise SpecError(
            [SpecProblem(filename, 1, 1, "not UTF-8 text: save the file as UTF-8")]
        ) from None
    if isinstance(data, str):
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError([_too_large(data.encode("utf-8", "surrogateescape"), filename)])
        try:
            # Text streams decode strictly, or with surrogateescape (a POSIX locale): this gives
            # the bytes back, so that a byte that is not UTF-8 is reported at its position.
            data = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return load_spec_text(data, filename, env=env)
    return _load_bytes(data, filename, env)


def _read_at_most(stream: Union[IO[bytes], IO[str]], size: int) -> Any:
    """Up to ``size`` bytes (or characters) of ``stream``: a raw stream or a pipe may give less
    than asked for at each read."""
    chunks: list[Any] = []
    total = 0
    while total < size:
        chunk = stream.read(size - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if not chunks:
        return stream.read(0)  # b"" or "", as the stream is
    return chunks[0][:0].join(chunks)


def _too_large(data: bytes, filename: str) -> SpecProblem:
    """The problem of a spec past :data:`MAX_SPEC_BYTES`, at the first byte past it."""
    line = data.count(b"\n", 0, MAX_SPEC_BYTES) + 1
    column = MAX_SPEC_BYTES - (data.rfind(b"\n", 0, MAX_SPEC_BYTES) + 1) + 1
    return SpecProblem(filename, line, column, _TOO_LARGE)


def _load_bytes(data: bytes, name: str, env: Optional[Mapping[str, str]]) -> list[ManifestListSpec]:
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([_too_large(data, name)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            [
                SpecProblem(
                    name,
                    line,
                    column,
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8",
                )
            ]
        ) from None
    return load_spec_text(text, name, env=env)


def _load_document(node: yaml.Node, filename: str, env: Mapping[str, str]) -> _Document:
    start = node.start_mark
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the value {node.value!r}"
        hint = ""
        if isinstance(node, yaml.SequenceNode):
            hint = " (for several lists, write one document each, separated by '---')"
        message = (
            f"the document is {kind}, not a mapping: a spec is a mapping with 'image' and "
            f"'manifests'{hint}"
        )
        return _Document(
            None, [SpecProblem(filename, start.line + 1, start.column + 1, message)], []
        )

    builder = _Builder(filename)
    data = builder.build(node, ())
    _drop_extension_keys(data)
    if "origin" in data:  # a field for code, not a key of the file
        mark = builder.key_marks[("origin",)]
        builder.problem(mark, _unknown_key("origin", LIST_KEYS))
        del data["origin"]
    marks = _Marks(builder.key_marks, builder.value_marks)
    problems = list(builder.problems)
    context = _LoadContext(env=env)
    validator = ManifestListSpec.__pydantic_validator__
    try:
        spec = cast(
            ManifestListSpec, validator.validate_python(data, context={_CONTEXT_KEY: context})
        )
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, filename, marks, skip=builder.broken))
        problems.extend(_duplicates_among_valid(data, env, filename, marks))
        return _Document(None, problems, [], builder.count)
    if problems:
        return _Document(None, problems, [], builder.count)

    spec = spec.model_copy(update={"origin": f"{filename}:{start.line + 1}"})
    notices: list[SpecProblem] = []
    found: list[tuple[Loc, str]] = list(context.notices)
    for mapping_id, items in context.platform_notices.items():
        path = builder.mapping_paths.get(mapping_id)
        if path is None:
            continue
        for key, message in items:
            found.append(((*path, key) if key else path, message))
    for loc, message in found:
        mark = _position(marks, loc, "value")
        notices.append(SpecProblem(filename, mark.line + 1, mark.column + 1, message))
    notices.sort(key=lambda p: (p.line, p.column))
    return _Document(spec, [], notices, builder.count)


def _drop_extension_keys(data: dict[str, Any]) -> None:
    """Drop keys starting with "x-" from the spec's own mappings.

    As in Compose files, they are a place for YAML anchors (``x-linux: &linux {os: linux}``)
    that the spec itself does not read.
    """
    mappings: list[dict[str, Any]] = [data]
    manifests = data.get("manifests")
    for entry in manifests if isinstance(manifests, list) else []:
        if isinstance(entry, dict):
            mappings.append(entry)
            if isinstance(entry.get("platform"), dict):
                mappings.append(entry["platform"])
    for mapping in mappings:
        for key in [k for k in mapping if k.startswith("x-")]:
            del mapping[key]


def _duplicates_among_valid(
    data: dict[str, Any], env: Mapping[str, str], filename: str, marks: _Marks
) -> list[SpecProblem]:
    """Duplicate platforms among the entries that are valid, when others are not.

    The list's own check runs only once every entry is valid; this one lets a single run report
    a duplicate along with the other problems.
    """
    manifests = data.get("manifests")
    if not isinstance(manifests, list):
        return []
    validator = ManifestEntrySpec.__pydantic_validator__
    platforms: list[tuple[int, Optional[Platform]]] = []
    for index, raw in enumerate(manifests):
        try:
            entry = validator.validate_python(raw, context={_CONTEXT_KEY: _LoadContext(env=env)})
        except ValidationError:
            continue
        platforms.append((index, cast(ManifestEntrySpec, entry).platform))
    problems: list[SpecProblem] = []
    for later, earlier, text in _duplicate_platforms(platforms):
        mark = _position(marks, ("manifests", later, "platform"), "key")
        problems.append(
            SpecProblem(
                filename,
                mark.line + 1,
                mark.column + 1,
                f"manifests[{later}]{_line_note(marks, later)} has platform {text}, "
                f"as manifests[{earlier}]{_line_note(marks, earlier)} has",
            )
        )
    return problems
