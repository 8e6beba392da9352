"""Run the local provider simulator (InsideView, Mautic, Datananas, Pronto) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any

from eventbus.cli import integer, non_negative, port, redact_userinfo

# The same variable `eventbus serve` verifies with. serve is a light module that the
# command discovery imports anyway, so this costs nothing at start-up.
from eventbus.cli.serve import SECRET_ENV, webhook_secret

NAME = "simulate"
HELP = "run the local provider simulator on one port"
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8765, help="port to listen on (default: 8765; 0 picks a free one)")
    parser.add_argument("--seed", type=integer, default=0, help="seed for outcomes and faults (default: 0)")
    parser.add_argument(
        "--item-time",
        type=non_negative,
        default=None,
        metavar="SECONDS",
        help="simulated work per contact (default: 0.0002)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="switch a fault on (repeatable), e.g. ws_drop_after=100, duplicate_webhooks=0.2; see docs/simulator.md",
    )
    parser.add_argument(
        "--webhook-secret",
        default=None,
        help=f"sign outgoing webhooks the Standard Webhooks way (default: ${SECRET_ENV}; unsigned if neither is set)",
    )


def exports(sim: Any) -> list[str]:
    """One shell ``export`` line per provider: its base URL on ``sim`` and the simulator's credentials."""
    import shlex

    c = sim.state.config.credentials
    env = {
        "insideview": {
            "INSIDEVIEW_CLIENT_ID": c.insideview_client_id,
            "INSIDEVIEW_CLIENT_SECRET": c.insideview_client_secret,
        },
        "mautic": {"MAUTIC_CLIENT_ID": c.mautic_client_id, "MAUTIC_CLIENT_SECRET": c.mautic_client_secret},
        "datananas": {"DATANANAS_TOKEN": c.datananas_token},
        "pronto": {"PRONTO_API_KEY": c.pronto_api_key},
    }
    return [
        "export "
        + " ".join(f"{k}={shlex.quote(v)}" for k, v in {f"{p.upper()}_BASE_URL": sim.urls[p], **names}.items())
        for p, names in env.items()
    ]


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from adapters.serving import bind_tcp
    from adapters.simulator import SimulatorConfig, parse_fault, simulator
    from eventbus.exceptions import ConfigError

    faults = None
    for spec in args.fault:
        faults = parse_fault(spec, faults)
    secret = webhook_secret(args.webhook_secret)
    config = SimulatorConfig(seed=args.seed, webhook_secret=secret)
    if faults is not None:
        config.faults = faults
    if args.item_time is not None:
        config.item_time = args.item_time

    def cannot_listen(exc: Exception) -> ConfigError:
        shown = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return ConfigError(f"cannot listen on {redact_userinfo(args.host)}:{args.port}: {shown}")

    try:
        bind_tcp(args.host, args.port).close()  # a malformed host is one clear line, not a traceback
    except (OSError, ConfigError) as exc:
        raise cannot_listen(exc) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        running = simulator(config, host=args.host, port=args.port)
        sim = running.__enter__()
    except OSError as exc:  # the port was taken meanwhile: say so, no traceback
        raise cannot_listen(exc) from None
    try:
        print(f"listening on {sim.base_url}", flush=True)
        print("# to point eventbus submit at it, in a shell:", *exports(sim), sep="\n", flush=True)
        try:
            while not stop.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        running.__exit__(None, None, None)
    return 0
