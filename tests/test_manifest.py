from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushmanifest.errors import InputError
from pushmanifest.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ManifestList,
    build_manifest_list,
    choose_list_media_type,
    go_json_marshal_indent,
    go_json_string,
    go_sorted_map,
    sha256_digest,
)
from pushmanifest.platform import Platform

AMD64 = "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51"
ARMV6 = "sha256:50b8c3e55c3365d624e7e10ae6a783d525e02b16924d4dcff0611f3e2544efaf"
ARMV7 = "sha256:5ba6c8710dd1369ce61603ab9b7a81b25f92d4a9f74956ab72a7ea75884f07ee"
ARM64 = "sha256:d182c920d56d5bf143d2406c07022ea0969e792c2e1650749defe28a6cb0cf2b"


def seed_entries(media_type: str = DOCKER_MANIFEST) -> list[Descriptor]:
    return [
        Descriptor(media_type, AMD64, 525, Platform("linux", "amd64")),
        Descriptor(media_type, ARMV6, 525, Platform("linux", "arm", "v6")),
        Descriptor(media_type, ARMV7, 526, Platform("linux", "arm", "v7")),
        Descriptor(media_type, ARM64, 1234, Platform("linux", "arm64", "v8")),
    ]


# What manifest-tool (Go's json.MarshalIndent of manifestlist.ManifestList) writes.
SEED_DOCKER_LIST = (
    b"{\n"
    b'  "schemaVersion": 2,\n'
    b'  "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",\n'
    b'  "manifests": [\n'
    b"    {\n"
    b'      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
    b'      "size": 525,\n'
    b'      "digest": "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51",\n'
    b'      "platform": {\n'
    b'        "architecture": "amd64",\n'
    b'        "os": "linux"\n'
    b"      }\n"
    b"    },\n"
    b"    {\n"
    b'      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
    b'      "size": 525,\n'
    b'      "digest": "sha256:50b8c3e55c3365d624e7e10ae6a783d525e02b16924d4dcff0611f3e2544efaf",\n'
    b'      "platform": {\n'
    b'        "architecture": "arm",\n'
    b'        "os": "linux",\n'
    b'        "variant": "v6"\n'
    b"      }\n"
    b"    },\n"
    b"    {\n"
    b'      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
    b'      "size": 526,\n'
    b'      "digest": "sha256:5ba6c8710dd1369ce61603ab9b7a81b25f92d4a9f74956ab72a7ea75884f07ee",\n'
    b'      "platform": {\n'
    b'        "architecture": "arm",\n'
    b'        "os": "linux",\n'
    b'        "variant": "v7"\n'
    b"      }\n"
    b"    },\n"
    b"    {\n"
    b'      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
    b'      "size": 1234,\n'
    b'      "digest": "sha256:d182c920d56d5bf143d2406c07022ea0969e792c2e1650749defe28a6cb0cf2b",\n'
    b'      "platform": {\n'
    b'        "architecture": "arm64",\n'
    b'        "os": "linux",\n'
    b'        "variant": "v8"\n'
    b"      }\n"
    b"    }\n"
    b"  ]\n"
    b"}"
)

# Go's specs-go/v1.Index: entry annotations come before platform; map keys sorted; HTML escaped.
SEED_OCI_INDEX = (
    b"{\n"
    b'  "schemaVersion": 2,\n'
    b'  "mediaType": "application/vnd.oci.image.index.v1+json",\n'
    b'  "manifests": [\n'
    b"    {\n"
    b'      "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
    b'      "digest": "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51",\n'
    b'      "size": 525,\n'
    b'      "annotations": {\n'
    b'        "org.example.flavor": "fast \\u0026 small"\n'
    b"      },\n"
    b'      "platform": {\n'
    b'        "architecture": "amd64",\n'
    b'        "os": "linux"\n'
    b"      }\n"
    b"    },\n"
    b"    {\n"
    b'      "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
    b'      "digest": "sha256:d182c920d56d5bf143d2406c07022ea0969e792c2e1650749defe28a6cb0cf2b",\n'
    b'      "size": 1234,\n'
    b'      "platform": {\n'
    b'        "architecture": "arm64",\n'
    b'        "os": "linux",\n'
    b'        "variant": "v8"\n'
    b"      }\n"
    b"    },\n"
    b"    {\n"
    b'      "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
    b'      "digest": "sha256:5ba6c8710dd1369ce61603ab9b7a81b25f92d4a9f74956ab72a7ea75884f07ee",\n'
    b'      "size": 2000,\n'
    b'      "platform": {\n'
    b'        "architecture": "amd64",\n'
    b'        "os": "windows",\n'
    b'        "os.version": "10.0.17763.1879",\n'
    b'        "os.features": [\n'
    b'          "win32k"\n'
    b"        ]\n"
    b"      }\n"
    b"    }\n"
    b"  ],\n"
    b'  "annotations": {\n'
    b'    "org.opencontainers.image.created": "2024-01-01T00:00:00Z",\n'
    b'    "org.opencontainers.image.description": "\\u003cb\\u003eCaf\xc3\xa9\\u003c/b\\u003e",\n'
    b'    "org.opencontainers.image.source": "https://example.com/app"\n'
    b"  }\n"
    b"}"
)


