"""Submit contacts and watch every job to its end, whichever way its provider reports progress.

:func:`follow` starts the sources a provider needs *before* submitting (the
Datananas WebSocket replays nothing; Pronto and InsideView call back), submits,
then watches each accepted job, and publishes one merged stream through a
:class:`~eventbus.tracker.JobTracker` onto the bus:

========== ===================================================================
provider   how each job is watched
========== ===================================================================
Datananas  the account's WebSocket; events that arrive before the HTTP answer
           are held by a :class:`~adapters.websocket.Correlator` until the
           job's ``uuid`` is known; ``_ending`` completes the job
Pronto     one webhook per contact at ``/hooks/pronto``; the job completes
           when every contact it carried has reported (Pronto sends no
           "done" callback)
InsideView status polls with backoff (and status webhooks when a webhook URL
           is set); once ``finished``, the results CSV is streamed row by row,
           then the job completes
Mautic     status polls with backoff; once ``completed``, the ``details``
           pages are followed until ``next-page`` is absent; a 404 on the job
           becomes ``JobExpired``
========== ===================================================================

Item keys are the contact's 0-based row in the submitted input (InsideView:
the new-contact id itself). Results are checked against the contacts each job
carried: every one is reported exactly once (one the provider never mentions
as an ``ItemFailed``), and a job's total is the number submitted in it. Bad
input from a provider ends its job with a typed event; the other jobs carry on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from adapters.backoff import Backoff
from adapters.http import ProviderClient, Settings
from adapters.polling import RETRY_AFTER_CAP, CsvRows, Poller, PollOutcome, follow_pages, retry_after_of
from adapters.providers import datananas, insideview, mautic, pronto
from adapters.providers.base import Provider, Request
from adapters.providers.base import Response as ProviderResponse
from adapters.serving import ServedApp
from adapters.submit import AcceptedJob, SubmitReport, Tapped, make_provider, submit
from adapters.webhooks import WebhookReceiver
from adapters.websocket import Correlator, WebSocketSource
from eventbus import events as ev
from eventbus._checks import COUNT, NOT_NEGATIVE, SECONDS, check_numbers
from eventbus.bus import Bus
from eventbus.exceptions import AuthError, ConfigError, ProviderError, TransportError, errors_of
from eventbus.subscribers.board import JobBoard, JobRow
from eventbus.subscribers.log import redact_userinfo
from eventbus.tracker import JobTracker, Publisher

__all__ = [
    "RESUMABLE",
    "FollowResult",
    "JobsResult",
    "accounted",
    "check_job_ids",
    "check_resumable",
    "follow",
    "follow_jobs",
]


@dataclass
class FollowResult:
    """What :func:`follow` saw: the submission, the per-job board, and whether everything completed."""

    report: SubmitReport
    board: JobBoard
    timed_out: bool = False
    unfinished: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row was valid, every chunk accepted and every job completed."""
        jobs = [self.board.rows.get((self.report.provider, j.job_id)) for j in self.report.accepted]
        return (
            self.report.ok
            and not self.report.invalid
            and not self.timed_out
            and all(
                row is not None and row.state == "completed" and accounted(row) and _covers(row, job)
                for row, job in zip(jobs, self.report.accepted, strict=True)
            )
        )


def _covers(row: JobRow, job: AcceptedJob) -> bool:
    """The job's total is the number of contacts submitted in it (a result count can hide a missing row)."""
    return row.total is None or row.total == len(job.rows)


def accounted(row: JobRow) -> bool:
    """A completed job's totals cover every contact it carried (nothing missing from its results)."""
    return row.total is None or row.succeeded + row.failed == row.total


class _RowKeys:
    """Publishes through to ``target``, turning job-local item positions into input rows.

    Items that ``submit`` published (``source="submit"``: invalid rows, the
    answers of synchronous endpoints) carry input rows already and pass as
    they are, whatever rows are known by then.
    """

    def __init__(self, target: Publisher) -> None:
        self.target = target
        self.rows: dict[str, tuple[int, ...]] = {}

    def _map(self, event: ev.Event) -> ev.Event:
        if isinstance(event, ev.ItemSucceeded | ev.ItemFailed) and event.source != "submit":
            rows = self.rows.get(event.job_id)
            if rows is not None and event.key.isascii() and event.key.isdigit() and int(event.key) < len(rows):
                return msgspec.structs.replace(event, key=str(rows[int(event.key)]))
        return event

    async def publish(self, event: ev.Event) -> None:
        await self.target.publish(self._map(event))

    def publish_nowait(self, event: ev.Event) -> None:
        self.target.publish_nowait(self._map(event))


class _Holding:
    """Events held per job, at most ``max_held`` in all, until the job is known here; then published to ``target``."""

    def __init__(self, target: Publisher, max_held: int) -> None:
        self.target = target
        self.max_held = max_held
        self.held: dict[str, list[ev.Event]] = {}
        self.held_count = 0
        self.released = False  # every job is known: events of unknown jobs pass through

    def _keep(self, event: ev.Event) -> bool:
        """Hold ``event`` (True), if there is room."""
        if self.held_count >= self.max_held:
            return False
        self.held.setdefault(event.job_id, []).append(event)
        self.held_count += 1
        return True

    def _take(self, job_id: str) -> list[ev.Event]:
        """What was held for ``job_id``, no longer held."""
        held = self.held.pop(job_id, [])
        self.held_count -= len(held)
        return held

    async def release(self) -> None:
        """Every job is known: publish what is still held (events of jobs this run did not submit), hold no more."""
        self.released = True
        held, self.held, self.held_count = self.held, {}, 0
        for events in held.values():
            for event in events:
                await self.target.publish(event)


