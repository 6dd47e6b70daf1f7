"""The minimal health score: interpolation, bands and the recency indicator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals.config import Bands, HealthConfig, Threshold
from signals.indicators import interpolate
from signals.model import AccountFacts, Band
from signals.scoring import band_for, score

NOW = datetime(2026, 11, 23, tzinfo=UTC)
RECENCY = Threshold(at_risk=14, healthy=3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 100.0), (3, 100.0), (8.5, 50.0), (14, 0.0), (30, 0.0)],
)
def test_lower_is_better_indicator_interpolates_and_clamps(value: float, expected: float) -> None:
    assert interpolate(value, RECENCY) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.2, 0.0), (0.4, 0.0), (0.55, 50.0), (0.7, 100.0), (1.5, 100.0)],
)
def test_higher_is_better_indicator_interpolates_and_clamps(value: float, expected: float) -> None:
    assert interpolate(value, Threshold(at_risk=0.4, healthy=0.7)) == pytest.approx(expected)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_indicator_score_stays_within_bounds(value: float) -> None:
    assert 0.0 <= interpolate(value, RECENCY) <= 100.0


@given(st.floats(0, 1000), st.floats(0, 1000))
def test_more_recent_activity_never_scores_lower(a: float, b: float) -> None:
    older, newer = max(a, b), min(a, b)
    assert interpolate(newer, RECENCY) >= interpolate(older, RECENCY)


def test_equal_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="must differ"):
        Threshold(at_risk=3, healthy=3)


@pytest.mark.parametrize(
    ("value", "band"),
    [(None, Band.UNKNOWN), (0, Band.AT_RISK), (39.9, Band.AT_RISK), (40, Band.NEUTRAL),
     (69.9, Band.NEUTRAL), (70, Band.HEALTHY), (100, Band.HEALTHY)],
)  # fmt: skip
def test_band_edges(value: float | None, band: Band) -> None:
    assert band_for(value, Bands()) == band


def test_account_without_activity_has_unknown_health() -> None:
    health = score(AccountFacts(account_id="1", as_of=NOW), HealthConfig())
    assert health.score is None
    assert health.band is Band.UNKNOWN
    assert health.coverage == 0


def test_recent_activity_is_healthy_and_explained() -> None:
    facts = AccountFacts(account_id="1", as_of=NOW, last_activity_at=NOW - timedelta(days=1))
    health = score(facts, HealthConfig())
    assert health.score == 100
    assert health.band is Band.HEALTHY
    assert health.signals["active_use"] == 100.0
    assert health.signals["collaboration"] is None
    assert health.drivers == ("Last activity 1 days ago",)
    assert health.coverage == 0.25


def test_stale_activity_is_at_risk() -> None:
    facts = AccountFacts(account_id="1", as_of=NOW, last_activity_at=NOW - timedelta(days=20))
    assert score(facts, HealthConfig()).band is Band.AT_RISK
