"""``record`` behaves as ``dataclasses.dataclass`` for every feature pushmanifest's records use,
checked side by side against dataclass twins, and refuses what it does not do."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Optional

import pytest

from pushmanifest._records import record


def twins(frozen: bool) -> tuple[type[Any], type[Any]]:
    """The same class made by ``record`` and by ``dataclass``."""

    def body() -> type[Any]:
        class Item:
            """An item."""

            name: str
            size: int = 0
            tags: list[str] = dataclasses.field(default_factory=list)
            notes: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
            label: Optional[str] = None

            def __post_init__(self) -> None:
                if self.size < 0:
                    raise ValueError("size must not be negative")

            def __str__(self) -> str:
                return f"item {self.name}"

        return Item

    if frozen:
        return record(frozen=True)(body()), dataclasses.dataclass(frozen=True)(body())
    return record(body()), dataclasses.dataclass(body())


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a",), {}),
    (("a", 3), {}),
    (("a",), {"size": 2, "label": "x"}),
    ((), {"name": "b", "tags": ["t"], "notes": {"k": "v"}}),
    (("a", 1, ["x"], {"k": "v"}, "l"), {}),
]


@pytest.mark.parametrize("frozen", [True, False])
def test_instances_equal_compare_and_show_as_dataclass_ones(frozen: bool) -> None:
    made, reference = twins(frozen)
    for args, kwargs in CALLS:
        ours, theirs = made(*args, **kwargs), reference(*args, **kwargs)
        assert repr(ours) == repr(theirs)
        assert str(ours) == str(theirs)  # the class's own __str__ kept
        assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
        assert ours == made(*args, **kwargs)
        assert ours != made("other")
        assert (ours == theirs) is False  # another class: never equal, as dataclass
        assert [f.name for f in dataclasses.fields(ours)] == [
            f.name for f in dataclasses.fields(theirs)
        ]
        changed = dataclasses.replace(ours, size=9)
        assert changed.size == 9 and changed.name == ours.name
        copied = copy.copy(ours)
        assert copied == ours and copied is not ours
    # Default factories give each instance its own value.
    first, second = made("a"), made("b")
    assert first.tags == [] and first.tags is not second.tags


def test_frozen_records_hash_by_their_fields_without_those_left_out() -> None:
    made, reference = twins(True)
    one = made("a", 1, ["x"], {"k": "v"})
    two = made("a", 1, ["x"], {"other": "value"})
    assert one != two  # notes take part in equality ...
    with pytest.raises(TypeError):
        hash(one)  # ... and a list field makes the instance unhashable, as dataclass's
    hashable = record(frozen=True)(type("Point", (), {"__annotations__": {"x": "int"}}))
    assert hash(hashable(1)) == hash(hashable(1))
    assert {hashable(1): "a"}[hashable(1)] == "a"
    assert reference.__hash__ is not None and made.__hash__ is not None


def test_frozen_records_refuse_assignment_as_dataclass_does() -> None:
    made, _ = twins(True)
    item = made("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        del item.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.other = 1


def test_mutable_records_assign_and_are_unhashable() -> None:
    made, reference = twins(False)
    item = made("a")
    item.size = 3
    assert item.size == 3
    assert made.__hash__ is None and reference.__hash__ is None


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize(
    "call",
    [
        lambda cls: cls(),  # missing argument
        lambda cls: cls("a", name="b"),  # twice
        lambda cls: cls("a", wrong=1),  # unknown
        lambda cls: cls("a", 1, [], {}, None, "extra"),  # too many
        lambda cls: cls("a", -1),  # __post_init__'s own error
    ],
)
def test_bad_arguments_raise_what_dataclass_raises(
    frozen: bool, call: Callable[[type[Any]], Any]
) -> None:
    made, reference = twins(frozen)
    with pytest.raises(Exception) as theirs:
        call(reference)
    with pytest.raises(theirs.type):
        call(made)


def test_what_record_does_not_do_is_refused() -> None:
    class KeyedOut:
        key: int = dataclasses.field(default=0, compare=False)

    with pytest.raises(TypeError, match=r"dataclasses\.dataclass"):
        record(KeyedOut)

    class FrozenWithSetattr:
        key: int = 0

        def __setattr__(self, name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

    with pytest.raises(TypeError):
        record(frozen=True)(FrozenWithSetattr)