class _HeldUntilAccepted(_Holding):
    """Publishes a source's events through to ``target`` once their job was accepted in this run; holds them before.

    An InsideView status callback can arrive before the submit's answer. Taken
    first, it would stand for the job's acceptance in the tracker, and the
    submit's own ``JobAccepted``, the one that links the job to its chunk,
    would be dropped as a duplicate: the chunk then looked never answered. At
    most ``max_held`` events are held (past that they pass at once); once
    every chunk has been answered (:meth:`release`), what is still held (jobs
    this run did not submit) passes too.
    """

    def __init__(self, target: Publisher, *, max_held: int = 4096) -> None:
        super().__init__(target, max_held)
        self.accepted: set[str] = set()

    async def accept(self, job_id: str) -> None:
        """``job_id`` was accepted (its JobAccepted is published): publish what was held for it."""
        self.accepted.add(job_id)
        for event in self._take(job_id):
            await self.target.publish(event)

    def _hold(self, event: ev.Event) -> bool:
        if self.released or not event.job_id or event.job_id in self.accepted:
            return False
        return self._keep(event)

    async def publish(self, event: ev.Event) -> None:
        if not self._hold(event):
            await self.target.publish(event)

    def publish_nowait(self, event: ev.Event) -> None:
        if not self._hold(event):
            self.target.publish_nowait(event)


class _CompleteByCount(_Holding):
    """Publishes through to the tracker, checking each item against its job's rows; completes a job once all reported.

    Pronto sends no "done" callback: a job is complete when every row it
    carried has reported. An item whose key is not one of its job's rows (a
    stray or forged ``eventbus_key``) is an ``InvalidSignal`` and counts for
    nothing. Items that arrive before their job's rows are known (a webhook
    racing the submit answer) are held, at most ``max_held`` of them, until
    :meth:`register` or :meth:`release`; past that bound they are passed on
    unchecked, and checked against the rows once those are known.
    """

    def __init__(self, target: Publisher, tracker: JobTracker, provider: str, *, max_held: int = 65_536) -> None:
        super().__init__(target, max_held)
        self.tracker = tracker
        self.provider = provider
        self.rows: dict[str, frozenset[str]] = {}  # job -> its rows' keys, until it completes
        self.seen: dict[str, set[str]] = {}  # job -> its rows that reported
        self.unchecked: dict[str, set[str]] = {}  # keys passed on before their job was known (held was full)

    async def register(self, job_id: str, rows: Iterable[int]) -> None:
        """Learn the rows of ``job_id``; publish what was held for it, and its completion if all are in."""
        keys = self.rows[job_id] = frozenset(map(str, rows))
        seen = self.seen[job_id] = set()
        for key in sorted(self.unchecked.pop(job_id, ())):
            if key in keys:
                seen.add(key)
            else:
                await self.target.publish(self._stray(job_id, key, "was passed on before the job's rows were known"))
        for event in self._take(job_id):
            await self.publish(event)
        await self._complete(job_id)

    def _hold(self, event: ev.Event) -> bool:
        """Hold an item of a job whose rows are not known yet (True), if it is one and there is room."""
        if (
            self.released
            or not isinstance(event, ev.ItemSucceeded | ev.ItemFailed)
            or event.job_id in self.rows
            or ev.is_chunk_ref(event.job_id)
        ):
            return False
        view = self.tracker.job(self.provider, event.job_id)
        if view is not None and view.terminal is not None:
            return False  # a straggler of a job already complete: the tracker drops it as late
        if not self._keep(event):  # no room: passed on now, checked once the job's rows are known
            self.unchecked.setdefault(event.job_id, set()).add(event.key)
            return False
        return True

    def _stray(self, job_id: str, key: str, what: str) -> ev.InvalidSignal:
        return ev.InvalidSignal(
            id=ev.new_id(),
            provider=self.provider,
            job_id=job_id,
            source="webhook",
            reason=f"{self.provider} reported an item keyed {key[:40]!r}, which is not one of the "
            f"{len(self.rows.get(job_id, ()))} rows submitted in job {job_id}; it {what} and does not count",
        )

    async def _complete(self, job_id: str, source: str = "webhook") -> None:
        keys = self.rows.get(job_id)
        if keys is None or len(self.seen[job_id]) < len(keys):
            return
        view = self.tracker.job(self.provider, job_id)
        del self.rows[job_id], self.seen[job_id]
        if view is not None and view.terminal is not None:
            return
        await self.target.publish(
            ev.JobCompleted(
                id=ev.event_id(self.provider, job_id, "completed"),
                provider=self.provider,
                job_id=job_id,
                source=source,  # type: ignore[arg-type]
                succeeded=view.succeeded if view is not None else 0,
                failed=view.failed if view is not None else 0,
                total=len(keys),
            )
        )

    async def publish(self, event: ev.Event) -> None:
        if self._hold(event):
            return
        if not isinstance(event, ev.ItemSucceeded | ev.ItemFailed) or event.job_id not in self.rows:
            await self.target.publish(event)
            return
        if event.key not in self.rows[event.job_id]:
            await self.target.publish(self._stray(event.job_id, event.key, "is ignored"))
            return
        await self.target.publish(event)
        self.seen[event.job_id].add(event.key)
        await self._complete(event.job_id, event.source)

    def publish_nowait(self, event: ev.Event) -> None:
        if self._hold(event):
            return
        # An item of a known job goes through publish(), so the completion (or InvalidSignal) that
        # follows it can wait for room instead of being refused and lost.
        if isinstance(event, ev.ItemSucceeded | ev.ItemFailed) and event.job_id in self.rows:
            raise anyio.WouldBlock
        self.target.publish_nowait(event)


