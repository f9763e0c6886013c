"""YAML syntax errors in plain words: the diagnostics functions, called directly.

tests/test_spec.py checks the messages as a spec's writer sees them, through loading; these pin
down each piece (reading a line as a key, lining keys up, finding an open quote or bracket) on
its own, so that a change to one shows where it broke.
"""

from __future__ import annotations

from typing import Optional

import pytest
import yaml

from pushmanifest.spec.diagnostics import (
    KeyLine,
    char_at,
    explain,
    flow_opener,
    in_list_entry,
    key_line,
    line_up,
    quote_end,
    syntax_problem,
    unclosed_quote,
)
from pushmanifest.spec.nodes import SpecLoader

# Each test runs with libyaml's parser and with the pure-Python loader (conftest.py).
pytestmark = pytest.mark.usefixtures("yaml_loader")


def mark(line: int, column: int) -> yaml.Mark:
    return yaml.Mark("s.yaml", 0, line, column, "", 0)


def yaml_error(text: str) -> yaml.YAMLError:
    """The error PyYAML raises composing ``text``, as the loader composes it."""
    try:
        list(yaml.compose_all(text, Loader=SpecLoader))
    except yaml.YAMLError as exc:
        return exc
    raise AssertionError(f"{text!r} is valid YAML")


# --------------------------------------------------------------------------------------------
# A line read as "key: value"


def test_key_line_of_a_list_item() -> None:
    assert key_line(["  - image: a/b:1  # c"], 0) == KeyLine(
        number=1, key="image", column=4, dash=True, value="a/b:1  # c", colon=9
    )


def test_key_line_of_a_quoted_key() -> None:
    found = key_line(['"os.version": "10"'], 0)
    assert found is not None
    assert (found.key, found.column, found.dash, found.value) == ('"os.version"', 0, False, '"10"')


def test_key_line_needs_a_colon_and_a_space() -> None:
    assert key_line(["- just a value"], 0) is None
    found = key_line(["url: http://x"], 0)
    assert found is not None and (found.key, found.value) == ("url", "http://x")


@pytest.mark.parametrize(
    ("line", "has_value"),
    [
        ("platform:", False),
        ("x: &anchor", False),
        ("x: |", False),
        ("x: >-  # folded", False),
        ("x: !tag", False),
        ("x: y", True),
    ],
)
def test_a_key_opens_a_block_unless_it_has_a_value(line: str, has_value: bool) -> None:
    found = key_line([line], 0)
    assert found is not None and found.has_value is has_value


# --------------------------------------------------------------------------------------------
# Keys that do not line up


def test_line_up_in_a_list_entry() -> None:
    lines = ["manifests:", "  - image: a", "     platform: x"]
    assert line_up(lines, 2, deeper_needs_value=True) == (
        "'platform:' is indented 5 spaces but 'image:' above it (line 2) is at 4: keys of the "
        "same entry must line up (remove 1 space)"
    )


def test_line_up_in_a_mapping() -> None:
    assert line_up(["a: 1", "  b: 2"], 1, deeper_needs_value=True) == (
        "'b:' is indented 2 spaces but 'a:' above it (line 1) is at 0: keys of the same mapping "
        "must line up (remove 2 spaces)"
    )


def test_line_up_names_both_keys_at_the_same_distance() -> None:
    lines = ["image: a/b:1", "manifests:", "  - image: a/b:2", "  platform: {os: linux}"]
    assert line_up(lines, 3, deeper_needs_value=False) == (
        "'platform:' is indented 2 spaces but 'image:' above it (line 3) is at 4: keys of the "
        "same entry must line up (add 2 spaces), or remove 2 spaces to line it up with "
        "'manifests:' (line 2)"
    )


@pytest.mark.parametrize(
    ("lines", "index"),
    [
        (["a: 1", "b: 2"], 1),  # lined up: something else is wrong
        (["a:", "  b: 2"], 1),  # nested under a key without a value: fine
        (["- x"], 0),  # not a key
        (["a: 1", "---", "  b: 2"], 2),  # no key above in this document
    ],
    ids=["lined-up", "nested", "not-a-key", "new-document"],
)
def test_line_up_has_nothing_to_say(lines: list[str], index: int) -> None:
    assert line_up(lines, index, deeper_needs_value=True) is None


def test_in_list_entry() -> None:
    entry = ["m:", "  - image: a", "    platform: x"]
    mapping = ["m:", "  image: a", "  platform: x"]
    for lines, expected in ((entry, True), (mapping, False)):
        found = key_line(lines, 2)
        assert found is not None
        assert in_list_entry(lines, found) is expected


# --------------------------------------------------------------------------------------------
# Quotes


@pytest.mark.parametrize(
    ("text", "quote", "end"),
    [
        ('abc" rest', '"', 4),
        ('a\\"b"', '"', 5),  # an escaped double quote does not close
        ("it''s'", "'", 6),  # '' is a single quote inside single quotes
        ("never", "'", -1),
    ],
)
def test_quote_end(text: str, quote: str, end: int) -> None:
    assert quote_end(text, quote) == end


