"""`crm-health status`, `crm-health writeback retry` and `crm-health replay`: the sync table,
JSON, the --check exit status for monitoring, re-queueing, and clear lines for unknown ids and
for a database that is missing or not migrated."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import structlog
import sync_rows
from sqlalchemy import select
from typer.testing import CliRunner

from webhooks.cli import cli
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import InboxEvent, WritebackItem


@pytest.fixture
def cli_env(database_url, monkeypatch):
    """The command on the test's database (no CRM configured), five minutes after the seed's
    time, logging put back afterwards."""
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    # Each command module reads the clock through its own `utcnow`.
    for module in ("inbox", "ops", "writeback"):
        monkeypatch.setattr(
            f"webhooks.cli.{module}.utcnow", lambda: sync_rows.NOW + timedelta(minutes=5)
        )
    config = structlog.get_config()
    yield database_url
    structlog.configure(**config)


def _run(url: str, work):
    async def run():
        engine = create_engine(url)
        try:
            return await work(create_session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def seed(url: str) -> None:
    _run(url, sync_rows.seed)


def statuses(url: str, model) -> dict[object, str]:
    key = model.record_id if model is WritebackItem else model.id

    async def read(sessions):
        async with sessions() as session:
            return dict((await session.execute(select(key, model.status))).all())

    return _run(url, read)


def test_status_prints_a_row_per_connection_and_the_errors(cli_env) -> None:
    seed(cli_env)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "connection", "status", "pending", "failing", "failed", "oldest", "pending", "last",
        "success", "dead", "letters",
    ]  # fmt: skip
    assert lines[1].split() == [
        "default", "needs", "attention", "3", "2", "1", "45m", "00s", "2026-12-04", "11:50",
        "UTC", "2",
    ]  # fmt: skip
    assert lines[2].split() == [
        "emea",
        "needs",
        "attention",
        "1",
        "0",
        "1",
        "6m",
        "00s",
        "never",
        "0",
    ]
    assert lines[3].split() == ["segment", "needs", "attention", "0", "0", "0", "-", "never", "1"]
    text = result.stdout
    assert "inbox: 1 pending, 0 processing, 0 unmatched, 3 dead" in text
    assert "default: failing: HTTP 503 Service Unavailable" in text
    assert "default: failed: record 6 was deleted in the CRM" in text
    assert "default: retry: crm-health writeback retry --connection default --failed" in text


def test_status_check_exits_1_when_something_is_failing(cli_env) -> None:
    seed(cli_env)
    assert CliRunner().invoke(cli, ["status", "--check"]).exit_code == 1


def test_status_check_exits_0_when_all_is_well(cli_env) -> None:
    result = CliRunner().invoke(cli, ["status", "--check"])
    assert result.exit_code == 0, result.output
    assert "no connection has write-backs or dead letters yet" in result.stdout


def test_status_json_is_the_api_report(cli_env) -> None:
    seed(cli_env)
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_name = {item["connection"]: item for item in report["connections"]}
    assert by_name["default"]["writebacks"]["failing"] == 2
    assert by_name["segment"]["dead_letters"] == 1
    assert report["inbox"]["counts"]["dead"] == 3


def test_status_on_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path, monkeypatch) -> None:
    path = tmp_path / "typo.db"
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite:///{path}")
    config = structlog.get_config()
    try:
        result = CliRunner().invoke(cli, ["status"])
    finally:
        structlog.configure(**config)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"database {path} does not exist: point --database or CRM_HEALTH_DATABASE_URL at "
        "yours, or create it with `crm-health migrate`"
    )
    assert not path.exists()


def test_status_on_a_database_without_schema_says_to_migrate(tmp_path, monkeypatch) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite:///{path}")
    config = structlog.get_config()
    try:
        result = CliRunner().invoke(cli, ["status"])
    finally:
        structlog.configure(**config)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("the database has no schema yet; this crm-health needs ")
    assert line.endswith(": run `crm-health migrate`")


def test_writeback_retry_requeues_failed_and_failing_rows(cli_env) -> None:
    seed(cli_env)
    result = CliRunner().invoke(cli, ["writeback", "retry"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "2 failed and 1 failing write-back(s) of every connection queued again"
    )
    rows = statuses(cli_env, WritebackItem)
    assert rows["6"] == rows["7"] == rows["4"] == "pending"
    assert rows["5"] == "sending"


def test_writeback_retry_failed_of_one_connection(cli_env) -> None:
    seed(cli_env)
    result = CliRunner().invoke(cli, ["writeback", "retry", "--connection", "emea", "--failed"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 failed and 0 failing write-back(s) of connection emea")
    rows = statuses(cli_env, WritebackItem)
    assert (rows["7"], rows["6"]) == ("pending", "failed")


def test_writeback_retry_of_unknown_accounts_exits_1_naming_them(cli_env) -> None:
    seed(cli_env)
    result = CliRunner().invoke(
        cli, ["writeback", "retry", "--failed", "--account", "6", "--account", "99"]
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("1 failed and 0 failing write-back(s) of connection default")
    assert result.stderr.strip() == "no write-back in connection default for account(s): 99"


def test_replay_says_how_many_and_names_ids_that_are_no_dead_letters(cli_env) -> None:
    seed(cli_env)
    # Events 1 and 2 are dead letters of "default", 3 is done.
    result = CliRunner().invoke(cli, ["replay", "1", "3", "404"])
    assert result.exit_code == 1
    assert result.stdout.startswith("1 dead letter(s) queued again")
    assert "no inbox event with id: 404" in result.stderr
    assert "not dead letters, left as they are: 3 (done)" in result.stderr
    events = statuses(cli_env, InboxEvent)
    assert (events[1], events[2], events[3]) == ("pending", "dead", "done")


def test_replay_all_exits_0(cli_env) -> None:
    seed(cli_env)
    result = CliRunner().invoke(cli, ["replay", "--all"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("3 dead letter(s) queued again")
