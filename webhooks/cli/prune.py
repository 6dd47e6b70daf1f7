"""`crm-health prune`: retention now (what the worker does on its schedule), a dry run of it,
an explicit purge of old dead letters, and the one-off VACUUM an older SQLite file needs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from webhooks import retention
from webhooks.cli.common import DatabaseOption, _echo_table, _require_database, _settings
from webhooks.cli.root import cli
from webhooks.clock import utcnow
from webhooks.store.db import create_engine, create_session_factory


@cli.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="SQLite: switch the file to incremental auto-vacuum and rewrite it once "
            "(needs free disk space about the database's size; the worker waits meanwhile).",
        ),
    ] = False,
    dead_letters: Annotated[
        bool,
        typer.Option(
            "--dead-letters",
            help="Delete dead letters that failed more than --older-than-days ago instead.",
        ),
    ] = False,
    older_than_days: Annotated[
        float | None,
        typer.Option(help="With --dead-letters: how old a dead letter must be.", min=0),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Delete what the retention policy lets go (CRM_HEALTH_*_RETENTION_DAYS; the worker does
    it every CRM_HEALTH_RETENTION_INTERVAL_SECONDS): a table of the rows that go and what each
    table keeps. Exit status: 0 done; 2 bad options or the database cannot be used."""
    if dead_letters != (older_than_days is not None):
        typer.echo("--dead-letters and --older-than-days N go together", err=True)
        raise typer.Exit(2)
    if vacuum and (dead_letters or dry_run):
        typer.echo("--vacuum runs alone: without --dry-run and --dead-letters", err=True)
        raise typer.Exit(2)
    settings = _settings(database)
    _require_database(settings)
    policy = retention.RetentionPolicy.from_settings(settings)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        sessions = create_session_factory(engine)
        try:
            now = utcnow()
            if vacuum:
                typer.echo(
                    "VACUUM rewrites the whole database file: it needs free disk space about "
                    "its size, and writers wait until it ends"
                )
                if await retention.vacuum(engine):
                    typer.echo("done: later prunes give freed space back to the file system")
                else:
                    typer.echo("PostgreSQL: nothing to do, its autovacuum reuses freed space")
                return
            if older_than_days is not None:
                before = now - timedelta(days=older_than_days)
                purged = await retention.purge_dead_letters(
                    sessions, before=before, batch=policy.batch, dry_run=dry_run
                )
                verb = "would be deleted" if dry_run else "deleted"
                typer.echo(
                    f"{purged} dead letter(s) that failed before {before:%Y-%m-%d %H:%M} UTC {verb}"
                )
                return
            report = await retention.prune(sessions, policy=policy, now=now, dry_run=dry_run)
        finally:
            await engine.dispose()
        rows: list[tuple[str, ...]] = [
            (name, str(count), report.kept[name]) for name, count in report.rows.items()
        ]
        rows.extend((name, "-", why) for name, why in retention.NEVER_DELETED.items())
        _echo_table(("table", "would go" if dry_run else "deleted", "kept"), rows, numeric={1})
        verb = "would be deleted (dry run)" if dry_run else "deleted"
        typer.echo(f"{report.total} row(s) {verb}")

    asyncio.run(run())