@pytest.mark.parametrize(
    ("lines", "error_line", "expected"),
    [
        (['image: "a/b', 'tags: x"', "m: []"], 2, (0, 7, '"', 1)),  # closes on line 2
        (['image: "a/b', "tags: x", "m: []"], 2, (0, 7, '"', -1)),  # never closes
        (['image: "a/b"', "x: y"], 1, None),  # closed on its line
        (['image: "a', "b", "c", 'x"'], 1, None),  # closes after the error: not the cause
        (['a: "x', "---", "b: y"], 2, None),  # in another document
    ],
    ids=["closes-later", "never", "closed", "after-the-error", "other-document"],
)
def test_unclosed_quote(
    lines: list[str], error_line: int, expected: Optional[tuple[int, int, str, int]]
) -> None:
    assert unclosed_quote(lines, error_line) == expected


def test_char_at_is_empty_past_the_end() -> None:
    assert (char_at(["ab"], 0, 1), char_at(["ab"], 0, 2), char_at(["ab"], 1, 0)) == ("b", "", "")


# --------------------------------------------------------------------------------------------
# Flow brackets


def test_flow_opener_at_the_context_mark() -> None:
    assert flow_opener(["tags: [a, b"], mark(0, 6), mark(0, 11)) == (0, 6, "[")


def test_flow_opener_found_by_scanning_skips_closed_brackets() -> None:
    lines = ["tags: [a, {b: c}, d", "x: y"]
    assert flow_opener(lines, mark(1, 0), mark(1, 0)) == (0, 6, "[")


def test_flow_opener_ignores_brackets_in_quotes_and_comments() -> None:
    lines = ['a: ["[", {b: c}  # [', "  x"]
    assert flow_opener(lines, mark(1, 2), mark(1, 2)) == (0, 3, "[")


def test_flow_opener_none_without_a_bracket() -> None:
    assert flow_opener(["a: b"], mark(0, 3), mark(0, 3)) is None


# --------------------------------------------------------------------------------------------
# From PyYAML's error to a positioned message


def test_explain_moves_an_unclosed_quote_to_where_it_opens() -> None:
    text = 'image: "a/b:1\nmanifests: []\n'
    error = yaml_error(text)
    assert isinstance(error, yaml.MarkedYAMLError)
    assert explain(text.splitlines(), error) == (
        'the quote " opened here is never closed: add the closing " at the end of the value',
        (0, 7),
    )


def test_explain_keeps_the_problem_mark_otherwise() -> None:
    error = yaml_error("image: @a\n")
    assert isinstance(error, yaml.MarkedYAMLError)
    assert explain(["image: @a"], error) == (
        "a plain value cannot start with '@': quote the value (\"@...\")",
        None,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "image: a\nmanifests:\n\t- image: b\n",
            "3:1: line 3 is indented with a tab: YAML allows only spaces for indentation "
            "(replace the tab with spaces)",
        ),
        ("image:\ta\n", "1:7: a tab follows ':': write a space instead (YAML allows no tabs here)"),
        (
            "tags: [${TAG}, b]\n",
            "1:8: inside '[...]', a value with ${VAR} must be quoted (\"${VAR}\"): YAML reads its "
            "braces as a mapping",
        ),
        ("tags: [a, b}\n", "1:12: '[' (line 1) is closed with '}': use ']'"),
        (
            "tags: [a, b\nmanifests: []\n",
            "1:7: '[' opened here is never closed: add ']' after the last item",
        ),
        ("image: *nope\n", "1:8: '*nope' refers to no anchor: define '&nope' before this point"),
        ("a: &x 1\nb: &x 2\n", "2:4: anchor '&x' is defined twice (first on line 1): rename one"),
        (
            "image: a: b\n",
            "1:9: the value of 'image:' contains ': ', which YAML takes for another key: quote "
            'the value (image: "a: b")',
        ),
        (
            "image: a\ntags: x\n- b\n",
            "3:1: a list item cannot go here, among 'key: value' lines: put the list under a key "
            "that has no value, indented",
        ),
        (
            "manifests:\n  - image: a\n    platform:\n      os: linux\n   arch: x\n",
            "5:4: 'arch:' is indented 3 spaces but 'platform:' above it (line 3) is at 4: keys of "
            "the same entry must line up (add 1 space)",
        ),
        (
            "image: a\nmanifests\n  - b\n",
            "2:1: line 2 ('manifests') is not a 'key: value' pair: add ':' after the key, or "
            "indent the line if it continues the value above",
        ),
        ("image: a\x07\n", "1:9: the character U+0007 is not allowed in YAML: remove it"),
        (
            "a: b\n%TAG\n",
            "2:5: invalid YAML: expected '!', but found '\\n' (while scanning a directive, line 2 "
            "column 1)",
        ),
    ],
    ids=[
        "tab-indent",
        "tab-after-colon",
        "variable-in-flow",
        "wrong-closer",
        "never-closed",
        "undefined-alias",
        "duplicate-anchor",
        "colon-in-value",
        "item-among-keys",
        "block-end-line-up",
        "no-colon",
        "control-character",
        "anything-else",
    ],
)
def test_syntax_problem(text: str, expected: str) -> None:
    assert str(syntax_problem(text, "s.yaml", yaml_error(text))) == f"s.yaml:{expected}"


def test_syntax_problem_of_an_error_without_a_mark() -> None:
    assert str(syntax_problem("x", "s.yaml", yaml.YAMLError("boom"))) == (
        "s.yaml:1:1: invalid YAML: boom"
    )
