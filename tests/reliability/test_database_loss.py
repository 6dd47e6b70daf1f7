"""PostgreSQL connections lost while the worker runs (terminated several times, and refused
for a while): the worker logs the failed passes, keeps going, and every event ends done exactly
once, with facts that match the events and nothing dead-lettered by the outage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from testkit import USAGE_ROWS, crm_accounts, make_settings, native, store_native, usage_days
from webhooks.runtime import Runtime
from webhooks.store import inbox
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import Account, CollaborationFact, InboxEvent
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

PG_SERVER_URL = os.environ.get(
    "CRM_HEALTH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

EVENTS = 2500
ACCOUNTS = 100
USERS = 15
DAYS = 25
# Collaboration events add a fact row each (no dedup in the facts): an event processed twice
# shows as one row too many.
COLLABORATION_SHARE = 0.15
BATCH_SIZE = 60
# A pass that fails after claiming leaves its batch to the lease: short, so the test is too.
LEASE_SECONDS = 2
# Faults land when this share of the events is done: connections terminated at each, and at
# OUTAGE_AT the database also refuses new connections for OUTAGE_SECONDS.
FAULTS_AT = (0.1, 0.3, 0.5, 0.7)
OUTAGE_AT = 0.5
OUTAGE_SECONDS = 1.5
RUN_SECONDS = 60


async def _query(statement: str, **params: object) -> list[Any]:
    """Rows of one statement on the server's maintenance database (outside the one tested)."""
    engine = create_async_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(statement), params)).all())
    finally:
        await engine.dispose()


async def _ddl(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, str]]:
    """(name, URL) of a throwaway, migrated PostgreSQL database; dropped after the test."""
    name = f"crm_health_dbloss_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        await _ddl(PG_SERVER_URL, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        message = f"PostgreSQL unreachable at {PG_SERVER_URL}: {exc!r}"
        if ON_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    url = PG_SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        yield name, url
    finally:
        await _ddl(PG_SERVER_URL, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await _ddl(PG_SERVER_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _events() -> list[inbox.NewEvent]:
    rng = random.Random("database-loss")
    noon = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    events = []
    for n in range(EVENTS):
        account = f"acct-{rng.randrange(ACCOUNTS)}"
        at = (noon - timedelta(days=rng.randrange(DAYS))).isoformat()
        payload: dict[str, Any] = {"id": f"e{n}", "account": account, "at": at}
        if rng.random() < COLLABORATION_SHARE:
            payload |= {"type": "collaboration", "kind": rng.choice(["feedback", "beta"])}
        else:
            payload |= {"type": "usage", "user": f"user-{rng.randrange(USERS)}"}
        events.append(inbox.NewEvent(dedup_key=f"e{n}", kind=payload["type"], payload=payload))
    return events


def _expected(
    events: list[inbox.NewEvent],
) -> tuple[set[tuple[str, date, str]], Counter[str], set[str]]:
    usage: set[tuple[str, date, str]] = set()
    collaboration: Counter[str] = Counter()
    for event in events:
        payload = event.payload
        if payload["type"] == "usage":
            day = datetime.fromisoformat(payload["at"]).astimezone(UTC).date()
            usage.add((payload["account"], day, payload["user"]))
        else:
            collaboration[payload["account"]] += 1
    return usage, collaboration, {event.payload["account"] for event in events}


async def _rows(engine: AsyncEngine, statement: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(statement)).all())


async def _done(engine: AsyncEngine) -> int | None:
    """Events done so far; None while the database refuses connections."""
    try:
        [[count]] = await _rows(
            engine,
            select(func.count()).select_from(InboxEvent).where(InboxEvent.status == inbox.DONE),
        )
    except Exception:
        return None
    return int(count)


async def _terminate(name: str) -> int:
    """Close every connection to the database but our own, as a failover or restart does."""
    rows = await _query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()",
        name=name,
    )
    return len(rows)


