"""Scores that predict: AUC, its bootstrap, bands, signals and indicators against known
outcomes, and suggested thresholds and weights, on books where the right answer is known."""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals import calibration
from signals.calibration import (
    Case,
    Evaluation,
    IndicatorSuggestion,
    Refusal,
    Suggestion,
    auc,
    auc_interval,
    blend_weights,
    evaluate,
    roc_curve,
    suggest,
    youden_cut,
)
from signals.config import CrmPropertySource, HealthConfig, ProductEventsSource
from signals.model import AccountFacts, Band

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)

# Any coverage gives a verdict: the books below hold active-use facts only.
ANY_COVERAGE = HealthConfig.model_validate({"bands": {"min_coverage": 0}})


def usage(*, utilization: float, stickiness: float, **values: Any) -> AccountFacts:
    """An account of 100 seats: `utilization` of them active in 30 days, a daily share
    of `stickiness` of those."""
    monthly = round(100 * utilization)
    return AccountFacts(
        account_id="a",
        as_of=NOW,
        seats=100,
        active_users_30d=monthly,
        mean_daily_active_users_30d=monthly * stickiness,
        **values,
    )


def separated_book(churned: int, renewed: int, seed: int = 0) -> list[Case]:
    """Seat utilization separates the outcomes perfectly (churned 5-45%, renewed 55-95%);
    stickiness is noise drawn alike for both."""
    rng = random.Random(seed)
    cases = []
    for index in range(churned + renewed):
        is_churned = index < churned
        utilization = rng.uniform(0.05, 0.45) if is_churned else rng.uniform(0.55, 0.95)
        facts = usage(utilization=utilization, stickiness=rng.uniform(0.02, 0.4))
        cases.append(Case(account=f"acct-{index}", churned=is_churned, facts=facts))
    return cases


@cache
def separated() -> tuple[list[Case], Evaluation, Suggestion]:
    cases = separated_book(300, 700)
    found = suggest(cases, ANY_COVERAGE)
    assert isinstance(found, Suggestion)
    return cases, evaluate(cases, ANY_COVERAGE), found


def indicator(found: Suggestion, key: str) -> IndicatorSuggestion:
    return next(item for item in found.indicators if item.key == key)


# --- AUC ---------------------------------------------------------------------------------------

T, F = True, False


@pytest.mark.parametrize(
    ("values", "churned", "expected"),
    [
        ([1, 2, 3, 4], [T, T, F, F], 1.0),  # every renewed case above every churned one
        ([1, 2, 3, 4], [F, F, T, T], 0.0),  # the wrong way round
        ([5, 5, 5, 5], [T, F, T, F], 0.5),  # all ties: one half each
        ([1, 2, 2, 3], [T, T, F, F], 0.875),  # one tied pair of four
        ([3, 1, 2], [F, T, F], 1.0),  # order of the input does not matter
        ([1, 2], [T, T], None),  # no renewed case to compare with
        ([], [], None),
    ],
)
def test_auc_is_the_share_of_renewed_churned_pairs_ranked_right(
    values: list[float], churned: list[bool], expected: float | None
) -> None:
    assert auc(values, churned) == expected


outcomes = st.lists(st.tuples(st.floats(-1e6, 1e6), st.booleans()), min_size=2, max_size=60)


def pairwise(values: list[float], churned: list[bool]) -> float | None:
    churned_values = [value for value, outcome in zip(values, churned, strict=True) if outcome]
    renewed_values = [value for value, outcome in zip(values, churned, strict=True) if not outcome]
    pairs = [(r, c) for r in renewed_values for c in churned_values]
    if not pairs:
        return None
    return sum(1.0 if r > c else 0.5 if r == c else 0.0 for r, c in pairs) / len(pairs)


@given(outcomes)
def test_auc_by_one_sort_equals_the_pairwise_definition(cases: list[tuple[float, bool]]) -> None:
    values, churned = [v for v, _ in cases], [c for _, c in cases]
    expected = pairwise(values, churned)
    found = auc(values, churned)
    assert found == expected or (found is not None and math.isclose(found, expected or -1))


