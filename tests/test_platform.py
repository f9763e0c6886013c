from __future__ import annotations

import contextlib
import json
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushmanifest.errors import InputError, InvalidPlatformError
from pushmanifest.platform import (
    ARCHITECTURE_ALIASES,
    KNOWN_ARCHITECTURES,
    KNOWN_OS,
    VARIANTS,
    Platform,
    normalize_platform,
    parse_platform,
)


def test_known_lists_are_go_dist_list() -> None:
    assert sorted(KNOWN_OS) == [
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
    ]
    assert sorted(KNOWN_ARCHITECTURES) == [
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
    ]
    assert set(VARIANTS) <= KNOWN_ARCHITECTURES
    assert all(arch in KNOWN_ARCHITECTURES for arch, _ in ARCHITECTURE_ALIASES.values())


@pytest.mark.parametrize("os", sorted(KNOWN_OS))
@pytest.mark.parametrize("arch", sorted(KNOWN_ARCHITECTURES))
def test_every_known_os_and_architecture_is_accepted_unchanged(os: str, arch: str) -> None:
    assert normalize_platform(os, arch) == (Platform(os, arch), [])


@pytest.mark.parametrize(
    ("arch", "variant"), [(arch, v) for arch, variants in VARIANTS.items() for v in variants]
)
def test_every_listed_variant_is_accepted_unchanged(arch: str, variant: str) -> None:
    assert normalize_platform("linux", arch, variant) == (Platform("linux", arch, variant), [])


def test_variant_table() -> None:
    assert VARIANTS["arm"] == ("v5", "v6", "v7", "v8")
    assert VARIANTS["amd64"] == ("v1", "v2", "v3", "v4")
    assert VARIANTS["ppc64le"] == ("power8", "power9", "power10")
    assert VARIANTS["riscv64"] == ("rva20u64", "rva22u64", "rva23u64")
    assert VARIANTS["386"] == ("sse2", "softfloat")
    arm64 = VARIANTS["arm64"]
    assert {"v8", "v8.0", "v8.9", "v9", "v9.0", "v9.5"} <= set(arm64)
    assert "v9.6" not in arm64 and "v8.10" not in arm64


