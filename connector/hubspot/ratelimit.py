"""HubSpot's rate limits in the shared client's terms: reads the `X-HubSpot-RateLimit-*` headers
and the body of a 429 into `LimitFeedback`; what to do about it is `connector.http`'s business.

What HubSpot sends (its developer docs, "API usage details" and the 2018/2019 changelog):
- `X-HubSpot-RateLimit-Interval-Milliseconds`, `-Max`, `-Remaining`: the rolling burst window,
  e.g. 100 requests per 10,000 ms on the smallest plans;
- `X-HubSpot-RateLimit-Secondly`, `-Secondly-Remaining`: the per-second window;
- `X-HubSpot-RateLimit-Daily`, `-Daily-Remaining`: the day's allowance (private apps only;
  OAuth apps have no daily limit and get neither header).
Any of them may be missing (HubSpot leaves them out when it could not gather them). A 429 names
the limit that was hit: `{"status": "error", "errorType": "RATE_LIMIT", "policyName":
"TEN_SECONDLY_ROLLING" | "SECONDLY" | "DAILY", "message": ..., "correlationId": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from connector.http import LimitFeedback, LimitWindow, parse_retry_after

__all__ = [
    "DAILY",
    "SECONDLY",
    "TEN_SECONDLY_ROLLING",
    "HubSpotLimits",
    "seconds_to_next_midnight",
]

INTERVAL_MS: Final = "X-HubSpot-RateLimit-Interval-Milliseconds"
INTERVAL_MAX: Final = "X-HubSpot-RateLimit-Max"
INTERVAL_REMAINING: Final = "X-HubSpot-RateLimit-Remaining"
SECONDLY_MAX: Final = "X-HubSpot-RateLimit-Secondly"
SECONDLY_REMAINING: Final = "X-HubSpot-RateLimit-Secondly-Remaining"
DAILY_MAX: Final = "X-HubSpot-RateLimit-Daily"
DAILY_REMAINING: Final = "X-HubSpot-RateLimit-Daily-Remaining"

# `policyName` values of a 429.
DAILY: Final = "DAILY"
SECONDLY: Final = "SECONDLY"
TEN_SECONDLY_ROLLING: Final = "TEN_SECONDLY_ROLLING"

# Window lengths to assume when a 429 names its policy but the headers are missing.
_POLICY_WINDOW_SECONDS: Final = {TEN_SECONDLY_ROLLING: 10.0, SECONDLY: 1.0}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HubSpotLimits:
    """The `limits` inspector for a HubSpot `RetryingClient`: one instance per connection.

    HubSpot resets the daily allowance at midnight in the portal's time zone. Without that zone
    (and without a `Retry-After`, which HubSpot does not promise on a daily 429) the pause runs
    to the next midnight in `reset_zone`, UTC unless told otherwise. That is a conservative
    bound only for portals at or east of UTC: a portal west of it resets hours later, so the
    first call after the pause may meet the daily 429 again and pause for another day. Pass the
    portal's zone (HubSpot's account details carry it) to resume at the real reset.
    """

    def __init__(self, *, reset_zone: tzinfo = UTC, now: Callable[[], datetime] = _utcnow) -> None:
        self._reset_zone = reset_zone
        self._now = now

    def __call__(self, response: httpx.Response) -> LimitFeedback | None:
        headers = response.headers
        windows: list[LimitWindow] = []
        interval = _count(headers.get(INTERVAL_MS))
        interval_seconds = interval / 1000 if interval else None
        remaining = _count(headers.get(INTERVAL_REMAINING))
        if remaining is not None:
            # The window rolls, so its full length is when room is sure to come back.
            windows.append(
                LimitWindow(
                    remaining,
                    interval_seconds or _POLICY_WINDOW_SECONDS[TEN_SECONDLY_ROLLING],
                    limit=_count(headers.get(INTERVAL_MAX)),
                )
            )
        secondly_remaining = _count(headers.get(SECONDLY_REMAINING))
        if secondly_remaining is not None:
            windows.append(
                LimitWindow(secondly_remaining, 1.0, limit=_count(headers.get(SECONDLY_MAX)))
            )

        policy = _policy_name(response) if response.status_code == 429 else None
        pause: float | None = None
        if policy == DAILY or _count(headers.get(DAILY_REMAINING)) == 0:
            # A 2xx that used up the day is the last call that will succeed today: pausing now
            # saves the 429 the next call would get.
            policy = DAILY
            pause = self._until_daily_reset(response)
        elif policy in _POLICY_WINDOW_SECONDS and not any(w.remaining == 0 for w in windows):
            # The window is full even if the headers did not say so (or were missing).
            length = _POLICY_WINDOW_SECONDS[policy]
            if policy == TEN_SECONDLY_ROLLING and interval_seconds:
                length = interval_seconds
            windows.append(LimitWindow(0, length))

        if not windows and pause is None and policy is None:
            return None
        return LimitFeedback(windows=tuple(windows), pause_seconds=pause, policy=policy)

    def _until_daily_reset(self, response: httpx.Response) -> float:
        date = response.headers.get("Date")
        retry_after = parse_retry_after(response.headers.get("Retry-After"), date=date)
        if retry_after is not None:
            return retry_after
        # HubSpot's own clock, when it says, so a skewed local clock cannot end the pause early.
        reference = _http_date(date) or self._now()
        return seconds_to_next_midnight(reference, self._reset_zone)


def seconds_to_next_midnight(at: datetime, zone: tzinfo) -> float:
    """Seconds from `at` (aware) to the next midnight in `zone`."""
    local = at.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone)
    return (midnight - at).total_seconds()


def _count(value: str | None) -> int | None:
    """A non-negative whole number from a header; None when absent or not one."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _policy_name(response: httpx.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    policy = body.get("policyName") if isinstance(body, dict) else None
    return policy if isinstance(policy, str) else None


def _http_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
