"""The JSON Schema of the spec: generated from the models, shipped, and agreeing with the loader."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from pushmanifest.errors import SpecError
from pushmanifest.schema import SCHEMA_DIALECT, build_schema, schema_text
from pushmanifest.spec import load_spec_text
from support.cli import run_cli

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")

ROOT = Path(__file__).resolve().parent.parent
BROKEN = {"seed-broken.yaml"}  # a YAML syntax error: no document for a schema to see
SPEC_FILES = sorted(
    [
        *(ROOT / "examples").glob("*.yaml"),
        *(ROOT / "examples" / "dockerhub").glob("*.yaml"),
        *(p for p in (ROOT / "tests" / "data" / "specs").glob("*.yaml") if p.name not in BROKEN),
    ]
)


def validator() -> Any:
    return jsonschema.Draft202012Validator(build_schema())


def documents(text: str) -> list[Any]:
    """The YAML documents as an editor's language server sees them: JSON, keys as strings."""
    return [
        json.loads(json.dumps(doc, default=str))
        for doc in yaml.safe_load_all(text)
        if doc is not None
    ]


def schema_errors(text: str) -> list[str]:
    return [e.message for doc in documents(text) for e in validator().iter_errors(doc)]


def test_the_shipped_file_is_the_generated_schema() -> None:
    shipped = resources.files("pushmanifest").joinpath("spec.schema.json").read_text("utf-8")
    assert shipped == schema_text(), "run: pushmanifest schema > src/pushmanifest/spec.schema.json"