async def follow(
    provider: str,
    contacts: Iterable[Mapping[str, Any] | str],
    bus: Bus,
    *,
    settings: Settings | None = None,
    client: httpx.AsyncClient | None = None,
    webhook_url: str | None = None,
    webhook_host: str = "127.0.0.1",
    webhook_port: int = 0,
    webhook_secret: str | None = None,
    ws_url: str | None = None,
    timeout: float = 600.0,
    stuck_after: float = 120.0,
    poll_initial: float = 0.2,
    poll_cap: float = 5.0,
    connect_timeout: float = 30.0,
    poll_error_grace: float = 120.0,
    concurrency: int = 4,
    strict: bool = False,
    rows: Sequence[int] | None = None,
    on_submit_event: Callable[[ev.Event], object] | None = None,
    **options: Any,
) -> FollowResult:
    """Submit ``contacts`` to ``provider`` and publish the merged stream of every job until all have ended.

    Returns when every accepted job reached a terminal state, or after
    ``timeout`` seconds (then ``timed_out`` is set and ``unfinished`` lists the
    jobs still open). A job whose status polls gave up (``SourceState``
    ``gave_up``: too many failed polls in a row, refused credentials) is not
    waited for: it is listed in ``unfinished`` at once; so is a Datananas job
    that goes silent for ``stuck_after`` seconds (``JobStuck``) after the
    WebSocket dropped while it ran (what was sent meanwhile is lost: nothing
    is replayed). For Pronto and InsideView a webhook receiver is always
    started on ``webhook_host:webhook_port``; ``webhook_url`` is the URL the
    provider is told to call (a public URL that forwards there: then
    ``webhook_port`` must be given). Without ``webhook_url`` the receiver's own
    URL is used, which only a provider on this machine can reach (the
    simulator): for a provider elsewhere, Pronto is refused with a
    :class:`ConfigError` before anything is sent, and InsideView is given no
    status webhook (its status polls carry everything).
    For Datananas, the WebSocket must connect within ``connect_timeout``
    seconds, or nothing is submitted (:class:`TransportError`, naming the last
    attempt's failure; at once when its source gives up first, as it does on
    a TLS certificate that cannot be trusted). The durations
    must be finite and above 0 (:class:`ConfigError`, before anything is sent).
    InsideView and Mautic status polls that fail (5xx, no connection, a token
    that cannot be renewed) are retried for ``poll_error_grace`` seconds (120;
    0 or more) before the job is given up: a short outage must not end the
    following of a job, which cannot be picked up again.
    ``rows`` are the contacts' row numbers in a larger input, as for
    :func:`~adapters.submit.submit`; item keys are those rows.
    ``on_submit_event`` is called with each event of the submit step as it
    is published, before any buffer (see :class:`~adapters.submit.Tapped`):
    a caller interrupted mid-run then knows which chunks were sent.
    """
    check_numbers(
        "follow",
        timeout=(timeout, SECONDS),
        stuck_after=(stuck_after, SECONDS),
        poll_initial=(poll_initial, SECONDS),
        poll_cap=(poll_cap, SECONDS),
        connect_timeout=(connect_timeout, SECONDS),
        poll_error_grace=(poll_error_grace, NOT_NEGATIVE),
        concurrency=(concurrency, COUNT),  # (also sizes the WebSocket's correlator, before submit() would check it)
    )
    settings = settings or Settings.from_env(provider)
    if provider in ("pronto", "insideview") and webhook_url is not None and not webhook_port:
        raise ConfigError(
            "webhook_url is the public URL the provider calls; the receiver of this run listens where it forwards "
            "to: give that port (webhook_port, --webhook-listen HOST:PORT)"
        )
    # A provider elsewhere cannot call a receiver on this machine's loopback: Pronto's results would never arrive.
    unreachable = (
        provider in ("pronto", "insideview")
        and webhook_url is None
        and _local_only(webhook_host)
        and not _local_only(urlsplit(settings.base_url).hostname or "")
    )
    if unreachable and provider == "pronto":
        raise ConfigError(
            f"Pronto sends each result to a webhook, and cannot reach a receiver on {redact_userinfo(webhook_host)} "
            f"(this machine only): give webhook_url (--webhook-url), a public URL that forwards to the receiver's "
            f"webhook_host:webhook_port (--webhook-listen HOST:PORT); nothing was submitted"
        )
    checked = make_provider(provider, **{**options, **_webhook_option(provider, "http://placeholder.invalid/")})
    watch_results = provider == "insideview" and options.get("endpoint", "job") == "job"
    if watch_results and not isinstance(contacts, list | tuple):
        contacts = list(contacts)  # each job's ids are read back from it, to check the results file against
    tracker = JobTracker(stuck_after=stuck_after)
    board = JobBoard()
    # Expected jobs not yet finished: a board row never leaves a terminal state and only
    # changes on its own job's events, so each event checks one job, not all of them.
    remaining: set[str] = set()
    submitted = False  # the submit has ended: no job can join ``remaining`` any more
    all_done = anyio.Event()
    unfinished: list[str] = []  # jobs no longer waited for: their polls gave up, or their end was lost

    def settle(job_id: str, *, ended: bool) -> None:
        remaining.discard(job_id)
        if not ended:
            unfinished.append(job_id)
        if submitted and not remaining:
            all_done.set()

    def observe(event: ev.Event) -> None:
        board(event)
        if event.job_id in remaining:
            if _finished(board, provider, event.job_id):
                settle(event.job_id, ended=True)
            elif isinstance(event, ev.JobStuck) and _dropped_since_it_started(board, provider, event.job_id):
                settle(event.job_id, ended=False)  # its end was sent while the WebSocket was down, most likely

    watcher = bus.on(observe, name=f"follow-{provider}-{id(board)}", providers=provider, buffer=65_536)
    try:
        async with (
            _one_error(),
            tracker.attach(bus, check_every=min(5.0, stuck_after)) as merged,
            AsyncExitStack() as stack,
            ProviderClient(make_provider(provider, **options), settings, client) as http,
        ):
            keyed = _RowKeys(merged)
            counted = _CompleteByCount(merged, tracker, provider)
            sink: Publisher = counted if provider == "pronto" else keyed
            # InsideView's status callbacks wait for their job's acceptance (Pronto's items wait in ``counted``).
            early = _HeldUntilAccepted(sink)
            callbacks: Publisher = early if provider == "insideview" else sink
            if provider == "datananas":
                source = WebSocketSource(
                    ws_url or _datananas_ws_url(settings.base_url),
                    datananas.parse_frame,
                    keyed,
                    provider="datananas",
                    token=settings.credential,
                    # Room for every event of the chunks in flight: Datananas may answer as late as just
                    # before _ending, two events per contact before it (ItemSucceeded, JobProgress).
                    correlator=Correlator(
                        max_events=concurrency * (2 * datananas.MAX_CONTACTS + 2), max_age=max(60.0, timeout)
                    ),
                    healthy_after=5.0,
                )
                await stack.enter_async_context(source)
                connected = False
                with anyio.move_on_after(connect_timeout) as waiting:
                    connected = await source.wait_connected()  # Datananas replays nothing: connect, then submit
                if not waiting.cancelled_caught and not connected:
                    raise TransportError(
                        f"could not connect to the Datananas WebSocket: {source.gave_up_detail} (the token is "
                        "DATANANAS_TOKEN, the WebSocket is under DATANANAS_BASE_URL); nothing was submitted"
                    )
                if waiting.cancelled_caught:
                    last = f" (last attempt: {source.last_failure})" if source.last_failure else ""
                    raise TransportError(
                        f"could not connect to the Datananas WebSocket at {source.shown_url} within "
                        f"{connect_timeout:g}s{last}; nothing was submitted"
                    )
            if provider in ("pronto", "insideview"):
                parse = pronto.parse_webhook if provider == "pronto" else insideview.parse_webhook
                receiver = WebhookReceiver(callbacks, {provider: parse}, secret=webhook_secret)
                # Always served: it is the only way webhooks reach this run. ``webhook_url`` is only
                # what the provider is told (a public URL that forwards to webhook_host:webhook_port).
                served = ServedApp(receiver.app, host=webhook_host, port=webhook_port)
                try:
                    await stack.enter_async_context(served)
                except (OSError, ConfigError) as exc:  # ConfigError: no host name at all (see bind_tcp)
                    where = f"{redact_userinfo(webhook_host)}:{webhook_port}"
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    raise ConfigError(f"cannot listen for webhooks on {where}: {reason}") from None
                if webhook_url is None and not unreachable:
                    webhook_url = f"{served.url}/hooks/{provider}"
                if webhook_url is not None:  # (InsideView's status webhooks are optional: its polls say it all)
                    options.update(_webhook_option(provider, webhook_url))

            async def watch(job: AcceptedJob, watching: Awaitable[PollOutcome | None]) -> None:
                # A job whose polls gave up can no longer end here: stop waiting for it, report it unfinished.
                if await watching is PollOutcome.GAVE_UP and not _finished(board, provider, job.job_id):
                    settle(job.job_id, ended=False)

            async with anyio.create_task_group() as tg:

                async def start_following(job: AcceptedJob) -> None:
                    # At once, while later chunks are still being sent: a job's early events are held in
                    # bounded buffers (the WebSocket's correlator, Pronto's held items, InsideView's held
                    # callbacks) until it is known here.
                    pending.append(job)
                    await early.accept(job.job_id)
                    if provider != "insideview":  # InsideView's item keys are the contact ids themselves
                        keyed.rows[job.job_id] = job.rows
                    if provider == "pronto":  # webhooks may have arrived (and been held) before the rows were known
                        await counted.register(job.job_id, job.rows)
                    elif provider == "datananas":
                        await source.bind(job.job_id, job.job_id)
                    elif watch_results:
                        ids = _submitted_ids(checked, contacts, job.rows)  # type: ignore[arg-type]
                        tg.start_soon(
                            watch,
                            job,
                            _watch_insideview(http, job.job_id, ids, keyed, poll_initial, poll_cap, poll_error_grace),
                        )
                    elif provider == "mautic":
                        tg.start_soon(
                            watch,
                            job,
                            _watch_mautic(
                                http, job.job_id, len(job.rows), keyed, poll_initial, poll_cap, poll_error_grace
                            ),
                        )
                    if not _finished(board, provider, job.job_id):
                        remaining.add(job.job_id)

                async def websocket_up() -> str | None:
                    # A Datananas chunk sent while the WebSocket is down is followed blind: nothing is replayed.
                    if source.state == "connected":
                        return None
                    with anyio.move_on_after(connect_timeout):
                        if await source.wait_connected():
                            return None
                        return (
                            f"the Datananas WebSocket gave up reconnecting (last: {source.last_failure}); "
                            "chunks sent now could not be followed"
                        )
                    return (
                        f"the Datananas WebSocket did not reconnect within {connect_timeout:g}s (last: "
                        f"{source.last_failure}); chunks sent now could not be followed"
                    )

                pending: list[AcceptedJob] = []
                report = await submit(
                    provider,
                    contacts,
                    sink if on_submit_event is None else Tapped(sink, on_submit_event),
                    settings=settings,
                    client=client,
                    concurrency=concurrency,
                    strict=strict,
                    rows=rows,
                    on_accepted=start_following,
                    before_send=websocket_up if provider == "datananas" else None,
                    **options,
                )
                if provider == "pronto":
                    await counted.release()  # every job is known: what is still held is not this run's
                await early.release()
                result = FollowResult(report, board, unfinished=unfinished)
                submitted = True
                await bus.drain()
                if not remaining:
                    all_done.set()
                with anyio.move_on_after(timeout) as scope:
                    await all_done.wait()
                if scope.cancelled_caught:
                    result.timed_out = True
                    gave_up = set(unfinished)
                    result.unfinished = [
                        j.job_id for j in pending if j.job_id in gave_up or not _finished(board, provider, j.job_id)
                    ]
                tg.cancel_scope.cancel()
    finally:
        watcher.close()
    await bus.drain()
    return result


