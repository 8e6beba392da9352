"""Small helpers for the simulator conformance tests: real HTTP clients and polling by condition."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import httpx

from adapters.simulator import Simulator


async def insideview_token(client: httpx.AsyncClient, sim: Simulator) -> str:
    r = await client.post(
        sim.urls["insideview_login"] + "/Auth/login/v1/token.json",
        params={"clientId": "demo", "clientSecret": "demo", "grantType": "cred"},
    )
    assert r.status_code == 200, r.text
    return r.json()["accessTokenDetails"]["accessToken"]


async def mautic_token(client: httpx.AsyncClient, sim: Simulator) -> str:
    r = await client.post(
        sim.urls["mautic"] + "/oauth/v2/token",
        data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def poll_until(
    fetch: Callable[[], Awaitable[httpx.Response]], done: Callable[[httpx.Response], bool], timeout: float = 15.0
) -> httpx.Response:
    """Re-issue a real HTTP request until ``done`` holds for its answer (bounded by ``timeout``).

    This is what a client of the real service does; the short pause between
    requests paces the polling, it does not synchronise anything.
    """
    with anyio.fail_after(timeout):
        while True:
            response = await fetch()
            if done(response):
                return response
            await anyio.sleep(0.01)
