"""The CLI's database rule and output (issue 22): --database > CRM_HEALTH_DATABASE_URL >
./crm_health.db for every command, read-only commands that refuse a missing database instead
of creating one, list commands with headers and --json, escaped untrusted text, logs as text
on a terminal and JSON otherwise, Alembic quiet unless it migrates, progress lines off a
terminal, and help texts without the source's line breaks."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import timedelta

import pytest
import structlog
import sync_rows
from sqlalchemy import update
from typer.testing import CliRunner

from webhooks.cli import cli
from webhooks.logging import resolve_format
from webhooks.progress import Progress
from webhooks.store import inbox, product
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import InboxEvent

# Every command that reads or writes the service's database.
DATABASE_COMMANDS = [
    ["serve"], ["worker"], ["migrate"], ["provision"], ["backfill"], ["unmatched"],
    ["dead-letters"], ["replay"], ["prune"], ["status"], ["recompute"], ["reconcile"],
    ["install-link"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
    ["writeback", "retry"], ["import", "usage"], ["config", "export"], ["config", "apply"],
]  # fmt: skip
# Commands that only read, or change rows that must exist: a mistyped path must not leave an
# empty database behind.
READ_ONLY_COMMANDS = [
    ["keys", "list"], ["keys", "revoke", "1"], ["dead-letters"], ["unmatched"], ["status"],
    ["config", "export", "-"], ["recompute"], ["replay", "--all"], ["writeback", "retry"],
    ["prune"],
]  # fmt: skip


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch):
    """No database from the environment unless a test sets one, and logging put back: each
    command configures it onto the runner's captured stderr, closed once the command returns."""
    monkeypatch.delenv("CRM_HEALTH_DATABASE_URL", raising=False)
    config = structlog.get_config()
    yield
    structlog.configure(**config)


def _run(url: str, work):
    async def run():
        engine = create_engine(url)
        try:
            return await work(create_session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_every_database_command_takes_database(command) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--database" in result.output


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_read_only_commands_refuse_a_missing_sqlite_file_and_create_nothing(
    command, tmp_path
) -> None:
    path = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, [*command, "--database", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"database {path} does not exist: point --database or CRM_HEALTH_DATABASE_URL at "
        "yours, or create it with `crm-health migrate`"
    )
    assert result.stdout == ""
    assert not path.exists()


def test_keys_list_creates_no_database_in_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["keys", "list"])
    assert result.exit_code == 2
    assert f"database {tmp_path / 'crm_health.db'} does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_database_option_outranks_the_environment_variable(tmp_path, monkeypatch) -> None:
    chosen, other = tmp_path / "chosen.db", tmp_path / "other.db"
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite:///{other}")
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "--name", "n", "--role", "viewer", "--database", str(chosen)]
    )
    assert created.exit_code == 0, created.output
    listed = runner.invoke(cli, ["keys", "list", "--database", str(chosen)])
    assert listed.exit_code == 0, listed.output
    assert "viewer" in listed.stdout
    assert chosen.exists()
    assert not other.exists()


