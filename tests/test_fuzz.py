"""Robust parsing: untrusted input gives a result or our own error, never another exception.

Property-based (hypothesis) over the four parsers that read what users and servers hand us:

* the spec loader: any text (or any bytes, through a file) gives specs or a SpecError whose every
  problem has a position (line >= 1, column >= 1);
* the WWW-Authenticate parser: any string gives a list of challenges;
* the docker config reader: any file content gives a DockerConfig or an InputError, and
  ``credentials_for`` gives Credentials or None; credential helpers that answer garbage, fail or
  hang are bounded (a timeout) and give None or an AuthenticationError;
* the reference parser: any string gives a Reference that round-trips, or InvalidReferenceError.

Each property runs a bounded number of examples (no deadline: CI machines vary), so that the
whole file stays within a few seconds. The regressions hypothesis found are pinned as examples.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
import respx
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pushmanifest
from pushmanifest import ClientOptions, RegistryClient
from pushmanifest.auth import (
    Challenge,
    Credentials,
    DockerConfig,
    Secret,
    TokenAuth,
    load_docker_config,
    parse_www_authenticate,
)
from pushmanifest.errors import (
    AuthenticationError,
    InputError,
    InvalidReferenceError,
    RegistryError,
    SpecError,
)
from pushmanifest.manifest import DOCKER_MANIFEST, sha256_digest
from pushmanifest.reference import Reference, parse_reference
from pushmanifest.spec import ManifestListSpec, load_spec_file, load_spec_text, nodes
from pushmanifest.spec.nodes import NULL_TAG, SpecLoader, TooDeep, fast_loader_for

FUZZ = settings(max_examples=300, deadline=None)
#: For tests that take hypothesis examples alongside pytest's tmp_path/monkeypatch: each example
#: overwrites the same files, so sharing them between examples is fine.
FUZZ_WITH_FIXTURES = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

#: Deep enough for json's and PyYAML's recursive descent to exhaust Python's stack.
DEEP = 100_000


# --------------------------------------------------------------------------------------------
# The spec loader


def check_spec_outcome(load: Any, source: Any, env: dict[str, str]) -> Optional[list[Any]]:
    """Run a loader: specs, or a SpecError whose every problem is positioned. None on error."""
    try:
        specs = load(source, env=env) if load is load_spec_file else load(source, "f.yaml", env=env)
    except SpecError as exc:
        assert exc.problems, "a SpecError names at least one problem"
        for problem in exc.problems:
            assert problem.line >= 1 and problem.column >= 1, problem
            assert problem.message and "\n" not in problem.message, problem
            str(problem).encode("utf-8")  # printable: no lone surrogates
        return None
    assert isinstance(specs, list) and specs
    assert all(isinstance(spec, ManifestListSpec) for spec in specs)
    return specs


_SPEC_PIECES = [
    *"ab:-[]{}\"'\n #&*!|>,.?%@`\t\\$/0",
    *("image", "manifests", "platform", "tags", "os", "architecture", "variant", "linux"),
    *("amd64", "arm", "v7", "os.version", "annotations", "x-a", "<<", "${", "}", "${A}"),
    *("  ", "\n- ", "\n  - ", "\n    ", "---\n", "...", "\r", "\x85", "\u2028", "\ufeff"),
    *("\x00", "\x0c", "\u00e9", "\\ud800", "\\U0001F600", "127.0.0.1:5000/a/b:c", "@sha256:"),
]
#: Text made of the spec's own words and YAML's punctuation: reaches far more of the loader
#: (syntax explanations, validation) than uniform random text does.
yamlish = st.lists(st.sampled_from(_SPEC_PIECES), max_size=40).map("".join)

_LINES = [
    "image: 127.0.0.1:5000/app:1.0",
    "image: ${REPO}:latest",
    "tags: [1.0, latest]",
    'tags: ["${TAG}", "a b"]',
    "manifests:",
    "  - image: 127.0.0.1:5000/app:amd64",
    "  - image: app@sha256:" + "a" * 64,
    "    platform:",
    "      architecture: arm",
    "      os: linux",
    "      variant: v7",
    "    platform: {architecture: aarch64, os: linux}",
    "   platform: {architecture: arm}",
    "annotations: {a: b}",
    "x-linux: &linux {os: linux}",
    "      <<: *linux",
    "  -",
    "---",
    "\t",
    "x: 'a",
    '"b',
    ": c",
    "- x",
]
#: Whole lines of plausible specs, shuffled: indentation slips, unclosed quotes, duplicates.
spec_lines = st.lists(st.sampled_from(_LINES), max_size=12).map("\n".join)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            *("linux", "amd64", "arm", "v7", "arm64v8", "aarch64", "windows", "10.0.17763"),
            *("a/b", "a/b:c", "${A}", "${B:-x}", "${", "$$", "", "UPPER/x", "a" * 300),
            "127.0.0.1:5000/a/b:t",
            "docker.io/library/alpine@sha256:" + "a" * 64,
        ]
    ),
    st.text(max_size=10),
)
_keys = st.sampled_from(
    [
        *("image", "tags", "manifests", "platform", "os", "architecture", "variant"),
        *("osversion", "os.version", "osfeatures", "os.features", "features", "annotations"),
        *("origin", "x-a", "imgae", "arch", "1"),
    ]
)
_data = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=20,
)
_entry = st.fixed_dictionaries(
    {"image": _scalars},
    optional={
        "platform": _data | st.dictionaries(_keys, _scalars, max_size=5),
        "annotations": _data,
    },
)
#: Documents shaped like specs, with every field possibly of the wrong type or value.
spec_documents = st.fixed_dictionaries(
    {},
    optional={
        "image": _scalars,
        "tags": _data | st.lists(_scalars, max_size=3),
        "manifests": _data | st.lists(_entry | _data, max_size=4),
        "annotations": _data,
    },
)


@pytest.mark.usefixtures("yaml_loader")
@FUZZ
@given(st.text(max_size=80) | yamlish | spec_lines)
@example("a: [")  # an unclosed flow collection at the end: was IndexError
@example("[")
@example("a: &x {")
@example("a: [b, }")
@example('image: "[\\ud8eb"')  # a lone surrogate: was UnicodeEncodeError inside pydantic
@example('"\\ud800": 1')
@example("[" * DEEP)  # was RecursionError in PyYAML's composer
@example("- " * 1000 + "a")
@example("".join(" " * i + "a:\n" for i in range(400)))
def test_any_text_gives_specs_or_positioned_spec_error(text: str) -> None:
    check_spec_outcome(load_spec_text, text, {"A": "x", "REPO": "r/a", "TAG": "t"})


@pytest.mark.usefixtures("yaml_loader")
@FUZZ
@given(st.lists(spec_documents, min_size=1, max_size=3), st.sampled_from(["block", "flow", "json"]))
def test_any_spec_shaped_document_gives_specs_or_positioned_spec_error(
    documents: list[dict[str, Any]], style: str
) -> None:
    def dump(document: dict[str, Any]) -> str:
        if style == "json":  # JSON is YAML, with \uXXXX escapes (surrogate pairs included)
            return json.dumps(document) + "\n"
        return yaml.safe_dump(document, default_flow_style=style == "flow", allow_unicode=True)

    check_spec_outcome(load_spec_text, "---\n".join(map(dump, documents)), {})


@pytest.mark.usefixtures("yaml_loader")
@FUZZ_WITH_FIXTURES
@given(
    st.binary(max_size=120)
    | st.text(max_size=40).map(lambda s: s.encode("utf-16"))
    | st.text(max_size=40).map(lambda s: b"\xef\xbb\xbf" + s.encode())
    | spec_lines.map(lambda s: s.encode("utf-8", "surrogatepass"))
)
@example(b"image: a\n\xff\xfe")
@example(b"\xef\xbb\xbfimage: a:1\nmanifests: [{image: b}]\n")
def test_any_bytes_in_a_file_give_specs_or_positioned_spec_error(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    check_spec_outcome(load_spec_file, path, {})


@pytest.mark.usefixtures("yaml_loader")
def _composed(loader: Any, text: str) -> Any:
    """The documents of ``text`` as (tag, line, column, value) trees, or "error". An empty
    value is shown without its position: libyaml marks it elsewhere (it only ever places a
    problem, and the loader reads a text with a problem again with PyYAML's own parser)."""

    def tree(node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG and not node.value:
            return (node.tag, "")
        mark = (node.tag, node.start_mark.line, node.start_mark.column)
        if isinstance(node, yaml.ScalarNode):
            return (*mark, node.value)
        if isinstance(node, yaml.SequenceNode):
            return (*mark, [tree(item) for item in node.value])
        return (*mark, [(tree(k), tree(v)) for k, v in node.value])

    try:
        return [None if n is None else tree(n) for n in yaml.compose_all(text, Loader=loader)]
    except (yaml.YAMLError, TooDeep):
        return "error"


def _loaded(text: str) -> Any:
    """What :func:`load_spec_text` makes of ``text``: the specs as data, or the problems."""
    try:
        return [spec.model_dump() for spec in load_spec_text(text, "f.yaml", env={"A": "x"})]
    except SpecError as exc:
        return [str(problem) for problem in exc.problems]


#: libyaml's loader as the package built it (the yaml_loader fixture may set FAST_LOADER to None).
LIBYAML_LOADER = nodes.FAST_LOADER


def _libyaml_for(text: str) -> Any:
    """The loader's choice for ``text`` with libyaml in place, whatever a fixture has set."""
    saved, nodes.FAST_LOADER = nodes.FAST_LOADER, LIBYAML_LOADER
    try:
        return fast_loader_for(text)
    finally:
        nodes.FAST_LOADER = saved


_YAML_TEXTS = (
    st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=80)
    | yamlish
    | spec_lines
    | st.lists(spec_documents, min_size=1, max_size=3).map(
        lambda docs: "---\n".join(yaml.safe_dump(d, default_flow_style=None) for d in docs)
    )
)


@FUZZ
@given(_YAML_TEXTS)
@example("a: [")
@example("[" * 60)
@example("- " * 60 + "a")  # nests too deep: libyaml's check_event compares classes exactly
@example("image:\ta/b:1\n")  # libyaml allows the tab, PyYAML does not
@example("\n    !")  # tagged '!': libyaml resolves it to a string, PyYAML to null
@example("|#- ? >yes- ")  # libyaml reads it, PyYAML does not
@example("a: &x 1\nb: &x 2")
@example("%YAML 1.2\n---\na: 1")
@example("a: *b")
def test_libyaml_composes_what_pyyaml_composes(text: str) -> None:
    """Where the loader lets libyaml read a text, libyaml composes the nodes PyYAML composes,
    at the same lines and columns, or fails (the pure loader then reads the text)."""
    fast = _libyaml_for(text)
    if fast is None:
        return  # read by the pure loader only
    composed = _composed(fast, text)
    if composed != "error":
        assert _composed(SpecLoader, text) == composed


@FUZZ
@given(_YAML_TEXTS)
@example("image: a:1\nmanifests: [{image: b, platform: }]\n")  # an empty value, no problem
def test_a_spec_loads_alike_with_libyaml_and_without(text: str) -> None:
    saved = nodes.FAST_LOADER
    try:
        nodes.FAST_LOADER = LIBYAML_LOADER
        with_libyaml = _loaded(text)
        nodes.FAST_LOADER = None
        assert _loaded(text) == with_libyaml
    finally:
        nodes.FAST_LOADER = saved


@pytest.mark.usefixtures("yaml_loader")
def test_alias_chains_cannot_nest_deeper_than_the_stack() -> None:
    # Each alias adds a level to the built data, though the YAML's own events stay shallow.
    chain = "".join(f"x-a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 1000))
    text = f"x-a0: &a0 [1]\n{chain}image: a\nmanifests: [{{image: b}}]\n"
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "deep.yaml")
    assert any("nests more than" in p.message for p in caught.value.problems)


@pytest.mark.usefixtures("yaml_loader")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [", "1:4: '[' opened here is never closed: add ']' after the last item"),
        ("tags: [a,", "1:7: '[' opened here is never closed: add ']' after the last item"),
        ("a: {b: ]", "1:8: '{' (line 1) is closed with ']': use '}'"),
        ('image: "[\\ud8eb"', "1:8: '[\\ud8eb' holds U+D8EB, half of a UTF-16 surrogate pair"),
        ("[" * DEEP, "1:51: the document nests more than 50 levels deep"),
    ],
    ids=["flow-at-end", "flow-list-at-end", "wrong-closer", "surrogate", "deep"],
)
def test_found_by_fuzzing_explained_at_their_position(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "f.yaml")
    assert any(str(p).startswith(f"f.yaml:{expected}") for p in caught.value.problems), [
        str(p) for p in caught.value.problems
    ]


