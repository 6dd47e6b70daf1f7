"""Active use: a customer is a success only when people actually use what was sold.

Seat utilization, the usage trend, stickiness (daily versus monthly users) and recency.
"""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, SignalSpec, Unit


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in SIGNAL.indicators order; None where the inputs are missing."""
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


SIGNAL = SignalSpec(
    name="active_use",
    label="Active use",
    description="seat use, usage trend, stickiness, recency",
    question="do people actually use what was sold?",
    evidence="product usage",
    weight=0.40,
    indicators=(
        IndicatorSpec(
            "seat_utilization", "Seat utilization", Unit.PERCENT, at_risk=0.4, healthy=0.7
        ),
        IndicatorSpec(
            "usage_trend", "Active users vs prior 30d", Unit.CHANGE, at_risk=-0.25, healthy=0.0
        ),
        IndicatorSpec(
            "stickiness", "Stickiness (DAU/MAU)", Unit.PERCENT, at_risk=0.05, healthy=0.2
        ),
        IndicatorSpec("recency_days", "Days since last use", Unit.DAYS, at_risk=14, healthy=3),
    ),
    measure=measure,
)
