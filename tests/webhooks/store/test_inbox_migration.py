"""Migration 0022 with events in the inbox, on SQLite and PostgreSQL: keys move to inbox_dedup,
PostgreSQL's inbox becomes partitioned by day, and downgrade restores the plain table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from webhooks.store import inbox
from webhooks.store.db import create_engine
from webhooks.store.migrate import alembic_config

BEFORE, REVISION = "20261205_0021", "20261205_0022"
DAYS = (datetime(2026, 11, 1, 23, 59, tzinfo=UTC), datetime(2026, 11, 2, 0, 1, tzinfo=UTC))


async def _migrate(url: str, action: str, revision: str) -> None:
    function = command.upgrade if action == "upgrade" else command.downgrade
    await asyncio.to_thread(function, alembic_config(url), revision)


async def _seed(engine: AsyncEngine) -> None:
    """Three events over two UTC days, as the inbox held them before 0022."""
    async with engine.begin() as connection:
        for number, (key, at) in enumerate([("a", DAYS[0]), ("b", DAYS[1]), ("c", DAYS[1])]):
            await connection.execute(
                text(
                    "INSERT INTO inbox_events (source, connection, dedup_key, kind, payload, "
                    "received_at, status, attempts, available_at) VALUES ('native', 'default', "
                    ":key, 'usage', '{}', :at, :status, 0, :at)"
                ),
                {"key": key, "at": at, "status": "done" if number == 0 else "pending"},
            )


async def _rows(engine: AsyncEngine) -> list[tuple[int, str, str]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT id, dedup_key, status FROM inbox_events ORDER BY id")
        )
        return [(row[0], row[1], row[2]) for row in result.all()]


async def test_upgrade_moves_keys_and_downgrade_restores_the_plain_inbox(
    empty_database_url: str,
) -> None:
    await _migrate(empty_database_url, "upgrade", BEFORE)
    engine = create_engine(empty_database_url)
    try:
        await _seed(engine)
        before = await _rows(engine)
        await _migrate(empty_database_url, "upgrade", REVISION)
        assert await _rows(engine) == before
        async with engine.connect() as connection:
            keys = await connection.scalars(
                text("SELECT dedup_key FROM inbox_dedup ORDER BY dedup_key")
            )
            assert keys.all() == ["a", "b", "c"]
        # Stored keys stay duplicates; new ids follow the old ones.
        async with engine.begin() as connection:
            stored = await inbox.insert_events(
                connection,
                source="native",
                connection="default",
                events=[
                    inbox.NewEvent(dedup_key=key, kind="usage", payload={}) for key in ("b", "d")
                ],
                received_at=DAYS[1],
            )
        assert stored == 1
        after = await _rows(engine)
        assert after[-1] == (before[-1][0] + 1, "d", "pending")
        if empty_database_url.startswith("postgresql"):
            async with engine.connect() as connection:
                places = await connection.execute(
                    text("SELECT dedup_key, tableoid::regclass::text FROM inbox_events ORDER BY id")
                )
                assert places.all() == [
                    ("a", "inbox_events_p20261101"),
                    ("b", "inbox_events_p20261102"),
                    ("c", "inbox_events_p20261102"),
                    ("d", "inbox_events_p20261102"),
                ]
        # A key sent again after retention pruned its dedup row: in the inbox twice.
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM inbox_dedup WHERE dedup_key = 'a'"))
            await inbox.insert_events(
                connection,
                source="native",
                connection="default",
                events=[inbox.NewEvent(dedup_key="a", kind="usage", payload={})],
                received_at=DAYS[1],
            )
        await engine.dispose()
        await _migrate(empty_database_url, "downgrade", BEFORE)
        engine = create_engine(empty_database_url)
        rows = await _rows(engine)
        # Every event survives; the later copy of a key is renamed to fit the constraint.
        assert [key for _, key, _ in rows] == ["a", "b", "c", "d", f"a:copy:{rows[-1][0]}"]
        with pytest.raises(IntegrityError):
            await _seed(engine)
    finally:
        await engine.dispose()