RESUMABLE = ("insideview", "mautic")
"""The providers whose jobs :func:`follow_jobs` can pick up by id: they answer status polls."""

_NOT_RESUMABLE = {
    "datananas": "a Datananas job reports progress only on the account's WebSocket while it runs, and nothing is "
    "replayed: a job submitted earlier cannot be followed by its id (follow it as it is submitted: "
    "eventbus submit --follow)",
    "pronto": "Pronto posts each contact's result to the webhook URL given when the job was submitted, and has no "
    "job to poll: receive them with eventbus serve at that URL (or submit with --follow)",
}


def check_resumable(provider: str) -> None:
    """A :class:`ConfigError` saying why, unless :func:`follow_jobs` can follow ``provider``'s jobs by id."""
    if provider not in RESUMABLE:
        raise ConfigError(
            _NOT_RESUMABLE.get(provider) or f"unknown provider {provider!r}; choose one of: {', '.join(RESUMABLE)}"
        )


MAX_JOB_ID = 200  # characters; provider job ids are 20 (InsideView) to 36 (a Mautic uuid)


def check_job_ids(provider: str, job_ids: Iterable[str]) -> list[str]:
    """``job_ids`` as :func:`follow_jobs` takes them: each once, in order; a :class:`ConfigError` naming the first
    that cannot be one (empty, too long, or with characters no job id has: it goes into the URL's path)."""
    ids: dict[str, None] = {}
    for job_id in job_ids:
        if not isinstance(job_id, str):
            raise ConfigError(f"a job id is text, not {type(job_id).__name__}")
        shown = ev.excerpt(job_id, 60)
        if ev.is_chunk_ref(job_id):
            raise ConfigError(
                f"{shown!r} is a chunk reference, not a job id: the provider never answered for that chunk, so it "
                f"may or may not have become a job; look for it at {provider}"
            )
        if not 0 < len(job_id) <= MAX_JOB_ID or not _JOB_ID.fullmatch(job_id) or job_id in (".", ".."):
            raise ConfigError(
                f"{shown!r} is not a job id: expected letters, digits, '-', '_', '.' or '~' "
                f"(at most {MAX_JOB_ID}), as submit printed them"
            )
        ids[job_id] = None
    if not ids:
        raise ConfigError("no job id given: name the jobs to follow (submit prints them)")
    return list(ids)


