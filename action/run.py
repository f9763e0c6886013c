"""Step 2 of the action: turn the inputs into a spec and run ``pushmanifest from-spec --json``.

Run by the venv's python that step 1 (install.sh) made, so ``pushmanifest`` is importable.
Inputs come as environment variables (action.yml maps each ``inputs.x`` to ``INPUT_X``):

- ``INPUT_SPEC``: spec files, one per line; or
- ``INPUT_TAGS`` (full references; the first is the target), ``INPUT_SOURCES`` (digests in the
  target's repository, or full references) and ``INPUT_ANNOTATIONS`` (``KEY=VALUE`` lines, with
  docker/metadata-action's ``index:``/``manifest:``/... prefixes), from which a spec is written
  to ``$RUNNER_TEMP``: one list per repository named in the tags, the same images in each;
- ``INPUT_TYPE``, ``INPUT_APPEND``, ``INPUT_DRY_RUN``, ``INPUT_USERNAME``, ``INPUT_PASSWORD``,
  ``INPUT_ARGS`` (more options, shell-quoted).

Writes ``digest``, ``json`` and ``metadata`` (the ``--metadata-file`` document) to
``$GITHUB_OUTPUT`` (in the delimiter form, safe for any value), a summary to
``$GITHUB_STEP_SUMMARY`` when there is one, and exits with pushmanifest's status: 0 pushed, 1
registry or network failure, 2 bad input.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from pushmanifest.errors import InvalidReferenceError
from pushmanifest.reference import Reference

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_SHA256_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
# docker/metadata-action (and buildx --annotation) prefixes: LEVEL[PLATFORMS]:KEY=VALUE.
_ANNOTATION_PREFIX = re.compile(
    r"(?P<level>index|manifest|index-descriptor|manifest-descriptor)"
    r"(?:\[(?P<platforms>[^\]]*)\])?:(?P<key>.*)\Z"
)
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off", "")


class InputProblem(Exception):
    """An input that cannot be used: an error annotation, exit status 2."""


@dataclass
class Annotations:
    """Annotations by where they go; ``skipped`` gets a warning each."""

    on_list: dict[str, str] = field(default_factory=dict)
    on_entries: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def split_items(text: str) -> list[str]:
    """Items separated by newlines, spaces or commas (none of which a reference contains)."""
    return [item for item in re.split(r"[\s,]+", text) if item]


def boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InputProblem(f"{name}: {value!r} is not true or false")


def parse_annotations(text: str) -> Annotations:
    found = Annotations()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        key, equals, value = line.partition("=")
        if not equals:
            raise InputProblem(f"annotations line {number}: {line!r} is not KEY=VALUE")
        level = ""
        match = _ANNOTATION_PREFIX.match(key)
        if match is not None:
            if match.group("platforms") is not None:
                raise InputProblem(
                    f"annotations line {number}: {key!r}: annotations for some platforms only "
                    "are not supported; drop the [...]"
                )
            level, key = match.group("level"), match.group("key")
        key = key.strip()
        if not key:
            raise InputProblem(f"annotations line {number}: {line!r} has no key")
        if level in ("", "index"):
            found.on_list[key] = value
        elif level == "manifest-descriptor":
            found.on_entries[key] = value
        else:
            found.skipped.append(f"{level}:{key}")
    return found


def parse_tags(text: str) -> list[Reference]:
    tags: list[Reference] = []
    for item in split_items(text):
        try:
            ref = Reference.parse(item)
        except InvalidReferenceError as exc:
            raise InputProblem(f"tags: {exc}") from None
        if ref.digest is not None:
            raise InputProblem(f"tags: {item!r} is a digest reference: a list is pushed to tags")
        ref = ref.with_tag(ref.tag or "latest")
        if ref not in tags:
            tags.append(ref)
    return tags


def parse_sources(text: str, home: Reference) -> list[str]:
    """Full references of the sources; a digest alone is an image of ``home``'s repository."""
    sources: list[str] = []
    for item in split_items(text):
        if _HEX_DIGEST.match(item):
            item = f"sha256:{item}"
        if _SHA256_DIGEST.match(item):
            ref = Reference(home.registry, home.repository, None, item)
        else:
            try:
                ref = Reference.parse(item)
            except InvalidReferenceError as exc:
                raise InputProblem(f"sources: {exc}") from None
        if str(ref) not in sources:
            sources.append(str(ref))
    return sources


def build_spec(tags: list[Reference], sources: list[str], annotations: Annotations) -> str:
    """A spec of one list per repository named in ``tags``, as YAML (JSON is YAML)."""
    repositories: dict[tuple[str, str], list[Reference]] = {}
    for ref in tags:
        repositories.setdefault((ref.registry, ref.repository), []).append(ref)
    documents = []
    for refs in repositories.values():
        entries: list[dict[str, Any]] = [{"image": source} for source in sources]
        if annotations.on_entries:
            for entry in entries:
                entry["annotations"] = dict(annotations.on_entries)
        document: dict[str, Any] = {
            "image": str(refs[0]),
            "tags": [ref.tag for ref in refs[1:]],
            "manifests": entries,
        }
        if annotations.on_list:
            document["annotations"] = dict(annotations.on_list)
        documents.append(json.dumps(document, indent=2, ensure_ascii=False))
    return "\n---\n".join(documents) + "\n"


@dataclass
class Plan:
    argv: list[str]
    stdin: Optional[str]
    spec_text: str = ""
    notices: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Where --metadata-file writes the run's document (the output ``metadata``).
    metadata_path: str = ""


