"""`crm-health import usage|outcomes`: load product events or renewal outcomes from a CSV
file."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

from webhooks import csv_import
from webhooks.cli.common import (
    DatabaseOption,
    _settings,
)
from webhooks.cli.root import cli
from webhooks.outcome_import import OutcomeCsv
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.store.migrate import upgrade_to_head
from webhooks.usage_import import UsageCsv

import_app = typer.Typer(
    help="Load product events and renewal outcomes from files, e.g. a data warehouse export.",
    no_args_is_help=True,
)
cli.add_typer(import_app, name="import")

FileArgument = Annotated[
    str,
    typer.Argument(help="CSV file with a header row; - reads standard input.", metavar="FILE"),
]
ConnectionOption = Annotated[
    str | None,
    typer.Option(help="Connection the account ids belong to (default: the configured one)."),
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Check every row; store nothing.")]
DelimiterOption = Annotated[
    str, typer.Option(help="Field separator: one character, or \\t for a tab.")
]


def _ignore_option(rows: type[csv_import.EventCsv]) -> Any:
    """--ignore-unknown-columns, naming the columns of `rows`."""
    return typer.Option(
        "--ignore-unknown-columns",
        help=f"Skip columns other than {', '.join(rows.COLUMNS)}.",
    )


@import_app.command("usage")
def import_usage(
    file: FileArgument,
    connection: ConnectionOption = None,
    dry_run: DryRunOption = False,
    delimiter: DelimiterOption = ",",
    ignore_unknown_columns: Annotated[bool, _ignore_option(UsageCsv)] = False,
    database: DatabaseOption = None,
) -> None:
    """Import usage and collaboration rows from a CSV file (streamed; bad rows are reported
    by line and skipped). Exit status: 0 every row imported; 1 some rows had errors (the
    others were imported); 2 the file or the options could not be used."""
    _import(
        UsageCsv,
        file,
        connection=connection,
        dry_run=dry_run,
        delimiter=delimiter,
        ignore_unknown_columns=ignore_unknown_columns,
        database=database,
    )


@import_app.command("outcomes")
def import_outcomes(
    file: FileArgument,
    connection: ConnectionOption = None,
    dry_run: DryRunOption = False,
    delimiter: DelimiterOption = ",",
    ignore_unknown_columns: Annotated[bool, _ignore_option(OutcomeCsv)] = False,
    database: DatabaseOption = None,
) -> None:
    """Import renewals and churns (with their ARR) from a CSV file, for backtests and
    calibration (bad rows are reported by line and skipped). Exit status: 0 every row
    imported; 1 some rows had errors (the others were imported); 2 the file or the options
    could not be used."""
    _import(
        OutcomeCsv,
        file,
        connection=connection,
        dry_run=dry_run,
        delimiter=delimiter,
        ignore_unknown_columns=ignore_unknown_columns,
        database=database,
    )


def _report(summary: csv_import.ImportSummary) -> None:
    for error in summary.errors:
        typer.echo(str(error))
    if summary.error_count > len(summary.errors):
        typer.echo(f"... and {summary.error_count - len(summary.errors):,} more")
    typer.echo(summary.text())


def _import(
    rows_type: type[csv_import.EventCsv],
    file: str,
    *,
    connection: str | None,
    dry_run: bool,
    delimiter: str,
    ignore_unknown_columns: bool,
    database: str | None,
) -> None:
    """Import `file` as rows of `rows_type`; exits with the status the commands document."""
    try:
        separator = csv_import.parse_delimiter(delimiter)
    except csv_import.ImportFileError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(2) from None
    settings = _settings(database)
    name = connection or settings.connection_name
    progress = Progress("Import", stream=sys.stderr)

    async def store(rows: csv_import.EventCsv) -> csv_import.ImportSummary:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            # Native events may name any connection; a name that is neither the settings'
            # nor a configured one is a typo that would file the rows where nothing reads them.
            if name != settings.connection_name and runtime.connections.get(name) is None:
                typer.echo(f"unknown connection {name!r}", err=True)
                raise typer.Exit(2)
            return await csv_import.import_rows(
                rows=rows, sessions=runtime.sessions, connection=name, progress=progress
            )
        finally:
            await runtime.aclose()

    try:
        with csv_import.open_csv(file) as stream:
            # The header (and, for a file, its encoding) is checked before the database is
            # touched: a file that cannot be imported stores nothing.
            rows = rows_type(
                stream,
                delimiter=separator,
                ignore_unknown_columns=ignore_unknown_columns,
                check_encoding=not dry_run,
            )
            if dry_run:
                summary = asyncio.run(
                    csv_import.import_rows(
                        rows=rows, sessions=None, connection=name, dry_run=True, progress=progress
                    )
                )
            else:
                upgrade_to_head(settings.database_url)
                summary = asyncio.run(store(rows))
    except csv_import.ImportFileError as exc:
        source = "standard input" if file == "-" else file
        if exc.summary is not None:
            _report(exc.summary)
            typer.echo(f"{source}: stopped: {exc.message}", err=True)
        else:
            typer.echo(f"{source}: {exc.message}; nothing imported", err=True)
        raise typer.Exit(2) from None
    _report(summary)
    raise typer.Exit(1 if summary.error_count else 0)