_JOB_ID = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass
class JobsResult:
    """What :func:`follow_jobs` saw: the jobs asked for, the per-job board, and whether all completed."""

    provider: str
    job_ids: list[str]
    board: JobBoard
    timed_out: bool = False
    unfinished: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every job completed and its results cover its total."""
        rows = [self.board.rows.get((self.provider, j)) for j in self.job_ids]
        return not self.timed_out and all(
            row is not None and row.state == "completed" and accounted(row) for row in rows
        )


async def follow_jobs(
    provider: str,
    job_ids: Iterable[str],
    bus: Bus,
    *,
    settings: Settings | None = None,
    client: httpx.AsyncClient | None = None,
    timeout: float = 600.0,
    stuck_after: float = 120.0,
    poll_initial: float = 0.2,
    poll_cap: float = 5.0,
    poll_error_grace: float = 120.0,
    concurrency: int = 8,
) -> JobsResult:
    """Follow jobs submitted earlier (by another run, or one that was interrupted) to their end, by their ids.

    InsideView and Mautic only (:data:`RESUMABLE`): each job's status is
    polled, and once it has ended its results (InsideView's CSV, Mautic's
    details pages) are read and published as items, as :func:`follow` does,
    through a :class:`~eventbus.tracker.JobTracker`. The input rows are not
    known here, so item keys are InsideView's contact ids and, for Mautic, the
    contact's position in its job (0-based, the order it was sent in); and
    nothing can say that a contact is missing from a job's results, except
    InsideView's own total. Each job is announced by a ``JobAccepted``
    (``source="poll"``, no ``batch_id``) at its first status; a job id the
    provider answers 404 for at once is unknown to it (a typo, or a Mautic job
    older than 48 hours): an ``InvalidSignal`` says so, and the job is listed
    in ``not_found`` and ``unfinished``; jobs whose polls gave up are in
    ``unfinished``. Returns when every job
    has ended or after ``timeout`` seconds (``timed_out``). A
    :class:`ConfigError` is raised, before any request, for another provider
    or a malformed job id (see :func:`check_job_ids`). At most ``concurrency``
    jobs are watched at once (polled, then their results read); the others
    wait their turn, in the order given, so that a long list of jobs does not
    become as many pollers on the provider's rate limit.
    """
    check_resumable(provider)
    check_numbers(
        "follow_jobs",
        timeout=(timeout, SECONDS),
        stuck_after=(stuck_after, SECONDS),
        poll_initial=(poll_initial, SECONDS),
        poll_cap=(poll_cap, SECONDS),
        poll_error_grace=(poll_error_grace, NOT_NEGATIVE),
        concurrency=(concurrency, COUNT),
    )
    ids = check_job_ids(provider, job_ids)
    turns = anyio.Semaphore(concurrency)  # taken in the order given (before each watcher starts), freed as it ends
    settings = settings or Settings.from_env(provider)
    board = JobBoard()
    result = JobsResult(provider, ids, board)
    watcher = bus.on(board, name=f"follow-jobs-{provider}-{id(board)}", providers=provider, buffer=65_536)
    try:
        async with (
            _one_error(),
            JobTracker(stuck_after=stuck_after).attach(bus, check_every=min(5.0, stuck_after)) as merged,
            ProviderClient(make_provider(provider), settings, client) as http,
        ):

            async def watch(job_id: str) -> None:
                poll = _watch_insideview if provider == "insideview" else _watch_mautic
                try:
                    outcome = await poll(
                        http, job_id, None, merged, poll_initial, poll_cap, poll_error_grace, discovered=True
                    )
                finally:
                    turns.release()
                if outcome is PollOutcome.NOT_FOUND:
                    result.not_found.append(job_id)

            with anyio.move_on_after(timeout) as scope:
                async with anyio.create_task_group() as tg:
                    for job_id in ids:
                        await turns.acquire()  # (tasks started together may run in any order: trio shuffles them)
                        tg.start_soon(watch, job_id)
            result.timed_out = scope.cancelled_caught
        await bus.drain()
    finally:
        watcher.close()
    result.unfinished = [j for j in ids if not _finished(board, provider, j)]
    return result


@asynccontextmanager
async def _one_error() -> AsyncIterator[None]:
    """A group of one library error (task groups wrap what is raised in them) raised as that error: one typed
    error, as the caller of an await expects, not a group of one. Any other group is raised as it is."""
    try:
        yield
    except BaseExceptionGroup as group:
        errors = errors_of(group)
        if errors is None or len(errors) != 1:
            raise
        raise errors[0] from None


def _discovered(provider: str, job_id: str, total: int | None = None) -> ev.JobAccepted:
    """The ``JobAccepted`` of a job submitted elsewhere, at its first status (see :func:`follow_jobs`)."""
    return ev.JobAccepted(id=ev.event_id(provider, job_id, "accepted"), **_polled(provider, job_id), total=total)


def _local_only(host: str) -> bool:
    """True for a host only this machine can reach: loopback, or the any-address a server binds to."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _webhook_option(provider: str, url: str) -> dict[str, str]:
    return {"pronto": {"webhook_url": url}, "insideview": {"webhook": url}}.get(provider, {})


