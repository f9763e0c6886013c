"""YAML syntax errors in plain words: what went wrong, and where to fix it.

PyYAML says where it stopped ("mapping values are not allowed here"); these functions look at the
lines around that mark to say what the writer most likely did (a key that does not line up, a
quote left open, a bracket never closed, ``${VAR}`` unquoted in a flow list) and where.
They read text only: no pydantic, no models.
"""

from __future__ import annotations

import re
from typing import Optional

import yaml
from yaml.reader import ReaderError

from .._records import record
from ..errors import SpecProblem

__all__ = [
    "KeyLine",
    "char_at",
    "explain",
    "flow_opener",
    "in_list_entry",
    "key_line",
    "line_up",
    "quote_end",
    "syntax_problem",
    "unclosed_quote",
]

_KEY_LINE = re.compile(
    r"(?P<lead>[ ]*(?:-[ ]+)*)"
    r"(?P<key>\"[^\"]*\"|'[^']*'|[^\s#\"'\[\]{},&*!|>%@`][^#]*?)"
    r"[ ]*(?P<colon>:)(?=[ ]|$)[ ]*(?P<value>.*)$"
)
_OPENS_BLOCK = re.compile(r"(?:(?:[&!]\S*)\s*)*(?:[|>][-+0-9]*\s*)?(?:#.*)?\Z")


@record(frozen=True)
class KeyLine:
    number: int  # 1-based
    key: str
    column: int
    dash: bool
    value: str
    colon: int

    @property
    def has_value(self) -> bool:
        return not _OPENS_BLOCK.match(self.value)


def key_line(lines: list[str], index: int) -> Optional[KeyLine]:
    match = _KEY_LINE.match(lines[index])
    if match is None:
        return None
    lead = match.group("lead")
    return KeyLine(
        number=index + 1,
        key=match.group("key"),
        column=len(lead),
        dash="-" in lead,
        value=match.group("value").strip(),
        colon=match.start("colon"),
    )


