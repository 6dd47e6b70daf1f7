"""The CSM's voice: a sentiment counts as an indicator, caps the band or overrides it, as the
configuration says, and the first driver always says it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from signals.config import HealthConfig
from signals.model import AccountFacts, Band, Rating, Sentiment
from signals.scoring import score

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
UNTIL = datetime(2027, 1, 15, tzinfo=UTC)


def felt(rating: str, reason: str = "champion left") -> Sentiment:
    return Sentiment(rating=Rating(rating), reason=reason, author="A. Kim", until=UNTIL)


# Collaboration only, every indicator measured: the score is the mean of four indicators.
COLLABORATION = {"active_use": {"weight": 0}, "mutual_value": {"weight": 0},
                 "momentum": {"weight": 0}}  # fmt: skip


def account(engaged: int, sentiment: Sentiment | None = None) -> AccountFacts:
    """Collaboration scoring 100 with 4 contacts engaged, less with fewer."""
    return AccountFacts(
        account_id="a", as_of=NOW, customer_interactions_90d=5, total_interactions_90d=10,
        collaboration_events_180d=3, contacts_engaged_90d=engaged,
        executives_engaged_90d=1 if engaged else 0, sentiment=sentiment,
    )  # fmt: skip


def config(mode: str, **sentiment: Any) -> HealthConfig:
    return HealthConfig.model_validate(
        {"signals": COLLABORATION, "sentiment": {"mode": mode, **sentiment}}
    )


def test_the_first_driver_says_who_judged_what_until_when() -> None:
    health = score(account(1, felt("red")), config("indicator"))
    assert health.drivers[0] == "CSM: red, champion left (A. Kim, until 2027-01-15)"
    assert len(health.drivers) <= 3
    assert "CSM sentiment" not in " ".join(health.drivers[1:])


@pytest.mark.parametrize(("rating", "expected"), [("red", 80), ("amber", 90), ("green", 100)])
def test_as_an_indicator_it_weighs_like_one(rating: str, expected: int) -> None:
    # Four collaboration indicators at 100 and the sentiment, all of weight 1.
    health = score(account(4, felt(rating)), config("indicator"))
    assert health.score == expected
    [measured] = [i for i in health.indicators if i.name == "csm_sentiment"]
    assert measured.signal == "collaboration"


def test_without_a_sentiment_nothing_changes_in_any_mode() -> None:
    plain = score(account(2), HealthConfig.model_validate({"signals": COLLABORATION}))
    for mode in ("indicator", "cap", "override"):
        health = score(account(2), config(mode))
        assert (health.score, health.band, health.drivers) == (
            plain.score, plain.band, plain.drivers,
        )  # fmt: skip
        assert health.coverage.ratio == plain.coverage.ratio


@pytest.mark.parametrize(
    ("rating", "engaged", "band"),
    [
        ("red", 4, Band.AT_RISK),  # healthy capped at at risk
        ("amber", 4, Band.NEUTRAL),
        ("green", 4, Band.HEALTHY),
        ("amber", 0, Band.NEUTRAL),  # no better than the cap already: as computed (50)
    ],
)
def test_a_cap_keeps_the_band_no_better_than_the_sentiment(
    rating: str, engaged: int, band: Band
) -> None:
    health = score(account(engaged, felt(rating)), config("cap"))
    assert health.band is band
    # The score is the computed one: the cap is about the band.
    assert health.score == score(account(engaged), config("cap")).score


@pytest.mark.parametrize(
    ("rating", "engaged", "band"),
    [("red", 4, Band.AT_RISK), ("green", 0, Band.HEALTHY), ("amber", 4, Band.NEUTRAL)],
)
def test_an_override_sets_the_band(rating: str, engaged: int, band: Band) -> None:
    assert score(account(engaged, felt(rating)), config("override")).band is band


def test_no_evidence_stays_no_verdict_under_a_cap_but_not_under_an_override() -> None:
    bare = AccountFacts(account_id="a", as_of=NOW, sentiment=felt("red"))
    assert score(bare, config("cap")).band is Band.UNKNOWN
    assert score(bare, config("override")).band is Band.AT_RISK
    drivers = score(bare, config("override")).drivers
    assert drivers[0].startswith("Not enough evidence")
    assert drivers[1] == "CSM: red, champion left (A. Kim, until 2027-01-15)"


def test_the_sentiment_settings_are_checked_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        config("indicator", signal="happiness")
    assert "sentiment.signal: 'happiness' is not one of active_use" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        config("indicator", reasons=["Budget cut", "budget cut"])
    assert "reasons: 'budget cut' listed twice" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        config("veto")
    assert "sentiment.mode" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        HealthConfig.model_validate(
            {"custom_indicators": [{"name": "csm_sentiment", "label": "Mine", "signal": "momentum",
                                    "source": {"kind": "survey", "survey": "nps",
                                               "aggregation": "latest"},
                                    "at_risk": 0, "healthy": 9}]}
        )  # fmt: skip
    assert "momentum already has an indicator 'csm_sentiment'" in str(caught.value)


ratings = st.none() | st.sampled_from(list(Rating)).map(lambda r: felt(r.value))


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=6), ratings)
def test_a_better_sentiment_never_lowers_the_score_or_band(engaged: int, now: Any) -> None:
    order = [Rating.RED, Rating.AMBER, Rating.GREEN]
    if now is None:
        return
    for mode in ("indicator", "cap", "override"):
        for better in order[order.index(now.rating) :]:
            before = score(account(engaged, now), config(mode))
            after = score(account(engaged, felt(better.value)), config(mode))
            assert (after.score or 0) >= (before.score or 0)
            rank = [Band.UNKNOWN, Band.AT_RISK, Band.NEUTRAL, Band.HEALTHY]
            assert rank.index(after.band) >= rank.index(before.band), (mode, better)