@given(outcomes)
def test_auc_lies_in_0_1_and_negating_the_values_mirrors_it(
    cases: list[tuple[float, bool]],
) -> None:
    values, churned = [v for v, _ in cases], [c for _, c in cases]
    found = auc(values, churned)
    if found is None:
        return
    assert 0.0 <= found <= 1.0
    mirrored = auc([-value for value in values], churned)
    assert mirrored is not None
    assert math.isclose(mirrored, 1.0 - found, abs_tol=1e-12)


@pytest.mark.parametrize(
    "transform",
    [lambda x: 3 * x + 7, lambda x: x**3, lambda x: math.exp(x / 100), math.atan],
)
@given(st.lists(st.tuples(st.integers(-1000, 1000), st.booleans()), min_size=2, max_size=60))
def test_auc_is_invariant_under_increasing_transforms(
    transform: Any, cases: list[tuple[int, bool]]
) -> None:
    values, churned = [float(v) for v, _ in cases], [c for _, c in cases]
    assert auc([transform(v) for v in values], churned) == auc(values, churned)


def test_roc_curve_runs_from_0_0_to_1_1_thinned_to_at_most_101_points() -> None:
    rng = random.Random(1)
    churned = [rng.random() < 0.3 for _ in range(5000)]
    values = [rng.random() + (0 if c else 0.3) for c in churned]
    curve = roc_curve(values, churned)
    assert len(curve) <= 101
    assert (curve[0].fpr, curve[0].tpr) == (0.0, 0.0)
    assert (curve[-1].fpr, curve[-1].tpr) == (1.0, 1.0)
    assert all(a.fpr <= b.fpr and a.tpr <= b.tpr for a, b in itertools.pairwise(curve))


def test_youden_cut_of_a_perfect_separator_is_the_highest_churned_value() -> None:
    assert youden_cut([0.1, 0.2, 0.3, 0.7, 0.9], [T, T, T, F, F], "higher") == (0.3, 1.0)
    # Lower is healthier: "at or above the cut predicts churn".
    assert youden_cut([20, 30, 2, 5], [T, T, F, F], "lower") == (20, 1.0)


# --- bootstrap ---------------------------------------------------------------------------------


def test_the_bootstrap_interval_is_the_same_for_the_same_seed() -> None:
    rng = random.Random(2)
    churned = [rng.random() < 0.4 for _ in range(400)]
    values = [rng.gauss(1 if not c else 0, 1) for c in churned]
    accounts = [f"acct-{i // 2}" for i in range(400)]
    first = auc_interval(values, churned, accounts, resamples=200, seed=7)
    assert first == auc_interval(values, churned, accounts, resamples=200, seed=7)
    assert first is not None
    point = auc(values, churned)
    assert point is not None
    assert first[0] < point < first[1]
    assert first[2] == 200


def test_the_bootstrap_draws_accounts_not_cases() -> None:
    # One account: every resample is the whole book, so there is no spread at all.
    values, churned = [1.0, 2.0, 3.0, 2.5], [T, F, F, T]
    low, high, _ = auc_interval(values, churned, ["one"] * 4, resamples=50, seed=0) or (0, 0, 0)
    assert low == high == auc(values, churned)


# --- evaluate ----------------------------------------------------------------------------------


def test_a_perfect_separator_has_auc_1_and_power_1_in_its_data_direction() -> None:
    _, evaluation, _ = separated()
    found = {item.key: item for item in evaluation.indicators}
    utilization = found["active_use.seat_utilization"]
    assert (utilization.auc, utilization.power) == (1.0, 1.0)
    assert utilization.direction == utilization.configured == "higher"
    assert utilization.coverage == 1.0


def test_a_noise_indicator_has_auc_near_one_half() -> None:
    _, evaluation, _ = separated()
    noise = next(item for item in evaluation.indicators if item.key == "active_use.stickiness")
    # Three standard errors of the AUC of noise for 300 churned and 700 renewed cases.
    tolerance = 3 * math.sqrt((300 + 700 + 1) / (12 * 300 * 700))
    assert noise.auc is not None
    assert abs(noise.auc - 0.5) < tolerance


def test_only_weighted_built_in_indicators_and_custom_ones_are_evaluated() -> None:
    _, evaluation, _ = separated()
    keys = [item.key for item in evaluation.indicators]
    assert "active_use.usage_depth" not in keys  # weighs 0 by default
    assert len(keys) == 17


