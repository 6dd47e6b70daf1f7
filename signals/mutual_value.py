"""Mutual value: a poorly sold account costs many times the effort of a good one, which shows
as support load and escalations relative to its size; and value runs both ways, which the
customer says in their own words when asked (NPS, CSAT: see signals.voice)."""

from __future__ import annotations

from signals.model import AccountFacts, IndicatorSpec, SignalSpec, Unit


def measure(facts: AccountFacts) -> tuple[float | None, ...]:
    """Raw values in SIGNAL.indicators order; None where the inputs are missing."""
    tickets, seats = facts.tickets_90d, facts.seats
    support_load = None
    if tickets is not None and seats is not None and seats > 0:
        support_load = tickets / seats * 10.0
    return (
        support_load,
        facts.escalations_90d,
        facts.nps_90d,
        facts.nps_latest,
        facts.csat_90d,
        facts.csat_latest,
    )


SIGNAL = SignalSpec(
    name="mutual_value",
    label="Mutual value",
    # The CRM fields' descriptions are made of it, word for word: it stays as provisioned.
    description="support load and escalations per seat",
    question="is the account worth its effort on both sides?",
    evidence="support tickets with seats",
    weight=0.15,
    indicators=(
        IndicatorSpec(
            "support_load",
            "Tickets per 10 seats (90d)",
            Unit.NUMBER,
            explanation="Support tickets opened in the last 90 days per 10 paid seats; lower is "
            "better.",
            at_risk=5,
            healthy=1,
        ),
        IndicatorSpec(
            "escalations",
            "High/urgent tickets (90d)",
            Unit.COUNT,
            explanation="Tickets of high or urgent priority opened in the last 90 days; lower is "
            "better.",
            at_risk=3,
            healthy=0,
        ),
        # More detractors than promoters is a warning; 30 is a good B2B NPS.
        IndicatorSpec(
            "nps",
            "NPS (90d)",
            Unit.NUMBER,
            explanation="Net Promoter Score of the last 90 days' answers (% promoters minus % "
            "detractors, -100 to 100; at least 3 answers); higher is better.",
            at_risk=0,
            healthy=30,
            optional=True,
        ),
        # A detractor's answer (6 or less) against a promoter's (9 or more); one person's
        # word, so half the weight of the account's NPS.
        IndicatorSpec(
            "nps_latest",
            "Latest NPS answer",
            Unit.NUMBER,
            explanation="The latest answer (0 to 10) to the NPS survey in the last 180 days; "
            "higher is better.",
            at_risk=6,
            healthy=9,
            weight=0.5,
            optional=True,
        ),
        # 3 of 5 is "neutral"; 4.3 is where satisfied customers' means sit.
        IndicatorSpec(
            "csat",
            "CSAT (90d mean)",
            Unit.NUMBER,
            explanation="Mean satisfaction answer (1 to 5) of the last 90 days, with at least 3 "
            "answers; higher is better.",
            at_risk=3,
            healthy=4.3,
            optional=True,
        ),
        IndicatorSpec(
            "csat_latest",
            "Latest CSAT answer",
            Unit.NUMBER,
            explanation="The latest satisfaction answer (1 to 5) in the last 180 days; higher is "
            "better.",
            at_risk=2,
            healthy=4,
            weight=0.5,
            optional=True,
        ),
    ),
    measure=measure,
)
