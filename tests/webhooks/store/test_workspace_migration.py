"""Migration 0032 on SQLite and PostgreSQL: accounts stored before it get their `arr` and
`renewal_date` columns filled from their attributes, read as the service reads them (an
epoch-milliseconds date too); what cannot be read stays NULL and the attribute is kept."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from alembic import command
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from testkit import bare_accounts, in_thread
from webhooks.store.migrate import alembic_config
from webhooks.store.models import Account, core_table

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def attribute(value: object) -> dict[str, object]:
    return {"value": value, "at": NOW.isoformat(), "origin": "crm"}


# account id -> (its attributes, the arr and renewal_date columns expected)
ACCOUNTS: dict[int, tuple[dict[str, Any], float | None, date | None]] = {
    1: ({"arr": attribute("12000.5"), "renewal_date": attribute("2027-01-31")}, 12000.5,
        date(2027, 1, 31)),
    2: ({"arr": attribute(90000), "renewal_date": attribute("1801353600000")}, 90000.0,
        date(2027, 1, 31)),
    3: ({"arr": attribute("n/a"), "renewal_date": attribute("31/01/2027")}, None, None),
    4: ({"arr": attribute("-5"), "renewal_date": attribute("2027-01-31T23:00:00Z")}, None,
        date(2027, 1, 31)),
    5: ({"arr": attribute(None), "renewal_date": attribute("")}, None, None),
    6: ({"name": attribute("No money")}, None, None),
    7: ({"arr": attribute("inf")}, None, None),
}  # fmt: skip


async def test_the_columns_are_filled_from_the_attributes(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0031")
    engine = create_async_engine(empty_database_url)
    try:
        rows = bare_accounts(ACCOUNTS, created_at=NOW)
        for row in rows:
            row["attributes"] = ACCOUNTS[row["id"]][0]
        async with engine.begin() as connection:
            await connection.execute(insert(core_table(Account)), rows)
        in_thread(command.upgrade, config, "20261206_0032")
        async with engine.connect() as connection:
            found = (
                await connection.execute(
                    text("SELECT id, arr, renewal_date, attributes FROM accounts ORDER BY id")
                )
            ).all()
    finally:
        await engine.dispose()
    for account_id, arr, renewal, attributes in found:
        _, expected_arr, expected_renewal = ACCOUNTS[account_id]
        # SQLite hands dates back as text.
        stored = date.fromisoformat(renewal) if isinstance(renewal, str) else renewal
        assert (arr, stored) == (expected_arr, expected_renewal), account_id
        assert attributes is not None  # the attributes stay as they were
    assert len(found) == len(ACCOUNTS)
