from __future__ import annotations

import pytest

from pushmanifest.auth import Challenge, parse_www_authenticate

HUB = "https://auth.docker.io/token"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            f'Bearer realm="{HUB}",service="registry.docker.io",scope="repository:library/a:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": HUB,
                        "service": "registry.docker.io",
                        "scope": "repository:library/a:pull",
                    },
                )
            ],
        ),
        (
            'Bearer realm="https://r/t",service="s",scope="repository:a:pull,push",'
            'error="insufficient_scope"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://r/t",
                        "service": "s",
                        "scope": "repository:a:pull,push",
                        "error": "insufficient_scope",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        # Scheme and parameter names are case-insensitive; values keep their case.
        ('BASIC Realm="R"', [Challenge("basic", {"realm": "R"})]),
        ('bEaReR REALM="https://X/t"', [Challenge("bearer", {"realm": "https://X/t"})]),
        # Quoted strings: escapes, commas and spaces inside.
        (
            r'Basic realm="a \"quoted\" \\ word, with comma"',
            [Challenge("basic", {"realm": 'a "quoted" \\ word, with comma'})],
        ),
        ('Basic realm=""', [Challenge("basic", {"realm": ""})]),
        # Optional whitespace around '=' and after commas; empty list elements.
        (
            'Bearer realm = "r" ,  service=s,,scope="x"',
            [Challenge("bearer", {"realm": "r", "service": "s", "scope": "x"})],
        ),
        # Several challenges in one header.
        (
            'Basic realm="b", Bearer realm="https://r/t", service="s"',
            [
                Challenge("basic", {"realm": "b"}),
                Challenge("bearer", {"realm": "https://r/t", "service": "s"}),
            ],
        ),
        (
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                Challenge("basic", {"realm": "simple"}),
            ],
        ),
        # token68 and bare schemes.
        (
            "Negotiate abc+/def==, Basic realm=x",
            [Challenge("negotiate", {}), Challenge("basic", {"realm": "x"})],
        ),
        ("Negotiate", [Challenge("negotiate", {})]),
        ("Negotiate, Basic", [Challenge("negotiate", {}), Challenge("basic", {})]),
        # Unquoted realms that are not RFC tokens still work (seen in the wild).
        (
            "Bearer realm=https://auth.example.com/token,service=reg",
            [Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "reg"})],
        ),
        # A repeated parameter: the first one counts.
        ('Basic realm="a", realm="b"', [Challenge("basic", {"realm": "a"})]),
    ],
)
def test_parse(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        ",,,",
        '"quoted"',
        "=",
        "=====",
        'Bearer realm="unterminated',
        'Bearer realm="ends in escape\\',
        "Bearer realm=",
        "Bearer =x",
        "@@@ realm=x",
        "\x00\x01\x02",
    ],
)
def test_garbage_never_raises(header: str) -> None:
    result = parse_www_authenticate(header)
    assert isinstance(result, list)
    assert all(isinstance(c, Challenge) and c.scheme for c in result)


@pytest.mark.parametrize(
    "header",
    ["", '"quoted"', "=====", 'Bearer realm="unterminated', "@@@ realm=x", "Bearer =x"],
)
def test_garbage_is_empty(header: str) -> None:
    assert parse_www_authenticate(header) == []


def test_keeps_challenges_before_a_syntax_error() -> None:
    assert parse_www_authenticate('Basic realm="a", Bearer realm="oops') == [
        Challenge("basic", {"realm": "a"})
    ]


def test_non_string_is_empty() -> None:
    assert parse_www_authenticate(None) == []  # type: ignore[arg-type]
    assert parse_www_authenticate(b"Basic realm=x") == []  # type: ignore[arg-type]


def test_get_is_case_insensitive() -> None:
    (challenge,) = parse_www_authenticate('Bearer Realm="r"')
    assert challenge.get("REALM") == "r"
    assert challenge.get("service") == ""
    assert challenge.get("service", "d") == "d"
