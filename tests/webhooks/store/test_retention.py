"""Retention on SQLite and PostgreSQL: each table's rule, the rows that must stay, batches,
dry runs, and the worker's scheduled prune under its lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text

from signals.config import HealthConfig
from webhooks import retention
from webhooks.retention import RetentionPolicy, Scheduler
from webhooks.store import reconciles
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import (
    Account,
    AdminSession,
    Alert,
    AlertChannelBudget,
    AlertDelivery,
    AlertReason,
    AttributeChange,
    CollaborationFact,
    ConfigAudit,
    ConfigVersion,
    CRMOwnerContact,
    HealthSnapshot,
    InboxEvent,
    InstallGrant,
    InteractionFact,
    OutcomeFact,
    RecomputeJob,
    SurveyFact,
    TicketFact,
    UsageMonth,
)

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
POLICY = RetentionPolicy()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
async def engine(database_url: str):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine):
    return create_session_factory(engine)


async def add(sessions, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    async with sessions() as session, session.begin():
        if "id" in model.__table__.c:
            result = await session.execute(insert(model).returning(model.id), rows)
            return list(result.scalars())
        await session.execute(insert(model), rows)
        return []


async def new_account(sessions, crm_id: str = "42") -> int:
    (account_id,) = await add(
        sessions,
        Account,
        [{"connection": "default", "crm": "hubspot", "crm_id": crm_id, "attributes": {},
          "band": "unknown", "created_at": ago(1200)}],
    )  # fmt: skip
    return account_id


async def ids(sessions, model: Any) -> set[Any]:
    async with sessions() as session:
        return set((await session.execute(select(model.id))).scalars())


async def count(sessions, model: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def inbox_row(status: str, processed_days_ago: float | None, key: str) -> dict[str, Any]:
    return {
        "source": "native", "connection": "default", "dedup_key": key, "kind": "usage",
        "payload": {}, "received_at": ago(400), "status": status, "attempts": 0,
        "available_at": ago(400),
        "processed_at": None if processed_days_ago is None else ago(processed_days_ago),
    }  # fmt: skip


async def test_processed_inbox_events_go_after_the_retention_and_waiting_ones_never(
    sessions,
) -> None:
    rows = {
        "old_done": inbox_row("done", 15, "a"),
        "old_ignored": inbox_row("ignored", 30, "b"),
        "recent_done": inbox_row("done", 13, "c"),
        "old_dead": inbox_row("dead", 300, "d"),
        "unmatched": inbox_row("unmatched", None, "e"),
        "pending": inbox_row("pending", None, "f"),
        "processing": inbox_row("processing", None, "g"),
    }
    found = dict(zip(rows, await add(sessions, InboxEvent, list(rows.values())), strict=True))
    report = await retention.prune(sessions, policy=POLICY, now=NOW)
    assert report.rows["inbox_events"] == 2
    kept = {name for name, row_id in found.items() if row_id in await ids(sessions, InboxEvent)}
    assert kept == {"recent_done", "old_dead", "unmatched", "pending", "processing"}


async def test_old_dead_letters_go_only_when_purged_explicitly(sessions) -> None:
    await add(sessions, InboxEvent, [inbox_row("dead", 40, "old"), inbox_row("dead", 5, "new")])
    await retention.prune(sessions, policy=POLICY, now=NOW)
    assert await count(sessions, InboxEvent) == 2
    would = await retention.purge_dead_letters(sessions, before=ago(30), batch=100, dry_run=True)
    assert (would, await count(sessions, InboxEvent)) == (1, 2)
    assert await retention.purge_dead_letters(sessions, before=ago(30), batch=100) == 1
    async with sessions() as session:
        assert await session.scalar(select(InboxEvent.dedup_key)) == "new"


async def test_facts_older_than_the_retention_go_and_outcomes_stay(sessions) -> None:
    account = await new_account(sessions)
    for model, at_column in (
        (InteractionFact, "at"),
        (CollaborationFact, "at"),
    ):
        extra = (
            {"channel": "email", "direction": "customer"}
            if model is InteractionFact
            else {"kind": "feedback"}
        )
        await add(
            sessions,
            model,
            [
                {"account_id": account, at_column: ago(731), **extra},
                {"account_id": account, at_column: ago(729), **extra},
            ],
        )
    await add(
        sessions,
        TicketFact,
        [{"account_id": account, "ticket": name, "opened_at": ago(days), "priority": "low",
          "updated_at": ago(days)} for name, days in (("old", 800), ("new", 10))],
    )  # fmt: skip
    await add(
        sessions, OutcomeFact, [{"account_id": account, "at": ago(1000), "outcome": "renewed"}]
    )
    await add(
        sessions,
        UsageMonth,
        # Whole months go: one wholly before the cutoff's month, and this month.
        [
            {"account_id": account, "month": month, "user": "u", "days": 1}
            for month in (ago(days).date().replace(day=1) for days in (800, 1))
        ],
    )
    await add(
        sessions,
        SurveyFact,
        [{"account_id": account, "kind": "nps", "respondent": "a@acme.test", "at": ago(days),
          "score": 9.0} for days in (800, 10)],
    )  # fmt: skip
    report = await retention.prune(sessions, policy=POLICY, now=NOW)
    names = ("interactions", "collaboration_events", "tickets", "usage_months", "survey_responses")
    assert {name: report.rows[name] for name in names} == dict.fromkeys(names, 1)
    for table in (InteractionFact, CollaborationFact, TicketFact, UsageMonth, SurveyFact):
        assert await count(sessions, table) == 1
    assert await count(sessions, OutcomeFact) == 1


async def test_attribute_history_keeps_the_value_in_force_at_the_cutoff(sessions) -> None:
    account = await new_account(sessions)
    # Kept for 730 + 365 days: momentum reads ARR a year before the oldest facts kept.
    changes = {
        ("arr", 1300): "10", ("arr", 1200): "20", ("arr", 1100): "30", ("arr", 100): "40",
        ("seats", 1250): "5",
    }  # fmt: skip
    await add(
        sessions,
        AttributeChange,
        [{"account_id": account, "name": name, "at": ago(days), "value": value}
         for (name, days), value in changes.items()],
    )  # fmt: skip
    report = await retention.prune(sessions, policy=POLICY, now=NOW)
    assert report.rows["attribute_history"] == 2
    async with sessions() as session:
        left = set(await session.execute(select(AttributeChange.name, AttributeChange.value)))
    # ARR in force 1095 days ago (set 1100 days ago), the newer one, and the only seats value.
    assert left == {("arr", "30"), ("arr", "40"), ("seats", "5")}


def health(account: int, at: datetime, *, score: int = 50, version: str | None = "v1"):
    return {
        "account_id": account, "computed_at": at, "score": score, "band": "neutral",
        "config_version": version,
    }  # fmt: skip


async def test_health_history_is_thinned_after_90_days_and_cut_after_the_fact_retention(
    sessions,
) -> None:
    account = await new_account(sessions)
    day_100 = ago(100).replace(hour=0)
    rows = {
        # Within 90 days: every row stays.
        "recent_1": health(account, ago(10)),
        "recent_2": health(account, ago(10) + timedelta(minutes=5)),
        # An old day: only its last row, and the last row of a version that started that day.
        "old_morning": health(account, day_100 + timedelta(hours=1)),
        "old_noon_v1": health(account, day_100 + timedelta(hours=12)),
        "old_evening_v2": health(account, day_100 + timedelta(hours=20), version="v2"),
        "old_night_v2": health(account, day_100 + timedelta(hours=23), version="v2"),
        # Before the fact retention: only the newest row of the account stays.
        "ancient_1": health(account, ago(900)),
        "ancient_2": health(account, ago(800)),
    }
    found = dict(zip(rows, await add(sessions, HealthSnapshot, list(rows.values())), strict=True))
    dry = await retention.prune(sessions, policy=POLICY, now=NOW, dry_run=True)
    report = await retention.prune(sessions, policy=POLICY, now=NOW)
    assert dry.rows["health_history"] == report.rows["health_history"] == 3
    left = await ids(sessions, HealthSnapshot)
    kept = {name for name, row_id in found.items() if row_id in left}
    assert kept == {"recent_1", "recent_2", "old_noon_v1", "old_night_v2", "ancient_2"}


async def test_the_row_in_force_at_the_fact_cutoff_stays_when_the_cutoff_falls_mid_day(
    sessions,
) -> None:
    account = await new_account(sessions)
    cutoff = NOW - timedelta(days=POLICY.fact_days)
    rows = {
        "before": health(account, cutoff - timedelta(hours=2)),
        "in_force": health(account, cutoff - timedelta(hours=1)),
        # Same UTC day, after the cutoff: the day's last row, but not the one in force then.
        "after": health(account, cutoff + timedelta(minutes=30)),
    }
    assert cutoff.date() == (cutoff + timedelta(minutes=30)).date()
    found = dict(zip(rows, await add(sessions, HealthSnapshot, list(rows.values())), strict=True))
    await retention.prune(sessions, policy=POLICY, now=NOW)
    left = await ids(sessions, HealthSnapshot)
    assert {name for name, row_id in found.items() if row_id in left} == {"in_force", "after"}


async def alert(sessions, account: int, status: str, resolved_days_ago: float | None) -> int:
    (alert_id,) = await add(
        sessions,
        Alert,
        [{"account_id": account, "connection": "default", "rule": "band", "key": "at_risk",
          "status": status, "title": "t", "reason": "r", "score": 10, "band": "at_risk",
          "drivers": [], "fired_at": ago(400),
          "resolved_at": None if resolved_days_ago is None else ago(resolved_days_ago)}],
    )  # fmt: skip
    await add(
        sessions,
        AlertReason,
        [{"alert_id": alert_id, "rule": "band", "key": "at_risk", "severity": "high",
          "title": "t", "reason": "r", "opened_at": ago(400)}],
    )  # fmt: skip
    await add(
        sessions,
        AlertDelivery,
        [{"alert_id": alert_id, "channel": "slack", "kind": "fired", "status": delivery,
          "created_at": ago(390), "available_at": ago(390)}
         for delivery in ("sent", "pending")],
    )  # fmt: skip
    return alert_id


async def test_resolved_alerts_go_with_reasons_and_deliveries_and_open_ones_stay(sessions):
    account = await new_account(sessions)
    old_resolved = await alert(sessions, account, "resolved", 181)
    new_resolved = await alert(sessions, account, "resolved", 179)
    open_one = await alert(sessions, account, "open", None)
    acknowledged = await alert(sessions, account, "acknowledged", None)
    report = await retention.prune(sessions, policy=POLICY, now=NOW)
    assert report.rows["alerts"] == 1
    assert await ids(sessions, Alert) == {new_resolved, open_one, acknowledged}
    async with sessions() as session:
        reasons = set((await session.execute(select(AlertReason.alert_id))).scalars())
        deliveries = set(
            (await session.execute(select(AlertDelivery.alert_id, AlertDelivery.status))).all()
        )
    assert old_resolved not in reasons
    # Open alerts lose their old sent deliveries, never a pending one.
    assert report.rows["alert_deliveries"] == 2
    assert deliveries == {
        (new_resolved, "sent"), (new_resolved, "pending"),
        (open_one, "pending"), (acknowledged, "pending"),
    }  # fmt: skip


async def test_resolved_alerts_are_kept_as_long_as_the_longest_rule_cooldown(sessions):
    account = await new_account(sessions)
    await alert(sessions, account, "resolved", 200)
    document = HealthConfig().model_dump(mode="json")
    document["alerts"][0]["cooldown_days"] = 365
    await add(
        sessions,
        ConfigVersion,
        [{"version": "v9", "document": document, "created_at": ago(1), "author": "a",
          "comment": ""}],
    )  # fmt: skip
    policy = RetentionPolicy(alert_days=30)
    report = await retention.prune(sessions, policy=policy, now=NOW)
    assert report.rows["alerts"] == 0
    assert "365 days" in report.kept["alerts"]


async def test_housekeeping_tables_lose_expired_rows_and_keep_configuration_history(sessions):
    (version,) = await add(
        sessions,
        ConfigVersion,
        [{"version": "v1", "document": {}, "created_at": ago(2000), "author": "a", "comment": ""}],
    )
    await add(
        sessions,
        ConfigAudit,
        [{"at": ago(2000), "actor": "a", "action": "put", "to_version_id": version,
          "comment": "", "changed": []}],
    )  # fmt: skip
    await add(
        sessions,
        AdminSession,
        [{"id_hash": name, "key_hash": "k", "created_at": ago(days + 1), "expires_at": ago(days)}
         for name, days in (("old", 31), ("new", 1))],
    )  # fmt: skip
    await add(
        sessions,
        InstallGrant,
        [{"token_hash": name, "kind": "link", "created_by": "a", "created_at": ago(days + 1),
          "expires_at": ago(days)} for name, days in (("old", 40), ("new", -1))],
    )  # fmt: skip
    await add(
        sessions,
        RecomputeJob,
        [{"reason": "r", "status": status, "created_at": ago(100), "available_at": ago(100),
          "finished_at": finished} for status, finished in
         (("done", ago(60)), ("done", ago(1)), ("pending", None))],
    )  # fmt: skip
    await add(
        sessions,
        AlertChannelBudget,
        [{"channel": "slack", "day": day, "sent": 1} for day in (ago(45).date(), NOW.date())],
    )
    await add(
        sessions,
        CRMOwnerContact,
        [{"connection": "default", "owner_id": name, "found": True, "fetched_at": ago(days)}
         for name, days in (("old", 31), ("new", 0))],
    )  # fmt: skip
    report = await retention.prune(sessions, policy=POLICY, now=NOW)
    for name in (
        "admin_sessions", "install_grants", "recompute_jobs", "alert_channel_budgets",
        "crm_owners",
    ):  # fmt: skip
        assert report.rows[name] == 1, name
    assert await count(sessions, AdminSession) == 1
    assert await count(sessions, RecomputeJob) == 2
    assert await count(sessions, ConfigVersion) == 1
    assert await count(sessions, ConfigAudit) == 1


async def many_interactions(sessions, account: int, n: int) -> None:
    await add(
        sessions,
        InteractionFact,
        [{"account_id": account, "at": ago(800) + timedelta(seconds=i), "channel": "email",
          "direction": "ours"} for i in range(n)],
    )  # fmt: skip


async def test_dry_run_deletes_nothing_and_reports_the_same_counts(sessions) -> None:
    account = await new_account(sessions)
    await many_interactions(sessions, account, 30)
    await add(sessions, InboxEvent, [inbox_row("done", 20, str(i)) for i in range(7)])
    dry = await retention.prune(sessions, policy=POLICY, now=NOW, dry_run=True)
    assert (await count(sessions, InteractionFact), await count(sessions, InboxEvent)) == (30, 7)
    real = await retention.prune(sessions, policy=POLICY, now=NOW)
    assert dry.rows == real.rows
    assert (dry.rows["interactions"], dry.rows["inbox_events"]) == (30, 7)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_scheduled_prune_deletes_in_batches_of_the_policy(sessions) -> None:
    account = await new_account(sessions)
    await many_interactions(sessions, account, 12_000)
    clock = Clock(NOW)
    scheduler = Scheduler(sessions=sessions, clock=clock, policy=RetentionPolicy(batch=5000))
    # The schedule is created now; the first run is due one interval later.
    assert await scheduler.step_if_due() == 0
    clock.now += timedelta(hours=1, seconds=1)
    steps: list[int] = []
    while (deleted := await scheduler.step_if_due()) and len(steps) < 100:
        steps.append(deleted)
    assert [step for step in steps if step > 1] == [5000, 5000, 2000]
    assert await count(sessions, InteractionFact) == 0
    async with sessions() as session:
        schedule = await reconciles.get_schedule(session, name=retention.SCHEDULE)
    assert schedule is not None
    assert schedule.last_counts is not None
    assert schedule.last_counts["interactions"] == 12_000
    # Done: nothing until the next interval.
    clock.now += timedelta(minutes=5)
    assert await scheduler.step_if_due() == 0


async def test_two_workers_share_one_scheduled_prune_under_the_lease(engine) -> None:
    sessions = create_session_factory(engine)
    account = await new_account(sessions)
    await many_interactions(sessions, account, 120)
    clock = Clock(NOW)
    policy = RetentionPolicy(batch=50)
    first = Scheduler(sessions=sessions, clock=clock, policy=policy)
    second = Scheduler(sessions=create_session_factory(engine), clock=clock, policy=policy)
    await first.step_if_due()
    await second.step_if_due()
    clock.now += timedelta(hours=2)
    # A third worker holds the lease: neither may take a step meanwhile.
    async with sessions() as session, session.begin():
        held = await reconciles.claim_step(
            session, name=retention.SCHEDULE, now=clock.now, interval=timedelta(hours=1),
            lease_seconds=retention.LEASE_SECONDS,
        )  # fmt: skip
    assert held is not None
    assert list(await asyncio.gather(first.step_if_due(), second.step_if_due())) == [0, 0]
    assert await count(sessions, InteractionFact) == 120
    # Its lease runs out (it died): the two share the run, each step taken by one of them.
    clock.now += timedelta(seconds=retention.LEASE_SECONDS + CHECK)
    for _ in range(100):
        steps = await asyncio.gather(first.step_if_due(), second.step_if_due())
        if not any(steps):
            break
    assert await count(sessions, InteractionFact) == 0
    async with sessions() as session:
        schedule = await reconciles.get_schedule(session, name=retention.SCHEDULE)
    # Counted once: no batch was taken by both.
    assert schedule is not None
    assert schedule.last_counts is not None
    assert schedule.last_counts["interactions"] == 120


CHECK = retention.CHECK_SECONDS + 1


async def test_a_new_sqlite_database_gives_freed_pages_back(database_url, sessions) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's autovacuum makes freed space reusable itself")
    async with sessions() as session:
        assert await session.scalar(text("PRAGMA auto_vacuum")) == 2  # incremental
    account = await new_account(sessions)
    await many_interactions(sessions, account, 5000)
    await retention.prune(sessions, policy=POLICY, now=NOW)
    async with sessions() as session:
        assert await session.scalar(text("PRAGMA freelist_count")) == 0


async def test_vacuum_switches_an_older_sqlite_file_to_incremental(database_url, engine):
    if not database_url.startswith("sqlite"):
        assert await retention.vacuum(engine) is False
        return
    async with engine.connect() as connection:
        bare = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await bare.exec_driver_sql("PRAGMA auto_vacuum=NONE")
        await bare.exec_driver_sql("VACUUM")
        assert (await bare.exec_driver_sql("PRAGMA auto_vacuum")).scalar() == 0
    assert await retention.vacuum(engine) is True
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA auto_vacuum")).scalar() == 2
