"""Write-back settling against a concurrent `stage` on PostgreSQL, where workers run side by
side: new values staged while a send is being settled must never leave the row SENDING (it
would then wait for its lease, 120 s, before anyone sent them).

The settle is paused after its first statement and the stage is run right there: the
interleaving that used to strand the row, made deterministic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from webhooks.store import accounts, writeback
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import Base

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(postgres_url: str) -> AsyncIterator[Any]:
    engine = create_engine(postgres_url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield create_session_factory(engine)
    await engine.dispose()


def owed(account_id: int, seats: int) -> writeback.Owed:
    fields = {"health_score": seats}
    return writeback.Owed(
        account_id=account_id,
        connection="default",
        record_id="101",
        fields=fields,
        fingerprint=f"score-{seats}",
    )


async def sending_version_one(sessions: Any) -> int:
    """An account whose first values are claimed for sending (SENDING, version 1)."""
    async with sessions() as session, session.begin():
        found = await accounts.lock_accounts(session, keys={("default", "hubspot", "101")}, now=NOW)
        account_id = next(iter(found.values())).id
        await writeback.stage(session, owed=[owed(account_id, 1)], now=NOW)
    async with sessions() as session, session.begin():
        [claimed] = await writeback.claim_due(
            session, connections={"default"}, now=NOW, limit=10, lease_seconds=120
        )
        assert claimed[2] == 1
    return int(account_id)


async def settle_written(session: Any, account_id: int) -> None:
    await writeback.mark_written(session, account_id=account_id, version=1, now=NOW)


async def settle_failed(session: Any, account_id: int) -> None:
    await writeback.mark_write_failed(
        session,
        account_id=account_id,
        version=1,
        error="503",
        now=NOW,
        retry_in_seconds=0,
    )


@pytest.mark.parametrize("settle", [settle_written, settle_failed], ids=["written", "failed"])
async def test_values_staged_while_a_send_is_settled_are_sent_next(sessions, settle) -> None:
    account_id = await sending_version_one(sessions)
    first_statement_done = asyncio.Event()
    resume = asyncio.Event()

    async def settling() -> None:
        async with sessions() as session, session.begin():
            execute = session.execute

            async def paused_after_first(*args: Any, **kwargs: Any) -> Any:
                result = await execute(*args, **kwargs)
                if not first_statement_done.is_set():
                    first_statement_done.set()
                    await resume.wait()
                return result

            session.execute = paused_after_first
            await settle(session, account_id)

    async def staging() -> None:
        async with sessions() as session, session.begin():
            await writeback.stage(session, owed=[owed(account_id, 2)], now=NOW)

    settler = asyncio.create_task(settling())
    await asyncio.wait_for(first_statement_done.wait(), timeout=10)
    stager = asyncio.create_task(staging())
    # The stage either waits for the settle's row lock or (the old fault) commits right here.
    await asyncio.wait({stager}, timeout=0.5)
    resume.set()
    await asyncio.wait_for(asyncio.gather(settler, stager), timeout=10)

    async with sessions() as session:
        item = await writeback.get_item(session, account_id=account_id)
    assert item is not None
    assert (item.version, item.fields) == (2, {"health_score": 2})
    assert item.status == writeback.PENDING, "version 2 was left SENDING until its lease ran out"
