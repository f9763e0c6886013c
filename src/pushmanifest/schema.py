"""The JSON Schema (draft 2020-12) of a spec file, for editors and other tools.

Generated from the pydantic models that validate a spec (:class:`ManifestListSpec` and the models
it names), then completed where pydantic cannot know what the loader does:

- references and tags are validated by functions, so pydantic gives them no type: they are
  strings (a tag may be a YAML number, ``tags: [1.4]``, whose text is kept);
- the platform fields get the known values of :mod:`pushmanifest.platform` (Go's os and
  architecture lists, the aliases the loader rewrites, the variants of each architecture);
- every field gets a description, for completion and hover;
- ``x-`` keys (a place for YAML anchors) are allowed at every level, and ``origin`` (a field for
  code) is not a key of the file.

The package ships the result as ``spec.schema.json``; a test keeps that file equal to what this
module generates (``pushmanifest schema > src/pushmanifest/spec.schema.json`` updates it).

The schema describes the canonical spelling. The loader is more lenient, with a notice:
``Linux`` for ``linux``, ``8`` for variant ``v8``. It also checks what no schema can: the
reference grammar, ``${VAR}``, duplicate platforms. ``pushmanifest validate`` runs those checks.
"""

from __future__ import annotations

import json
from typing import Any

from .platform import ARCHITECTURE_ALIASES, KNOWN_ARCHITECTURES, KNOWN_OS, VARIANTS

