"""adapters: the I/O edges of eventbus — providers, submitters, sources and the simulator.

``adapters.providers`` holds one sans-I/O module per provider; the modules
beside it move bytes and call them: ``http`` (the provider HTTP client),
``submit`` (chunked submission), ``webhooks`` (the receiver), ``websocket``
(the WebSocket source), ``polling`` (pollers, pagination, streamed CSV) and
``follow`` (all of it wired per provider through the job tracker);
``adapters.simulator`` is the local stand-in for all four providers.
"""

from __future__ import annotations

from adapters.contacts import read_contacts
from adapters.follow import FollowResult, follow
from adapters.http import ProviderClient, Settings
from adapters.polling import (
    CsvRow,
    CsvRows,
    JobGone,
    PageFollower,
    PaginationError,
    Poller,
    PollOutcome,
    PollThrottled,
    follow_pages,
    retry_after_of,
)
from adapters.results import ResultRow, Results
from adapters.serving import ServedApp
from adapters.submit import AcceptedJob, Plan, PlannedChunk, RejectedChunk, SubmitReport, plan, prepare, submit
from adapters.webhooks import WebhookReceiver
from adapters.websocket import Correlator, WebSocketSource

__all__ = [
    "AcceptedJob",
    "Correlator",
    "CsvRow",
    "CsvRows",
    "FollowResult",
    "JobGone",
    "PageFollower",
    "PaginationError",
    "Plan",
    "PlannedChunk",
    "PollOutcome",
    "PollThrottled",
    "Poller",
    "ProviderClient",
    "RejectedChunk",
    "ResultRow",
    "Results",
    "ServedApp",
    "Settings",
    "SubmitReport",
    "WebSocketSource",
    "WebhookReceiver",
    "follow",
    "follow_pages",
    "plan",
    "prepare",
    "read_contacts",
    "retry_after_of",
    "submit",
]