def _datananas_ws_url(base_url: str) -> str:
    if base_url.startswith("http"):
        return "ws" + base_url[4:] + "/ws"
    raise ConfigError(f"cannot derive the Datananas WebSocket URL from {base_url!r}; pass ws_url")


def _polled(provider: str, job_id: str) -> dict[str, str]:
    """The fields of every event this module reports about a job it polls."""
    return {"provider": provider, "job_id": job_id, "source": "poll"}


def _retry_reporters(
    bus: Publisher, provider: str, job_id: str, what: str
) -> tuple[Callable[[float, int], Awaitable[None]], Callable[[str, float, int], Awaitable[None]]]:
    """``on_throttle`` and ``on_retry`` for a job's reads after its status polls (Mautic's details, InsideView's
    results): a 429 is a ``Throttled`` of the job, any other retried failure a ``SourceState`` "reconnecting", so
    that a console says why nothing moves while they are retried."""

    async def throttled(delay: float, attempt: int) -> None:
        await bus.publish(
            ev.Throttled(id=ev.new_id(), **_polled(provider, job_id), retry_after=round(delay, 3), attempt=attempt)
        )

    async def retrying(why: str, delay: float, attempt: int) -> None:
        await bus.publish(
            ev.SourceState(
                id=ev.new_id(),
                provider=provider,
                job_id="",
                source="poll",
                state="reconnecting",
                attempt=attempt,
                detail=f"{what} of job {job_id}: {why}; trying again in {delay:.1f}s",
            )
        )

    return throttled, retrying


def _job_failed(provider: str, job_id: str, reason: str) -> ev.JobFailed:
    """The ``JobFailed`` of a polled job (one per job: its id is derived from the job's)."""
    return ev.JobFailed(id=ev.event_id(provider, job_id, "failed"), **_polled(provider, job_id), reason=reason)


def _dropped_since_it_started(board: JobBoard, provider: str, job_id: str) -> bool:
    """The WebSocket was disconnected after the job's first event: Datananas replays nothing, so what it sent
    meanwhile is lost, and a job silent since then will most likely never be heard of again."""
    row = board.rows.get((provider, job_id))
    return board.websocket_drops(since=row.started if row is not None else None) > 0


def _finished(board: JobBoard, provider: str, job_id: str) -> bool:
    row = board.rows.get((provider, job_id))
    return row is not None and row.finished


def _submitted_ids(p: Provider, contacts: Sequence[Mapping[str, Any] | str], rows: Iterable[int]) -> tuple[str, ...]:
    """The InsideView contact ids a job carried, read back from the input rows it was given (all valid)."""
    return tuple(p.map_fields({"id": c} if isinstance(c, str) else c)["id"] for c in (contacts[r] for r in rows))