def _significant(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def line_up(lines: list[str], index: int, *, deeper_needs_value: bool) -> Optional[str]:
    """Explain a key whose indentation lines up with no key above it, or None.

    The candidates are the nearest key above and the keys of the mappings enclosing it (each
    less indented than the last); the nearest in indentation wins, the nearest in lines on a tie.
    """
    current = key_line(lines, index)
    if current is None:
        return None
    candidates: list[KeyLine] = []
    for above in range(index - 1, -1, -1):
        if lines[above].startswith(("---", "...")):
            break
        if not _significant(lines[above]):
            continue
        found = key_line(lines, above)
        if found is None:
            continue
        if not candidates or found.column < candidates[-1].column:
            candidates.append(found)
        if found.column == 0:
            break
    if not candidates:
        return None
    best = min(candidates, key=lambda c: abs(c.column - current.column))
    if best.column == current.column:
        return None
    if current.column > best.column and deeper_needs_value and not best.has_value:
        return None  # nesting under a key without a value is fine: something else is wrong
    diff = current.column - best.column
    fix = f"remove {_plural(diff, 'space')}" if diff > 0 else f"add {_plural(-diff, 'space')}"
    what = "entry" if in_list_entry(lines, best) else "mapping"
    message = (
        f"'{current.key}:' is indented {_plural(current.column, 'space')} but '{best.key}:' "
        f"above it (line {best.number}) is at {best.column}: keys of the same {what} must "
        f"line up ({fix})"
    )
    for other in candidates:
        if other is not best and abs(other.column - current.column) == abs(diff):
            other_diff = current.column - other.column
            verb = "remove" if other_diff > 0 else "add"
            message += (
                f", or {verb} {_plural(abs(other_diff), 'space')} to line it up with "
                f"'{other.key}:' (line {other.number})"
            )
    return message


def in_list_entry(lines: list[str], key: KeyLine) -> bool:
    """Whether ``key`` belongs to a mapping that is an item of a list ("- image: ...")."""
    if key.dash:
        return True
    for above in range(key.number - 2, -1, -1):
        if not _significant(lines[above]):
            continue
        found = key_line(lines, above)
        indent = len(lines[above]) - len(lines[above].lstrip(" "))
        if found is not None and found.column == key.column:
            if found.dash:
                return True
            continue
        if (found.column if found is not None else indent) < key.column:
            return False
    return False


def _previous_significant(lines: list[str], index: int) -> Optional[int]:
    for above in range(index - 1, -1, -1):
        if _significant(lines[above]):
            return above
    return None


_QUOTE_START = re.compile(r"[ ]*(?:-[ ]+)*(?:[^\s#'\"][^#]*?:[ ]+)?(?P<quote>['\"])")


def quote_end(text: str, quote: str) -> int:
    """Index just after the closing quote in ``text`` (which starts after the opening), or -1."""
    i = 0
    while i < len(text):
        char = text[i]
        if quote == '"' and char == "\\":
            i += 2
            continue
        if char == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return -1


def unclosed_quote(lines: list[str], error_line: int) -> Optional[tuple[int, int, str, int]]:
    """A quote opened before ``error_line`` and closed only on a later line (or never).

    Returns (line index, column, quote, line index where it closes or -1).
    """
    for index in range(error_line - 1, -1, -1):
        line = lines[index]
        if line.startswith(("---", "...")):
            break
        match = _QUOTE_START.match(line)
        if match is None:
            continue
        column = match.start("quote")
        quote = match.group("quote")
        if quote_end(line[column + 1 :], quote) >= 0:
            continue
        for later in range(index + 1, len(lines)):
            if quote_end(lines[later], quote) >= 0:
                return (index, column, quote, later) if later <= error_line else None
        return index, column, quote, -1
    return None


def char_at(lines: list[str], line: int, column: int) -> str:
    """The character at a mark, or "" when the mark is past the end (YAML marks end of stream)."""
    if 0 <= line < len(lines) and 0 <= column < len(lines[line]):
        return lines[line][column]
    return ""


def flow_opener(
    lines: list[str], context_mark: yaml.Mark, mark: yaml.Mark
) -> Optional[tuple[int, int, str]]:
    """The '[' or '{' a flow-collection error is about: (line index, column, bracket), or None.

    The context mark is that bracket for "while parsing a flow sequence/mapping"; for "while
    parsing a flow node" it is where the missing node was expected (possibly the end of the
    stream), so the innermost bracket still open before the problem is found by scanning.
    """
    char = char_at(lines, context_mark.line, context_mark.column)
    if char in ("[", "{"):
        return context_mark.line, context_mark.column, char
    stack: list[tuple[int, int, str]] = []
    for index in range(min(mark.line + 1, len(lines))):
        text = lines[index] if index < mark.line else lines[index][: mark.column]
        quote = ""
        column = 0
        while column < len(text):
            char = text[column]
            if quote:
                if char == "\\" and quote == '"':
                    column += 1
                elif char == quote:
                    quote = ""
            elif char in ("'", '"'):
                quote = char
            elif char == "#" and (column == 0 or text[column - 1] in " \t"):
                break
            elif char in ("[", "{"):
                stack.append((index, column, char))
            elif char in ("]", "}") and stack:
                stack.pop()
            column += 1
    return stack[-1] if stack else None


def syntax_problem(text: str, filename: str, exc: yaml.YAMLError) -> SpecProblem:
    lines = text.splitlines() or [""]
    if isinstance(exc, ReaderError):
        before = text[: exc.position]
        line = before.count("\n")
        column = exc.position - (before.rfind("\n") + 1)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return SpecProblem(
            filename,
            line + 1,
            column + 1,
            f"the character U+{ord(char):04X} is not allowed in YAML: remove it",
        )
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return SpecProblem(filename, 1, 1, f"invalid YAML: {exc}")
    mark = exc.problem_mark
    line, column = mark.line, mark.column
    message, at = explain(lines, exc)
    if at is not None:
        line, column = at
    return SpecProblem(filename, line + 1, column + 1, message)


def explain(lines: list[str], exc: yaml.MarkedYAMLError) -> tuple[str, Optional[tuple[int, int]]]:
    """A plain-words message for a YAML error, and where to put it if not at the problem mark."""
    problem = exc.problem or ""
    context = exc.context or ""
    mark = exc.problem_mark
    assert mark is not None
    context_mark = exc.context_mark
    line = mark.line
    text = lines[line] if line < len(lines) else ""

    if context == "while scanning a quoted scalar" and context_mark is not None:
        quote = char_at(lines, context_mark.line, context_mark.column) or '"'
        return (
            f"the quote {quote} opened here is never closed: add the closing {quote} at the end "
            "of the value",
            (context_mark.line, context_mark.column),
        )
    if "'\\t'" in problem:
        if not text[: mark.column].strip():
            return (
                f"line {line + 1} is indented with a tab: YAML allows only spaces "
                "for indentation (replace the tab with spaces)",
                None,
            )
        if text[: mark.column].rstrip("\t").endswith(":"):
            return "a tab follows ':': write a space instead (YAML allows no tabs here)", None
        return "a tab is not allowed here: use spaces", None
    cannot_start = re.match(r"found character '(.)' that cannot start any token", problem)
    if cannot_start:
        char = cannot_start.group(1)
        return f"a plain value cannot start with '{char}': quote the value (\"{char}...\")", None
    flow = None
    if context.startswith("while parsing a flow ") and context_mark is not None:
        flow = flow_opener(lines, context_mark, mark)
    if flow is not None:
        return _explain_flow(text, mark, problem, flow)
    if "found undefined alias" in problem:
        name = problem.rsplit(" ", 1)[-1].strip("'")
        return f"'*{name}' refers to no anchor: define '&{name}' before this point", None
    if "found duplicate anchor" in context and context_mark is not None:
        anchor = re.search(r"anchor '?([^';]*)'?", context)
        label = anchor.group(1) if anchor else "?"
        return (
            f"anchor '&{label}' is defined twice (first on line {context_mark.line + 1}): "
            "rename one",
            None,
        )

    quoted = unclosed_quote(lines, line)
    if quoted is not None and not problem.startswith("found"):
        index, column, quote, closes = quoted
        if closes >= 0:
            return (
                f"the quote {quote} opened here is not closed on its line, so YAML read on to "
                f"line {closes + 1}: add the closing {quote} at the end of the value",
                (index, column),
            )

    if problem == "mapping values are not allowed here":
        return _explain_unexpected_key(lines, mark), None
    if problem.startswith("expected <block end>, but found"):
        if problem.endswith("'-'"):
            return (
                "a list item cannot go here, among 'key: value' lines: put the list under a key "
                "that has no value, indented",
                None,
            )
        lined_up = line_up(lines, line, deeper_needs_value=False)
        if lined_up is not None:
            return lined_up, None
        return (
            "this line does not fit the structure above it: check its indentation",
            None,
        )
    if problem == "could not find expected ':'" and context_mark is not None:
        start = (lines[context_mark.line] if context_mark.line < len(lines) else "").strip()
        return (
            f"line {context_mark.line + 1} ({start!r}) is not a 'key: value' pair: add ':' after "
            "the key, or indent the line if it continues the value above",
            (context_mark.line, context_mark.column),
        )
    where = ""
    if context and context_mark is not None:
        where = f" ({context}, line {context_mark.line + 1} column {context_mark.column + 1})"
    return f"invalid YAML: {problem}{where}", None


def _explain_flow(
    text: str, mark: yaml.Mark, problem: str, flow: tuple[int, int, str]
) -> tuple[str, Optional[tuple[int, int]]]:
    """An error inside '[...]' or '{...}' opened at ``flow``; ``text`` is the error's line."""
    # "while parsing a flow node" marks where a node was expected, not the opening bracket.
    open_line, open_column, opener = flow
    closer = "]" if opener == "[" else "}"
    variable = text.rfind("${", 0, mark.column + 1)
    if variable >= 0 or "${" in text:
        return (
            f"inside '{opener}...{closer}', a value with ${{VAR}} must be quoted "
            '("${VAR}"): YAML reads its braces as a mapping',
            (mark.line, variable if variable >= 0 else text.index("${")),
        )
    got = re.search(r"but (?:got|found) '(.*)'$", problem)
    found = got.group(1) if got else ""
    if found in ("]", "}") and found != closer:
        return (
            f"'{opener}' (line {open_line + 1}) is closed with '{found}': use '{closer}'",
            None,
        )
    if found == "<stream end>" or mark.line > open_line:
        return (
            f"'{opener}' opened here is never closed: add '{closer}' after the last item",
            (open_line, open_column),
        )
    return f"expected ',' or '{closer}' here: separate items with ', '", None


def _explain_unexpected_key(lines: list[str], mark: yaml.Mark) -> str:
    """PyYAML's "mapping values are not allowed here": a ': ' where no key may start."""
    line = mark.line
    own = key_line(lines, line) if line < len(lines) else None
    if own is not None and own.colon < mark.column:
        value = own.value.replace('"', '\\"')
        return (
            f"the value of '{own.key}:' contains ': ', which YAML takes for another key: "
            f'quote the value ({own.key}: "{value}")'
        )
    lined_up = line_up(lines, line, deeper_needs_value=True)
    if lined_up is not None:
        return lined_up
    previous = _previous_significant(lines, line)
    if own is not None and previous is not None and key_line(lines, previous) is None:
        return (
            f"'{own.key}:' is indented under line {previous + 1}, which holds a plain value "
            f"({lines[previous].strip()!r}), not keys: a key cannot continue a value; line "
            f"'{own.key}:' up with the keys of its mapping"
        )
    key = f"'{own.key}:'" if own is not None else "a key"
    return (
        f"{key} cannot start here: check this line's indentation against the lines above, "
        "or quote the value if it contains ': '"
    )
