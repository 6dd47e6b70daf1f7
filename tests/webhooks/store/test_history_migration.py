"""Migrations 0024 and 0025 on SQLite and PostgreSQL: health history loses its driver texts,
then its signal scores and coverage, and keeps every row and everything else it held; a
downgrade brings the columns back, empty."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import insert, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from testkit import bare_accounts, in_thread
from webhooks.store.migrate import alembic_config
from webhooks.store.models import Account, core_table

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
# (account, computed at, score, band, signals)
ROWS: list[tuple[int, datetime, int | None, str, dict[str, float | None]]] = [
    (1, NOW, 71, "healthy", {"active_use": 80.0}),
    (1, NOW.replace(hour=13), 40, "at_risk", {}),
    (2, NOW, None, "unknown", {"momentum": None}),
]


async def _columns(engine) -> list[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: [column["name"] for column in inspect(sync).get_columns("health_history")]
        )


async def _history(engine) -> list[tuple[object, ...]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT account_id, score, band, signals, coverage, config_version "
                "FROM health_history ORDER BY id"
            )
        )
        return [
            (a, s, b, json.loads(g) if isinstance(g, str) else g, c, v) for a, s, b, g, c, v in rows
        ]


async def _insert_rows(engine, *, drivers: bool) -> None:
    """ROWS as the schema before 0024 (with driver texts) or before 0025 held them."""
    statement = (
        "INSERT INTO health_history (account_id, computed_at, score, band, signals, drivers, "
        "coverage, config_version) VALUES (:a, :at, :score, :band, :signals, :drivers, 0.75, 'v1')"
        if drivers
        else "INSERT INTO health_history (account_id, computed_at, score, band, signals, "
        "coverage, config_version) VALUES (:a, :at, :score, :band, :signals, 0.75, 'v1')"
    )
    async with engine.begin() as connection:
        await connection.execute(insert(core_table(Account)), bare_accounts((1, 2), created_at=NOW))
        await connection.execute(
            text(statement),
            [
                {"a": a, "at": at.replace(tzinfo=None), "score": score, "band": band,
                 "signals": json.dumps(signals), "drivers": json.dumps(["Seat utilization 11%"])}
                for a, at, score, band, signals in ROWS
            ],
        )  # fmt: skip


async def test_history_drops_its_drivers_and_keeps_every_row(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0023")
    engine = create_async_engine(empty_database_url)
    try:
        await _insert_rows(engine, drivers=True)
        before = await _history(engine)
        in_thread(command.upgrade, config, "20261205_0024")
        assert "drivers" not in await _columns(engine)
        assert await _history(engine) == before
        in_thread(command.downgrade, config, "20261205_0023")
        assert "drivers" in await _columns(engine)
        async with engine.connect() as connection:
            drivers = (
                await connection.execute(text("SELECT drivers FROM health_history"))
            ).scalars()
            assert [json.loads(d) if isinstance(d, str) else d for d in drivers] == [[], [], []]
        assert await _history(engine) == before
    finally:
        await engine.dispose()


async def _kept(engine) -> list[tuple[object, ...]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT account_id, computed_at, score, band, config_version "
                "FROM health_history ORDER BY id"
            )
        )
        return [tuple(row) for row in rows]


async def test_history_drops_its_signals_and_coverage_and_keeps_every_row(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0024")
    engine = create_async_engine(empty_database_url)
    try:
        await _insert_rows(engine, drivers=False)
        before = await _kept(engine)
        assert len(before) == len(ROWS)
        in_thread(command.upgrade, config, "20261205_0025")
        assert {"signals", "coverage"}.isdisjoint(await _columns(engine))
        assert await _kept(engine) == before
        in_thread(command.downgrade, config, "20261205_0024")
        assert {"signals", "coverage"} <= set(await _columns(engine))
        restored = await _history(engine)
        assert [(signals, coverage) for _, _, _, signals, coverage, _ in restored] == [
            ({}, 0.0)
        ] * len(ROWS)
        assert await _kept(engine) == before
    finally:
        await engine.dispose()
