"""Platforms (os/architecture/variant): the model, validation against Go's list, aliases.

Names are Go's (``go tool dist list``), because that is what registries, docker and containerd
match on. Aliases that people copy from ``uname -m`` or Debian (aarch64, x86_64, armhf, ...) are
rewritten with a notice; anything else unknown is an error that suggests the likely intent.
Nothing is added or dropped otherwise (arm64 stays without variant, arm64/v8 stays v8), so that
the list we build is byte for byte what manifest-tool builds from the same spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from ._records import record
from .errors import InvalidPlatformError

#: GOOS values of ``go tool dist list``.
KNOWN_OS: frozenset[str] = frozenset(
    {
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "illumos",
        "ios",
        "js",
        "linux",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
    }
)

#: GOARCH values of ``go tool dist list``.
KNOWN_ARCHITECTURES: frozenset[str] = frozenset(
    {
        "386",
        "amd64",
        "arm",
        "arm64",
        "loong64",
        "mips",
        "mips64",
        "mips64le",
        "mipsle",
        "ppc64",
        "ppc64le",
        "riscv64",
        "s390x",
        "wasm",
    }
)

#: Variants per architecture (GOARM, GOARM64, GOAMD64, GOPPC64, GORISCV64, GO386 levels).
#: An architecture missing here takes no variant.
VARIANTS: Mapping[str, tuple[str, ...]] = {
    "arm": ("v5", "v6", "v7", "v8"),
    "arm64": (
        "v8",
        *(f"v8.{minor}" for minor in range(10)),
        "v9",
        *(f"v9.{minor}" for minor in range(6)),
    ),
    "amd64": ("v1", "v2", "v3", "v4"),
    "ppc64le": ("power8", "power9", "power10"),
    "riscv64": ("rva20u64", "rva22u64", "rva23u64"),
    "386": ("sse2", "softfloat"),
}

#: Other names for an architecture: name -> (architecture, variant it implies or "").
ARCHITECTURE_ALIASES: Mapping[str, tuple[str, str]] = {
    "aarch64": ("arm64", ""),
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "x86": ("386", ""),
}

# Only ever suggested, never applied: names that are not aliases but show what was meant.
_OS_HINTS: Mapping[str, str] = {
    "macos": "darwin",
    "osx": "darwin",
    "mac": "darwin",
    "win": "windows",
    "win32": "windows",
    "win64": "windows",
    "wasi": "wasip1",
    "sunos": "solaris",
}
_ARCHITECTURE_PREFIX_HINTS: Mapping[str, str] = {"arm32": "arm"}


@record(frozen=True)
class Platform:
    """What a manifest list entry runs on; the fields of the OCI ``platform`` object."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Callers may hand in lists (YAML, JSON); tuples keep the platform hashable.
        for name in ("os_features", "features"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, _strings(value))

    def to_dict(self) -> dict[str, object]:
        """The OCI/Docker JSON object, in Go's field order.

        ``architecture`` and ``os`` are always present (Go's struct has no omitempty on them);
        the others only when non-empty.
        """
        data: dict[str, object] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            data["os.version"] = self.os_version
        if self.os_features:
            data["os.features"] = list(self.os_features)
        if self.variant:
            data["variant"] = self.variant
        if self.features:
            data["features"] = list(self.features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Platform:
        """Read an OCI platform object or image config, as is (no validation, no aliases).

        Registries carry values we would refuse as input (BuildKit's ``unknown/unknown``
        attestations), and what is already pushed must be reproduced unchanged.
        """
        return cls(
            os=_string(data.get("os")),
            architecture=_string(data.get("architecture")),
            variant=_string(data.get("variant")),
            os_version=_string(data.get("os.version")),
            os_features=_strings(data.get("os.features")),
            features=_strings(data.get("features")),
        )

    def key(self) -> tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]:
        """Identity for duplicate detection: two entries with equal keys are the same platform."""
        return (
            self.os,
            self.architecture,
            self.variant,
            self.os_version,
            tuple(sorted(self.os_features)),
            tuple(sorted(self.features)),
        )

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f" os.version {self.os_version}"
        return text


def normalize_platform(
    os: str,
    architecture: str,
    variant: str = "",
    *,
    os_version: str = "",
    os_features: Sequence[str] = (),
    features: Sequence[str] = (),
) -> tuple[Platform, list[str]]:
    """Validate a platform and apply aliases.

    Returns the platform and the notices of what was rewritten ("architecture 'aarch64' is
    'arm64'"). Raises InvalidPlatformError naming the field at fault, with a suggestion.
    """
    notices: list[str] = []
    # YAML hands over numbers for values like "variant: 8"; anything else is not a name.
    os = _scalar(os, "os")
    architecture = _scalar(architecture, "architecture")
    variant = _scalar(variant, "variant")
    # An empty os is a partial platform, completed later from the image's config.
    os_name = _normalize_os(os, notices) if os else ""
    arch, implied_variant = _normalize_architecture(architecture, notices)
    variant_name = _normalize_variant(arch, variant, notices) if variant else ""
    if implied_variant:
        if variant_name and variant_name != implied_variant:
            raise InvalidPlatformError(
                f"architecture {architecture!r} means {arch}/{implied_variant}, but the variant "
                f"is {variant!r}: write architecture {arch!r} with variant {variant_name!r}",
                field="variant",
            )
        variant_name = implied_variant
    platform = Platform(
        os=os_name,
        architecture=arch,
        variant=variant_name,
        os_version=_scalar(os_version, "os.version"),
        os_features=_strings(os_features),
        features=_strings(features),
    )
    return platform, notices


