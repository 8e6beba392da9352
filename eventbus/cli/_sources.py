"""Where `eventbus tail` and `eventbus jobs` read events: a journal file, or a RedisBus's stream on a Redis URL.

One way to tell them apart (the URL's scheme, :data:`REDIS_SCHEMES`), one
``--stream`` option (refused with a file), and one way to open each that says
on stderr, in one line, why it could not (the caller exits 2): a missing or
foreign file, a Redis that cannot be reached (its password hidden), a key
that is not a stream.
"""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from eventbus.cli import say

if TYPE_CHECKING:
    from eventbus.backends.redis import RedisBus
    from eventbus.journal import Journal

DEFAULT_STREAM = "eventbus"  # RedisBus's
URL_HELP = "a Redis URL (redis://HOST:PORT/DB, rediss://, unix://) to read a RedisBus's stream"


def add_stream_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stream",
        metavar="NAME",
        help=f"with a Redis URL: the stream's key, as given to RedisBus(stream=...) (default: {DEFAULT_STREAM})",
    )


def is_redis_url(parser: argparse.ArgumentParser, source: str, stream: str | None, read_as: str) -> bool:
    """Whether ``source`` is a Redis URL; a usage error (exit 2) if ``--stream`` was given with a file.

    ``read_as`` says what a file is read as ("a journal file").
    """
    from eventbus.backends import REDIS_SCHEMES

    redis = source.startswith(REDIS_SCHEMES)
    if stream is not None and not redis:
        parser.error(
            f"argument --stream: is for Redis URLs ({', '.join(REDIS_SCHEMES)}) only; {source!r} is read as {read_as}"
        )
    return redis


def redis_client_missing(command: str) -> bool:
    """True, having said so, if redis-py (the "redis" extra) is not installed: the caller exits 2."""
    try:
        import eventbus.backends.redis  # noqa: F401
    except ImportError as exc:
        say(f"eventbus {command}: error: {exc}")
        return True
    return False


async def open_journal(path: str, command: str) -> Journal | None:
    """The journal at ``path``, open read-only; or None, having said why on stderr (the caller exits 2).

    Missing, a directory, not SQLite, another application's database, a newer layout: one line each.
    """
    from eventbus.exceptions import ConfigError, JournalError
    from eventbus.journal import Journal

    journal = Journal(path, readonly=True)
    try:
        await journal.open()
    except (ConfigError, JournalError) as exc:
        say(f"eventbus {command}: error: {exc}")
        return None
    return journal


async def open_stream(url: str, stream: str | None, command: str, stack: AsyncExitStack) -> tuple[RedisBus, str] | None:
    """The RedisBus on ``url`` and ``stream`` (None: the default), entered on ``stack``, and the stream's last
    entry id ("0": none was ever added); or None, having said why on stderr (unreachable, a bad URL or name, a
    key that is not a stream)."""
    from eventbus.backends.redis import RedisBus
    from eventbus.exceptions import ConfigError, TransportError

    try:
        bus = await stack.enter_async_context(RedisBus(url, stream=DEFAULT_STREAM if stream is None else stream))
        last = await bus.start_of_last(0)  # (also: is the key a stream?)
    except (ConfigError, TransportError) as exc:  # (no password in them: RedisBus redacts its URL)
        say(f"eventbus {command}: error: {exc}")
        return None
    return bus, last


def say_never_written(bus: RedisBus, command: str) -> None:
    """One stderr line: nothing was ever added to the stream (most often a typo in --stream)."""
    say(f"eventbus {command}: no entry was ever added to the stream {bus.stream!r} at {bus.url} (is --stream right?)")
