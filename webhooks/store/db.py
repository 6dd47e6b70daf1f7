"""Engine and session factories for the configured database (SQLite file or PostgreSQL): the
main engine, which intake, the worker and every write use, and a read-only engine of its own
for admin reads (preview, backtest, account lists), so they never hold intake's connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = [
    "AsyncSession",
    "SessionFactory",
    "create_engine",
    "create_read_engine",
    "create_session_factory",
]

SessionFactory = async_sessionmaker[AsyncSession]

# Admin reads: the previews and backtests allowed at once (CRM_HEALTH_PREVIEW_CONCURRENCY) hold
# one each for their whole run; account lists and details are short. A handful is plenty, and
# on PostgreSQL it stays a small share of the server's connections.
READ_POOL_SIZE = 4
READ_POOL_OVERFLOW = 4


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # SQLite has one writer at a time. One shared connection makes concurrent requests
        # queue in-process instead of spinning in SQLite's busy handler, whose sleeps made
        # acknowledgements take seconds under 10 concurrent webhook deliveries.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def create_read_engine(url: str) -> AsyncEngine | None:
    """An engine that can only read, with connections of its own; None for an in-memory SQLite
    database, which other connections cannot see (its reads share the main engine).

    SQLite: the file opened read-only (`mode=ro`); in WAL mode (the main engine sets it) readers
    run beside the writer and see every committed write. PostgreSQL: a small pool whose
    transactions are READ ONLY."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(
            url,
            pool_pre_ping=True,
            pool_size=READ_POOL_SIZE,
            max_overflow=READ_POOL_OVERFLOW,
            execution_options={"postgresql_readonly": True},
        )
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(parsed):
        return None
    if not database.startswith("file:"):
        # An SQLite URI (the only way to say read-only): absolute, with ?, # and % escaped.
        database = "file:" + quote(str(Path(database).resolve()))
    engine = create_async_engine(
        parsed.set(database=database).update_query_dict({"mode": "ro", "uri": "true"}),
        connect_args={"timeout": 30},
        pool_size=READ_POOL_SIZE,
        max_overflow=READ_POOL_OVERFLOW,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_read_pragmas)
    return engine


def sqlite_auto_vacuum(dbapi_connection: Any, _record: Any) -> None:
    """Incremental auto-vacuum lets retention give freed pages back to the file system. It only
    takes effect on a database without tables yet (one this connection creates: migrations
    connect through this too); an older file keeps its mode until `crm-health prune --vacuum`."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    # WAL lets the API insert into the inbox while the worker reads; busy_timeout makes the
    # two writers wait for each other instead of failing with "database is locked".
    sqlite_auto_vacuum(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # A reader can still meet a lock for a moment (a checkpoint resetting the WAL): wait then.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
