"""Simulated Datananas: bulk create with progress over one account-wide WebSocket.

``POST /contacts/bulk`` broadcasts ``contact_bulk_create_starting`` to every
connected socket of the account *before* it answers 200, then one
``contact_bulk_create_running`` per contact (``i`` is the 0-based index of the
contact) and one ``contact_bulk_create_ending`` with the counts. A contact
whose email the account already has is *updated*, any other is *created*.
Sockets connect to ``/ws?token=...``; a bad token is refused at the handshake
(HTTP 403). Nothing missed while disconnected is replayed.

Quotas (402, nothing created): contacts whose ``source`` is ``"connect"``
count against the daily Connect quota (``contact_connect_quotas``); every new
contact counts against the account total (``contact_total_quotas``).
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from adapters.simulator.common import (
    SimState,
    bearer_token,
    error_response,
    json_response,
    media_type,
    pace,
    read_json,
    too_many_requests,
)

__all__ = ["MAX_CONTACTS", "routes"]

PROVIDER = "datananas"
MAX_CONTACTS = 10_000
STARTING = "contact_bulk_create_starting"
RUNNING = "contact_bulk_create_running"
ENDING = "contact_bulk_create_ending"
_SOCKET_BUFFER = 200_000  # frames queued per socket before the server drops a slow client
_ANSWER_WAIT = 5.0  # seconds a job waits for its HTTP response to be sent before it starts anyway


def _key(contact: dict[str, Any]) -> str:
    """What identifies a contact in the account: its email (case-insensitive), else its linkedinUrl."""
    email = contact.get("email")
    return email.lower() if isinstance(email, str) else f"linkedin:{contact.get('linkedinUrl')}"


class Datananas:
    """The Datananas routes and WebSocket hub, bound to one simulator state."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.jobs: dict[str, dict[str, Any]] = state.jobs.setdefault(PROVIDER, {})
        self.contacts: dict[str, dict[str, Any]] = {}  # contact key (email or linkedinUrl) -> listId, owner
        self.reserved: set[str] = set()  # keys of contacts in accepted jobs, not created yet: they count already
        self.connect_used = 0
        self.sockets: set[MemoryObjectSendStream[str]] = set()
        self.frames_sent = 0
        self.connections = 0
        state.extra["datananas"] = self

    def _authorized(self, token: str | None) -> bool:
        return bool(token) and token == self.state.config.credentials.datananas_token

    def _broadcast(self, event: str, data: dict[str, Any]) -> None:
        frame = msgspec.json.encode({"event": event, "data": data}).decode()  # text once, for every socket
        for stream in list(self.sockets):
            try:
                stream.send_nowait(frame)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.sockets.discard(stream)  # a client too slow to keep up is dropped, as a server would
                stream.close()

    async def bulk(self, request: Request) -> Response:
        if request.method != "POST":
            return error_response("Method not allowed", 405)
        if not self._authorized(bearer_token(request)):
            return error_response("unauthorized", 401)
        allowed, *_, reset = self.state.throttle(PROVIDER, "account")
        if not allowed:
            return too_many_requests(reset)
        if media_type(request) != "application/json":
            return error_response("Content-Type must be application/json", 415)
        data = await read_json(request, self.state.config.max_body, error_response)
        if not isinstance(data, dict):
            return error_response('body must be an object: {"list": ..., "contacts": [...]}')
        contacts = data.get("contacts")
        if not isinstance(contacts, list) or not 1 <= len(contacts) <= MAX_CONTACTS:
            count = len(contacts) if isinstance(contacts, list) else 0
            return error_response(f"contacts must hold 1 to {MAX_CONTACTS} contacts, got {count}")
        for i, contact in enumerate(contacts):
            if not isinstance(contact, dict):
                return error_response(f"contacts[{i}] must be an object")
            if not isinstance(contact.get("email"), str) and not isinstance(contact.get("linkedinUrl"), str):
                return error_response(f"contacts[{i}] needs an email or a linkedinUrl", field="email", index=i)
        flags = {}
        for flag in ("moveExistingToList", "replaceOwner"):
            raw = request.query_params.get(flag, "false").lower()
            if raw not in ("true", "false"):
                return error_response(f"{flag} must be true or false", field=flag)
            flags[flag] = raw == "true"
        lst = data.get("list")
        if isinstance(lst, dict):
            list_id = str(lst.get("id") or lst.get("_id") or uuid.uuid4().hex[:12])
        elif isinstance(lst, str | int) and lst != "":
            list_id = str(lst)
        else:
            return error_response('"list" is required: a list object or a list id')
        config = self.state.config
        connect = sum(1 for c in contacts if c.get("source") == "connect")
        if config.datananas_connect_quota is not None and self.connect_used + connect > config.datananas_connect_quota:
            return json_response({"reason": "contact_connect_quotas"}, 402)
        # Contacts of jobs accepted but not processed yet count too: two jobs in a row cannot both squeeze in.
        new = {_key(c) for c in contacts} - self.contacts.keys() - self.reserved
        held = len(self.contacts) + len(self.reserved)
        if config.datananas_total_quota is not None and held + len(new) > config.datananas_total_quota:
            return json_response({"reason": "contact_total_quotas"}, 402)
        self.reserved |= new
        self.connect_used += connect
        job_uuid = str(uuid.uuid4())
        job = {"uuid": job_uuid, "listId": list_id, "total": len(contacts), "created": 0, "updated": 0, "ended": 0}
        self.jobs[job_uuid] = job
        self._broadcast(STARTING, {"listId": list_id, "uuid": job_uuid})
        answered = anyio.Event()
        ahead = min(config.datananas_answer_after, len(contacts))  # contacts processed before the answer
        reached = anyio.Event()
        self.state.spawn(self._process, job, contacts, flags, answered, ahead, reached)
        if ahead:
            await reached.wait()

        async def release() -> None:  # runs once the response has been sent
            # Events of this job broadcast before the answer went out (tests check it is only _starting).
            job["events_before_answer"] = 1 + job["created"] + job["updated"] + job["ended"]
            answered.set()

        body = {"uuid": job_uuid, "listId": list_id, "total": len(contacts)}
        return json_response(body, background=BackgroundTask(release))

    async def _process(
        self,
        job: dict[str, Any],
        contacts: list[dict[str, Any]],
        flags: dict[str, bool],
        answered: anyio.Event,
        ahead: int,
        reached: anyio.Event,
    ) -> None:
        """Create or update each contact, broadcasting its _running frame, then _ending.

        With ``ahead`` (``datananas_answer_after``) the first contacts are
        processed before the answer, which waits for ``reached``; else the job
        starts once the answer went out.
        """
        total = job["total"]
        if not ahead:
            with anyio.move_on_after(_ANSWER_WAIT):  # a client that vanished before the answer still gets its job
                await answered.wait()

        def step(start: int, end: int) -> None:
            for i in range(start, end):
                contact = contacts[i]
                key = _key(contact)
                existing = self.contacts.get(key)
                if existing is None:
                    self.contacts[key] = {"listId": job["listId"], "owner": contact.get("owner")}
                    self.reserved.discard(key)
                    job["created"] += 1
                else:
                    if flags["moveExistingToList"]:
                        existing["listId"] = job["listId"]
                    if flags["replaceOwner"] and contact.get("owner") is not None:
                        existing["owner"] = contact["owner"]
                    job["updated"] += 1
                self._broadcast(RUNNING, {"uuid": job["uuid"], "i": i, "total": total})

        if ahead:
            await pace(self.state, ahead, step)
            reached.set()
            await pace(self.state, total - ahead, lambda start, end: step(ahead + start, ahead + end))
            with anyio.move_on_after(_ANSWER_WAIT):  # the answer still comes before _ending
                await answered.wait()
        else:
            await pace(self.state, total, step)
        job["ended"] = 1
        self._broadcast(ENDING, {"uuid": job["uuid"], "created": job["created"], "updated": job["updated"]})

    async def socket(self, websocket: WebSocket) -> None:
        if not self._authorized(websocket.query_params.get("token")):
            await websocket.close(code=1008)  # before accept: the handshake is refused (403)
            return
        # Registered before the handshake completes, so a client that is connected
        # never misses an event published right after.
        send, receive = anyio.create_memory_object_stream[str](_SOCKET_BUFFER)
        self.sockets.add(send)
        self.connections += 1
        faults = self.state.config.faults
        try:
            await websocket.accept()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.sockets.discard(send)
            send.close()
            receive.close()
            return
        if faults.ws_accept_then_close:
            self.sockets.discard(send)
            send.close()
            receive.close()
            await websocket.close(code=1011)
            return
        try:
            async with anyio.create_task_group() as tg:

                async def watch_client() -> None:
                    try:
                        while True:
                            await websocket.receive_text()
                    except (WebSocketDisconnect, RuntimeError):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_client)
                sent = 0
                drop_after = faults.ws_drop_after
                async with receive:
                    while True:
                        try:
                            try:
                                frame = receive.receive_nowait()
                            except anyio.WouldBlock:
                                frame = await receive.receive()  # only wait (and yield) when nothing is queued
                        except anyio.EndOfStream:  # the hub dropped this socket (too slow)
                            await websocket.close(code=1013)
                            break
                        await websocket.send_text(frame)
                        sent += 1
                        self.frames_sent += 1
                        if drop_after and sent >= drop_after:
                            await websocket.close(code=1011)
                            break
                tg.cancel_scope.cancel()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.sockets.discard(send)
            send.close()


def routes(state: SimState) -> list[Route | WebSocketRoute]:
    """The Datananas routes, to mount under ``/datananas``."""
    d = Datananas(state)
    return [
        Route("/contacts/bulk", d.bulk, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        WebSocketRoute("/ws", d.socket),
    ]
