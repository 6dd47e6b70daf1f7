"""Momentum: spend that levels off or shrinks, even at a "big" customer, is a warning."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, Unit

NAME = "momentum"

INDICATORS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec("arr_change", "ARR vs 12 months ago", Unit.CHANGE),
)


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in INDICATORS order; None where the inputs are missing."""
    arr, before = facts.arr, facts.arr_12m_ago
    if arr is None or before is None or before <= 0:
        return (None,)
    return (arr / before - 1.0,)
