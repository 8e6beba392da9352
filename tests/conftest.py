"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param


def pytest_configure(config: pytest.Config) -> None:
    """Loopback never goes through a proxy here, whatever the machine's environment names.

    Every test talks to servers on 127.0.0.1; httpx and the WebSocket source
    both honour HTTP(S)_PROXY (a CI machine may set one to reach the package
    registry), and a proxy cannot reach this machine's loopback. The proxy
    tests set and clear these variables themselves.
    """
    from adapters.serving import loopback_direct

    loopback_direct()