async def _watch_insideview(
    http: ProviderClient,
    job_id: str,
    ids: tuple[str, ...] | None,
    bus: Publisher,
    initial: float,
    cap: float,
    grace: float,
    *,
    discovered: bool = False,
) -> PollOutcome | None:
    """Poll the job's status; once finished, stream its CSV results, then complete it (the poll's outcome if not).

    Each id of ``ids`` (the contacts submitted in the job) is reported exactly
    once: a results row for another id, or a second row for one, is an
    InvalidSignal; an id the results file never mentions is an ItemFailed.
    ``ids`` is None for a job submitted elsewhere (``discovered``): every id of
    the results file is then reported once, and the job is announced by a
    ``JobAccepted`` at its first status (a 404 then means an unknown job id).
    """
    last: dict[str, Any] = {}

    async def fetch() -> httpx.Response:
        return await http.request(
            Request("GET", f"/target/contact/job/{job_id}", headers={"Accept": "application/json"})
        )

    def interpret(response: httpx.Response) -> tuple[list[ev.Event], bool, bool]:
        status = insideview.parse_job_status(ProviderResponse(response.status_code, {}, response.content))
        changed = (status.status, status.processed) != (last.get("status"), last.get("processed"))
        first = not last
        last.update(status=status.status, processed=status.processed)
        events = insideview.status_events(status, "poll")
        if discovered and first:
            events.insert(0, _discovered("insideview", job_id, status.total))
        if changed and status.status not in insideview.STATUSES:  # said once per new status, not at every poll
            known = ", ".join(insideview.STATUSES)
            events.append(
                ev.InvalidSignal(
                    id=ev.new_id(),
                    **_polled("insideview", job_id),
                    reason=f"InsideView job status {ev.excerpt(status.status, 40)!r} is none of {known}: "
                    "the job is still watched, and ends at a terminal status or the timeout",
                    excerpt=ev.excerpt(response.content),
                )
            )
        return events, changed, status.status in insideview.TERMINAL_STATUSES

    outcome = await Poller(
        fetch,
        interpret,
        bus,
        provider="insideview",
        job_id=job_id,
        known=not discovered,
        initial=initial,
        cap=cap,
        error_grace=grace,
    ).run()
    if outcome is not PollOutcome.TERMINAL or last.get("status") != "finished":
        return outcome
    succeeded = failed = 0
    submitted = None if ids is None else set(ids)
    reported: set[str] = set()
    flagged: set[int] = set()  # lines already reported as invalid (a retried download reads them again)

    async def invalid(line: int, reason: str, raw: str = "") -> None:
        if line in flagged:
            return
        flagged.add(line)
        await bus.publish(
            ev.InvalidSignal(
                id=ev.new_id(),
                **_polled("insideview", job_id),
                reason=reason,
                excerpt=ev.excerpt(raw),
            )
        )

    request = Request("GET", f"/target/contact/job/{job_id}/results")
    backoff = Backoff(base=initial, cap=cap, max_attempts=8)
    throttled, retrying = _retry_reporters(bus, "insideview", job_id, "downloading the results")
    while True:
        in_this_file: set[str] = set()
        try:
            async with http.stream(request) as response:
                if response.status_code == 200:
                    async with CsvRows(response, bus, provider="insideview", job_id=job_id, flagged=flagged) as rows:
                        async for row in rows:
                            try:
                                events = insideview.result_row_events(job_id, row.fields)
                            except ValueError as exc:
                                await invalid(row.line, f"results line {row.line}: {exc}")
                                continue
                            for event in events:
                                key = getattr(event, "key", "")
                                if submitted is not None and key not in submitted:
                                    why = f"newContactId {key[:40]!r} was not submitted in this job; row ignored"
                                elif key in in_this_file:
                                    why = f"newContactId {key!r} appears again in the results file; the first is kept"
                                else:
                                    why = ""
                                if why:
                                    text = ",".join(row.fields.values())
                                    await invalid(row.line, f"results line {row.line}: {why}", text)
                                    continue
                                in_this_file.add(key)
                                if key in reported:  # read before the download broke and was started again
                                    continue
                                reported.add(key)
                                succeeded += isinstance(event, ev.ItemSucceeded)
                                failed += isinstance(event, ev.ItemFailed)
                                await bus.publish(event)
                    break
                status = response.status_code
                headers = response.headers
                body = b""
                async for chunk in response.aiter_bytes():  # enough of an error body to quote, not all of it
                    body += chunk
                    if len(body) >= 1024:
                        break
        except (httpx.RequestError, TransportError, ProviderError) as exc:
            # A download cut short (or a token that cannot be had) is retried like a 5xx; what was read is kept.
            if isinstance(exc, AuthError) or backoff.exhausted:
                await bus.publish(
                    _job_failed(
                        "insideview",
                        job_id,
                        f"the results download failed ({type(exc).__name__}: {exc}); {len(reported)}"
                        f"{'' if ids is None else f' of {len(ids)}'} contacts were read and are kept",
                    )
                )
                return
            delay = backoff.next_delay()
            await retrying(f"{type(exc).__name__}: {exc}", delay, backoff.attempt)
            await anyio.sleep(delay)
            continue
        retriable = status == 429 or status >= 500
        if status == 404 or not retriable or backoff.exhausted:
            reason = f"results download answered HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            end: ev.Event = (
                ev.JobExpired(
                    id=ev.event_id("insideview", job_id, "expired"),
                    **_polled("insideview", job_id),
                    reason=reason,
                )
                if status == 404
                else _job_failed("insideview", job_id, reason)
            )
            await bus.publish(end)
            return
        delay = backoff.next_delay(at_least=retry_after_of(headers, cap=RETRY_AFTER_CAP) or 0.0)
        await (
            throttled(delay, backoff.attempt) if status == 429 else retrying(f"HTTP {status}", delay, backoff.attempt)
        )
        await anyio.sleep(delay)
    for key in ids or ():
        if key not in reported:  # InsideView finished the job without a word about this contact
            failed += 1
            await bus.publish(
                ev.ItemFailed(
                    id=ev.event_id("insideview", job_id, "item", key),
                    **_polled("insideview", job_id),
                    key=key,
                    code="not_in_results",
                    message="not in InsideView's results file: the job finished without reporting this contact",
                )
            )
    await bus.publish(insideview.completed_event(job_id, succeeded, failed))