@pytest.mark.parametrize(
    ("given", "expected", "notices"),
    [
        # Nothing is added or dropped: manifest-tool keeps what the spec says.
        (("linux", "arm64", "v8"), ("linux", "arm64", "v8"), []),
        (("linux", "arm64", ""), ("linux", "arm64", ""), []),
        (("linux", "arm", ""), ("linux", "arm", ""), []),
        (("linux", "amd64", "v1"), ("linux", "amd64", "v1"), []),
        (("linux", "aarch64", ""), ("linux", "arm64", ""), ["architecture 'aarch64' is 'arm64'"]),
        (
            ("linux", "aarch64", "v8"),
            ("linux", "arm64", "v8"),
            ["architecture 'aarch64' is 'arm64'"],
        ),
        (("linux", "x86_64", ""), ("linux", "amd64", ""), ["architecture 'x86_64' is 'amd64'"]),
        (("linux", "x86-64", "v3"), ("linux", "amd64", "v3"), ["architecture 'x86-64' is 'amd64'"]),
        (
            ("linux", "armhf", ""),
            ("linux", "arm", "v7"),
            ["architecture 'armhf' is 'arm' with variant 'v7'"],
        ),
        (
            ("linux", "armhf", "v7"),
            ("linux", "arm", "v7"),
            ["architecture 'armhf' is 'arm' with variant 'v7'"],
        ),
        (
            ("linux", "armel", ""),
            ("linux", "arm", "v6"),
            ["architecture 'armel' is 'arm' with variant 'v6'"],
        ),
        (("linux", "i386", ""), ("linux", "386", ""), ["architecture 'i386' is '386'"]),
        (("linux", "i686", ""), ("linux", "386", ""), ["architecture 'i686' is '386'"]),
        (("linux", "x86", "sse2"), ("linux", "386", "sse2"), ["architecture 'x86' is '386'"]),
        (("linux", "arm64", "8"), ("linux", "arm64", "v8"), ["variant '8' is 'v8'"]),
        (("linux", "arm64", "V8.2"), ("linux", "arm64", "v8.2"), ["variant 'V8.2' is 'v8.2'"]),
        (("linux", "arm", "7"), ("linux", "arm", "v7"), ["variant '7' is 'v7'"]),
        (("linux", "arm", "armv6"), ("linux", "arm", "v6"), ["variant 'armv6' is 'v6'"]),
        (("linux", "amd64", "3"), ("linux", "amd64", "v3"), ["variant '3' is 'v3'"]),
        (("linux", "ppc64le", "9"), ("linux", "ppc64le", "power9"), ["variant '9' is 'power9'"]),
        (
            ("linux", "ppc64le", "POWER10"),
            ("linux", "ppc64le", "power10"),
            ["variant 'POWER10' is 'power10'"],
        ),
        (("Linux", "amd64", ""), ("linux", "amd64", ""), ["os 'Linux' is 'linux'"]),
        (
            ("WINDOWS", "AMD64", ""),
            ("windows", "amd64", ""),
            ["os 'WINDOWS' is 'windows'", "architecture 'AMD64' is 'amd64'"],
        ),
        (("linux", "AArch64", ""), ("linux", "arm64", ""), ["architecture 'AArch64' is 'arm64'"]),
    ],
)
def test_aliases_and_fixes_give_notices(
    given: tuple[str, str, str], expected: tuple[str, str, str], notices: list[str]
) -> None:
    platform, got = normalize_platform(*given)
    assert platform == Platform(*expected)
    assert got == notices


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        (
            ("linux", "arm64v8", ""),
            "architecture",
            "architecture 'arm64v8' is not an architecture: "
            "did you mean architecture 'arm64' with variant 'v8'?",
        ),
        (("linux", "arm32v7", ""), "architecture", "architecture 'arm' with variant 'v7'?"),
        (("linux", "arm32v6", ""), "architecture", "architecture 'arm' with variant 'v6'?"),
        (("linux", "amd64v3", ""), "architecture", "architecture 'amd64' with variant 'v3'?"),
        (("linux", "armv7l", ""), "architecture", "architecture 'arm' with variant 'v7'?"),
        (("linux", "armv7", ""), "architecture", "architecture 'arm' with variant 'v7'?"),
        (("linux", "aarch64v8", ""), "architecture", "architecture 'arm64' with variant 'v8'?"),
        (("linux", "arm64-v8", ""), "architecture", "architecture 'arm64' with variant 'v8'?"),
        (("linux", "arm/v7", ""), "architecture", "architecture 'arm' with variant 'v7'?"),
        (("linux", "ppc64lepower9", ""), "architecture", "'ppc64le' with variant 'power9'?"),
        (("linux", "amd46", ""), "architecture", "did you mean 'amd64'?"),
        (("linux", "arm46", ""), "architecture", "did you mean 'arm64'?"),
        (("linux", "aarch46", ""), "architecture", "did you mean 'arm64'?"),
        (("linux", "x86_46", ""), "architecture", "did you mean 'amd64'?"),
        (("linux", "s390", ""), "architecture", "did you mean 's390x'?"),
        (("linux", "linux", ""), "architecture", "'linux' is an os, not an architecture"),
        (("linux", "sparc", ""), "architecture", "known architectures: 386, amd64, arm, arm64"),
        (("linux", "", ""), "architecture", "architecture is empty"),
        (("linxu", "amd64", ""), "os", "os 'linxu' is not an os: did you mean 'linux'?"),
        (("windwos", "amd64", ""), "os", "did you mean 'windows'?"),
        (("macos", "arm64", ""), "os", "did you mean 'darwin'?"),
        (("win", "amd64", ""), "os", "did you mean 'windows'?"),
        (("amd64", "linux", ""), "os", "'amd64' is an architecture, not an os"),
        (("unknown", "unknown", ""), "os", "known oses: aix, android"),
        (("linux", "s390x", "v1"), "variant", "s390x has no variants, remove the variant"),
        (("linux", "arm", "v9"), "variant", "not a variant of arm: known variants: v5, v6, v7, v8"),
        (("linux", "arm64", "v7"), "variant", "variant 'v7' is not a variant of arm64"),
        (("linux", "arm64", "v8.10"), "variant", "not a variant of arm64"),
        (("linux", "amd64", "v5"), "variant", "known variants: v1, v2, v3, v4"),
        (("linux", "ppc64le", "power7"), "variant", "did you mean 'power"),
        (("linux", "riscv64", "rva23"), "variant", "did you mean 'rva23u64'?"),
        (("linux", "armhf", "v6"), "variant", "'armhf' means arm/v7, but the variant is 'v6'"),
        (("linux", "armel", "v7"), "variant", "write architecture 'arm' with variant 'v7'"),
    ],
)
def test_invalid_platforms_name_the_field_and_suggest(
    given: tuple[str, str, str], field: str, message: str
) -> None:
    with pytest.raises(InvalidPlatformError) as info:
        normalize_platform(*given)
    assert info.value.field == field
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InputError)