def test_media_types() -> None:
    assert DOCKER_MANIFEST == "application/vnd.docker.distribution.manifest.v2+json"
    assert DOCKER_MANIFEST_LIST == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert OCI_MANIFEST == "application/vnd.oci.image.manifest.v1+json"
    assert OCI_INDEX == "application/vnd.oci.image.index.v1+json"
    assert sorted(MANIFEST_MEDIA_TYPES) == sorted(
        [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX]
    )


def test_sha256_digest() -> None:
    assert sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    ("entries", "list_type", "expected"),
    [
        ([DOCKER_MANIFEST, DOCKER_MANIFEST], "auto", DOCKER_MANIFEST_LIST),
        ([DOCKER_MANIFEST, OCI_MANIFEST], "auto", OCI_INDEX),
        ([OCI_MANIFEST], "auto", OCI_INDEX),
        ([DOCKER_MANIFEST, OCI_INDEX], "auto", OCI_INDEX),
        ([], "auto", DOCKER_MANIFEST_LIST),
        ([OCI_MANIFEST], "docker", DOCKER_MANIFEST_LIST),
        ([DOCKER_MANIFEST], "oci", OCI_INDEX),
        ([], "oci", OCI_INDEX),
    ],
)
def test_choose_list_media_type(entries: list[str], list_type: str, expected: str) -> None:
    assert choose_list_media_type(entries, list_type) == expected
    assert choose_list_media_type(iter(entries), list_type) == expected


def test_choose_list_media_type_rejects_unknown_type() -> None:
    with pytest.raises(InputError, match="'v2' is not one of: auto, docker, oci"):
        choose_list_media_type([], "v2")


def test_docker_list_of_the_seed_platforms_is_byte_identical_to_manifest_tool() -> None:
    entries = seed_entries()
    for list_type in ("auto", "docker"):
        result = build_manifest_list(entries, list_type=list_type)
        assert result.data == SEED_DOCKER_LIST
        assert result.media_type == DOCKER_MANIFEST_LIST
        assert result.size == len(SEED_DOCKER_LIST) == 1317
        assert result.digest == "sha256:" + hashlib.sha256(SEED_DOCKER_LIST).hexdigest()
        assert result.manifests == tuple(entries)
        assert result.annotations == {}
    assert not SEED_DOCKER_LIST.endswith(b"\n")


def test_oci_index_with_annotations_is_byte_identical_to_manifest_tool() -> None:
    entries = [
        Descriptor(
            OCI_MANIFEST,
            AMD64,
            525,
            Platform("linux", "amd64"),
            annotations={"org.example.flavor": "fast & small"},
        ),
        Descriptor(OCI_MANIFEST, ARM64, 1234, Platform("linux", "arm64", "v8")),
        Descriptor(
            OCI_MANIFEST,
            ARMV7,
            2000,
            Platform("windows", "amd64", os_version="10.0.17763.1879", os_features=("win32k",)),
        ),
    ]
    annotations = {
        "org.opencontainers.image.source": "https://example.com/app",
        "org.opencontainers.image.description": "<b>Café</b>",
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
    }
    result = build_manifest_list(entries, list_type="auto", annotations=annotations)
    assert result.data == SEED_OCI_INDEX
    assert result.media_type == OCI_INDEX
    assert result.digest == sha256_digest(SEED_OCI_INDEX)
    assert result.size == len(SEED_OCI_INDEX)
    assert result.annotations == annotations
    assert build_manifest_list(entries, list_type="oci", annotations=annotations) == result


