"""Active use: a customer is a success only when people actually use what was sold.

Seat utilization, the usage trend, stickiness (daily versus monthly users) and recency.
"""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, Unit

NAME = "active_use"

INDICATORS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec("seat_utilization", "Seat utilization", Unit.PERCENT),
    IndicatorSpec("usage_trend", "Active users vs prior 30d", Unit.CHANGE),
    IndicatorSpec("stickiness", "Stickiness (DAU/MAU)", Unit.PERCENT),
    IndicatorSpec("recency_days", "Days since last use", Unit.DAYS),
)


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in INDICATORS order; None where the inputs are missing."""
    seats, monthly, before = facts.seats, facts.active_users_30d, facts.active_users_prev_30d
    daily, last_usage = facts.mean_daily_active_users_30d, facts.last_usage_at

    seat_utilization = None
    if seats is not None and seats > 0 and monthly is not None:
        seat_utilization = monthly / seats

    usage_trend = None
    if monthly is not None and before is not None:
        if before > 0:
            usage_trend = monthly / before - 1.0
        elif monthly > 0:
            # From nobody to somebody is growth; nobody in both periods says nothing.
            usage_trend = 1.0

    stickiness = None
    if monthly is not None and monthly > 0 and daily is not None:
        stickiness = daily / monthly

    recency_days = None
    if last_usage is not None:
        recency_days = max(0.0, (facts.as_of - last_usage).total_seconds() / 86400.0)

    return seat_utilization, usage_trend, stickiness, recency_days
