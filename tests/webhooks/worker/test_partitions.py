"""The worker keeps the inbox's day partitions ahead (PostgreSQL): at its first pass and then
hourly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from webhooks.connections import ConnectionRegistry
from webhooks.store.db import create_engine, create_session_factory
from webhooks.worker.loop import PARTITIONS_CHECK_SECONDS, Pipeline
from webhooks.worker.options import WorkerOptions

# Half an hour before midnight: the next day starts within the hour of the first check.
LATER = datetime(2032, 2, 10, 23, 30, tzinfo=UTC)


async def test_worker_creates_the_days_ahead_at_start_then_hourly(database_url) -> None:
    engine = create_engine(database_url)
    now = [LATER]
    pipeline = Pipeline(
        sessions=create_session_factory(engine),
        connections=ConnectionRegistry([]),
        options=WorkerOptions(),
        clock=lambda: now[0],
    )

    async def days() -> list[str]:
        if not database_url.startswith("postgresql"):
            return []
        async with engine.connect() as connection:
            rows = await connection.scalars(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'inbox_events'::regclass "
                    "AND c.relname LIKE 'inbox_events_p2032%' ORDER BY c.relname"
                )
            )
            return list(rows.all())

    try:
        await pipeline.run_once()
        expected = [f"inbox_events_p203202{d}" for d in (10, 11, 12, 13)]
        assert await days() == (expected if database_url.startswith("postgresql") else [])
        # Past midnight but within the hour, nothing is checked; after it, the new day appears.
        now[0] = LATER + timedelta(minutes=40)
        await pipeline.run_once()
        assert await days() == (expected if database_url.startswith("postgresql") else [])
        now[0] = LATER + timedelta(seconds=PARTITIONS_CHECK_SECONDS)
        await pipeline.run_once()
        if database_url.startswith("postgresql"):
            assert await days() == [*expected, "inbox_events_p20320214"]
    finally:
        if database_url.startswith("postgresql"):
            async with engine.begin() as connection:
                for name in await days():
                    await connection.execute(text(f"DROP TABLE {name}"))
        await engine.dispose()
