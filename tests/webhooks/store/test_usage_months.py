"""Usage kept as monthly bitmasks (usage_months) on SQLite and PostgreSQL: every read gives what
one row per user and day gave (distinct users and user-days per window, the last day of use up
to a moment, the first day of use), and the migration carries the days both ways."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

import pytest
from alembic import command
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from connector.model import AccountAttributes, Usage
from testkit import bare_accounts, in_thread
from webhooks.store import accounts, facts
from webhooks.store.migrate import alembic_config
from webhooks.store.models import Account, AccountRow, UsageMonth, core_table

# 2028 is a leap year: the 60 days to 1 March reach into January across 29 February.
LEAP_MARCH = date(2028, 3, 1)
NOW = datetime(2028, 3, 1, 12, tzinfo=UTC)

Day = tuple[date, str]


def at_noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


async def store(sessions, days: Mapping[str, Iterable[Day]]) -> dict[str, AccountRow]:
    """Fold each account's (day, user) usage through the worker's path; the accounts back."""
    keys = {crm_id: ("default", "hubspot", crm_id) for crm_id in days}
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=keys.values(), now=NOW)
        events = [
            (locked[keys[crm_id]], Usage(account=crm_id, at=at_noon(day), user=user))
            for crm_id, used in days.items()
            for day, user in used
        ]
        # Several events a day and the same day twice: one bit each.
        random.Random(3).shuffle(events)
        await facts.fold(session, events=events + events[: len(events) // 3], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))
    return {crm_id: locked[key] for crm_id, key in keys.items()}


def day_rows_usage(used: Iterable[Day], today: date, *, closed: bool) -> tuple[int, int, int]:
    """What the per-day table gave: users in (today-30, today], users in (today-60, today-30],
    user-days in the first; open-ended (not `closed`), later days count as recent."""
    last_30, last_60 = today - timedelta(days=30), today - timedelta(days=60)
    window = {(d, u) for d, u in used if d > last_60 and (not closed or d <= today)}
    recent = {(d, u) for d, u in window if d > last_30}
    return (
        len({u for _, u in recent}),
        len({u for d, u in window if d <= last_30}),
        len(recent),
    )


def day_rows_last_use(used: Iterable[Day], as_of: datetime) -> datetime | None:
    days = [d for d, _ in used if d <= as_of.date()]
    if not days:
        return None
    return min(datetime.combine(max(days) + timedelta(days=1), time(), tzinfo=UTC), as_of)


async def usage_of(sessions, ids: list[int], today: date, *, closed: bool):
    """Users in each window and user-days (the events are test_usage_depth's)."""
    async with sessions() as session:
        found = await facts._usage(session, ids, today, closed=closed)
    return {account_id: tuple(usage)[:3] for account_id, usage in found.items()}


# --- by hand, around month ends -----------------------------------------------------------------

BY_HAND: dict[str, list[Day]] = {
    "1": [
        (date(2028, 2, 29), "a"),  # leap day: recent
        (date(2028, 3, 1), "a"),  # today: recent
        (date(2028, 1, 31), "a"),  # exactly 30 days back: the earlier window
        (date(2028, 1, 1), "b"),  # exactly 60 days back: in neither
        (date(2028, 1, 2), "b"),  # the earlier window's first day
        (date(2028, 3, 5), "c"),  # after today: recent only while the window is open
        (date(2027, 12, 31), "d"),  # last year
        (date(2027, 12, 5), "e"),  # the first day of use
    ],
}


async def test_windows_across_january_february_march_of_a_leap_year(sessions) -> None:
    found = await store(sessions, BY_HAND)
    ids = [found["1"].id]
    open_ = await usage_of(sessions, ids, LEAP_MARCH, closed=False)
    closed = await usage_of(sessions, ids, LEAP_MARCH, closed=True)
    # Recent: a (29 Feb, 1 Mar) and c (5 Mar); earlier: a (31 Jan), b (2 Jan).
    assert open_[ids[0]] == (2, 2, 3)
    assert closed[ids[0]] == (1, 2, 2)


async def test_a_window_ending_on_the_last_day_of_a_31_day_month_starts_in_that_month(
    sessions,
) -> None:
    # 31 January - 30 days = 1 January: the recent window is 2..31 January, the earlier one
    # 3 December..1 January.
    found = await store(
        sessions,
        {"1": [(date(2028, 1, 1), "a"), (date(2028, 1, 2), "b"), (date(2028, 1, 31), "b"),
               (date(2027, 12, 3), "c"), (date(2027, 12, 2), "d")]},
    )  # fmt: skip
    ids = [found["1"].id]
    assert (await usage_of(sessions, ids, date(2028, 1, 31), closed=True)) == {ids[0]: (1, 2, 2)}


async def test_last_use_up_to_a_moment_is_the_end_of_that_day_capped_at_the_moment(
    sessions,
) -> None:
    found = await store(sessions, BY_HAND)
    account_id = found["1"].id
    moments = {
        datetime(2028, 2, 29, 12, tzinfo=UTC): datetime(2028, 2, 29, 12, tzinfo=UTC),
        datetime(2028, 3, 3, tzinfo=UTC): datetime(2028, 3, 2, tzinfo=UTC),
        datetime(2028, 1, 15, tzinfo=UTC): datetime(2028, 1, 3, tzinfo=UTC),
        datetime(2028, 1, 1, 6, tzinfo=UTC): datetime(2028, 1, 1, 6, tzinfo=UTC),
        datetime(2028, 4, 30, tzinfo=UTC): datetime(2028, 3, 6, tzinfo=UTC),
    }
    async with sessions() as session:
        for as_of, expected in moments.items():
            assert await facts._last_usage_until(session, [account_id], as_of) == {
                account_id: expected
            }, as_of
        assert (
            await facts._last_usage_until(session, [account_id], at_noon(date(2027, 11, 30))) == {}
        )


async def test_first_record_is_the_earliest_day_any_user_was_active(sessions) -> None:
    found = await store(sessions, BY_HAND)
    async with sessions() as session:
        first = await facts.first_records(session, accounts=[found["1"]])
    assert first == {found["1"].id: datetime(2027, 12, 5, tzinfo=UTC)}


async def test_a_backtest_reads_the_past_windows_and_last_use(sessions) -> None:
    found = await store(sessions, BY_HAND)
    async with sessions() as session, session.begin():
        # The usage source and the account go back further than the windows.
        await facts.fold(
            session,
            events=[
                (found["1"], AccountAttributes(account="1", at=at_noon(date(2027, 1, 1)),
                                               attributes={}))
            ],
            now=at_noon(date(2027, 1, 1)),
        )  # fmt: skip
        await accounts.save(session, accounts=[found["1"]])
    async with sessions() as session:
        [account] = await accounts.read_rows(session, accounts.select_rows())
        as_of = datetime(2028, 2, 29, 18, tzinfo=UTC)
        snap = (await facts.read_facts(session, accounts=[account], as_of=as_of, historical=True))[
            account.id
        ]
    # On 29 February the recent window is 31 Jan..29 Feb: a twice (c's 5 March is later);
    # the earlier one 1..30 January: b twice (d's 31 December is 60 days back).
    assert (snap.active_users_30d, snap.active_users_prev_30d) == (1, 1)
    assert snap.mean_daily_active_users_30d == pytest.approx(2 / 30)
    assert snap.last_usage_at == as_of


# --- the same answers as one row per day, on a random history -----------------------------------


async def test_reads_equal_the_per_day_answers_on_a_random_history(sessions) -> None:
    rng = random.Random(24)
    start = date(2027, 10, 1)
    history: dict[str, list[Day]] = {
        str(n): [
            (start + timedelta(days=rng.randrange(200)), f"u{rng.randrange(6)}")
            for _ in range(rng.randrange(1, 120))
        ]
        for n in range(12)
    }
    found = await store(sessions, history)
    ids = [account.id for account in found.values()]
    crm_of = {account.id: crm_id for crm_id, account in found.items()}
    for offset in range(0, 200, 7):
        today = start + timedelta(days=offset)
        for closed in (False, True):
            got = await usage_of(sessions, ids, today, closed=closed)
            expected = {
                account_id: day_rows_usage(history[crm_of[account_id]], today, closed=closed)
                for account_id in ids
            }
            assert {i: got.get(i, (0, 0, 0)) for i in ids} == expected, (today, closed)
        as_of = at_noon(today) + timedelta(hours=rng.randrange(-12, 12))
        async with sessions() as session:
            last = await facts._last_usage_until(session, ids, as_of)
        assert last == {
            i: found_at
            for i in ids
            if (found_at := day_rows_last_use(history[crm_of[i]], as_of)) is not None
        }, as_of
    async with sessions() as session:
        first = await facts.first_records(session, accounts=list(found.values()))
    assert first == {
        found[crm_id].id: datetime.combine(min(d for d, _ in used), time(), tzinfo=UTC)
        for crm_id, used in history.items()
    }


# --- writing and pruning ------------------------------------------------------------------------


async def test_one_row_per_user_and_month_holding_each_day_once(sessions) -> None:
    found = await store(sessions, BY_HAND)
    await store(sessions, {"1": [(date(2028, 2, 1), "a"), (date(2028, 2, 29), "a")]})
    async with sessions() as session:
        rows = {
            (month, user): days
            for month, user, days in await session.execute(
                select(UsageMonth.month, UsageMonth.user, UsageMonth.days).where(
                    UsageMonth.account_id == found["1"].id
                )
            )
        }
    assert rows[(date(2028, 2, 1), "a")] == 1 << 28 | 1
    assert rows[(date(2028, 1, 1), "a")] == 1 << 30
    assert rows[(date(2028, 1, 1), "b")] == 0b11
    assert len(rows) == 7


async def test_pruning_deletes_whole_months_before_the_date_in_batches(sessions) -> None:
    await store(sessions, BY_HAND)
    deleted = []
    while True:
        async with sessions() as session, session.begin():
            count = await facts.prune_usage(session, before=date(2028, 2, 15), limit=2)
        deleted.append(count)
        if count < 2:
            break
    async with sessions() as session:
        left = set(await session.execute(select(UsageMonth.month, UsageMonth.user)))
    # December (d, e) and January (a, b) went; February (a) and March (a, c) stay.
    assert deleted == [2, 2, 0]
    assert left == {(date(2028, 2, 1), "a"), (date(2028, 3, 1), "a"), (date(2028, 3, 1), "c")}


# --- the migration, both ways -------------------------------------------------------------------


async def test_migrations_roll_days_into_months_and_back(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0020")
    rng = random.Random(21)
    days = sorted(
        {
            (
                n,
                date(2027, 12, 1) + timedelta(days=rng.randrange(100)),
                f"u{rng.randrange(5)}",
            )
            for n in (1, 2, 3)
            for _ in range(150)
        }
    )
    engine = create_async_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(core_table(Account)), bare_accounts((1, 2, 3), created_at=NOW)
            )
            await connection.execute(
                text('INSERT INTO usage_days (account_id, day, "user") VALUES (:a, :d, :u)'),
                [{"a": a, "d": d, "u": u} for a, d, u in days],
            )
        # Through 0023 too: SQLite rebuilds the table WITHOUT ROWID, keeping every row.
        in_thread(command.upgrade, config, "20261205_0023")
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                ddl = await connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'usage_months'")
                )
                assert "WITHOUT ROWID" in ddl
            months = list(
                await connection.execute(
                    select(
                        UsageMonth.account_id, UsageMonth.month, UsageMonth.user, UsageMonth.days
                    )
                )
            )
            assert (await connection.scalar(select(func.max(UsageMonth.days))) or 0) < 2**31
        assert (
            sorted(
                (a, month + timedelta(days=bit), user)
                for a, month, user, bits in months
                for bit in range(31)
                if bits >> bit & 1
            )
            == days
        )
        assert len(months) < len(days) / 2
        in_thread(command.downgrade, config, "20261205_0020")
        async with engine.connect() as connection:
            back = await connection.execute(
                text('SELECT account_id, day, "user" FROM usage_days ORDER BY 1, 2, 3')
            )
            assert [(a, _date(d), u) for a, d, u in back] == days
    finally:
        await engine.dispose()


def _date(value: date | str) -> date:
    # A raw SQLite query hands dates back as text.
    return value if isinstance(value, date) else date.fromisoformat(value)


def test_bits_cover_exactly_the_days_asked() -> None:
    feb = date(2028, 2, 1)
    assert facts._days_between(feb, None, None) == (1 << 29) - 1
    assert facts._days_between(feb, date(2028, 2, 29), None) == 1 << 28
    assert facts._days_between(feb, date(2028, 1, 5), date(2028, 2, 2)) == 0b11
    assert facts._days_between(feb, date(2028, 3, 1), None) == 0
    assert facts._days_between(feb, None, date(2028, 1, 31)) == 0
