"""`crm-health` commands over the inbox: unmatched (events waiting for an account),
dead-letters, replay."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from webhooks.cli.common import (
    DatabaseOption,
    JsonOption,
    _echo_list,
    _require_database,
    _settings,
    _when,
)
from webhooks.cli.root import cli
from webhooks.cli_errors import (
    unknown_connection,
)
from webhooks.clock import utcnow
from webhooks.runtime import Runtime
from webhooks.store import inbox, product


@cli.command("unmatched")
def unmatched(
    connection: Annotated[
        str | None, typer.Option(help="Only this connection (default: every one).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many to list.")] = 100,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """List what waiting events need: unknown account ids (mistyped, or not in the CRM yet),
    product accounts and users without a mapping; with the reason and how many events wait."""
    settings = _settings(database)
    _require_database(settings)

    async def run() -> None:
        runtime = Runtime.build(settings)
        try:
            async with runtime.sessions() as session:
                items, total = await product.list_unmatched(
                    session, connection=connection, limit=limit
                )
            if not items and connection is not None:
                # Nothing waits in a mistyped connection either: say it is unknown instead.
                await runtime.connections.sync_installed(runtime.sessions)
                known = {settings.connection_name, *(c.name for c in runtime.connections.all())}
                if connection not in known:
                    raise unknown_connection(connection, known)
        finally:
            await runtime.aclose()
        _echo_list(
            as_json=as_json,
            records=[
                {
                    "connection": item.connection,
                    "kind": item.key.partition(":")[0],
                    "id": item.key.partition(":")[2],
                    "events": item.events,
                    "last_received_at": item.last_received_at,
                    "reason": item.reason,
                }
                for item in items
            ],
            empty="no events wait for an account",
            header=("connection", "kind", "id", "events", "last received", "reason"),
            cells=[
                (
                    item.connection,
                    item.key.partition(":")[0],
                    item.key.partition(":")[2],
                    str(item.events),
                    _when(item.last_received_at),
                    item.reason or "",
                )
                for item in items
            ],
            numeric={3},
        )
        if not as_json and total > len(items):
            typer.echo(f"... {total - len(items)} more (--limit)")

    asyncio.run(run())


@cli.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option(help="How many to list.")] = 100,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """List events that could not be processed, with their error."""
    settings = _settings(database)
    _require_database(settings)

    async def run() -> None:
        runtime = Runtime.build(settings)
        try:
            async with runtime.sessions() as session:
                rows = await inbox.dead_letters(session, limit=limit)
        finally:
            await runtime.aclose()
        _echo_list(
            as_json=as_json,
            records=[
                {
                    "id": row.id,
                    "source": row.source,
                    "connection": row.connection,
                    "kind": row.kind,
                    "attempts": row.attempts,
                    "last_error": row.last_error,
                }
                for row in rows
            ],
            empty="no dead letters",
            header=("id", "source", "connection", "kind", "attempts", "error"),
            cells=[
                (
                    str(row.id),
                    row.source,
                    row.connection,
                    row.kind,
                    str(row.attempts),
                    row.last_error or "",
                )
                for row in rows
            ],
            numeric={0, 4},
        )

    asyncio.run(run())


@cli.command()
def replay(
    event_ids: Annotated[
        list[int] | None, typer.Argument(help="Dead-letter ids to replay (see dead-letters).")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Send dead letters back to the worker with fresh attempts. Exit status: 0 done; 1 some
    ids given are no dead letters (the others were replayed); 2 the database cannot be used."""
    if not event_ids and not replay_all:
        typer.echo("give dead-letter ids, or --all", err=True)
        raise typer.Exit(2)
    settings = _settings(database)
    _require_database(settings)
    wanted = None if replay_all else sorted(set(event_ids or ()))

    async def run() -> tuple[int, dict[int, str]]:
        runtime = Runtime.build(settings)
        try:
            async with runtime.sessions() as session, session.begin():
                found = {} if wanted is None else await inbox.statuses(session, event_ids=wanted)
                replayed = await inbox.replay(session, event_ids=wanted, now=utcnow())
                return replayed, found
        finally:
            await runtime.aclose()

    replayed, found = asyncio.run(run())
    typer.echo(f"{replayed} dead letter(s) queued again; a running worker processes them")
    missing = [str(i) for i in wanted or () if i not in found]
    other = [f"{i} ({status})" for i, status in found.items() if status != inbox.DEAD]
    if missing:
        typer.echo(
            f"no inbox event with id: {', '.join(missing)} (`crm-health dead-letters` lists "
            "the dead letters)",
            err=True,
        )
    if other:
        typer.echo(f"not dead letters, left as they are: {', '.join(other)}", err=True)
    raise typer.Exit(1 if missing or other else 0)
