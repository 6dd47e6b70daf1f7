"""Active use: a customer is a success only when people actually use what was sold."""

from __future__ import annotations

from signals.config import HealthConfig
from signals.indicators import interpolate
from signals.model import AccountFacts, Indicator, SignalResult

NAME = "active_use"


def compute(facts: AccountFacts, config: HealthConfig) -> SignalResult:
    if facts.last_activity_at is None:
        return SignalResult(name=NAME, score=None)
    recency = max(0.0, (facts.as_of - facts.last_activity_at).total_seconds() / 86400)
    recency_indicator = Indicator(
        name="recency_days", raw=recency, score=interpolate(recency, config.recency_days)
    )
    return SignalResult(name=NAME, score=recency_indicator.score, indicators=(recency_indicator,))
