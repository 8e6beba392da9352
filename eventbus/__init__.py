"""eventbus: one typed event stream for bulk contact jobs.

Public API (everything importable from ``eventbus``; the modules behind it are
implementation detail)::

    from eventbus import Bus, JobTracker, JobProgress, ...
"""

from __future__ import annotations

from eventbus.bus import (
    Bus,
    DurableSubscription,
    Handler,
    HandlerHandle,
    Overflow,
    SubscriberStats,
    Subscription,
    Types,
)
from eventbus.events import (
    AnyEvent,
    BatchSubmitted,
    Event,
    InvalidSignal,
    ItemFailed,
    ItemSucceeded,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobExpired,
    JobFailed,
    JobProgress,
    JobStuck,
    QuotaExhausted,
    SourceState,
    SubmitRejected,
    Throttled,
    decode,
    encode,
)
from eventbus.exceptions import (
    AmbiguousSubmit,
    AuthError,
    BufferOverflow,
    BusClosed,
    BusError,
    CertificateError,
    ConfigError,
    ContactError,
    EventBusError,
    JournalError,
    ProviderError,
    QuotaError,
    RateLimited,
    Rejected,
    ServerError,
    SubscriptionClosed,
    TransportError,
)
from eventbus.journal import Entry, Journal
from eventbus.tracker import JobTracker, JobView, Publisher, TrackedPublisher, TrackerStats

__version__ = "0.1.0"

__all__ = [
    "AmbiguousSubmit",
    "AnyEvent",
    "AuthError",
    "BatchSubmitted",
    "BufferOverflow",
    "Bus",
    "BusClosed",
    "BusError",
    "CertificateError",
    "ConfigError",
    "ContactError",
    "DurableSubscription",
    "Entry",
    "Event",
    "EventBusError",
    "Handler",
    "HandlerHandle",
    "InvalidSignal",
    "ItemFailed",
    "ItemSucceeded",
    "JobAccepted",
    "JobCancelled",
    "JobCompleted",
    "JobExpired",
    "JobFailed",
    "JobProgress",
    "JobStuck",
    "JobTracker",
    "JobView",
    "Journal",
    "JournalError",
    "Overflow",
    "ProviderError",
    "Publisher",
    "QuotaError",
    "QuotaExhausted",
    "RateLimited",
    "Rejected",
    "ServerError",
    "SourceState",
    "SubmitRejected",
    "SubscriberStats",
    "Subscription",
    "SubscriptionClosed",
    "Throttled",
    "TrackedPublisher",
    "TrackerStats",
    "TransportError",
    "Types",
    "decode",
    "encode",
]
