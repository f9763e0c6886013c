"""The sync API wraps the async core: refused inside a running loop, no stray exception chain."""

from __future__ import annotations

import asyncio

import pytest

import pushmanifest
from pushmanifest import InputError, RegistryError
from pushmanifest.registry import ClientOptions


def test_push_inside_a_running_loop_says_to_await_push_async() -> None:
    async def go() -> None:
        pushmanifest.push([], dry_run=True)

    with pytest.raises(RuntimeError, match=r"await push_async\(\) instead"):
        asyncio.run(go())


def test_inspect_inside_a_running_loop_says_to_await_inspect_async() -> None:
    async def go() -> None:
        pushmanifest.inspect("127.0.0.1:1/app:x")

    with pytest.raises(RuntimeError, match=r"await inspect_async\(\) instead"):
        asyncio.run(go())


@pytest.mark.parametrize("call", ["push", "inspect"])
def test_a_failure_does_not_chain_to_the_loop_check(call: str) -> None:
    """--debug prints the chain: it must not start with 'no running event loop'."""
    options = ClientOptions(plain_http=True, retries=1, connect_timeout=0.5)
    with pytest.raises((RegistryError, InputError)) as caught:
        if call == "push":
            spec = pushmanifest.ManifestListSpec(
                image="127.0.0.1:1/app:list", manifests=[{"image": "127.0.0.1:1/app:a"}]
            )
            pushmanifest.push(spec, client=options)
        else:
            pushmanifest.inspect("127.0.0.1:1/app:x", client=options)
    seen: BaseException | None = caught.value
    while seen is not None:
        assert "no running event loop" not in str(seen), caught.value
        seen = seen.__cause__ or seen.__context__
