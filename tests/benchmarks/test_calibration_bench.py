"""The calibration benchmark at a tiny size: it builds a book with a past, backtests and
suggests on it, and its table has a row per backend with the AUC the book's churn gives."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bench import calibration

TINY = calibration.Options(accounts=300, outcomes=150, backends=("sqlite",))


async def test_a_tiny_run_times_the_backtest_and_the_suggestion() -> None:
    started = time.perf_counter()
    results, skipped = await calibration.run_calibration(TINY)
    assert time.perf_counter() - started < 60

    assert skipped == []
    [result] = results
    assert (result.backend, result.accounts, result.outcomes) == ("sqlite", 300, 150)
    assert min(result.build_seconds, result.backtest.seconds, result.suggest.seconds) > 0
    # Every outcome is read once per horizon, and the book's accounts all predate them.
    assert result.backtest.cases_read == 3 * 150
    assert result.suggest.cases_read == 150
    assert [(days, cases) for days, cases, *_ in result.horizons] == [
        (30, 150),
        (60, 150),
        (90, 150),
    ]
    # Churn follows the facts: the score ranks it well above chance at every horizon.
    assert all(auc is not None and auc > 0.6 for _, _, auc, _, _ in result.horizons)
    assert result.suggestion["status"] == "suggested"
    rows = calibration.table_rows(results)
    assert all(len(row) == len(calibration.TABLE_COLUMNS) for row in rows)
    assert calibration.verdict(results).startswith("sqlite ")


def test_the_book_is_deterministic_and_its_churn_follows_engagement() -> None:
    options = calibration.Options(accounts=2_000, outcomes=1_000)
    first, second = calibration.Book.of(options), calibration.Book.of(options)
    assert dict(first.history.outcomes).keys() == dict(second.history.outcomes).keys()
    assert first.churned == second.churned
    outcomes = first.history.outcomes
    engagement = first.history.engagement
    churned = [engagement(a) for a, (_, gone) in outcomes.items() if gone]
    renewed = [engagement(a) for a, (_, gone) in outcomes.items() if not gone]
    assert sum(churned) / len(churned) < sum(renewed) / len(renewed) - 0.2
    oldest = min(at for at, _ in outcomes.values())
    assert first.now - oldest <= timedelta(days=calibration.OUTCOME_DAYS)


def test_the_options_choose_the_size_and_the_backends() -> None:
    smoke = calibration.Options.parse(["--smoke", "--backend", "sqlite"])
    assert (smoke.accounts, smoke.outcomes, smoke.backends) == (
        calibration.SMOKE_ACCOUNTS,
        calibration.SMOKE_OUTCOMES,
        ("sqlite",),
    )
    chosen = calibration.Options.parse(
        ["--accounts", "5000", "--outcomes", "300", "--backend", "postgresql"]
    )
    assert (chosen.accounts, chosen.outcomes, chosen.backends) == (5000, 300, ("postgresql",))
    both = calibration.Options.parse(["--backend", "both", "--profile"])
    assert (both.backends, both.profile) == (("sqlite", "postgresql"), 25)
    with pytest.raises(SystemExit):
        calibration.Options.parse(["--accounts", "5", "--outcomes", "10"])
