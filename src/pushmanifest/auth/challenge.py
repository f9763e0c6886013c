"""Parsing of ``WWW-Authenticate`` headers (RFC 7235 section 4.1).

A header holds one or more challenges separated by commas, and each challenge's auth-params are
separated by commas too, so the grammar is only unambiguous with one token of look-ahead: after a
comma, ``name=`` continues the current challenge and a bare token starts the next one.

The parser never raises on garbage: a registry's header is untrusted input, and a challenge we
cannot read is one we cannot answer anyway. Parsing stops at the first syntax error and keeps the
challenges that were complete before it. A header past the limits below is another matter (no
registry sends one): :class:`ChallengeLimitError` says which limit it broke.
"""

from __future__ import annotations

import re
from dataclasses import field

from .._records import record

__all__ = [
    "MAX_CHALLENGES",
    "MAX_HEADER_CHARS",
    "MAX_PARAMS",
    "Challenge",
    "ChallengeLimitError",
    "parse_www_authenticate",
]

#: Limits on what a registry's WWW-Authenticate may hold. Real ones are under 300 characters,
#: with one or two challenges of at most five parameters.
MAX_HEADER_CHARS = 8192
MAX_CHALLENGES = 16
MAX_PARAMS = 32

# RFC 7230 tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Registries in the wild send unquoted realms such as https://auth/token, which are not tokens;
# accepting any run of non-separators costs nothing and makes them usable.
_LOOSE_VALUE = re.compile(r'[^\s,"]+')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_WS = re.compile(r"[ \t]*")


@record
class Challenge:
    """One challenge: ``scheme`` is lowercased, and so are the parameter names."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name.lower(), default)


class ChallengeLimitError(ValueError):
    """A header beyond :data:`MAX_HEADER_CHARS`, :data:`MAX_CHALLENGES` or :data:`MAX_PARAMS`.

    Its message completes "a WWW-Authenticate header ...".
    """


class _SyntaxError(Exception):
    pass


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> bool:
        match = _WS.match(self.text, self.pos)
        assert match is not None  # the pattern matches the empty string
        self.pos = match.end()
        return match.end() > match.start()

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            return ""
        self.pos = found.end()
        return found.group()

    def quoted_string(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                self.pos += 1
                if self.pos >= len(self.text):
                    break
                char = self.text[self.pos]
            out.append(char)
            self.pos += 1
        raise _SyntaxError("unterminated quoted-string")

    def param_follows(self) -> bool:
        """Whether ``token BWS "="`` comes next (an auth-param rather than a new scheme)."""
        start = self.pos
        try:
            if not self.match(_TOKEN):
                return False
            self.skip_ws()
            return self.peek() == "="
        finally:
            self.pos = start

    def skip_list_separators(self) -> None:
        while True:
            self.skip_ws()
            if self.peek() != ",":
                return
            self.pos += 1


def _parse_params(scanner: _Scanner, params: dict[str, str]) -> None:
    """Read ``name=value`` pairs until the end or the start of the next challenge."""
    while True:
        name = scanner.match(_TOKEN).lower()
        if not name:
            raise _SyntaxError("expected an auth-param")
        scanner.skip_ws()
        if scanner.peek() != "=":
            raise _SyntaxError("expected '='")
        scanner.pos += 1
        scanner.skip_ws()
        quoted = scanner.peek() == '"'
        value = scanner.quoted_string() if quoted else scanner.match(_LOOSE_VALUE)
        # RFC 7235: each name occurs at most once; the first one is the one we trust.
        params.setdefault(name, value)
        if len(params) > MAX_PARAMS:
            raise ChallengeLimitError(f"with more than {MAX_PARAMS} parameters in one challenge")
        scanner.skip_list_separators()
        if scanner.at_end() or not scanner.param_follows():
            return


def _parse(header: str) -> list[Challenge]:
    scanner = _Scanner(header)
    challenges: list[Challenge] = []
    try:
        while True:
            scanner.skip_list_separators()
            if scanner.at_end():
                return challenges
            scheme = scanner.match(_TOKEN)
            if not scheme:
                raise _SyntaxError("expected an auth-scheme")
            challenge = Challenge(scheme=scheme.lower())
            had_space = scanner.skip_ws()
            if had_space and not scanner.at_end() and scanner.peek() != ",":
                token68 = scanner.match(_TOKEN68)
                if not token68:
                    _parse_params(scanner, challenge.params)
            elif not scanner.at_end() and scanner.peek() != ",":
                raise _SyntaxError("expected a space after the auth-scheme")
            challenges.append(challenge)
            if len(challenges) > MAX_CHALLENGES:
                raise ChallengeLimitError(f"with more than {MAX_CHALLENGES} challenges")
    except _SyntaxError:
        return challenges


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Every challenge of a ``WWW-Authenticate`` value; ``[]`` for garbage.

    Raises :class:`ChallengeLimitError` for a value longer than :data:`MAX_HEADER_CHARS`, or
    holding more than :data:`MAX_CHALLENGES` challenges or :data:`MAX_PARAMS` parameters in one.

    >>> parse_www_authenticate('Bearer realm="https://auth.docker.io/token",service="x"')
    [Challenge(scheme='bearer', params={'realm': 'https://auth.docker.io/token', 'service': 'x'})]
    """
    if not isinstance(header, str):
        return []
    if len(header) > MAX_HEADER_CHARS:
        raise ChallengeLimitError(
            f"of {len(header)} characters, more than the {MAX_HEADER_CHARS} allowed"
        )
    return _parse(header)
