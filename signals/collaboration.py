"""Collaboration marks the best customers, not the biggest: value flows both ways, they
co-innovate with us, and we reach many people including the executive suite."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, Unit

NAME = "collaboration"

INDICATORS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec("two_way_ratio", "Customer-initiated contact (90d)", Unit.PERCENT),
    IndicatorSpec("co_innovation", "Co-innovation events (180d)", Unit.COUNT),
    IndicatorSpec("stakeholder_breadth", "Contacts engaged (90d)", Unit.COUNT),
    IndicatorSpec("executive_access", "Executives engaged (90d)", Unit.COUNT),
)


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in INDICATORS order; None where the inputs are missing."""
    total, theirs = facts.total_interactions_90d, facts.customer_interactions_90d
    two_way_ratio = None
    if total is not None and total > 0 and theirs is not None:
        two_way_ratio = theirs / total
    return (
        two_way_ratio,
        facts.collaboration_events_180d,
        facts.contacts_engaged_90d,
        facts.executives_engaged_90d,
    )
