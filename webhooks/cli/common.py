"""What the `crm-health` commands share: the --database and --json options, where the data
lives, settings, the database checks, sessions and how lists are printed."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.engine import make_url

from webhooks.configuration import check_configuration
from webhooks.logging import configure_logging
from webhooks.runtime import Runtime
from webhooks.settings import Settings, normalise_database_url
from webhooks.store.db import AsyncSession, create_engine, create_session_factory
from webhooks.store.migrate import current_revision, head_revision, upgrade_to_head

T = TypeVar("T")


DATABASE_VARIABLE = "CRM_HEALTH_DATABASE_URL"

# One rule for where every command's data lives: --database, else CRM_HEALTH_DATABASE_URL,
# else ./crm_health.db in the working directory (README, "Where the data lives").
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        help=f"The database: a SQLite file or a database URL (default: {DATABASE_VARIABLE}, "
        "else ./crm_health.db).",
        show_default=False,
        metavar="FILE|URL",
    ),
]


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table (for scripts).")
]


def _cell(value: str) -> str:
    """A table cell on a terminal: names, errors and reasons come from CRMs, products and
    people, so control characters (escape sequences, newlines, tabs) are shown escaped,
    never acted on or allowed to break the row."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


def _echo_table(
    header: tuple[str, ...], rows: list[tuple[str, ...]], *, numeric: Collection[int] = ()
) -> None:
    """Aligned columns under a header; counts right-aligned, text left, as a reader scans."""
    cells = [header, *[tuple(_cell(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        typer.echo(
            "  ".join(
                cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )


def _echo_json(rows: list[dict[str, Any]]) -> None:
    """A list command's rows as one JSON array (times in ISO 8601), empty when none."""
    typer.echo(json.dumps(rows, indent=2, default=_json_value, ensure_ascii=False))


def _echo_list(
    *,
    as_json: bool,
    records: list[dict[str, Any]],
    empty: str,
    header: tuple[str, ...],
    cells: list[tuple[str, ...]],
    numeric: Collection[int] = (),
) -> None:
    """A list command's output: its records as JSON (for scripts), or `empty` when there are
    none, or a table under `header` (one row of `cells` per record)."""
    if as_json:
        _echo_json(records)
    elif not cells:
        typer.echo(empty)
    else:
        _echo_table(header, cells, numeric=numeric)


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _when(moment: datetime | None, *, never: str = "-") -> str:
    return never if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def database_url_of(database: str) -> str:
    """--database takes what CRM_HEALTH_DATABASE_URL takes, or a plain path to a SQLite file
    (what the demo prints)."""
    if "://" in database:
        return normalise_database_url(database)
    return f"sqlite+aiosqlite:///{Path(database).expanduser().resolve()}"


def database_origin(database: str | None) -> str:
    """Which step of the rule chose the database, for `status` and error lines."""
    if database is not None:
        return "--database"
    if os.environ.get(DATABASE_VARIABLE):
        return DATABASE_VARIABLE
    return f"the default; --database or {DATABASE_VARIABLE} choose another"


def describe_database(database_url: str) -> str:
    """The database as a person finds it: a SQLite file's absolute path, or the URL without
    its password."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return "SQLite in memory"
        return f"SQLite file {Path(url.database).resolve()}"
    return url.render_as_string(hide_password=True)


def _settings(database: str | None = None) -> Settings:
    # An invalid setting or file raises here; cli_errors says which, with exit status 2.
    # Given to the constructor, --database outranks the environment variable.
    settings = Settings() if database is None else Settings(database_url=database_url_of(database))
    check_configuration(settings)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


def _require_database(settings: Settings) -> None:
    """Stop with one line unless the database exists and its schema is this version's: commands
    that only read or fix rows must never create an empty database where a path was mistyped."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).resolve()
        if not path.exists():
            typer.echo(
                f"database {path} does not exist: point --database or {DATABASE_VARIABLE} at "
                "yours, or create it with `crm-health migrate`",
                err=True,
            )
            raise typer.Exit(2)

    async def revision() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    # A database that cannot be reached or read fails here; cli_errors says what and what to do.
    current = asyncio.run(revision())
    head = head_revision()
    if current != head:
        state = "has no schema yet" if current is None else f"is at revision {current}"
        typer.echo(
            f"the database {state}; this crm-health needs {head}: run `crm-health migrate`",
            err=True,
        )
        raise typer.Exit(2)


def _connection_names(settings: Settings) -> list[str]:
    """Every connection name a key or an import may use: the settings' own (native events
    need no CRM), the CRM settings', the connections file's and HubSpot installs."""

    async def run() -> list[str]:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            return [item.name for item in runtime.connections.all()]
        finally:
            await runtime.aclose()

    return sorted({settings.connection_name, *asyncio.run(run())})


def _with_session(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, migrate: bool = True
) -> T:
    """Run `work` in one committed transaction on a migrated database (`migrate`: brought up
    to date, created if need be; otherwise checked by _require_database first)."""
    if migrate:
        upgrade_to_head(settings.database_url)

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())
