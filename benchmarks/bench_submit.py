"""Client CPU to submit 100,000 contacts, against serialising the same payloads with msgspec alone.

The simulator runs as ``eventbus simulate`` in its own process, so
``time.process_time()`` here counts only the client: reading the contacts'
fields, validating, chunking, encoding, HTTP and publishing events on a bus.
The baseline encodes the very chunk bodies that were sent (the provider's
field names, the same chunking) with ``msgspec.json.encode``, in the same run.
"""

from __future__ import annotations

import time

import anyio
import msgspec

from adapters.http import Settings
from adapters.providers.datananas import Datananas
from adapters.submit import prepare, submit
from benchmarks._util import ratio
from benchmarks.bench_simulator import _simulator_process
from eventbus.bus import Bus

NAME = "submit"


def _contacts(n: int) -> list[dict[str, str]]:
    return [
        {"email": f"person{i}@example.com", "first_name": f"First{i}", "last_name": f"Last{i}", "company": "Acme"}
        for i in range(n)
    ]


def _client_cpu(base: str, contacts: list[dict[str, str]]) -> tuple[float, int]:
    async def main() -> tuple[float, int]:
        async with Bus() as bus:
            count = 0

            def counter(_event: object) -> None:
                nonlocal count
                count += 1

            bus.on(counter, name="count")
            settings = Settings(base + "/datananas", "demo-token")
            started = time.process_time()
            report = await submit("datananas", contacts, bus, settings=settings, list="L1", concurrency=4)
            await bus.drain()
            cpu = time.process_time() - started
        assert report.ok and sum(len(j.rows) for j in report.accepted) == len(contacts), report
        return cpu, count

    return anyio.run(main)


def _serialise_cpu(contacts: list[dict[str, str]]) -> float:
    provider = Datananas(list="L1")
    chunks, _, _ = prepare(provider, contacts)
    bodies = [{"list": "L1", "contacts": list(c.contacts)} for c in chunks]
    encode = msgspec.json.encode
    started = time.process_time()
    for body in bodies:
        encode(body)
    return time.process_time() - started


def run(quick: bool) -> dict:
    n = 20_000 if quick else 100_000
    contacts = _contacts(n)
    with _simulator_process() as (base, _pid):
        client = min(_client_cpu(base, contacts)[0] for _ in range(3))
    serialise = min(_serialise_cpu(contacts) for _ in range(5))
    return {
        "contacts": n,
        "client_cpu_s": round(client, 4),
        "msgspec_serialise_cpu_s": round(serialise, 4),
        "ratio_client_vs_serialise": ratio(client, serialise),
        "client_cpu_us_per_contact": round(client / n * 1e6, 2),
        "meets": {"client CPU < 2x msgspec serialisation": client < 2 * serialise},
    }