def test_the_command_prints_it() -> None:
    result = run_cli("schema", timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == schema_text()
    assert json.loads(result.stdout)["$schema"] == SCHEMA_DIALECT


def test_it_is_a_valid_draft_2020_12_schema() -> None:
    schema = build_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator


def test_every_field_is_described_and_platform_values_are_listed() -> None:
    from pushmanifest.platform import KNOWN_ARCHITECTURES, KNOWN_OS, VARIANTS

    schema = build_schema()
    models = [schema, *schema["$defs"].values()]
    assert len(models) == 3
    for model in models:
        assert model["additionalProperties"] is False
        assert model["description"]
        for name, field in model["properties"].items():
            assert field.get("description"), name
    assert "origin" not in schema["properties"]
    platform = schema["$defs"]["PlatformSpec"]["properties"]
    assert set(KNOWN_OS) <= set(platform["os"]["enum"])
    assert set(KNOWN_ARCHITECTURES) | {"aarch64", "x86_64", "armhf"} <= set(
        platform["architecture"]["enum"]
    )
    assert set(VARIANTS["arm"]) | set(VARIANTS["arm64"]) <= set(platform["variant"]["enum"])


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_and_test_spec_is_valid(path: Path) -> None:
    text = path.read_text()
    assert documents(text)
    assert schema_errors(text) == []


def test_the_corpus_is_not_empty() -> None:
    names = {p.name for p in SPEC_FILES}
    assert {"multi-arch-manifest.yaml", "seed.yaml", "windows.yaml", "env.yaml"} <= names
    assert len(SPEC_FILES) >= 6


ENTRY = "{image: a/b:2, platform: {os: linux, architecture: amd64}}"

# Documents that load, and the schema must accept too (spellings the loader keeps as text).
GOOD = [
    f"image: a/b:1\ntags: [1.4, '1', latest]\nmanifests: [{ENTRY}]\n",
    f"image: a/b:1\nannotations: {{a: 1, b: true, c: x}}\nmanifests: [{ENTRY}]\n",
    "image: a/b:1\nmanifests: [{image: a/b:2}]\n",  # platform from the image's config
    "image: a/b:1\nmanifests: [{image: a/b:2, platform: {architecture: arm, variant: v7}}]\n",
    "image: a/b:1\nmanifests: [{image: a/b:2, platform: {os: linux, architecture: 386}}]\n",
    "image: a/b:1\nmanifests: [{image: a/b:2, platform: {os: linux, architecture: aarch64}}]\n",
    "image: a/b:1\nmanifests: [{image: a/b:2, platform: {os: linux, architecture: armhf}}]\n",
    "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform:\n      os: windows\n"
    "      architecture: amd64\n      os.version: 10.0.20348.1\n      os.features: [win32k]\n",
    "x-linux: &linux {os: linux}\nimage: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {<<: *linux, architecture: arm64}}\n",
]

# Shape errors of the bad-spec corpus (tests/test_spec.py): the loader refuses each, and so must
# the schema.
BAD = {
    "unknown key": f"imgae: a/b:1\nmanifests: [{ENTRY}]\n",
    "unknown entry key": "image: a/b:1\nmanifests: [{image: a/b:2, platfrom: {}}]\n",
    "unknown platform key": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: arm, varient: v7}}\n",
    "origin is for code": f"image: a/b:1\norigin: x\nmanifests: [{ENTRY}]\n",
    "key not a string": f"image: a/b:1\n1: x\nmanifests: [{ENTRY}]\n",
    "image missing": f"tags: [x]\nmanifests: [{ENTRY}]\n",
    "entry image missing": "image: a/b:1\nmanifests: [{platform: {architecture: amd64}}]\n",
    "architecture missing": "image: a/b:1\nmanifests: [{image: a/b:2, platform: {variant: v7}}]\n",
    "manifests missing": "image: a/b:1\n",
    "manifests empty": "image: a/b:1\nmanifests: []\n",
    "manifests null": "image: a/b:1\nmanifests:\n",
    "image a list": f"image: [a]\nmanifests: [{ENTRY}]\n",
    "image null": "image: a/b:1\nmanifests: [{image: , platform: {architecture: amd64}}]\n",
    "tags a string": f"image: a/b:1\ntags: latest\nmanifests: [{ENTRY}]\n",
    "tag a mapping": f"image: a/b:1\ntags: [ok, {{a: b}}]\nmanifests: [{ENTRY}]\n",
    "tag null": f"image: a/b:1\ntags: [ok, ~]\nmanifests: [{ENTRY}]\n",
    "annotations a list": f"image: a/b:1\nannotations: [x]\nmanifests: [{ENTRY}]\n",
    "annotation a list": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, annotations: {a: [1]}, platform: {os: linux, architecture: amd64}}\n",
    "annotation null": f"image: a/b:1\nannotations: {{a: ~}}\nmanifests: [{ENTRY}]\n",
    "entry a string": "image: a/b:1\nmanifests: [just-a-string]\n",
    "platform a string": "image: a/b:1\nmanifests: [{image: a/b:2, platform: linux/amd64}]\n",
    "osfeatures a string": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: arm64, osfeatures: x}}\n",
    "feature a mapping": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: arm64, features: [a, {b: c}]}}\n",
    "os.version twice": "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform:\n"
    "      {os: windows, architecture: amd64, osversion: '1', os.version: '2'}\n",
    "os.features twice": "image: a/b:1\nmanifests:\n  - image: a/b:2\n    platform:\n"
    "      {os: windows, architecture: amd64, osfeatures: [a], os.features: [b]}\n",
    "unknown os": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linx, architecture: amd64}}\n",
    "unknown architecture": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: amd46}}\n",
    "variant glued": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: arm64v8}}\n",
    "variant of another architecture": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: arm, variant: v9}}\n",
    "variant where none is": "image: a/b:1\nmanifests:\n"
    "  - {image: a/b:2, platform: {os: linux, architecture: s390x, variant: v1}}\n",
    "a document that is a list": f"- image: a/b:1\n  manifests: [{ENTRY}]\n",
    "a second document broken": f"image: a/b:1\nmanifests: [{ENTRY}]\n---\nimage: a/c:1\n",
}


@pytest.mark.parametrize("text", GOOD)
def test_what_loads_is_valid(text: str) -> None:
    assert load_spec_text(text, "s.yaml", env={})
    assert schema_errors(text) == []


@pytest.mark.parametrize("text", BAD.values(), ids=list(BAD))
def test_shape_errors_are_rejected_by_the_loader_and_the_schema(text: str) -> None:
    with pytest.raises(SpecError):
        load_spec_text(text, "s.yaml", env={})
    assert schema_errors(text) != []


def test_the_readme_points_editors_at_the_shipped_file() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "yaml-language-server: $schema=" in line]
    assert lines, "the README shows the yaml-language-server line"
    url = lines[0].split("$schema=", 1)[1].strip()
    assert url.endswith("/main/src/pushmanifest/spec.schema.json")
    assert (ROOT / "src" / "pushmanifest" / "spec.schema.json").is_file()
