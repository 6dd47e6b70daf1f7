"""The composite score, bands with hysteresis, drivers, coverage, trend and segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signals.config import Bands, HealthConfig
from signals.model import AccountFacts, Band
from signals.scoring import band_for, score

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)

HEALTHY = {
    "seats": 50, "active_users_30d": 40, "active_users_prev_30d": 38,
    "mean_daily_active_users_30d": 12.0, "last_usage_at": NOW - timedelta(days=1),
    "customer_interactions_90d": 6, "total_interactions_90d": 12,
    "collaboration_events_180d": 3, "contacts_engaged_90d": 6, "executives_engaged_90d": 2,
    "tickets_90d": 2, "escalations_90d": 0, "arr": 120_000.0, "arr_12m_ago": 100_000.0,
}  # fmt: skip
AT_RISK = {
    "seats": 50, "active_users_30d": 10, "active_users_prev_30d": 30,
    "mean_daily_active_users_30d": 0.2, "last_usage_at": NOW - timedelta(days=30),
    "customer_interactions_90d": 0, "total_interactions_90d": 10,
    "collaboration_events_180d": 0, "contacts_engaged_90d": 1, "executives_engaged_90d": 0,
    "tickets_90d": 40, "escalations_90d": 5, "arr": 80_000.0, "arr_12m_ago": 100_000.0,
}  # fmt: skip


# The arithmetic of partly known accounts, without the minimum coverage a verdict needs.
ANY_COVERAGE = HealthConfig(bands=Bands(min_coverage=0))


def facts(**values: object) -> AccountFacts:
    return AccountFacts(account_id="a", as_of=NOW, **values)  # type: ignore[arg-type]


def test_account_with_every_indicator_healthy_scores_100_without_drivers() -> None:
    health = score(facts(**HEALTHY), HealthConfig())
    assert health.score == 100
    assert health.band is Band.HEALTHY
    assert health.signals == {
        "active_use": 100.0, "collaboration": 100.0, "mutual_value": 100.0, "momentum": 100.0
    }  # fmt: skip
    assert health.drivers == ()
    assert health.coverage.ratio == 1.0
    assert len(health.coverage.indicators) == 11


def test_account_with_every_indicator_at_risk_scores_0() -> None:
    health = score(facts(**AT_RISK), HealthConfig())
    assert (health.score, health.band) == (0, Band.AT_RISK)
    assert set(health.signals.values()) == {0.0}


def test_no_data_at_all_is_unknown_not_zero() -> None:
    health = score(facts(), HealthConfig())
    assert health.score is None
    assert health.band is Band.UNKNOWN
    assert health.signals == dict.fromkeys(health.signals)
    assert health.coverage.ratio == 0.0
    assert health.drivers == (
        "Not enough evidence (0% of the weight has data, 50% needed): no product usage, "
        "collaboration (interactions, contacts, co-innovation), support tickets with seats, "
        "ARR 12 months ago",
    )


def test_signal_is_the_weighted_mean_of_its_indicators() -> None:
    # seat_utilization 0.55 -> 50; recency 8.5 days -> 50; usage_trend -0.125 -> 50;
    # stickiness 0.125 -> 50: active_use 50 and nothing else known, so the composite is 50.
    health = score(
        facts(seats=100, active_users_30d=55, active_users_prev_30d=62.857142857142854,
              mean_daily_active_users_30d=6.875, last_usage_at=NOW - timedelta(days=8.5)),
        ANY_COVERAGE,
    )  # fmt: skip
    assert health.signals["active_use"] == pytest.approx(50.0)
    assert health.score == 50


def test_composite_renormalises_over_signals_with_data() -> None:
    # active_use healthy (100), mutual_value at risk (0): 0.40 / (0.40 + 0.15) of the way.
    values = {
        k: HEALTHY[k]
        for k in (
            "seats",
            "active_users_30d",
            "active_users_prev_30d",
            "mean_daily_active_users_30d",
            "last_usage_at",
        )
    }
    values.update(tickets_90d=40, escalations_90d=5)
    health = score(facts(**values), HealthConfig())
    assert health.score == round(100 * 0.40 / 0.55)
    assert health.signals["collaboration"] is None
    assert health.signals["momentum"] is None
    assert health.coverage.signals == ("active_use", "mutual_value")
    assert health.coverage.ratio == pytest.approx(0.55)


def test_missing_indicator_is_left_out_not_counted_as_zero() -> None:
    only_recency = score(facts(last_usage_at=NOW - timedelta(days=1)), ANY_COVERAGE)
    assert only_recency.score == 100
    assert only_recency.coverage.indicators == ("active_use.recency_days",)
    assert only_recency.coverage.ratio == pytest.approx(0.40 / 4)


def test_indicator_with_weight_zero_is_ignored() -> None:
    config = HealthConfig.model_validate(
        {"signals": {"active_use": {"indicators": {"recency_days": {
            "at_risk": 14, "healthy": 3, "weight": 0}}}}}
    )  # fmt: skip
    health = score(facts(last_usage_at=NOW - timedelta(days=30)), config)
    assert health.band is Band.UNKNOWN


def test_drivers_name_the_three_costliest_indicators_with_their_thresholds() -> None:
    values = dict(HEALTHY)
    values.update(active_users_30d=11, mean_daily_active_users_30d=3.3, executives_engaged_90d=0,
                  escalations_90d=2, active_users_prev_30d=11)  # fmt: skip
    health = score(facts(**values), HealthConfig())
    assert health.drivers == (
        "Seat utilization 22% (at-risk <= 40%)",
        "Executives engaged (90d) 0 (at-risk <= 0)",
        "High/urgent tickets (90d) 2 (healthy <= 0)",
    )
    costs = [i.cost for i in health.indicators]
    assert (
        sorted(costs, reverse=True)[:3]
        == sorted([i.cost for i in health.indicators if i.score < 100], reverse=True)[:3]
    )


def test_indicator_weights_in_the_composite_add_up_to_one() -> None:
    health = score(facts(**AT_RISK), HealthConfig())
    assert sum(i.weight for i in health.indicators) == pytest.approx(1.0)
    assert sum(i.cost for i in health.indicators) == pytest.approx(100.0)


def test_trend_is_the_change_from_the_score_30_days_ago() -> None:
    health = score(facts(**HEALTHY), HealthConfig(), score_30d_ago=82)
    assert health.trend_30d == 18
    assert score(facts(**HEALTHY), HealthConfig()).trend_30d is None


@pytest.mark.parametrize(
    ("value", "previous", "band"),
    [
        (None, None, Band.UNKNOWN),
        (0, None, Band.AT_RISK),
        (39, None, Band.AT_RISK),
        (40, None, Band.NEUTRAL),
        (69, None, Band.NEUTRAL),
        (70, None, Band.HEALTHY),
        # Up needs the cutoff plus 3 points...
        (41, Band.AT_RISK, Band.AT_RISK),
        (42, Band.AT_RISK, Band.AT_RISK),
        (43, Band.AT_RISK, Band.NEUTRAL),
        (72, Band.NEUTRAL, Band.NEUTRAL),
        (73, Band.NEUTRAL, Band.HEALTHY),
        (71, Band.AT_RISK, Band.NEUTRAL),
        (80, Band.AT_RISK, Band.HEALTHY),
        # ...down happens at the cutoff.
        (39, Band.NEUTRAL, Band.AT_RISK),
        (69, Band.HEALTHY, Band.NEUTRAL),
        (10, Band.HEALTHY, Band.AT_RISK),
        (50, Band.UNKNOWN, Band.NEUTRAL),
        (50, Band.NEUTRAL, Band.NEUTRAL),
    ],
)
def test_band_edges_and_hysteresis(value, previous, band) -> None:
    assert band_for(value, Bands(), previous) == band


def test_score_applies_hysteresis_from_the_previous_band() -> None:
    values = {"last_usage_at": NOW - timedelta(days=7.6)}  # recency score 58 -> neutral
    assert score(facts(**values), ANY_COVERAGE).band is Band.NEUTRAL
    assert score(facts(**values), ANY_COVERAGE, previous_band=Band.AT_RISK).band is Band.NEUTRAL
    values = {"last_usage_at": NOW - timedelta(days=9.7)}  # 39 -> at risk, even from healthy
    assert score(facts(**values), ANY_COVERAGE, previous_band=Band.HEALTHY).band is Band.AT_RISK
    values = {"last_usage_at": NOW - timedelta(days=9.2)}  # 44 from at-risk: clears 43
    assert score(facts(**values), ANY_COVERAGE, previous_band=Band.AT_RISK).band is Band.NEUTRAL
    values = {"last_usage_at": NOW - timedelta(days=9.45)}  # 41 from at-risk: stays
    assert score(facts(**values), ANY_COVERAGE, previous_band=Band.AT_RISK).band is Band.AT_RISK


SEGMENTED = HealthConfig.model_validate(
    {
        "bands": {"min_coverage": 0},
        "segments": [
            {"name": "enterprise", "match": {"tier": "enterprise"},
             "changes": {"bands": {"healthy_min": 90}}},
            {"name": "enterprise-emea", "match": {"tier": "enterprise", "region": "emea"},
             "changes": {"bands": {"healthy_min": 95}}},
            {"name": "also-enterprise", "match": {"tier": "Enterprise"},
             "changes": {"bands": {"healthy_min": 50}}},
        ]
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("attributes", "segment"),
    [
        ({}, None),
        ({"tier": "smb"}, None),
        ({"tier": "enterprise"}, "enterprise"),
        ({"tier": "ENTERPRISE", "region": "amer"}, "enterprise"),
        ({"tier": "enterprise", "region": "emea"}, "enterprise-emea"),
    ],
)
def test_most_specific_segment_wins_and_is_reported(attributes, segment) -> None:
    health = score(facts(attributes=attributes, **HEALTHY), SEGMENTED)
    assert health.segment == segment


def test_segment_override_changes_the_outcome() -> None:
    values = {"last_usage_at": NOW - timedelta(days=4), "attributes": {"tier": "enterprise"}}
    assert score(facts(**values), ANY_COVERAGE).band is Band.HEALTHY  # 91
    assert score(facts(**values), SEGMENTED).band is Band.HEALTHY  # 91 >= 90
    values["attributes"] = {"tier": "enterprise", "region": "emea"}
    assert score(facts(**values), SEGMENTED).band is Band.NEUTRAL  # 91 < 95


def test_health_reports_the_configuration_version() -> None:
    assert score(facts(**HEALTHY), HealthConfig()).config_version == HealthConfig().version
    with_segment = score(facts(attributes={"tier": "enterprise"}, **HEALTHY), SEGMENTED)
    assert with_segment.config_version != SEGMENTED.version


COLLABORATION = ("total_interactions_90d", "customer_interactions_90d", "contacts_engaged_90d",
                 "executives_engaged_90d", "collaboration_events_180d")  # fmt: skip
USAGE_AND_TICKETS = ("seats", "active_users_30d", "active_users_prev_30d",
                     "mean_daily_active_users_30d", "last_usage_at", "tickets_90d",
                     "escalations_90d")  # fmt: skip


# Issue 20, finding 4: an account with a name only, in a connection that sends interactions,
# had its absent records read as zero collaboration (score 30, at risk, coverage 0.34).
@pytest.mark.parametrize(
    ("values", "band", "missing"),
    [
        # Only what a new account's records can tell: no verdict, and the drivers say why.
        ({}, Band.UNKNOWN, "no product usage"),
        ({"last_usage_at": NOW - timedelta(days=1)}, Band.UNKNOWN, "Seat utilization"),
        (
            {k: AT_RISK[k] for k in COLLABORATION},
            Band.UNKNOWN,
            "no product usage",
        ),
        # Half the weight known (active use 0.40 + mutual value 0.15 of 1.0): a verdict.
        (
            {k: AT_RISK[k] for k in USAGE_AND_TICKETS},
            Band.AT_RISK,
            None,
        ),
    ],
    ids=["nothing", "recency-only", "collaboration-only", "usage-and-tickets"],
)
def test_a_band_needs_the_minimum_coverage(
    values: dict[str, object], band: Band, missing: str | None
) -> None:
    health = score(facts(**values), HealthConfig())
    assert health.band is band
    if missing is None:
        assert health.score is not None
        assert not health.drivers[0].startswith("Not enough evidence")
    else:
        assert health.score is None
        assert health.drivers[0].startswith("Not enough evidence (")
        assert missing in health.drivers[0]


def test_the_minimum_coverage_is_configurable() -> None:
    values = {"last_usage_at": NOW - timedelta(days=1)}  # 10% of the weight
    assert score(facts(**values), HealthConfig(bands=Bands(min_coverage=0.1))).score == 100
    assert score(facts(**values), HealthConfig(bands=Bands(min_coverage=0.11))).score is None


@pytest.mark.parametrize(
    ("customer_for", "values", "band"),
    [
        (timedelta(days=7), AT_RISK, Band.ONBOARDING),  # signed last week: not judged yet
        (timedelta(days=7), {}, Band.ONBOARDING),  # and no data is no verdict either
        (timedelta(days=89), HEALTHY, Band.ONBOARDING),
        (timedelta(days=90), AT_RISK, Band.AT_RISK),  # the onboarding period is over
        (None, AT_RISK, Band.AT_RISK),  # no customer-since date known: judged as usual
    ],
    ids=["week-at-risk", "week-no-data", "89-days", "90-days", "unknown-since"],
)
def test_customers_younger_than_the_onboarding_period_are_onboarding(
    customer_for: timedelta | None, values: dict[str, object], band: Band
) -> None:
    since = None if customer_for is None else NOW - customer_for
    health = score(facts(customer_since=since, **values), HealthConfig())
    assert health.band is band
    if values:
        assert health.score is not None  # scored and shown


def test_the_onboarding_period_is_configurable() -> None:
    since = NOW - timedelta(days=20)
    config = HealthConfig(bands=Bands(onboarding_days=14))
    assert score(facts(customer_since=since, **AT_RISK), config).band is Band.AT_RISK
