"""Mutual value: a poorly sold account costs many times the effort of a good one, which shows
as support load and escalations relative to its size."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, Unit

NAME = "mutual_value"

INDICATORS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec("support_load", "Tickets per 10 seats (90d)", Unit.NUMBER),
    IndicatorSpec("escalations", "High/urgent tickets (90d)", Unit.COUNT),
)


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in INDICATORS order; None where the inputs are missing."""
    tickets, seats = facts.tickets_90d, facts.seats
    support_load = None
    if tickets is not None and seats is not None and seats > 0:
        support_load = tickets / seats * 10.0
    return support_load, facts.escalations_90d
