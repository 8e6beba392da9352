"""Run the webhook receiver alone: POST /hooks/{provider}, events logged to stdout, until Ctrl-C or SIGTERM.

The signing secret comes from --secret or, better (it does not show in `ps`),
the EVENTBUS_WEBHOOK_SECRET environment variable. Provider parsers are those
of adapters.providers modules that define parse_webhook(body, headers), plus
any given with --parser NAME=module:function.
"""

from __future__ import annotations

import argparse
import os

from eventbus.cli import count, guard_stdout, journal_for, journal_option, port, positive, redact_userinfo

NAME = "serve"
HELP = "run the webhook receiver (POST /hooks/{provider}) and log the events it publishes"
ORDER = 50

SECRET_ENV = "EVENTBUS_WEBHOOK_SECRET"  # `eventbus simulate` signs with the same variable


def webhook_secret(flag: str | None) -> str | None:
    """The webhook secret: ``flag`` if given, else ``$EVENTBUS_WEBHOOK_SECRET``, else None (unsigned)."""
    return flag if flag is not None else os.environ.get(SECRET_ENV) or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8000, help="port to listen on (default: 8000; 0 picks a free one)")
    parser.add_argument(
        "--secret",
        default=None,
        help=f"Standard Webhooks secret to verify signatures (default: ${SECRET_ENV}; unsigned if neither is set)",
    )
    parser.add_argument("--tolerance", type=positive, default=300.0, help="max signature age in seconds (default: 300)")
    parser.add_argument("--max-body", type=count, default=1 << 20, help="body size limit in bytes (default: 1048576)")
    parser.add_argument(
        "--parser",
        action="append",
        default=[],
        metavar="NAME=MODULE:FUNCTION",
        help="register a webhook parser for /hooks/NAME (repeatable), e.g. acme=mypkg.hooks:parse",
    )
    parser.add_argument("--json", action="store_true", help="log JSON lines even on a terminal")
    journal_option(parser, retention=True)


def _parsers(specs: list[str]) -> dict[str, object]:
    import importlib
    import pkgutil
    import sys

    from eventbus.exceptions import ConfigError

    found: dict[str, object] = {}
    try:
        import adapters.providers as providers
    except ImportError:  # no provider package: only --parser entries
        providers = None
    for info in pkgutil.iter_modules(providers.__path__ if providers else []):
        try:
            module = importlib.import_module(f"adapters.providers.{info.name}")
        except Exception as exc:  # one broken provider must not take the receiver down
            print(f"warning: provider module {info.name!r} not loaded: {exc!r}", file=sys.stderr)
            continue
        parse = getattr(module, "parse_webhook", None)
        if callable(parse):
            found[getattr(module, "NAME", info.name)] = parse
    for spec in specs:
        name, _, target = spec.partition("=")
        module_name, _, attr = target.partition(":")
        if not name or not module_name or not attr:
            raise ConfigError(f"--parser {spec!r}: expected NAME=MODULE:FUNCTION, e.g. acme=mypkg.hooks:parse")
        try:
            parse = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # ImportError, AttributeError, or whatever the module raises on import
            raise ConfigError(f"--parser {spec!r}: cannot load {target}: {type(exc).__name__}: {exc}") from None
        if not callable(parse):
            raise ConfigError(f"--parser {spec!r}: {target} is not callable")
        found[name] = parse
    return found


def run(args: argparse.Namespace) -> int:
    import signal
    import socket
    import sys

    import anyio
    import uvicorn

    from adapters.serving import bind_tcp, url_host
    from adapters.signing import secret_key
    from adapters.webhooks import WebhookReceiver
    from eventbus.bus import Bus
    from eventbus.exceptions import ConfigError
    from eventbus.subscribers.log import EventLogger

    secret = webhook_secret(args.secret)
    if secret is not None:
        try:  # here, not in the receiver built inside the event loop, where it would surface as an ExceptionGroup
            secret_key(secret)
        except ValueError as exc:
            raise ConfigError(f"--secret (or ${SECRET_ENV}): {exc}") from None
    parsers = _parsers(args.parser)
    if not parsers:
        print("warning: no provider webhook parsers found; every hook will answer 404", file=sys.stderr)

    class Server(uvicorn.Server):
        # Our own signal handling (below): uvicorn's re-raises the signal after
        # shutdown, which would kill the process before the bus drains.
        def capture_signals(self):  # type: ignore[no-untyped-def]
            from contextlib import nullcontext

            return nullcontext()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            print(f"listening on http://{host}:{bound_port}/hooks/{{provider}}", flush=True)

    try:
        sock = bind_tcp(args.host, args.port)
    except (OSError, ConfigError) as exc:
        raise ConfigError(f"cannot listen on {redact_userinfo(args.host)}:{args.port}: {exc}") from None
    bound_port = sock.getsockname()[1]
    host = url_host(args.host)

    journal = journal_for(args)

    async def main() -> None:
        async with Bus(journal=journal) as bus:
            bus.on(guard_stdout(EventLogger(sys.stdout, json=True if args.json else None)), name="log")
            receiver = WebhookReceiver(
                bus,
                parsers,
                secret=secret,
                tolerance=args.tolerance,
                max_body=args.max_body,  # type: ignore[arg-type]
            )
            server = Server(uvicorn.Config(receiver, log_level="warning", lifespan="off"))

            def request_exit(*_: object) -> None:
                server.should_exit = True

            previous = {sig: signal.signal(sig, request_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                await server.serve(sockets=[sock])
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            await bus.drain(timeout=10)

    try:
        anyio.run(main, backend="asyncio")  # uvicorn serves on asyncio only
    finally:
        sock.close()
    return 0
