"""From YAML text to plain data, remembering where every key and value came from.

PyYAML composes the text into nodes that carry their marks (line, column); :class:`Builder` turns
a document's nodes into dicts, lists and strings, resolving aliases and merge keys (``<<``) and
keeping each key's and value's mark by path. Aliases and merge keys can make a short text expand
without end, and nest deeper than the stack: both are bounded here, and every limit passed is a
positioned problem.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import yaml

from ..errors import SpecProblem
from .problems import Loc

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "MAX_VALUES_IN_ALL",
    "NULL_TAG",
    "TOO_DEEP",
    "TOO_MANY_IN_ALL",
    "Builder",
    "SpecLoader",
    "TooDeep",
    "fast_loader_for",
]

NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases and merge keys ('<<') let a short text expand to far more data than it holds: a spec
# needs some hundreds of values, a large one some thousands; every value built and every mapping
# merged counts.
MAX_VALUES = 100_000
TOO_MANY = (
    f"the document expands to more than {MAX_VALUES} values through aliases ('*name') and "
    "merge keys ('<<'): a spec needs far fewer"
)
# All the documents of a text together: each is bounded by MAX_VALUES, their number by the size
# of the text, but not their product without this.
MAX_VALUES_IN_ALL = 4 * MAX_VALUES
TOO_MANY_IN_ALL = (
    f"the documents expand to more than {MAX_VALUES_IN_ALL} values in all through aliases "
    "('*name') and merge keys ('<<'): a spec needs far fewer"
)
# A spec nests 5 levels deep (manifests, an entry, its platform, features, a feature); far
# deeper nesting exhausts the stack of PyYAML's (recursive) composer and of the builder below.
MAX_DEPTH = 50
TOO_DEEP = (
    f"the document nests more than {MAX_DEPTH} levels deep; a spec needs 5 at most "
    "(manifests, an entry, its platform, features)"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALAR_KINDS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean (YAML reads yes/no/on/off/true/false so)",
    "tag:yaml.org,2002:timestamp": "a date",
    NULL_TAG: "empty",
}


class Builder:
    """Builds Python data from a composed document, with the mark of every key and value.

    Scalars keep their source text whatever YAML resolves them to, as Go's yaml does for string
    fields: ``tags: [1.10]`` means the tag "1.10", ``architecture: 386`` the string "386".
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.key_marks: dict[Loc, yaml.Mark] = {}
        self.value_marks: dict[Loc, yaml.Mark] = {}
        self.mapping_paths: dict[int, Loc] = {}
        self.problems: list[SpecProblem] = []
        # Paths whose value could not be built: validation errors there only repeat the problem.
        self.broken: set[Loc] = set()
        # Values built and mappings merged, counted against MAX_VALUES.
        self.count = 0
        self._too_many = False
        self._too_deep = False

    def problem(self, mark: yaml.Mark, message: str) -> None:
        self.problems.append(SpecProblem(self.filename, mark.line + 1, mark.column + 1, message))

    def _within_limits(self, mark: yaml.Mark, path: Loc, depth: int, through: str) -> bool:
        """Count one value (or one merged mapping) at ``depth``; False, reported once, past a limit.

        Once past the count, every later call fails at once: nothing more is built or merged.
        """
        self.count += 1
        if self.count > MAX_VALUES:
            if not self._too_many:
                self._too_many = True
                self.problem(mark, TOO_MANY)
        elif depth > MAX_DEPTH:  # through aliases or merges: their events nest no deeper
            if not self._too_deep:
                self._too_deep = True
                self.problem(mark, f"{TOO_DEEP} (through {through})")
        else:
            return True
        self.broken.add(path)
        return False

    def build(self, node: yaml.Node, path: Loc, active: tuple[yaml.Node, ...] = ()) -> Any:
        self.value_marks[path] = node.start_mark
        if not self._within_limits(node.start_mark, path, len(path), "aliases"):
            return None
        if any(node is a for a in active):
            self.problem(node.start_mark, "this alias refers to the node that contains it")
            self.broken.add(path)
            return None
        if isinstance(node, yaml.ScalarNode):
            if self._not_text(node):
                self.broken.add(path)
                return None
            return None if node.tag == NULL_TAG else node.value
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, (*path, index), (*active, node))
                for index, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        result = self.mapping(node, path, (*active, node))
        self.mapping_paths[id(result)] = path
        return result

    def mapping(
        self, node: yaml.MappingNode, path: Loc, active: tuple[yaml.Node, ...]
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # Merged keys (<<: *anchor) first, so that the mapping's own keys override them.
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node):
                    if any(source is a for a in active):
                        self.problem(value_node.start_mark, "this merge refers to its own mapping")
                        continue
                    # A merged mapping counts as a value, and each merge as a level (``active``
                    # holds the enclosing collections and merged mappings): merges of merges of
                    # empty mappings build no value at all, yet can expand without end.
                    depth = len(active) + 1
                    if not self._within_limits(value_node.start_mark, path, depth, "merge keys"):
                        return result
                    result.update(self.mapping(source, path, (*active, source)))
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node)
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.problem(
                    key_node.start_mark,
                    f"key '{key}' appears twice in this mapping, on lines {first_line[key]} "
                    f"and {line}: keep one (YAML would silently use the last)",
                )
                continue
            first_line[key] = line
            key_path = (*path, key)
            self.key_marks[key_path] = key_node.start_mark
            result[key] = self.build(value_node, key_path, active)
        return result

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(item, yaml.MappingNode) for item in node.value
        ):
            return list(node.value)
        self.problem(node.start_mark, "'<<' merges a mapping, or a list of mappings (e.g. *name)")
        return []

    def _not_text(self, node: yaml.ScalarNode) -> bool:
        """Report a scalar holding a lone surrogate, which a "\\uD83D" escape can produce.

        It is not text: it cannot be encoded (in a list's JSON, in a message), so it must not
        get past loading.
        """
        found = _SURROGATE.search(node.value)
        if found is None:
            return False
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        self.problem(
            node.start_mark,
            f"{shown!r} holds U+{ord(found.group()):04X}, half of a UTF-16 surrogate pair "
            "(from a '\\u' escape), which is not a character: write the character itself, or "
            "escape it whole with '\\U' and 8 hex digits",
        )
        return True

    def key(self, node: yaml.Node) -> Optional[str]:
        if isinstance(node, yaml.ScalarNode):
            if self._not_text(node):
                return None
            if node.tag == _STR_TAG:
                return str(node.value)
            kind = _SCALAR_KINDS.get(node.tag, f"of type {node.tag}")
            if node.tag == NULL_TAG:
                self.problem(node.start_mark, "a key is empty: give it a name")
            else:
                self.problem(
                    node.start_mark,
                    f"key {node.value!r} is {kind}, not a string: quote it ('{node.value}')",
                )
            return None
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        self.problem(node.start_mark, f"a key must be a plain string, not {kind}")
        return None


