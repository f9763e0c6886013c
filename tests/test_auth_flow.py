"""The token flow's drivers: a request given up while it waits for another's token (issue 11,
point 2: one flow, an asyncio driver and a threading driver, the single flight kept)."""

from __future__ import annotations

import asyncio

import httpx

from pushmanifest.auth import TokenAuth
from test_auth_token import FakeRegistry, manifest


def test_request_cancelled_while_waiting_for_the_token_leaves_the_lock_alone() -> None:
    fake = FakeRegistry()
    arrived, gate = asyncio.Event(), asyncio.Event()
    answer = fake._token

    async def held_token(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await gate.wait()
        return answer(request)

    fake.token_route.mock(side_effect=held_token)
    auth = TokenAuth(None)

    async def go() -> list[int]:
        async with fake.client(auth) as client:
            first = asyncio.ensure_future(client.get(manifest("a")))
            await asyncio.wait_for(arrived.wait(), 60)  # it holds the lock, its token pending
            waiting = asyncio.ensure_future(client.get(manifest("a")))
            for _ in range(50):  # event-loop turns, not time: it reaches the lock and waits
                await asyncio.sleep(0)
            waiting.cancel()
            for _ in range(50):
                await asyncio.sleep(0)
            gate.set()
            statuses = [(await first).status_code]
            statuses.append((await client.get(manifest("a"))).status_code)
            assert waiting.cancelled()
            return statuses

    assert asyncio.run(go()) == [200, 200]
    assert auth.token_requests == 1
