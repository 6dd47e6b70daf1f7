"""One poison event in a batch of 5,000: the time the worker takes for the batch beside the
same batch without it, on SQLite and PostgreSQL (target: at most 2x). The poison is injected
where real ones broke the worker, in the fold of facts into the store (a value the column
refuses), so the figure measures the isolation (bisection along account lines), not which bad
values the edge happens to let through."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import create_pg_database, drop_pg_database
from webhooks.connections import ConnectionRegistry
from webhooks.store import facts, inbox
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

EVENTS = 5000
ACCOUNTS = 500
ROUNDS = 5
POISON = "poison"


def _batch(round_: int, *, poisoned: bool) -> list[inbox.NewEvent]:
    now = datetime.now(UTC).isoformat()
    documents: list[dict[str, Any]] = [
        {"type": "usage", "account": str(i % ACCOUNTS), "at": now, "user": f"u{i % 10}"}
        for i in range(EVENTS)
    ]
    if round_ == 0:
        # The first batch declares the accounts' records (the poison's too, so its events
        # reach the fold): events only count for known accounts.
        documents = [
            {"type": "account", "account": str(i % ACCOUNTS), "at": now, "attributes": {}}
            for i in range(EVENTS - 1)
        ]
        documents.append({"type": "account", "account": POISON, "at": now, "attributes": {}})
    if poisoned:
        documents[EVENTS // 2] = {"type": "usage", "account": POISON, "at": now, "user": "u1"}
    return [
        inbox.NewEvent(
            dedup_key=f"{round_}-{poisoned}-{i}", kind=str(document["type"]), payload=document
        )
        for i, document in enumerate(documents)
    ]


# The real fold, kept before the benchmark puts the refusing one in its place.
FOLD = facts.fold


async def _fold_refusing_the_poison(
    session: Any, *, events: Sequence[Any], now: datetime, precedence: facts.Precedence = "crm"
) -> None:
    if any(account.crm_id == POISON for account, _ in events):
        raise ValueError("value too long for type character varying(64)")
    await FOLD(session, events=events, now=now, precedence=precedence)


async def _seconds(url: str) -> tuple[list[float], list[float]]:
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    pipeline = Pipeline(
        sessions=sessions,
        connections=ConnectionRegistry([]),
        options=WorkerOptions(batch_size=EVENTS),
    )
    clean: list[float] = []
    poisoned: list[float] = []
    try:
        # A first batch declares the accounts: every measured batch then finds them.
        for round_ in range(ROUNDS * 2 + 1):
            if round_ == 1:
                # The poison's account exists; from now on its events break the fold.
                facts.fold = _fold_refusing_the_poison
            with_poison = round_ % 2 == 0 and round_ > 0
            async with sessions() as session, session.begin():
                await inbox.insert_events(
                    session,
                    source="native",
                    connection="default",
                    events=_batch(round_, poisoned=with_poison),
                    received_at=datetime.now(UTC),
                )
            started = time.perf_counter()
            report = await pipeline.process_inbox()
            elapsed = time.perf_counter() - started
            assert report.claimed == EVENTS, report
            if round_ > 0:
                (poisoned if with_poison else clean).append(elapsed)
    finally:
        facts.fold = FOLD
        await engine.dispose()
    return clean, poisoned


def _row(name: str, clean: list[float], poisoned: list[float]) -> tuple[str, str]:
    fast, slow = statistics.median(clean), statistics.median(poisoned)
    verdict = "met" if slow <= 2 * fast else "MISSED"
    return (
        f"  {name} (target <= 2x)",
        f"clean {fast:.2f} s, with a poison {slow:.2f} s = {slow / fast:.2f}x ({verdict}); "
        f"medians of {ROUNDS}",
    )


async def run() -> list[tuple[str, str]]:
    rows = [(f"one poison event in a batch of {EVENTS:,} ({ACCOUNTS} accounts)", "")]
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'poison.db'}"
        await asyncio.to_thread(upgrade_to_head, url)
        rows.append(_row("SQLite", *await _seconds(url)))
    database = await create_pg_database("crm_health_bench_poison")
    if database is None:
        rows.append(("  PostgreSQL", "skipped: no server at 127.0.0.1:5432"))
    else:
        try:
            await asyncio.to_thread(upgrade_to_head, database[1])
            rows.append(_row("PostgreSQL", *await _seconds(database[1])))
        finally:
            await drop_pg_database(database[0])
    return rows
