"""Momentum: spend that levels off or shrinks, even at a "big" customer, is a warning."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, SignalSpec, Unit


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in SIGNAL.indicators order; None where the inputs are missing."""
    arr, before = facts.arr, facts.arr_12m_ago
    if arr is None or before is None or before <= 0:
        return (None,)
    return (arr / before - 1.0,)


SIGNAL = SignalSpec(
    name="momentum",
    label="Momentum",
    description="spend growth versus leveling off or shrinking",
    question="is spend growing, or leveling off?",
    evidence="ARR 12 months ago",
    weight=0.10,
    indicators=(
        IndicatorSpec(
            "arr_change",
            "ARR vs 12 months ago",
            Unit.CHANGE,
            explanation="Change in annual recurring revenue against 12 months ago; higher is "
            "better, flat or shrinking spend is a warning.",
            at_risk=-0.1,
            healthy=0.05,
        ),
    ),
    measure=measure,
)
