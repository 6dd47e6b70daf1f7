"""Worker throughput (events/s from inbox to scored and staged) on SQLite and PostgreSQL, and
the time to recompute 100,000 accounts with 90 days of facts after a configuration change.

BENCH_RECOMPUTE_DENSITY sets the usage those accounts have: `sparse` (default: 3 users on 3 of
90 days, 9 usage rows an account, the figure earlier runs compared) or `realistic` (25 users,
about 10 of them active each day of the 60-day usage window: ~600 rows an account, what the
growth benchmark's customers hold). BENCH_RECOMPUTE_ACCOUNTS changes the 100,000."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bench.harness import create_pg_database, drop_pg_database
from webhooks.connections import ConnectionRegistry
from webhooks.store import configs, inbox
from webhooks.store.db import SessionFactory, create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import Account, InteractionFact, SourceKind, TicketFact, UsageMonth
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

EVENTS = 50_000
EVENT_ACCOUNTS = 2_000
RECOMPUTE_ACCOUNTS = 100_000
USERS_PER_ACCOUNT = 25
# The days read_facts looks back over usage (the 30-day window and the 30 before it).
USAGE_WINDOW_DAYS = 60
DENSITIES = ("sparse", "realistic")
FEATURES = tuple(f"feature-{n}" for n in range(12))


def recompute_density() -> str:
    density = os.environ.get("BENCH_RECOMPUTE_DENSITY", "sparse")
    if density not in DENSITIES:
        raise SystemExit(f"BENCH_RECOMPUTE_DENSITY={density!r}: choose sparse or realistic")
    return density


def recompute_accounts() -> int:
    return int(os.environ.get("BENCH_RECOMPUTE_ACCOUNTS", str(RECOMPUTE_ACCOUNTS)))


def _events(now: datetime, rng: random.Random) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for n in range(EVENTS):
        account = str(rng.randrange(EVENT_ACCOUNTS))
        at = (now - timedelta(days=rng.uniform(0, 60))).isoformat()
        roll = rng.random()
        if roll < 0.8:
            # Feature-level usage, as products send it: a dozen features, a few used far more.
            feature = FEATURES[min(int(rng.expovariate(0.35)), len(FEATURES) - 1)]
            events.append({"type": "usage", "account": account, "at": at, "user": f"u{n % 50}",
                           "feature": feature})  # fmt: skip
        elif roll < 0.95:
            events.append({"type": "interaction", "account": account, "at": at,
                           "channel": "email", "direction": rng.choice(("customer", "ours")),
                           "contact": f"c{n % 5}"})  # fmt: skip
        else:
            events.append({"type": "ticket", "account": account, "at": at, "ticket": f"t{n}",
                           "priority": rng.choice(("low", "high"))})  # fmt: skip
    return events


async def _declare_accounts(sessions: SessionFactory, pipeline: Pipeline, now: datetime) -> None:
    declared = [
        {"type": "account", "account": str(n), "at": now.isoformat(), "attributes": {}}
        for n in range(EVENT_ACCOUNTS)
    ]
    async with sessions() as session, session.begin():
        await inbox.insert_events(
            session, source="native", connection="default",
            events=[inbox.NewEvent(dedup_key=f"account-{e['account']}", kind="account", payload=e)
                    for e in declared],
            received_at=now,
        )  # fmt: skip
    while (await pipeline.process_inbox()).claimed:
        pass


async def _throughput(url: str) -> float:
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    events = _events(now, random.Random(5))
    pipeline = Pipeline(
        sessions=sessions, connections=ConnectionRegistry([]), options=WorkerOptions()
    )
    # The accounts' records first, untimed: events only count for known accounts, and a
    # source without a connector declares them with `account` events.
    await _declare_accounts(sessions, pipeline, now)
    for start in range(0, EVENTS, 5000):
        async with sessions() as session, session.begin():
            await inbox.insert_events(
                session, source="native", connection="default",
                events=[inbox.NewEvent(dedup_key=str(start + i), kind=str(e["type"]), payload=e)
                        for i, e in enumerate(events[start : start + 5000])],
                received_at=now,
            )  # fmt: skip
    started = time.perf_counter()
    processed = 0
    while (report := await pipeline.process_inbox()).claimed:
        processed += report.processed
    elapsed = time.perf_counter() - started
    await engine.dispose()
    assert processed == EVENTS, processed
    return EVENTS / elapsed


def _usage_rows(
    ids: range, *, density: str, today: date, rng: random.Random
) -> list[dict[str, object]]:
    """The accounts' usage as stored: per account, month and user, the bits of the active days."""
    active: list[tuple[int, date, str]] = []
    if density == "sparse":
        active = [
            (i, today - timedelta(days=d), f"u{u}")
            for i in ids
            for u in range(3)
            for d in rng.sample(range(90), 3)
        ]
    else:
        for i in ids:
            # Each user's chance of using the product on a day: about 10 of 25 a day.
            chances = [rng.betavariate(2, 3) for _ in range(USERS_PER_ACCOUNT)]
            for d in range(USAGE_WINDOW_DAYS):
                day = today - timedelta(days=d)
                active += [
                    (i, day, f"u{u}") for u, chance in enumerate(chances) if rng.random() < chance
                ]
    months: dict[tuple[int, date, str], int] = defaultdict(int)
    for i, day, user in active:
        months[(i, day.replace(day=1), user)] |= 1 << (day.day - 1)
    return [
        {"account_id": i, "month": month, "user": user, "days": days}
        for (i, month, user), days in months.items()
    ]