async def test_worker_survives_lost_connections_and_processes_every_event_once(
    database: tuple[str, str],
) -> None:
    name, url = database
    started = time.monotonic()
    runtime = Runtime.build(
        make_settings(
            url,
            # Native events only, no CRM: the database is what fails here.
            hubspot_client_secret=None,
            hubspot_access_token=None,
            worker_batch_size=BATCH_SIZE,
            worker_poll_seconds=0.05,
            worker_lease_seconds=LEASE_SECONDS,
        )
    )
    events = _events()
    await crm_accounts(runtime, [f"acct-{n}" for n in range(ACCOUNTS)])
    async with runtime.sessions() as session, session.begin():
        stored = await inbox.insert_events(
            session,
            source="native",
            connection="default",
            events=events,
            received_at=datetime.now(UTC),
        )
    assert stored == EVENTS
    reader = create_async_engine(url, poolclass=NullPool)
    terminated: list[int] = []
    worker: asyncio.Task[None] | None = None
    try:
        with capture_logs() as logs:
            worker = asyncio.create_task(runtime.pipeline.run_forever(runtime.stop))
            deadline = time.monotonic() + RUN_SECONDS
            for share in FAULTS_AT:
                while ((await _done(reader)) or 0) < EVENTS * share:
                    assert not worker.done(), "the worker stopped"
                    assert time.monotonic() < deadline, f"stuck before {share:.0%} done"
                    await asyncio.sleep(0.01)
                remaining = EVENTS - ((await _done(reader)) or 0)
                assert remaining > 0, "the worker finished before every fault was injected"
                if share == OUTAGE_AT:
                    await _ddl(PG_SERVER_URL, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                    terminated.append(await _terminate(name))
                    await asyncio.sleep(OUTAGE_SECONDS)
                    assert not worker.done(), "the worker stopped during the outage"
                    await _ddl(PG_SERVER_URL, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                else:
                    terminated.append(await _terminate(name))
            # Drained: nothing pending or claimed (a failed pass's batch waits for its lease).
            while True:
                assert not worker.done(), "the worker stopped"
                assert time.monotonic() < deadline, await _statuses(reader)
                statuses = await _statuses(reader)
                if not statuses.keys() & {inbox.PENDING, inbox.PROCESSING}:
                    break
                await asyncio.sleep(0.05)
            drained_at = time.monotonic()
            runtime.stop.set()
            await asyncio.wait_for(worker, timeout=15)
        await _assert_processed_once(reader, events)
    finally:
        runtime.stop.set()
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await reader.dispose()
        await runtime.aclose()

    logged = Counter(entry["event"] for entry in logs)
    # The outage failed at least one pass, and the worker went on to finish the work.
    assert logged["worker_pass_failed"] >= 1, logged
    last_failure = max(i for i, e in enumerate(logs) if e["event"] == "worker_pass_failed")
    assert any(e["event"] == "batch_processed" for e in logs[last_failure:]), logged
    assert [e["event"] for e in logs][-1] == "worker_stopped"
    attempts = Counter(row[0] for row in await _rows_once(url, select(InboxEvent.attempts)))
    print(
        f"\ndatabase loss: {EVENTS} events done once in {drained_at - started:.1f} s; "
        f"connections terminated {terminated}; failed passes {logged['worker_pass_failed']}, "
        f"batches isolated {logged['batch_failed_isolating']}, "
        f"event failures {logged['event_failed']}; attempts {dict(attempts)}"
    )


async def _statuses(engine: AsyncEngine) -> dict[str, int]:
    try:
        rows = await _rows(
            engine, select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
        )
    except Exception:
        return {inbox.PENDING: -1}
    return {row[0]: row[1] for row in rows}


async def _rows_once(url: str, statement: Any) -> list[Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        return await _rows(engine, statement)
    finally:
        await engine.dispose()


async def _assert_processed_once(db: AsyncEngine, events: list[inbox.NewEvent]) -> None:
    statuses = await _statuses(db)
    # None dead-lettered by the outage, none left behind.
    assert statuses == {inbox.DONE: EVENTS}, statuses
    usage, collaboration, accounts = _expected(events)
    found_usage = set(usage_days(await _rows(db, USAGE_ROWS)))
    assert found_usage == usage, (len(found_usage - usage), len(usage - found_usage))
    found_collaboration = Counter(
        {
            row[0]: row[1]
            for row in await _rows(
                db,
                select(Account.crm_id, func.count())
                .select_from(CollaborationFact)
                .join(Account, Account.id == CollaborationFact.account_id)
                .group_by(Account.crm_id),
            )
        }
    )
    # One fact row per collaboration event: none lost, none folded twice.
    assert found_collaboration == collaboration
    scored = await _rows(db, select(Account.crm_id, Account.health_updated_at))
    assert {row[0] for row in scored} == accounts
    assert all(row[1] is not None for row in scored), "an account was never scored"


async def _waiting_on_a_lock(name: str, *, besides: set[int]) -> int:
    """The backend of the database that waits for a row lock (not one of `besides`)."""
    deadline = time.monotonic() + 10
    while True:
        rows = await _query(
            "SELECT pid FROM pg_stat_activity WHERE datname = :name AND wait_event_type = 'Lock'",
            name=name,
        )
        waiting = {row[0] for row in rows} - besides
        if waiting:
            return int(min(waiting))
        assert time.monotonic() < deadline, "the worker never waited for the held account"
        await asyncio.sleep(0.01)


async def test_a_connection_lost_mid_event_costs_the_event_no_attempt(
    database: tuple[str, str],
) -> None:
    """Deterministic: the test holds the account's row lock, so the worker's transaction is
    known to be under way when its connection is terminated, and terminates it again during
    the next try. A lost connection is the database's failure: the claimed events go back to
    pending without an attempt, however often it happens, so an outage never dead-letters
    them."""
    name, url = database
    runtime = Runtime.build(
        make_settings(url, hubspot_client_secret=None, hubspot_access_token=None)
    )
    pipeline = Pipeline(
        sessions=runtime.sessions,
        connections=runtime.connections,
        options=WorkerOptions(poll_seconds=0.05, lease_seconds=2, retry_base_seconds=0.2),
    )
    holder_engine = create_async_engine(url, poolclass=NullPool)
    stop = asyncio.Event()
    worker: asyncio.Task[None] | None = None
    try:
        # The account exists (processed once), then three more events for it wait.
        await store_native(runtime, [native("usage", "held", user="u0")])
        assert (await pipeline.process_inbox()).processed == 1
        await store_native(
            runtime, [native("usage", "held", days_ago=1, user=f"u{n}") for n in range(1, 4)]
        )
        async with holder_engine.connect() as holder:
            await holder.begin()
            holder_pid = int(await holder.scalar(text("SELECT pg_backend_pid()")) or 0)
            await holder.execute(text("SELECT id FROM accounts WHERE crm_id = 'held' FOR UPDATE"))
            worker = asyncio.create_task(pipeline.run_forever(stop))
            # 1: the batch's transaction is lost: the batch is retried event by event.
            batch_pid = await _waiting_on_a_lock(name, besides={holder_pid})
            await _terminate_backend(batch_pid)
            # 2: the first event's own transaction is lost in the same way.
            event_pid = await _waiting_on_a_lock(name, besides={holder_pid, batch_pid})
            await _terminate_backend(event_pid)
            await holder.rollback()
        reader = create_async_engine(url, poolclass=NullPool)
        try:
            deadline = time.monotonic() + 20
            while (await _statuses(reader)).get(inbox.DONE) != 4:
                assert not worker.done(), "the worker stopped"
                assert time.monotonic() < deadline, await _statuses(reader)
                await asyncio.sleep(0.05)
            rows = await _rows(reader, select(InboxEvent.id, InboxEvent.attempts))
        finally:
            await reader.dispose()
    finally:
        stop.set()
        if worker is not None:
            await asyncio.wait_for(worker, timeout=15)
        await holder_engine.dispose()
        await runtime.aclose()
    charged = {row[0]: row[1] for row in rows if row[1]}
    assert not charged, f"attempts charged for a lost connection, by event id: {charged}"


async def _terminate_backend(pid: int) -> None:
    [(terminated,)] = await _query("SELECT pg_terminate_backend(:pid)", pid=pid)
    assert terminated
