"""Usage depth in the facts store, on SQLite and PostgreSQL: the events of each user's active
days and the per-feature roll-up are folded, read as events per window and key-feature users,
pruned with the other usage, and carried both ways by migration 0027."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import pytest
from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from connector.model import AccountAttributes, NormalisedEvent, Usage
from signals.config import FactReads, ProductEventsSource
from testkit import bare_accounts, in_thread
from webhooks.store import accounts, facts
from webhooks.store.migrate import alembic_config
from webhooks.store.models import Account, FeatureMonth, SourceKind, UsageMonth, core_table

NOW = datetime(2028, 3, 1, 12, tzinfo=UTC)
TODAY = NOW.date()
KEY = ("default", "hubspot", "42")


def used(day: date, user: str, feature: str | None = None, *, hour: int = 12) -> Usage:
    return Usage(
        account="42", at=datetime.combine(day, time(hour), tzinfo=UTC), user=user, feature=feature
    )


async def fold(sessions, events: Sequence[NormalisedEvent], *, batch: int = 1000) -> None:
    """Through the worker's path, `batch` events a transaction."""
    for start in range(0, len(events), batch):
        async with sessions() as session, session.begin():
            locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
            await facts.fold(
                session,
                events=[(locked[KEY], e) for e in events[start : start + batch]],
                now=NOW,
            )
            await accounts.save(session, accounts=list(locked.values()))


async def account_id(sessions) -> int:
    async with sessions() as session:
        return (await accounts.lock_accounts(session, keys=[KEY], now=NOW))[KEY].id


async def snapshot(
    sessions,
    *,
    key_features: Sequence[str] = (),
    reads: FactReads | None = None,
    as_of: datetime = NOW,
):
    """The account's facts at `as_of` (historical before NOW), reading `reads`, or only the
    key features given."""
    async with sessions() as session:
        account = (await accounts.lock_accounts(session, keys=[KEY], now=NOW))[KEY]
        found = await facts.read_facts(
            session,
            accounts=[account],
            as_of=as_of,
            historical=as_of != NOW,
            reads=FactReads(key_features=tuple(key_features)) if reads is None else reads,
        )
        return found[account.id]


def expected_events(events: Sequence[Usage], first: date, last: date | None) -> float:
    """Events of the days `first`..`last` as the roll-up estimates them: each user's events of
    a month spread evenly over that user's active days of the month."""
    per_month: Counter[tuple[str, date]] = Counter()
    days: defaultdict[tuple[str, date], set[date]] = defaultdict(set)
    for event in events:
        day = event.at.date()
        per_month[(event.user, day.replace(day=1))] += 1
        days[(event.user, day.replace(day=1))].add(day)
    total = 0.0
    for key, count in per_month.items():
        inside = [d for d in days[key] if d >= first and (last is None or d <= last)]
        total += count * len(inside) / len(days[key])
    return total


# --- events per window ----------------------------------------------------------------------------


async def test_events_of_a_month_partly_in_the_window_count_by_their_days(sessions) -> None:
    # a: 6 events on 3 days of February; on 20 March the 30 days began on 20 February, so
    # only a's third day is recent.
    events = [
        *(used(date(2028, 2, 2), "a") for _ in range(4)),
        used(date(2028, 2, 10), "a"),
        used(date(2028, 2, 20), "a"),
        *(used(date(2028, 3, 1), "b") for _ in range(3)),
    ]
    await fold(sessions, events)
    async with sessions() as session:
        found = await facts._usage(session, [await account_id(sessions)], date(2028, 3, 20))
    [usage] = found.values()
    # a's 6 events over 3 days: 2 a day as far as anyone knows.
    assert usage.events_30d == pytest.approx(2 + 3)
    assert usage.events_prev_30d == pytest.approx(4)
    snap = await snapshot(sessions)
    assert snap.usage_events_30d == pytest.approx(9.0)
    assert snap.active_users_30d == 2


async def test_events_equal_the_even_spread_reference_on_a_random_history(sessions) -> None:
    rng = random.Random(25)
    start = date(2027, 11, 1)
    events = [
        used(start + timedelta(days=rng.randrange(150)), f"u{rng.randrange(8)}",
             hour=rng.randrange(24))
        for _ in range(3000)
    ]  # fmt: skip
    rng.shuffle(events)
    # Batches of 97: the same row grows across many transactions.
    await fold(sessions, events, batch=97)
    ids = [await account_id(sessions)]
    async with sessions() as session:
        for offset in range(0, 150, 11):
            today = start + timedelta(days=offset)
            for closed in (False, True):
                usage = (await facts._usage(session, ids, today, closed=closed))[ids[0]]
                recent_last = today if closed else None
                assert usage.events_30d == pytest.approx(
                    expected_events(events, today - timedelta(days=29), recent_last)
                ), (today, closed)
                assert usage.events_prev_30d == pytest.approx(
                    expected_events(events, today - timedelta(days=59), today - timedelta(days=30))
                ), today
        stored = await session.scalar(
            select(UsageMonth.events.label("n")).where(UsageMonth.account_id == ids[0]).limit(1)
        )
        total = sum(n for (n,) in await session.execute(select(UsageMonth.events)) if n is not None)
    assert stored is not None
    assert total == len(events)


