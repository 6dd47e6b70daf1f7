"""Active use: a customer is a success only when people actually use what was sold.

Seat utilization, the usage trend, stickiness (daily versus monthly users) and recency; and
how deeply they use it: events per active user, their trend, and the share of active users
who use the features an admin marks as key. An account that keeps logging in saturates the
first four; depth and adoption keep telling it apart from one that only looks in.
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

    depth = None
    if monthly is not None and monthly > 0 and facts.usage_events_30d is not None:
        depth = facts.usage_events_30d / monthly

    depth_trend = None
    earlier, events_before = facts.active_users_prev_30d, facts.usage_events_prev_30d
    if depth is not None and earlier and events_before:
        # Without a prior depth there is nothing to compare: no data, not growth.
        depth_trend = depth * earlier / events_before - 1.0

    key_feature_adoption = None
    if monthly is not None and monthly > 0 and facts.key_feature_users_30d is not None:
        key_feature_adoption = min(1.0, facts.key_feature_users_30d / monthly)

    return (
        seat_utilization,
        usage_trend,
        stickiness,
        recency_days,
        depth,
        depth_trend,
        key_feature_adoption,
    )


SIGNAL = SignalSpec(
    name="active_use",
    label="Active use",
    description="seat use, usage trend, stickiness, recency",
    question="do people actually use what was sold?",
    evidence="product usage",
    weight=0.40,
    indicators=(
        IndicatorSpec(
            "seat_utilization",
            "Seat utilization",
            Unit.PERCENT,
            explanation="Share of paid seats used in the last 30 days (people active / seats); "
            "higher is better.",
            at_risk=0.4,
            healthy=0.7,
        ),
        IndicatorSpec(
            "usage_trend",
            "Active users vs prior 30d",
            Unit.CHANGE,
            explanation="Change in the number of active people, last 30 days against the 30 "
            "before; higher is better.",
            at_risk=-0.25,
            healthy=0.0,
        ),
        IndicatorSpec(
            "stickiness",
            "Stickiness (DAU/MAU)",
            Unit.PERCENT,
            explanation="Share of the month's active people who use it on an average day; "
            "higher is better.",
            at_risk=0.05,
            healthy=0.2,
        ),
        IndicatorSpec(
            "recency_days",
            "Days since last use",
            Unit.DAYS,
            explanation="Days since anyone at the account last used the product; lower is better.",
            at_risk=14,
            healthy=3,
        ),
        # Depth is optional: months from before events were counted hold no count, and an
        # upgrade should move no band while the windows fill. Its level depends on how the
        # product is instrumented (a daily-activity import sends one event a user-day), so it
        # weighs 0 until an admin sets thresholds from their own book (docs/signals.md); its
        # trend, a ratio, holds for any instrumentation.
        IndicatorSpec(
            "usage_depth",
            "Events per active user (30d)",
            Unit.COUNT,
            explanation="Product events per active person in the last 30 days: how much they "
            "do, not only whether; higher is better.",
            at_risk=5,
            healthy=25,
            weight=0.0,
            optional=True,
        ),
        IndicatorSpec(
            "depth_trend",
            "Events per active user vs prior 30d",
            Unit.CHANGE,
            explanation="Change in product events per active person, last 30 days against the "
            "30 before; higher is better.",
            at_risk=-0.3,
            healthy=0.0,
            optional=True,
        ),
        # No data until an admin marks key features (HealthConfig.product.key_features).
        IndicatorSpec(
            "key_feature_adoption",
            "Key-feature adoption",
            Unit.PERCENT,
            explanation="Share of the last 30 days' active people who used a feature marked as "
            "key; higher is better.",
            at_risk=0.2,
            healthy=0.5,
            optional=True,
        ),
    ),
    measure=measure,
)