def test_numbers_from_yaml_are_read_as_text() -> None:
    platform, notices = normalize_platform("linux", "arm64", 8)  # type: ignore[arg-type]
    assert platform == Platform("linux", "arm64", "v8")
    assert notices == ["variant '8' is 'v8'"]
    windows, _ = normalize_platform("windows", "amd64", os_version=10)  # type: ignore[arg-type]
    assert windows.os_version == "10"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"os": None, "architecture": "amd64"}, "os"),
        ({"os": "linux", "architecture": ["amd64"]}, "architecture"),
        ({"os": "linux", "architecture": "arm", "variant": True}, "variant"),
        ({"os": "linux", "architecture": "arm", "os_version": {}}, "os.version"),
    ],
)
def test_non_text_values_are_invalid(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidPlatformError, match="must be a string") as info:
        normalize_platform(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_optional_fields_are_kept() -> None:
    platform, notices = normalize_platform(
        "windows",
        "amd64",
        os_version="10.0.17763.1879",
        os_features=["win32k"],
        features=["sse4", "aes"],
    )
    assert notices == []
    assert platform.os_version == "10.0.17763.1879"
    assert platform.os_features == ("win32k",)
    assert platform.features == ("sse4", "aes")


@pytest.mark.parametrize(
    ("text", "expected", "notices"),
    [
        ("linux/amd64", Platform("linux", "amd64"), []),
        ("linux/arm/v7", Platform("linux", "arm", "v7"), []),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8"), []),
        (" linux/arm64 ", Platform("linux", "arm64"), []),
        ("linux/aarch64", Platform("linux", "arm64"), ["architecture 'aarch64' is 'arm64'"]),
        ("windows/amd64", Platform("windows", "amd64"), []),
    ],
)
def test_parse_platform(text: str, expected: Platform, notices: list[str]) -> None:
    assert parse_platform(text) == (expected, notices)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("linux", None),
        ("", None),
        ("linux/", None),
        ("/amd64", None),
        ("linux/arm/v7/x", None),
        ("linux//v7", None),
        ("linux/arm64v8", "architecture"),
        ("lnux/amd64", "os"),
        ("linux/arm/v1", "variant"),
    ],
)
def test_parse_platform_errors(text: str, field: Optional[str]) -> None:
    with pytest.raises(InvalidPlatformError) as info:
        parse_platform(text)
    assert info.value.field == field
    if field is None:
        assert "OS/ARCHITECTURE[/VARIANT]" in str(info.value)


