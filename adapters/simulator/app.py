"""The simulator's ASGI app: the four providers under their prefixes on one port, plus faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.simulator import datananas, insideview, mautic, pronto
from adapters.simulator.common import BodyError, SimState, json_response
from adapters.simulator.config import Clock, SimulatorConfig
from adapters.simulator.webhooks_out import WebhookSender

__all__ = ["PREFIXES", "build_app"]

PREFIXES = {
    "insideview": "/insideview",
    "mautic": "/mautic",
    "datananas": "/datananas",
    "pronto": "/pronto",
}

_TOKEN_PATHS = ("/insideview/Auth/", "/mautic/oauth/")


class FaultMiddleware:
    """Slow responses and 5xx bursts for HTTP API requests (not token endpoints, not WebSockets)."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_TOKEN_PATHS) or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        faults = self.state.config.faults
        self.state.count_path(scope["path"])
        if faults.slow_response:
            await anyio.sleep(faults.slow_response)
        if self.state.next_request_fails():
            response = json_response({"error": "simulated server error (fault error_every)"}, 503)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _body_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyError)
    return exc.response


async def _health(_request: Request) -> Response:
    return json_response({"status": "ok"})


def build_app(config: SimulatorConfig | None = None, clock: Clock | None = None) -> tuple[Starlette, SimState]:
    """The app and its state (for tests to inspect); background work runs in the app's lifespan."""
    state = SimState((config or SimulatorConfig()).validate(), clock or Clock())
    webhooks = WebhookSender(state)
    state.extra["webhooks"] = webhooks

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as tg:
            state.task_group = tg
            tg.start_soon(webhooks.run)
            yield {}
            tg.cancel_scope.cancel()

    app = Starlette(
        routes=[
            Route("/health", _health),
            Mount(PREFIXES["insideview"], routes=insideview.routes(state, webhooks)),
            Mount(PREFIXES["mautic"], routes=mautic.routes(state)),
            Mount(PREFIXES["datananas"], routes=datananas.routes(state)),
            Mount(PREFIXES["pronto"], routes=pronto.routes(state, webhooks)),
        ],
        exception_handlers={BodyError: _body_error},
        lifespan=lifespan,
    )
    app.add_middleware(FaultMiddleware, state=state)
    return app, state
