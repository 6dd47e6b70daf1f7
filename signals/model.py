"""Value types of the health domain: the facts snapshot going in, the health coming out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Band(StrEnum):
    HEALTHY = "healthy"
    NEUTRAL = "neutral"
    AT_RISK = "at_risk"
    UNKNOWN = "unknown"


SIGNAL_NAMES: tuple[str, ...] = ("active_use", "collaboration", "mutual_value", "momentum")


@dataclass(frozen=True, kw_only=True)
class AccountFacts:
    """Everything scoring may look at for one account, read from the store at `as_of`."""

    account_id: str
    as_of: datetime
    last_activity_at: datetime | None = None
    active_days_30d: int = 0


@dataclass(frozen=True, kw_only=True)
class Indicator:
    """One measured input of a signal: its raw value and where it falls on the 0..100 scale."""

    name: str
    raw: float | None
    score: float | None


@dataclass(frozen=True, kw_only=True)
class SignalResult:
    name: str
    score: float | None
    indicators: tuple[Indicator, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Health:
    """The verdict for one account: composite score, band, per-signal scores and the why."""

    score: int | None
    band: Band
    signals: dict[str, float | None] = field(default_factory=dict)
    drivers: tuple[str, ...] = ()
    coverage: float = 0.0