async def test_months_from_before_events_were_counted_are_no_data_not_zero(sessions) -> None:
    await fold(sessions, [used(date(2028, 1, 20), "a"), used(date(2028, 2, 25), "a")])
    async with sessions() as session, session.begin():
        # As migration 0027 leaves the months it found.
        await session.execute(
            text("UPDATE usage_months SET events = NULL WHERE month = :month"),
            {"month": date(2028, 1, 1)},
        )
    # A later event of that month keeps it unknown: a part of a count is not the count.
    await fold(sessions, [used(date(2028, 1, 22), "b")])
    snap = await snapshot(sessions)
    assert snap.usage_events_30d == pytest.approx(1.0)  # February: counted
    assert snap.usage_events_prev_30d is None  # January: not known
    async with sessions() as session:
        january = await session.scalar(
            select(UsageMonth.events).where(
                UsageMonth.month == date(2028, 1, 1), UsageMonth.user == "b"
            )
        )
    assert january == 1  # a month begun after the upgrade counts from its start


# --- features -------------------------------------------------------------------------------------


async def test_features_are_rolled_up_per_user_and_month_without_regard_to_case(sessions) -> None:
    await fold(
        sessions,
        [
            used(date(2028, 2, 20), "a", "Report Exported"),
            used(date(2028, 2, 21), "a", "report  exported"),
            used(date(2028, 2, 21), "a", " REPORT EXPORTED "),
            used(date(2028, 2, 21), "b", "Dashboard Viewed"),
            used(date(2028, 2, 22), "c"),
            used(date(2028, 2, 22), "c", "   "),
        ],
    )
    async with sessions() as session:
        rows = set(
            await session.execute(
                select(FeatureMonth.feature, FeatureMonth.user, FeatureMonth.days,
                       FeatureMonth.events)
            )
        )  # fmt: skip
        kinds = set(await session.scalars(select(SourceKind.kind)))
    assert rows == {
        ("report exported", "a", 1 << 19 | 1 << 20, 3),
        ("dashboard viewed", "b", 1 << 20, 1),
    }
    assert {"usage", "feature"} <= kinds


async def test_key_feature_users_are_the_distinct_users_of_any_key_feature_in_30_days(
    sessions,
) -> None:
    await fold(
        sessions,
        [
            # The source names features well before the window: a zero is evidence.
            used(date(2027, 12, 1), "z", "Setup"),
            used(date(2028, 2, 20), "a", "Report Exported"),
            used(date(2028, 2, 21), "a", "Dashboard Viewed"),
            used(date(2028, 2, 25), "b", "dashboard viewed"),
            used(date(2028, 1, 25), "c", "Report Exported"),  # before the 30 days
            used(date(2028, 2, 26), "d", "Login"),
            used(date(2028, 3, 4), "e", "Report Exported"),  # later: recent while open
        ],
    )
    keys = ("report exported", "dashboard viewed")
    snap = await snapshot(sessions, key_features=keys)
    assert snap.key_feature_users_30d == 3  # a, b, e
    assert snap.active_users_30d == 4  # a, b, d, e
    assert (await snapshot(sessions, key_features=("setup",))).key_feature_users_30d == 0
    assert (await snapshot(sessions)).key_feature_users_30d is None  # no key features
    past = await snapshot(sessions, key_features=keys, as_of=datetime(2028, 2, 28, tzinfo=UTC))
    assert past.key_feature_users_30d == 2  # a, b; c's January 25 is 34 days back


async def test_a_source_that_never_names_features_has_no_key_feature_data(sessions) -> None:
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
        old = NOW - timedelta(days=200)
        await facts.fold(
            session,
            events=[(locked[KEY], AccountAttributes(account="42", at=old, attributes={}))],
            now=old,
        )
        await accounts.save(session, accounts=list(locked.values()))
    await fold(sessions, [used(date(2027, 9, 1), "a"), used(date(2028, 2, 25), "a")])
    snap = await snapshot(sessions, key_features=("report exported",))
    assert snap.active_users_30d == 1
    assert snap.key_feature_users_30d is None