def test_database_option_takes_a_url_too(tmp_path) -> None:
    path = tmp_path / "by-url.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate", "--database", f"sqlite:///{path}"]).exit_code == 0
    result = runner.invoke(cli, ["keys", "list", "--database", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no API keys"


def test_status_says_which_database_it_read_and_why(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    default = runner.invoke(cli, ["status"])
    assert default.exit_code == 0, default.output
    assert default.stdout.splitlines()[-1] == (
        f"database: SQLite file {tmp_path / 'crm_health.db'} (the default; --database or "
        "CRM_HEALTH_DATABASE_URL choose another)"
    )
    given = runner.invoke(cli, ["status", "--database", "crm_health.db"])
    assert given.stdout.splitlines()[-1].endswith("crm_health.db (--database)")
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite:///{tmp_path / 'crm_health.db'}")
    from_env = runner.invoke(cli, ["status", "--json"])
    assert json.loads(from_env.stdout)["connections"] == []
    assert from_env.stderr.strip().endswith("crm_health.db (CRM_HEALTH_DATABASE_URL)")


def test_a_postgres_url_is_shown_without_its_password() -> None:
    from webhooks.cli.common import describe_database  # noqa: PLC0415

    shown = describe_database("postgresql+asyncpg://crm:s3cret@db.internal:5432/health")
    assert "s3cret" not in shown
    assert shown == "postgresql+asyncpg://crm:***@db.internal:5432/health"


# --- lists: headers, --json, escaped text ------------------------------------------------------


@pytest.fixture
def seeded(database_url, monkeypatch):
    """Dead letters from the sync fixture, one with an error that holds an escape sequence and
    a newline, and two unmatched events waiting for an unknown account."""
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", database_url)
    _run(database_url, sync_rows.seed)

    async def more(sessions):
        async with sessions() as session, session.begin():
            await session.execute(
                update(InboxEvent)
                .where(InboxEvent.status == inbox.DEAD, InboxEvent.connection == "segment")
                .values(last_error="bad \x1b[31mred\nsecond line")
            )
            events = [
                inbox.NewEvent(dedup_key=f"wait-{i}", kind="usage", payload={}) for i in range(2)
            ]
            await inbox.insert_events(
                session,
                source="native",
                connection="default",
                events=events,
                received_at=sync_rows.NOW - timedelta(hours=1),
            )
            await session.execute(
                update(InboxEvent)
                .where(InboxEvent.dedup_key.like("wait-%"))
                .values(
                    status=product.UNMATCHED,
                    match_key="account:acme-42",
                    last_error="no account acme-42",
                )
            )

    _run(database_url, more)
    return database_url


def test_dead_letters_print_a_header_and_escape_what_the_errors_hold(seeded) -> None:
    result = CliRunner().invoke(cli, ["dead-letters"])
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["id", "source", "connection", "kind", "attempts", "error"]
    assert len(rows) == 3
    assert "\x1b" not in result.stdout
    [segment] = [row for row in rows if " segment " in row]
    assert segment.endswith("bad \\x1b[31mred\\nsecond line")


def test_dead_letters_as_json(seeded) -> None:
    result = CliRunner().invoke(cli, ["dead-letters", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["connection"] for row in rows} == {"default", "segment"}
    assert set(rows[0]) == {"id", "source", "connection", "kind", "attempts", "last_error"}
    assert "bad \x1b[31mred\nsecond line" in {row["last_error"] for row in rows}


def test_unmatched_prints_a_header_and_json(seeded) -> None:
    table = CliRunner().invoke(cli, ["unmatched"])
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["connection", "kind", "id", "events", "last", "received", "reason"]
    assert row.split() == [
        "default", "account", "acme-42", "2", "2026-12-04", "11:00", "UTC", "no", "account",
        "acme-42",
    ]  # fmt: skip
    [item] = json.loads(CliRunner().invoke(cli, ["unmatched", "--json"]).stdout)
    assert item["id"] == "acme-42"
    assert item["events"] == 2
    assert item["last_received_at"].startswith("2026-12-04T11:00")


def test_empty_lists_say_so_and_print_an_empty_json_array(tmp_path) -> None:
    path = str(tmp_path / "empty.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate", "--database", path]).exit_code == 0
    assert runner.invoke(cli, ["dead-letters", "--database", path]).stdout == "no dead letters\n"
    for command in (["dead-letters"], ["unmatched"], ["keys", "list"]):
        result = runner.invoke(cli, [*command, "--json", "--database", path])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []


def test_keys_list_as_json_never_holds_the_key(tmp_path) -> None:
    path = str(tmp_path / "keys.db")
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "--name", "bot", "--role", "ingest", "--database", path]
    )
    key = created.stdout.splitlines()[0]
    [row] = json.loads(runner.invoke(cli, ["keys", "list", "--json", "--database", path]).stdout)
    assert row["name"] == "bot"
    assert row["role"] == "ingest"
    assert row["revoked_at"] is None
    assert key not in json.dumps(row)


# --- logs, Alembic, progress, help --------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_auto_log_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert resolve_format("auto", _Stream(tty=True)) == "console"
    assert resolve_format("auto", _Stream(tty=False)) == "json"
    assert resolve_format("json", _Stream(tty=True)) == "json"
    assert resolve_format("console", _Stream(tty=False)) == "console"


def test_alembic_speaks_only_when_it_migrates(tmp_path, caplog) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}"
    caplog.set_level(logging.INFO, logger="alembic.runtime.migration")
    upgrade_to_head(url)
    first = [record.getMessage() for record in caplog.records]
    assert first
    assert all(message.startswith("Running upgrade") for message in first)
    caplog.clear()
    upgrade_to_head(url)
    assert caplog.records == []


def test_a_command_on_an_up_to_date_database_logs_nothing(tmp_path) -> None:
    path = str(tmp_path / "db.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate", "--database", path]).exit_code == 0
    again = runner.invoke(cli, ["migrate", "--database", path])
    assert again.exit_code == 0
    assert again.stderr == ""
    assert again.stdout == "database schema is up to date\n"


def test_progress_off_a_terminal_logs_a_line_per_interval_and_the_last_count() -> None:
    now = [0.0]
    stream = _Stream(tty=False)
    progress = Progress("Backfill", stream=stream, interval=5.0, clock=lambda: now[0])
    with structlog.testing.capture_logs() as logs:
        for done in range(1, 11):
            progress.update(done, detail="pages")
            now[0] += 1.0
        progress.finish()
    assert [(entry["event"], entry["done"]) for entry in logs] == [
        ("progress", 1),
        ("progress", 6),
        ("progress", 10),
    ]
    assert stream.getvalue() == ""


def test_progress_as_text_lines_off_a_terminal() -> None:
    now = [0.0]
    stream = _Stream(tty=False)
    progress = Progress(
        "Replaying", stream=stream, text_lines=True, interval=2.0, clock=lambda: now[0]
    )
    for done in (1, 2, 3, 4):
        progress.update(done, 4, detail="companies")
        now[0] += 1.0
    progress.finish()
    assert stream.getvalue().splitlines() == [
        "Replaying: 1/4 companies",
        "Replaying: 3/4 companies",
        "Replaying: 4/4 companies",
    ]


def test_progress_on_a_terminal_draws_a_bar() -> None:
    stream = _Stream(tty=True)
    progress = Progress("Import", stream=stream, text_lines=True)
    progress.update(1, 2)
    progress.finish()
    assert stream.getvalue().startswith("\rImport [")
    assert stream.getvalue().endswith("\n")


@pytest.mark.parametrize(
    ("command", "name", "joined"),
    [
        ([], "demo", "through the API, print a summary"),
        (["config"], "apply", "and store it as a new version"),
        (["import"], "usage", "bad rows are reported by line"),
    ],
)
def test_command_lists_show_each_help_as_one_paragraph(command, name, joined) -> None:
    """`joined` spans a line break of the docstring: shown on one line, it was re-wrapped."""
    output = CliRunner().invoke(cli, [*command, "--help"], env={"COLUMNS": "200"}).output
    [line] = [line for line in output.splitlines() if line.startswith(f"│ {name} ")]
    assert joined in line
