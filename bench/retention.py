"""Retention on a big database: the first prune of 100 accounts with two years of health
history (4 rows a day) and 100,000 processed inbox events, on SQLite and PostgreSQL. What
matters is how long each batch's transaction lasts (on SQLite nobody else writes meanwhile),
not the total."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.harness import create_pg_database, drop_pg_database
from webhooks import retention
from webhooks.store.db import SessionFactory, create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import Account, HealthSnapshot, InboxEvent

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
ACCOUNTS = 100
DAYS = 800
PER_DAY = 4
INBOX = 100_000
CHUNK = 20_000


async def _load(sessions: SessionFactory) -> None:
    accounts = [
        {"connection": "default", "crm": "hubspot", "crm_id": str(i), "attributes": {},
         "band": "unknown", "created_at": NOW - timedelta(days=DAYS)}
        for i in range(ACCOUNTS)
    ]  # fmt: skip
    async with sessions() as session, session.begin():
        result = await session.execute(insert(Account).returning(Account.id), accounts)
        ids = list(result.scalars())
    health: list[dict[str, Any]] = [
        {"account_id": account_id, "score": 50, "band": "neutral", "config_version": "v1",
         "computed_at": NOW - timedelta(days=day, hours=step * 24 / PER_DAY)}
        for account_id in ids for day in range(DAYS) for step in range(PER_DAY)
    ]  # fmt: skip
    for start in range(0, len(health), CHUNK):
        async with sessions() as session, session.begin():
            await session.execute(insert(HealthSnapshot), health[start : start + CHUNK])
    for start in range(0, INBOX, CHUNK):
        rows = []
        for i in range(start, min(INBOX, start + CHUNK)):
            at = NOW - timedelta(days=30 * i / INBOX)
            rows.append(
                {"source": "native", "connection": "default", "dedup_key": f"k{i}",
                 "kind": "usage", "payload": {"type": "usage", "account": "1", "user": "u"},
                 "received_at": at, "status": "done", "attempts": 0, "available_at": at,
                 "processed_at": at}
            )  # fmt: skip
        async with sessions() as session, session.begin():
            await session.execute(insert(InboxEvent), rows)


async def _measure(url: str) -> list[tuple[str, str]]:
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    rows: list[tuple[str, str]] = []
    try:
        await _load(sessions)
        policy = retention.RetentionPolicy()
        for table in retention.tables(policy, now=NOW, longest_cooldown_days=7):
            if table.name not in ("inbox_events", "health_history"):
                continue
            seconds: list[float] = []
            deleted = 0
            while True:
                started = time.perf_counter()
                async with sessions() as session, session.begin():
                    batch = await table.delete(session, policy.batch)
                seconds.append(time.perf_counter() - started)
                deleted += batch.deleted
                if not batch.more:
                    break
            rows.append(
                (
                    f"    {table.name}",
                    f"{deleted:,} rows in {len(seconds)} batches of {policy.batch:,}: a batch "
                    f"{statistics.median(seconds) * 1000:.0f} ms median, "
                    f"{max(seconds) * 1000:.0f} ms max; {sum(seconds):.1f} s in all",
                )
            )
    finally:
        await engine.dispose()
    return rows


async def run() -> list[tuple[str, str]]:
    rows = [
        (
            f"first prune: {ACCOUNTS} accounts x {DAYS} days x {PER_DAY} health rows, "
            f"{INBOX:,} processed inbox events",
            "",
        ),
        ("  SQLite", ""),
    ]
    with tempfile.TemporaryDirectory() as folder:
        rows += await _measure(f"sqlite+aiosqlite:///{Path(folder) / 'retention.db'}")
    database = await create_pg_database("crm_health_bench_retention")
    if database is None:
        rows.append(("  PostgreSQL", "skipped: no server at 127.0.0.1:5432"))
        return rows
    rows.append(("  PostgreSQL", ""))
    try:
        rows += await _measure(database[1])
    finally:
        await drop_pg_database(database[0])
    return rows
