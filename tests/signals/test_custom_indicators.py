"""Custom indicators and signals: data in the configuration, validated with the field named,
scored and explained like the built-in ones, within the same bounds and directions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from signals.config import HealthConfig, ProductEventsSource, error_path
from signals.model import AccountFacts, Band
from signals.scoring import score

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def events(*features: str, aggregation: str = "users_per_seat", days: int = 30) -> dict[str, Any]:
    return {"kind": "product_events", "features": list(features), "aggregation": aggregation,
            "days": days}  # fmt: skip


EXPORTS: dict[str, Any] = {
    "name": "exports_per_seat",
    "label": "Report exports per seat (30d)",
    "signal": "active_use",
    "source": events("Report Exported", aggregation="events_per_seat"),
    "at_risk": 0.5,
    "healthy": 2,
}


def config(**document: Any) -> HealthConfig:
    return HealthConfig.model_validate(document)


def errors(**document: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        HealthConfig.model_validate(document)
    found = []
    for error in caught.value.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            found.append(error_path(error["loc"]) + ": " + message)
        else:  # a check of the whole document: already "path: message; ..."
            found.extend(message.split("; "))
    return found


def facts(custom: Mapping[str, float | None], **values: Any) -> AccountFacts:
    return AccountFacts(account_id="a", as_of=NOW, custom=custom, **values)


KEY = ProductEventsSource.model_validate(EXPORTS["source"]).key
# An account whose built-in active use is perfect: only the custom indicator can cost points.
PERFECT = {"seats": 10, "active_users_30d": 10, "active_users_prev_30d": 10,
           "mean_daily_active_users_30d": 5.0, "last_usage_at": NOW}  # fmt: skip
ACTIVE_USE_ONLY = {"collaboration": {"weight": 0}, "mutual_value": {"weight": 0},
                   "momentum": {"weight": 0}}  # fmt: skip


# --- validation ----------------------------------------------------------------------------------


def test_a_custom_indicator_names_a_signal_that_exists() -> None:
    assert errors(custom_indicators=[{**EXPORTS, "signal": "happiness"}]) == [
        "custom_indicators.0.signal: 'happiness' is not one of active_use, collaboration, "
        "mutual_value, momentum"
    ]


def test_a_custom_indicator_may_not_take_a_built_in_indicators_name() -> None:
    assert errors(custom_indicators=[{**EXPORTS, "name": "stickiness"}]) == [
        "custom_indicators.0.name: active_use already has an indicator 'stickiness' (pick another)"
    ]
    assert errors(custom_indicators=[EXPORTS, EXPORTS]) == [
        "custom_indicators.1.name: active_use already has an indicator 'exports_per_seat' "
        "(pick another)"
    ]


def test_a_custom_signal_needs_a_weighed_indicator_and_a_free_name() -> None:
    assert errors(custom_signals=[{"name": "adoption", "label": "Adoption", "weight": 0.2}]) == [
        "custom_signals.0: adoption needs a custom indicator with a weight above 0 (or a "
        "weight of 0 itself)"
    ]
    assert errors(
        custom_signals=[{"name": "momentum", "label": "Mine", "weight": 0.2}],
        custom_indicators=[{**EXPORTS, "signal": "momentum"}],
    ) == ["custom_signals.0.name: 'momentum' is taken (pick another)"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"at_risk": 2}, "custom_indicators.0: healthy: must differ from at_risk"),
        ({"name": "Exports"}, "custom_indicators.0.name: String should match pattern"),
        ({"source": events(aggregation="users")}, "custom_indicators.0.source.features: Tuple "
         "should have at least 1 item"),
        ({"source": events("x", aggregation="share_of_active_users", days=90)},
         "custom_indicators.0.source.days: share_of_active_users compares with the 30-day "
         "active users, not 90"),
        ({"source": events("x", aggregation="sum")},
         "custom_indicators.0.source.aggregation: Input should be 'events', 'users'"),
        ({"source": events("x", days=400)},
         "custom_indicators.0.source.days: Input should be less than or equal to 180"),
        ({"weight": -1}, "custom_indicators.0.weight: Input should be greater than or equal"),
    ],
)  # fmt: skip
def test_bad_custom_indicators_are_refused_naming_the_field(
    change: dict[str, Any], expected: str
) -> None:
    [problem] = errors(custom_indicators=[{**EXPORTS, **change}])
    assert problem.startswith(expected), problem


def test_a_survey_source_is_checked_and_keyed_by_what_it_reads() -> None:
    answers: dict[str, Any] = {"kind": "survey", "survey": "ces", "aggregation": "mean"}
    effort = {**EXPORTS, "name": "effort", "label": "Customer effort (90d)", "source": answers,
              "at_risk": 5, "healthy": 2}  # fmt: skip
    [read] = config(custom_indicators=[effort]).fact_reads.sources
    assert read.key == "survey|ces|mean|90|3"
    as_nps = {**effort, "source": {**answers, "aggregation": "nps"}}
    [problem] = errors(custom_indicators=[as_nps])
    assert problem == "custom_indicators.0.source.aggregation: nps is for NPS answers, not ces"
    [problem] = errors(custom_indicators=[{**effort, "source": {"kind": "poll"}}])
    assert problem.startswith("custom_indicators.0.source: Input tag 'poll' found using 'kind'")


def test_an_alert_rule_may_watch_a_custom_indicator_that_exists() -> None:
    rule = {"name": "few-exports", "when": "indicator_at_risk",
            "indicator": "active_use.exports_per_seat"}  # fmt: skip
    watched = config(custom_indicators=[EXPORTS], alerts=[rule])
    assert watched.alerts[0].indicator == "active_use.exports_per_seat"
    [problem] = errors(alerts=[rule])
    assert problem.startswith(
        "alerts.0.indicator: 'active_use.exports_per_seat' is not one of active_use.depth_trend"
    ), problem
    [problem] = errors(alerts=[{**rule, "indicator": None}])
    assert problem.endswith("indicator: an indicator_at_risk rule names its indicator"), problem


def test_equal_sources_are_read_once_whatever_the_case_and_order_of_features() -> None:
    other = {**EXPORTS, "name": "exports_again",
             "source": events(" report exported", aggregation="events_per_seat")}  # fmt: skip
    reads = config(custom_indicators=[EXPORTS, other], product={"key_features": ["Export"]})
    assert [source.key for source in reads.fact_reads.sources] == [KEY]
    assert reads.fact_reads.key_features == ("export",)
    assert KEY == "product_events|events_per_seat|30|report exported"


# --- scoring -------------------------------------------------------------------------------------


def test_a_custom_indicator_counts_in_its_signal_and_explains_itself() -> None:
    document = config(signals=ACTIVE_USE_ONLY, custom_indicators=[EXPORTS])
    low = score(facts({KEY: 0.2}, **PERFECT), document)
    # Seven built-in active use indicators (three optional without data) and the export one:
    # four at 100 and one at 0, all of weight 1.
    assert low.signals["active_use"] == pytest.approx(80.0)
    assert low.score == 80
    assert low.drivers == ("Report exports per seat (30d) 0.2 (at-risk <= 0.5)",)
    [custom] = [i for i in low.indicators if i.name == "exports_per_seat"]
    assert (custom.signal, custom.raw, custom.score) == ("active_use", 0.2, 0.0)
    assert "active_use.exports_per_seat" in low.coverage.indicators
    high = score(facts({KEY: 3.0}, **PERFECT), document)
    assert high.score == 100


def test_a_custom_indicator_without_data_is_missing_evidence_unless_optional() -> None:
    strict = config(signals=ACTIVE_USE_ONLY, custom_indicators=[EXPORTS])
    assert score(facts({}, **PERFECT), strict).coverage.ratio == pytest.approx(4 / 5)
    optional = config(signals=ACTIVE_USE_ONLY, custom_indicators=[{**EXPORTS, "optional": True}])
    assert score(facts({KEY: None}, **PERFECT), optional).coverage.ratio == 1.0


def test_a_custom_signal_has_its_own_weight_in_the_composite() -> None:
    document = config(
        signals=ACTIVE_USE_ONLY,
        custom_signals=[{"name": "adoption", "label": "Adoption", "weight": 0.4}],
        custom_indicators=[{**EXPORTS, "signal": "adoption"}],
    )
    health = score(facts({KEY: 0.5}, **PERFECT), document)
    assert health.signals["adoption"] == 0.0
    assert health.signals["active_use"] == 100.0
    # active_use weighs 0.4 and adoption 0.4: the mean of 100 and 0.
    assert health.score == 50
    assert health.band is Band.NEUTRAL
    silent = score(facts({}, **PERFECT), document)
    assert silent.signals["adoption"] is None
    assert silent.score == 100  # the signals with data renormalise
    assert silent.coverage.ratio == pytest.approx(0.5)


def test_without_custom_indicators_a_custom_key_in_the_facts_changes_nothing() -> None:
    plain = HealthConfig()
    assert (
        score(facts({KEY: 0.0}, **PERFECT), plain).score == score(facts({}, **PERFECT), plain).score
    )


# --- properties with ten custom indicators -------------------------------------------------------

TEN = config(
    custom_signals=[{"name": "adoption", "label": "Adoption", "weight": 0.3}],
    custom_indicators=[
        {
            "name": f"custom_{n}",
            "label": f"Custom {n}",
            "signal": ("active_use", "collaboration", "adoption")[n % 3],
            "source": events(f"feature {n}", aggregation="events"),
            # Half of them "lower is better".
            "at_risk": 10.0 if n % 2 else 0.0,
            "healthy": 0.0 if n % 2 else 10.0,
            "weight": 1 + n % 4,
        }
        for n in range(10)
    ],
)
TEN_KEYS = [indicator.source.key for indicator in TEN.custom_indicators]
values = st.none() | st.floats(min_value=0, max_value=50)


@st.composite
def custom_facts(draw: st.DrawFn) -> AccountFacts:
    return facts(
        {key: draw(values) for key in TEN_KEYS},
        seats=draw(st.none() | st.integers(min_value=0, max_value=100)),
        active_users_30d=draw(st.none() | st.integers(min_value=0, max_value=100)),
        tickets_90d=draw(st.none() | st.integers(min_value=0, max_value=50)),
    )


@settings(max_examples=300)
@given(custom_facts())
def test_scores_with_custom_indicators_stay_within_0_and_100(account: AccountFacts) -> None:
    health = score(account, TEN)
    if health.score is None:
        return
    assert 0 <= health.score <= 100
    for value in health.signals.values():
        assert value is None or 0.0 <= value <= 100.0
    assert 0.0 < health.coverage.ratio <= 1.0


@settings(max_examples=300)
@given(custom_facts(), st.integers(min_value=0, max_value=9), st.floats(min_value=0, max_value=20))
def test_moving_a_custom_value_toward_healthy_never_lowers_the_score(
    account: AccountFacts, which: int, amount: float
) -> None:
    key, indicator = TEN_KEYS[which], TEN.custom_indicators[which]
    value = account.custom[key]
    if value is None:
        return
    step = amount if indicator.healthy > indicator.at_risk else -amount
    better = replace(account, custom={**account.custom, key: max(0.0, value + step)})
    before, after = score(account, TEN), score(better, TEN)
    if before.score is None:
        return
    assert after.score is not None
    assert after.score >= before.score
