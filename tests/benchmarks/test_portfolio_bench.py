"""The portfolio benchmark at a tiny size: it builds a book, times the portfolio unfiltered and
filtered, and its table has a row per case with what the answer held."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench import portfolio

TINY = portfolio.Options(accounts=300, backends=("sqlite",))


async def test_a_tiny_run_times_each_case() -> None:
    results, skipped = await portfolio.run_portfolio(TINY)
    assert skipped == []
    [result] = results
    assert (result.backend, result.accounts) == ("sqlite", 300)
    assert set(result.runs) == set(portfolio.CASES)
    assert all(len(runs) == portfolio.RUNS and min(runs) > 0 for runs in result.runs.values())
    assert result.answers["unfiltered"].startswith("300 accounts, 91 days")
    rows = portfolio.table_rows(results, skipped)
    assert [name for name, _ in rows] == [
        "  sqlite: book",
        "  sqlite: portfolio, unfiltered",
        "  sqlite: portfolio, filtered",
    ]


def test_the_book_has_a_past_and_changes_in_the_window() -> None:
    now = datetime.now(UTC)
    book = portfolio.Book.of(1000, now=now)
    assert len(book.accounts) == 1000
    in_window = [row for row in book.health if (now - row["computed_at"]).days < 90]
    assert 2.5 < len(in_window) / 1000 < 3.5  # about 3 changes each
    assert all(row["computed_at"] <= now for row in book.health)
    changed = {row["account_id"] for row in book.arr if (now - row["at"]).days < 90}
    assert 250 < len(changed) < 420  # about a third


def test_the_options_choose_the_size_and_the_backends() -> None:
    chosen = portfolio.Options.parse(["--accounts", "5000", "--backend", "postgresql"])
    assert (chosen.accounts, chosen.backends) == (5000, ("postgresql",))
    assert portfolio.Options.parse(["--backend", "both"]).backends == ("sqlite", "postgresql")
    with pytest.raises(SystemExit):
        portfolio.Options.parse(["--accounts", "0"])
