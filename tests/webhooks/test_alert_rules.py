"""Alert conditions (webhooks.alerts.rules): pure, one account state in, conditions out."""

from __future__ import annotations

from datetime import date

import pytest

from signals.config import AlertRule
from signals.model import Band, Coverage, Explanation, Health, IndicatorResult
from webhooks.alerts.rules import AccountState, attribute_value, conditions, parse_renewal_date

TODAY = date(2026, 11, 23)


def health(
    score: int | None = 35,
    band: Band = Band.AT_RISK,
    *,
    indicators: tuple[IndicatorResult, ...] = (),
    segment: str | None = None,
) -> Health:
    explanation = Explanation(indicators=indicators, drivers=(), coverage=Coverage(ratio=1.0))
    return Health(score=score, band=band, signals={}, segment=segment, explain=lambda: explanation)


def state(
    verdict: Health | None = None,
    *,
    previous_score: int | None = 55,
    previous_band: str | None = "neutral",
    scores_before: dict[int, int | None] | None = None,
    renewal_date: date | None = None,
    segment: str | None = None,
) -> AccountState:
    return AccountState(
        name="Acme",
        health=verdict or health(),
        previous_score=previous_score,
        previous_band=previous_band,
        scores_before=scores_before or {},
        renewal_date=renewal_date,
        segment=segment,
    )


def fired(rule: AlertRule, account: AccountState) -> list[str]:
    return [condition.key for condition in conditions([rule], account, today=TODAY)]


AT_RISK = AlertRule(name="at-risk", when="band_entered", band="at_risk")
NEUTRAL = AlertRule(name="neutral", when="band_entered", band="neutral")
DROP = AlertRule(name="drop", when="score_drop", points=15, days=30)
CO_INNOVATION = AlertRule(
    name="co-innovation", when="indicator_at_risk", indicator="collaboration.co_innovation"
)
RENEWAL = AlertRule(name="renewal", when="renewal_near", days=60)
RENEWAL_AT_RISK = AlertRule(name="renewal", when="renewal_near", days=60, bands=("at_risk",))


def co_innovation(score: float) -> IndicatorResult:
    return IndicatorResult("collaboration", "co_innovation", 0.0, score, 0.1)


@pytest.mark.parametrize(
    ("rule", "account", "keys"),
    [
        (AT_RISK, state(health(35, Band.AT_RISK)), ["at_risk"]),
        (AT_RISK, state(health(50, Band.NEUTRAL)), []),
        (AT_RISK, state(health(None, Band.UNKNOWN)), []),
        (NEUTRAL, state(health(50, Band.NEUTRAL)), ["neutral"]),
        (NEUTRAL, state(health(35, Band.AT_RISK)), []),
        (DROP, state(health(40, Band.NEUTRAL), scores_before={30: 60}), ["drop-30d"]),
        (DROP, state(health(40, Band.NEUTRAL), scores_before={30: 55}), ["drop-30d"]),
        (DROP, state(health(41, Band.NEUTRAL), scores_before={30: 55}), []),
        (DROP, state(health(40, Band.NEUTRAL), scores_before={30: None}), []),
        (DROP, state(health(40, Band.NEUTRAL), scores_before={60: 90}), []),
        (DROP, state(health(None, Band.UNKNOWN), scores_before={30: 90}), []),
        (
            CO_INNOVATION,
            state(health(indicators=(co_innovation(0.0),))),
            ["collaboration.co_innovation"],
        ),
        (CO_INNOVATION, state(health(indicators=(co_innovation(10.0),))), []),
        (
            RENEWAL,
            state(health(35, Band.AT_RISK), renewal_date=date(2027, 1, 1)),
            ["renewal-2027-01-01"],
        ),
        (RENEWAL, state(health(50, Band.NEUTRAL), renewal_date=TODAY), [f"renewal-{TODAY}"]),
        (
            RENEWAL,
            state(health(50, Band.NEUTRAL), renewal_date=date(2027, 1, 22)),
            ["renewal-2027-01-22"],
        ),
        (RENEWAL, state(health(50, Band.NEUTRAL), renewal_date=date(2027, 1, 23)), []),
        (RENEWAL, state(health(50, Band.NEUTRAL), renewal_date=date(2026, 11, 22)), []),
        (RENEWAL, state(health(80, Band.HEALTHY), renewal_date=date(2027, 1, 1)), []),
        (RENEWAL, state(health(None, Band.UNKNOWN), renewal_date=date(2027, 1, 1)), []),
        # The shipped default raises a near renewal only for an account at risk.
        (RENEWAL_AT_RISK, state(health(50, Band.NEUTRAL), renewal_date=date(2027, 1, 1)), []),
        (
            RENEWAL_AT_RISK,
            state(health(35, Band.AT_RISK), renewal_date=date(2027, 1, 1)),
            ["renewal-2027-01-01"],
        ),
        (RENEWAL, state(health(35, Band.AT_RISK)), []),
    ],
)
def test_each_rule_kind_fires_exactly_when_its_condition_holds(rule, account, keys) -> None:
    assert fired(rule, account) == keys