def parse_platform(text: str) -> tuple[Platform, list[str]]:
    """Parse ``os/architecture[/variant]`` (``linux/arm/v7``), as :func:`normalize_platform`."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidPlatformError(
            f"platform {text!r} is not OS/ARCHITECTURE[/VARIANT], e.g. linux/amd64 or linux/arm/v7"
        )
    return normalize_platform(*parts)


def _normalize_os(value: str, notices: list[str]) -> str:
    if not value:
        raise InvalidPlatformError("os is empty: give one, e.g. linux", field="os")
    lowered = value.lower()
    if lowered in KNOWN_OS:
        if lowered != value:
            notices.append(f"os {value!r} is {lowered!r}")
        return lowered
    if lowered in KNOWN_ARCHITECTURES or lowered in ARCHITECTURE_ALIASES:
        hint = f"{value!r} is an architecture, not an os (e.g. linux)"
    else:
        guess = _OS_HINTS.get(lowered) or _close_match(lowered, KNOWN_OS)
        hint = f"did you mean {guess!r}?" if guess else _known("oses", KNOWN_OS)
    raise InvalidPlatformError(f"os {value!r} is not an os: {hint}", field="os")


def _normalize_architecture(value: str, notices: list[str]) -> tuple[str, str]:
    """The Go architecture for ``value`` and the variant it implies (armhf is arm/v7)."""
    if not value:
        raise InvalidPlatformError(
            "architecture is empty: give one, e.g. amd64 or arm64", field="architecture"
        )
    lowered = value.lower()
    if lowered in KNOWN_ARCHITECTURES:
        if lowered != value:
            notices.append(f"architecture {value!r} is {lowered!r}")
        return lowered, ""
    alias = ARCHITECTURE_ALIASES.get(lowered)
    if alias is not None:
        arch, implied = alias
        with_variant = f" with variant {implied!r}" if implied else ""
        notices.append(f"architecture {value!r} is {arch!r}{with_variant}")
        return arch, implied
    raise InvalidPlatformError(
        f"architecture {value!r} is not an architecture: {_architecture_hint(lowered)}",
        field="architecture",
    )


def _architecture_hint(value: str) -> str:
    split = _split_architecture_variant(value)
    if split is not None:
        return f"did you mean architecture {split[0]!r} with variant {split[1]!r}?"
    if value in KNOWN_OS:
        return f"{value!r} is an os, not an architecture (e.g. amd64)"
    names = sorted(KNOWN_ARCHITECTURES | set(ARCHITECTURE_ALIASES))
    guess = _close_match(value, names)
    if guess is None:
        return _known("architectures", KNOWN_ARCHITECTURES)
    return f"did you mean {_resolve_architecture(guess)!r}?"


def _split_architecture_variant(value: str) -> Optional[tuple[str, str]]:
    """``arm64v8`` -> (arm64, v8), ``arm32v7`` -> (arm, v7): a variant glued to the name."""
    prefixes = sorted(
        [*KNOWN_ARCHITECTURES, *ARCHITECTURE_ALIASES, *_ARCHITECTURE_PREFIX_HINTS],
        key=len,
        reverse=True,
    )
    for prefix in prefixes:
        if not value.startswith(prefix) or value == prefix:
            continue
        arch = _resolve_architecture(prefix)
        rest = value[len(prefix) :].lstrip("-_/")
        for candidate in (rest, rest[:-1] if rest.endswith("l") else rest):  # armv7l
            variant = _match_variant(arch, candidate)
            if variant:
                return arch, variant
    return None


def _resolve_architecture(name: str) -> str:
    if name in ARCHITECTURE_ALIASES:
        return ARCHITECTURE_ALIASES[name][0]
    return _ARCHITECTURE_PREFIX_HINTS.get(name, name)


def _normalize_variant(arch: str, value: str, notices: list[str]) -> str:
    known = VARIANTS.get(arch, ())
    if not known:
        raise InvalidPlatformError(
            f"variant {value!r} is not a variant of {arch}: {arch} has no variants, "
            "remove the variant",
            field="variant",
        )
    variant = _match_variant(arch, value)
    if variant:
        if variant != value:
            notices.append(f"variant {value!r} is {variant!r}")
        return variant
    guess = _close_match(value.lower(), known)
    hint = f"did you mean {guess!r}?" if guess else f"known variants: {', '.join(known)}"
    raise InvalidPlatformError(
        f"variant {value!r} is not a variant of {arch}: {hint}", field="variant"
    )


def _match_variant(arch: str, value: str) -> str:
    """The known variant of ``arch`` that ``value`` spells ("8" and "V8" are "v8"), or ""."""
    known = VARIANTS.get(arch, ())
    lowered = value.lower()
    for candidate in (lowered, f"v{lowered}", f"power{lowered}", lowered.removeprefix(arch)):
        if candidate in known:
            return candidate
    return ""


def _close_match(value: str, choices: Iterable[str]) -> Optional[str]:
    import difflib  # here: only a value to correct needs it (start-up)

    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _known(noun: str, names: Iterable[str]) -> str:
    return f"known {noun}: {', '.join(sorted(names))}"


def _scalar(value: object, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidPlatformError(
        f"{field} must be a string, not {type(value).__name__} ({value!r})", field=field
    )


def _string(value: object) -> str:
    return "" if value is None else str(value)


def _strings(values: object) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        return (values,)
    if isinstance(values, Iterable):
        return tuple(str(v) for v in values)
    return (str(values),)
