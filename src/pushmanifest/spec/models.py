"""The spec's pydantic models, and the validators that expand ``${VAR}`` and normalize values.

While loading YAML, validation runs with a :class:`LoadContext` (the environment; notices to
place at positions). Models built in code run without one: no expansion, notices logged as is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import field
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, cast

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

from .._records import record
from ..errors import InvalidPlatformError, InvalidReferenceError, SpecError
from ..manifest import is_media_type
from ..platform import Platform, normalize_platform, parse_platform
from ..reference import LayoutReference, Reference, SourceImage, is_layout_text
from .problems import CODE_FILENAME, Loc, validation_problems
from .variables import expand

__all__ = [
    "CONTEXT_KEY",
    "LoadContext",
    "ManifestEntrySpec",
    "ManifestListSpec",
    "PlatformSpec",
    "duplicate_platforms",
    "oci_only_field",
]

log = logging.getLogger("pushmanifest")

#: What a run may push: the list's format (as --type).
ListTypeName = Literal["auto", "docker", "oci"]

CONTEXT_KEY = "pushmanifest.spec"


# --------------------------------------------------------------------------------------------
# Validation context: present only while loading YAML


@record
class LoadContext:
    env: Mapping[str, str]
    # Notices at a fixed path (the target's default tag).
    notices: list[tuple[Loc, str]] = field(default_factory=list)
    # Platform notices, keyed by id() of the raw mapping they came from: a platform validator
    # does not know where in the document it is, but the loader knows where each mapping was.
    platform_notices: dict[int, list[tuple[Optional[str], str]]] = field(default_factory=dict)


def _load_context(info: ValidationInfo) -> Optional[LoadContext]:
    context = info.context
    if isinstance(context, dict):
        found = context.get(CONTEXT_KEY)
        if isinstance(found, LoadContext):
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
        return expand(value, context.env)
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


def _source_reference(value: Any, info: ValidationInfo) -> SourceImage:
    if isinstance(value, LayoutReference):
        return value
    if isinstance(value, str) and is_layout_text(value):  # oci:PATH[:TAG], a layout on disk
        text = _expanded(value, info)
        try:
            return LayoutReference.parse(text)
        except InvalidReferenceError as exc:
            raise _problem_error(f"{exc}{_from_note(value, text)}") from None
    return _parse_reference(value, info)[0]


def _subject_reference(value: Any, info: ValidationInfo) -> Reference:
    if isinstance(value, str) and is_layout_text(value):
        raise _problem_error(
            "a subject is a manifest in a registry (IMAGE[:TAG|@DIGEST]), not an OCI layout"
        )
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


def _media_type(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise _not_text_error()
    text = _expanded(value, info)
    if not is_media_type(text):
        raise _problem_error(
            f"{text!r} is not a media type (TYPE/SUBTYPE, e.g. "
            f"application/vnd.example.sbom.v1+json){_from_note(value, text)}"
        )
    return text


def _platform_text(value: Any, info: ValidationInfo) -> Platform:
    if isinstance(value, Platform):
        return value
    if not isinstance(value, str):
        raise _not_text_error()
    try:
        platform, notices = parse_platform(value)
    except InvalidPlatformError as exc:
        raise _problem_error(str(exc)) from None
    for notice in notices:
        log.info("platform %s: %s", value, notice)
    return platform


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


# pydantic reads the signature of every validator, serializer and default factory; a builtin's
# (``str``, ``dict``, ``list``) comes from its text signature, parsed with the tokenize module,
# whose regexes are compiled for it: functions of ours instead spare a push's start-up that.


def _platform_str(value: Platform) -> str:
    return str(value)


def _no_annotations() -> dict[str, str]:
    return {}


def _no_tags() -> list[str]:
    return []


def _entry_platform(value: Optional[PlatformSpec]) -> Optional[Platform]:
    return None if value is None else value.platform


def _reference_text(value: SourceImage) -> str:
    return str(value)


def _serialize_platform(value: Optional[Platform]) -> Optional[dict[str, object]]:
    return None if value is None else value.to_dict()


if TYPE_CHECKING:
    SourceReference: TypeAlias = SourceImage
    TargetReference: TypeAlias = Reference
    SubjectReference: TypeAlias = Reference
    TagText: TypeAlias = str
    PlatformField: TypeAlias = Optional[Platform]
    MediaTypeText: TypeAlias = str
    PlatformText: TypeAlias = Platform
else:
    # At run time the validated type is Any: a PlainValidator does all the validating, and
    # naming our dataclasses here would make pydantic build a schema for each of them that
    # nothing uses (a third of these models' cost, every start-up).
    SourceReference = Annotated[
        Any,
        PlainValidator(_source_reference),
        PlainSerializer(_reference_text, return_type=str),
    ]
    SubjectReference = Annotated[
        Any,
        PlainValidator(_subject_reference),
        PlainSerializer(_reference_text, return_type=str),
    ]
    TargetReference = Annotated[
        Any,
        PlainValidator(_target_reference),
        PlainSerializer(_reference_text, return_type=str),
    ]
    TagText = Annotated[str, PlainValidator(_tag)]
    MediaTypeText = Annotated[str, PlainValidator(_media_type)]
    PlatformText = Annotated[
        Any, PlainValidator(_platform_text), PlainSerializer(_platform_str, return_type=str)
    ]


# --------------------------------------------------------------------------------------------
# Models


class _SpecModel(BaseModel):
    """Turns pydantic's ValidationError into SpecError for models built in code."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise SpecError(validation_problems(exc, CODE_FILENAME, None)) from None

    # Tells pydantic this __init__ only wraps the base one. Without it pydantic would call it for
    # nested models too, without the validation context: no ${VAR} expansion, no positions.
    # (RootModel marks its __init__ the same way.)
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise SpecError(validation_problems(exc, CODE_FILENAME, None)) from None


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
    annotations: dict[str, str] = Field(default_factory=_no_annotations)
    #: For a list as a source: keep only these platforms (and their attestations).
    platforms: Optional[list[PlatformText]] = None

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> Self:
        if self.platforms is not None and self.platform is not None:
            raise _problem_error(
                "give 'platform' (one image of a list) or 'platforms' (a filter of a list's "
                "entries), not both",
                key="platforms",
            )
        if self.platforms is not None:
            if not self.platforms:
                raise _problem_error(
                    "'platforms' is empty: name the platforms to keep, e.g. [linux/amd64]",
                    key="platforms",
                )
            pairs = duplicate_platforms(list(enumerate(self.platforms)))
            if pairs:
                raise _problem_error(f"platform {pairs[0][2]} is given twice", key="platforms")
        return self


