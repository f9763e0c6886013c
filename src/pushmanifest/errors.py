"""Exceptions raised by pushmanifest.

Two families, mirrored by the CLI's exit status:

* :class:`InputError` (exit 2): the user's input is wrong (usage, spec, reference, platform).
  Nothing was sent to a registry because of it.
* :class:`RegistryError` (exit 1): a registry, the network or authentication failed.

Every message is one line a user can act on; none of them carries a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ._records import record


class PushManifestError(Exception):
    """Base class of every error pushmanifest raises on purpose."""

    exit_code: int = 1


class InputError(PushManifestError):
    """Bad input: usage, spec, reference or platform (exit status 2)."""

    exit_code = 2


class InvalidReferenceError(InputError, ValueError):
    """An image reference that does not follow the Docker reference grammar."""


class InvalidPlatformError(InputError, ValueError):
    """An os/architecture/variant that is not a known platform.

    ``field`` names the offending field ("os", "architecture", "variant", ...) when one is to
    blame, so that a spec error can point at that field's line and column.
    """

    def __init__(self, message: str, *, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidArgumentError(InputError, TypeError, ValueError):
    """A library call with an argument of the wrong type or value (``push("a:b")``,
    ``dry_run="no"``); the message says what was expected. Also a TypeError and a ValueError,
    as Python's own functions would raise."""


@record(frozen=True)
class SpecProblem:
    """One problem in a spec file, at a position (1-based line and column)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class SpecError(InputError):
    """A spec that cannot be used; carries every problem found, each with its position."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems: list[SpecProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RegistryError(PushManifestError):
    """A registry refused or failed an operation.

    ``operation`` is what we tried ("push", "resolve", "authenticate", ...), ``image`` the
    reference it was about, ``user`` who we were (None for anonymous), ``status`` the HTTP status,
    ``code`` the distribution error code (DENIED, MANIFEST_UNKNOWN, ...) when the body had one.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        image: str = "",
        user: Optional[str] = None,
        status: Optional[int] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.image = image
        self.user = user
        self.status = status
        self.code = code

    def reworded(self, message: str) -> RegistryError:
        """The same failure (same class, operation, image, user, status, code) said otherwise."""
        return type(self)(
            message,
            operation=self.operation,
            image=self.image,
            user=self.user,
            status=self.status,
            code=self.code,
        )


class AuthenticationError(RegistryError):
    """Credentials were refused, or a token could not be obtained."""


class NetworkError(RegistryError):
    """The registry could not be reached (DNS, connection, TLS, timeout)."""


class DigestMismatchError(RegistryError):
    """A registry returned content, or a digest, other than the one expected."""


class MissingSourcesError(RegistryError):
    """One or more source images do not exist; all of them are named."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        names = ", ".join(self.missing)
        noun = "image does" if len(self.missing) == 1 else "images do"
        super().__init__(
            f"source {noun} not exist: {names} (push them first, or pass --ignore-missing)",
            operation="resolve",
        )
