"""Structured logs of the whole stream, and an alert hook on the events that need a person.

Every event becomes one JSON log line (``EventLogger``: secrets redacted,
warnings for failures); a second subscriber, filtered by type, raises an
alert. Here the simulated Pronto account has credits for 150 contacts and 300
are sent, so the account runs out: a ``QuotaExhausted`` event (the provider's
reason, HTTP 422) and the chunks not sent are what the alert hook sees.

    python examples/logs_and_alerts.py > events.jsonl
"""

from __future__ import annotations

import sys

import anyio

from adapters.http import Settings
from adapters.simulator import SimulatorConfig, run_simulator
from adapters.submit import submit
from eventbus import Bus, JobFailed, JobStuck, QuotaExhausted, SubmitRejected, events
from eventbus.subscribers.log import EventLogger

ALERTS = {QuotaExhausted, SubmitRejected, JobFailed, JobStuck}


def alert(event: events.Event) -> None:
    """Stand-in for a pager or chat hook: one line on stderr per event that needs a person."""
    match event:
        case QuotaExhausted():
            print(f"ALERT {event.provider}: out of quota (HTTP {event.status}): {event.reason}", file=sys.stderr)
        case SubmitRejected():
            again = "can be resent" if event.retriable else "do not resend as is"
            print(
                f"ALERT {event.provider}: chunk {event.chunk_index} rejected, {again}: {event.reason}", file=sys.stderr
            )
        case _:
            print(f"ALERT {event.provider}: {events.tag_of(type(event))} for job {event.job_id}", file=sys.stderr)


async def main() -> None:
    contacts = [{"first_name": f"Ada{i}", "last_name": "Lovelace", "domain": "example.com"} for i in range(300)]
    async with run_simulator(SimulatorConfig(pronto_credits=150)) as sim, Bus() as bus:
        bus.on(EventLogger(sys.stdout, json=True), name="log", buffer=10_000)  # every event, one JSON line each
        bus.on(alert, name="alerts", types=ALERTS)  # only what needs a person
        report = await submit(
            "pronto",
            contacts,
            bus,
            settings=Settings(sim.urls["pronto"], "demo-key"),
            webhook_url="http://127.0.0.1:9/hooks/pronto",  # results are not followed in this example
            concurrency=1,
        )
        await bus.drain()
    print(
        f"{len(report.accepted)} of {report.chunks} chunks accepted, {report.rejected_chunks} not; "
        f"stopped: {report.stopped}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    anyio.run(main)
