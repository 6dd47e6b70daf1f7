"""Outcomes in the facts store, on SQLite and PostgreSQL: folded with their ARR, read back with
it, and carried both ways by migration 0030."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from connector.model import AccountAttributes, NormalisedEvent, Outcome
from testkit import bare_accounts, in_thread
from webhooks.store import accounts, facts, outcomes
from webhooks.store.migrate import alembic_config
from webhooks.store.models import Account, core_table

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def fold(sessions, crm_id: str, *events: NormalisedEvent, connection="default") -> None:
    key = (connection, "hubspot", crm_id)
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(session, keys=[key], now=NOW)
        await facts.fold(session, events=[(locked[key], e) for e in events], now=NOW)
        await accounts.save(session, accounts=list(locked.values()))


async def test_outcomes_keep_their_arr(sessions) -> None:
    await fold(sessions, "1", AccountAttributes(account="1", at=ago(400), attributes={"name": "A"}))
    await fold(sessions, "1", Outcome(account="1", at=ago(30), outcome="renewed", arr=48000.5))
    await fold(sessions, "2", Outcome(account="2", at=ago(90), outcome="churned"))
    await fold(sessions, "3", Outcome(account="3", at=ago(10), outcome="churned", arr=0.0))
    await fold(
        sessions, "4", Outcome(account="4", at=ago(5), outcome="renewed", arr=7.0), connection="x"
    )
    async with sessions() as session:
        with_arr = await outcomes.known_outcomes(session, connection="default")
    assert [(o.account.crm_id, o.at, o.outcome, o.arr) for o in with_arr] == [
        ("2", ago(90), "churned", None),
        ("1", ago(30), "renewed", 48000.5),
        ("3", ago(10), "churned", 0.0),
    ]
    assert with_arr[1].account.name == "A"


# --- migration 0030 -------------------------------------------------------------------------------


async def test_migration_0030_adds_arr_to_outcomes_and_takes_it_back(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0029")
    engine = create_async_engine(empty_database_url)
    held = {"account_id": 1, "at": ago(30), "outcome": "renewed"}
    insert_outcome = text(
        "INSERT INTO outcomes (account_id, at, outcome) VALUES (:account_id, :at, :outcome)"
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(core_table(Account)), bare_accounts((1,), created_at=NOW)
            )
            await connection.execute(insert_outcome, held)
        in_thread(command.upgrade, config, "20261205_0030")
        async with engine.begin() as connection:
            before = list(await connection.execute(text("SELECT outcome, arr FROM outcomes")))
            assert before == [("renewed", None)]
            await connection.execute(
                text(
                    "INSERT INTO outcomes (account_id, at, outcome, arr) "
                    "VALUES (1, :at, 'churned', 1250.5)"
                ),
                {"at": ago(10)},
            )
            after = list(await connection.execute(text("SELECT arr FROM outcomes ORDER BY at")))
            assert after == [(None,), (1250.5,)]
        in_thread(command.downgrade, config, "20261205_0029")
        async with engine.connect() as connection:
            back = list(
                await connection.execute(
                    text("SELECT account_id, outcome FROM outcomes ORDER BY at")
                )
            )
            assert back == [(1, "renewed"), (1, "churned")]
            if connection.dialect.name == "sqlite":
                ddl = await connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'outcomes'")
                )
                assert "arr" not in ddl
                assert "fk_outcomes_account_id_accounts" in ddl
            else:
                columns = await connection.scalars(
                    text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'outcomes'"
                    )
                )
                assert "arr" not in set(columns)
        # And up again, as a redeploy after a rollback does.
        in_thread(command.upgrade, config, "20261205_0030")
    finally:
        await engine.dispose()
