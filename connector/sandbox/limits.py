"""HubSpot-style API rate limits for the sandbox: counters per token, the headers, the 429 body.

HubSpot counts every call of a token in a 10-second rolling window (100 by default) and per
day, reports both in `X-HubSpot-RateLimit-*` headers on every answer, and refuses a call over
either with 429 and a RATE_LIMIT body naming the policy (TEN_SECONDLY_ROLLING or DAILY).
The sandbox always counts and reports; it only refuses when `enforce` is on.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

DEFAULT_WINDOW_MAX = 100
DEFAULT_INTERVAL_MS = 10_000
# HubSpot's daily allowance for a private app on a Free/Starter portal.
DEFAULT_DAILY = 250_000

TEN_SECONDLY_ROLLING = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"

HEADER_DAILY = "X-HubSpot-RateLimit-Daily"
HEADER_DAILY_REMAINING = "X-HubSpot-RateLimit-Daily-Remaining"
HEADER_INTERVAL = "X-HubSpot-RateLimit-Interval-Milliseconds"
HEADER_MAX = "X-HubSpot-RateLimit-Max"
HEADER_REMAINING = "X-HubSpot-RateLimit-Remaining"
HEADER_SECONDLY = "X-HubSpot-RateLimit-Secondly"
HEADER_SECONDLY_REMAINING = "X-HubSpot-RateLimit-Secondly-Remaining"


def rate_limit_body(policy: str) -> dict[str, Any]:
    """HubSpot's documented 429 body; the message names the policy in lower case."""
    limit = "daily" if policy == DAILY else policy.lower()
    return {
        "status": "error",
        "message": f"You have reached your {limit} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }


@dataclass
class RateLimitDecision:
    """What the limiter says about one call: refused under `policy`, and the headers to send."""

    headers: dict[str, str]
    policy: str | None = None

    @property
    def allowed(self) -> bool:
        return self.policy is None


@dataclass
class _TokenUsage:
    calls: deque[float] = field(default_factory=deque)  # epoch seconds of counted calls
    day: date | None = None
    daily_used: int = 0


class RateLimiter:
    """Rolling-window and daily counters per token, driven by the state's clock (tests move it)."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        window_max: int = DEFAULT_WINDOW_MAX,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        daily: int = DEFAULT_DAILY,
        enforce: bool = False,
    ) -> None:
        self.clock = clock
        self.window_max = window_max
        self.interval_ms = interval_ms
        self.daily = daily
        self.enforce = enforce
        self._usage: dict[str, _TokenUsage] = {}

    def configure(
        self,
        *,
        window_max: int | None = None,
        interval_ms: int | None = None,
        daily: int | None = None,
        enforce: bool | None = None,
    ) -> None:
        """Change the knobs; counters carry on, as a plan change would not reset HubSpot's."""
        for name, value in (("window_max", window_max), ("interval_ms", interval_ms)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        if daily is not None and daily < 0:
            raise ValueError("daily must be >= 0")
        self.window_max = window_max if window_max is not None else self.window_max
        self.interval_ms = interval_ms if interval_ms is not None else self.interval_ms
        self.daily = daily if daily is not None else self.daily
        self.enforce = enforce if enforce is not None else self.enforce

    def restore_defaults(self) -> None:
        self.window_max = DEFAULT_WINDOW_MAX
        self.interval_ms = DEFAULT_INTERVAL_MS
        self.daily = DEFAULT_DAILY
        self.enforce = False
        self.reset_counters()

    def reset_counters(self) -> None:
        self._usage.clear()

    @property
    def secondly(self) -> int:
        # HubSpot reports the window's allowance spread over its seconds (100 per 10 s -> 10).
        return max(1, math.ceil(self.window_max * 1000 / self.interval_ms))

    def check(self, token: str, *, count: bool = True) -> RateLimitDecision:
        """Decide on one call of `token` and count it when it goes through (and `count`).

        Refused calls are not counted: a client that backs off gets its window back on time.
        """
        moment = self.clock()
        now = moment.timestamp()
        usage = self._usage.setdefault(token, _TokenUsage())
        window_start = now - self.interval_ms / 1000
        while usage.calls and usage.calls[0] <= window_start:
            usage.calls.popleft()
        today = moment.date()
        if usage.day != today:
            usage.day, usage.daily_used = today, 0
        policy: str | None = None
        if self.enforce:
            if usage.daily_used >= self.daily:
                policy = DAILY
            elif len(usage.calls) >= self.window_max:
                policy = TEN_SECONDLY_ROLLING
        if policy is None and count:
            usage.calls.append(now)
            usage.daily_used += 1
        return RateLimitDecision(self._headers(usage, now), policy)

    def _headers(self, usage: _TokenUsage, now: float) -> dict[str, str]:
        last_second = sum(1 for at in usage.calls if at > now - 1)
        return {
            HEADER_DAILY: str(self.daily),
            HEADER_DAILY_REMAINING: str(max(0, self.daily - usage.daily_used)),
            HEADER_INTERVAL: str(self.interval_ms),
            HEADER_MAX: str(self.window_max),
            HEADER_REMAINING: str(max(0, self.window_max - len(usage.calls))),
            HEADER_SECONDLY: str(self.secondly),
            HEADER_SECONDLY_REMAINING: str(max(0, self.secondly - last_second)),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "window_max": self.window_max,
            "interval_ms": self.interval_ms,
            "daily": self.daily,
            "enforce": self.enforce,
            "usage": {
                token: {"window": len(usage.calls), "daily": usage.daily_used}
                for token, usage in self._usage.items()
            },
        }