# --------------------------------------------------------------------------------------------
# WWW-Authenticate


_token = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFXYZ", min_size=1
)
_header_pieces = st.sampled_from(
    [
        *'Bb =",\\\t',
        *("Bearer", "Basic", "realm", "service", "scope", "error", "=", '"', "token68=="),
        *("https://auth.example/t", "\x00", "\u00e9", "\ud800", ", ", "  "),
    ]
)


@FUZZ
@given(st.text() | st.lists(_header_pieces, max_size=30).map("".join))
@example('Bearer realm="unterminated')
@example("Basic realm=x, ,, Bearer")
@example("Negotiate abc==, Bearer realm=r")
def test_any_header_gives_a_list_of_challenges(header: str) -> None:
    challenges = parse_www_authenticate(header)
    assert isinstance(challenges, list)
    for challenge in challenges:
        assert isinstance(challenge, Challenge)
        assert challenge.scheme and challenge.scheme == challenge.scheme.lower()
        assert all(name and name == name.lower() for name in challenge.params)
        assert all(isinstance(value, str) for value in challenge.params.values())


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@FUZZ
@given(
    st.lists(
        st.tuples(
            _token,
            st.lists(st.tuples(_token, st.text()), max_size=4, unique_by=lambda p: p[0].lower()),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_well_formed_challenges_round_trip(challenges: list[tuple[str, list[Any]]]) -> None:
    header = ", ".join(
        scheme + (" " + ", ".join(f"{name}={_quoted(value)}" for name, value in params))
        if params
        else scheme
        for scheme, params in challenges
    )
    expected = [
        Challenge(scheme.lower(), {name.lower(): value for name, value in params})
        for scheme, params in challenges
    ]
    assert parse_www_authenticate(header) == expected, header


# --------------------------------------------------------------------------------------------
# The docker config


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on PATH for docker-credential-* scripts; no other helper is found."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return directory


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
_config_hosts = st.sampled_from(
    [
        *("h.example", "docker.io", "https://index.docker.io/v1/", "http://h.example/x"),
        *("H.EXAMPLE", "", "127.0.0.1:5000", "https://127.0.0.1:5000/v2/"),
    ]
)
_auth_values = st.one_of(
    st.text(max_size=20),
    st.text(max_size=20).map(lambda s: base64.b64encode(s.encode()).decode()),
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
    _json,
)
_auth_entries = st.dictionaries(
    st.sampled_from(["auth", "username", "password", "identitytoken", "registrytoken", "email"]),
    _auth_values,
    max_size=4,
)
#: Configs shaped like docker's, with wrong types anywhere; helpers that are not installed.
docker_configs = st.fixed_dictionaries(
    {},
    optional={
        "auths": _json | st.dictionaries(_config_hosts, _auth_entries | _json, max_size=3),
        "credHelpers": _json | st.dictionaries(_config_hosts, st.just("not-installed") | _json),
        "credsStore": st.sampled_from(["", "not-installed"]) | _json,
    },
)


@FUZZ_WITH_FIXTURES
@given(
    content=docker_configs.map(json.dumps)
    | _json.map(json.dumps)
    | st.text(max_size=60)
    | st.binary(max_size=60),
    registry=st.sampled_from(["h.example", "docker.io", "127.0.0.1:5000", "other.example"]),
)
@example(content="[" * DEEP + "]" * DEEP, registry="h.example")  # was RecursionError
@example(content='{"auths": {"h.example": {"auth": "%%%"}}}', registry="h.example")
@example(
    content='{"auths": {"h.example": {"auth": "\u00e9\u00e9\u00e9\u00e9"}}}', registry="h.example"
)
@example(content=b'{"auths": {"h.example": {"auth": "\xff"}}}', registry="h.example")
def test_any_docker_config_gives_credentials_none_or_input_error(
    tmp_path: Path, bin_dir: Path, content: Any, registry: str
) -> None:
    path = tmp_path / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_docker_config(tmp_path)
        found = config.credentials_for(registry)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(config, DockerConfig)
    assert found is None or isinstance(found, Credentials)


@FUZZ
@given(docker_configs | st.dictionaries(st.text(max_size=12), _json, max_size=4))
def test_docker_config_from_any_mapping_gives_credentials_none_or_input_error(
    data: dict[str, Any],
) -> None:
    try:
        found = DockerConfig(data, path="fuzz/config.json").credentials_for("h.example")
    except InputError as exc:
        assert "fuzz/config.json" in str(exc)
        return
    assert found is None or isinstance(found, Credentials)


def make_helper(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


HELPER_SECRET = "helper-s3cret-value"


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        # Garbage with exit status 0: outside the protocol, an error naming the helper.
        ("head -c 3000 /dev/urandom", "error"),
        ("printf '\\377\\376\\000garbage'", "error"),
        (f"python3 -c 'print(\"[\" * {DEEP})'", "error"),  # was RecursionError
        ("yes '{\"Secret\": 1}' | head -c 2000000", "error"),  # 2 MB, no hang
        ('echo \'{"Username": null, "Secret": "x"}\'', "error"),
        ("echo '[]'", "error"),
        # Failing helpers: docker goes on anonymously, and so do we (with a warning).
        ("exit 3", "none"),
        ("echo 'gpg: decryption failed: No secret key' >&2; exit 1", "none"),
        ("head -c 300 /dev/urandom; exit 1", "none"),
        # Its answer after all, then a failure: the warning must not show the secret.
        (
            f'echo \'{{"ServerURL": "h", "Username": "u", "Secret": "{HELPER_SECRET}"}}\'; exit 1',
            "none",
        ),
        (f'set -x; : \'"Secret":"{HELPER_SECRET}"\'; exit 4', "none"),
    ],
)
def test_credential_helper_answers_are_bounded(
    tmp_path: Path,
    bin_dir: Path,
    caplog: pytest.LogCaptureFixture,
    body: str,
    outcome: str,
) -> None:
    make_helper(bin_dir, "fuzz", f"cat >/dev/null\n{body}")
    config = DockerConfig({"credsStore": "fuzz"}, path=tmp_path / "config.json")
    with caplog.at_level(logging.DEBUG, logger="pushmanifest"):
        if outcome == "error":
            with pytest.raises(AuthenticationError) as caught:
                config.credentials_for("h.example")
            assert "docker-credential-fuzz" in str(caught.value)
            assert "\n" not in str(caught.value)
        else:
            assert config.credentials_for("h.example") is None
            assert "docker-credential-fuzz" in caplog.text
    assert HELPER_SECRET not in caplog.text


@pytest.mark.parametrize(
    "body",
    [
        "sleep 30",
        # Its pipes closed but still running: the timeout is on the process, not on EOF.
        "exec >/dev/null 2>&1 </dev/null; sleep 30",
        # Half an answer, then nothing.
        'printf \'{"Username": "u", \'; sleep 30',
    ],
)
def test_hanging_credential_helper_is_bounded_by_its_timeout(
    tmp_path: Path, bin_dir: Path, body: str
) -> None:
    make_helper(bin_dir, "hangs", body)
    config = DockerConfig(
        {"credsStore": "hangs"}, path=tmp_path / "config.json", helper_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=r"did not answer within 0\.5 s"):
        config.credentials_for("h.example")
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------------------------
# Image references

_REFERENCE_PIECES = [
    *"abAZ09._-/:@[]",
    *("sha256:", "a" * 64, "localhost", "docker.io", "127.0.0.1", "::1", "9" * 6, "1" * 5000),
    *("\u00e9", "\ud800", "\u0663", "\ufb01", "K", " ", "\n", "library/", "__", "--"),
]
reference_like = st.lists(st.sampled_from(_REFERENCE_PIECES), max_size=25).map("".join)


def check_reference(text: str) -> Optional[Reference]:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return None
    canonical = str(ref)
    canonical.encode("ascii")  # the grammar is ASCII: nothing else may slip through
    assert parse_reference(canonical) == ref
    assert str(parse_reference(canonical)) == canonical
    assert parse_reference(ref.familiar()) == ref
    return ref


@FUZZ
@given(st.text(max_size=300) | reference_like)
@example("a.b:" + "1" * 5000 + "/x")  # was ValueError from int() (over 4300 digits)
@example("localhost:" + "0" * 5000 + "1/x")
@example("localhost:065535/x")
@example("A" * 300)
@example("a/" * 200 + "a")
def test_any_text_gives_a_round_tripping_reference_or_invalid_reference_error(text: str) -> None:
    check_reference(text)


_tags = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=140)
_digests = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.binary(min_size=16, max_size=40).map(lambda b: "sha512:" + b.hex()),
    st.text(alphabet="abcdef0123456789ABCDEF:xyz+._-", max_size=80),
)


