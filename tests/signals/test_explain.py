"""The account page's arithmetic: each indicator's points, why a score moved (parts that add up
to the change exactly), the texts that say it, and the catalog of labels and explanations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signals.catalog import catalog
from signals.config import Bands, HealthConfig
from signals.explain import (
    breakdown,
    change_text,
    composite,
    day_text,
    movement,
    points_text,
    rounded,
)
from signals.indicators import value_text
from signals.model import AccountFacts, Band, IndicatorSpec, Rating, Sentiment, Unit
from signals.registry import SIGNALS
from signals.scoring import SENTIMENT_SPEC, score

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
ANY_COVERAGE = HealthConfig(bands=Bands(min_coverage=0))
MINUS = "\N{MINUS SIGN}"

STEADY = {
    "seats": 20, "customer_interactions_90d": 3, "total_interactions_90d": 10,
    "collaboration_events_180d": 2, "contacts_engaged_90d": 3, "executives_engaged_90d": 1,
    "tickets_90d": 2, "escalations_90d": 0,
}  # fmt: skip
IN_USE = {"active_users_30d": 12, "active_users_prev_30d": 12, "mean_daily_active_users_30d": 3}
STOPPED = {"active_users_30d": 2, "active_users_prev_30d": 16, "mean_daily_active_users_30d": 0.1}
# Seats well used and used yesterday, while trend and stickiness were low already.
FADING = {"active_users_30d": 16, "active_users_prev_30d": 20, "mean_daily_active_users_30d": 1.0}


def at(moment: datetime, **values: Any) -> AccountFacts:
    return AccountFacts(account_id="a", as_of=moment, **values)


def used(moment: datetime, days_ago: float, usage: dict[str, Any]) -> AccountFacts:
    return at(moment, last_usage_at=moment - timedelta(days=days_ago), **STEADY, **usage)


# --- texts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "value", "text"),
    [
        (Unit.PERCENT, 0.62, "62%"),
        (Unit.PERCENT, 0.114, "11%"),
        (Unit.CHANGE, 0.05, "+5%"),
        (Unit.CHANGE, -0.3, "-30%"),
        (Unit.DAYS, 25.2, "25 days"),
        (Unit.DAYS, 1.0, "1 day"),
        (Unit.DAYS, 0.2, "0 days"),
        (Unit.COUNT, 3.0, "3"),
        (Unit.NUMBER, 4.3, "4.3"),
        (Unit.NUMBER, 12.46, "12.5"),
    ],
)
def test_values_read_as_their_unit_says(unit: Unit, value: float, text: str) -> None:
    assert value_text(unit, value) == text


@pytest.mark.parametrize(
    ("before", "after", "text"),
    [
        (0.62, 0.11, "Seat utilization fell from 62% to 11%"),
        (0.11, 0.62, "Seat utilization rose from 11% to 62%"),
        (0.621, 0.624, "Seat utilization held at 62%"),
        (None, 0.4, "Seat utilization has data now (40%, none before): its share of the score "
                    "came from the other indicators"),
        (0.4, None, "Seat utilization has no data now (was 40%): its share of the score went "
                    "to the other indicators"),
    ],
)  # fmt: skip
def test_an_indicator_move_says_which_way_in_words(
    before: float | None, after: float | None, text: str
) -> None:
    assert change_text("Seat utilization", Unit.PERCENT, before, after) == text


def test_days_rise_and_a_moved_share_is_said_with_its_cause() -> None:
    assert change_text("Days since last use", Unit.DAYS, 2, 25) == (
        "Days since last use rose from 2 days to 25 days"
    )
    assert change_text("Recency", Unit.DAYS, 2, 2, share_before=0.2, share_after=0.25) == (
        "Recency held at 2 days; its share of the score went from 20% to 25% as other "
        "indicators gained or lost data"
    )


@pytest.mark.parametrize(
    ("points", "text"),
    [
        (-12.3, f"{MINUS}12 points"),
        (3.4, "+3 points"),
        (1.2, "+1 point"),
        (-0.4, f"{MINUS}0.4 points"),
        (0.01, "0 points"),
    ],
)
def test_points_read_as_whole_points_with_a_true_minus(points: float, text: str) -> None:
    assert points_text(points) == text


def test_days_read_as_day_month_year() -> None:
    assert day_text(START) == "1 Oct 2026"


# --- the catalog and one account's indicators ---------------------------------------------------


def test_every_built_in_indicator_explains_itself_and_which_way_is_good() -> None:
    for signal in SIGNALS:
        for spec in signal.indicators:
            assert spec.explanation.endswith("."), spec.name
            assert "\n" not in spec.explanation, spec.name
            assert "higher is better" in spec.explanation or "lower is better" in (
                spec.explanation
            ), spec.name
            lower = spec.healthy < spec.at_risk
            assert ("lower is better" in spec.explanation) == lower, spec.name


def test_the_signal_docs_give_every_indicators_unit_and_explanation() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "signals.md").read_text()
    for signal in SIGNALS:
        for spec in (*signal.indicators, SENTIMENT_SPEC):
            row = f"| {spec.label} | `{spec.unit.value}` | {spec.explanation} |"
            assert row in docs, row


def test_an_indicator_cannot_be_declared_without_an_explanation() -> None:
    with pytest.raises(TypeError, match="explanation"):
        IndicatorSpec("share", "Share", Unit.PERCENT, at_risk=0, healthy=1)  # type: ignore[call-arg]


CUSTOM = HealthConfig.model_validate(
    {
        "custom_signals": [{"name": "adoption", "label": "Adoption", "weight": 0.2}],
        "custom_indicators": [
            {"name": "exporters", "label": "People exporting", "signal": "adoption",
             "source": {"kind": "product_events", "features": ["Report Exported"],
                        "aggregation": "users"}, "at_risk": 0, "healthy": 5},
            {"name": "sharers", "label": "Sharers", "signal": "adoption",
             "source": {"kind": "product_events", "features": ["Shared", "Sent", "Posted", "Liked"],
                        "aggregation": "share_of_active_users"}, "at_risk": 0.1, "healthy": 0.4},
            {"name": "effort", "label": "Effort", "signal": "mutual_value",
             "source": {"kind": "survey", "survey": "ces", "aggregation": "mean"},
             "at_risk": 5, "healthy": 2},
            {"name": "review", "label": "Days since review", "signal": "collaboration",
             "source": {"kind": "crm_property", "hubspot": "last_qbr", "salesforce": "QBR__c",
                        "value": "days_since"}, "at_risk": 120, "healthy": 45},
        ],
    }
)  # fmt: skip


def test_the_catalog_lists_custom_signals_and_indicators_with_units_and_explanations() -> None:
    signals = {signal.name: signal for signal in catalog(CUSTOM)}
    assert list(signals) == ["active_use", "collaboration", "mutual_value", "momentum", "adoption"]
    adoption = signals["adoption"]
    assert (adoption.custom, adoption.label, adoption.weight) == (True, "Adoption", 0.2)
    exporters, sharers = adoption.indicators
    assert (exporters.spec.unit, exporters.custom) == (Unit.COUNT, True)
    assert exporters.spec.explanation == (
        "People who used Report Exported in the last 30 days; higher is better."
    )
    assert sharers.spec.unit is Unit.PERCENT
    assert sharers.spec.explanation == (
        "Share of the active people who used Shared, Sent, Posted and 1 more in the last 30 "
        "days; higher is better."
    )
    effort = signals["mutual_value"].indicators[-1]
    assert (effort.name, effort.spec.unit) == ("effort", Unit.NUMBER)
    assert effort.spec.explanation == (
        "Mean CES answer in the last 90 days (at least 3 answers); lower is better."
    )
    review = next(i for i in signals["collaboration"].indicators if i.name == "review")
    assert review.spec.unit is Unit.DAYS
    assert review.spec.explanation == (
        "Days since the date in the CRM field last_qbr (HubSpot) and QBR__c (Salesforce); "
        "lower is better."
    )
    # The CSM sentiment counts as an indicator of its signal by default.
    assert signals["collaboration"].indicators[-1].name == "csm_sentiment"


def test_points_of_the_indicators_add_up_to_the_composite_and_no_data_comes_last() -> None:
    facts = used(END, 2, IN_USE)
    health = score(facts, HealthConfig())
    table = dict(breakdown(health, HealthConfig()))
    lines = [line for signal_lines in table.values() for line in signal_lines]
    assert sum(line.points for line in lines) == pytest.approx(composite(health.indicators))
    assert round(sum(line.points for line in lines)) == health.score
    momentum = next(lines for signal, lines in table.items() if signal.name == "momentum")
    (arr,) = momentum
    assert (arr.raw, arr.score, arr.share, arr.points) == (None, None, 0.0, 0.0)
    active = next(lines for signal, lines in table.items() if signal.name == "active_use")
    # usage_depth weighs 0 by default: not listed; the optional ones without data last.
    assert [line.entry.name for line in active] == [
        "seat_utilization", "usage_trend", "stickiness", "recency_days", "depth_trend",
        "key_feature_adoption",
    ]  # fmt: skip
    assert [line.raw is None for line in active][-2:] == [True, True]


def test_the_thresholds_shown_are_those_of_the_accounts_segment() -> None:
    config = HealthConfig.model_validate(
        {
            "segments": [
                {
                    "name": "big",
                    "match": {"tier": "enterprise"},
                    "changes": {"signals": {"active_use": {"indicators": {
                        "seat_utilization": {"at_risk": 0.5, "healthy": 0.9}}}}},
                }
            ]
        }
    )  # fmt: skip
    facts = replace(used(END, 2, IN_USE), attributes={"tier": "Enterprise"})
    table = dict(breakdown(score(facts, config), config))
    active = next(lines for signal, lines in table.items() if signal.name == "active_use")
    assert (active[0].entry.at_risk, active[0].entry.healthy) == (0.5, 0.9)


# --- why it moved -------------------------------------------------------------------------------


def test_usage_that_stops_shows_seat_use_and_recency_as_the_main_parts() -> None:
    found = movement(
        start=used(START, 1, FADING),
        end=used(END, 25, STOPPED),
        start_config=HealthConfig(),
        end_config=HealthConfig(),
    )
    assert found.change is not None
    assert found.change < -20
    assert not found.configuration_changed
    assert found.configuration_points == 0.0
    names = [part.name for part in found.indicators]
    assert names == ["seat_utilization", "recency_days", "usage_trend", "stickiness"]
    assert all(part.points < 0 for part in found.indicators)
    seats = next(part for part in found.indicators if part.name == "seat_utilization")
    assert seats.text == "Seat utilization fell from 80% to 10%"
    assert (seats.before, seats.after) == (0.8, 0.1)
    assert found.summary.startswith(
        f"The score fell {-found.change} points, from {found.start.score} (Healthy) to "
        f"{found.end.score} (Neutral), between 1 Oct 2026 and 1 Nov 2026. Most of it: "
    )
    assert found.summary.endswith(
        f"Most of it: Seat utilization fell from 80% to 10% ({MINUS}11 points); Days since last "
        f"use rose from 1 day to 25 days ({MINUS}11 points); Active users vs prior 30d fell from "
        f"-20% to -88% ({MINUS}2 points)."
    )
    assert found.other_text in (None, "Rounding each score to whole points.")


def test_a_configuration_change_is_a_part_of_its_own_and_the_rest_still_adds_up() -> None:
    stricter = HealthConfig.model_validate(
        {"signals": {"active_use": {"indicators": {"recency_days": {"at_risk": 30, "healthy": 1}}}}}
    )
    start, end = used(START, 1, IN_USE), used(END, 10, IN_USE)
    found = movement(start=start, end=end, start_config=HealthConfig(), end_config=stricter)
    assert found.configuration_changed
    expected = composite(score(end, stricter).indicators) - composite(
        score(end, HealthConfig()).indicators
    )
    assert found.configuration_points == pytest.approx(expected)
    assert found.configuration_points != 0
    assert found.change is not None
    assert found.other_points is not None
    total = found.configuration_points + sum(s.points for s in found.signals) + found.other_points
    assert total == pytest.approx(found.change, abs=1e-9)
    # The indicators' split is under the start's configuration: recency 1 -> 10 days there.
    (recency,) = found.indicators
    assert recency.name == "recency_days"
    assert recency.text == "Days since last use rose from 1 day to 10 days"
    assert found.change < 0 < found.configuration_points
    assert found.summary.endswith(
        "Most of it: Days since last use rose from 1 day to 10 days "
        f"({MINUS}{-round(recency.points)} points). The scoring configuration changed in between "
        f"(+{round(found.configuration_points)} points)."
    )


def test_a_score_that_held_names_the_moves_that_cancelled_out() -> None:
    start = used(START, 1, IN_USE)
    end = replace(start, as_of=END, last_usage_at=END - timedelta(days=1))
    found = movement(start=start, end=end, start_config=HealthConfig(), end_config=HealthConfig())
    assert found.change == 0
    assert found.indicators == ()
    assert found.summary == (
        f"The score held at {found.end.score} (Healthy) between 1 Oct 2026 and 1 Nov 2026."
    )


def test_without_a_score_at_one_end_there_is_no_change_to_split() -> None:
    found = movement(
        start=at(START), end=used(END, 2, IN_USE), start_config=HealthConfig(),
        end_config=HealthConfig(),
    )  # fmt: skip
    assert (found.change, found.other_points) == (None, None)
    assert found.start.band is Band.UNKNOWN
    assert found.summary.startswith(
        "The score cannot be compared between 1 Oct 2026 and 1 Nov 2026: it went from no score "
        "(Unknown) to "
    )
    assert "What moved: " in found.summary


def test_a_band_set_by_the_csm_is_said_in_the_other_text() -> None:
    capped = HealthConfig.model_validate({"sentiment": {"mode": "cap"}})
    red = Sentiment(
        rating=Rating.RED, reason="budget cut", author="A. Kim", until=END + timedelta(days=9)
    )
    end = replace(used(END, 1, IN_USE), sentiment=red)
    found = movement(start=used(START, 1, IN_USE), end=end, start_config=capped,
                     end_config=capped)  # fmt: skip
    assert found.end.band is Band.AT_RISK
    assert found.other_text is not None
    assert "the CSM's sentiment (red) set the band to At risk, not the score" in found.other_text


def test_rounded_parts_still_add_up_to_the_change() -> None:
    found = rounded(
        movement(
            start=used(START, 1, IN_USE), end=used(END, 25, STOPPED),
            start_config=HealthConfig(), end_config=HealthConfig(),
        )
    )  # fmt: skip
    assert found.change is not None
    assert found.other_points is not None
    total = found.configuration_points + sum(s.points for s in found.signals) + found.other_points
    assert total == pytest.approx(found.change, abs=1e-9)
    for points in [part.points for part in found.signals] + [p.points for p in found.indicators]:
        assert points == round(points, 1)


# --- properties ---------------------------------------------------------------------------------

counts = st.none() | st.integers(min_value=0, max_value=300)
ratios = st.floats(min_value=0, max_value=1)


@st.composite
def moment_facts(draw: st.DrawFn, moment: datetime) -> AccountFacts:
    monthly = draw(counts)
    total = draw(counts)
    days = draw(st.none() | st.floats(min_value=0, max_value=120))
    return at(
        moment,
        seats=draw(counts),
        active_users_30d=monthly,
        active_users_prev_30d=draw(counts),
        mean_daily_active_users_30d=None if monthly is None else monthly * draw(ratios),
        last_usage_at=None if days is None else moment - timedelta(days=days),
        total_interactions_90d=total,
        customer_interactions_90d=None if total is None else draw(st.integers(0, total)),
        collaboration_events_180d=draw(counts),
        contacts_engaged_90d=draw(counts),
        executives_engaged_90d=draw(counts),
        tickets_90d=draw(counts),
        escalations_90d=draw(counts),
        arr=draw(st.none() | st.floats(min_value=0, max_value=1e6)),
        arr_12m_ago=draw(st.none() | st.floats(min_value=0, max_value=1e6)),
        nps_90d=draw(st.none() | st.floats(min_value=-100, max_value=100)),
        csat_latest=draw(st.none() | st.integers(min_value=1, max_value=5).map(float)),
        attributes={"tier": draw(st.sampled_from(["smb", "enterprise"]))},
    )


@st.composite
def configs(draw: st.DrawFn) -> HealthConfig:
    """Random weights and thresholds for every built-in indicator, a random band edge and
    sometimes a segment override."""
    signals: dict[str, Any] = {}
    for signal in SIGNALS:
        indicators = {}
        for spec in signal.indicators:
            low = draw(st.floats(min_value=-50, max_value=50))
            gap = draw(st.floats(min_value=0.01, max_value=100))
            healthy, at_risk = (low + gap, low) if draw(st.booleans()) else (low, low + gap)
            weight = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
            indicators[spec.name] = {"at_risk": at_risk, "healthy": healthy, "weight": weight}
        if not any(i["weight"] for i in indicators.values()):
            indicators[signal.indicators[0].name]["weight"] = 1.0
        signals[signal.name] = {
            "weight": draw(st.sampled_from([0.0, 0.1, 0.35, 1.0])),
            "indicators": indicators,
        }
    if not any(s["weight"] for s in signals.values()):
        signals["active_use"]["weight"] = 1.0
    document: dict[str, Any] = {
        "signals": signals,
        "bands": {"min_coverage": draw(st.sampled_from([0.0, 0.5]))},
        "sentiment": {"mode": draw(st.sampled_from(["indicator", "cap"]))},
    }
    if draw(st.booleans()):
        document["segments"] = [
            {"name": "big", "match": {"tier": "enterprise"},
             "changes": {"signals": {"active_use": {"weight": 2}}}}
        ]  # fmt: skip
    return HealthConfig.model_validate(document)


@settings(max_examples=300, deadline=None)
@given(moment_facts(START), moment_facts(END), configs(), configs(), st.booleans())
def test_the_parts_add_up_to_the_change_exactly(
    start: AccountFacts,
    end: AccountFacts,
    first: HealthConfig,
    second: HealthConfig,
    same: bool,
) -> None:
    last = first if same else second
    found = movement(start=start, end=end, start_config=first, end_config=last)
    signals = sum(part.points for part in found.signals)
    # The indicators' parts are those of the start's configuration, between the two moments.
    middle = score(end, first)
    assert signals == pytest.approx(
        composite(middle.indicators) - composite(score(start, first).indicators), abs=1e-9
    )
    if same or first.scoring_version == last.scoring_version:
        assert found.configuration_points == 0.0
    if found.change is None:
        assert found.other_points is None
        return
    assert found.other_points is not None
    assert found.configuration_points + signals + found.other_points == pytest.approx(
        found.change, abs=1e-9
    )
    # What is left is rounding: each score is within half a point of its composite.
    assert abs(found.other_points) <= 1.0 + 1e-9
    shown = rounded(found)
    assert shown.other_points is not None
    assert shown.configuration_points + sum(
        part.points for part in shown.signals
    ) + shown.other_points == pytest.approx(found.change, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(moment_facts(END), configs())
def test_the_indicators_points_add_up_to_the_score(
    facts: AccountFacts, config: HealthConfig
) -> None:
    health = score(facts, config)
    points = sum(line.points for _, lines in breakdown(health, config) for line in lines)
    assert points == pytest.approx(composite(health.indicators), abs=1e-9)
    if health.score is not None:
        assert abs(points - health.score) <= 0.5 + 1e-9
