"""`crm-health import usage`: load product events from a CSV file."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from webhooks import usage_import
from webhooks.cli.common import (
    DatabaseOption,
    _settings,
)
from webhooks.cli.root import cli
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.store.migrate import upgrade_to_head

import_app = typer.Typer(
    help="Load product events from files, e.g. a data warehouse export.", no_args_is_help=True
)
cli.add_typer(import_app, name="import")


@import_app.command("usage")
def import_usage(
    file: Annotated[
        str,
        typer.Argument(help="CSV file with a header row; - reads standard input.", metavar="FILE"),
    ],
    connection: Annotated[
        str | None,
        typer.Option(help="Connection the account ids belong to (default: the configured one)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; store nothing.")
    ] = False,
    delimiter: Annotated[
        str, typer.Option(help="Field separator: one character, or \\t for a tab.")
    ] = ",",
    ignore_unknown_columns: Annotated[
        bool,
        typer.Option(
            "--ignore-unknown-columns",
            help="Skip columns other than account, at, type, user, feature, kind, id.",
        ),
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Import usage and collaboration rows from a CSV file (streamed; bad rows are reported
    by line and skipped). Exit status: 0 every row imported; 1 some rows had errors (the
    others were imported); 2 the file or the options could not be used."""

    def report(summary: usage_import.ImportSummary) -> None:
        for error in summary.errors:
            typer.echo(str(error))
        if summary.error_count > len(summary.errors):
            typer.echo(f"... and {summary.error_count - len(summary.errors):,} more")
        typer.echo(summary.text())

    try:
        separator = usage_import.parse_delimiter(delimiter)
    except usage_import.ImportFileError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(2) from None
    settings = _settings(database)
    name = connection or settings.connection_name
    progress = Progress("Import", stream=sys.stderr)

    async def store(rows: usage_import.UsageCsv) -> usage_import.ImportSummary:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            # Native events may name any connection; a name that is neither the settings'
            # nor a configured one is a typo that would file the rows where nothing reads them.
            if name != settings.connection_name and runtime.connections.get(name) is None:
                typer.echo(f"unknown connection {name!r}", err=True)
                raise typer.Exit(2)
            return await usage_import.import_usage(
                rows=rows, sessions=runtime.sessions, connection=name, progress=progress
            )
        finally:
            await runtime.aclose()

    try:
        with usage_import.open_csv(file) as stream:
            # The header (and, for a file, its encoding) is checked before the database is
            # touched: a file that cannot be imported stores nothing.
            rows = usage_import.UsageCsv(
                stream,
                delimiter=separator,
                ignore_unknown_columns=ignore_unknown_columns,
                check_encoding=not dry_run,
            )
            if dry_run:
                summary = asyncio.run(
                    usage_import.import_usage(
                        rows=rows, sessions=None, connection=name, dry_run=True, progress=progress
                    )
                )
            else:
                upgrade_to_head(settings.database_url)
                summary = asyncio.run(store(rows))
    except usage_import.ImportFileError as exc:
        source = "standard input" if file == "-" else file
        if exc.summary is not None:
            report(exc.summary)
            typer.echo(f"{source}: stopped: {exc.message}", err=True)
        else:
            typer.echo(f"{source}: {exc.message}; nothing imported", err=True)
        raise typer.Exit(2) from None
    report(summary)
    raise typer.Exit(1 if summary.error_count else 0)
