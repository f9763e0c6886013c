"""Credentials for a registry, built so that printing them can never leak a secret.

Secrets travel in :class:`Secret`, whose ``repr``/``str``/``format`` are masked: an f-string, a
log call, a traceback's locals or a dataclass ``repr`` all show ``**********``. The only way to
the value is :meth:`Secret.reveal`, which makes every use greppable.
"""

from __future__ import annotations

import hmac
from typing import Optional

from .._records import record

__all__ = ["MASK", "Credentials", "Secret"]

MASK = "**********"


class Secret:
    """A string that does not show itself. Compare and hash like the value; print as a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return format(MASK, format_spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time: equality of secrets is the one comparison an attacker could time.
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def _as_secret(value: object) -> Optional[Secret]:
    if value is None or isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise TypeError(f"expected a Secret or str, not {type(value).__name__}")


@record(frozen=True)
class Credentials:
    """Who we are to one registry, and where we learned it.

    ``password`` goes with ``username`` (HTTP Basic, and the token server's Basic). An
    ``identity_token`` is an OAuth2 refresh token (``docker login`` with some registries, the
    ``<token>`` user of credential helpers). A ``registry_token`` is sent as is, as a Bearer token.
    ``source`` says where they came from, for messages: ``--username``,
    ``docker config credHelpers (docker-credential-pass)``...
    """

    username: Optional[str] = None
    password: Optional[Secret] = None
    identity_token: Optional[Secret] = None
    registry_token: Optional[Secret] = None
    source: str = ""

    def __post_init__(self) -> None:
        # Library users will pass plain strings; wrap them so they are masked from here on.
        for name in ("password", "identity_token", "registry_token"):
            object.__setattr__(self, name, _as_secret(getattr(self, name)))

    @property
    def has_basic(self) -> bool:
        """Whether there is a username and password to send as HTTP Basic."""
        return bool(self.username) and self.password is not None

    @property
    def is_empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def describe(self) -> str:
        """``user 'alice'`` (or what stands in for one), for messages."""
        if self.username:
            return f"user '{self.username}'"
        if self.identity_token:
            return "an identity token"
        if self.registry_token:
            return "a registry token"
        return "anonymous"
