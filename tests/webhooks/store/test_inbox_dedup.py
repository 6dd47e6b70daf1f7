"""Inbox dedup keys (inbox_dedup), day partitions (PostgreSQL) and the inbox's retention,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from webhooks import retention
from webhooks.store import inbox
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import InboxDedup, InboxEvent

# A day long past and later days: their partitions exist only once a test makes them.
DAY = datetime(2026, 10, 1, 12, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    if database_url.startswith("postgresql"):
        # The PostgreSQL database lives for the session: past days' partitions other tests
        # made are dropped, leaving what the migration made (today and the days ahead).
        today = inbox.partition_name(datetime.now(UTC).date())
        for name in await _partitions(engine):
            if name != inbox.DEFAULT_PARTITION and name < today:
                async with engine.begin() as connection:
                    await connection.execute(text(f"DROP TABLE {name}"))
    yield engine
    await engine.dispose()


def _events(*keys: str) -> list[inbox.NewEvent]:
    return [inbox.NewEvent(dedup_key=key, kind="usage", payload={"k": key}) for key in keys]


async def _insert(engine: AsyncEngine, *keys: str, at: datetime = DAY) -> int:
    async with engine.begin() as connection:
        return await inbox.insert_events(
            connection, source="native", connection="default", events=_events(*keys), received_at=at
        )


async def _keys(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.scalars(select(InboxEvent.dedup_key).order_by(InboxEvent.id))
        return list(rows.all())


async def _dedup_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(InboxDedup)) or 0)


async def _partitions(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'inbox_events'::regclass"
            )
        )
        return set(rows.all())


async def _settle(
    engine: AsyncEngine, keys: Sequence[str], *, status: str, processed_at: datetime | None
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(InboxEvent)
            .where(InboxEvent.dedup_key.in_(keys))
            .values(status=status, processed_at=processed_at)
        )


async def test_a_key_twice_in_one_request_is_stored_once_in_order(engine) -> None:
    assert await _insert(engine, "a", "b", "a", "c") == 3
    assert await _keys(engine) == ["a", "b", "c"]
    assert await _dedup_count(engine) == 3


async def test_a_key_two_requests_of_one_group_share_counts_for_the_first(engine) -> None:
    async with engine.begin() as connection:
        counts = await inbox.insert_grouped(
            connection,
            groups=[
                ("native", "default", _events("a", "b"), DAY),
                ("native", "default", _events("b", "c"), DAY),
                ("native", "other", _events("b"), DAY),
            ],
        )
    assert counts == [2, 1, 1]
    assert await _keys(engine) == ["a", "b", "c", "b"]


async def test_a_key_sent_again_the_next_day_is_a_duplicate_across_partitions(engine) -> None:
    assert await _insert(engine, "a", at=DAY) == 1
    assert await _insert(engine, "a", "b", at=DAY + timedelta(days=1)) == 1
    assert await _keys(engine) == ["a", "b"]


async def test_a_payload_json_cannot_carry_is_deduplicated_too(engine, database_url) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's json type refuses NaN: such a request fails as a whole")
    odd = [inbox.NewEvent(dedup_key="nan", kind="usage", payload={"v": float("nan")})]
    for expected in (1, 0):
        async with engine.begin() as connection:
            assert (
                await inbox.insert_events(
                    connection, source="native", connection="default", events=odd, received_at=DAY
                )
                == expected
            )
    assert await _keys(engine) == ["nan"]


async def test_a_rolled_back_insert_leaves_its_key_free(engine) -> None:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await inbox.insert_events(
            connection, source="native", connection="default", events=_events("a"), received_at=DAY
        )
        await transaction.rollback()
    assert await _insert(engine, "a") == 1


async def test_two_requests_with_one_key_at_once_store_it_once(engine, database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nothing runs at once")
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await second.begin()
        assert (
            await inbox.insert_events(
                first, source="native", connection="default", events=_events("k"), received_at=DAY
            )
            == 1
        )
        racing = asyncio.create_task(
            inbox.insert_events(
                second, source="native", connection="default", events=_events("k", "l"),
                received_at=DAY,
            )
        )  # fmt: skip
        await asyncio.sleep(0.3)
        # The second waits on the first's uncommitted key rather than store it again.
        assert not racing.done()
        await first.commit()
        assert await asyncio.wait_for(racing, timeout=10) == 1
        await second.commit()
    assert await _keys(engine) == ["k", "l"]


async def test_an_event_for_a_day_without_partition_is_kept_and_moves_in_later(
    engine, database_url
) -> None:
    later = datetime(2031, 3, 4, 9, tzinfo=UTC)
    assert await _insert(engine, "early", at=later) == 1
    async with engine.begin() as connection:
        created = await inbox.ensure_partitions(connection, later)
    if database_url.startswith("sqlite"):
        assert created == []
    else:
        assert created == [f"inbox_events_p2031030{d}" for d in (4, 5, 6, 7)]
        async with engine.connect() as connection:
            where = await connection.scalar(
                text("SELECT tableoid::regclass::text FROM inbox_events WHERE dedup_key = 'early'")
            )
        assert where == "inbox_events_p20310304"
        async with engine.begin() as connection:
            assert await inbox.ensure_partitions(connection, later) == []
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        [claimed] = await inbox.claim_batch(session, now=later, limit=10, lease_seconds=60)
        await inbox.settle(session, event_ids=[claimed.id], status=inbox.DONE, now=later)
    async with sessions() as session:
        assert await inbox.statuses(session, event_ids=[claimed.id]) == {claimed.id: "done"}


async def _prune(
    engine: AsyncEngine, *, now: datetime, inbox_days: float, dry_run: bool = False
) -> dict[str, int]:
    """Retention's inbox tables (events, dedup keys) with a window of `inbox_days`."""
    policy = retention.RetentionPolicy(inbox_days=inbox_days, batch=2)
    report = await retention.prune(
        create_session_factory(engine), policy=policy, now=now, dry_run=dry_run
    )
    return {name: report.rows[name] for name in ("inbox_events", "inbox_dedup")}


