"""Dataverse's service protection limits in the shared client's terms: reads the
`x-ms-ratelimit-*` headers and the body of a service protection 429 into `LimitFeedback`; what
to do about it is `connector.http`'s business.

What Dataverse sends (Power Apps docs, "Service protection API limits"):
- limits are per user and per web server, over a 300-second sliding window: 6,000 requests,
  1,200 seconds of combined execution time, and 52 requests at once (all defaults that vary);
- `x-ms-ratelimit-burst-remaining-xrm-requests: 5993`: requests left for this connection in
  the window; `x-ms-ratelimit-time-remaining-xrm-requests: 1,199.46`: seconds of combined
  execution time left for the user. The docs call them debugging aids (they reset when a
  request lands on another web server), so they only ever slow us down gently near the end of
  a window; the 429's `Retry-After` stays the authority;
- a request over a limit gets HTTP 429 with `Retry-After` in seconds and
  `{"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000
  over time window of 300 seconds."}}`; 0x80072321 (-2147015903) is the execution time limit,
  0x80072326 (-2147015898) the concurrent requests one. Until `Retry-After` has passed every
  request of the user is refused, so the whole connection holds, not only the request that got
  the 429; a `Retry-After` longer than a retry can wait out pauses the connection instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import httpx

from connector.http import LimitFeedback, LimitWindow, parse_retry_after

__all__ = [
    "BURST_REMAINING",
    "CONCURRENT_REQUESTS",
    "EXECUTION_TIME",
    "NUMBER_OF_REQUESTS",
    "SERVICE_PROTECTION_CODES",
    "TIME_REMAINING",
    "WINDOW_SECONDS",
    "DynamicsLimits",
    "service_protection_policy",
]

BURST_REMAINING: Final = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING: Final = "x-ms-ratelimit-time-remaining-xrm-requests"

# The limits' names, used as the feedback's `policy`.
NUMBER_OF_REQUESTS: Final = "number_of_requests"
EXECUTION_TIME: Final = "execution_time"
CONCURRENT_REQUESTS: Final = "concurrent_requests"

# The Web API answers the hex code; the SDK's error code is the same number in decimal.
SERVICE_PROTECTION_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "0x80072322": NUMBER_OF_REQUESTS,
        "-2147015902": NUMBER_OF_REQUESTS,
        "0x80072321": EXECUTION_TIME,
        "-2147015903": EXECUTION_TIME,
        "0x80072326": CONCURRENT_REQUESTS,
        "-2147015898": CONCURRENT_REQUESTS,
    }
)

WINDOW_SECONDS: Final = 300.0
DEFAULT_REQUEST_LIMIT: Final = 6_000
DEFAULT_EXECUTION_SECONDS: Final = 1_200
# Past this a retry within the request cannot wait (the shared policy's default budget is a
# minute): pause the connection and let the caller reschedule.
DEFAULT_PAUSE_AFTER_SECONDS: Final = 60.0
# Dataverse always sends Retry-After with a service protection 429; should it not, wait this.
DEFAULT_RETRY_AFTER_SECONDS: Final = 5.0


class DynamicsLimits:
    """The `limits` inspector for a Dataverse `RetryingClient`; it keeps no state, so one
    instance may serve many connections.

    The two windows are the request count and the execution time (in whole seconds) left in the
    sliding 300 seconds; `request_limit` and `execution_seconds` are their sizes, used only to
    place the reserve at which the client starts to slow down (a larger remaining count than
    the limit raises the limit: environments differ). A service protection 429 holds every
    request of the connection for its `Retry-After`, or pauses the connection when that is
    longer than `pause_after_seconds`.
    """

    def __init__(
        self,
        *,
        request_limit: int = DEFAULT_REQUEST_LIMIT,
        execution_seconds: int = DEFAULT_EXECUTION_SECONDS,
        pause_after_seconds: float = DEFAULT_PAUSE_AFTER_SECONDS,
        default_retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS,
    ) -> None:
        if request_limit < 1 or execution_seconds < 1:
            raise ValueError("request_limit and execution_seconds must be positive")
        if not pause_after_seconds > 0 or not default_retry_after_seconds > 0:
            raise ValueError("pause_after_seconds and default_retry_after_seconds must be positive")
        self.request_limit = request_limit
        self.execution_seconds = execution_seconds
        self.pause_after_seconds = float(pause_after_seconds)
        self.default_retry_after_seconds = float(default_retry_after_seconds)

    def __call__(self, response: httpx.Response) -> LimitFeedback | None:
        headers = response.headers
        windows: list[LimitWindow] = []
        requests_left = _count(headers.get(BURST_REMAINING))
        if requests_left is not None:
            windows.append(
                LimitWindow(
                    requests_left, WINDOW_SECONDS, limit=max(self.request_limit, requests_left)
                )
            )
        seconds_left = _seconds(headers.get(TIME_REMAINING))
        if seconds_left is not None:
            whole = math.floor(seconds_left)
            windows.append(
                LimitWindow(whole, WINDOW_SECONDS, limit=max(self.execution_seconds, whole))
            )

        policy = service_protection_policy(response)
        if policy is None:
            return LimitFeedback(windows=tuple(windows)) if windows else None
        retry_after = parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"))
        if retry_after is None:
            retry_after = self.default_retry_after_seconds
        if retry_after > self.pause_after_seconds:
            return LimitFeedback(windows=tuple(windows), pause_seconds=retry_after, policy=policy)
        # Every request of the user is refused until Retry-After has passed: hold them all.
        windows.append(LimitWindow(0, retry_after))
        return LimitFeedback(windows=tuple(windows), policy=policy)


def service_protection_policy(response: httpx.Response) -> str | None:
    """The service protection limit a refused answer names, None when it is no such refusal.
    Never raises on a body it does not expect."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str | int) and not isinstance(code, bool):
        policy = SERVICE_PROTECTION_CODES.get(str(code).strip().lower())
        if policy is not None:
            return policy
    if response.status_code == 429:
        # A 429 is Dataverse's service protection answer even when its body says nothing more.
        return NUMBER_OF_REQUESTS
    return None


def _count(value: str | None) -> int | None:
    """A non-negative whole number from a header (`5993`, `5,993`); None when it is not one."""
    if value is None:
        return None
    value = value.strip().replace(",", "")
    return int(value) if value.isascii() and value.isdigit() else None


def _seconds(value: str | None) -> float | None:
    """Seconds from a header such as `1,199.46` (grouped, with decimals); None when invalid."""
    if value is None:
        return None
    text = value.strip().replace(",", "")
    if not text or not all(char.isdigit() or char == "." for char in text) or not text.isascii():
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None
