"""Outgoing webhooks: queued, sent by a bounded pool of workers, retried with backoff, optionally signed.

Faults apply here: ``duplicate_webhooks`` delivers some messages twice (same
``webhook-id``, as a real retry would), ``reorder_webhooks`` shuffles them in
groups. A receiver that answers 5xx/429 or cannot be reached is retried with
capped, jittered exponential backoff up to ``webhook_attempts`` times; any
other 4xx is final (resending the same body will not help).
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass

import anyio
import httpx
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream

from adapters.backoff import Backoff
from adapters.signing import signature_headers
from adapters.simulator.common import SimState
from adapters.simulator.http_post import HTTPPostError, RawPoster

__all__ = ["WebhookSender", "WebhookStats"]

_QUEUE = 200_000
_REORDER_FLUSH = 0.05  # seconds a partial reorder group waits before it is sent anyway


@dataclass
class WebhookStats:
    """Counters tests read to see what the simulator sent."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    dropped: int = 0  # queue full: more outstanding webhooks than the simulator holds


class WebhookSender:
    """Delivers webhook payloads to receivers; one per simulator."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.stats = WebhookStats()
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, bytes, str]](_QUEUE)
        self._held: list[tuple[str, bytes, str]] = []
        self._client: httpx.AsyncClient | None = None
        self._settled = threading.Condition()  # tests in another thread wait on it
        # One generator per decision, so that backoff jitter (timing-dependent) never
        # shifts which webhooks are duplicated or how a group is shuffled.
        seed = state.config.seed
        self._duplicate_rng = random.Random(f"{seed}:duplicate")
        self._reorder_rng = random.Random(f"{seed}:reorder")
        self._backoff_rng = random.Random(f"{seed}:backoff")

    def _settle(self, delivered: bool) -> None:
        with self._settled:
            if delivered:
                self.stats.delivered += 1
            else:
                self.stats.failed += 1
            self._settled.notify_all()

    async def wait_settled(self, count: int, timeout: float = 10.0) -> None:
        """Wait (from any thread's event loop) until ``count`` webhooks were delivered or given up on."""

        def wait() -> bool:
            with self._settled:
                return self._settled.wait_for(lambda: self.stats.delivered + self.stats.failed >= count, timeout)

        if not await anyio.to_thread.run_sync(wait):
            raise TimeoutError(f"{count} webhooks did not settle within {timeout}s: {self.stats}")

    def send(self, url: str, payload: object, msg_id: str | None = None) -> None:
        """Queue one webhook (never blocks; the faults decide duplicates and order)."""
        faults = self.state.config.faults
        item = (url, msgspec.json.encode(payload), msg_id or f"msg_{uuid.uuid4().hex}")
        copies = 2 if faults.duplicate_webhooks and self._duplicate_rng.random() < faults.duplicate_webhooks else 1
        for _ in range(copies):
            self.stats.queued += 1
            if faults.reorder_webhooks > 1:
                self._held.append(item)
                if len(self._held) >= faults.reorder_webhooks:
                    self._release_held()
            else:
                self._enqueue(item)

    def _enqueue(self, item: tuple[str, bytes, str]) -> None:
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            self.stats.dropped += 1

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self._reorder_rng.shuffle(held)
        for item in held:
            self._enqueue(item)

    async def run(self) -> None:
        """Run the workers until cancelled (the simulator's lifespan does that)."""
        limits = httpx.Limits(max_connections=self.state.config.webhook_concurrency)
        self._raw = RawPoster(timeout=10.0)
        try:
            # Delivered directly, as a provider's servers would: a proxy named in this machine's
            # environment (HTTP_PROXY, ...) cannot reach a receiver on its loopback.
            client = httpx.AsyncClient(timeout=10.0, limits=limits, trust_env=False)
            async with client, anyio.create_task_group() as tg:
                self._client = client
                for _ in range(self.state.config.webhook_concurrency):
                    tg.start_soon(self._worker, self._receive.clone())
                if self.state.config.faults.reorder_webhooks > 1:
                    tg.start_soon(self._flush_held_regularly)
        finally:
            self._send.close()
            self._receive.close()
            with anyio.CancelScope(shield=True):
                await self._raw.aclose()

    async def _flush_held_regularly(self) -> None:
        while True:
            await anyio.sleep(_REORDER_FLUSH)
            if self._held:
                self._release_held()

    async def _worker(self, receive: MemoryObjectReceiveStream[tuple[str, bytes, str]]) -> None:
        async with receive:
            async for item in receive:
                try:
                    await self._deliver_with_retries(*item)
                except Exception as exc:  # a bug here must not stop this worker (the others would follow)
                    self.state.record_error(f"webhook delivery to {item[0]!r}: {exc!r}")
                    self._settle(False)

    async def _deliver_with_retries(self, url: str, body: bytes, msg_id: str) -> None:
        config = self.state.config
        backoff = Backoff(
            base=config.webhook_backoff,
            cap=max(2.0, config.webhook_backoff),
            max_attempts=max(config.webhook_attempts - 1, 0),
            rng=self._backoff_rng,
        )
        while True:
            self.stats.attempts += 1
            outcome = await self._deliver(url, body, msg_id)
            if outcome == "delivered" or outcome == "refused" or backoff.exhausted:
                self._settle(outcome == "delivered")
                return
            await anyio.sleep(backoff.next_delay())

    async def _deliver(self, url: str, body: bytes, msg_id: str) -> str:
        """One attempt: "delivered", "retry" (5xx, 429, unreachable) or "refused" (other 4xx)."""
        assert self._client is not None
        headers = {"content-type": "application/json", "user-agent": "eventbus-simulator"}
        if self.state.config.webhook_secret:
            headers.update(signature_headers(self.state.config.webhook_secret, msg_id, body))
        else:
            headers["webhook-id"] = msg_id
        try:
            if url.startswith("http://"):
                status = await self._raw.post(url, body, headers)
            else:
                status = (await self._client.post(url, content=body, headers=headers)).status_code
        except (httpx.HTTPError, HTTPPostError):
            return "retry"
        except httpx.InvalidURL:  # validated on submit; resending would not fix it
            return "refused"
        if 200 <= status < 300:
            return "delivered"
        if status == 429 or status >= 500:
            return "retry"
        return "refused"
