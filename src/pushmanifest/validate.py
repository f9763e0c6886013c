"""Offline validation of spec files: every check that needs no registry.

``pushmanifest validate`` (and the pre-commit hook) runs this. It loads each file exactly as
``from-spec`` does (YAML, keys, references, tags, platforms, duplicate keys and platforms,
``${VAR}``), then checks what only a view over every list can see: two lists, in one file or in
several, pushing to the same tag.

Nothing here imports httpx: the hook runs on every commit, offline.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import field
from functools import partial
from typing import TYPE_CHECKING, Callable, Optional

from ._records import record
from .errors import SpecError, SpecProblem

if TYPE_CHECKING:
    from .spec import ManifestListSpec

__all__ = ["ValidationReport", "validate_specs"]

# Values an unset ${VAR} takes with allow_unset_env: a name or tag, a whole digest, the hex of a
# digest. A variable may stand in any of these places and the loader does not say which, so each
# unset variable is tried with each value (every combination, up to _MAX_COMBINATIONS); the file
# is valid if one combination makes it so.
UNSET_PLACEHOLDERS = ("unset", "sha256:" + "0" * 64, "0" * 64)
_MAX_COMBINATIONS = 3**5
_MAX_ROUNDS = 4


@record
class ValidationReport:
    """What validating some spec files found."""

    files: int = 0
    lists: int = 0
    problems: list[SpecProblem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        files = f"{self.files} file{'s' if self.files != 1 else ''}"
        lists = f"{self.lists} list{'s' if self.lists != 1 else ''}"
        return f"{files}, {lists}: valid"


class _RecordingEnv(Mapping[str, str]):
    """The environment, noting every name asked for that it does not hold.

    Names in ``filled`` answer their placeholder instead of being unset.
    """

    def __init__(self, base: Mapping[str, str], filled: Mapping[str, str]) -> None:
        self._base = base
        self._filled = filled
        self.missing: set[str] = set()

    def __getitem__(self, name: str) -> str:
        if name in self._base:
            return self._base[name]
        if name in self._filled:
            return self._filled[name]
        self.missing.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def _unset_names(missing: set[str], problems: Sequence[SpecProblem]) -> set[str]:
    """The names among ``missing`` that a problem reports as unset (not those with a default)."""
    return {
        name
        for name in missing
        if any(re.search(rf"\$\{{{re.escape(name)}\}}.* not set", p.message) for p in problems)
    }


Loader = Callable[[Mapping[str, str]], list]  # type: ignore[type-arg]


def _placeholder_choices(names: list[str]) -> Iterator[dict[str, str]]:
    """Placeholder values for ``names``: every combination, or one value for all if too many."""
    if len(UNSET_PLACEHOLDERS) ** len(names) > _MAX_COMBINATIONS:
        for value in UNSET_PLACEHOLDERS:
            yield dict.fromkeys(names, value)
        return
    for values in itertools.product(UNSET_PLACEHOLDERS, repeat=len(names)):
        yield dict(zip(names, values))


def _load(loader: Loader, env: Mapping[str, str], allow_unset_env: bool) -> tuple[list, list]:  # type: ignore[type-arg]
    """(lists, problems) of one file; with allow_unset_env, unset variables take placeholders."""
    unset: list[str] = []
    fewest: list[SpecProblem] = []
    for _ in range(_MAX_ROUNDS):
        fewest = []
        newly_unset: set[str] = set()
        for filled in _placeholder_choices(unset):
            recording = _RecordingEnv(env, filled)
            try:
                return loader(recording), []
            except SpecError as exc:
                problems = exc.problems
            if not allow_unset_env:
                return [], problems
            if not fewest or len(problems) < len(fewest):
                fewest = problems
            newly_unset = _unset_names(recording.missing, problems) - set(unset)
            if newly_unset:
                break  # fill these too, then try every combination again
        if not newly_unset:
            break
        unset.extend(sorted(newly_unset))
    return [], fewest


def validate_specs(
    paths: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    allow_unset_env: bool = False,
    read_stdin: Optional[Callable[[], str]] = None,
) -> ValidationReport:
    """Validate spec files without touching a network; '-' reads ``read_stdin()``.

    ``allow_unset_env``: a ``${VAR}`` that is unset (and has no default) is not a problem; it
    is given a placeholder value to check the rest of the value with.
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    report = ValidationReport()
    # Where each tag is pushed from: (registry, repository, tag) -> (file, line) of its list.
    pushed: dict[tuple[str, str, str], tuple[str, int]] = {}
    seen: set[str] = set()
    for path in paths:
        if path != "-":
            real = os.path.realpath(path)
            if real in seen:
                continue  # the same file named twice: one set of lists
            seen.add(real)
        report.files += 1
        loader: Loader
        if path == "-":
            text = read_stdin() if read_stdin is not None else ""
            loader = partial(_load_text, text)
        else:
            loader = partial(_load_file, path)
        try:
            specs, problems = _load(loader, environment, allow_unset_env)
        except OSError as exc:
            message = f"cannot read the file: {exc.strerror or exc}"
            report.problems.append(SpecProblem(path, 1, 1, message))
            continue
        report.problems.extend(problems)
        for spec in specs:
            report.lists += 1
            report.problems.extend(_same_tag_twice(spec, path, pushed))
    return report


def _load_text(text: str, env: Mapping[str, str]) -> list[ManifestListSpec]:
    from .spec import load_spec_text

    return load_spec_text(text, "<stdin>", env=env)


def _load_file(path: str, env: Mapping[str, str]) -> list[ManifestListSpec]:
    from .spec import load_spec_file

    return load_spec_file(path, env=env)


def _origin(spec: object, path: str) -> tuple[str, int]:
    origin = getattr(spec, "origin", "")
    file, _, line = str(origin).rpartition(":")
    return (file or path, int(line) if line.isdigit() else 1)


def _same_tag_twice(
    spec: object, path: str, pushed: dict[tuple[str, str, str], tuple[str, int]]
) -> list[SpecProblem]:
    """A problem for each tag of ``spec`` pushed twice: by this list, or by an earlier one.

    from-spec accepts both (the last write wins), but neither is ever meant.
    """
    from .spec import ManifestListSpec

    assert isinstance(spec, ManifestListSpec)
    file, line = _origin(spec, path)
    target = spec.image
    problems: list[SpecProblem] = []
    own: set[str] = set()
    for tag in [target.tag or "latest", *spec.tags]:
        name = target.with_tag(tag).familiar()
        if tag in own:
            problems.append(SpecProblem(file, line, 1, f"the list pushes {name} twice"))
            continue
        own.add(tag)
        key = (target.registry, target.repository, tag)
        earlier = pushed.get(key)
        if earlier is None:
            pushed[key] = (file, line)
        else:
            problems.append(
                SpecProblem(
                    file,
                    line,
                    1,
                    f"{name} is pushed by the list at {earlier[0]}:{earlier[1]} too: "
                    "one tag, one list (the last pushed would win)",
                )
            )
    return problems