async def test_prune_keeps_every_unsettled_event(engine) -> None:
    now = DAY + timedelta(days=30)
    await _insert(engine, "done", "ignored", "pending", "processing", "unmatched", "dead", at=DAY)
    await _settle(engine, ["done"], status="done", processed_at=DAY)
    await _settle(engine, ["ignored"], status="ignored", processed_at=DAY)
    await _settle(engine, ["processing"], status="processing", processed_at=None)
    await _settle(engine, ["unmatched"], status="unmatched", processed_at=None)
    # A dead letter from 30 days ago.
    await _settle(engine, ["dead"], status="dead", processed_at=DAY)
    result = await _prune(engine, now=now, inbox_days=7)
    # The keys go with the window, whatever became of their events.
    assert result == {"inbox_events": 2, "inbox_dedup": 6}
    assert await _keys(engine) == ["pending", "processing", "unmatched", "dead"]


async def test_prune_keeps_settled_events_processed_after_the_cutoff(engine) -> None:
    await _insert(engine, "old", "late", at=DAY)
    await _settle(engine, ["old"], status="done", processed_at=DAY)
    await _settle(engine, ["late"], status="done", processed_at=DAY + timedelta(days=20))
    result = await _prune(engine, now=DAY + timedelta(days=24), inbox_days=14)
    assert result["inbox_events"] == 1
    assert await _keys(engine) == ["late"]


async def test_dry_run_counts_and_deletes_nothing(engine, database_url) -> None:
    old = DAY - timedelta(days=200)
    if database_url.startswith("postgresql"):
        async with engine.begin() as connection:
            await inbox.ensure_partitions(connection, old)
    await _insert(engine, "a", "b", "c", at=old)
    await _insert(engine, "d", at=DAY)
    await _settle(engine, ["a", "b", "c"], status="done", processed_at=old)
    before = await _partitions(engine) if database_url.startswith("postgresql") else set()
    counted = await _prune(engine, now=DAY, inbox_days=1, dry_run=True)
    assert await _keys(engine) == ["a", "b", "c", "d"]
    assert await _dedup_count(engine) == 4
    if database_url.startswith("postgresql"):
        assert await _partitions(engine) == before
    done = await _prune(engine, now=DAY, inbox_days=1)
    assert counted == done == {"inbox_events": 3, "inbox_dedup": 3}
    assert await _keys(engine) == ["d"]


async def test_a_past_day_of_settled_events_is_dropped_whole(engine, database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("partitions are PostgreSQL's")
    settled_day = datetime(2026, 6, 1, 8, tzinfo=UTC)
    waiting_day = settled_day + timedelta(days=1)
    async with engine.begin() as connection:
        await inbox.ensure_partitions(connection, settled_day)
    await _insert(engine, "s1", "s2", at=settled_day)
    await _insert(engine, "w-done", "w-dead", at=waiting_day)
    await _settle(engine, ["s1"], status="done", processed_at=settled_day)
    await _settle(engine, ["s2", "w-done"], status="ignored", processed_at=waiting_day)
    await _settle(engine, ["w-dead"], status="dead", processed_at=waiting_day)
    result = await _prune(engine, now=settled_day + timedelta(days=30), inbox_days=1)
    assert result["inbox_events"] == 3
    partitions = await _partitions(engine)
    # The settled day, and the days made ahead of it that never got an event, are dropped.
    assert not {"inbox_events_p20260601", "inbox_events_p20260603"} & partitions
    # A day with a dead letter keeps its partition and the dead letter; its settled rows go.
    assert "inbox_events_p20260602" in partitions
    assert await _keys(engine) == ["w-dead"]
    # Inserting into the dropped day still works: the default partition takes it.
    assert await _insert(engine, "s3", at=settled_day) == 1


async def test_a_key_sent_again_after_its_dedup_row_is_pruned_is_a_new_event(engine) -> None:
    await _insert(engine, "a", "b", at=DAY)
    await _insert(engine, "b", at=DAY + timedelta(days=3))
    assert await _insert(engine, "a", "b", at=DAY + timedelta(days=5)) == 0
    result = await _prune(engine, now=DAY + timedelta(days=15), inbox_days=14)
    assert result == {"inbox_events": 0, "inbox_dedup": 2}
    # The dedup window: past it, the key is accepted again (and stored).
    assert await _insert(engine, "a", "b", at=DAY + timedelta(days=15)) == 2
    assert await _keys(engine) == ["a", "b", "a", "b"]