class ManifestListSpec(_SpecModel):
    """One manifest list to push: the target, extra tags, and its entries."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    image: TargetReference
    tags: list[TagText] = Field(default_factory=_no_tags)
    #: The list's format (as --type; None: the run's). An explicit --type other than auto wins.
    list_type: Optional[ListTypeName] = Field(None, alias="type")
    #: OCI 1.1 fields of an index: the artifact's media type, and the manifest it refers to
    #: (an image reference, resolved with a HEAD before anything is written).
    artifact_type: Optional[MediaTypeText] = Field(None, alias="artifactType")
    subject: Optional[SubjectReference] = None
    annotations: dict[str, str] = Field(default_factory=_no_annotations)
    manifests: list[ManifestEntrySpec]
    origin: str = ""
    #: Where keys were in the file (loc -> "FILE:LINE:COL"), for errors found at run time.
    _positions: dict[Loc, str] = PrivateAttr(default_factory=dict)

    def only_manifests(self, indices: list[int]) -> ManifestListSpec:
        """This spec with only the entries at ``indices`` (positions follow their entries)."""
        new_index = {old: new for new, old in enumerate(indices)}
        narrowed = self.model_copy(update={"manifests": [self.manifests[i] for i in indices]})
        narrowed._positions = {
            (loc[0], new_index[loc[1]], *loc[2:])
            if loc[0] == "manifests" and len(loc) > 1 and isinstance(loc[1], int)
            else loc: text
            for loc, text in self._positions.items()
            if not (loc[0] == "manifests" and len(loc) > 1 and loc[1] not in new_index)
        }
        return narrowed

    def where(self, *loc: Any) -> str:
        """``FILE:LINE:COL`` of a key of this spec (the document's line, or the target, when
        it was built in code)."""
        return self._positions.get(loc) or self.origin or self.image.familiar()

    @field_validator("manifests")
    @classmethod
    def _not_empty(cls, value: list[ManifestEntrySpec]) -> list[ManifestEntrySpec]:
        if not value:
            raise _problem_error("manifests must not be empty: list at least one image", whole=True)
        return value

    @model_validator(mode="after")
    def _no_duplicate_platforms(self) -> Self:
        pairs = duplicate_platforms(list(enumerate(e.platform for e in self.manifests)))
        if pairs:
            message = "; ".join(
                f"manifests[{later}] has platform {text}, as manifests[{earlier}] has"
                for later, earlier, text in pairs
            )
            raise PydanticCustomError(
                "duplicate_platform", "{message}", {"message": message, "pairs": pairs}
            )
        return self

    @model_validator(mode="after")
    def _oci_fields_need_oci(self) -> Self:
        if self.list_type == "docker":
            problem = oci_only_field(self)
            if problem is not None:
                key, what = problem
                raise _problem_error(
                    f"{what} needs an OCI image index: a Docker manifest list (type: docker) "
                    "cannot carry it; use type: oci",
                    key=str(key[0]) if len(key) == 1 else "type",
                )
        return self


def oci_only_field(
    spec: ManifestListSpec, *, with_annotations: bool = True
) -> Optional[tuple[Loc, str]]:
    """The first field of ``spec`` that only an OCI index can carry: (its loc, what it is)."""
    if spec.artifact_type:
        return ("artifactType",), "artifactType"
    if spec.subject is not None:
        return ("subject",), "subject"
    if with_annotations:
        if spec.annotations:
            return ("annotations",), "annotations"
        for index, entry in enumerate(spec.manifests):
            if entry.annotations:
                return ("manifests", index, "annotations"), f"manifests[{index}].annotations"
    return None


def duplicate_platforms(
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
