"""One HTTP client setup for every provider: auth, retries, rate limit, timeouts, typed errors.

:class:`ProviderClient` sends the :class:`~adapters.providers.base.Request`
objects the provider modules build, and returns their
:class:`~adapters.providers.base.Response`. It

* authenticates the provider's way (InsideView's ``accessToken`` header from
  its login endpoint, Mautic's OAuth2 client credentials, a Datananas bearer
  token, a Pronto ``X-API-KEY``), refreshing tokens ahead of expiry and once
  after a 401;
* retries only what the provider certainly did not take — 429 (honouring
  ``Retry-After``/``X-RateLimit-Reset`` up to ``Settings.max_wait``, backing
  off on its own when there is none, as with InsideView), 5xx, and
  connections that never opened — with capped, jittered exponential backoff;
* never resends a request that may have been taken: a timeout or a dropped
  connection after the request was sent raises :class:`AmbiguousSubmit`;
* raises :class:`CertificateError` at once, never retrying, when the
  provider's TLS certificate fails verification (it would on every attempt);
* spaces requests by an optional client-side rate limit;
* converts httpx errors into :mod:`eventbus.exceptions` at this edge.

Secrets never appear in messages or ``repr``: :class:`Settings` hides them.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from adapters.backoff import Backoff, certificate_refusal, not_tls
from adapters.providers.base import Provider, Request, Response, ServerFailure, Throttle, declares_more_than
from eventbus._checks import COUNT, NOT_NEGATIVE, POSITIVE, POSITIVE_OR_NONE, SECONDS, check_numbers
from eventbus.exceptions import (
    AmbiguousSubmit,
    AuthError,
    CertificateError,
    ConfigError,
    RateLimited,
    ServerError,
    TransportError,
)
from eventbus.subscribers.log import redact_userinfo

__all__ = ["DEFAULT_BASE_URLS", "ENV", "Pacer", "ProviderClient", "Settings"]

DEFAULT_BASE_URLS: dict[str, str | None] = {
    "insideview": "https://api.insideview.com/api/v1",
    "mautic": None,  # each customer has their own instance
    "datananas": "https://api.datananas.com",
    "pronto": "https://app.prontohq.com/api/v2",
}
DEFAULT_LOGIN_URL = "https://login.insideview.com"

# provider -> (env var of the id/token/key, env var of the secret or None)
ENV: dict[str, tuple[str, str | None]] = {
    "insideview": ("INSIDEVIEW_CLIENT_ID", "INSIDEVIEW_CLIENT_SECRET"),
    "mautic": ("MAUTIC_CLIENT_ID", "MAUTIC_CLIENT_SECRET"),
    "datananas": ("DATANANAS_TOKEN", None),
    "pronto": ("PRONTO_API_KEY", None),
}
_TOKEN_PROVIDERS = ("insideview", "mautic")
_ASSUMED_TOKEN_LIFETIME = 3600.0  # seconds (providers.md: tokens live an hour) for a token expired on arrival
_TOKEN_URL_HINT = {
    "mautic": "; MAUTIC_BASE_URL (--base-url) is the instance's root, such as https://example.mautic.net",
    "insideview": "; INSIDEVIEW_LOGIN_URL, if set, is the login host, such as https://login.insideview.com",
}
_IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})


def check_secret(value: object, what: str) -> None:
    """Refuse (ConfigError naming ``what``, never showing the value) a credential that cannot go in a header."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string")
    if any(not c.isprintable() or c.isspace() for c in value):
        raise ConfigError(
            f"{what} contains a space, line break or other control character (often a trailing newline "
            "from the file it was read from); remove it"
        )