def test_docker_entries_forced_to_an_oci_index() -> None:
    result = build_manifest_list(seed_entries()[:1], list_type="oci")
    assert result.data == (
        b"{\n"
        b'  "schemaVersion": 2,\n'
        b'  "mediaType": "application/vnd.oci.image.index.v1+json",\n'
        b'  "manifests": [\n'
        b"    {\n"
        b'      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
        b'      "digest": "' + AMD64.encode() + b'",\n'
        b'      "size": 525,\n'
        b'      "platform": {\n'
        b'        "architecture": "amd64",\n'
        b'        "os": "linux"\n'
        b"      }\n"
        b"    }\n"
        b"  ]\n"
        b"}"
    )


def test_auto_gives_an_oci_index_when_any_entry_is_oci() -> None:
    entries = seed_entries()
    entries[2] = Descriptor(OCI_MANIFEST, ARMV7, 526, Platform("linux", "arm", "v7"))
    assert build_manifest_list(entries).media_type == OCI_INDEX


def test_a_docker_list_refuses_annotations() -> None:
    with pytest.raises(InputError, match="use --type oci") as info:
        build_manifest_list(seed_entries(), list_type="docker", annotations={"a": "b"})
    assert "the list" in str(info.value)
    with pytest.raises(InputError, match="use --type oci"):
        build_manifest_list(seed_entries(), annotations={"a": "b"})  # auto picks Docker
    annotated = [Descriptor(DOCKER_MANIFEST, AMD64, 1, Platform("linux", "amd64"), {"k": "v"})]
    with pytest.raises(InputError, match=f"entry {AMD64}"):
        build_manifest_list(annotated, list_type="docker")
    # Empty annotations are no annotations.
    assert build_manifest_list(seed_entries(), annotations={}).data == SEED_DOCKER_LIST


def test_annotations_must_be_strings() -> None:
    with pytest.raises(InputError, match="must map strings to strings"):
        build_manifest_list(seed_entries(), list_type="oci", annotations={"a": 1})  # type: ignore[dict-item]


def test_empty_list_has_an_empty_manifests_array() -> None:
    for list_type, media_type in (("docker", DOCKER_MANIFEST_LIST), ("oci", OCI_INDEX)):
        result = build_manifest_list([], list_type=list_type)
        assert result.data == (
            b'{\n  "schemaVersion": 2,\n  "mediaType": "' + media_type.encode() + b'",\n'
            b'  "manifests": []\n}'
        )


def test_entry_without_platform() -> None:
    entry = Descriptor(OCI_MANIFEST, AMD64, 7)
    oci = json.loads(build_manifest_list([entry]).data)
    assert oci["manifests"] == [{"mediaType": OCI_MANIFEST, "digest": AMD64, "size": 7}]
    # manifestlist.ManifestDescriptor.Platform is a struct value: Go writes its zero value.
    docker = json.loads(build_manifest_list([entry], list_type="docker").data)
    assert docker["manifests"][0]["platform"] == {"architecture": "", "os": ""}


def test_descriptor_keeps_its_own_annotations() -> None:
    annotations = {"a": "1"}
    descriptor = Descriptor(OCI_MANIFEST, AMD64, 1, annotations=annotations)
    annotations["b"] = "2"
    assert descriptor.annotations == {"a": "1"}
    assert hash(descriptor) == hash(Descriptor(OCI_MANIFEST, AMD64, 1, annotations={"c": "3"}))
    assert descriptor != Descriptor(OCI_MANIFEST, AMD64, 1)
    assert Descriptor(OCI_MANIFEST, AMD64, 1).annotations == {}


def test_manifest_list_is_a_plain_record() -> None:
    result = build_manifest_list(seed_entries())
    assert isinstance(result, ManifestList)
    assert json.loads(result.data)["manifests"][3]["platform"]["variant"] == "v8"


