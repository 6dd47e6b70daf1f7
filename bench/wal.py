"""PostgreSQL WAL written per inbox event (pg_current_wal_lsn before and after), in a database
that already holds days of settled history: the inbox alone (store, claim, settle) and the
whole worker (store, then decode, fold facts, score, stage), each after a CHECKPOINT, so the
full-page images of the first touch of every page count as they do in service.

BENCH_WAL_EVENTS (default 100,000) events per phase; BENCH_WAL_HISTORY_DAYS (default 3) days
of history, each of BENCH_WAL_EVENTS / 2 settled events."""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import create_pg_database, drop_pg_database
from bench.worker import EVENT_ACCOUNTS
from webhooks.connections import ConnectionRegistry
from webhooks.store import inbox
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

EVENTS = int(os.environ.get("BENCH_WAL_EVENTS", "100000"))
HISTORY_DAYS = int(os.environ.get("BENCH_WAL_HISTORY_DAYS", "3"))
# Events per request, as a native client or a CRM webhook sends them; one transaction each.
PER_REQUEST = 100
TARGET_BYTES = 2048


def _event(n: int, now: datetime, rng: random.Random) -> dict[str, object]:
    """A native usage event of the size the service sees from product analytics."""
    return {
        "type": "usage",
        "account": str(rng.randrange(EVENT_ACCOUNTS)),
        "at": (now - timedelta(minutes=rng.uniform(0, 600))).isoformat(),
        "user": f"user-{rng.randrange(5000)}@example.com",
        "feature": rng.choice(("reports", "dashboards", "exports", "alerts", "search")),
    }


async def _store(engine: AsyncEngine, *, count: int, at: datetime, prefix: str) -> None:
    """`count` events in requests of PER_REQUEST, random dedup keys (Segment messageIds and
    CRM event ids look random to a b-tree)."""
    rng = random.Random(prefix)
    for start in range(0, count, PER_REQUEST):
        events = [
            inbox.NewEvent(
                dedup_key=f"{prefix}-{rng.getrandbits(64):016x}",
                kind="usage",
                payload=_event(start + i, at, rng),
            )
            for i in range(min(PER_REQUEST, count - start))
        ]
        async with engine.begin() as connection:
            await inbox.insert_events(
                connection, source="native", connection="default", events=events, received_at=at
            )


async def _lsn(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            await connection.scalar(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")) or 0
        )


async def _checkpoint(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("CHECKPOINT"))


async def _history(engine: AsyncEngine, now: datetime) -> None:
    """Past days of settled events, each day in its own partition as the worker made them."""
    for days_ago in range(HISTORY_DAYS, 0, -1):
        day = now - timedelta(days=days_ago)
        async with engine.begin() as connection:
            await inbox.ensure_partitions(connection, day)
        await _store(engine, count=EVENTS // 2, at=day, prefix=f"history{days_ago}")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE inbox_events SET status = 'done', processed_at = received_at")
        )
    async with engine.connect() as connection:
        await connection.execute(text("COMMIT"))
        await connection.execute(text("VACUUM ANALYZE"))


async def _inbox_lifecycle(engine: AsyncEngine, now: datetime) -> tuple[int, int, float]:
    """(WAL of storing, WAL of claiming and settling, seconds) for EVENTS events."""
    sessions = create_session_factory(engine)
    await _checkpoint(engine)
    started, first = time.perf_counter(), await _lsn(engine)
    await _store(engine, count=EVENTS, at=now, prefix="inbox")
    stored = await _lsn(engine)
    while True:
        async with sessions() as session, session.begin():
            claimed = await inbox.claim_batch(session, now=now, limit=5000, lease_seconds=60)
            await inbox.settle(
                session, event_ids=[row.id for row in claimed], status=inbox.DONE, now=now
            )
        if not claimed:
            break
    return stored - first, await _lsn(engine) - stored, time.perf_counter() - started


async def _worker(engine: AsyncEngine, now: datetime) -> tuple[int, float]:
    """(WAL, seconds) of storing and processing EVENTS events through the worker."""
    sessions = create_session_factory(engine)
    pipeline = Pipeline(
        sessions=sessions, connections=ConnectionRegistry([]), options=WorkerOptions()
    )
    declared = [
        inbox.NewEvent(
            dedup_key=f"account-{n}",
            kind="account",
            payload={"type": "account", "account": str(n), "at": now.isoformat(), "attributes": {}},
        )
        for n in range(EVENT_ACCOUNTS)
    ]
    async with engine.begin() as connection:
        await inbox.insert_events(
            connection, source="native", connection="default", events=declared, received_at=now
        )
    while (await pipeline.process_inbox()).claimed:
        pass
    await _checkpoint(engine)
    started, first = time.perf_counter(), await _lsn(engine)
    await _store(engine, count=EVENTS, at=now, prefix="worker")
    while (await pipeline.process_inbox()).claimed:
        pass
    return await _lsn(engine) - first, time.perf_counter() - started


async def _inbox_bytes(engine: AsyncEngine) -> tuple[int, int]:
    """(bytes the inbox and its dedup keys take on disk, events they hold)."""
    async with engine.connect() as connection:
        size = await connection.scalar(
            text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relkind = 'r' AND (c.relname LIKE 'inbox_events%' "
                "OR c.relname = 'inbox_dedup')"
            )
        )
        rows = await connection.scalar(text("SELECT count(*) FROM inbox_events"))
    return int(size or 0), int(rows or 0)


def _per_event(total: int) -> str:
    return f"{total / EVENTS:,.0f} B/event"


async def run() -> list[tuple[str, str]]:
    title = (
        f"PostgreSQL WAL per event, {EVENTS:,} events per phase, "
        f"{HISTORY_DAYS} days x {EVENTS // 2:,} settled events of history"
    )
    database = await create_pg_database("crm_health_bench_wal")
    if database is None:
        return [(title, "skipped: no server at 127.0.0.1:5432")]
    name, url = database
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        engine = create_engine(url)
        now = datetime.now(UTC)
        await _history(engine, now)
        async with engine.connect() as connection:
            settings = (
                await connection.execute(
                    text(
                        "SELECT current_setting('full_page_writes'), "
                        "current_setting('wal_compression'), current_setting('server_version')"
                    )
                )
            ).one()
        store, settle, seconds = await _inbox_lifecycle(engine, now)
        worker, worker_seconds = await _worker(engine, now)
        size, rows = await _inbox_bytes(engine)
        await engine.dispose()
    finally:
        await drop_pg_database(name)
    return [
        (
            title,
            f"PostgreSQL {settings[2]}, full_page_writes {settings[0]}, "
            f"wal_compression {settings[1]}; each phase after a CHECKPOINT",
        ),
        (
            "  inbox: store (requests of 100), claim, settle",
            f"{_per_event(store + settle)} (store {_per_event(store)}, claim + settle "
            f"{_per_event(settle)}); target <= {TARGET_BYTES:,} B; {EVENTS / seconds:,.0f} "
            "events/s",
        ),
        (
            "  worker: store, then decode, facts, score, stage",
            f"{_per_event(worker)}; {EVENTS / worker_seconds:,.0f} events/s",
        ),
        (
            "  inbox on disk (inbox_events + inbox_dedup, with indexes)",
            f"{size / rows:,.0f} B/event over {rows:,} events",
        ),
    ]