async def seed_facts(
    url: str, *, accounts: int = RECOMPUTE_ACCOUNTS, density: str = "sparse"
) -> None:
    """`accounts` accounts (ids 1..accounts, connection default), each with 90 days of
    interactions, a ticket and usage of the `density` (see the module's docstring)."""
    engine = create_engine(url)
    rng = random.Random(9)
    now = datetime.now(UTC)
    today = now.date()
    # Realistic usage is ~600 rows an account: smaller chunks keep the rows built at once small.
    chunk = 5000 if density == "sparse" else 500
    async with engine.begin() as connection:
        for start in range(0, accounts, chunk):
            ids = range(start + 1, min(start + chunk, accounts) + 1)
            await connection.execute(
                insert(Account),
                [
                    {
                        "id": i,
                        "connection": "default",
                        "crm": "hubspot",
                        "crm_id": str(i),
                        "attributes": {"seats": {"value": "20", "at": now.isoformat()}},
                        "band": "unknown",
                        "created_at": now,
                        "last_usage_at": now - timedelta(days=rng.uniform(0, 20)),
                        "last_interaction_at": now,
                    }
                    for i in ids
                ],
            )
            await connection.execute(
                insert(UsageMonth), _usage_rows(ids, density=density, today=today, rng=rng)
            )
            await connection.execute(
                insert(InteractionFact),
                [
                    {
                        "account_id": i,
                        "at": now - timedelta(days=rng.uniform(0, 90)),
                        "channel": "email",
                        "direction": rng.choice(("customer", "ours")),
                        "contact": f"c{rng.randrange(4)}",
                    }
                    for i in ids
                    for _ in range(3)
                ],
            )
            await connection.execute(insert(TicketFact), [
                {"account_id": i, "ticket": "t", "opened_at": now - timedelta(days=10),
                 "priority": "low", "updated_at": now} for i in ids
            ])  # fmt: skip
        await connection.execute(insert(SourceKind), [
            {"connection": "default", "kind": k, "first_seen_at": now}
            for k in ("usage", "interaction", "ticket")
        ])  # fmt: skip
    await engine.dispose()


async def recompute(url: str, *, accounts: int = RECOMPUTE_ACCOUNTS) -> float:
    """Seconds to score every account after a configuration change."""
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        await configs.request_recompute(
            session, config_id=None, reason="benchmark", now=datetime.now(UTC)
        )
    pipeline = Pipeline(
        sessions=sessions, connections=ConnectionRegistry([]), options=WorkerOptions()
    )
    # As a started worker does (webhooks.cli.service.worker): no full collections walking
    # what was built before the job.
    gc.freeze()
    started = time.perf_counter()
    rescored = 0
    while count := await pipeline.recompute_step():
        rescored += count
    elapsed = time.perf_counter() - started
    await engine.dispose()
    assert rescored == accounts, rescored
    return elapsed


async def run() -> list[tuple[str, str]]:
    return [*(await run_throughput()), *(await run_recompute())]


async def run_throughput() -> list[tuple[str, str]]:
    """The throughput rows alone (`python -m bench.worker throughput`)."""
    rows: list[tuple[str, str]] = [
        (f"worker, {EVENTS:,} native events over {EVENT_ACCOUNTS:,} accounts", "")
    ]
    # This VM's speed varies by tens of percent between runs: report the median of three
    # fresh databases, with the spread, rather than one lucky or unlucky run.
    rates = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'worker.db'}"
            await asyncio.to_thread(upgrade_to_head, url)
            rates.append(await _throughput(url))
    rows.append(("  SQLite, one worker, median of 3 (target >= 5,000/s)", _median(rates)))
    rates = []
    for _ in range(3):
        database = await create_pg_database("crm_health_bench_worker")
        if database is None:
            rows.append(("  PostgreSQL, one worker", "skipped: no server at 127.0.0.1:5432"))
            return rows
        try:
            await asyncio.to_thread(upgrade_to_head, database[1])
            rates.append(await _throughput(database[1]))
        finally:
            await drop_pg_database(database[0])
    rows.append(("  PostgreSQL, one worker, median of 3", _median(rates)))
    return rows


def _median(rates: list[float]) -> str:
    rates = sorted(rates)
    return f"{rates[1]:,.0f} events/s (runs {rates[0]:,.0f}..{rates[2]:,.0f})"


async def run_recompute() -> list[tuple[str, str]]:
    """The recompute rows alone (`python -m bench.worker recompute`)."""
    rows: list[tuple[str, str]] = []
    density, accounts = recompute_density(), recompute_accounts()
    rows.append((f"recompute {accounts:,} accounts, 90 days of facts, {density} usage", ""))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'recompute.db'}"
        await asyncio.to_thread(upgrade_to_head, url)
        seeding = time.perf_counter()
        await seed_facts(url, accounts=accounts, density=density)
        seeded = time.perf_counter() - seeding
        seconds = await recompute(url, accounts=accounts)
        rows.append(
            (
                "  SQLite (target <= 60 s)",
                f"{seconds:.1f} s ({accounts / seconds:,.0f}/s; seeding took {seeded:.0f} s)",
            )
        )
    return rows


if __name__ == "__main__":
    from webhooks.logging import configure_logging

    configure_logging(level="warning")
    chosen = {"recompute": run_recompute, "throughput": run_throughput}.get(
        sys.argv[1] if sys.argv[1:] else "", run
    )
    for name, value in asyncio.run(chosen()):
        print(f"{name:60} | {value}")
