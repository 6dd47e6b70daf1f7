"""The shared HTTP client for CRM calls: the one place with retry, backoff and rate-limit policy.

Connectors send every CRM request through `RetryingClient` and only ever see typed errors.
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

from connector.errors import CRMAuthError, CRMRequestRejected, CRMRetriesExhausted

__all__ = [
    "STATUS_OUTCOMES",
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
    (other 4xx, at once) or `CRMRetriesExhausted` (transport errors, 429, 5xx that outlasted
    the policy).
    """

    def __init__(
        self,
        *,
        base_url: str,
        name: str,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        rate_limit: RateLimit | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_seconds: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._bucket = (
            _TokenBucket(rate_limit, clock=clock, sleep=sleep) if rate_limit is not None else None
        )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
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
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying per the policy; returns only a 2xx response."""
        method = method.upper()
        call = _Call(
            client_name=self.name,
            method=method,
            path=self._client.build_request(method, url).url.path,
            policy=self.policy,
            clock=self._clock,
        )

        async def attempt() -> httpx.Response:
            if self._bucket is not None:
                await self._bucket.acquire()
            response = await self._client.request(
                method, url, json=json, params=params, headers=headers
            )
            return self._classify(call, response)

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

    def _classify(self, call: _Call, response: httpx.Response) -> httpx.Response:
        outcome = outcome_for(response.status_code)
        if outcome is Outcome.SUCCESS:
            return response
        if outcome is Outcome.RETRY:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), date=response.headers.get("Date")
            )
            if retry_after is not None:
                call.last_retry_after = retry_after
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
