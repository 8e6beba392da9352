"""Submit contacts to two providers and watch every job to its end, from Python.

Runs against the built-in simulator (in-process, no credentials): point
``Settings`` at the real base URLs and credentials to run it for real.

    python examples/follow_jobs.py
"""

from __future__ import annotations

import anyio

from adapters.follow import follow
from adapters.http import Settings
from adapters.simulator import SimulatorConfig, run_simulator
from eventbus import Bus, ItemFailed, JobAccepted, JobCompleted, events


def people(n: int) -> list[dict[str, str]]:
    # Field names are matched loosely ("First Name", "first_name", "firstName") and renamed per provider.
    return [
        {"First Name": f"Ada{i}", "Last Name": "Lovelace", "email": f"ada{i}@example.com", "domain": "example.com"}
        for i in range(n)
    ]


async def main() -> None:
    async with run_simulator(SimulatorConfig(item_time=0.001)) as sim, Bus() as bus:

        def report(event: events.Event) -> None:
            match event:
                case JobAccepted():
                    print(f"{event.provider:10} {event.job_id} accepted ({event.total} contacts)")
                case JobCompleted():
                    print(f"{event.provider:10} {event.job_id} completed: {event.succeeded} ok, {event.failed} failed")

        bus.on(report, name="report", types={JobAccepted, JobCompleted})
        failures = 0

        def count_failure(_event: events.Event) -> None:
            nonlocal failures
            failures += 1

        bus.on(count_failure, name="failures", types={ItemFailed})

        async with anyio.create_task_group() as tg:
            # Pronto: results come back as one webhook per contact, to a receiver follow() starts here.
            tg.start_soon(lambda: follow("pronto", people(250), bus, settings=Settings(sim.urls["pronto"], "demo-key")))
            # Datananas: progress comes over a WebSocket, opened before the contacts are sent.
            tg.start_soon(
                lambda: follow(
                    "datananas", people(300), bus, settings=Settings(sim.urls["datananas"], "demo-token"), list="L1"
                )
            )
        await bus.drain()
        print(f"done: {failures} contacts could not be enriched (each one an ItemFailed event, with its reason)")


if __name__ == "__main__":
    anyio.run(main)
