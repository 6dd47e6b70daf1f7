"""Collaboration marks the best customers, not the biggest: value flows both ways, they
co-innovate with us, and we reach many people including the executive suite."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, SignalSpec, Unit


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in SIGNAL.indicators order; None where the inputs are missing."""
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


SIGNAL = SignalSpec(
    name="collaboration",
    label="Collaboration",
    description="two-way contact, co-innovation, breadth, executives",
    question="does value flow both ways, across many people?",
    evidence="collaboration (interactions, contacts, co-innovation)",
    weight=0.35,
    indicators=(
        IndicatorSpec(
            "two_way_ratio",
            "Customer-initiated contact (90d)",
            Unit.PERCENT,
            explanation="Share of the last 90 days' interactions the customer started rather "
            "than us; higher is better.",
            at_risk=0.15,
            healthy=0.4,
        ),
        IndicatorSpec(
            "co_innovation",
            "Co-innovation events (180d)",
            Unit.COUNT,
            explanation="Feedback, feature requests, betas, referrals, case studies and joint "
            "plans in the last 180 days; higher is better.",
            at_risk=0,
            healthy=2,
        ),
        IndicatorSpec(
            "stakeholder_breadth",
            "Contacts engaged (90d)",
            Unit.COUNT,
            explanation="Different people at the customer we interacted with in the last 90 "
            "days (those still there); higher is better.",
            at_risk=1,
            healthy=4,
        ),
        IndicatorSpec(
            "executive_access",
            "Executives engaged (90d)",
            Unit.COUNT,
            explanation="Executives at the customer we interacted with in the last 90 days; "
            "higher is better.",
            at_risk=0,
            healthy=1,
        ),
    ),
    measure=measure,
)