# -- Go's encoding/json ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", '"plain"'),
        ("", '""'),
        ("<script>&</script>", '"\\u003cscript\\u003e\\u0026\\u003c/script\\u003e"'),
        ("a\u2028b\u2029c", '"a\\u2028b\\u2029c"'),
        ('quote " backslash \\', '"quote \\" backslash \\\\"'),
        ("\n\r\t", '"\\n\\r\\t"'),
        ("\b\f", '"\\b\\f"'),  # Go >= 1.22
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x1b[0m", '"\\u001b[0m"'),
        ("\x7f", '"\x7f"'),
        ("/", '"/"'),
        ("'", '"\'"'),
        ("Café 日本 😀 \u00a0 \u0085 \ufeff", '"Café 日本 😀 \u00a0 \u0085 \ufeff"'),
        ("lone \ud800 surrogate", '"lone \\ufffd surrogate"'),
    ],
)
def test_go_json_string(text: str, expected: str) -> None:
    assert go_json_string(text) == expected


def test_go_json_string_writes_non_ascii_raw() -> None:
    encoded = go_json_marshal_indent("é😀")
    assert encoded == '"é😀"'.encode()
    assert encoded == b'"\xc3\xa9\xf0\x9f\x98\x80"'


def test_go_json_marshal_indent_layout() -> None:
    value = {
        "s": "x",
        "i": -3,
        "big": 2**63 - 1,
        "t": True,
        "f": False,
        "n": None,
        "empty_list": [],
        "empty_map": {},
        "list": [1, [2, []], {"k": "v"}],
        "tuple": ("a",),
    }
    assert go_json_marshal_indent(value) == (
        b"{\n"
        b'  "s": "x",\n'
        b'  "i": -3,\n'
        b'  "big": 9223372036854775807,\n'
        b'  "t": true,\n'
        b'  "f": false,\n'
        b'  "n": null,\n'
        b'  "empty_list": [],\n'
        b'  "empty_map": {},\n'
        b'  "list": [\n'
        b"    1,\n"
        b"    [\n"
        b"      2,\n"
        b"      []\n"
        b"    ],\n"
        b"    {\n"
        b'      "k": "v"\n'
        b"    }\n"
        b"  ],\n"
        b'  "tuple": [\n'
        b'    "a"\n'
        b"  ]\n"
        b"}"
    )
    assert go_json_marshal_indent([]) == b"[]"
    assert go_json_marshal_indent({}) == b"{}"
    assert go_json_marshal_indent(0) == b"0"
    assert go_json_marshal_indent({"<": "&"}) == b'{\n  "\\u003c": "\\u0026"\n}'


@pytest.mark.parametrize("value", [1.5, b"bytes", {1: "a"}, object(), {"a": {2.0}}])
def test_go_json_marshal_indent_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        go_json_marshal_indent(value)


def test_go_sorted_map_sorts_keys_by_utf8_bytes() -> None:
    mapping = {"b": 1, "a": 2, "B": 3, "é": 4, "\U0001f600": 5, "\uffff": 6, "": 7, "a.b": 8}
    assert list(go_sorted_map(mapping)) == ["", "B", "a", "a.b", "b", "é", "\uffff", "\U0001f600"]
    assert go_sorted_map(mapping) == mapping


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values)
def test_go_json_is_json_with_the_same_value(value: object) -> None:
    encoded = go_json_marshal_indent(value)
    assert not encoded.endswith(b"\n")
    decoded_text = encoded.decode("utf-8")
    assert json.loads(decoded_text) == _without_surrogates(value)
    # Go's escaping: none of these characters appear raw.
    assert not re.search("[<>&\u2028\u2029\x00-\x1f]", _strings_only(decoded_text))


def _without_surrogates(value: object) -> object:
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def _strings_only(text: str) -> str:
    # Drop the layout (newlines) so that only string contents are checked for raw controls.
    return text.replace("\n", "")


# -- Cross-check against Go itself, where a Go toolchain is installed -----------------------

