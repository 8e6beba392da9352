"""Client CPU to submit 100,000 contacts, against serialising the same payloads with msgspec alone.

The simulator runs as ``eventbus simulate`` in its own process, so
``time.process_time()`` here counts only the client: reading the contacts'
fields, validating, chunking, encoding, HTTP and publishing events on a bus.
The baseline encodes the very chunk bodies that were sent (the provider's
field names, the same chunking) with ``msgspec.json.encode``, in the same run.

Also measured in the same run, for information:

- the floors under any client that sends these bodies: the encode plus
  POSTing the encoded bodies with a plain ``httpx.AsyncClient`` (4
  connections, as the client uses), and the encode plus writing them as
  HTTP/1.1 requests on one raw socket (the least a client can spend);
- the floor under any client that looks at each contact's fields at all,
  even in C: ``msgspec.convert`` of the bodies' contacts (already in the
  provider's field names, so nothing is renamed) into a Struct that checks
  only the fields' types (less than the client checks: no ``@`` in the email,
  since a ``Meta(pattern=...)`` costs msgspec a regex search per value, more
  than the client's whole check), then encoding the Structs -- with no HTTP;
- what one request costs in itself: the CPU per POST of a one-contact body,
  50 of them one after the other on one connection, with a plain httpx client
  and on the raw socket;
- the client's parts without I/O: ``prepare`` (mapping, validating,
  chunking; these contacts are alike, so they take the bulk path), the same
  contact by contact (as for contacts that are not alike), and building the
  request bodies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from adapters.http import Settings
from adapters.providers.base import Chunk, Table
from adapters.providers.datananas import Datananas
from adapters.submit import prepare, submit
from benchmarks._util import best_cpu, ratio, simulator_process
from eventbus.bus import Bus

NAME = "submit"


def _contacts(n: int) -> list[dict[str, str]]:
    return [
        {"email": f"person{i}@example.com", "first_name": f"First{i}", "last_name": f"Last{i}", "company": "Acme"}
        for i in range(n)
    ]


def _client_cpu(base: str, contacts: list[dict[str, str]]) -> float:
    async def main() -> float:
        async with Bus() as bus:
            bus.on(lambda _event: None, name="consumer")  # the events are delivered, as to a user's subscriber
            settings = Settings(base + "/datananas", "demo-token")
            started = time.process_time()
            report = await submit("datananas", contacts, bus, settings=settings, list="L1", concurrency=4)
            await bus.drain()
            cpu = time.process_time() - started
        assert report.ok and sum(len(j.rows) for j in report.accepted) == len(contacts), report
        return cpu

    return anyio.run(main)


_HEADERS = {"Authorization": "Bearer demo-token", "Content-Type": "application/json"}


def _httpx_post_cpu(base: str, bodies: list[bytes]) -> float:
    """Client CPU to POST the encoded bodies with a plain httpx client, 4 at a time."""

    async def main() -> float:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=4)) as client:

            async def post(body: bytes) -> None:
                r = await client.post(base + "/datananas/contacts/bulk", content=body, headers=_HEADERS)
                assert r.status_code == 200, r.text

            started = time.process_time()
            async with anyio.create_task_group() as tg:
                for body in bodies:
                    tg.start_soon(post, body)
            return time.process_time() - started

    return anyio.run(main)


def _httpx_sequential_cpu(base: str, bodies: list[bytes]) -> float:
    """Client CPU to POST the bodies one after the other on one connection with a plain httpx client."""

    async def main() -> float:
        async with httpx.AsyncClient() as client:
            url = base + "/datananas/contacts/bulk"
            await client.post(url, content=bodies[0], headers=_HEADERS)  # connected before the clock starts
            started = time.process_time()
            for body in bodies:
                r = await client.post(url, content=body, headers=_HEADERS)
                assert r.status_code == 200, r.text
            return time.process_time() - started

    return anyio.run(main)


def _raw_post_cpu(base: str, bodies: list[bytes]) -> float:
    """Client CPU to write the bodies as HTTP/1.1 POSTs on one socket and read each answer (the floor)."""
    url = urlsplit(base)
    head = "".join(f"{k}: {v}\r\n" for k, v in _HEADERS.items())

    async def main() -> float:
        started = time.process_time()
        async with await anyio.connect_tcp(url.hostname or "127.0.0.1", url.port or 80) as stream:
            for body in bodies:
                request = f"POST /datananas/contacts/bulk HTTP/1.1\r\nHost: {url.netloc}\r\n{head}"
                await stream.send(f"{request}Content-Length: {len(body)}\r\n\r\n".encode())
                await stream.send(body)
                buffer = b""
                while b"\r\n\r\n" not in buffer:
                    buffer += await stream.receive()
                header, _, rest = buffer.partition(b"\r\n\r\n")
                assert header.startswith(b"HTTP/1.1 200"), header
                length = int(header.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += await stream.receive()
        return time.process_time() - started

    return anyio.run(main)


_SMALL = 50  # one-contact POSTs, for the cost of a request itself


def _encode_each(payloads: list[dict[str, object]]) -> None:
    encode = msgspec.json.encode
    for payload in payloads:
        encode(payload)  # each body dropped at once, as the client drops it once sent


class _Checked(msgspec.Struct, omit_defaults=True):
    """A Datananas contact of these fields, its fields' types checked by msgspec in C."""

    email: str
    firstname: str | None = None
    lastname: str | None = None
    company: str | None = None


