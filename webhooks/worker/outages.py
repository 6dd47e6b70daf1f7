"""Outage backoff per connection: how long a CRM that could not be reached (or refused our
credentials) is left alone, growing with its failures in a row (capped) and forgotten once it
answers. Decoding and write-back delivery share it, so one outage is one backoff."""

from __future__ import annotations

from webhooks.retry import RetrySchedule


class Outages:
    def __init__(self, *, schedule: RetrySchedule) -> None:
        self._schedule = schedule
        # Failures in a row of each connection's CRM (unreachable, 5xx/429 beyond the client's
        # retries, refused credentials), for the outage backoff; forgotten once it answers.
        self._failures: dict[str, int] = {}

    def delay(self, connection: str, retry_after: float) -> float:
        """Count one more failure in a row of the connection's CRM; how long to wait now."""
        failures = self._failures.get(connection, 0) + 1
        self._failures[connection] = failures
        return self._schedule.delay(failures, not_before=retry_after)

    def failures(self, connection: str) -> int:
        return self._failures.get(connection, 0)

    def over(self, connection: str) -> None:
        """The connection's CRM answered: its outage, if any, is over."""
        self._failures.pop(connection, None)
