"""Structured logs of the whole stream, and alerts on the conditions that need a person.

Every event becomes one JSON log line (``EventLogger``: secrets redacted,
warnings for failures). ``Alerts`` watches the same stream with its rules
(a job failed, too many contacts failing, the account out of quota,
throttled too long, a job stuck) and fires each alert once per condition:
here to a function printing one line on stderr (a stand-in for a pager or a
chat hook) and as an ``"alert"`` line in the JSON log. The simulated Pronto
account has credits for 150 contacts and 300 are sent, so the account runs
out: the quota alert fires once, however many chunks it refuses.

    python examples/logs_and_alerts.py > events.jsonl

To POST each alert to a URL instead, signed with Standard Webhooks, add
``post_to("https://hooks.example.com/alerts", secret=...)`` to the hooks
(see docs/alerts.md).
"""

from __future__ import annotations

import sys

import anyio

from adapters.http import Settings
from adapters.simulator import SimulatorConfig, run_simulator
from adapters.submit import submit
from eventbus import Bus
from eventbus.subscribers.alerts import Alert, Alerts, log_to
from eventbus.subscribers.log import EventLogger


def page(alert: Alert) -> None:
    """Stand-in for a pager or chat hook: one line on stderr per alert."""
    print(f"ALERT {alert.provider}: {alert.message}", file=sys.stderr)


async def main() -> None:
    contacts = [{"first_name": f"Ada{i}", "last_name": "Lovelace", "domain": "example.com"} for i in range(300)]
    log = EventLogger(sys.stdout, json=True)
    alerts = Alerts(hooks=[page, log_to(log)])  # every rule, with its defaults
    async with run_simulator(SimulatorConfig(pronto_credits=150)) as sim, Bus() as bus, alerts.attach(bus):
        bus.on(log, name="log", buffer=10_000)  # every event, one JSON line each
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
        f"stopped: {report.stopped}; alerts fired: {alerts.stats().fired}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    anyio.run(main)
