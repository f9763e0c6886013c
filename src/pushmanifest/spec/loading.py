"""Loading specs: text, files and streams to validated models, with every problem positioned.

Each YAML document is composed to nodes, built to data with its marks (:mod:`.nodes`), and
validated (:mod:`.models`); syntax errors are explained by :mod:`.diagnostics`, validation
errors by :mod:`.problems`. Every problem of every document is raised at once, as a SpecError.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import IO, Any, Optional, Union, cast

import yaml
from pydantic import ValidationError

from .._records import record
from ..errors import SpecError, SpecProblem
from ..platform import Platform
from .models import (
    CONTEXT_KEY,
    LoadContext,
    ManifestEntrySpec,
    ManifestListSpec,
    duplicate_platforms,
)
from .nodes import (
    MAX_VALUES_IN_ALL,
    NULL_TAG,
    TOO_DEEP,
    TOO_MANY_IN_ALL,
    Builder,
    SpecLoader,
    TooDeep,
    fast_loader_for,
)
from .problems import (
    CODE_FILENAME,
    LIST_KEYS,
    Loc,
    Marks,
    line_note,
    position,
    unknown_key,
    validation_problems,
)

__all__ = ["MAX_SPEC_BYTES", "load_spec_file", "load_spec_stream", "load_spec_text"]

log = logging.getLogger("pushmanifest")

#: The most a spec (a file, a stream, a text) may hold, in UTF-8 bytes. A spec of a thousand lists
#: of five images is ~600 KiB and takes PyYAML seconds to read; more is not a spec but the wrong
#: file, /dev/zero or a pipe without end, which are read this far and no further.
MAX_SPEC_BYTES = 1 << 20
_TOO_LARGE = (
    f"the spec is larger than 1 MiB ({MAX_SPEC_BYTES} bytes), the most a spec may hold: "
    "is this the right file?"
)


#: The keys whose positions a spec keeps, for problems found after loading (spec.where(loc)).
_POSITIONED_KEYS = frozenset({"type", "artifactType", "subject", "annotations", "platforms"})


@record
class _Document:
    spec: Optional[ManifestListSpec]
    problems: list[SpecProblem]
    notices: list[SpecProblem]
    values: int = 0  # values built and mappings merged, counted against MAX_VALUES_IN_ALL


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
    fast = fast_loader_for(text)
    if fast is not None:
        try:
            return _load_documents(text, filename, variables, fast)
        except SpecError:
            pass  # found again, at PyYAML's positions and in its words, by the pure loader
    return _load_documents(text, filename, variables, SpecLoader)


def _load_documents(
    text: str, filename: str, variables: Mapping[str, str], loader: type
) -> list[ManifestListSpec]:
    """:func:`load_spec_text` with the YAML composed by ``loader``."""
    problems: list[SpecProblem] = []
    notices: list[SpecProblem] = []
    specs: list[ManifestListSpec] = []
    documents = 0
    values = 0
    try:
        for node in yaml.compose_all(text, Loader=loader):
            if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG):
                continue  # an empty document, e.g. after a trailing '---'
            documents += 1
            document = _load_document(node, filename, variables)
            problems.extend(document.problems)
            notices.extend(document.notices)
            if document.spec is not None:
                specs.append(document.spec)
            values += document.values
            if values > MAX_VALUES_IN_ALL:
                start = node.start_mark
                problems.append(
                    SpecProblem(filename, start.line + 1, start.column + 1, TOO_MANY_IN_ALL)
                )
                break
    except yaml.YAMLError as exc:
        # Imported here: a spec that parses (every run that pushes) never needs it.
        from .diagnostics import syntax_problem

        problems.append(syntax_problem(text, filename, exc))
    except TooDeep as exc:
        line, column = (exc.mark.line, exc.mark.column) if exc.mark is not None else (0, 0)
        raise SpecError([SpecProblem(filename, line + 1, column + 1, TOO_DEEP)]) from None
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

    builder = Builder(filename)
    data = builder.build(node, ())
    _drop_extension_keys(data)
    if "origin" in data:  # a field for code, not a key of the file
        mark = builder.key_marks[("origin",)]
        builder.problem(mark, unknown_key("origin", LIST_KEYS))
        del data["origin"]
    marks = Marks(builder.key_marks, builder.value_marks)
    problems = list(builder.problems)
    context = LoadContext(env=env)
    validator = ManifestListSpec.__pydantic_validator__
    try:
        spec = cast(
            ManifestListSpec, validator.validate_python(data, context={CONTEXT_KEY: context})
        )
    except ValidationError as exc:
        problems.extend(validation_problems(exc, filename, marks, skip=builder.broken))
        problems.extend(_duplicates_among_valid(data, env, filename, marks))
        return _Document(None, problems, [], builder.count)
    if problems:
        return _Document(None, problems, [], builder.count)

    spec = spec.model_copy(update={"origin": f"{filename}:{start.line + 1}"})
    spec._positions = {
        loc: f"{filename}:{mark.line + 1}:{mark.column + 1}"
        for loc, mark in builder.key_marks.items()
        if loc and loc[-1] in _POSITIONED_KEYS
    }
    notices: list[SpecProblem] = []
    found: list[tuple[Loc, str]] = list(context.notices)
    for mapping_id, items in context.platform_notices.items():
        path = builder.mapping_paths.get(mapping_id)
        if path is None:
            continue
        for key, message in items:
            found.append(((*path, key) if key else path, message))
    for loc, message in found:
        mark = position(marks, loc, "value")
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
    data: dict[str, Any], env: Mapping[str, str], filename: str, marks: Marks
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
            entry = validator.validate_python(raw, context={CONTEXT_KEY: LoadContext(env=env)})
        except ValidationError:
            continue
        platforms.append((index, cast(ManifestEntrySpec, entry).platform))
    problems: list[SpecProblem] = []
    for later, earlier, text in duplicate_platforms(platforms):
        mark = position(marks, ("manifests", later, "platform"), "key")
        problems.append(
            SpecProblem(
                filename,
                mark.line + 1,
                mark.column + 1,
                f"manifests[{later}]{line_note(marks, later)} has platform {text}, "
                f"as manifests[{earlier}]{line_note(marks, earlier)} has",
            )
        )
    return problems
