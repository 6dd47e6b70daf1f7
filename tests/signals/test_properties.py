"""Properties that must hold for any account: bounds, monotonicity, no band flapping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signals.config import Bands, HealthConfig
from signals.model import BAND_RANK, AccountFacts, Band
from signals.registry import SIGNALS
from signals.scoring import band_for, score

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
CONFIG = HealthConfig()

# Mostly present, sometimes missing: missing data must never break the properties either.
counts = st.integers(min_value=0, max_value=500) | st.none()
money = st.floats(min_value=0, max_value=1e7, allow_nan=False) | st.none()
events = st.floats(min_value=0, max_value=1e5) | st.none()


@st.composite
def account_facts(draw: st.DrawFn) -> AccountFacts:
    total = draw(counts)
    customer = None if total is None else draw(st.integers(min_value=0, max_value=total))
    monthly = draw(counts)
    days = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=400)))
    return AccountFacts(
        account_id="a",
        as_of=NOW,
        seats=draw(counts),
        active_users_30d=monthly,
        active_users_prev_30d=draw(counts),
        mean_daily_active_users_30d=draw(
            st.one_of(st.none(), st.floats(min_value=0, max_value=monthly or 0))
        ),
        last_usage_at=None if days is None else NOW - timedelta(days=days),
        customer_interactions_90d=customer,
        total_interactions_90d=total,
        collaboration_events_180d=draw(counts),
        contacts_engaged_90d=draw(counts),
        executives_engaged_90d=draw(counts),
        tickets_90d=draw(counts),
        escalations_90d=draw(counts),
        arr=draw(money),
        arr_12m_ago=draw(money),
        nps_90d=draw(st.none() | st.floats(min_value=-100, max_value=100)),
        nps_latest=draw(st.none() | st.integers(min_value=0, max_value=10).map(float)),
        csat_90d=draw(st.none() | st.floats(min_value=1, max_value=5)),
        csat_latest=draw(st.none() | st.integers(min_value=1, max_value=5).map(float)),
        usage_events_30d=draw(events),
        usage_events_prev_30d=draw(events),
        key_feature_users_30d=draw(counts),
    )


@given(account_facts())
def test_scores_stay_within_0_and_100(facts: AccountFacts) -> None:
    health = score(facts, CONFIG)
    if health.score is None:
        assert health.band is Band.UNKNOWN
        return
    assert 0 <= health.score <= 100
    for value in health.signals.values():
        assert value is None or 0.0 <= value <= 100.0
    for indicator in health.indicators:
        assert 0.0 <= indicator.score <= 100.0
    assert 0.0 < health.coverage.ratio <= 1.0


# Facts fields whose indicators all move one way, and which way is healthier (+1 more, -1 less).
SINGLE_INDICATOR_FIELDS = {
    "customer_interactions_90d": +1,
    "collaboration_events_180d": +1,
    "contacts_engaged_90d": +1,
    "executives_engaged_90d": +1,
    "tickets_90d": -1,
    "escalations_90d": -1,
    "arr": +1,
    "mean_daily_active_users_30d": +1,
    "active_users_prev_30d": -1,
    "last_usage_at": +1,  # later is healthier
    "nps_90d": +1,
    "nps_latest": +1,
    "csat_90d": +1,
    "csat_latest": +1,
    "usage_events_30d": +1,
    "usage_events_prev_30d": -1,
    "key_feature_users_30d": +1,
}


def improve(facts: AccountFacts, field: str, amount: float) -> AccountFacts:
    """The same account with one raw input moved `amount` in its healthy direction."""
    value = getattr(facts, field)
    if value is None:
        return facts
    if field == "last_usage_at":
        return replace(facts, last_usage_at=min(NOW, value + timedelta(days=amount)))
    moved = value + SINGLE_INDICATOR_FIELDS[field] * amount
    if isinstance(value, int):
        moved = int(moved)
    # A prior period emptied by the move would be "no trend", not a better one.
    prior = field in {"active_users_prev_30d", "usage_events_prev_30d"}
    floor = 1 if prior and value > 0 else 0
    moved = max(floor, moved) if value >= floor else value
    if field == "customer_interactions_90d":
        moved = min(moved, facts.total_interactions_90d or 0)
    return replace(facts, **{field: moved})


@pytest.mark.parametrize("field", sorted(SINGLE_INDICATOR_FIELDS))
@settings(max_examples=150)
@given(facts=account_facts(), amount=st.floats(min_value=0, max_value=50))
def test_improving_a_raw_value_never_lowers_the_score(
    field: str, facts: AccountFacts, amount: float
) -> None:
    if field == "active_users_prev_30d":
        # Fewer people before is growth for usage_trend but a deeper past for depth_trend
        # (the same events by fewer people): one direction only without prior events.
        facts = replace(facts, usage_events_prev_30d=None)
    before = score(facts, CONFIG)
    after = score(improve(facts, field, amount), CONFIG)
    if before.score is None:
        return
    assert after.score is not None
    assert after.score >= before.score
    for name, value in before.signals.items():
        if value is not None:
            improved = after.signals[name]
            assert improved is not None
            assert improved >= value - 1e-9, name


@given(
    st.sampled_from([40.0, 70.0]),
    st.lists(st.floats(min_value=-2.99, max_value=2.99), min_size=2, max_size=40),
)
def test_band_does_not_flap_on_scores_oscillating_within_the_margin(
    cutoff: float, offsets: list[float]
) -> None:
    bands = Bands()  # hysteresis 3
    band = band_for(cutoff + offsets[0], bands)
    moves = 0
    for offset in offsets[1:]:
        new = band_for(cutoff + offset, bands, band)
        # Within the margin a band can drop across the cutoff, but never climb back.
        assert BAND_RANK[new] <= BAND_RANK[band]
        moves += new is not band
        band = new
    assert moves <= 1


@given(st.floats(min_value=0, max_value=100), st.sampled_from(list(Band)))
def test_hysteresis_never_holds_an_account_above_its_plain_band(value: float, start: Band) -> None:
    bands = Bands()
    assert BAND_RANK[band_for(value, bands, start)] <= BAND_RANK[band_for(value, bands)]


CUSTOM = HealthConfig.model_validate(
    {
        "signals": {
            "active_use": {"weight": 0.7, "indicators": {
                "recency_days": {"at_risk": 30, "healthy": 1, "weight": 3},
                "stickiness": {"at_risk": 0.1, "healthy": 0.3, "weight": 0}}},
            "momentum": {"weight": 0},
        },
        "bands": {"healthy_min": 80, "at_risk_below": 50, "hysteresis": 0},
    }
)  # fmt: skip


@pytest.mark.parametrize("config", [CONFIG, CUSTOM], ids=["default", "custom"])
@settings(max_examples=200)
@given(facts=account_facts())
def test_fast_path_agrees_with_the_indicator_by_indicator_explanation(
    config: HealthConfig, facts: AccountFacts
) -> None:
    health = score(facts, config)
    if health.score is None:
        # No verdict below the minimum coverage: the explanation shows why.
        assert health.coverage.ratio < config.bands.min_coverage + 1e-4
        assert health.drivers[0].startswith("Not enough evidence")
        return
    assert health.coverage.ratio >= config.bands.min_coverage - 1e-4
    composite = sum(i.score * i.weight for i in health.indicators)
    assert abs(health.score - composite) <= 0.5 + 1e-9  # the score is the composite, rounded
    for name, value in health.signals.items():
        parts = [i for i in health.indicators if i.signal == name]
        if value is None:
            assert parts == []
            continue
        mean = sum(i.score * i.weight for i in parts) / sum(i.weight for i in parts)
        assert value == pytest.approx(mean, abs=1e-9)


# The facts only optional indicators read: survey answers, event counts, key-feature users.
OPTIONAL_FACTS = (
    "nps_90d", "nps_latest", "csat_90d", "csat_latest",
    "usage_events_30d", "usage_events_prev_30d", "key_feature_users_30d",
)  # fmt: skip


def without_optional(facts: AccountFacts) -> AccountFacts:
    cleared: dict[str, Any] = dict.fromkeys(OPTIONAL_FACTS)
    return replace(facts, **cleared)


# The configuration as it was before optional indicators existed: they weigh nothing.
WITHOUT_OPTIONAL = HealthConfig.model_validate(
    {"signals": {signal.name: {"indicators": {
        spec.name: {"weight": 0, "at_risk": spec.at_risk, "healthy": spec.healthy}
        for spec in signal.indicators if spec.optional
    }} for signal in SIGNALS if any(spec.optional for spec in signal.indicators)}}
)  # fmt: skip


def test_the_optional_facts_are_what_the_optional_indicators_read() -> None:
    optional = {
        f"{signal.name}.{spec.name}"
        for signal in SIGNALS for spec in signal.indicators if spec.optional
    }  # fmt: skip
    assert optional == {
        "active_use.usage_depth", "active_use.depth_trend", "active_use.key_feature_adoption",
        "mutual_value.nps", "mutual_value.nps_latest", "mutual_value.csat",
        "mutual_value.csat_latest",
    }  # fmt: skip
    busy = AccountFacts(
        account_id="a", as_of=NOW, active_users_30d=10, active_users_prev_30d=10,
        usage_events_30d=100.0, usage_events_prev_30d=120.0, key_feature_users_30d=4,
        nps_90d=20.0, nps_latest=8.0, csat_90d=4.0, csat_latest=4.0,
    )  # fmt: skip
    for signal in SIGNALS:
        flags = [spec.optional for spec in signal.indicators]
        measured = signal.measure(busy)
        cleared = signal.measure(without_optional(busy))
        for is_optional, full, empty in zip(flags, measured, cleared, strict=True):
            if is_optional:
                assert full is not None, signal.name
                assert empty is None, signal.name
            else:
                assert full == empty, signal.name


@settings(max_examples=300)
@given(account_facts())
def test_an_account_without_optional_evidence_scores_as_if_it_did_not_exist(
    facts: AccountFacts,
) -> None:
    silent = without_optional(facts)
    now, before = score(silent, CONFIG), score(silent, WITHOUT_OPTIONAL)
    assert (now.score, now.band, now.signals) == (before.score, before.band, before.signals)
    assert now.coverage.ratio == before.coverage.ratio
    assert now.drivers == before.drivers


@settings(max_examples=300)
@given(account_facts())
def test_optional_evidence_never_lowers_the_coverage(facts: AccountFacts) -> None:
    silent = without_optional(facts)
    assert score(facts, CONFIG).coverage.ratio >= score(silent, CONFIG).coverage.ratio - 1e-9


@settings(max_examples=300)
@given(account_facts())
def test_the_verdict_and_the_coverage_shown_agree(facts: AccountFacts) -> None:
    # The scoring loop decides on its own sums; the explanation shows its own ratio.
    health = score(facts, CONFIG)
    needed = CONFIG.bands.min_coverage
    if health.score is None:
        assert health.coverage.ratio < needed + 1e-4
    else:
        assert health.coverage.ratio >= needed - 1e-4
