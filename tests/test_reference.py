from __future__ import annotations

import re
from typing import Optional

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pushmanifest.errors import InputError, InvalidReferenceError
from pushmanifest.reference import (
    DOCKER_HUB_API_HOST,
    DOCKER_HUB_DOMAIN,
    Reference,
    parse_reference,
)

D64 = "sha256:" + "0123456789abcdef" * 4

# input, registry, repository, tag, digest
VALID: list[tuple[str, str, str, Optional[str], Optional[str]]] = [
    ("alpine", "docker.io", "library/alpine", None, None),
    ("alpine:3.11", "docker.io", "library/alpine", "3.11", None),
    ("alpine:latest", "docker.io", "library/alpine", "latest", None),
    ("user/app", "docker.io", "user/app", None, None),
    ("user/app:v1.0-rc_1", "docker.io", "user/app", "v1.0-rc_1", None),
    ("team/sub/app:TAG", "docker.io", "team/sub/app", "TAG", None),
    ("docker.io/alpine", "docker.io", "library/alpine", None, None),
    ("docker.io/library/alpine", "docker.io", "library/alpine", None, None),
    ("index.docker.io/alpine:3", "docker.io", "library/alpine", "3", None),
    ("registry-1.docker.io/user/app", "docker.io", "user/app", None, None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None),
    ("localhost/app", "localhost", "app", None, None),
    ("localhost:5000/app:tag", "localhost:5000", "app", "tag", None),
    ("LOCALHOST:5000/app", "localhost:5000", "app", None, None),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", None, None),
    ("Registry.Example.COM/app", "registry.example.com", "app", None, None),
    ("quay.io/org/app:1", "quay.io", "org/app", "1", None),
    ("my-registry.local:443/x", "my-registry.local:443", "x", None, None),
    ("[::1]:5000/app", "[::1]:5000", "app", None, None),
    ("[FE80::1]/app", "[fe80::1]", "app", None, None),
    ("[2001:db8::1]:8080/a/b:t", "[2001:db8::1]:8080", "a/b", "t", None),
    ("alpine@" + D64, "docker.io", "library/alpine", None, D64),
    ("alpine:3@" + D64, "docker.io", "library/alpine", "3", D64),
    ("ghcr.io/o/a@sha512:" + "a" * 128, "ghcr.io", "o/a", None, "sha512:" + "a" * 128),
    ("o/a@sha384:" + "b" * 96, "docker.io", "o/a", None, "sha384:" + "b" * 96),
    ("o/a@blake3:" + "C" * 32, "docker.io", "o/a", None, "blake3:" + "C" * 32),
    ("o/a@multihash+base58:" + "1" * 40, "docker.io", "o/a", None, "multihash+base58:" + "1" * 40),
    ("a.b-c--d/g", "a.b-c--d", "g", None, None),
    ("a_b__c-d---e.f", "docker.io", "library/a_b__c-d---e.f", None, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("example.com:5000", "docker.io", "library/example.com", "5000", None),
    ("a", "docker.io", "library/a", None, None),
    ("alpine:_", "docker.io", "library/alpine", "_", None),
    ("alpine:" + "t" * 128, "docker.io", "library/alpine", "t" * 128, None),
    ("1.2.3.4/app", "1.2.3.4", "app", None, None),
    ("host-1.example.com:1/app", "host-1.example.com:1", "app", None, None),
    ("localhost:65535/app", "localhost:65535", "app", None, None),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID)
def test_parse_valid(
    text: str, registry: str, repository: str, tag: Optional[str], digest: Optional[str]
) -> None:
    ref = parse_reference(text)
    assert ref == Reference(registry=registry, repository=repository, tag=tag, digest=digest)
    assert Reference.parse(text) == ref
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar()) == ref


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("alpine", "docker.io/library/alpine", "alpine"),
        ("alpine:3.11", "docker.io/library/alpine:3.11", "alpine:3.11"),
        ("docker.io/library/alpine:3.11", "docker.io/library/alpine:3.11", "alpine:3.11"),
        ("user/app:tag", "docker.io/user/app:tag", "user/app:tag"),
        ("library/foo/bar", "docker.io/library/foo/bar", "library/foo/bar"),
        # docker prints "my.org/app", which would read back as registry my.org.
        ("docker.io/my.org/app", "docker.io/my.org/app", "docker.io/my.org/app"),
        ("docker.io/localhost/app", "docker.io/localhost/app", "docker.io/localhost/app"),
        ("docker.io/library/my.app", "docker.io/library/my.app", "my.app"),
        ("127.0.0.1:5000/app:tag", "127.0.0.1:5000/app:tag", "127.0.0.1:5000/app:tag"),
        ("alpine@" + D64, "docker.io/library/alpine@" + D64, "alpine@" + D64),
        ("a:t@" + D64, "docker.io/library/a:t@" + D64, "a:t@" + D64),
        ("[::1]:5000/app", "[::1]:5000/app", "[::1]:5000/app"),
        # A bare 64-hex name is an image ID to docker (refused): the short form keeps library/
        # (found by test_fuzz's round trip).
        ("library/" + "a" * 64, "docker.io/library/" + "a" * 64, "library/" + "a" * 64),
    ],
)
def test_str_and_familiar(text: str, canonical: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar


def test_name_api_host_identifier() -> None:
    hub = parse_reference("alpine")
    assert hub.name == "docker.io/library/alpine"
    assert hub.registry == DOCKER_HUB_DOMAIN
    assert hub.api_host == DOCKER_HUB_API_HOST
    assert hub.identifier == "latest"
    assert parse_reference("alpine:3").identifier == "3"
    assert parse_reference("alpine:3@" + D64).identifier == D64
    local = parse_reference("localhost:5000/app")
    assert local.api_host == "localhost:5000"
    assert local.name == "localhost:5000/app"
    # A Reference built by hand with a Hub alias still talks to the API host.
    assert Reference(registry="index.docker.io", repository="x").api_host == DOCKER_HUB_API_HOST


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.1.2.3:443", True),
        ("[::1]", True),
        ("[::1]:5000", True),
        ("docker.io", False),
        ("10.0.0.1:5000", False),
        ("[fe80::1]:5000", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(registry: str, loopback: bool) -> None:
    assert Reference(registry=registry, repository="x").is_loopback is loopback


def test_with_tag_and_digest() -> None:
    ref = parse_reference("alpine:3@" + D64)
    tagged = ref.with_tag("edge")
    assert tagged == Reference("docker.io", "library/alpine", "edge", None)
    pinned = tagged.with_digest(D64)
    assert pinned == Reference("docker.io", "library/alpine", "edge", D64)
    with pytest.raises(InvalidReferenceError, match="tag"):
        ref.with_tag("-bad")
    with pytest.raises(InvalidReferenceError, match="tag is empty"):
        ref.with_tag("")
    with pytest.raises(InvalidReferenceError, match="digest"):
        ref.with_digest("sha256:abc")


def test_reference_is_hashable_and_frozen() -> None:
    a = parse_reference("alpine:3")
    b = parse_reference("docker.io/library/alpine:3")
    assert {a: 1}[b] == 1
    with pytest.raises(AttributeError):
        a.tag = "x"  # type: ignore[misc]


INVALID = [
    ("", "empty"),
    ("User/App", "repository name must be lowercase: 'User/App' -> did you mean 'user/app'?"),
    ("user/App:Tag", "repository name must be lowercase: 'user/App' -> did you mean 'user/app'?"),
    ("docker.io/Alpine", "did you mean 'alpine'?"),
    ("localhost:5000/App", "did you mean 'app'?"),
    ("ALPINE", "did you mean 'alpine'?"),
    ("alpine:", "tag is empty"),
    ("alpine:-x", "tag '-x' in 'alpine:-x' is invalid"),
    ("alpine:.x", "cannot start with '.' or '-'"),
    ("alpine:a+b", "is invalid: tags use letters"),
    ("alpine:é", "is invalid: tags use letters"),
    ("alpine:" + "t" * 129, "129 characters long; the limit is 128"),
    ("alpine@", "digest '' in 'alpine@' is invalid"),
    ("alpine@sha256", "is invalid: expected ALGORITHM:HEX"),
    ("alpine@sha256:abc", "a sha256 digest has 64 hex digits, this one has 3"),
    ("alpine@sha256:" + "g" * 64, "the part after ':' must be hex"),
    ("alpine@sha256:" + "A" * 64, "write the hex digits in lowercase"),
    ("alpine@SHA256:" + "a" * 64, "write the algorithm 'sha256'"),
    ("alpine@md5:abc", "expected ALGORITHM:HEX"),
    ("alpine@sha256:" + "a" * 64 + "@x", "the part after ':' must be hex"),
    ("a" * 64, "64-character hex string cannot be a repository name"),
    ("a//b", "has an empty path component"),
    ("a/", "has an empty path component"),
    ("/a", "has an empty path component"),
    ("docker.io/", "the repository name is missing after registry 'docker.io'"),
    ("docker.io/library/", "has an empty path component"),
    ("localhost:5000/", "repository name is missing after registry 'localhost:5000'"),
    (":tag", "the repository name is missing"),
    ("@" + D64, "the repository name is missing"),
    ("app!", "'app!' is not a valid path component"),
    ("a-/b", "'a-' is not a valid path component"),
    ("a..b/c/d", "is not a valid host name"),
    ("-a.com/b", "is not a valid host name"),
    ("ho_st.com/app", "is not a valid host name"),
    ("host.com:99999/a", "port 99999 is not between 1 and 65535"),
    ("host.com:0/a", "port 0 is not between 1 and 65535"),
    ("host.com:x/a", "port 'x' is not a number"),
    ("host.com:/a", "port '' is not a number"),
    ("[fe80::zz]/a", "is not an IPv6 address"),
    ("[::1:5000/a", "is not an IPv6 address"),
    ("[1:2:3:4:5:6:7:8:9]/a", "is not an IPv6 address"),
    ("[::1]:5000", "if '[::1]' is a registry, add the repository: [::1]/NAME"),
    ("foo bar", "contains whitespace"),
    (" alpine", "contains whitespace"),
    ("alpine\n", "contains whitespace"),
    ("ÄPP", "'ÄPP' is not a valid path component"),
    ("x" * 250, "characters long; the limit is 255"),
    ("a/" + "b" * 244, "characters long; the limit is 255"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(text)
    error = str(info.value)
    assert message in error
    assert "\n" not in error
    assert len(error) < 400
    assert isinstance(info.value, InputError)
    assert info.value.exit_code == 2


def test_name_length_limit_is_255() -> None:
    # docker.io/library/ is 18 characters and counts.
    assert parse_reference("x" * 237).name == "docker.io/library/" + "x" * 237
    with pytest.raises(InvalidReferenceError):
        parse_reference("x" * 238)
    assert parse_reference("localhost/" + "y" * 245).registry == "localhost"


def test_non_string_is_an_invalid_reference() -> None:
    with pytest.raises(InvalidReferenceError, match="must be a string"):
        parse_reference(None)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------

# distribution/reference's ReferenceRegexp (ASCII), applied to the canonical form.
_ALNUM = r"[a-z0-9]+"
_COMPONENT = _ALNUM + r"(?:(?:[._]|__|[-]+)" + _ALNUM + r")*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = r"(?:" + _LABEL + r"(?:\." + _LABEL + r")*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_GO_REFERENCE = re.compile(
    r"(?:" + _DOMAIN + r"/)?" + _COMPONENT + r"(?:/" + _COMPONENT + r")*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)

_ALPHABET = "abcxyzAZ0159._-/:@[]" + "\u00e9 \n"
_alnum = st.text(alphabet="abz059", min_size=1, max_size=4)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=3),
)
_tag = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("aZ9_"),
    st.text(alphabet="aZ9_.-", max_size=20),
)
_host = st.sampled_from(
    ["docker.io", "index.docker.io", "quay.io", "localhost", "Example.COM", "[::1]", "10.0.0.1"]
)


@st.composite
def _references(draw: st.DrawFn) -> str:
    components = draw(st.lists(_component, min_size=1, max_size=4))
    text = "/".join(components)
    if draw(st.booleans()):
        host = draw(_host)
        if draw(st.booleans()):
            host += f":{draw(st.integers(1, 65535))}"
        text = f"{host}/{text}"
    elif len(components) > 1 and "." in components[0]:
        text = f"docker.io/{text}"  # else the first component would be read as a registry
    if draw(st.booleans()):
        text += ":" + draw(_tag)
    if draw(st.booleans()):
        text += "@sha256:" + draw(st.binary(min_size=32, max_size=32)).hex()
    return text


@settings(max_examples=400)
@given(st.text(alphabet=_ALPHABET, max_size=40) | st.text(max_size=40))
@example("[")
@example("[]/a")
@example("@")
@example(":")
@example("/")
@example("a@b@c")
@example("\ud800")
def test_random_text_gives_reference_or_invalid_reference_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError as exc:
        assert str(exc)
        return
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert _GO_REFERENCE.fullmatch(str(ref))


@settings(max_examples=300)
@given(_references())
def test_generated_references_round_trip(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError as exc:
        # The only rejections of the generator's output: overlong names, and 64-hex names.
        assert "limit is 255" in str(exc) or "64-character hex" in str(exc)
        return
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert _GO_REFERENCE.fullmatch(str(ref))
    assert str(ref).endswith(text.split("/")[-1])