def mixed_book() -> list[Case]:
    """Healthy, neutral and at-risk accounts, with churn more likely the lower the use; some
    without any data, some not customers."""
    rng = random.Random(3)
    cases = []
    for index in range(600):
        utilization = rng.uniform(0.05, 0.95)
        churned = rng.random() < 0.8 - 0.7 * utilization
        facts = usage(
            utilization=utilization,
            stickiness=rng.uniform(0.02, 0.4),
            active_users_prev_30d=rng.randint(20, 90),
            last_usage_at=NOW - timedelta(days=rng.uniform(0, 20)),
        )
        if index % 50 == 0:
            facts = AccountFacts(account_id="a", as_of=NOW)  # nothing known
        elif index % 50 == 1:
            facts = AccountFacts(
                account_id="a", as_of=NOW, crm="hubspot", attributes={"lifecycle": "lead"}
            )
        cases.append(Case(account=f"acct-{index % 450}", churned=churned, facts=facts))
    return cases


def test_band_counts_add_up_and_lift_is_the_band_churn_rate_over_the_overall_rate() -> None:
    cases = mixed_book()
    evaluation = evaluate(cases, ANY_COVERAGE, resamples=50)
    bands = {item.band: item for item in evaluation.bands}
    assert list(bands) == [Band.HEALTHY, Band.NEUTRAL, Band.AT_RISK, Band.ONBOARDING, Band.UNKNOWN]
    assert sum(item.cases for item in bands.values()) == len(cases) == evaluation.cases
    assert sum(item.churned for item in bands.values()) == evaluation.churned
    assert sum(item.recall or 0 for item in bands.values()) == pytest.approx(1.0, abs=1e-3)
    overall = evaluation.churned / evaluation.cases
    for item in bands.values():
        assert item.churned + item.renewed == item.cases
        if item.cases:
            assert item.churn_rate == pytest.approx(item.churned / item.cases, abs=1e-4)
            assert item.lift == pytest.approx(item.churned / item.cases / overall, abs=1e-3)
    assert bands[Band.AT_RISK].lift > 1 > bands[Band.HEALTHY].lift  # type: ignore[operator]


def test_unscored_cases_are_counted_by_reason_and_left_out_of_the_auc() -> None:
    evaluation = evaluate(mixed_book(), ANY_COVERAGE, resamples=50)
    assert list(evaluation.why.items()) == [("not a customer", 12), ("no data", 12)]
    assert evaluation.unscored == 24
    assert evaluation.scored == 600 - 24
    assert bands_of(evaluation)[Band.UNKNOWN] == 24
    assert evaluation.auc is not None
    assert evaluation.auc_interval is not None
    assert evaluation.auc_interval.low < evaluation.auc < evaluation.auc_interval.high
    assert evaluation.roc[-1].threshold == 100 or evaluation.roc[-1].tpr == 1.0


def bands_of(evaluation: Evaluation) -> dict[Band, int]:
    return {item.band: item.cases for item in evaluation.bands}


def test_signals_report_their_auc_and_coverage() -> None:
    evaluation = evaluate(mixed_book(), ANY_COVERAGE, resamples=0)
    signals = {item.name: item for item in evaluation.signals}
    assert list(signals) == ["active_use", "collaboration", "mutual_value", "momentum"]
    assert signals["active_use"].coverage == pytest.approx(576 / 600, abs=1e-4)
    assert signals["active_use"].auc is not None
    assert signals["active_use"].auc > 0.55
    assert (signals["momentum"].coverage, signals["momentum"].auc) == (0.0, None)
    assert evaluation.auc_interval is None  # no resamples, no interval


def test_the_evaluation_serialises_with_its_method_in_words() -> None:
    document = evaluate(mixed_book(), ANY_COVERAGE, resamples=20, seed=4).model_dump(mode="json")
    assert document["bands"][0]["band"] == "healthy"
    assert "20 bootstrap resamples" in document["method"]
    assert "seed 4" in document["method"]


