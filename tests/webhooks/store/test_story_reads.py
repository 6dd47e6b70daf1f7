"""The account story's reads on SQLite and PostgreSQL: the configuration in force at a moment
and the versions of a window (another connection's own changes left out), contacts in order,
counts per UTC day, active people per week from the day bits, and events bounded per kind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from signals.config import Bands, HealthConfig
from testkit import bare_accounts
from webhooks.store import account_story, configs
from webhooks.store.models import (
    Account,
    CollaborationFact,
    ContactFact,
    InteractionFact,
    TicketFact,
    UsageMonth,
    core_table,
)

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)  # a Wednesday


async def seed(sessions, model, rows) -> None:
    async with sessions() as session, session.begin():
        await session.execute(insert(core_table(Account)), bare_accounts([1, 2], created_at=NOW))
        if rows:
            await session.execute(insert(core_table(model)), rows)


async def test_the_configuration_in_force_is_the_newest_stored_by_then(sessions) -> None:
    async with sessions() as session, session.begin():
        assert await account_story.config_at(session, at=NOW) == (None, HealthConfig())
        for days_ago, healthy_min in ((30, 71), (10, 72)):
            await configs.save(
                session,
                config=HealthConfig(bands=Bands(healthy_min=healthy_min)),
                author="alice",
                comment=f"healthy from {healthy_min}",
                now=NOW - timedelta(days=days_ago),
            )
    async with sessions() as session:
        for days_ago, expected in ((40, None), (20, 71), (10, 72), (0, 72)):
            _, config = await account_story.config_at(session, at=NOW - timedelta(days=days_ago))
            assert (None if expected is None else config.bands.healthy_min) == expected, days_ago


async def test_the_changes_of_a_window_leave_out_another_connections_own(sessions) -> None:
    async with sessions() as session, session.begin():
        previous = None
        for days_ago, scope in ((100, None), (20, None), (15, "emea"), (5, "default")):
            version = await configs.insert_version(
                session,
                config=HealthConfig(bands=Bands(healthy_min=60 + days_ago / 10)),
                previous_id=previous,
                author="alice",
                comment="" if scope else "global",
                now=NOW - timedelta(days=days_ago),
                scope=scope,
            )
            previous = version.id
    async with sessions() as session:
        found = await account_story.config_changes(
            session, connection="default", since=NOW - timedelta(days=90), until=NOW
        )
    assert [(c.version, c.comment) for c in found] == [(2, "global"), (4, "")]
    assert found[0].at == NOW - timedelta(days=20)


async def test_contacts_come_executives_first_then_by_latest_interaction(sessions) -> None:
    def contact(
        name: str, *, executive: bool = False, left_days: int | None = None
    ) -> dict[str, object]:
        return {
            "account_id": 1, "contact": name, "title": name.title(), "executive": executive,
            "left_at": None if left_days is None else NOW - timedelta(days=left_days),
            "updated_at": NOW, "first_seen_at": NOW - timedelta(days=200),
        }  # fmt: skip

    await seed(
        sessions,
        ContactFact,
        [
            contact("ann"), contact("ben", executive=True), contact("cy", executive=True),
            contact("dee"), contact("eve", left_days=30), contact("fay", left_days=120),
            {**contact("ann"), "account_id": 2},
        ],
    )  # fmt: skip
    async with sessions() as session, session.begin():
        await session.execute(
            insert(core_table(InteractionFact)),
            [
                {"account_id": 1, "at": NOW - timedelta(days=days), "channel": "email",
                 "direction": "ours", "contact": name}
                for name, days in (("ann", 3), ("ann", 50), ("cy", 8), ("dee", 400), ("eve", 40),
                                   ("ben", 20))
            ],
        )  # fmt: skip
    async with sessions() as session:
        found, total = await account_story.contacts(
            session,
            account_id=1,
            left_since=NOW - timedelta(days=90),
            interactions_since=NOW - timedelta(days=365),
            limit=4,
        )
    assert [c.contact for c in found] == ["cy", "ben", "ann", "eve"]
    assert total == 5  # dee is there (her last interaction too old to show); fay left long ago
    cy, _, ann, eve = found
    assert (cy.executive, cy.title, cy.last_interaction_at) == (True, "Cy", NOW - timedelta(days=8))
    assert ann.last_interaction_at == NOW - timedelta(days=3)
    assert eve.left_at == NOW - timedelta(days=30)


async def test_counts_fall_on_their_utc_day(sessions) -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    await seed(
        sessions,
        InteractionFact,
        [
            {"account_id": 1, "at": late, "channel": "call", "direction": "customer"},
            {"account_id": 1, "at": late + timedelta(hours=1), "channel": "call",
             "direction": "ours"},
            {"account_id": 1, "at": NOW - timedelta(days=40), "channel": "call",
             "direction": "ours"},
            {"account_id": 2, "at": late, "channel": "call", "direction": "ours"},
        ],
    )  # fmt: skip
    async with sessions() as session, session.begin():
        await session.execute(
            insert(core_table(TicketFact)),
            [
                {"account_id": 1, "ticket": t, "opened_at": late, "priority": p,
                 "updated_at": late}
                for t, p in (("T-1", "low"), ("T-2", "urgent"), ("T-3", "high"))
            ],
        )  # fmt: skip
        await session.execute(
            insert(core_table(CollaborationFact)), [{"account_id": 1, "at": late, "kind": "beta"}]
        )
    async with sessions() as session:
        days = await account_story.daily_counts(
            session, account_id=1, since=NOW - timedelta(days=28), until=NOW
        )
    assert set(days) == {date(2026, 11, 30), date(2026, 12, 1)}
    first, second = days[date(2026, 11, 30)], days[date(2026, 12, 1)]
    assert (first.interactions_customer, first.interactions_ours) == (1, 0)
    assert (first.tickets, first.escalations, first.collaborations) == (3, 2, 1)
    assert (second.interactions_customer, second.interactions_ours) == (0, 1)


async def test_active_people_per_week_come_from_the_day_bits(sessions) -> None:
    def bits(*days: int) -> int:
        return sum(1 << (day - 1) for day in days)

    await seed(
        sessions,
        UsageMonth,
        [
            # Week of Mon 23 Nov: u1 on the 29th (Sunday), u2 on the 23rd; week of 30 Nov: u1
            # on the 30th and on 2 Dec; u3 after `until`.
            {"account_id": 1, "month": date(2026, 11, 1), "user": "u1", "days": bits(29, 30),
             "events": 3},
            {"account_id": 1, "month": date(2026, 11, 1), "user": "u2", "days": bits(2, 23),
             "events": 2},
            {"account_id": 1, "month": date(2026, 12, 1), "user": "u1", "days": bits(2),
             "events": 1},
            {"account_id": 1, "month": date(2026, 12, 1), "user": "u3", "days": bits(3),
             "events": 1},
            {"account_id": 2, "month": date(2026, 11, 1), "user": "u9", "days": bits(23),
             "events": 1},
        ],
    )  # fmt: skip
    weeks = [date(2026, 11, 16), date(2026, 11, 23), date(2026, 11, 30)]
    async with sessions() as session:
        found = await account_story.weekly_active_users(
            session, account_id=1, weeks=weeks, until=date(2026, 12, 2)
        )
    assert found == {date(2026, 11, 16): 0, date(2026, 11, 23): 2, date(2026, 11, 30): 1}


async def test_events_are_the_newest_of_each_kind_within_the_window(sessions) -> None:
    await seed(
        sessions,
        CollaborationFact,
        [
            {"account_id": 1, "at": NOW - timedelta(days=days), "kind": "feedback"}
            for days in (1, 2, 3, 4, 100)
        ],
    )
    async with sessions() as session:
        found = await account_story.events(
            session, account_id=1, since=NOW - timedelta(days=90), until=NOW, limit=3
        )
    assert [(e.kind, e.at) for e in found] == [
        ("collaboration", NOW - timedelta(days=days)) for days in (1, 2, 3)
    ]
    assert found[0].values == {"kind": "feedback"}
