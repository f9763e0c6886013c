from __future__ import annotations

import pickle

import pytest

from pushmanifest.auth import Credentials, Secret

PASSWORD = "hunter2-very-secret"


def test_secret_is_masked_everywhere() -> None:
    secret = Secret(PASSWORD)
    for text in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>20}",
        "%s %r" % (secret, secret),  # noqa: UP031 (logging formats this way)
        repr([secret]),
        repr({"k": secret}),
    ):
        assert PASSWORD not in text
        assert "*" in text
    assert secret.reveal() == PASSWORD


def test_secret_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert bool(Secret("")) is False
    assert bool(Secret("x")) is True
    assert Secret(Secret("x")).reveal() == "x"
    assert pickle.loads(pickle.dumps(Secret("x"))) == Secret("x")


def test_secret_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_credentials_repr_hides_every_secret() -> None:
    creds = Credentials(
        username="alice",
        password=Secret(PASSWORD),
        identity_token=Secret("idtoken-xyz"),
        registry_token=Secret("regtoken-abc"),
        source="--username",
    )
    for text in (repr(creds), str(creds), f"{creds}"):
        assert PASSWORD not in text
        assert "idtoken-xyz" not in text
        assert "regtoken-abc" not in text
        assert "alice" in text


def test_plain_strings_are_wrapped() -> None:
    creds = Credentials(username="bob", password=PASSWORD)  # type: ignore[arg-type]
    assert isinstance(creds.password, Secret)
    assert PASSWORD not in repr(creds)
    assert creds.password.reveal() == PASSWORD


def test_properties() -> None:
    assert Credentials(username="a", password=Secret("p")).has_basic
    assert not Credentials(username="a").has_basic
    assert not Credentials(identity_token=Secret("t")).has_basic
    assert Credentials().is_empty
    assert not Credentials(registry_token=Secret("t")).is_empty
    assert Credentials(username="a").describe() == "user 'a'"
    assert Credentials(identity_token=Secret("t")).describe() == "an identity token"
    assert Credentials().describe() == "anonymous"
