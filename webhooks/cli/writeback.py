"""`crm-health writeback retry`: queue stuck health write-backs again."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from webhooks.cli.common import (
    DatabaseOption,
    _connection_names,
    _require_database,
    _settings,
)
from webhooks.cli.root import cli
from webhooks.cli_errors import (
    unknown_connection,
)
from webhooks.clock import utcnow
from webhooks.runtime import Runtime
from webhooks.store import writeback

writeback_app = typer.Typer(
    help="Health write-backs to the CRM: send stuck ones again.", no_args_is_help=True
)
cli.add_typer(writeback_app, name="writeback")


@writeback_app.command("retry")
def writeback_retry(
    connection: Annotated[
        str | None,
        typer.Option(
            help="Only this connection (default: every one; with --account, the configured one)."
        ),
    ] = None,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed", help="Write-backs the CRM refused, once the record or field is fixed."
        ),
    ] = False,
    failing: Annotated[
        bool,
        typer.Option("--failing", help="Write-backs waiting out a backoff: send them now."),
    ] = False,
    accounts: Annotated[
        list[str] | None,
        typer.Option("--account", help="Only this account's CRM record id (repeat for more)."),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Queue write-backs again with fresh attempts, due now: failed and failing ones (neither
    flag given: both). Exit status: 0; 1 some --account ids have no write-back (the others
    were queued); 2 the database cannot be used."""
    settings = _settings(database)
    _require_database(settings)
    both = not failed and not failing
    name = connection or (settings.connection_name if accounts else None)

    async def run() -> writeback.Requeued:
        runtime = Runtime.build(settings)
        try:
            async with runtime.sessions() as session, session.begin():
                return await writeback.retry(
                    session,
                    now=utcnow(),
                    failed=failed or both,
                    failing=failing or both,
                    connection=name,
                    record_ids=accounts,
                )
        finally:
            await runtime.aclose()

    result = asyncio.run(run())
    if name is not None and not (result.failed or result.failing or result.unknown):
        # Rows stay retryable after their connection left the settings, so the name is
        # checked only when it matched nothing.
        known = _connection_names(settings)
        if name not in known:
            raise unknown_connection(name, known)
    scope = "every connection" if name is None else f"connection {name}"
    typer.echo(
        f"{result.failed} failed and {result.failing} failing write-back(s) of {scope} queued "
        "again; a running worker sends them now"
    )
    if result.unknown:
        typer.echo(
            f"no write-back in connection {name} for account(s): {', '.join(result.unknown)}",
            err=True,
        )
        raise typer.Exit(1)
