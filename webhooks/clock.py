"""The service's clock: the current time, in UTC, and the type of a clock a component takes
instead (tests and benchmarks pass their own)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
