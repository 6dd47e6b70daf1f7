"""CSV import of renewal and churn outcomes: rows become native outcome events with their ARR,
checked and reported like usage rows, deduplicated, waiting for unknown accounts; the CLI."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from typer.testing import CliRunner

from testkit import crm_accounts, inbox_count, native_payloads
from webhooks.cli import cli
from webhooks.csv_import import ImportFileError, ImportSummary, ParsedRow, RowError, import_rows
from webhooks.outcome_import import OutcomeCsv
from webhooks.store import inbox, outcomes
from webhooks.store.models import OutcomeFact

GOOD = """\
account,date,outcome,arr
123,2026-06-30,renewed,48000
456,2026-09-15T17:30:00+02:00,Churned,12500.50
789,2026-10-01,RENEWED,
"""

MIXED = """\
account,date,outcome,arr
123,2026-06-30,renewed,48000
123,30/06/2026,renewed,
123,2026-06-30,lost,
123,2026-06-30,churned,-5
,2026-06-30,,1 200
123,2026-06-30,churned,1,extra
456,2026-07-01T10:00:00,churned,900
"""


def _csv(text: str, **options: Any) -> OutcomeCsv:
    return OutcomeCsv(io.BytesIO(text.encode()), **options)


def _rows(text: str, **options: Any) -> list[ParsedRow | RowError]:
    return list(_csv(text, **options))


def _big_file(rows: int, *, bad_at: int | None = None) -> str:
    """`rows` outcomes of distinct accounts; the row at index `bad_at` says "lost"."""
    lines = [
        f"{1000 + i},2026-{1 + i % 11:02d}-{1 + i % 28:02d},"
        f"{'lost' if i == bad_at else ('churned' if i % 3 else 'renewed')},{i * 10}\n"
        for i in range(rows)
    ]
    return "account,date,outcome,arr\n" + "".join(lines)


async def _import(service: Any, text: str, **options: Any) -> ImportSummary:
    return await import_rows(
        rows=_csv(text),
        sessions=service.runtime.sessions,
        connection="default",
        **options,
    )


@pytest.fixture
async def service(service_factory: Any) -> Any:
    # No CRM: the imported accounts are scored but nothing is written back anywhere.
    return await service_factory(hubspot_access_token=None, hubspot_client_secret=None)


# --- the service, on SQLite and PostgreSQL ------------------------------------------------------


async def test_imported_outcomes_become_outcome_facts_with_their_arr(service) -> None:
    await crm_accounts(service.runtime, ["123", "456", "789"])
    summary = await _import(service, GOOD)
    assert (summary.rows, summary.stored, summary.error_count) == (3, 3, 0)
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        known = await outcomes.known_outcomes(session, connection="default")
        assert await inbox.count_by_status(session) == {"done": 3}
    assert [(o.account.crm_id, o.at, o.outcome, o.arr) for o in known] == [
        ("123", datetime(2026, 6, 30, tzinfo=UTC), "renewed", 48000.0),
        ("456", datetime(2026, 9, 15, 15, 30, tzinfo=UTC), "churned", 12500.5),
        ("789", datetime(2026, 10, 1, tzinfo=UTC), "renewed", None),
    ]


async def test_rows_are_stored_as_native_outcome_events(service) -> None:
    await _import(service, GOOD)
    payloads = await native_payloads(service.runtime)
    assert payloads[0] == {
        "type": "outcome",
        "account": "123",
        "outcome": "renewed",
        "arr": 48000.0,
        "at": "2026-06-30T00:00:00+00:00",
    }
    # Any case in the file; no arr, no field.
    assert payloads[2] == {
        "type": "outcome",
        "account": "789",
        "outcome": "renewed",
        "at": "2026-10-01T00:00:00+00:00",
    }


async def test_outcome_of_an_unknown_account_waits_as_unmatched(service) -> None:
    await crm_accounts(service.runtime, ["123"])
    await _import(service, "account,date,outcome\n123,2026-06-30,renewed\n999,2026-06-30,churned\n")
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        assert await inbox.count_by_status(session) == {"done": 1, "unmatched": 1}
        held = await session.execute(select(OutcomeFact.outcome))
        assert list(held.scalars()) == ["renewed"]


async def test_bad_rows_are_reported_by_line_and_column_and_good_rows_still_stored(
    service,
) -> None:
    summary = await _import(service, MIXED)
    assert [str(error) for error in summary.errors] == [
        "line 3: date: not an ISO 8601 date or date-time: '30/06/2026'",
        "line 4: outcome: 'lost' is not renewed or churned",
        "line 5: arr: not a number from 0 to 10,000,000,000,000: '-5'",
        "line 6: account: required; outcome: required; "
        "arr: not a number from 0 to 10,000,000,000,000: '1 200'",
        "line 7: expected 4 fields, found 5",
    ]
    assert (summary.rows, summary.stored, summary.error_count) == (7, 2, 5)
    assert [(p["account"], p["at"]) for p in await native_payloads(service.runtime)] == [
        ("123", "2026-06-30T00:00:00+00:00"),
        # A date-time without an offset is UTC.
        ("456", "2026-07-01T10:00:00+00:00"),
    ]


async def test_importing_the_same_file_again_stores_nothing_new(service) -> None:
    await _import(service, GOOD)
    again = await _import(service, GOOD)
    assert (again.rows, again.stored, again.duplicates) == (3, 0, 3)
    assert await inbox_count(service.runtime) == 3


async def test_same_outcome_written_differently_is_a_duplicate(service) -> None:
    # Column order, a date versus its midnight, the case of the outcome and how the ARR is
    # written do not change the event.
    await _import(service, "account,date,outcome,arr\n123,2026-06-30,renewed,1200\n")
    again = await _import(
        service, "ARR,Outcome,Date,Account\n1200.00,Renewed,2026-06-30T00:00:00Z,123\n"
    )
    assert (again.stored, again.duplicates) == (0, 1)


async def test_outcomes_with_an_id_are_deduplicated_by_the_id(service) -> None:
    await _import(service, "id,account,date,outcome\nopp-1,123,2026-06-30,renewed\n")
    again = await _import(service, "id,account,date,outcome\nopp-1,123,2026-07-01,churned\n")
    assert (again.stored, again.duplicates) == (0, 1)


async def test_dry_run_checks_rows_and_stores_nothing(service) -> None:
    summary = await _import(service, MIXED, dry_run=True)
    assert (summary.rows, summary.valid, summary.stored, summary.error_count) == (7, 2, 0, 5)
    assert await inbox_count(service.runtime) == 0


# --- reading the file (no database) ----------------------------------------------------------


def test_missing_required_columns_are_a_file_error() -> None:
    with pytest.raises(ImportFileError, match="missing required columns: outcome"):
        _csv("account,date\n123,2026-06-30\n")


def test_a_usage_file_is_not_an_outcomes_file() -> None:
    with pytest.raises(ImportFileError, match="unknown columns: 'at', 'user'"):
        _csv("account,at,user\n123,2026-06-30,u-1\n")


def test_unknown_columns_are_skipped_when_asked() -> None:
    rows = _rows(
        "account,date,outcome,owner\n123,2026-06-30,churned,ana\n", ignore_unknown_columns=True
    )
    assert isinstance(rows[0], ParsedRow)
    assert rows[0].event.payload["outcome"] == "churned"


def test_empty_file_names_the_columns_expected() -> None:
    with pytest.raises(ImportFileError, match=r"e\.g\. account,date,outcome,arr"):
        _csv("")


def test_arr_must_be_a_finite_number_within_the_bound() -> None:
    rows = _rows(
        "account,date,outcome,arr\n"
        "1,2026-06-30,renewed,1e14\n"
        "1,2026-06-30,renewed,nan\n"
        "1,2026-06-30,renewed,\u20ac900\n"
        "1,2026-06-30,renewed,0\n"
        "1,2026-06-30,renewed,1e13\n"
    )
    assert [str(row) for row in rows[:3]] == [
        "line 2: arr: not a number from 0 to 10,000,000,000,000: '1e14'",
        "line 3: arr: not a number from 0 to 10,000,000,000,000: 'nan'",
        "line 4: arr: not a number from 0 to 10,000,000,000,000: '\u20ac900'",
    ]
    assert [row.event.payload["arr"] for row in rows[3:] if isinstance(row, ParsedRow)] == [
        0.0,
        1e13,
    ]


def test_a_date_far_ahead_is_reported_under_the_date_column() -> None:
    rows = _rows("account,date,outcome\n1,2099-01-01,renewed\n")
    assert [str(row) for row in rows] == [
        "line 2: date: more than 1 day in the future (2099-01-01T00:00:00+00:00)"
    ]


def test_values_no_column_holds_are_row_errors_naming_the_column() -> None:
    rows = _rows(f"account,date,outcome,id\n{'a' * 65},2026-06-30,renewed,{'i' * 201}\n")
    assert [str(row) for row in rows] == [
        "line 2: account: string should have at most 64 characters; "
        "id: string should have at most 200 characters"
    ]


# --- the command line (SQLite file) ------------------------------------------------------------


@pytest.fixture
def cli_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> Iterator[Path]:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    for name in [n for n in os.environ if n.startswith("CRM_HEALTH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("CRM_HEALTH_LOG_FORMAT", "console")
    # The command configures logging onto the runner's captured stderr: put it back after.
    config = structlog.get_config()
    yield path
    structlog.configure(**config)


def _stored(path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT kind, source FROM inbox_events ORDER BY id")
        return [{"kind": kind, "source": source} for kind, source in rows]


def _run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["import", "outcomes", *args], input=input)


def _write(tmp_path: Path, text: str, name: str = "outcomes.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_cli_good_file_exits_0_with_a_summary(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, GOOD))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "read 3 rows: 3 stored, 0 duplicates, 0 errors"
    assert _stored(cli_db) == [{"kind": "outcome", "source": "native"}] * 3


def test_cli_bad_row_among_5000_is_named_and_only_it_is_skipped(
    cli_db: Path, tmp_path: Path
) -> None:
    # The usage import's rule: a bad row is reported and skipped, the others are imported
    # (exit 1), and the fixed file imported again adds only the fixed row.
    path = _write(tmp_path, _big_file(5000, bad_at=2500))
    result = _run(path)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "line 2502: outcome: 'lost' is not renewed or churned",
        "read 5,000 rows: 4,999 stored, 0 duplicates, 1 errors",
    ]
    assert len(_stored(cli_db)) == 4999
    fixed = _run(_write(tmp_path, _big_file(5000), name="fixed.csv"))
    assert fixed.exit_code == 0
    assert fixed.stdout.strip() == "read 5,000 rows: 1 stored, 4,999 duplicates, 0 errors"


def test_cli_same_5000_rows_imported_twice_are_stored_once(cli_db: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, _big_file(5000))
    assert _run(path).exit_code == 0
    again = _run(path)
    assert again.exit_code == 0
    assert again.stdout.strip() == "read 5,000 rows: 0 stored, 5,000 duplicates, 0 errors"
    assert len(_stored(cli_db)) == 5000


def test_cli_dry_run_names_the_bad_row_and_stores_nothing(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, _big_file(5000, bad_at=2500)), "--dry-run")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "line 2502: outcome: 'lost' is not renewed or churned",
        "read 5,000 rows: 4,999 valid, 1 errors (dry run: nothing stored)",
    ]
    assert _stored(cli_db) == []


def test_cli_missing_column_exits_2_in_one_line_and_stores_nothing(
    cli_db: Path, tmp_path: Path
) -> None:
    result = _run(_write(tmp_path, "account,outcome\n123,renewed\n"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"{tmp_path / 'outcomes.csv'}: missing required columns: date (line 1 must be a "
        "header row naming the columns, e.g. account,date,outcome,arr); nothing imported"
    ]
    assert result.stdout == ""
    assert _stored(cli_db) == []


def test_cli_semicolons_and_standard_input(cli_db: Path) -> None:
    result = _run(
        "-", "--delimiter", ";", input="account;date;outcome;arr\n1;2026-06-30;churned;5\n"
    )
    assert result.exit_code == 0, result.output
    assert len(_stored(cli_db)) == 1


def test_cli_unknown_connection_exits_2(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, GOOD), "--connection", "typo")
    assert result.exit_code == 2
    assert "unknown connection 'typo'" in result.stderr
    assert _stored(cli_db) == []


def test_cli_database_option_outranks_the_environment(cli_db: Path, tmp_path: Path) -> None:
    database = tmp_path / "other.db"
    result = _run(_write(tmp_path, GOOD), "--database", str(database))
    assert result.exit_code == 0, result.output
    assert len(_stored(database)) == 3
    assert _stored(cli_db) == []