class TooDeep(Exception):
    def __init__(self, mark: Optional[yaml.Mark]) -> None:
        super().__init__(TOO_DEEP)
        self.mark = mark


class _DepthLimit:
    """A composer mix-in that stops where the text nests deeper than any spec does.

    PyYAML's composer recurses once per level, and would raise RecursionError.
    """

    _depth = 0

    def compose_node(self, parent: Optional[yaml.Node], index: int) -> Optional[yaml.Node]:
        loader: Any = self
        # The two classes by name: libyaml's check_event compares classes, not isinstance.
        if not loader.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            return super().compose_node(parent, index)  # type: ignore[misc,no-any-return]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooDeep(loader.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[misc,no-any-return]
        finally:
            self._depth -= 1


class SpecLoader(_DepthLimit, yaml.SafeLoader):
    """A SafeLoader whose composer stops where the text nests deeper than any spec does
    (pure Python: reader, scanner and parser too). Its errors are the ones explained to users
    (:mod:`.diagnostics`)."""


def _fast_loader_class() -> Optional[type]:
    """Python's composer (with the depth limit) over libyaml's parser, where PyYAML has it.

    libyaml scans and parses ~8x faster than PyYAML's Python reader, scanner and parser; its
    events carry the same marks (line, column) for the text :func:`fast_loader_for` lets it
    read. The composer stays PyYAML's own (libyaml's C one has no depth limit and recurses
    without bound), and so do the resolver and the tags.
    """
    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return None
    from yaml.composer import Composer
    from yaml.resolver import Resolver

    class FastSpecLoader(_DepthLimit, Composer, CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)

    return FastSpecLoader


#: The loader on libyaml's parser; None without libyaml (tests set it to None: the pure one).
FAST_LOADER: Optional[type] = _fast_loader_class()
# Where libyaml and PyYAML could disagree, the pure loader reads the text: libyaml gets printable
# ASCII and line breaks only (what a character is, which are allowed, and the columns after a
# multi-byte one are then the same), without tabs (libyaml allows them where PyYAML does not),
# tags ('!'), complex keys ('?'), block scalars ('|', '>') and directives ('%'), where the two
# part in what they accept or mark. Nearly every spec qualifies.
_NOT_FOR_LIBYAML = re.compile(r"[^\n\r\x20-\x7e]|[!?|>%]")


def fast_loader_for(text: str) -> Optional[type]:
    """The libyaml loader where it may read ``text``, else None (use :class:`SpecLoader`).

    Only for a text then found to be a valid spec: the loader reads a text with any problem
    again with :class:`SpecLoader`, whose positions and words are the ones users see (libyaml
    marks an empty value elsewhere, for one).
    """
    if FAST_LOADER is None or _NOT_FOR_LIBYAML.search(text):
        return None
    return FAST_LOADER