_GO_PROGRAM = r"""
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
	Features     []string `json:"features,omitempty"`
}
type DistDescriptor struct {
	MediaType   string            `json:"mediaType,omitempty"`
	Size        int64             `json:"size,omitempty"`
	Digest      string            `json:"digest,omitempty"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
type ManifestDescriptor struct {
	DistDescriptor
	Platform Platform `json:"platform"`
}
type ManifestList struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType,omitempty"`
	Manifests     []ManifestDescriptor `json:"manifests"`
}
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Data         []byte            `json:"data,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
}
type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}
type Case struct {
	Type        string            `json:"type"`
	Entries     []Descriptor      `json:"entries"`
	Annotations map[string]string `json:"annotations"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		var c Case
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			panic(err)
		}
		var v interface{}
		if c.Type == "docker" {
			ml := ManifestList{SchemaVersion: 2,
				MediaType: "application/vnd.docker.distribution.manifest.list.v2+json"}
			for _, e := range c.Entries {
				var md ManifestDescriptor
				md.MediaType, md.Size, md.Digest = e.MediaType, e.Size, e.Digest
				md.Platform = *e.Platform
				ml.Manifests = append(ml.Manifests, md)
			}
			v = ml
		} else {
			v = Index{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json",
				Manifests: c.Entries, Annotations: c.Annotations}
		}
		out, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			panic(err)
		}
		fmt.Println(hex.EncodeToString(out))
	}
}
"""


@pytest.fixture(scope="module")
def go_marshaller(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain: the byte-for-byte cross-check against Go is skipped")
    work = tmp_path_factory.mktemp("gomarshal")
    (work / "main.go").write_text(_GO_PROGRAM)
    env = {"PATH": str(Path(go).parent), "HOME": str(work), "GO111MODULE": "off"}
    env["GOCACHE"] = str(work / "cache")
    subprocess.run(
        [go, "build", "-o", "marshal", "main.go"], cwd=work, env=env, check=True, timeout=300
    )
    return work / "marshal"


# Go before 1.22 wrote \b and \f as \u0008 and \u000c; keep them out so any Go version agrees.
_text = st.text(
    alphabet=st.characters(blacklist_characters="\b\f", blacklist_categories=["Cs"]), max_size=8
) | st.sampled_from(["<a>&b", "\u2028\u2029", "\x7f\x00\x1f", "Café 日本 😀", '"\\/'])
_platforms = st.builds(
    Platform,
    os=_text,
    architecture=_text,
    variant=_text,
    os_version=_text,
    os_features=st.lists(_text, max_size=2).map(tuple),
)
_annotations = st.dictionaries(_text, _text, max_size=3)
_entries = st.builds(
    Descriptor,
    media_type=st.sampled_from([DOCKER_MANIFEST, OCI_MANIFEST]),
    digest=_text,
    size=st.integers(1, 2**53),
    platform=_platforms,
    annotations=_annotations,
)


def test_bytes_match_go_encoding_json(go_marshaller: Path) -> None:
    cases: list[tuple[str, bytes]] = []

    @settings(max_examples=500, database=None, deadline=None)
    @given(st.sampled_from(["docker", "oci"]), st.lists(_entries, min_size=1, max_size=3))
    def collect(list_type: str, entries: list[Descriptor]) -> None:
        annotations = dict(entries[0].annotations)
        if list_type == "docker":
            entries = [Descriptor(e.media_type, e.digest, e.size, e.platform) for e in entries]
            annotations = {}
        built = build_manifest_list(entries, list_type=list_type, annotations=annotations)
        case = {"type": list_type, "annotations": annotations, "entries": [
            {"mediaType": e.media_type, "digest": e.digest, "size": e.size,
             "annotations": dict(e.annotations) or None, "platform": e.platform and {
                 "architecture": e.platform.architecture, "os": e.platform.os,
                 "os.version": e.platform.os_version, "variant": e.platform.variant,
                 "os.features": list(e.platform.os_features) or None}}
            for e in entries]}  # fmt: skip
        cases.append((json.dumps(case), built.data))

    collect()
    run = subprocess.run(
        [str(go_marshaller)],
        input="".join(line + "\n" for line, _ in cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    got = [bytes.fromhex(line) for line in run.stdout.split()]
    assert len(got) == len(cases)
    for (case, ours), go in zip(cases, got):
        assert ours == go, case
