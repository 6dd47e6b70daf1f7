"""The customer's voice: NPS and CSAT of an account from its survey answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signals.config import HealthConfig
from signals.model import AccountFacts
from signals.scoring import score
from signals.voice import MIN_RESPONSES, Answer, net_promoter_score, survey_value, voice

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def answers(kind: str, *scores_days: tuple[float, float]) -> list[Answer]:
    """Answers oldest first, each (score, days before NOW)."""
    found = [Answer(kind, NOW - timedelta(days=days), score) for score, days in scores_days]
    return sorted(found, key=lambda answer: answer.at)


def test_nps_is_promoters_minus_detractors_in_percent() -> None:
    assert net_promoter_score([10, 9, 8, 7, 6]) == 100 * (2 - 1) / 5
    assert net_promoter_score([0, 0, 0]) == -100
    assert net_promoter_score([9, 10]) == 100


def test_too_few_answers_in_90_days_is_no_data_but_the_latest_answer_counts() -> None:
    heard = voice(answers("nps", (3, 100), (10, 40), (9, 2)), NOW)
    # Two answers in the window: below the minimum of three.
    assert MIN_RESPONSES == 3
    assert heard.nps_90d is None
    assert heard.nps_latest == 9


def test_the_window_counts_its_answers_and_older_ones_are_forgotten() -> None:
    heard = voice(
        answers("nps", (10, 300), (2, 89), (3, 30), (10, 1))
        + answers("csat", (5, 60), (4, 20), (3, 10), (1, 200)),
        NOW,
    )
    assert heard.nps_90d == 100 * (1 - 2) / 3
    assert heard.nps_latest == 10
    assert heard.csat_90d == 4.0
    assert heard.csat_latest == 3
    # Nothing within LATEST_DAYS: no latest answer either.
    assert voice(answers("csat", (1, 200)), NOW).csat_latest is None


def test_effort_scores_are_kept_but_not_scored() -> None:
    assert voice(answers("ces", (7, 1), (6, 2), (5, 3)), NOW) == voice([], NOW)


BASE = {
    "seats": 50, "active_users_30d": 40, "active_users_prev_30d": 38,
    "mean_daily_active_users_30d": 12.0, "last_usage_at": NOW - timedelta(days=1),
    "tickets_90d": 2, "escalations_90d": 0,
}  # fmt: skip


def test_detractors_lower_mutual_value_and_say_so_in_the_drivers() -> None:
    quiet = score(AccountFacts(account_id="a", as_of=NOW, **BASE), HealthConfig())  # type: ignore[arg-type]
    unhappy = score(
        AccountFacts(account_id="a", as_of=NOW, nps_90d=-40.0, nps_latest=3.0, **BASE),  # type: ignore[arg-type]
        HealthConfig(),
    )
    assert quiet.signals["mutual_value"] == 100.0
    assert unhappy.signals["mutual_value"] == 100.0 * 2 / 3.5
    assert unhappy.score is not None
    assert quiet.score is not None
    assert unhappy.score < quiet.score
    assert "NPS (90d) -40 (at-risk <= 0)" in unhappy.drivers
    assert {"mutual_value.nps", "mutual_value.nps_latest"} <= set(unhappy.coverage.indicators)
    # More evidence, never less coverage.
    assert unhappy.coverage.ratio == quiet.coverage.ratio


HEARD = answers("nps", (10, 200), (2, 80), (9, 40), (10, 5)) + answers("ces", (6, 20), (2, 3))


@pytest.mark.parametrize(
    ("kind", "aggregation", "days", "least", "expected"),
    [
        ("nps", "nps", 90, 3, 100 * (2 - 1) / 3),
        ("nps", "nps", 90, 4, None),  # three answers in 90 days: below the minimum asked
        ("nps", "mean", 30, 1, 10.0),
        ("nps", "latest", 365, 1, 10.0),
        ("nps", "responses", 365, 1, 4.0),
        ("ces", "mean", 90, 2, 4.0),
        ("csat", "latest", 90, 1, None),
        ("csat", "responses", 90, 1, 0.0),
    ],
)
def test_a_survey_source_reads_its_kind_and_window(
    kind, aggregation, days, least, expected
) -> None:
    got = survey_value(
        sorted(HEARD, key=lambda a: a.at), NOW, kind=kind, aggregation=aggregation, days=days,
        min_responses=least,
    )  # fmt: skip
    assert got == (None if expected is None else pytest.approx(expected))