__all__ = ["SCHEMA_DIALECT", "build_schema", "schema_text"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_EXTENSION_KEYS = {"^x-": {"description": "ignored: a place for YAML anchors (x-linux: &linux)"}}

_REFERENCE_HELP = (
    "[REGISTRY/]REPOSITORY[:TAG][@DIGEST], e.g. registry.example.com/team/app:1.0; "
    "${VAR} and ${VAR:-default} are expanded from the environment, $$ is a '$'"
)

_LIST_FIELDS = {
    "image": "The manifest list to push: " + _REFERENCE_HELP + ". A tag, not a digest "
    "(no tag: latest).",
    "tags": "More tags for the same list (${VAR} expanded).",
    "type": "The list's format: auto (an OCI index when any image is OCI, else a Docker list), "
    "docker or oci. An explicit --type other than auto wins.",
    "artifactType": "OCI 1.1: the media type of the artifact this index is (needs type: oci), "
    "e.g. application/vnd.example.bundle.v1+json (${VAR} expanded).",
    "subject": "OCI 1.1: the manifest this index refers to (needs type: oci): "
    + _REFERENCE_HELP
    + ". Its descriptor is read with a HEAD before anything is written.",
    "annotations": "Annotations of the list (an OCI image index only).",
    "manifests": "The images of the list, one per platform.",
}
_ENTRY_FIELDS = {
    "image": "A source image: a tag or a digest, " + _REFERENCE_HELP + ". An image, or a list "
    "(its entries are inlined); or an OCI image layout on disk, oci:PATH[:TAG] (its blobs are "
    "uploaded to the target).",
    "platform": "The platform of the image. Without it, it is read from the image's config; a "
    "partial platform (architecture only) takes the rest from there.",
    "annotations": "Annotations of this entry's descriptor in the list.",
    "platforms": "For a list as a source: keep only these platforms (os/arch[/variant]; a "
    "variant not given matches any), with their attestations. Not with 'platform'.",
}
_PLATFORM_FIELDS = {
    "architecture": "CPU architecture, Go's name (GOARCH); aliases such as aarch64, x86_64, armhf "
    "are rewritten with a notice.",
    "os": "Operating system, Go's name (GOOS). Without it, it is read from the image's config.",
    "variant": "CPU variant, one of the architecture's (arm: v6, v7; arm64: v8 ...).",
    "osversion": "Operating system version (Windows: 10.0.17763.1234); manifest-tool's "
    "spelling of os.version.",
    "os.version": "Operating system version (Windows: 10.0.17763.1234).",
    "osfeatures": "Required OS features (win32k); manifest-tool's spelling of os.features.",
    "os.features": "Required OS features (win32k).",
    "features": "Required CPU features (deprecated in OCI).",
}

_SCALAR_TEXT = {"type": ["string", "number", "boolean"]}  # YAML scalars keep their text
_TEXT_OR_NUMBER = {"type": ["string", "number"]}


def build_schema() -> dict[str, Any]:
    """The schema as a JSON object (a fresh dict each call)."""
    from .spec import ManifestListSpec

    schema = ManifestListSpec.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = schema.get("$defs", {})
    entry = _definition(defs, _only_ref(schema["properties"]["manifests"]["items"]))
    platform = _definition(defs, _only_ref(entry["properties"]["platform"]))

    _complete_list(schema)
    _complete_entry(entry)
    _complete_platform(platform)
    entry["description"] = "One image of the list, and its platform."
    platform["description"] = (
        "A platform, in manifest-tool's spelling (osversion, osfeatures) or OCI's (os.version, "
        "os.features)."
    )
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "pushmanifest spec",
        "description": "One manifest list to push (a YAML document each; several documents "
        "push several lists). The format of manifest-tool's from-spec.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def schema_text() -> str:
    """The schema as the shipped file holds it: indented JSON and a final newline."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def _only_ref(node: dict[str, Any]) -> str:
    """The ``$ref`` of a node that is a model, or a model or null."""
    if "$ref" in node:
        return str(node["$ref"])
    refs = [option["$ref"] for option in node.get("anyOf", ()) if "$ref" in option]
    if len(refs) != 1:
        raise RuntimeError(f"spec schema: expected one model here, got {node!r}")
    return str(refs[0])


def _definition(defs: dict[str, Any], ref: str) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise RuntimeError(f"spec schema: unknown reference {ref!r}")
    found: dict[str, Any] = defs[ref[len(prefix) :]]
    return found


def _properties(model: dict[str, Any], expected: dict[str, str]) -> dict[str, Any]:
    """The model's properties, checked to be exactly the fields described here."""
    properties: dict[str, Any] = model["properties"]
    missing = set(expected) - set(properties)
    unknown = set(properties) - set(expected)
    if missing or unknown:
        raise RuntimeError(
            f"spec schema: fields changed (new: {sorted(unknown)}, gone: {sorted(missing)}): "
            "describe them in pushmanifest/schema.py"
        )
    for name, description in expected.items():
        properties[name].pop("title", None)
        properties[name]["description"] = description
    model["patternProperties"] = dict(_EXTENSION_KEYS)
    return properties


def _annotations(node: dict[str, Any]) -> None:
    node["additionalProperties"] = dict(_SCALAR_TEXT)
    node["propertyNames"] = {"minLength": 1}


def _complete_list(schema: dict[str, Any]) -> None:
    schema["properties"].pop("origin", None)  # a field for code, not a key of the file
    properties = _properties(schema, _LIST_FIELDS)
    properties["image"].update(type="string", minLength=1)
    properties["tags"]["items"] = {**_TEXT_OR_NUMBER, "description": "a tag (${VAR} expanded)"}
    _annotations(properties["annotations"])
    properties["manifests"]["minItems"] = 1
    _set_values(properties["type"], ["auto", "docker", "oci"])
    _set_values(properties["artifactType"], None, {"type": "string", "pattern": "^[^/]+/[^/]+$"})
    _set_values(properties["subject"], None, {"type": "string", "minLength": 1})


def _complete_entry(entry: dict[str, Any]) -> None:
    properties = _properties(entry, _ENTRY_FIELDS)
    properties["image"].update(type="string", minLength=1)
    _annotations(properties["annotations"])
    _set_values(
        properties["platforms"],
        None,
        {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": "^[^/]+/[^/]+(/[^/]+)?$"},
        },
    )


def _complete_platform(platform: dict[str, Any]) -> None:
    properties = _properties(platform, _PLATFORM_FIELDS)
    architectures = sorted(KNOWN_ARCHITECTURES) + sorted(ARCHITECTURE_ALIASES)
    variants = sorted({v for known in VARIANTS.values() for v in known})
    # 386 written unquoted is a YAML number; the loader keeps its text.
    _set_values(properties["architecture"], [*architectures, 386])
    _set_values(properties["os"], sorted(KNOWN_OS))
    _set_values(properties["variant"], variants)
    for name in ("osversion", "os.version"):
        _set_values(properties[name], None, _TEXT_OR_NUMBER)
    for name in ("osfeatures", "os.features", "features"):
        _set_values(properties[name], None, {"type": "array", "items": dict(_TEXT_OR_NUMBER)})
    # The variants each architecture takes (one with none takes no variant).
    rules: list[dict[str, Any]] = []
    for arch in sorted(KNOWN_ARCHITECTURES):
        names: list[Any] = [arch, 386] if arch == "386" else [arch]
        names += [alias for alias, (target, _) in ARCHITECTURE_ALIASES.items() if target == arch]
        known = VARIANTS.get(arch, ())
        then = (
            {"properties": {"variant": {"enum": [*known, None]}}}
            if known
            else {"properties": {"variant": {"type": "null"}}}
        )
        when = {"properties": {"architecture": {"enum": names}}, "required": ["architecture"]}
        rules.append({"if": when, "then": then})
    # Two spellings of one field: one or the other.
    for pair in (["osversion", "os.version"], ["osfeatures", "os.features"]):
        rules.append({"not": {"required": pair}})
    platform["allOf"] = rules


def _set_values(
    node: dict[str, Any], values: list[Any] | None, shape: dict[str, Any] | None = None
) -> None:
    """Make ``node`` (a field that may also be null) one of ``values``, or of ``shape``."""
    nullable = any(option.get("type") == "null" for option in node.get("anyOf", ()))
    node.pop("anyOf", None)
    node.pop("type", None)
    node.pop("items", None)
    allowed: dict[str, Any] = {"enum": values} if values is not None else dict(shape or {})
    if nullable:
        if "enum" in allowed:
            allowed["enum"] = [*allowed["enum"], None]
        else:
            allowed = {"anyOf": [allowed, {"type": "null"}]}
    node.update(allowed)