def check_url(url: object, what: str) -> None:
    """Refuse (ConfigError naming ``what``) a URL that is not ``http(s)://host[:port][/path]``, before any request.

    Otherwise each chunk would fail on its own, or a name with a space in it
    would be retried as if the network were down.
    """
    shown = redact_userinfo(url) if isinstance(url, str) else repr(url)
    if not isinstance(url, str) or not url.isprintable() or any(c.isspace() for c in url):
        raise ConfigError(
            f"{what} must be an http:// or https:// URL without spaces or control characters, not {shown!r}"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ConfigError(f"{what} is not a usable URL ({exc}): {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be an http:// or https:// URL with a host, not {shown!r}")


@dataclass
class Settings:
    """Where and how to reach one provider. ``credential`` is the id, token or API key; ``secret`` the secret."""

    base_url: str
    credential: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    login_url: str | None = None  # InsideView's login host
    timeout: float = 30.0
    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    rate_limit: float | None = None  # requests per second, client side
    max_wait: float = 300.0  # the longest wait a 429 may ask for (InsideView's window is 5 minutes)
    max_response_bytes: int = 64 * 1024 * 1024  # a longer answer is not read into memory

    def __post_init__(self) -> None:
        check_secret(self.credential, "credential")
        if self.secret is not None:
            check_secret(self.secret, "secret")
        check_url(self.base_url, "base_url")
        if self.login_url is not None:
            check_url(self.login_url, "login_url")
        check_numbers(
            "Settings",
            timeout=(self.timeout, SECONDS),
            max_attempts=(self.max_attempts, COUNT),
            backoff_base=(self.backoff_base, NOT_NEGATIVE),
            backoff_cap=(self.backoff_cap, NOT_NEGATIVE),
            max_wait=(self.max_wait, NOT_NEGATIVE),
            max_response_bytes=(self.max_response_bytes, COUNT),
            rate_limit=(self.rate_limit, POSITIVE_OR_NONE),  # requests per second
        )
        if self.backoff_cap < self.backoff_base:
            raise ConfigError(
                f"Settings: backoff_cap must be at least backoff_base ({self.backoff_base!r}), not {self.backoff_cap!r}"
            )

    def __repr__(self) -> str:
        # The generated repr would show a password written into base_url; the credentials are left out.
        login = self.login_url and redact_userinfo(self.login_url)
        shown = (
            f"base_url={redact_userinfo(self.base_url)!r}, login_url={login!r}, "
            f"timeout={self.timeout!r}, max_attempts={self.max_attempts!r}, backoff_base={self.backoff_base!r}, "
            f"backoff_cap={self.backoff_cap!r}, rate_limit={self.rate_limit!r}, max_wait={self.max_wait!r}, "
            f"max_response_bytes={self.max_response_bytes!r}"
        )
        return f"Settings({shown})"

    @classmethod
    def from_env(
        cls, provider: str, environ: Mapping[str, str] | None = None, *, base_url: str | None = None, **overrides: Any
    ) -> Settings:
        """Settings from ``<PROVIDER>_*`` environment variables; a clear ConfigError names what is missing."""
        env = os.environ if environ is None else environ
        if provider not in ENV:
            raise ConfigError(f"unknown provider {provider!r}; choose one of: {', '.join(ENV)}")
        id_var, secret_var = ENV[provider]
        missing = [v for v in (id_var, secret_var) if v and not env.get(v)]
        if missing:
            raise ConfigError(f"{provider} needs the environment variable(s) {', '.join(missing)}")
        for var in (id_var, secret_var):
            if var:
                check_secret(env[var], var)
        url = base_url or env.get(f"{provider.upper()}_BASE_URL") or DEFAULT_BASE_URLS[provider]
        if not url:
            raise ConfigError(f"{provider} needs a base URL: set {provider.upper()}_BASE_URL or pass --base-url")
        check_url(url, "the base URL" if base_url else f"{provider.upper()}_BASE_URL")
        login = env.get("INSIDEVIEW_LOGIN_URL") if provider == "insideview" else None
        if login:
            check_url(login, "INSIDEVIEW_LOGIN_URL")
        return cls(
            base_url=url.rstrip("/"),
            credential=env[id_var],
            secret=env.get(secret_var) if secret_var else None,
            login_url=login,
            **overrides,
        )

    def login_base(self) -> str:
        """InsideView's login base: the explicit one, else the simulator-style sibling, else the real host."""
        if self.login_url:
            return self.login_url.rstrip("/")
        if self.base_url.endswith("/api/v1") and "api.insideview.com" not in self.base_url:
            return self.base_url[: -len("/api/v1")]
        return DEFAULT_LOGIN_URL


_OnRetry = Callable[[str, float, int], Awaitable[None]]


def _prefixed(on_retry: _OnRetry | None, prefix: str) -> _OnRetry | None:
    """``on_retry`` with ``prefix`` before each reason it is given (None stays None)."""
    if on_retry is None:
        return None
    told = on_retry

    async def prefixed(why: str, delay: float, attempt: int) -> None:
        await told(prefix + why, delay, attempt)

    return prefixed


class ProviderClient:
    """Sends a provider's requests with auth, retries and rate limiting; an async context manager."""

    def __init__(
        self,
        provider: Provider,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self._own_client = client is None
        self._pacer = Pacer(settings.rate_limit, clock) if settings.rate_limit is not None else None
        # No TLS context for a plain-http base URL (the simulator): loading the CA bundle costs ~70 ms of CPU.
        plain = settings.base_url.startswith("http://") and (
            provider.name != "insideview" or settings.login_base().startswith("http://")
        )
        try:
            self._client = client or httpx.AsyncClient(timeout=settings.timeout, verify=not plain)
        except ImportError as exc:  # httpx needs an extra, e.g. socksio for a SOCKS proxy the environment names
            raise ConfigError(
                f"cannot set up HTTP for {provider.name}: {exc} It is needed for a proxy named in the "
                "environment (ALL_PROXY, HTTPS_PROXY, ...); install it, or leave the proxy out (NO_PROXY)"
            ) from None
        self._clock = clock
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = anyio.Lock()
        self.requests_sent = 0

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    # --- auth ------------------------------------------------------------------------

    async def _credential(self, *, refresh: bool = False, on_retry: _OnRetry | None = None) -> str:
        if self.provider.name not in _TOKEN_PROVIDERS:
            return self.settings.credential
        # A fresh token needs no lock; while another task holds it (it may be refreshing after
        # a 401), wait for it as before rather than hand out the token being replaced.
        if not refresh and not self._token_lock.locked() and (token := self._fresh_token()) is not None:
            return token
        async with self._token_lock:
            token = None if refresh else self._fresh_token()
            if token is None:
                request = self.provider.token_request(self.settings.credential, self.settings.secret or "")  # type: ignore[attr-defined]
                # Asking for a token is safe to repeat: 429, 5xx and broken connections are retried as for
                # any request, and what is left (refused or malformed) is read as an AuthError.
                # The request waiting for this token says its retries too.
                told = _prefixed(on_retry, "asking for a token: ")
                response = await self.send(request, on_retry=told, _authenticated=False)
                try:
                    grant = self.provider.read_token(response)  # type: ignore[attr-defined]
                except AuthError as exc:
                    if exc.status in (None, 400, 401, 403):
                        raise  # the credentials refused, or a malformed answer: said as it is
                    # Not the credentials' fault: a wrong URL, most often. Say which, and what it should be.
                    where = redact_userinfo(self._url(request))
                    raise AuthError(
                        f"{exc} ({where}{_TOKEN_URL_HINT.get(self.provider.name, '')})",
                        status=exc.status,
                        provider=self.provider.name,
                    ) from None
                token = self._token = grant.token
                # A token already expired on arrival by our clock (InsideView's expirationTime is a time: a clock
                # ahead of the provider's, or a local time without its zone) is not renewed before every request:
                # it is given the hour tokens live, and a 401 renews it if the provider disagrees.
                lifetime = max(grant.expires_in, 1.0) if grant.expires_in > 0 else _ASSUMED_TOKEN_LIFETIME
                # Renewed a minute ahead, or halfway through a token that lives less than two minutes.
                self._token_renew_at = self._clock() + lifetime - min(60.0, lifetime / 2)
            return token

    def _fresh_token(self) -> str | None:
        """The token held, unless there is none or it is due for renewal (a minute before it expires)."""
        if self._token is not None and self._clock() < self._token_renew_at:
            return self._token
        return None

    # --- sending -----------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return self.settings.login_base() if request.base == "login" else self.settings.base_url

    def _url(self, request: Request) -> str:
        return self._base(request) + request.path

    async def _send(
        self, request: Request, headers: Mapping[str, str] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        """Pace, then send ``request`` once with ``headers`` over its own; counted once it is answered.

        httpx errors pass through unchanged. A streamed response is the caller's to close.
        """
        await self._pace()
        built = self._client.build_request(
            request.method,
            self._url(request),
            params=dict(request.params) or None,  # None keeps a query written in the path as it is
            headers={**request.headers, **(headers or {})},
            content=request.content,
        )
        response = await self._client.send(built, stream=stream)
        self.requests_sent += 1
        return response

    def _scrub(self, text: str) -> str:
        """``text`` (an error from below) with every credential in it, as written or escaped, shown as ***."""
        for secret in (self.settings.credential, self.settings.secret, self._token):
            if secret and len(secret) >= 4:
                for form in {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}:
                    text = text.replace(form, "***")
        return text

    def _quoted(self, exc: BaseException) -> tuple[str, BaseException | None]:
        """``exc``'s text scrubbed, and ``exc`` to chain as the cause unless its text held a credential."""
        text = str(exc)
        shown = self._scrub(text)
        return shown, (exc if shown == text else None)  # a traceback would print the chained error's text

    async def _raw(self, request: Request, headers: Mapping[str, str] | None = None) -> Response:
        """One attempt, with httpx errors converted; no retries, no auth. The answer is read up to a size limit."""
        try:
            r = await self._send(request, headers, stream=True)
            try:
                body = await self._read_body(r)
            finally:
                await r.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            refusal = certificate_refusal(exc)
            if refusal is not None:  # the same certificate comes back on every attempt: not retried
                host = urlsplit(self._url(request)).netloc.rpartition("@")[2]
                raise CertificateError(
                    f"the TLS certificate of {self.provider.name} at {host} is not trusted ({refusal}); "
                    "behind a proxy or a private CA, point SSL_CERT_FILE at its CA bundle (or pass an "
                    "httpx.AsyncClient built with verify=)"
                ) from exc
            where = redact_userinfo(self._base(request))
            if not_tls(exc):  # https:// to a plain-HTTP port: every attempt would get the same
                raise CertificateError(
                    f"{self.provider.name} at {where} does not speak TLS on that port (its answer to the TLS "
                    "handshake was not TLS): use http:// there, or the port that serves https"
                ) from exc
            shown, cause = self._quoted(exc)
            raise _NotSent(f"could not connect to {self.provider.name} at {where}: {shown}") from cause
        except httpx.TimeoutException as exc:
            raise _MaybeSent(f"{self.provider.name} did not answer within {self.settings.timeout:g}s") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            shown, cause = self._quoted(exc)
            raise _MaybeSent(f"the connection to {self.provider.name} broke: {shown}") from cause
        except httpx.HTTPError as exc:
            shown, cause = self._quoted(exc)
            raise TransportError(f"HTTP error talking to {self.provider.name}: {shown}") from cause
        return Response(r.status_code, dict(r.headers.items()), body)  # httpx gives the names lower-case

    async def _read_body(self, r: httpx.Response) -> bytes:
        limit = self.settings.max_response_bytes
        declared = r.headers.get("content-length")
        if declares_more_than(declared, limit):
            shown = declared if len(declared) <= 20 else f"{declared[:20]}..."  # type: ignore[arg-type]
            raise _MaybeSent(f"{self.provider.name} answered {shown} bytes, more than max_response_bytes ({limit})")
        chunks, size = [], 0
        # Read to the end even past the limit, keeping nothing more: leaving httpx's stream early leaves its
        # inner generators unclosed (trio warns), and the memory stays bounded either way.
        async for chunk in r.aiter_bytes():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
        if size > limit:
            raise _MaybeSent(f"{self.provider.name}'s answer ({size} bytes) exceeds max_response_bytes ({limit})")
        return b"".join(chunks)

    async def send(
        self,
        request: Request,
        *,
        on_throttle: Callable[[float, int], Awaitable[None]] | None = None,
        on_retry: Callable[[str, float, int], Awaitable[None]] | None = None,
        _authenticated: bool = True,
    ) -> Response:
        """Send with auth and retries; return the first response that is neither 429, 5xx nor a first 401.

        Raises :class:`RateLimited` / :class:`ServerError` when the retry budget
        runs out, :class:`AuthError` on a second 401 (or when a token cannot be
        had), :class:`AmbiguousSubmit` when a non-idempotent request may have
        been taken, and :class:`TransportError` when the provider cannot be
        reached at all. ``_authenticated=False`` is for the token request
        itself: no auth header, no 401 handling, and a broken connection is
        simply retried.
        """
        s = self.settings
        backoff = Backoff(base=s.backoff_base, cap=s.backoff_cap, max_attempts=max(s.max_attempts - 1, 0))
        refreshed = not _authenticated
        while True:
            try:
                credential = await self._credential(on_retry=on_retry) if _authenticated else None
                headers = self.provider.auth_headers(credential) if credential is not None else None  # type: ignore[attr-defined]
                response = await self._raw(request, headers)
            except _NotSent as exc:
                if backoff.exhausted:
                    raise TransportError(f"{exc} (gave up after {backoff.attempt + 1} attempts)") from exc.__cause__
                delay = backoff.next_delay()
                if on_retry is not None:
                    await on_retry(str(exc), delay, backoff.attempt)
                await anyio.sleep(delay)
                continue
            except _MaybeSent as exc:
                if request.method in _IDEMPOTENT or not _authenticated:  # safe to repeat
                    if not backoff.exhausted:
                        delay = backoff.next_delay()
                        if on_retry is not None:
                            await on_retry(str(exc), delay, backoff.attempt)
                        await anyio.sleep(delay)
                        continue
                    doing = "asking for a token; " if not _authenticated else ""
                    raise TransportError(
                        f"{exc} ({doing}gave up after {backoff.attempt + 1} attempts)"
                    ) from exc.__cause__
                raise AmbiguousSubmit(
                    f"{exc}; the request was sent, so it may have been taken — not resending it",
                    provider=self.provider.name,
                ) from exc.__cause__
            if response.status == 401 and self.provider.name in _TOKEN_PROVIDERS and not refreshed:
                refreshed = True
                await self._credential(refresh=True, on_retry=on_retry)
                continue
            if response.status == 401 and _authenticated:
                name = self.provider.name
                if name in _TOKEN_PROVIDERS:  # the client credentials were good enough for a token
                    said = " even after a fresh token: check the account's API access"
                else:  # a static token or key: nothing to refresh
                    said = f": check {ENV[name][0]}" if name in ENV else ": check the credential"
                raise AuthError(
                    f"{name} refused our credentials (HTTP 401){said}",
                    status=401,
                    provider=self.provider.name,
                )
            verdict = self.provider.common_outcome(response)
            if isinstance(verdict, Throttle):
                if verdict.retry_after is not None and verdict.retry_after > s.max_wait:
                    # Waiting is bounded: a provider asking for hours gets a clear answer now, not a silent hang.
                    raise RateLimited(
                        f"{self.provider.name} asks to wait {verdict.retry_after:.0f}s before retrying, "
                        f"more than max_wait ({s.max_wait:.0f}s)",
                        status=429,
                        provider=self.provider.name,
                    )
                if backoff.exhausted:
                    raise RateLimited(
                        f"{self.provider.name} kept answering 429 after {backoff.attempt + 1} attempts",
                        status=429,
                        provider=self.provider.name,
                    )
                delay = backoff.next_delay(at_least=verdict.retry_after or 0.0)
                if on_throttle is not None:
                    await on_throttle(delay, backoff.attempt)
                await anyio.sleep(delay)
                continue
            if isinstance(verdict, ServerFailure):
                if backoff.exhausted:
                    raise ServerError(
                        f"{self.provider.name} kept failing (HTTP {verdict.status}: {verdict.reason}) "
                        f"after {backoff.attempt + 1} attempts",
                        status=verdict.status,
                        provider=self.provider.name,
                    )
                delay = backoff.next_delay()
                if on_retry is not None:
                    await on_retry(f"HTTP {verdict.status}", delay, backoff.attempt)
                await anyio.sleep(delay)
                continue
            return response

    async def request(self, request: Request) -> httpx.Response:
        """One authenticated attempt (a 401 refreshes the token and tries once more); no other retries.

        For pollers, which handle 429, 5xx and 404 themselves. httpx transport
        errors are left to the caller (a poller counts them as transient); an
        answer longer than ``max_response_bytes`` is a :class:`TransportError`.
        """
        for attempt in (1, 2):
            token = await self._credential(refresh=attempt == 2)
            streamed = await self._send(request, self.provider.auth_headers(token), stream=True)  # type: ignore[attr-defined]
            try:
                body = await self._read_body(streamed)
            except _MaybeSent as exc:
                raise TransportError(str(exc)) from None
            finally:
                await streamed.aclose()
            response = httpx.Response(
                streamed.status_code, headers=streamed.headers, content=body, request=streamed.request
            )
            if response.status_code != 401 or self.provider.name not in _TOKEN_PROVIDERS:
                return response
        return response

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[httpx.Response]:
        """A streamed, authenticated GET (for large results such as InsideView's CSV)."""
        token = await self._credential()
        response = await self._send(request, self.provider.auth_headers(token), stream=True)  # type: ignore[attr-defined]
        try:
            yield response
        finally:
            await response.aclose()

    async def _pace(self) -> None:
        """Wait for the next slot of the client-side rate limit, if there is one."""
        if self._pacer is not None:
            wait = self._pacer.reserve()
            if wait > 0:
                await anyio.sleep(wait)


class Pacer:
    """A client-side rate limit: hands out evenly spaced send slots, ``rate`` per second (no I/O).

    :meth:`reserve` books the next slot and says how long to wait for it, so
    concurrent senders queue up one interval apart instead of bursting.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        check_numbers("rate limit", rate_limit=(rate, POSITIVE))  # requests per second
        self.interval = 1.0 / rate
        self._clock = clock
        self._next_slot = 0.0

    def reserve(self) -> float:
        """Book the next slot; the seconds to wait before using it (0 when it is free now)."""
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        return slot - now


class _NotSent(Exception):
    """The request never reached the provider (safe to retry)."""


class _MaybeSent(Exception):
    """The request was sent but no complete answer came back."""