# --- suggest -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("churned", "renewed", "reason"),
    [
        (12, 100, "12 churned outcomes; at least 30 are needed to suggest anything (min_churned)"),
        (40, 20, "20 renewed outcomes; at least 30 are needed to suggest anything (min_churned)"),
        (5, 8, "5 churned and 8 renewed outcomes; at least 30 of each are needed to suggest "
               "anything (min_churned)"),
    ],
)  # fmt: skip
def test_a_book_below_the_minimum_gets_a_refusal_naming_the_counts(
    churned: int, renewed: int, reason: str
) -> None:
    found = suggest(separated_book(churned, renewed), ANY_COVERAGE)
    assert isinstance(found, Refusal)
    assert found.reason == reason
    assert (found.churned, found.renewed, found.min_churned) == (churned, renewed, 30)
    assert found.model_dump(mode="json")["status"] == "refused"


def test_too_few_accounts_for_the_folds_is_refused() -> None:
    cases = [
        Case(account=f"acct-{i % 3}", churned=case.churned, facts=case.facts)
        for i, case in enumerate(separated_book(40, 40))
    ]
    found = suggest(cases, ANY_COVERAGE)
    assert isinstance(found, Refusal)
    assert found.reason == "3 accounts; 5-fold cross-validation needs at least 5"


def test_a_perfect_separator_gets_thresholds_between_the_groups() -> None:
    cases, _, found = separated()
    utilization = indicator(found, "active_use.seat_utilization")
    churned = [c.facts.active_users_30d / 100 for c in cases if c.churned]  # type: ignore[operator]
    renewed = [c.facts.active_users_30d / 100 for c in cases if not c.churned]  # type: ignore[operator]
    assert (utilization.auc, utilization.power) == (1.0, 1.0)
    assert utilization.thresholds_changed
    # at_risk on the churned side, healthy on the renewed side: the two groups' medians.
    assert min(churned) <= utilization.suggested.at_risk <= max(churned)
    assert min(renewed) <= utilization.suggested.healthy <= max(renewed)
    assert utilization.suggested.at_risk == utilization.median_churned
    assert utilization.suggested.healthy == utilization.median_renewed
    assert (utilization.youden_cut, utilization.youden_j) == (max(churned), 1.0)
    assert utilization.note.startswith("medians: churned")


def test_a_noise_indicator_gets_no_fitted_weight_beside_a_real_separator() -> None:
    _, _, found = separated()
    noise = indicator(found, "active_use.stickiness")
    utilization = indicator(found, "active_use.seat_utilization")
    assert noise.fitted_share == 0.0
    assert not noise.thresholds_changed
    assert noise.note.startswith("no suggestion: AUC 0.")
    # The only indicator of its signal with data and power takes all the fitted weight.
    assert utilization.fitted_share == 1.0
    assert noise.suggested.share <= noise.current.share
    assert utilization.suggested.share > utilization.current.share


def test_the_suggestion_beats_the_current_configuration_in_cross_validation() -> None:
    _, _, found = separated()
    checked = found.cross_validation
    assert [score.blend for score in checked.by_blend] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert checked.suggested_auc is not None
    assert checked.current_auc is not None
    assert checked.suggested_auc > checked.current_auc
    assert checked.blend in {score.blend for score in checked.by_blend}
    best = max(score.auc or 0 for score in checked.by_blend)
    assert checked.suggested_auc == best
    assert found.improves
    assert checked.current_scored == checked.suggested_scored == 1000


def test_weights_within_each_signal_and_between_signals_are_shares_summing_to_1() -> None:
    _, _, found = separated()
    by_signal: dict[str, float] = {}
    for item in found.indicators:
        assert item.suggested.share >= 0
        by_signal[item.signal] = by_signal.get(item.signal, 0.0) + item.suggested.share
    assert all(total == pytest.approx(1.0, abs=1e-3) for total in by_signal.values())
    assert sum(s.suggested.share for s in found.signals) == pytest.approx(1.0, abs=1e-3)


def test_the_same_seed_gives_the_same_suggestion_whatever_the_order_of_the_cases() -> None:
    cases = separated_book(40, 60, seed=5)
    first = suggest(cases, ANY_COVERAGE, seed=3).model_dump(mode="json")
    assert suggest(cases, ANY_COVERAGE, seed=3).model_dump(mode="json") == first
    shuffled = list(cases)
    random.Random(9).shuffle(shuffled)
    assert suggest(shuffled, ANY_COVERAGE, seed=3).model_dump(mode="json") == first