@FUZZ
@given(
    st.sampled_from(["alpine", "user/app", "127.0.0.1:5000/team/app", "[::1]:5000/a", "a.b/c"]),
    _tags,
    _digests,
)
def test_with_tag_and_with_digest_round_trip_or_refuse(name: str, tag: str, digest: str) -> None:
    ref = parse_reference(name)
    for make in (lambda: ref.with_tag(tag), lambda: ref.with_digest(digest)):
        try:
            derived = make()
        except InvalidReferenceError:
            continue
        assert parse_reference(str(derived)) == derived
        assert parse_reference(derived.familiar()) == derived


# --------------------------------------------------------------------------------------------
# Servers' JSON


def test_token_server_json_nested_too_deeply_is_an_authentication_error() -> None:
    """A token server's body is untrusted input too (was RecursionError)."""
    deep = b"[" * DEEP + b"]" * DEEP

    async def go() -> None:
        auth = TokenAuth(Credentials(username="u", password=Secret("p")))
        async with httpx.AsyncClient(auth=auth) as client:
            await client.get("https://registry.test/v2/a/manifests/x")

    with respx.mock:
        respx.get(url__startswith="https://registry.test/").respond(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/t",service="s"'}
        )
        respx.get(url__startswith="https://auth.test/").respond(200, content=deep)
        with pytest.raises(AuthenticationError, match="answered without a token"):
            asyncio.run(go())
        respx.get(url__startswith="https://auth.test/").respond(401, content=deep)
        with pytest.raises(AuthenticationError, match="refused the credentials of user 'u'"):
            asyncio.run(go())


