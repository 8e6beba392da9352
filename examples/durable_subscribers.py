"""Keep every event in a journal, and let a subscriber pick up where it stopped, from Python.

Runs against the built-in simulator (in-process, no credentials). The first
run follows a Datananas job on a bus with a journal (``jobs.db``); an
"outcomes" subscriber records each contact's outcome and acknowledges what it
has recorded every 25 contacts, but stops after 120 (as a process killed
mid-run would). The second run is a fresh bus on the same file: "outcomes"
gets every event after its saved cursor -- the 20 it had received but not
acknowledged come again (at least once), and their ``event.id`` tells them
apart -- and a new subscriber reads the whole history.

    python examples/durable_subscribers.py
"""

from __future__ import annotations

from collections import Counter

import anyio

from adapters.follow import follow
from adapters.http import Settings
from adapters.simulator import SimulatorConfig, run_simulator
from eventbus import Bus, Event, ItemFailed, ItemSucceeded, Journal
from eventbus.events import tag_of

ITEMS = {ItemSucceeded, ItemFailed}


class Outcomes:
    """What a store would do: record each contact's outcome once, keyed by the event's stable id."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}
        self.copies = 0

    def record(self, event: Event) -> None:
        if event.id in self.by_id:
            self.copies += 1  # received again after a restart: already recorded
        self.by_id[event.id] = tag_of(type(event))


async def first_run(outcomes: Outcomes) -> None:
    contacts = [{"email": f"ada{i}@example.com", "first_name": f"Ada{i}"} for i in range(200)]
    async with run_simulator(SimulatorConfig(item_time=0.0005)) as sim, Bus(journal="jobs.db") as bus:
        settings = Settings(sim.urls["datananas"], "demo-token")
        await follow("datananas", contacts, bus, settings=settings, list="L1")
        async with bus.subscribe("outcomes", durable=True, types=ITEMS) as sub:
            async for event in sub:
                outcomes.record(event)
                if len(outcomes.by_id) % 25 == 0:
                    await sub.ack()  # saved: a later "outcomes" starts after this event
                if len(outcomes.by_id) == 120:
                    break  # stop here, as if the process died: 20 received since the last ack
    print(f"first run:  'outcomes' recorded {len(outcomes.by_id)} contacts and acknowledged 100")


async def second_run(outcomes: Outcomes) -> None:
    async with Bus(journal="jobs.db") as bus:  # no provider, no simulator: only the file
        bus.on(outcomes.record, name="outcomes", durable=True, types=ITEMS)
        history = Counter[str]()
        bus.on(lambda event: history.update([tag_of(type(event))]), name="audit", durable=True)
        await bus.drain()  # both have caught up with the journal
    print(f"second run: 'outcomes' now has {len(outcomes.by_id)} contacts; {outcomes.copies} came twice")
    print(f"            outcomes: {dict(Counter(outcomes.by_id.values()))}")
    print(f"'audit', new, read the whole history: {dict(sorted(history.items()))}")
    async with Journal("jobs.db", readonly=True) as journal:
        print(f"cursors saved in jobs.db: {await journal.cursors()} (last position {journal.last_seq})")


async def main() -> None:
    outcomes = Outcomes()
    await first_run(outcomes)
    await second_run(outcomes)


if __name__ == "__main__":
    anyio.run(main)