def test_medians_that_tie_suggest_no_thresholds_though_the_indicator_separates() -> None:
    # Co-innovation: no churned account has any, 40% of renewed ones have 3: the medians
    # are both 0, yet the indicator separates and earns weight.
    rng = random.Random(6)
    cases = []
    for index, case in enumerate(separated_book(60, 90, seed=6)):
        events = 0 if case.churned or rng.random() < 0.6 else 3
        facts = usage(
            utilization=case.facts.active_users_30d / 100,  # type: ignore[operator]
            stickiness=0.1,
            collaboration_events_180d=events,
        )
        cases.append(Case(account=f"acct-{index}", churned=case.churned, facts=facts))
    found = suggest(cases, ANY_COVERAGE)
    assert isinstance(found, Suggestion)
    co_innovation = indicator(found, "collaboration.co_innovation")
    assert co_innovation.power is not None
    assert co_innovation.power > 0.6
    assert not co_innovation.thresholds_changed
    assert co_innovation.note == "no suggestion: churned and renewed medians are both 0"
    assert co_innovation.fitted_share == 1.0


def test_a_separator_running_the_other_way_gets_its_thresholds_turned_around() -> None:
    # Churned accounts were the sticky ones here: the data say lower stickiness is healthier.
    rng = random.Random(8)
    cases = [
        Case(
            account=f"acct-{index}",
            churned=index < 50,
            facts=usage(
                utilization=0.5,
                stickiness=rng.uniform(0.25, 0.4) if index < 50 else rng.uniform(0.02, 0.2),
            ),
        )
        for index in range(120)
    ]
    found = suggest(cases, ANY_COVERAGE)
    assert isinstance(found, Suggestion)
    stickiness = indicator(found, "active_use.stickiness")
    assert (stickiness.direction, stickiness.configured) == ("lower", "higher")
    assert stickiness.suggested.at_risk > stickiness.suggested.healthy


# --- the candidate document --------------------------------------------------------------------

EXPORTS = ProductEventsSource(features=("Report Exported",), aggregation="events_per_seat")
REFERRALS = CrmPropertySource(hubspot="referrals")
CUSTOM = HealthConfig.model_validate(
    {
        "bands": {"min_coverage": 0},
        "custom_signals": [{"name": "advocacy", "label": "Advocacy", "weight": 0.1}],
        "custom_indicators": [
            {"name": "exports_per_seat", "label": "Exports per seat", "signal": "active_use",
             "source": EXPORTS.model_dump(), "at_risk": 0.5, "healthy": 2},
            {"name": "referrals", "label": "Referrals", "signal": "advocacy",
             "source": REFERRALS.model_dump(), "at_risk": 0, "healthy": 2},
        ],
        "segments": [
            {"name": "enterprise", "match": {"tier": "enterprise"},
             "changes": {"signals": {"active_use": {"weight": 0.6}}}},
        ],
    }
)  # fmt: skip
CHANGEABLE = re.compile(
    r"signals\.\w+\.weight|signals\.\w+\.indicators\.\w+\.(at_risk|healthy|weight)"
    r"|custom_indicators\.\d+\.(at_risk|healthy|weight)|custom_signals\.\d+\.weight"
)


def leaves(document: Any, path: str = "") -> dict[str, Any]:
    children: Iterable[tuple[Any, Any]]
    if isinstance(document, dict):
        children = document.items()
    elif isinstance(document, list):
        children = enumerate(document)
    else:
        return {path.rstrip("."): document}
    return {k: v for key, value in children for k, v in leaves(value, f"{path}{key}.").items()}


def custom_book() -> list[Case]:
    rng = random.Random(11)
    cases = []
    for index, case in enumerate(separated_book(50, 80, seed=11)):
        exports = rng.uniform(0.2, 1.5) if case.churned else rng.uniform(1, 3)
        referrals = float(rng.choice([0, 0, 1]) if case.churned else rng.choice([0, 1, 2, 3]))
        facts = usage(
            utilization=case.facts.active_users_30d / 100,  # type: ignore[operator]
            stickiness=rng.uniform(0.02, 0.4),
            custom={EXPORTS.key: exports, REFERRALS.key: referrals},
            attributes={"tier": "enterprise"} if index % 3 == 0 else {},
        )
        cases.append(Case(account=f"acct-{index}", churned=case.churned, facts=facts))
    return cases


