"""The read engine for admin reads, on SQLite and PostgreSQL: connections of its own, read-only,
and it sees what the main engine committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webhooks.store import inbox
from webhooks.store.db import create_engine, create_read_engine
from webhooks.store.models import InboxEvent

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    main = create_engine(database_url)
    reads = create_read_engine(database_url)
    assert reads is not None
    yield main, reads
    await reads.dispose()
    await main.dispose()


async def _insert(connection: AsyncConnection, key: str) -> None:
    event = inbox.NewEvent(dedup_key=key, kind="usage", payload={})
    await inbox.insert_grouped(connection, groups=[("native", "default", [event], NOW)])


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count(InboxEvent.id)))).scalar_one())


async def test_read_engine_cannot_write(engines) -> None:
    _, reads = engines
    async with reads.connect() as connection:
        with pytest.raises(DBAPIError, match=r"read-?only"):
            await connection.execute(
                text(
                    "INSERT INTO source_kinds (connection, kind, first_seen_at) "
                    "VALUES ('default', 'usage', CURRENT_TIMESTAMP)"
                )
            )


async def test_read_engine_sees_what_the_main_engine_committed(engines) -> None:
    main, reads = engines
    assert await _count(reads) == 0
    async with main.begin() as connection:
        await _insert(connection, "a")
    assert await _count(reads) == 1


async def test_read_engine_reads_while_the_main_engine_is_writing(engines) -> None:
    """A write transaction open on the main engine (on SQLite its only connection, holding the
    write lock) neither blocks a read nor shows it uncommitted rows."""
    main, reads = engines
    async with main.begin() as connection:
        await _insert(connection, "x")
        assert await asyncio.wait_for(_count(reads), timeout=5) == 0
    assert await _count(reads) == 1


def test_in_memory_sqlite_has_no_read_engine_of_its_own() -> None:
    # Another connection to ":memory:" would be another, empty, database.
    assert create_read_engine("sqlite+aiosqlite://") is None
    assert create_read_engine("sqlite+aiosqlite:///:memory:") is None


async def test_sqlite_read_engine_opens_a_path_with_uri_characters(
    tmp_path, sqlite_template
) -> None:
    folder = tmp_path / "odd dir #1%"
    folder.mkdir()
    path = folder / "health.db"
    path.write_bytes(sqlite_template.read_bytes())
    reads = create_read_engine(f"sqlite+aiosqlite:///{path}")
    assert reads is not None
    try:
        assert await _count(reads) == 0
    finally:
        await reads.dispose()