def plan(env: Mapping[str, str]) -> Plan:
    """The pushmanifest command for the inputs in ``env``; InputProblem if they do not fit."""

    def get(name: str) -> str:
        return env.get(f"INPUT_{name}", "")

    specs = [line.strip() for line in get("SPEC").splitlines() if line.strip()]
    annotations = parse_annotations(get("ANNOTATIONS"))
    list_type = get("TYPE").strip() or "auto"
    if list_type not in ("auto", "docker", "oci"):
        raise InputProblem(f"type: {list_type!r} is not auto, docker or oci")
    notices: list[str] = []
    warnings = [
        f"annotation {name!r} skipped: it is for the images (set it when they are built) or for "
        "an index holding this list, not for the list (use index: or manifest-descriptor:)"
        for name in annotations.skipped
    ]
    if (annotations.on_list or annotations.on_entries) and list_type == "auto":
        list_type = "oci"
        notices.append("annotations given: pushing an OCI image index (a Docker list has none)")

    spec_text = ""
    options: list[str] = []
    temp = env.get("RUNNER_TEMP") or env.get("TMPDIR") or "/tmp"
    if specs:
        if get("TAGS").strip() or get("SOURCES").strip():
            raise InputProblem("give either spec, or tags and sources, not both")
        if annotations.on_entries:
            raise InputProblem(
                "manifest-descriptor: annotations go in the spec's entries (annotations:)"
            )
        for key, value in annotations.on_list.items():
            options += ["--annotations", f"{key}={value}"]
        spec_paths = specs
    else:
        tags = parse_tags(get("TAGS"))
        if not tags:
            raise InputProblem("give spec, or tags (the list's references) and sources")
        sources = parse_sources(get("SOURCES"), tags[0])
        if not sources:
            raise InputProblem("sources: give the list's images (digests or references)")
        spec_text = build_spec(tags, sources, annotations)
        spec_path = os.path.join(temp, f"pushmanifest-{uuid.uuid4().hex}.yaml")
        with open(spec_path, "w", encoding="utf-8") as file:
            file.write(spec_text)
        spec_paths = [spec_path]

    argv = [sys.executable, "-m", "pushmanifest", "from-spec", *spec_paths, "--json"]
    argv += ["--type", list_type, *options]
    # Before ARGS: a --metadata-file of the user's own wins (then there is no output metadata).
    metadata_path = os.path.join(temp, f"pushmanifest-{uuid.uuid4().hex}-metadata.json")
    argv += ["--metadata-file", metadata_path]
    if boolean("append", get("APPEND")):
        argv.append("--append")
    if boolean("dry-run", get("DRY_RUN")):
        argv.append("--dry-run")
    username, password = get("USERNAME").strip(), get("PASSWORD")
    stdin: Optional[str] = None
    if username or password:
        if not (username and password):
            raise InputProblem("username and password go together")
        argv += ["--username", username, "--password-stdin"]
        stdin = password + "\n"
    try:
        argv += shlex.split(get("ARGS"))
    except ValueError as exc:
        raise InputProblem(f"args: {exc}") from None
    return Plan(argv, stdin, spec_text, notices, warnings, metadata_path)


def write_outputs(path: str, outputs: Mapping[str, str]) -> None:
    """Append ``outputs`` to a $GITHUB_OUTPUT file, each as NAME<<DELIMITER (any value fits)."""
    with open(path, "a", encoding="utf-8") as file:
        for name, value in outputs.items():
            delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
            file.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def _summary(results: list[dict[str, Any]], dry_run: bool) -> str:
    lines = ["### pushmanifest" + (" (dry run: nothing written)" if dry_run else ""), ""]
    lines += ["| list | tags | digest | entries |", "| --- | --- | --- | --- |"]
    for result in results:
        tags = ", ".join(f"`{t}`" for t in result.get("tags", []))
        lines.append(
            f"| `{result['target']}` | {tags} | `{result['digest']}` | "
            f"{len(result.get('manifests', []))} |"
        )
    return "\n".join(lines) + "\n"


def main(env: Mapping[str, str]) -> int:
    try:
        planned = plan(env)
    except InputProblem as exc:
        print(f"::error title=pushmanifest::{exc}", flush=True)
        return 2
    for message in planned.notices:
        print(f"::notice title=pushmanifest::{message}")
    for message in planned.warnings:
        print(f"::warning title=pushmanifest::{message}")
    if planned.spec_text:
        print("::group::the spec pushed")
        print(planned.spec_text, end="")
        print("::endgroup::")
    # argv never holds the password (it goes on stdin): it can be shown whole.
    print("$ pushmanifest " + " ".join(shlex.quote(a) for a in planned.argv[3:]), flush=True)
    completed = subprocess.run(
        planned.argv, input=planned.stdin, stdout=subprocess.PIPE, text=True, check=False
    )
    metadata: Optional[str] = None  # the output "metadata", as docker/build-push-action's
    if os.path.isfile(planned.metadata_path):  # also after a failure: never left behind
        with open(planned.metadata_path, encoding="utf-8") as file:
            metadata = file.read().rstrip("\n")
        os.unlink(planned.metadata_path)
    results: list[dict[str, Any]] = []
    for line in completed.stdout.splitlines():
        try:
            results.append(json.loads(line))
        except ValueError:
            print(line)  # not a result: pass it on
    for result in results:
        print(f"Digest: {result['digest']} {result['size']}  {result['target']}")
    if completed.returncode != 0:
        return completed.returncode
    if not results:
        print("::error title=pushmanifest::pushmanifest printed no result", flush=True)
        return 1
    outputs = {"digest": results[0]["digest"], "json": json.dumps(results)}
    if metadata is not None:
        outputs["metadata"] = metadata
    output_file = env.get("GITHUB_OUTPUT")
    if output_file:
        write_outputs(output_file, outputs)
    summary_file = env.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as file:
            file.write(_summary(results, "--dry-run" in planned.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
