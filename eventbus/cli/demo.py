"""The whole flow against the built-in simulator: submit to all four providers at once and watch every job end.

No credentials and nothing to start by hand: the simulator runs in-process on
a free loopback port. The merged stream is printed as it happens (one line per
notable event, a progress bar per job on a terminal), every event is written
as a JSON line to a log file and to a SQLite journal, the state of every job
and contact is kept in a SQLite store, and a per-job summary closes the run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from contextlib import AsyncExitStack

from eventbus.cli import (
    console_width,
    count,
    guard_stdout,
    integer,
    journal_option,
    journal_path,
    non_negative,
    stdout_console,
)

NAME = "demo"
HELP = "run the whole flow against the built-in provider simulator (no credentials needed)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=count, default=3000, help="contacts per provider (default: 3000)")
    parser.add_argument(
        "--item-time",
        type=non_negative,
        default=0.001,
        metavar="SECONDS",
        help="simulated work per contact (default: 0.001)",
    )
    parser.add_argument(
        "--log",
        default="eventbus-demo.jsonl",
        metavar="PATH",
        help="write every event as a JSON line here (default: eventbus-demo.jsonl; '-' for none)",
    )
    journal_option(parser, default="eventbus-demo.db")
    parser.add_argument(
        "--store",
        default="eventbus-demo-store.db",
        metavar="PATH",
        help="keep every job and contact in this SQLite store, added to if it exists "
        "(read it with: eventbus jobs PATH) (default: eventbus-demo-store.db; '-' for none)",
    )
    parser.add_argument("--items", action="store_true", help="also print one line per contact")
    parser.add_argument("--seed", type=integer, default=0, help="seed for the simulator's outcomes and faults")


def demo_contacts(provider: str, n: int) -> list:
    """Sample input with a few rows each provider will refuse, so failures show up too."""
    if provider == "insideview":
        return [str(1_000_000 + i) for i in range(n)]  # ids ending in 7 are "not found"
    if provider == "pronto":
        return [
            {
                "first_name": f"Ann{i}",
                "last_name": "" if i % 500 == 499 else f"Lee{i}",
                "company": f"Acme {i % 50}",
                "crm_id": f"c-{i}",
            }
            for i in range(n)
        ]  # every 500th row has no last name: refused before sending
    if provider == "mautic":
        return [
            {"email": f"m{i}@example.com" if i % 250 else f"not-an-email-{i}", "first_name": f"M{i}"} for i in range(n)
        ]  # every 250th email is invalid (refused up front)
    return [{"email": f"d{i}@example.com", "first_name": f"D{i}", "company": "Acme"} for i in range(n)]


def run(args: argparse.Namespace) -> int:
    import anyio
    from rich.markup import escape

    from adapters.follow import follow
    from adapters.http import Settings
    from adapters.serving import loopback_direct
    from adapters.simulator import Faults, SimulatorConfig, run_simulator
    from eventbus.bus import Bus
    from eventbus.subscribers.board import JobBoard
    from eventbus.subscribers.console import ConsoleView, provider_table, summary_table
    from eventbus.subscribers.log import EventLogger
    from eventbus.subscribers.store import Store

    loopback_direct()  # the simulator and the receiver are on loopback, which no proxy in the environment reaches
    console = stdout_console(width=console_width())
    # A touch of real-world mess: some webhooks are delivered twice; the tracker merges them away.
    config = SimulatorConfig(seed=args.seed, item_time=args.item_time, faults=Faults(duplicate_webhooks=0.05))
    log_file = None if args.log == "-" else open(args.log, "w", encoding="utf-8")
    store_path = None if args.store in ("", "-") else args.store

    async def main() -> int:
        board = JobBoard()
        view = ConsoleView(board, console, items=args.items)
        try:
            async with AsyncExitStack() as stack:
                sim = await stack.enter_async_context(run_simulator(config))
                bus = await stack.enter_async_context(Bus(journal=journal_path(args)))
                console.print(f"[bold]simulator[/] listening on {sim.base_url}")
                journal = bus.journal
                before = journal.last_seq if journal is not None else 0  # an earlier run's events stay before these
                bus.on(guard_stdout(view), name="console", buffer=65_536)
                if log_file is not None:
                    bus.on(EventLogger(log_file, json=True), name="json-log", buffer=65_536)
                if store_path is not None:  # left before the bus: everything handled is committed
                    await stack.enter_async_context(Store(store_path).attach(bus, buffer=65_536))
                u = sim.urls
                plans = {
                    "datananas": (Settings(u["datananas"], "demo-token"), {"list": "demo-list"}),
                    "pronto": (Settings(u["pronto"], "demo-key"), {}),
                    "mautic": (Settings(u["mautic"], "demo", "demo"), {}),
                    "insideview": (Settings(u["insideview"], "demo", "demo"), {}),
                }
                results = {}

                async def one(provider: str) -> None:
                    settings, options = plans[provider]
                    results[provider] = await follow(
                        provider,
                        demo_contacts(provider, args.contacts),
                        bus,
                        settings=settings,
                        timeout=300,
                        stuck_after=60,
                        **options,
                    )

                async with anyio.create_task_group() as tg:
                    for provider in plans:
                        tg.start_soon(one, provider)
                await bus.drain()
        finally:
            view.stop()
            if log_file is not None:
                log_file.close()
        console.print(summary_table(board, title="eventbus demo: every job"))
        console.print(provider_table(board))
        jobs = [board.rows[(p, j.job_id)] for p, r in results.items() for j in r.report.accepted]
        completed = sum(row.state == "completed" for row in jobs)
        items = sum(row.seen for row in jobs)
        invalid = sum(len(r.report.invalid) for r in results.values())
        console.print(
            f"{completed} of {len(jobs)} jobs completed; {items} contacts reported by the providers, "
            f"{invalid} refused before sending" + (f"; events in {escape(args.log)}" if log_file is not None else "")
        )
        if journal is not None:
            path = shlex.quote(str(journal.path))
            after = f" --after {before}" if before else ""
            console.print(
                f"{journal.last_seq - before} events journaled in {escape(str(journal.path))}; "
                f"read them with: [bold]eventbus tail {escape(path)}{after}[/]",
                highlight=False,
            )
            if store_path is None:
                console.print(f"one row per job, every run: [bold]eventbus jobs {escape(path)}[/]", highlight=False)
        if store_path is not None:
            path = shlex.quote(store_path)
            console.print(
                f"every job and contact, every run, in {escape(store_path)}: [bold]eventbus jobs {escape(path)}[/] "
                f"(a job's contacts: [bold]eventbus jobs {escape(path)} --items --job ID[/])",
                highlight=False,
            )
        return 0 if completed == len(jobs) and jobs else 1

    return anyio.run(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(
        run(argparse.Namespace(contacts=300, item_time=0.001, log="-", journal=None, store=None, items=False, seed=0))
    )