def _check_and_encode_each(payloads: list[dict[str, object]]) -> None:
    encode, convert = msgspec.json.encode, msgspec.convert
    for payload in payloads:
        encode({"list": payload["list"], "contacts": convert(payload["contacts"], list[_Checked])})


class _OneByOne(Datananas):
    """Datananas with the bulk path turned off: contacts that are not alike go this way."""

    def tabulate(self, contacts: Sequence[Any]) -> Table | None:
        return None


def _parts(contacts: list[dict[str, str]], chunks: list[Chunk]) -> dict[str, float]:
    bulk, one_by_one = Datananas(list="L1"), _OneByOne(list="L1")
    return {
        "prepare_bulk_cpu_s": round(best_cpu(lambda: prepare(bulk, contacts)), 4),
        "prepare_one_by_one_cpu_s": round(best_cpu(lambda: prepare(one_by_one, contacts)), 4),
        "build_bodies_cpu_s": round(best_cpu(lambda: [bulk.build_submit(c) for c in chunks]), 4),
    }


def run(quick: bool) -> dict:
    n = 20_000 if quick else 100_000
    contacts = _contacts(n)
    provider = Datananas(list="L1")
    chunks, _, _ = prepare(provider, contacts)
    payloads = [{"list": "L1", "contacts": list(c.contacts)} for c in chunks]  # what was sent, as plain dicts
    bodies = [provider.build_submit(c).content or b"" for c in chunks]
    with simulator_process() as (base, _pid):
        client = min(_client_cpu(base, contacts) for _ in range(3))
        httpx_post = min(_httpx_post_cpu(base, bodies) for _ in range(3))
        raw_post = min(_raw_post_cpu(base, bodies) for _ in range(3))
        small = [provider.build_submit(prepare(provider, contacts[:1])[0][0]).content or b""] * _SMALL
        httpx_small = min(_httpx_sequential_cpu(base, small) for _ in range(3)) / _SMALL
        raw_small = min(_raw_post_cpu(base, small) for _ in range(3)) / _SMALL
    serialise = best_cpu(lambda: _encode_each(payloads))
    check_and_encode = best_cpu(lambda: _check_and_encode_each(payloads))
    return {
        "contacts": n,
        "client_cpu_s": round(client, 4),
        "msgspec_serialise_cpu_s": round(serialise, 4),
        "ratio_client_vs_serialise": ratio(client, serialise),
        "client_cpu_us_per_contact": round(client / n * 1e6, 2),
        "floors_for_information": {
            "msgspec_check_and_encode_cpu_s": round(check_and_encode, 4),
            "ratio_msgspec_check_and_encode_vs_serialise": ratio(check_and_encode, serialise),
            "encode_plus_httpx_post_cpu_s": round(serialise + httpx_post, 4),
            "ratio_encode_plus_httpx_post_vs_serialise": ratio(serialise + httpx_post, serialise),
            "encode_plus_raw_socket_post_cpu_s": round(serialise + raw_post, 4),
            "ratio_encode_plus_raw_socket_post_vs_serialise": ratio(serialise + raw_post, serialise),
            "httpx_cpu_us_per_one_contact_post": round(httpx_small * 1e6),
            "raw_socket_cpu_us_per_one_contact_post": round(raw_small * 1e6),
        },
        "parts_for_information": _parts(contacts, chunks),
        "meets": {"client CPU < 2x msgspec serialisation": client < 2 * serialise},
    }
