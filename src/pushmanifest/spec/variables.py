"""``${VAR}`` expansion in a spec's values, as a shell or Compose file does it."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["expand"]

_VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-)(?P<default>.*))?\Z", re.S)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` (unset or empty) and ``${VAR-default}`` (unset).

    ``$$`` is a literal ``$``, and so is a ``$`` followed by anything but ``{``: references and
    tags never contain ``$``, so a stray one is reported by the reference grammar, which names it.
    Raises ValueError with a message for the user.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    unset: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
            continue
        if following != "{":
            out.append("$")
            i += 1
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise ValueError(
                f"'${{' at {text[i:]!r} is not closed: write ${{NAME}}, or $$ for a literal '$'"
            )
        body = text[i + 2 : end]
        match = _VARIABLE.match(body)
        if match is None:
            raise ValueError(
                f"'${{{body}}}' is not a variable: write ${{NAME}} or ${{NAME:-default}} "
                "(names are letters, digits and '_'), or $$ for a literal '$'"
            )
        name, op, default = match.group("name", "op", "default")
        value = env.get(name)
        if (op == ":-" and not value) or (op == "-" and value is None):
            value = default
        if value is None:
            unset.append(name)
        else:
            out.append(value)
        i = end + 1
    if unset:
        names = list(dict.fromkeys(unset))
        if len(names) == 1:
            raise ValueError(
                f"${{{names[0]}}} is not set: export it, or write ${{{names[0]}:-default}}"
            )
        listed = ", ".join(f"${{{n}}}" for n in names[:-1]) + f" and ${{{names[-1]}}}"
        raise ValueError(
            f"{listed} are not set: export them, or give defaults (${{NAME:-default}})"
        )
    return "".join(out)
