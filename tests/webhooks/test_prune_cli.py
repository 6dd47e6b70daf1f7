"""`crm-health prune`: a table of what goes and what each table keeps, a dry run that deletes
nothing, the explicit dead-letter purge, the SQLite VACUUM, and bad options as one line."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from webhooks.cli import cli
from webhooks.clock import utcnow
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import InboxEvent


@pytest.fixture
def cli_env(database_url, monkeypatch):
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    config = structlog.get_config()
    yield database_url
    structlog.configure(**config)


def inbox_rows(url: str, *statuses_and_days: tuple[str, float]) -> None:
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"source": "native", "connection": "default", "dedup_key": f"k{i}", "kind": "usage",
         "payload": {}, "received_at": now - timedelta(days=days), "status": status,
         "attempts": 0, "available_at": now - timedelta(days=days),
         "processed_at": now - timedelta(days=days)}
        for i, (status, days) in enumerate(statuses_and_days)
    ]  # fmt: skip

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await session.execute(insert(InboxEvent), rows)
        finally:
            await engine.dispose()

    asyncio.run(run())


def inbox_count(url: str) -> int:
    async def run() -> int:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                return int(await session.scalar(select(func.count()).select_from(InboxEvent)) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def line_of(output: str, table: str) -> list[str]:
    for line in output.splitlines():
        if line.startswith(table + " "):
            return line.split()
    raise AssertionError(f"no line for {table} in:\n{output}")


def test_dry_run_lists_what_would_go_and_deletes_nothing(cli_env) -> None:
    inbox_rows(cli_env, ("done", 20), ("ignored", 30), ("done", 1), ("dead", 90))
    result = CliRunner().invoke(cli, ["prune", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert line_of(result.output, "inbox_events")[1] == "2"
    assert "dead letters" in result.output
    assert "would be deleted (dry run)" in result.output
    assert line_of(result.output, "outcomes")[1] == "-"
    assert inbox_count(cli_env) == 4


def test_prune_deletes_and_says_how_many(cli_env) -> None:
    inbox_rows(cli_env, ("done", 20), ("ignored", 30), ("done", 1), ("dead", 90))
    result = CliRunner().invoke(cli, ["prune"])
    assert result.exit_code == 0, result.output
    assert line_of(result.output, "inbox_events")[1] == "2"
    assert result.output.strip().endswith("2 row(s) deleted")
    assert inbox_count(cli_env) == 2


def test_dead_letters_are_purged_only_when_asked_and_old_enough(cli_env) -> None:
    inbox_rows(cli_env, ("dead", 90), ("dead", 2), ("done", 1))
    result = CliRunner().invoke(cli, ["prune", "--dead-letters", "--older-than-days", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 dead letter(s) that failed before")
    assert inbox_count(cli_env) == 2


@pytest.mark.parametrize(
    "arguments",
    [["--dead-letters"], ["--older-than-days", "3"], ["--vacuum", "--dry-run"]],
)
def test_options_that_do_not_go_together_are_one_line(cli_env, arguments) -> None:
    result = CliRunner().invoke(cli, ["prune", *arguments])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_vacuum_says_it_rewrites_the_file(cli_env) -> None:
    result = CliRunner().invoke(cli, ["prune", "--vacuum"])
    assert result.exit_code == 0, result.output
    assert "rewrites the whole database file" in result.output
    assert "free disk space" in result.output
    if cli_env.startswith("sqlite"):
        assert "later prunes give freed space back" in result.output
    else:
        assert "PostgreSQL: nothing to do" in result.output
