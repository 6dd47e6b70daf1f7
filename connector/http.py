"""The shared HTTP client for CRM calls: the one place with retry, backoff and rate-limit policy.

Connectors send every CRM request through `RetryingClient` and only ever see typed errors. A
connector that knows how its CRM reports rate limits passes a `LimitInspector`; what to do about
the limits (slow down, retry, pause) is decided here.
"""

from __future__ import annotations

import asyncio
import enum
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from connector.errors import (
    CRMAuthError,
    CRMRateLimitPaused,
    CRMRequestRejected,
    CRMRetriesExhausted,
)

__all__ = [
    "STATUS_OUTCOMES",
    "WINDOW_RESERVE_FRACTION",
    "LimitFeedback",
    "LimitInspector",
    "LimitWindow",
    "Outcome",
    "RateLimit",
    "RetryPolicy",
    "RetryingClient",
    "outcome_for",
    "parse_retry_after",
]

log = structlog.get_logger(__name__)

# Enough of an error body to see what the CRM complained about, small enough to store and show.
BODY_LIMIT: Final = 2_000

_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Outcome(enum.Enum):
    """What the client does with an answer."""

    SUCCESS = "success"
    RETRY = "retry"
    REJECT = "reject"
    AUTH = "auth"


STATUS_OUTCOMES: Final[Mapping[int, Outcome]] = MappingProxyType(
    {
        200: Outcome.SUCCESS,
        201: Outcome.SUCCESS,
        202: Outcome.SUCCESS,
        204: Outcome.SUCCESS,
        # HubSpot and Dynamics answer batch writes with per-record results under 207.
        207: Outcome.SUCCESS,
        401: Outcome.AUTH,
        403: Outcome.AUTH,
        408: Outcome.RETRY,
        425: Outcome.RETRY,
        429: Outcome.RETRY,
        500: Outcome.RETRY,
        502: Outcome.RETRY,
        503: Outcome.RETRY,
        504: Outcome.RETRY,
    }
)


def outcome_for(status: int) -> Outcome:
    """The outcome for a status: the table first, then its class (2xx, 5xx, anything else)."""
    outcome = STATUS_OUTCOMES.get(status)
    if outcome is not None:
        return outcome
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status >= 500:
        return Outcome.RETRY
    # Redirects are not followed (a CRM API should not send them) and, like other 4xx,
    # asking again would get the same answer.
    return Outcome.REJECT


