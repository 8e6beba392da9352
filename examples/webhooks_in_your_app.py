"""Receive provider webhooks inside an ASGI app of your own, and read the events as an async stream.

``WebhookReceiver`` is an ASGI app: mount it next to your own routes (here a
health check) and serve the whole app with uvicorn as you already do. Each
callback is checked (method, content type, size, optional signature), deduped,
parsed into typed events and published on the bus before the provider gets
its 200. A subscription reads them as an async iterator.

    python examples/webhooks_in_your_app.py
"""

from __future__ import annotations

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from adapters.http import Settings
from adapters.providers import pronto
from adapters.serving import ServedApp
from adapters.simulator import run_simulator
from adapters.submit import submit
from adapters.webhooks import WebhookReceiver
from eventbus import Bus, ItemFailed, ItemSucceeded


async def health(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def main() -> None:
    contacts = [{"first_name": f"Ada{i}", "last_name": "Lovelace", "domain": "example.com"} for i in range(120)]
    async with run_simulator() as sim, Bus() as bus:
        receiver = WebhookReceiver(bus, {"pronto": pronto.parse_webhook})  # build it in the bus's event loop
        app = Starlette(routes=[Route("/health", health), Mount("/incoming", app=receiver)])
        async with ServedApp(app) as served, bus.subscribe("results", types={ItemSucceeded, ItemFailed}) as results:
            # A real provider needs a public URL for this: yours, ending in /incoming/hooks/pronto.
            hook = f"{served.url}/incoming/hooks/pronto"
            report = await submit(
                "pronto", contacts, bus, settings=Settings(sim.urls["pronto"], "demo-key"), webhook_url=hook
            )
            expected = sum(len(job.rows) for job in report.accepted)
            found = not_found = 0
            with anyio.fail_after(60):
                async for event in results:  # one event per contact, as its webhook arrives
                    if isinstance(event, ItemSucceeded):
                        found += 1
                    else:
                        not_found += 1
                    if found + not_found == expected:
                        break
        print(f"{expected} contacts sent in {len(report.accepted)} jobs: {found} found, {not_found} not found")
        print(f"receiver: {receiver.stats()}")


if __name__ == "__main__":
    anyio.run(main)