def source(aggregation: str, *features: str, days: int = 30) -> ProductEventsSource:
    return ProductEventsSource.model_validate(
        {"features": features, "aggregation": aggregation, "days": days}
    )


async def test_custom_sources_aggregate_feature_usage_per_window(sessions) -> None:
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[KEY], now=NOW)
        seats = AccountAttributes(
            account="42", at=NOW - timedelta(days=300), attributes={"seats": "4"}
        )
        await facts.fold(session, events=[(locked[KEY], seats)], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))
    await fold(
        sessions,
        [
            used(date(2027, 9, 1), "z", "Setup"),  # names features long before the windows
            *(used(date(2028, 2, 20), "a", "Report Exported") for _ in range(3)),
            used(date(2028, 2, 25), "b", "report exported"),
            used(date(2028, 2, 26), "b", "Dashboard Shared"),
            used(date(2028, 2, 26), "c", "Search"),
            used(date(2027, 12, 20), "d", "Report Exported"),  # within 90 days, not 30
        ],
    )
    wanted = {
        "events": source("events", "Report Exported"),
        "users": source("users", "Report Exported", "Dashboard Shared"),
        "per_user": source("events_per_user", "Report Exported"),
        "per_seat": source("events_per_seat", "Report Exported"),
        "users_per_seat": source("users_per_seat", "Report Exported", days=90),
        "share": source("share_of_active_users", "Report Exported"),
        "unused": source("events", "Never Used"),
    }
    snap = await snapshot(sessions, reads=FactReads(sources=tuple(wanted.values())))
    got = {name: snap.custom[wanted_source.key] for name, wanted_source in wanted.items()}
    assert got == {
        "events": 4.0,
        "users": 2.0,
        "per_user": 2.0,
        "per_seat": 1.0,
        "users_per_seat": 3 / 4,
        "share": 2 / 3,  # a and b of a, b, c
        "unused": 0.0,  # the source names features: zero is evidence
    }


async def test_custom_sources_are_no_data_where_no_feature_was_ever_named(sessions) -> None:
    await fold(sessions, [used(date(2028, 2, 25), "a")])
    wanted = source("users", "Report Exported")
    snap = await snapshot(sessions, reads=FactReads(sources=(wanted,)))
    assert snap.custom == {wanted.key: None}


async def test_pruning_removes_feature_months_with_the_usage_months(sessions) -> None:
    await fold(
        sessions,
        [used(date(2027, 12, 5), "a", "Export"), used(date(2028, 2, 5), "a", "Export")],
    )
    async with sessions() as session, session.begin():
        pruned = {
            model: await facts.prune_usage(
                session, before=date(2028, 1, 15), limit=100, model=model
            )
            for model in facts.USAGE_ROLL_UPS
        }
    assert pruned == {UsageMonth: 1, FeatureMonth: 1}
    async with sessions() as session:
        left = set(await session.scalars(select(FeatureMonth.month)))
    assert left == {date(2028, 2, 1)}


# --- migration 0027 -------------------------------------------------------------------------------


async def test_migration_0027_adds_counts_and_features_and_takes_them_back(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0026")
    engine = create_async_engine(empty_database_url)
    held = [
        {"account_id": 1, "month": date(2028, 1, 1), "user": f"u{n}", "days": n + 1}
        for n in range(20)
    ]
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(core_table(Account)), bare_accounts((1,), created_at=NOW)
            )
            await connection.execute(
                text(
                    'INSERT INTO usage_months (account_id, month, "user", days) '
                    "VALUES (:account_id, :month, :user, :days)"
                ),
                held,
            )
        in_thread(command.upgrade, config, "20261205_0027")
        async with engine.connect() as connection:
            rows = list(
                await connection.execute(
                    select(UsageMonth.user, UsageMonth.days, UsageMonth.events).order_by(
                        UsageMonth.days
                    )
                )
            )
            assert rows == [(row["user"], row["days"], None) for row in held]
            if connection.dialect.name == "sqlite":
                for table in ("usage_months", "feature_months"):
                    ddl = await connection.scalar(
                        text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
                    )
                    assert "WITHOUT ROWID" in ddl, table
        in_thread(command.downgrade, config, "20261205_0026")
        async with engine.connect() as connection:
            back = list(
                await connection.execute(
                    text('SELECT "user", days FROM usage_months ORDER BY days')
                )
            )
            assert back == [(row["user"], row["days"]) for row in held]
            if connection.dialect.name == "sqlite":
                ddl = await connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'usage_months'")
                )
                assert "WITHOUT ROWID" in ddl
                assert "events" not in ddl
    finally:
        await engine.dispose()