def test_to_dict_is_go_field_order_with_omitempty() -> None:
    full = Platform(
        os="windows",
        architecture="amd64",
        variant="v2",
        os_version="10.0.17763.1",
        os_features=("win32k",),
        features=("f1",),
    )
    assert list(full.to_dict()) == [
        "architecture",
        "os",
        "os.version",
        "os.features",
        "variant",
        "features",
    ]
    assert full.to_dict() == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1",
        "os.features": ["win32k"],
        "variant": "v2",
        "features": ["f1"],
    }
    assert Platform("linux", "arm", "v7").to_dict() == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
    }
    # Go's v1.Platform has no omitempty on architecture and os.
    assert Platform("", "").to_dict() == {"architecture": "", "os": ""}


def test_from_dict_takes_registry_data_as_is() -> None:
    attestation = Platform.from_dict({"architecture": "unknown", "os": "unknown"})
    assert attestation == Platform("unknown", "unknown")
    data = {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.20348.1",
        "os.features": ["win32k"],
        "variant": "",
        "features": ["x"],
        "extra": 1,
    }
    platform = Platform.from_dict(data)
    assert platform == Platform("windows", "amd64", "", "10.0.20348.1", ("win32k",), ("x",))
    assert Platform.from_dict({}) == Platform("", "")
    assert Platform.from_dict({"os": "linux", "architecture": "aarch64"}).architecture == "aarch64"
    odd = Platform.from_dict({"os": None, "architecture": 5, "os.features": "one"})
    assert odd == Platform("", "5", os_features=("one",))


def test_from_dict_to_dict_round_trip() -> None:
    data = {"architecture": "arm", "os": "linux", "variant": "v6"}
    assert Platform.from_dict(data).to_dict() == data
    image_config = json.loads('{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{}}')
    assert Platform.from_dict(image_config) == Platform("linux", "arm64", "v8")


def test_key_ignores_feature_order() -> None:
    a = Platform("windows", "amd64", os_features=("b", "a"), features=("y", "x"))
    b = Platform("windows", "amd64", os_features=("a", "b"), features=("x", "y"))
    assert a != b
    assert a.key() == b.key() == ("windows", "amd64", "", "", ("a", "b"), ("x", "y"))
    assert Platform("linux", "arm64").key() != Platform("linux", "arm64", "v8").key()
    assert (
        Platform("windows", "amd64", os_version="1").key()
        != Platform("windows", "amd64", os_version="2").key()
    )


def test_str() -> None:
    assert str(Platform("linux", "amd64")) == "linux/amd64"
    assert str(Platform("linux", "arm", "v7")) == "linux/arm/v7"
    assert (
        str(Platform("windows", "amd64", os_version="10.0.17763.1"))
        == "windows/amd64 os.version 10.0.17763.1"
    )


def test_lists_become_tuples_and_platform_is_hashable() -> None:
    platform = Platform("linux", "amd64", os_features=["a"], features=["b"])  # type: ignore[arg-type]
    assert platform.os_features == ("a",)
    assert platform.features == ("b",)
    assert {platform: 1}[Platform("linux", "amd64", os_features=("a",), features=("b",))] == 1


@settings(max_examples=300)
@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=8))
def test_random_input_gives_platform_or_invalid_platform_error(
    os: str, arch: str, variant: str
) -> None:
    try:
        platform, _ = normalize_platform(os, arch, variant)
    except InvalidPlatformError as exc:
        assert exc.field in ("os", "architecture", "variant")
        assert str(exc)
        return
    assert platform.os in KNOWN_OS or (platform.os == "" and os == "")  # "": partial
    assert platform.architecture in KNOWN_ARCHITECTURES
    assert not platform.variant or platform.variant in VARIANTS[platform.architecture]
    # Normalizing is idempotent: a normalized platform passes unchanged, without notices.
    assert normalize_platform(platform.os, platform.architecture, platform.variant) == (
        platform,
        [],
    )


@settings(max_examples=200)
@given(st.text(alphabet="aAmrx68_-4v/l", max_size=10))
def test_parse_platform_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(InvalidPlatformError):
        parse_platform(f"linux/{text}")