def test_an_indicator_without_data_raises_no_alert() -> None:
    # Not measured is not at risk: the indicator is absent from the health's indicators.
    assert fired(CO_INNOVATION, state(health(indicators=()))) == []
    other = IndicatorResult("collaboration", "two_way_ratio", 0.0, 0.0, 0.1)
    assert fired(CO_INNOVATION, state(health(indicators=(other,)))) == []


def test_a_disabled_rule_never_fires() -> None:
    disabled = AT_RISK.model_copy(update={"enabled": False})
    assert fired(disabled, state(health(10, Band.AT_RISK))) == []


@pytest.mark.parametrize(
    ("segment_override", "segment_attribute", "fires"),
    [
        ("enterprise", None, True),
        (None, "enterprise", True),
        ("smb", "smb", False),
        (None, None, False),
    ],
)
def test_segments_limit_a_rule_to_matching_accounts(
    segment_override, segment_attribute, fires
) -> None:
    rule = AT_RISK.model_copy(update={"segments": ("enterprise",)})
    account = state(health(35, Band.AT_RISK, segment=segment_override), segment=segment_attribute)
    assert bool(fired(rule, account)) is fires


def test_a_band_alert_says_where_the_account_came_from() -> None:
    [condition] = conditions([AT_RISK], state(health(35, Band.AT_RISK)), today=TODAY)
    assert condition.title == "Acme is at risk"
    assert condition.reason == "band neutral -> at risk, score 55 -> 35"


def test_a_first_scoring_has_no_previous_band_in_its_reason() -> None:
    account = state(health(35, Band.AT_RISK), previous_score=None, previous_band=None)
    [condition] = conditions([AT_RISK], account, today=TODAY)
    assert condition.reason == "band at risk, score 35"


def test_score_drop_reason_names_the_scores_and_the_window() -> None:
    account = state(health(40, Band.NEUTRAL), scores_before={30: 70})
    [condition] = conditions([DROP], account, today=TODAY)
    assert condition.title == "Acme: health fell 30 points"
    assert "from 70 to 40 within 30 days" in condition.reason


def test_several_rules_each_report_their_own_condition() -> None:
    account = state(
        health(30, Band.AT_RISK, indicators=(co_innovation(0.0),)),
        scores_before={30: 80},
        renewal_date=date(2026, 12, 1),
    )
    found = conditions([AT_RISK, DROP, CO_INNOVATION, RENEWAL], account, today=TODAY)
    assert [c.rule.name for c in found] == ["at-risk", "drop", "co-innovation", "renewal"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-03-31", date(2027, 3, 31)),
        (" 2027-03-31 ", date(2027, 3, 31)),
        ("2027-03-31T00:00:00Z", date(2027, 3, 31)),
        ("2027-03-31T12:30:00+02:00", date(2027, 3, 31)),
        ("1806451200000", date(2027, 3, 31)),  # HubSpot date property: epoch ms, UTC midnight
        ("1806537599999", date(2027, 3, 31)),
        ("31/03/2027", None),
        ("soon", None),
        ("", None),
        (None, None),
        (1806451200000, None),
    ],
)
def test_renewal_dates_are_read_as_crms_hold_them(value, expected) -> None:
    assert parse_renewal_date(value) == expected


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"owner": {"value": "42", "at": "2026-11-01T00:00:00+00:00"}}, "42"),
        ({"owner": {"value": "", "at": "2026-11-01T00:00:00+00:00"}}, None),
        ({"owner": {"value": None, "at": "2026-11-01T00:00:00+00:00"}}, None),
        ({}, None),
        (None, None),
    ],
)
def test_attribute_values_are_read_from_the_stored_shape(attributes, expected) -> None:
    assert attribute_value(attributes, "owner") == expected


def test_bands_are_only_for_renewal_rules() -> None:
    with pytest.raises(ValueError, match="bands: only for renewal_near rules"):
        AlertRule(name="x", when="band_entered", bands=("at_risk",))