def parse_retry_after(
    value: str | None, *, date: str | None = None, now: datetime | None = None
) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date), None if invalid.

    An HTTP-date is measured against the response's own `Date` when there is one, so a skewed
    local clock cannot make us send before the CRM's clock allows.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    retry_at = _parse_http_date(value)
    if retry_at is None:
        return None
    reference = _parse_http_date(date) if date is not None else None
    if reference is None:
        reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (retry_at - reference).total_seconds())


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 9110 dates are always GMT; "-0000" parses as naive.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry: attempts and time are both bounded; waits grow exponentially."""

    max_attempts: int = 5
    max_elapsed_seconds: float = 60.0
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    retry_after_cap_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        delays = (
            self.max_elapsed_seconds,
            self.base_delay_seconds,
            self.max_delay_seconds,
            self.retry_after_cap_seconds,
        )
        if min(delays) < 0:
            raise ValueError("retry delays and budgets cannot be negative")


@dataclass(frozen=True)
class RateLimit:
    """A client-side token bucket for one connection: a steady rate plus a burst allowance."""

    requests_per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not self.requests_per_second > 0:
            raise ValueError("requests_per_second must be positive")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


DEFAULT_POLICY: Final = RetryPolicy()


@dataclass(frozen=True)
class LimitWindow:
    """One of the CRM's request windows, as an answer described it.

    `resets_in_seconds` is when the window has room again; for a rolling window, whose oldest
    request is unknown to us, its whole length is the safe answer.
    """

    remaining: int
    resets_in_seconds: float
    limit: int | None = None


@dataclass(frozen=True, kw_only=True)
class LimitFeedback:
    """What one CRM answer says about its rate limits, in CRM-neutral terms.

    `pause_seconds` is set when the allowance for a whole period (a day, say) is used up: the
    connection must not call for that long, and retrying within the request would be futile.
    `policy` is the CRM's own name for the limit, for logs and error messages.
    """

    windows: tuple[LimitWindow, ...] = ()
    pause_seconds: float | None = None
    policy: str | None = None


# Reads a CRM's rate-limit headers (and, for a 429, its body) after every answer; None when the
# answer says nothing about limits. Connectors supply it, the client acts on it.
LimitInspector = Callable[[httpx.Response], LimitFeedback | None]

# Slow down with this share of a window still left rather than at zero: other apps on the same
# CRM account draw from the same window, and our own requests in flight are not counted yet.
WINDOW_RESERVE_FRACTION: Final = 0.1


def _window_hold_seconds(window: LimitWindow) -> float:
    """How long to hold the next request so a nearly used-up window is not overrun.

    Spreading the remaining requests over the time to the reset (all of it once nothing is
    left) slows down gradually and, on a rolling window, lets old requests age out instead of
    stopping dead for a whole interval every time the reserve is reached.
    """
    reserve = 0 if window.limit is None else math.floor(window.limit * WINDOW_RESERVE_FRACTION)
    if window.remaining > reserve or window.resets_in_seconds <= 0:
        return 0.0
    return window.resets_in_seconds / (max(window.remaining, 0) + 1)


class _TokenBucket:
    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._rate = limit.requests_per_second
        self._capacity = float(limit.burst)
        self._tokens = float(limit.burst)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()

    async def acquire(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        # Take the token before waiting (the balance may go negative): concurrent callers then
        # queue up behind each other without a lock, and a cancelled waiter only errs on the
        # slow side.
        self._tokens -= 1.0
        if self._tokens < 0:
            await self._sleep(-self._tokens / self._rate)


class _Throttle:
    """What the CRM's own answers asked for: hold requests while a window refills, refuse them
    outright while the connection is paused (there is no point sending what must fail)."""

    def __init__(
        self, *, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._hold_until = -math.inf
        self._paused_until = -math.inf
        self._hold_owner: object = None
        self.paused_policy: str | None = None

    def hold_remaining(self) -> float:
        return max(0.0, self._hold_until - self._clock())

    def pause_remaining(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def hold(self, seconds: float, *, owner: object = None) -> None:
        until = self._clock() + seconds
        if until > self._hold_until:
            self._hold_until = until
            # The request whose answer asked for the wait sleeps it in its own retry already.
            self._hold_owner = owner

    def pause(self, seconds: float, policy: str | None) -> None:
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.paused_policy = policy

    async def wait(self, *, caller: object = None) -> None:
        if caller is not None and caller is self._hold_owner:
            return
        delay = self.hold_remaining()
        if delay > 0:
            await self._sleep(delay)


class _RetryableStatusError(Exception):
    """Carries a retryable answer through tenacity; never leaves this module."""

    def __init__(self, response: httpx.Response, retry_after: float | None) -> None:
        super().__init__(response.status_code)
        self.status = response.status_code
        self.body = response.text[:BODY_LIMIT]
        self.retry_after = retry_after


class _Call:
    """Per-request retry state: tenacity's stop, wait and before-sleep hooks, on our clock."""

    def __init__(
        self,
        *,
        client_name: str,
        method: str,
        path: str,
        policy: RetryPolicy,
        clock: Callable[[], float],
    ) -> None:
        self.client_name = client_name
        self.method = method
        self.path = path
        self.policy = policy
        self.clock = clock
        self.started = clock()
        self.last_retry_after: float | None = None
        self._backoff = wait_random_exponential(
            multiplier=policy.base_delay_seconds, max=policy.max_delay_seconds
        )

    def wait(self, retry_state: RetryCallState) -> float:
        delay = float(self._backoff(retry_state))
        failure = _failure(retry_state)
        if isinstance(failure, _RetryableStatusError) and failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, self.policy.retry_after_cap_seconds))
        return delay

    def stop(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self.policy.max_attempts:
            return True
        # tenacity computes the wait before asking whether to stop, so a wait that would end
        # past the budget (a long Retry-After, say) stops now instead of sleeping in vain.
        elapsed = self.clock() - self.started
        return elapsed + retry_state.upcoming_sleep > self.policy.max_elapsed_seconds

    def before_sleep(self, retry_state: RetryCallState) -> None:
        failure = _failure(retry_state)
        log.warning(
            "crm_http_retry",
            client=self.client_name,
            method=self.method,
            path=self.path,
            status=failure.status if isinstance(failure, _RetryableStatusError) else None,
            error=None if isinstance(failure, _RetryableStatusError) else type(failure).__name__,
            attempt=retry_state.attempt_number,
            wait_seconds=round(retry_state.upcoming_sleep, 3),
        )

    def exhausted(self, error: RetryError) -> CRMRetriesExhausted:
        failure = error.last_attempt.exception()
        attempts = error.last_attempt.attempt_number
        elapsed = self.clock() - self.started
        if isinstance(failure, _RetryableStatusError):
            status: int | None = failure.status
            body = failure.body
            last = f"last status {status}"
        else:
            status = None
            body = ""
            # The exception's type, not its text: the text can quote the URL.
            last = f"last status None ({type(failure).__name__})"
        return CRMRetriesExhausted(
            f"{self.client_name}: {self.method} {self.path} gave up after {attempts} attempt(s)"
            f" in {elapsed:.1f}s; {last}",
            status=status,
            body=body,
            attempts=attempts,
            retry_after=self.last_retry_after,
        )


def _failure(retry_state: RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    return outcome.exception() if outcome is not None else None


class RetryingClient:
    """An httpx client for one CRM connection that retries, backs off and rate-limits.

    `request` returns 2xx answers and raises `CRMAuthError` (401/403), `CRMRequestRejected`
    (other 4xx, at once), `CRMRetriesExhausted` (transport errors, 429, 5xx that outlasted
    the policy) or `CRMRateLimitPaused` (the `limits` inspector says a period's allowance is
    used up; raised at once for a failed answer of any status that says so, and without
    sending for every request until the period ends).

    `limits`, when given, reads every answer: a nearly used-up window holds later requests
    until it refills, and a throttled retry waits at least that long.

    `max_concurrency`, when given, caps the requests of this client in flight at once, to stay
    under a CRM's concurrent-request limit (Dataverse answers 429 to a user's requests past 52
    at once, by default). Only the send holds a slot: a request waiting out a backoff, a hold or the
    token bucket does not keep others from sending.
    """

    def __init__(
        self,
        *,
        base_url: str,
        name: str,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        rate_limit: RateLimit | None = None,
        limits: LimitInspector | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_seconds: float = 30.0,
        max_concurrency: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.name = name
        self.max_concurrency = max_concurrency
        self._in_flight = (
            asyncio.Semaphore(max_concurrency) if max_concurrency is not None else None
        )
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._bucket = (
            _TokenBucket(rate_limit, clock=clock, sleep=sleep) if rate_limit is not None else None
        )
        self._limits = limits
        self._throttle = _Throttle(clock=clock, sleep=sleep)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
            # e.g. an OAuth bearer flow that refreshes its token; runs on every attempt.
            auth=auth,
            transport=transport,
            timeout=httpx.Timeout(timeout_seconds),
        )

    def set_header(self, name: str, value: str) -> None:
        """Replace a default header for later requests, e.g. a refreshed bearer token."""
        self._client.headers[name] = value

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        path_for_logs: str | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying per the policy; returns only a 2xx response.

        `json` sends a JSON body, `data` a form-encoded one (OAuth token endpoints want that),
        `content` raw bytes whose Content-Type `headers` give (a multipart batch, say).
        `path_for_logs` replaces the path in logs and errors when the real one carries a
        secret (HubSpot's token metadata endpoint has the token in its path).
        """
        method = method.upper()
        call = _Call(
            client_name=self.name,
            method=method,
            path=path_for_logs or self._client.build_request(method, url).url.path,
            policy=self.policy,
            clock=self._clock,
        )

        async def attempt() -> httpx.Response:
            self._refuse_while_paused(call)
            await self._throttle.wait(caller=call)
            if self._bucket is not None:
                await self._bucket.acquire()
            # Another request's answer may have paused the connection while this one waited.
            self._refuse_while_paused(call)
            response = await self._send(
                method, url, json=json, data=data, content=content, params=params, headers=headers
            )
            feedback = self._limits(response) if self._limits is not None else None
            if feedback is not None:
                self._apply(call, response, feedback)
            return self._classify(call, response, feedback)

        retrying = AsyncRetrying(
            sleep=self._sleep_seconds,
            stop=call.stop,
            wait=call.wait,
            retry=retry_if_exception_type((_RetryableStatusError, httpx.TransportError)),
            before_sleep=call.before_sleep,
        )
        try:
            return await retrying(attempt)
        except RetryError as error:
            cause = error.last_attempt.exception()
            if isinstance(cause, _RetryableStatusError):
                raise call.exhausted(error) from None
            raise call.exhausted(error) from cause

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any,
        data: Mapping[str, str] | None,
        content: bytes | None,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One attempt on the wire, holding a concurrency slot only for as long as it is sent
        and answered (the body is read before the slot is released)."""
        if self._in_flight is None:
            return await self._client.request(
                method, url, json=json, data=data, content=content, params=params, headers=headers
            )
        async with self._in_flight:
            return await self._client.request(
                method, url, json=json, data=data, content=content, params=params, headers=headers
            )

    def _refuse_while_paused(self, call: _Call) -> None:
        remaining = self._throttle.pause_remaining()
        if remaining > 0:
            raise CRMRateLimitPaused(
                f"{self.name}: {call.method} {call.path} not sent: paused by the CRM's"
                f" {self._throttle.paused_policy or 'rate'} limit for another {remaining:.0f}s",
                status=429,
                retry_after=remaining,
            )

    def _apply(self, call: _Call, response: httpx.Response, feedback: LimitFeedback) -> None:
        """Act on what an answer said about the CRM's limits, whatever its status: a 2xx that
        used up the day's allowance pauses the connection just as the 429 after it would."""
        hold = max((_window_hold_seconds(window) for window in feedback.windows), default=0.0)
        if hold > 0:
            self._throttle.hold(hold)
            log.debug(
                "crm_rate_limit_hold",
                client=self.name,
                path=call.path,
                policy=feedback.policy,
                hold_seconds=round(hold, 3),
            )
        if feedback.pause_seconds is None:
            return
        # Never resume earlier than the CRM's own Retry-After, whatever the inspector estimated.
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), date=response.headers.get("Date")
        )
        pause = max(feedback.pause_seconds, retry_after or 0.0)
        if pause <= 0:
            return
        self._throttle.pause(pause, feedback.policy)
        log.warning(
            "crm_rate_limit_paused",
            client=self.name,
            method=call.method,
            path=call.path,
            status=response.status_code,
            policy=feedback.policy,
            pause_seconds=round(pause, 3),
        )

    def _classify(
        self, call: _Call, response: httpx.Response, feedback: LimitFeedback | None = None
    ) -> httpx.Response:
        outcome = outcome_for(response.status_code)
        if outcome is Outcome.SUCCESS:
            return response
        paused_for = self._throttle.pause_remaining()
        if feedback is not None and feedback.pause_seconds is not None and paused_for > 0:
            # Whatever the status (Salesforce refuses a used-up day with a 403, HubSpot with a
            # 429): retrying cannot help before the period ends, and it is no credentials fault.
            raise CRMRateLimitPaused(
                f"{self.name}: {call.method} {call.path} paused by the CRM's"
                f" {feedback.policy or 'rate'} limit for {paused_for:.0f}s"
                f" (status {response.status_code})",
                status=response.status_code,
                body=response.text[:BODY_LIMIT],
                retry_after=paused_for,
            )
        if outcome is Outcome.RETRY:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), date=response.headers.get("Date")
            )
            # A retry into a window that is still full would only be throttled again.
            held = self._throttle.hold_remaining()
            if held > 0:
                retry_after = max(retry_after or 0.0, held)
            if retry_after is not None:
                call.last_retry_after = retry_after
                # The CRM asked this connection, not this request, to wait: every other
                # request of the connection holds too (capped like the retry's own wait).
                self._throttle.hold(
                    min(retry_after, self.policy.retry_after_cap_seconds), owner=call
                )
            raise _RetryableStatusError(response, retry_after)
        status = response.status_code
        body = response.text[:BODY_LIMIT]
        where = f"{self.name}: {call.method} {call.path}"
        if outcome is Outcome.AUTH:
            raise CRMAuthError(
                f"{where} was refused with status {status} (credentials or scopes)",
                status=status,
                body=body,
            )
        raise CRMRequestRejected(
            f"{where} was rejected with status {status}", status=status, body=body
        )

    async def _sleep_seconds(self, seconds: float) -> None:
        # tenacity passes a float subclass; hand the injected sleep a plain float.
        await self._sleep(float(seconds))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
