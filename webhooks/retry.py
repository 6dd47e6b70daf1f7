"""The one retry schedule of every stored queue (inbox events, write-backs, alert deliveries):
exponential backoff from a base, capped, so a long outage is waited out with a try every
`max_seconds` instead of ever-growing gaps or a give-up. The HTTP client's in-call retries are
connector.http's; this is the schedule between passes of the worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RetrySchedule:
    base_seconds: float = 5.0
    max_seconds: float = 900.0

    def delay(self, failures: int, *, not_before: float = 0.0) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 for the first), never
        less than `not_before` (a CRM's Retry-After)."""
        # The exponent is bounded so a row that failed for weeks cannot overflow a float.
        exponent = min(max(failures - 1, 0), 64)
        return max(min(self.base_seconds * 2.0**exponent, self.max_seconds), not_before)
