"""Every indicator's raw value from the facts, including the missing-data cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signals import active_use, collaboration, momentum, mutual_value
from signals.indicators import value_formatter
from signals.model import AccountFacts, Unit

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def facts(**values: object) -> AccountFacts:
    return AccountFacts(account_id="a", as_of=NOW, **values)  # type: ignore[arg-type]


def raw(module, name: str, **values: object) -> float | None:
    index = [spec.name for spec in module.SIGNAL.indicators].index(name)
    return module.measure(facts(**values))[index]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"seats": 50, "active_users_30d": 11}, 0.22),
        ({"seats": 10, "active_users_30d": 12}, 1.2),
        ({"seats": 50, "active_users_30d": 0}, 0.0),
        ({"seats": 0, "active_users_30d": 5}, None),
        ({"seats": None, "active_users_30d": 5}, None),
        ({"seats": 50}, None),
    ],
)
def test_seat_utilization(values, expected) -> None:
    assert raw(active_use, "seat_utilization", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"active_users_30d": 30, "active_users_prev_30d": 40}, -0.25),
        ({"active_users_30d": 44, "active_users_prev_30d": 40}, 0.10),
        ({"active_users_30d": 5, "active_users_prev_30d": 0}, 1.0),
        ({"active_users_30d": 0, "active_users_prev_30d": 0}, None),
        ({"active_users_30d": 5}, None),
    ],
)
def test_usage_trend(values, expected) -> None:
    assert raw(active_use, "usage_trend", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"active_users_30d": 40, "mean_daily_active_users_30d": 8.0}, 0.2),
        ({"active_users_30d": 0, "mean_daily_active_users_30d": 0.0}, None),
        ({"active_users_30d": 40}, None),
    ],
)
def test_stickiness(values, expected) -> None:
    assert raw(active_use, "stickiness", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"active_users_30d": 10, "usage_events_30d": 180.0}, 18.0),
        ({"active_users_30d": 0, "usage_events_30d": 0.0}, None),
        ({"active_users_30d": 10}, None),  # months from before events were counted
        ({"usage_events_30d": 50.0}, None),
    ],
)
def test_usage_depth_is_events_per_active_user(values, expected) -> None:
    assert raw(active_use, "usage_depth", **values) == pytest.approx(expected)


DEPTH = {"active_users_30d": 10, "usage_events_30d": 150.0}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # 15 events a person now, 30 before: half as deep, though as many people come.
        ({**DEPTH, "active_users_prev_30d": 10, "usage_events_prev_30d": 300.0}, -0.5),
        ({**DEPTH, "active_users_prev_30d": 5, "usage_events_prev_30d": 50.0}, 0.5),
        # Nobody before, or no count before: no trend (not growth).
        ({**DEPTH, "active_users_prev_30d": 0, "usage_events_prev_30d": 0.0}, None),
        ({**DEPTH, "active_users_prev_30d": 10}, None),
        ({"active_users_30d": 0, "usage_events_30d": 0.0, "active_users_prev_30d": 4,
          "usage_events_prev_30d": 40.0}, None),
    ],
)  # fmt: skip
def test_depth_trend_compares_events_per_active_user_with_the_prior_30_days(
    values, expected
) -> None:
    assert raw(active_use, "depth_trend", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"active_users_30d": 20, "key_feature_users_30d": 5}, 0.25),
        ({"active_users_30d": 20, "key_feature_users_30d": 0}, 0.0),
        # A key-feature user is an active user; a later event counted in one read only.
        ({"active_users_30d": 20, "key_feature_users_30d": 21}, 1.0),
        ({"active_users_30d": 20}, None),  # no key features, or none ever named
        ({"active_users_30d": 0, "key_feature_users_30d": 0}, None),
    ],
)
def test_key_feature_adoption_is_the_share_of_active_users(values, expected) -> None:
    assert raw(active_use, "key_feature_adoption", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("last_usage_at", "expected"),
    [(NOW - timedelta(days=16), 16.0), (NOW - timedelta(hours=12), 0.5), (NOW, 0.0),
     (NOW + timedelta(hours=1), 0.0), (None, None)],
)  # fmt: skip
def test_recency_days(last_usage_at, expected) -> None:
    assert raw(active_use, "recency_days", last_usage_at=last_usage_at) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"customer_interactions_90d": 3, "total_interactions_90d": 10}, 0.3),
        ({"customer_interactions_90d": 0, "total_interactions_90d": 10}, 0.0),
        ({"customer_interactions_90d": 0, "total_interactions_90d": 0}, None),
        ({"total_interactions_90d": 10}, None),
    ],
)
def test_two_way_ratio(values, expected) -> None:
    assert raw(collaboration, "two_way_ratio", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("module", "name", "field", "value"),
    [
        (collaboration, "co_innovation", "collaboration_events_180d", 2),
        (collaboration, "stakeholder_breadth", "contacts_engaged_90d", 4),
        (collaboration, "executive_access", "executives_engaged_90d", 0),
        (mutual_value, "escalations", "escalations_90d", 3),
    ],
)
def test_count_indicators_pass_counts_through_and_none_stays_missing(
    module, name, field, value
) -> None:
    assert raw(module, name, **{field: value}) == value
    assert raw(module, name) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"tickets_90d": 12, "seats": 40}, 3.0),
        ({"tickets_90d": 0, "seats": 40}, 0.0),
        ({"tickets_90d": 12, "seats": 0}, None),
        ({"tickets_90d": 12}, None),
    ],
)
def test_support_load_is_tickets_per_10_seats(values, expected) -> None:
    assert raw(mutual_value, "support_load", **values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"arr": 90_000.0, "arr_12m_ago": 100_000.0}, -0.10),
        ({"arr": 105_000.0, "arr_12m_ago": 100_000.0}, 0.05),
        ({"arr": 105_000.0, "arr_12m_ago": 0.0}, None),
        ({"arr": 105_000.0}, None),
    ],
)
def test_arr_change(values, expected) -> None:
    assert raw(momentum, "arr_change", **values) == pytest.approx(expected)


@pytest.mark.parametrize("module", [active_use, collaboration, mutual_value, momentum])
def test_measure_returns_one_value_per_declared_indicator(module) -> None:
    assert len(module.measure(facts())) == len(module.SIGNAL.indicators)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.05, "0.05"), (0.0, "0"), (4.3, "4.3"), (-40.0, "-40"), (12.25, "12.2"), (1.0, "1"),
     (-0.001, "0"), (1234.56, "1234.6")],
)  # fmt: skip
def test_numbers_keep_the_decimals_that_matter(value: float, shown: str) -> None:
    assert value_formatter(Unit.NUMBER)(value) == shown
