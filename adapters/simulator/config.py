"""The simulator's settings: credentials, limits, pacing and faults.

Every fault is off by default. ``parse_fault("name=value")`` turns the
command line's ``--fault`` arguments into :class:`Faults` fields, refusing
unknown names and bad values with a message listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field

from adapters.signing import secret_key
from eventbus.exceptions import ConfigError

__all__ = ["Clock", "Credentials", "Faults", "SimulatorConfig", "Throttle", "parse_fault"]


class Clock:
    """Wall-clock seconds that tests can move forward (token expiry, job expiry and throttle windows read it).

    ``Clock(frozen=True)`` stands still until :meth:`advance` moves it, so a
    test that counts requests in a throttle window never straddles a window
    boundary by accident. Job pacing does not read this clock (jobs progress
    in real time). Thread-safe: the simulator runs in its own thread while
    tests advance it.
    """

    def __init__(self, *, frozen: bool = False) -> None:
        self._frozen_at = time.time() if frozen else None
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as the simulator sees them."""
        base = self._frozen_at if self._frozen_at is not None else time.time()
        return base + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (tokens and jobs age at once)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds


@dataclass
class Credentials:
    """What the simulator accepts; the defaults are the documented local ones."""

    insideview_client_id: str = "demo"
    insideview_client_secret: str = "demo"
    mautic_client_id: str = "demo"
    mautic_client_secret: str = "demo"
    datananas_token: str = "demo-token"
    pronto_api_key: str = "demo-key"


@dataclass
class Throttle:
    """A request budget per token and window: over it, 429.

    InsideView counts over a rolling window (as ``providers.md`` says); the
    others over fixed windows, whose reset time Mautic reports in
    ``X-RateLimit-Reset``.
    """

    limit: int
    window: float = 300.0


@dataclass
class Faults:
    """Fault injection, each off by default. See docs/simulator.md for the exact meaning."""

    ws_drop_after: int = 0  # close each Datananas WebSocket after this many frames (0: never)
    ws_accept_then_close: bool = False  # accept each WebSocket, then close it at once
    duplicate_webhooks: float = 0.0  # probability that an outgoing webhook is delivered twice
    reorder_webhooks: int = 0  # deliver outgoing webhooks in shuffled groups of this size (0: in order)
    error_every: int = 0  # every Nth API request starts a burst of 503s (0: never)
    error_burst: int = 1  # how many consecutive 503s a burst lasts
    slow_response: float = 0.0  # seconds added before every API response
    mautic_expire_after: float = 0.0  # Mautic jobs expire this many seconds after creation (0: 48 hours)


_FAULT_TYPES = {f.name: f.type for f in dataclasses.fields(Faults)}


def parse_fault(spec: str, faults: Faults | None = None) -> Faults:
    """Apply one ``NAME=VALUE`` to ``faults`` (a new :class:`Faults` if None) and return it."""
    faults = faults or Faults()
    name, sep, raw = spec.partition("=")
    name = name.strip().replace("-", "_")
    if name not in _FAULT_TYPES:
        raise ConfigError(f"unknown fault {name!r}; valid faults: {', '.join(sorted(_FAULT_TYPES))}")
    kind = _FAULT_TYPES[name]
    if not sep:
        if kind in ("bool", bool):
            raw = "true"
        else:
            raise ConfigError(f"fault {name!r} needs a value: --fault {name}=VALUE")
    raw = raw.strip()
    try:
        if kind in ("bool", bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            value: object = raw.lower() in ("1", "true", "yes", "on")
        elif kind in ("int", int):
            value = int(raw)
        else:
            value = float(raw)
            if not math.isfinite(value):  # nan passes "< 0" checks; inf seconds never end
                raise ValueError
    except ValueError:
        raise ConfigError(f"fault {name!r}: {raw!r} is not a valid {kind}") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"fault {name!r} must not be negative")
    if name == "duplicate_webhooks" and not 0 <= float(value) <= 1:  # type: ignore[arg-type]
        raise ConfigError("fault 'duplicate_webhooks' is a probability between 0 and 1")
    setattr(faults, name, value)
    return faults


@dataclass
class SimulatorConfig:
    """Everything the simulator can be told. Defaults suit tests and the demo."""

    seed: int = 0
    item_time: float = 0.0002  # seconds of simulated work per contact: 10,000 contacts take ~2 s
    tick: float = 0.01  # jobs advance in steps of this many seconds (items done per step = tick / item_time)
    credentials: Credentials = field(default_factory=Credentials)
    token_ttl: float = 3600.0
    throttle: dict[str, Throttle] = field(default_factory=dict)  # by provider name
    insideview_transactions: int | None = None  # ids the account may still submit in jobs; None: unlimited
    insideview_max_queued_jobs: int = 20  # unfinished jobs per token before "too many jobs already queued"
    insideview_job_api_allowed: bool = True  # False: the key may not submit jobs (405 "not allowed for this key")
    datananas_connect_quota: int | None = None  # contacts per day from Connect; None: unlimited
    datananas_total_quota: int | None = None  # contacts in the account; None: unlimited
    # Contacts processed (each a _running frame) before the bulk answer goes out; 0: only _starting precedes it.
    # providers.md: "the HTTP response returns between _starting and _ending".
    datananas_answer_after: int = 0
    pronto_credits: int | None = None  # None: unlimited
    pronto_gdpr_consent: bool = True
    pronto_sync_rate: int = 50  # synchronous single_enrich requests per second per API key
    mautic_page_size: int = 100
    webhook_secret: str | None = None  # sign outgoing webhooks (Standard Webhooks) when set
    webhook_attempts: int = 6
    webhook_backoff: float = 0.05  # first retry delay, doubling, capped at 2 s
    webhook_concurrency: int = 32
    max_body: int = 16 * 1024 * 1024
    faults: Faults = field(default_factory=Faults)

    def validate(self) -> SimulatorConfig:
        """Refuse settings the simulator cannot honour (ConfigError naming the setting); return self."""
        if self.webhook_secret is not None:
            try:
                secret_key(self.webhook_secret)
            except ValueError as exc:
                raise ConfigError(f"simulator setting 'webhook_secret': {exc}") from None
        for name in ("item_time", "token_ttl", "webhook_backoff", "datananas_answer_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"simulator setting {name!r} must not be negative")
        for name in ("tick", "mautic_page_size", "webhook_attempts", "webhook_concurrency", "max_body"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"simulator setting {name!r} must be positive")
        if self.pronto_sync_rate <= 0:
            raise ConfigError("simulator setting 'pronto_sync_rate' must be positive")
        for name in (
            "insideview_transactions",
            "datananas_connect_quota",
            "datananas_total_quota",
            "pronto_credits",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"simulator setting {name!r} must be None (unlimited) or >= 0")
        for provider, rule in self.throttle.items():
            if provider not in ("insideview", "mautic", "datananas", "pronto"):
                raise ConfigError(
                    f"throttle for unknown provider {provider!r}; valid: datananas, insideview, mautic, pronto"
                )
            if rule.limit < 0 or rule.window <= 0:
                raise ConfigError(f"throttle for {provider!r} needs limit >= 0 and window > 0")
        for f in dataclasses.fields(Faults):
            value = getattr(self.faults, f.name)
            if not isinstance(value, bool) and value < 0:
                raise ConfigError(f"fault {f.name!r} must not be negative")
        if not 0 <= self.faults.duplicate_webhooks <= 1:
            raise ConfigError("fault 'duplicate_webhooks' is a probability between 0 and 1")
        return self
