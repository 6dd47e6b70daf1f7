"""Mutual value: a poorly sold account costs many times the effort of a good one, which shows
as support load and escalations relative to its size."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, SignalSpec, Unit


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in SIGNAL.indicators order; None where the inputs are missing."""
    tickets, seats = facts.tickets_90d, facts.seats
    support_load = None
    if tickets is not None and seats is not None and seats > 0:
        support_load = tickets / seats * 10.0
    return support_load, facts.escalations_90d


SIGNAL = SignalSpec(
    name="mutual_value",
    label="Mutual value",
    description="support load and escalations per seat",
    question="is the account worth its effort on both sides?",
    evidence="support tickets with seats",
    weight=0.15,
    indicators=(
        IndicatorSpec(
            "support_load", "Tickets per 10 seats (90d)", Unit.NUMBER, at_risk=5, healthy=1
        ),
        IndicatorSpec("escalations", "High/urgent tickets (90d)", Unit.COUNT, at_risk=3, healthy=0),
    ),
    measure=measure,
)
