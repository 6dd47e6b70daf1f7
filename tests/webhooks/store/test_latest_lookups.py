"""Each account's latest history row at a moment (the trend's score 30 days ago, the band
hysteresis resumes from, the history page's starting point, ARR a year ago), read one index
probe per account: the same answers as the latest row of the whole history, on a seeded random
history with ties, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from testkit import bare_accounts
from webhooks.store import account_views, accounts, facts
from webhooks.store.models import Account, AttributeChange, HealthSnapshot, core_table

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNTS = range(1, 16)
VERSIONS = ("v1", "v2", None)


def some_moment(rng: random.Random) -> datetime:
    # Few distinct moments: rows of one account often share one (the highest id wins).
    return NOW - timedelta(days=rng.randrange(60) * 7)


@pytest.fixture
async def history(sessions) -> tuple[list[HealthSnapshot], list[AttributeChange]]:
    rng = random.Random(7)
    async with sessions() as session, session.begin():
        await session.execute(insert(core_table(Account)), bare_accounts(ACCOUNTS, created_at=NOW))
        await session.execute(
            insert(core_table(HealthSnapshot)),
            [
                {"account_id": n, "computed_at": some_moment(rng), "score": rng.randrange(101),
                 "band": rng.choice(("healthy", "neutral", "at_risk")),
                 "config_version": rng.choice(VERSIONS)}
                # Account 1 has no history at all.
                for n in ACCOUNTS[1:]
                for _ in range(rng.randrange(1, 220))
            ],
        )  # fmt: skip
        await session.execute(
            insert(core_table(AttributeChange)),
            [
                {"account_id": n, "name": rng.choice(("arr", "seats")), "at": some_moment(rng),
                 "value": str(rng.randrange(1000))}
                for n in ACCOUNTS[1:]
                for _ in range(rng.randrange(1, 220))
            ],
        )  # fmt: skip
    async with sessions() as session:
        snapshots = list((await session.execute(select(HealthSnapshot))).scalars())
        changes = list((await session.execute(select(AttributeChange))).scalars())
    return snapshots, changes


def latest_of(rows, *, time: str) -> dict[int, Any]:
    """The whole history read: per account, the row with the latest time, then id."""
    return {row.account_id: row for row in sorted(rows, key=lambda r: (getattr(r, time), r.id))}


def moments() -> list[datetime]:
    rng = random.Random(11)
    return [NOW - timedelta(days=rng.randrange(-7, 430)) for _ in range(6)] + [
        NOW - timedelta(days=30 * 7),  # exactly on a recorded moment
    ]


async def test_scores_at_or_before_equal_the_latest_row_of_the_whole_history(
    sessions, history
) -> None:
    snapshots, _ = history
    versions = {n: ("v1", "v2")[n % 2] for n in ACCOUNTS}
    async with sessions() as session:
        for at in moments():
            upto = [r for r in snapshots if r.computed_at <= at]
            expected = latest_of(upto, time="computed_at")
            assert await accounts.scores_at_or_before(session, account_ids=ACCOUNTS, at=at) == {
                n: row.score for n, row in expected.items()
            }, at
            legacy = latest_of(
                [r for r in upto if r.config_version in (versions[r.account_id], None)],
                time="computed_at",
            )
            assert await accounts.scores_at_or_before(
                session, account_ids=ACCOUNTS, at=at, versions=versions
            ) == {n: row.score for n, row in legacy.items()}, at
            same = latest_of(
                [r for r in upto if r.config_version == versions[r.account_id]], time="computed_at"
            )
            assert await accounts.bands_under(session, versions=versions, at=at) == {
                n: row.band for n, row in same.items()
            }, at


async def test_history_starts_from_the_row_in_force_at_since(sessions, history) -> None:
    snapshots, _ = history
    async with sessions() as session:
        for since in moments():
            found = await account_views.history(session, account_ids=ACCOUNTS, since=since)
            before = [r for r in snapshots if r.computed_at < since]
            expected = latest_of(before, time="computed_at")
            seeds = {
                n: (points[0].score, points[0].band, points[0].config_version)
                for n, points in found.items()
                if points[0].at == since
            }
            assert seeds == {
                n: (row.score, row.band, row.config_version) for n, row in expected.items()
            }, since


async def test_attribute_at_a_moment_equals_the_latest_change_of_the_whole_history(
    sessions, history
) -> None:
    _, changes = history
    async with sessions() as session:
        for at in moments():
            for name in ("arr", "seats"):
                upto = [r for r in changes if r.name == name and r.at <= at]
                expected = latest_of(upto, time="at")
                assert await facts._attribute_at(session, ACCOUNTS, name, at) == {
                    n: row.value for n, row in expected.items()
                }, (name, at)
