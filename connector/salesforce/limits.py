"""Salesforce's API limits in the shared client's terms: reads `Sforce-Limit-Info` and the body of
a `REQUEST_LIMIT_EXCEEDED` refusal into `LimitFeedback`; what to do about it is `connector.http`'s.

What Salesforce sends (REST API Developer Guide, "Limit Info Header" and "Status Codes and Error
Responses"):
- every REST answer carries `Sforce-Limit-Info: api-usage=18/5000`: requests used / allowed, for
  the whole org (every integration and user draws from it), over a rolling 24 hours. Other
  parts may follow after `;` (`per-app-api-usage=17/250(appName=...)`, `api-bursts=1/750`;
  with bursts `api-usage` may read 110018/100000); only `api-usage` is read;
- once the allowance is used up, every call is refused with HTTP 403 and
  `[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]`;
- too many long-running requests at once (over 20 s each, 25 by default in production) is
  refused the same way, with the message `ConcurrentPerOrgLongTxn Limit exceeded.` (older orgs:
  `ConcurrentRequests ...`): that frees up within seconds, not hours.
"""

from __future__ import annotations

import json
import re
from typing import Final

import httpx

from connector.http import LimitFeedback, LimitWindow

__all__ = [
    "CONCURRENT_PER_ORG_LONG_TXN",
    "DAILY_WINDOW_SECONDS",
    "LIMIT_INFO",
    "REQUEST_LIMIT_EXCEEDED",
    "TOTAL_REQUESTS",
    "SalesforceLimits",
]

LIMIT_INFO: Final = "Sforce-Limit-Info"
REQUEST_LIMIT_EXCEEDED: Final = "REQUEST_LIMIT_EXCEEDED"

# The limit names Salesforce puts at the start of a REQUEST_LIMIT_EXCEEDED message, used as the
# feedback's `policy`.
TOTAL_REQUESTS: Final = "TotalRequests"
CONCURRENT_PER_ORG_LONG_TXN: Final = "ConcurrentPerOrgLongTxn"

# The allowance is counted over a rolling day whose oldest request we cannot see, so the whole
# day is the only sure answer to "when is there room again".
DAILY_WINDOW_SECONDS: Final = 86_400.0

DEFAULT_DAILY_PAUSE_SECONDS: Final = 1_800.0
DEFAULT_CONCURRENT_PAUSE_SECONDS: Final = 30.0

_USAGE = re.compile(r"\s*([0-9]{1,12})\s*/\s*([0-9]{1,12})\s*")
# "TotalRequests Limit exceeded.", "ConcurrentRequests (Concurrent API Requests) Limit exceeded"
_LIMIT_MESSAGE = re.compile(
    r"([A-Za-z][A-Za-z0-9]{0,63})\b.*\blimit exceeded", re.IGNORECASE | re.DOTALL
)


class SalesforceLimits:
    """The `limits` inspector for a Salesforce `RetryingClient`: one instance per connection.

    The org's daily allowance becomes a window, so the client slows down as it nears its end
    and pauses when it is gone (`daily_pause_seconds` at a time: the rolling day gives room back
    gradually, so the connection looks again after a while rather than after a whole day).
    A refusal for too many concurrent long-running requests pauses for
    `concurrent_pause_seconds` only.
    """

    def __init__(
        self,
        *,
        daily_pause_seconds: float = DEFAULT_DAILY_PAUSE_SECONDS,
        concurrent_pause_seconds: float = DEFAULT_CONCURRENT_PAUSE_SECONDS,
    ) -> None:
        if not daily_pause_seconds > 0 or not concurrent_pause_seconds > 0:
            raise ValueError("daily_pause_seconds and concurrent_pause_seconds must be positive")
        self.daily_pause_seconds = float(daily_pause_seconds)
        self.concurrent_pause_seconds = float(concurrent_pause_seconds)

    def __call__(self, response: httpx.Response) -> LimitFeedback | None:
        windows: tuple[LimitWindow, ...] = ()
        pauses: list[tuple[float, str]] = []
        usage = _api_usage(response.headers.get(LIMIT_INFO))
        if usage is not None:
            used, limit = usage
            if used < limit:
                windows = (LimitWindow(limit - used, DAILY_WINDOW_SECONDS, limit=limit),)
            else:
                # The last call the allowance had room for (or past it, on burst allowance):
                # pausing now saves the refusal the next call would get. No window: a used-up
                # one would hold the next request for the whole day even after the pause.
                pauses.append((self.daily_pause_seconds, TOTAL_REQUESTS))
        refused = _refused_limit(response)
        if refused is not None:
            concurrent = refused.startswith("Concurrent")
            seconds = self.concurrent_pause_seconds if concurrent else self.daily_pause_seconds
            pauses.append((seconds, refused))

        if pauses:
            pause, policy = max(pauses)
            return LimitFeedback(windows=windows, pause_seconds=pause, policy=policy)
        if windows:
            return LimitFeedback(windows=windows, policy=TOTAL_REQUESTS)
        return None


def _api_usage(header: str | None) -> tuple[int, int] | None:
    """(used, limit) from the header's `api-usage` part; None when absent or malformed."""
    if header is None:
        return None
    for part in header.split(";"):
        name, equals, value = part.partition("=")
        if not equals or name.strip().lower() != "api-usage":
            continue
        match = _USAGE.fullmatch(value)
        if match is None or int(match[2]) == 0:
            return None
        return int(match[1]), int(match[2])
    return None


def _refused_limit(response: httpx.Response) -> str | None:
    """The limit a `REQUEST_LIMIT_EXCEEDED` refusal names (`TotalRequests` when it names none),
    or None when the answer is no such refusal. Never raises on a body it does not expect.

    Only failed answers are read: a composite 200 may quote a sub-request's refusal, and that
    is for the caller to act on, not the connection."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    # The REST API always answers errors as a list; anything else is not its limit refusal.
    if not isinstance(body, list):
        return None
    for error in body:
        if not isinstance(error, dict) or error.get("errorCode") != REQUEST_LIMIT_EXCEEDED:
            continue
        message = error.get("message")
        named = _LIMIT_MESSAGE.match(message.strip()) if isinstance(message, str) else None
        # Without a name the error code alone says the org's allowance is used up.
        return named[1] if named is not None else TOTAL_REQUESTS
    return None
