"""The token flow's drivers: a request given up while it waits for another's token (issue 11,
point 2: one flow, an asyncio driver and a threading driver, the single flight kept)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from pushmanifest.auth import TokenAuth
from pushmanifest.errors import AuthenticationError
from test_auth_token import FakeRegistry, manifest


def test_request_cancelled_while_waiting_for_the_token_leaves_the_lock_alone() -> None:
    fake = FakeRegistry()
    answer = fake._token
    auth = TokenAuth(None)

    async def go() -> list[int]:
        # Made inside the loop: on Python 3.9 an Event binds to the loop current when made.
        arrived, gate = asyncio.Event(), asyncio.Event()

        async def held_token(request: httpx.Request) -> httpx.Response:
            arrived.set()
            await gate.wait()
            return answer(request)

        fake.token_route.mock(side_effect=held_token)
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


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("failure", ["refused", "unreachable"])
def test_a_token_request_that_fails_gives_the_lock_back(sync: bool, failure: str) -> None:
    """The flow holds the single flight's lock while it fetches a token: a token request that
    is refused (the flow raises) or cannot be sent (its driver is closed mid-flow) must give it
    back, or the next request for the same token waits forever."""
    fake = FakeRegistry()
    answer = fake._token
    failures = [1]

    def failing_once(request: httpx.Request) -> httpx.Response:
        if failures:
            failures.pop()
            if failure == "unreachable":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(500, json={"details": "try again"})
        return answer(request)

    fake.token_route.mock(side_effect=failing_once)
    auth = TokenAuth(None)
    expected = httpx.ConnectError if failure == "unreachable" else AuthenticationError
    if sync:
        statuses: list[int] = []
        with fake.sync_client(auth) as client:
            with pytest.raises(expected):
                client.get(manifest("a"))
            again = threading.Thread(
                target=lambda: statuses.append(client.get(manifest("a")).status_code),
                daemon=True,
            )
            again.start()
            again.join(60)  # only a lock never given back takes this long
        assert not again.is_alive() and statuses == [200]
    else:

        async def go() -> int:
            async with fake.client(auth) as client:
                with pytest.raises(expected):
                    await client.get(manifest("a"))
                response = await asyncio.wait_for(client.get(manifest("a")), 60)
                return response.status_code

        assert asyncio.run(go()) == 200
    assert auth.token_requests == 2