def test_the_candidate_validates_and_differs_only_in_thresholds_and_weights() -> None:
    found = suggest(custom_book(), CUSTOM)
    assert isinstance(found, Suggestion)
    candidate = HealthConfig.model_validate(found.config)
    before, after = leaves(CUSTOM.model_dump(mode="json")), leaves(found.config)
    assert before.keys() == after.keys()
    changed = [path for path in before if before[path] != after[path]]
    assert changed
    assert [path for path in changed if not CHANGEABLE.fullmatch(path)] == []
    assert candidate.segments == CUSTOM.segments
    keys = [item.key for item in found.indicators]
    assert "active_use.exports_per_seat" in keys
    assert "advocacy.referrals" in keys
    assert [item.name for item in found.signals][-1] == "advocacy"
    exports = indicator(found, "active_use.exports_per_seat")
    assert exports.thresholds_changed
    assert after["custom_indicators.0.at_risk"] == exports.suggested.at_risk


def test_a_threshold_a_partial_segment_override_would_turn_around_is_kept() -> None:
    # The segment sets healthy only, to 0.1: with the suggested at_risk (about 0.25) its
    # accounts would read lower utilization as healthier.
    config = HealthConfig.model_validate(
        {
            "bands": {"min_coverage": 0},
            "segments": [{"name": "small", "match": {"tier": "small"}, "changes": {
                "signals": {"active_use": {"indicators": {"seat_utilization": {"healthy": 0.1}}}}
            }}],
        }
    )  # fmt: skip
    found = suggest(separated_book(40, 60), config)
    assert isinstance(found, Suggestion)
    utilization = indicator(found, "active_use.seat_utilization")
    assert not utilization.thresholds_changed
    assert "segment override 'small'" in utilization.note
    HealthConfig.model_validate(found.config)


# --- weights -----------------------------------------------------------------------------------

shares = st.dictionaries(st.sampled_from("abcdef"), st.floats(0, 10), min_size=1)


@given(shares, shares, st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_blended_weights_are_non_negative_and_sum_to_1(
    fitted: dict[str, float], current: dict[str, float], keep: float
) -> None:
    current = {**current, "z": 1.0}  # a valid configuration weighs something
    blended = blend_weights(fitted, current, keep)
    assert blended.keys() == current.keys()
    assert all(weight >= 0 for weight in blended.values())
    assert math.isclose(sum(blended.values()), 1.0)


def test_keeping_all_of_the_current_weights_gives_the_current_shares() -> None:
    assert blend_weights({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 3.0}, 1.0) == {
        "a": 0.25,
        "b": 0.75,
    }
    assert blend_weights({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 3.0}, 0.0) == {"a": 1.0, "b": 0.0}


def test_fitted_weights_a_segment_override_would_invalidate_fall_back_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The segment leaves stickiness (noise: fitted weight 0) the only active-use indicator
    # weighing anything; the fit alone (λ = 0) would leave its accounts none.
    others = ("seat_utilization", "usage_trend", "recency_days", "depth_trend",
              "key_feature_adoption")  # fmt: skip
    config = HealthConfig.model_validate(
        {
            "bands": {"min_coverage": 0},
            "segments": [{"name": "sticky", "match": {"tier": "sticky"}, "changes": {
                "signals": {"active_use": {"indicators": {n: {"weight": 0} for n in others}}}
            }}],
        }
    )  # fmt: skip
    monkeypatch.setattr(calibration, "BLENDS", (0.0,))
    cases, _, _ = separated()
    found = suggest(cases, config)
    assert isinstance(found, Suggestion)
    assert found.notes[0].startswith(
        "the fitted weights do not validate (segments.0.changes.signals.active_use.indicators: "
    )
    candidate = HealthConfig.model_validate(found.config)
    # Thresholds still suggested, weights the current ones.
    utilization = indicator(found, "active_use.seat_utilization")
    assert utilization.thresholds_changed
    assert utilization.suggested.weight == utilization.current.weight
    assert candidate.signals.items()["active_use"].weight == 0.4