def test_registry_error_body_nested_too_deeply_is_a_registry_error() -> None:
    deep = b"[" * 60_000  # within the 64 KiB read for an error body

    async def go() -> None:
        options = ClientOptions(backoff=0.001, retries=1)
        async with RegistryClient("registry.test", options=options) as client:
            await client.get_manifest("app", "x")

    with respx.mock:
        respx.get("https://registry.test/v2/app/manifests/x").respond(400, content=deep)
        with pytest.raises(RegistryError):
            asyncio.run(go())


def test_manifest_nested_too_deeply_is_a_registry_error() -> None:
    deep = b"[" * DEEP + b"]" * DEEP
    digest = sha256_digest(deep)
    spec = ManifestListSpec(
        image="registry.test/app:list", manifests=[{"image": "registry.test/app:a"}]
    )
    with respx.mock:
        respx.head("https://registry.test/v2/app/manifests/a").respond(
            200,
            headers={
                "Docker-Content-Digest": digest,
                "Content-Length": str(len(deep)),
                "Content-Type": DOCKER_MANIFEST,
            },
        )
        respx.get(f"https://registry.test/v2/app/manifests/{digest}").respond(
            200, content=deep, headers={"Content-Type": DOCKER_MANIFEST}
        )
        with pytest.raises(RegistryError):
            pushmanifest.push(spec, dry_run=True, client=ClientOptions(backoff=0.001))
