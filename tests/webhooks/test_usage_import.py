"""CSV import of usage and collaboration: streamed rows, line-numbered errors, dedup, the CLI."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select
from typer.testing import CliRunner

from testkit import USAGE_ROWS, crm_accounts, inbox_count, native_payloads, usage_days
from webhooks.cli import cli
from webhooks.csv_import import ImportFileError, ImportSummary, ParsedRow, RowError
from webhooks.progress import Progress
from webhooks.store import inbox
from webhooks.store.models import Account, CollaborationFact
from webhooks.usage_import import UsageCsv, import_usage

GOOD = """\
account,at,type,user,feature,kind
123,2026-11-20,usage,u-9,reports,
123,2026-11-21T08:30:00Z,usage,u-10,,
456,2026-11-19T23:30:00-02:00,usage,u-1,export,
123,2026-11-18,collaboration,,,feedback
456,2026-11-17T12:00:00+00:00,collaboration,,,joint_plan
"""

MIXED = """\
account,at,type,user,kind
123,2026-11-20,usage,u-1,
123,20/11/2026,usage,u-2,
123,2026-11-20,usage,,
123,2026-11-20,ticket,u-3,
123,2026-11-20,collaboration,,praise
123,2026-11-20,usage,u-4,,surplus
123,2026-11-20T10:15:00,usage,u-5,
"""


def _csv(text: str, **options: Any) -> UsageCsv:
    return UsageCsv(io.BytesIO(text.encode()), **options)


def _rows(text: str, **options: Any) -> list[ParsedRow | RowError]:
    return list(_csv(text, **options))


async def _import(service: Any, text: str | bytes, **options: Any) -> ImportSummary:
    data = text.encode() if isinstance(text, str) else text
    return await import_usage(
        rows=UsageCsv(io.BytesIO(data)),
        sessions=service.runtime.sessions,
        connection="default",
        **options,
    )


@pytest.fixture
async def service(service_factory: Any) -> Any:
    # No CRM: the imported accounts are scored but nothing is written back anywhere.
    return await service_factory(hubspot_access_token=None, hubspot_client_secret=None)


# --- the service, on SQLite and PostgreSQL ------------------------------------------------------


async def test_imported_usage_and_collaboration_become_facts(service) -> None:
    await crm_accounts(service.runtime, ["123", "456"])
    summary = await _import(service, GOOD)
    assert (summary.rows, summary.stored, summary.duplicates, summary.error_count) == (5, 5, 0, 0)
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        usage = usage_days(await session.execute(USAGE_ROWS))
        collaboration = await session.execute(
            select(Account.crm_id, CollaborationFact.kind)
            .join(Account, Account.id == CollaborationFact.account_id)
            .order_by(Account.crm_id)
        )
        assert usage == [
            ("123", date(2026, 11, 20), "u-9"),
            ("123", date(2026, 11, 21), "u-10"),
            # 23:30 at -02:00 is the next UTC day.
            ("456", date(2026, 11, 20), "u-1"),
        ]
        assert list(collaboration) == [("123", "feedback"), ("456", "joint_plan")]
        assert await inbox.count_by_status(session) == {"done": 5}


async def test_rows_are_stored_as_native_documents(service) -> None:
    await _import(service, GOOD)
    payloads = await native_payloads(service.runtime)
    assert payloads[0] == {
        "type": "usage",
        "account": "123",
        "user": "u-9",
        "feature": "reports",
        "at": "2026-11-20T00:00:00+00:00",
    }
    assert payloads[3] == {
        "type": "collaboration",
        "account": "123",
        "kind": "feedback",
        "at": "2026-11-18T00:00:00+00:00",
    }


async def test_bad_rows_are_reported_by_line_and_good_rows_still_stored(service) -> None:
    summary = await _import(service, MIXED)
    assert [str(error) for error in summary.errors] == [
        "line 3: at: not an ISO 8601 date or date-time: '20/11/2026'",
        "line 4: user: required for usage rows",
        "line 5: type: must be usage or collaboration, not 'ticket'",
        "line 6: kind: must be 'feedback', 'feature_request', 'beta', 'referral', 'case_study' "
        "or 'joint_plan', not 'praise'",
        "line 7: expected 5 fields, found 6",
    ]
    assert (summary.rows, summary.stored, summary.error_count) == (7, 2, 5)
    assert [payload["user"] for payload in await native_payloads(service.runtime)] == ["u-1", "u-5"]


async def test_datetime_without_offset_is_stored_as_utc(service) -> None:
    await _import(service, "account,at,user\n123,2026-11-20T10:15:00,u-1\n")
    stored = await native_payloads(service.runtime)
    assert [p["at"] for p in stored] == ["2026-11-20T10:15:00+00:00"]


async def test_importing_the_same_file_again_stores_nothing_new(service) -> None:
    await _import(service, GOOD)
    again = await _import(service, GOOD)
    assert (again.rows, again.stored, again.duplicates) == (5, 0, 5)
    assert await inbox_count(service.runtime) == 5


async def test_same_row_written_differently_is_a_duplicate(service) -> None:
    # Column order, a date versus its midnight, and the default type do not change the event.
    await _import(service, "account,at,user\n123,2026-11-20,u-1\n")
    again = await _import(service, "user,type,AT,account\nu-1,usage,2026-11-20T00:00:00Z,123\n")
    assert (again.stored, again.duplicates) == (0, 1)


async def test_repeated_row_within_a_file_is_counted_as_a_duplicate(service) -> None:
    summary = await _import(service, "account,at,user\n1,2026-11-20,u\n1,2026-11-20,u\n")
    assert (summary.rows, summary.stored, summary.duplicates) == (2, 1, 1)


async def test_rows_with_an_id_are_deduplicated_by_the_id(service) -> None:
    await _import(service, "id,account,at,user\ne-1,123,2026-11-20,u-1\n")
    again = await _import(service, "id,account,at,user\ne-1,123,2026-11-21,u-1\n")
    assert (again.stored, again.duplicates) == (0, 1)
    other = await _import(service, "id,account,at,user\ne-2,123,2026-11-20,u-1\n")
    assert other.stored == 1


async def test_large_file_is_stored_batch_by_batch(service) -> None:
    body = "".join(f"{i % 7},2026-11-{1 + i % 28:02d},u-{i}\n" for i in range(2500))
    summary = await _import(service, "account,at,user\n" + body, batch_size=1000)
    assert (summary.rows, summary.stored) == (2500, 2500)
    assert await inbox_count(service.runtime) == 2500


async def test_dry_run_checks_rows_and_stores_nothing(service) -> None:
    summary = await _import(service, MIXED, dry_run=True)
    assert (summary.rows, summary.valid, summary.stored, summary.error_count) == (7, 2, 0, 5)
    assert summary.text() == "read 7 rows: 2 valid, 5 errors (dry run: nothing stored)"
    assert await inbox_count(service.runtime) == 0


async def test_excel_byte_order_mark_before_the_header_is_ignored(service) -> None:
    summary = await _import(service, "\ufeffAccount,At,User\r\n123,2026-11-20,u-1\r\n")
    assert (summary.stored, summary.error_count) == (1, 0)


async def test_file_not_utf8_far_down_stops_before_anything_is_stored(service) -> None:
    body = "".join(f"1,2026-11-20,u-{i}\n" for i in range(1500)).encode()
    data = b"account,at,user\n" + body + "1,2026-11-20,Jos\u00e9\n".encode("latin-1")
    with pytest.raises(ImportFileError, match=r"line 1502: not UTF-8 \(byte 0xe9\)"):
        await _import(service, data)
    assert await inbox_count(service.runtime) == 0


async def test_bad_byte_in_a_stream_read_once_keeps_the_rows_before_it(service) -> None:
    # Standard input cannot be checked first: the rows before the bad line are stored, and
    # the error says where it stopped.
    body = "".join(f"1,2026-11-20,u-{i}\n" for i in range(1500)).encode()
    data = b"account,at,user\n" + body + b"1,2026-11-20,\xff\n2,2026-11-20,v\n"
    rows = UsageCsv(io.BytesIO(data), check_encoding=False)
    with pytest.raises(ImportFileError, match="line 1502: not UTF-8") as raised:
        await import_usage(rows=rows, sessions=service.runtime.sessions, connection="default")
    assert raised.value.summary is not None
    assert (raised.value.summary.rows, raised.value.summary.stored) == (1500, 1500)
    assert await inbox_count(service.runtime) == 1500


async def test_progress_is_reported_every_so_many_rows(service) -> None:
    class Recorder(Progress):
        def __init__(self) -> None:
            super().__init__("Import", stream=io.StringIO())
            self.done: list[int] = []

        def update(self, done: int, total: int | None = None, *, detail: str = "") -> None:
            self.done.append(done)

    progress = Recorder()
    body = "".join(f"1,2026-11-20,u-{i}\n" for i in range(25))
    await _import(service, "account,at,user\n" + body, progress=progress, progress_every=10)
    assert progress.done == [10, 20]


# --- reading the file (no database) ----------------------------------------------------------


def test_missing_required_column_is_a_file_error() -> None:
    with pytest.raises(ImportFileError, match="missing required columns: at"):
        _csv("account,user\n123,u-1\n")


def test_user_column_is_required_when_every_row_is_usage() -> None:
    with pytest.raises(ImportFileError, match="missing required columns: user"):
        _csv("account,at,kind\n123,2026-11-20,beta\n")


def test_unknown_columns_are_named_unless_ignored() -> None:
    with pytest.raises(ImportFileError, match="unknown columns: 'plan', 'seats'"):
        _csv("account,at,user,plan,seats\n123,2026-11-20,u-1,pro,4\n")
    rows = _rows(
        "account,at,user,plan,seats\n123,2026-11-20,u-1,pro,4\n", ignore_unknown_columns=True
    )
    assert isinstance(rows[0], ParsedRow)
    assert rows[0].event.payload["user"] == "u-1"


def test_empty_file_is_a_file_error() -> None:
    with pytest.raises(ImportFileError, match="empty"):
        _csv("")


def test_column_named_twice_is_a_file_error() -> None:
    with pytest.raises(ImportFileError, match="'user' appears twice"):
        _csv("account,at,user,USER\n")


def test_value_in_another_types_column_is_an_error() -> None:
    rows = _rows("account,at,type,user,kind\n1,2026-11-20,usage,u,beta\n")
    assert [str(row) for row in rows] == ["line 2: kind: only for collaboration rows"]


def test_collaboration_row_without_kind_is_an_error() -> None:
    rows = _rows("account,at,type,user,kind\n1,2026-11-20,collaboration,,\n")
    assert [str(row) for row in rows] == ["line 2: kind: required for collaboration rows"]


def test_missing_account_and_time_are_reported_together() -> None:
    rows = _rows("account,at,user\n,,u-1\n")
    assert [str(row) for row in rows] == ["line 2: account: required; at: required"]


def test_blank_lines_are_skipped_and_line_numbers_stay_physical() -> None:
    rows = _rows("account,at,user\n\n1,2026-11-20,u\n,,\n1,bad,u\n")
    assert [row.line for row in rows] == [3, 5]
    assert isinstance(rows[1], RowError)


def test_quoted_value_on_one_line_may_hold_the_delimiter() -> None:
    rows = _rows('account,at,type,user,feature\n1,2026-11-20,usage,u,"reports, exports"\n')
    assert isinstance(rows[0], ParsedRow)
    assert rows[0].event.payload["feature"] == "reports, exports"


def test_unclosed_quote_is_reported_where_it_starts() -> None:
    rows = _rows('account,at,user\n1,2026-11-20,"u\n2,2026-11-20,v\n3,2026-11-20,w\n')
    assert [str(row) for row in rows] == [
        "line 2: the row runs on to line 4: an unclosed quote? (values cannot span lines)"
    ]


def test_type_and_kind_are_case_insensitive() -> None:
    rows = _rows("account,at,type,kind\n1,2026-11-20,Collaboration,Feature_Request\n")
    assert isinstance(rows[0], ParsedRow)
    assert rows[0].event.payload["kind"] == "feature_request"


def test_semicolon_delimiter() -> None:
    rows = _rows("account;at;user\n1;2026-11-20;u\n", delimiter=";")
    assert isinstance(rows[0], ParsedRow)


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


def _stored(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return int(connection.execute("SELECT count(*) FROM inbox_events").fetchone()[0])


def _run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["import", "usage", *args], input=input)


def _write(tmp_path: Path, text: str | bytes, name: str = "usage.csv") -> str:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return str(path)


def test_cli_good_file_exits_0_with_a_summary(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, GOOD))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "read 5 rows: 5 stored, 0 duplicates, 0 errors"
    assert _stored(cli_db) == 5


def test_cli_reimport_counts_duplicates(cli_db: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    _run(path)
    result = _run(path)
    assert result.exit_code == 0
    assert result.stdout.strip() == "read 5 rows: 0 stored, 5 duplicates, 0 errors"


def test_cli_row_errors_exit_1_and_are_listed(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, MIXED))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "line 3: at: not an ISO 8601 date or date-time: '20/11/2026'"
    assert lines[-1] == "read 7 rows: 2 stored, 0 duplicates, 5 errors"
    assert _stored(cli_db) == 2


def test_cli_lists_100_errors_then_how_many_more(cli_db: Path, tmp_path: Path) -> None:
    body = "".join(f"1,day-{i},u\n" for i in range(1234))
    result = _run(_write(tmp_path, "account,at,user\n" + body + "1,2026-11-20,u\n"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 102
    assert lines[99].startswith("line 101: at:")
    assert lines[100] == "... and 1,134 more"
    assert lines[101] == "read 1,235 rows: 1 stored, 0 duplicates, 1,234 errors"


def test_cli_missing_column_exits_2_and_stores_nothing(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, "account,user\n123,u-1\n"))
    assert result.exit_code == 2
    assert "missing required columns: at" in result.stderr
    assert result.stdout == ""
    assert _stored(cli_db) == 0


def test_cli_unknown_column_exits_2_unless_ignored(cli_db: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, "account,at,user,plan\n123,2026-11-20,u-1,pro\n")
    assert _run(path).exit_code == 2
    assert _run(path, "--ignore-unknown-columns").exit_code == 0
    assert _stored(cli_db) == 1


def test_cli_unreadable_file_exits_2(cli_db: Path, tmp_path: Path) -> None:
    result = _run(str(tmp_path / "missing.csv"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_cli_file_not_utf8_exits_2(cli_db: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, "account,at,user\n1,2026-11-20,Jos\u00e9\n".encode("latin-1"))
    result = _run(path)
    assert result.exit_code == 2
    assert "line 2: not UTF-8" in result.stderr
    assert _stored(cli_db) == 0


def test_cli_bad_delimiter_exits_2(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, GOOD), "--delimiter", ";;")
    assert result.exit_code == 2


def test_cli_tab_delimiter_and_standard_input(cli_db: Path) -> None:
    result = _run("-", "--delimiter", "\\t", input="account\tat\tuser\n1\t2026-11-20\tu\n")
    assert result.exit_code == 0, result.output
    assert _stored(cli_db) == 1


def test_cli_dry_run_stores_nothing(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, MIXED), "--dry-run")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == (
        "read 7 rows: 2 valid, 5 errors (dry run: nothing stored)"
    )
    assert _stored(cli_db) == 0


def test_cli_unknown_connection_exits_2(cli_db: Path, tmp_path: Path) -> None:
    result = _run(_write(tmp_path, GOOD), "--connection", "typo")
    assert result.exit_code == 2
    assert "unknown connection 'typo'" in result.stderr
    assert _stored(cli_db) == 0


def test_values_no_column_holds_are_row_errors_naming_the_field() -> None:
    long_account = "a" * 65
    rows = _rows(
        "account,at,user\n"
        f"{long_account},2026-11-20,u\n"
        "1,2026-11-20,u\x001\n"
        "1,2099-01-01T00:00:00Z,u\n"
        "1,2026-11-20,u\n"
    )
    assert [str(row) for row in rows[:3]] == [
        "line 2: account: string should have at most 64 characters",
        "line 3: user: contains a NUL character (\\u0000), which cannot be stored",
        "line 4: at: more than 1 day in the future (2099-01-01T00:00:00+00:00)",
    ]
    assert isinstance(rows[3], ParsedRow)