async def _watch_mautic(
    http: ProviderClient,
    job_id: str,
    size: int | None,
    bus: Publisher,
    initial: float,
    cap: float,
    grace: float,
    *,
    discovered: bool = False,
) -> PollOutcome | None:
    """Poll the job's status; once completed, follow the details pages, then complete it (the poll's outcome if not).

    ``size`` is the number of contacts submitted in the job: entries past it
    are ignored, and those the details never reach are ItemFailed. It is None
    for a job submitted elsewhere (``discovered``): every entry is then
    reported, keyed by its position in the job, and the job is announced by a
    ``JobAccepted`` at its first status (a 404 then means an unknown job id).
    """
    last: dict[str, str] = {}
    url = f"/api/contacts/job/{job_id}"

    async def fetch() -> httpx.Response:
        return await http.request(Request("GET", url))

    def interpret(response: httpx.Response) -> tuple[list[ev.Event], bool, bool]:
        status = mautic.read_status(response.content).status
        changed = status != last.get("status")
        events: list[ev.Event] = [_discovered("mautic", job_id)] if discovered and not last else []
        last["status"] = status
        return events, changed, status == "completed"

    outcome = await Poller(
        fetch,
        interpret,
        bus,
        provider="mautic",
        job_id=job_id,
        known=not discovered,
        initial=initial,
        cap=cap,
        error_grace=grace,
    ).run()
    if outcome is not PollOutcome.TERMINAL:
        return outcome  # expired (JobExpired published) or gave up (SourceState published)

    base = http.settings.base_url

    throttled, retrying = _retry_reporters(bus, "mautic", job_id, "reading the details")

    async def fetch_page(page_url: str) -> tuple[list[mautic.DetailEntry], str | None]:
        response = await http.send(
            Request("GET", _details_path(page_url, base)), on_throttle=throttled, on_retry=retrying
        )
        if response.status == 404:
            raise _Expired
        if response.status != 200:
            raise _BadPage(f"a details page answered HTTP {response.status}", response.body, response.status)
        try:
            return mautic.read_details_page(response.body)
        except ValueError as exc:  # msgspec.DecodeError and ValidationError are ValueErrors
            raise _BadPage(f"a details page is not a Mautic details page: {exc}", response.body, 200) from exc

    position = succeeded = failed = created = updated = 0
    try:
        async for entries, _next in follow_pages(fetch_page, f"{url}?details=1", lambda page: page[1]):
            if (
                size is not None and position + len(entries) > size
            ):  # only the job's own contacts count: keys past them map to no row
                extra = position + len(entries) - size
                entries = entries[: max(size - position, 0)]
                await bus.publish(
                    ev.InvalidSignal(
                        id=ev.new_id(),
                        **_polled("mautic", job_id),
                        reason=f"mautic details list {extra} more contact(s) than the {size} submitted in the job; "
                        "the extra entries are ignored",
                    )
                )
            for event in mautic.detail_events(job_id, entries, position):
                if isinstance(event, ev.ItemSucceeded):
                    succeeded += 1
                    created += event.outcome == "created"
                    updated += event.outcome == "updated"
                else:
                    failed += 1
                await bus.publish(event)
            position += len(entries)
    except _Expired:
        await bus.publish(
            ev.JobExpired(
                id=ev.event_id("mautic", job_id, "expired"),
                **_polled("mautic", job_id),
                reason="the job expired while its details were being read",
            )
        )
        return
    except (_BadPage, ProviderError, TransportError) as exc:
        # One job's unreadable details end that job, not follow(): the other jobs carry on.
        if isinstance(exc, _BadPage):
            await bus.publish(
                ev.InvalidSignal(
                    id=ev.new_id(),
                    **_polled("mautic", job_id),
                    reason=f"mautic details: {exc}",
                    excerpt=ev.excerpt(exc.raw),
                    status=exc.status,
                )
            )
        await bus.publish(
            _job_failed(
                "mautic",
                job_id,
                f"Mautic completed the job but its details could not be read after {position}"
                f"{'' if size is None else f' of {size}'} contacts: {exc}. The contacts reported before are kept; "
                "check the job in Mautic",
            )
        )
        return
    for key in range(position, position if size is None else size):  # the details ended before these contacts
        failed += 1
        await bus.publish(
            ev.ItemFailed(
                id=ev.event_id("mautic", job_id, "item", key),
                **_polled("mautic", job_id),
                key=str(key),
                code="not_in_details",
                message="not in Mautic's job details: the job completed without reporting this contact",
            )
        )
    await bus.publish(
        ev.JobCompleted(
            id=ev.event_id("mautic", job_id, "completed"),
            **_polled("mautic", job_id),
            succeeded=succeeded,
            failed=failed,
            created=created,
            updated=updated,
            total=position if size is None else size,
        )
    )


def _details_path(page_url: str, base_url: str) -> str:
    """The path (below ``base_url``) and query of a ``next-page`` URL; :class:`_BadPage` if it leaves the base.

    A page on another host, scheme, port or outside the base path is never
    fetched: the request would carry the bearer token there.
    """
    try:
        url = httpx.URL(page_url)
        base = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise _BadPage(f"next-page {page_url[:200]!r} is not a URL: {exc}", page_url.encode()) from exc
    base_path = base.path.rstrip("/")
    shown = redact_userinfo(base_url)
    if url.host or url.scheme:
        same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        if not same_origin or not (url.path == base_path or url.path.startswith(base_path + "/")):
            raise _BadPage(
                f"next-page {redact_userinfo(str(url))[:200]!r} is not under the Mautic base URL {shown!r}: "
                "not fetched, so that the bearer token never goes to another host",
                page_url.encode(),
            )
        path = url.path[len(base_path) :]
    elif url.path.startswith("/"):
        path = url.path
    else:
        raise _BadPage(f"next-page {page_url[:200]!r} is neither an absolute URL nor a path", page_url.encode())
    # The query goes out exactly as Mautic wrote it (percent-encoding, repeated names and all), in the path.
    query = url.query.decode("ascii")
    return f"{path}?{query}" if query else path


class _BadPage(Exception):
    """A details page that cannot be used (internal): why, the raw input, and the HTTP status."""

    def __init__(self, message: str, raw: bytes, status: int | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.status = status


class _Expired(Exception):
    pass
