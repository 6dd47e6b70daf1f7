"""`crm-health` commands that grant access: install-link (the HubSpot app install) and
keys create, list, revoke (API keys)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from webhooks import installs
from webhooks.cli.common import (
    DatabaseOption,
    JsonOption,
    _connection_names,
    _echo_list,
    _require_database,
    _settings,
    _when,
    _with_session,
)
from webhooks.cli.root import cli
from webhooks.cli_errors import (
    unknown_connection,
)
from webhooks.clock import utcnow
from webhooks.errors import NotConfigured
from webhooks.runtime import Runtime
from webhooks.store import keys
from webhooks.store.migrate import upgrade_to_head


@cli.command("install-link")
def install_link(database: DatabaseOption = None) -> None:
    """Print a single-use link (valid 30 minutes) that installs the HubSpot app into one
    portal; give it to the HubSpot admin who installs."""
    settings = _settings(database)
    upgrade_to_head(settings.database_url)

    async def run() -> installs.InstallLink:
        runtime = Runtime.build(settings)
        try:
            return await installs.create_link(
                sessions=runtime.sessions,
                connections=runtime.connections,
                created_by="cli",
                now=utcnow(),
            )
        finally:
            await runtime.aclose()

    try:
        link = asyncio.run(run())
    except NotConfigured as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(link.url)
    typer.echo(f"single use, valid until {link.expires_at.isoformat()}", err=True)


keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
cli.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. warehouse-sync.")],
    role: Annotated[
        str,
        typer.Option(
            help="global_admin (everything, for every connection), admin (its connection's "
            "alerts and settings), viewer (read-only) or ingest (push events)."
        ),
    ],
    connection: Annotated[
        str | None, typer.Option(help="Connection the key may access (default: the configured).")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Create an API key; it is printed once and never stored in the clear."""
    settings = _settings(database)
    if connection is not None:
        # Checked before anything is migrated or stored: a refused key leaves no trace. Only
        # an OAuth app makes this read the database (its installs).
        known = _connection_names(settings)
        if connection not in known:
            # A key for a connection nothing feeds would be refused or see nothing, silently.
            raise unknown_connection(connection, known)
    try:
        row, key = _with_session(
            settings,
            lambda session: keys.create(
                session,
                name=name,
                role=role,
                connection=connection or settings.connection_name,
                now=utcnow(),
            ),
        )
    except ValueError as exc:
        typer.echo(f"cannot create the key: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(key)
    typer.echo(
        f"key {row.id} ({row.prefix}...): role {row.role}, connection {row.connection}. "
        "Store it now: it is not shown again.",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    include_revoked: Annotated[
        bool, typer.Option("--revoked", help="Show revoked keys too.")
    ] = False,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """List API keys (never the keys themselves)."""
    settings = _settings(database)
    _require_database(settings)
    rows = _with_session(
        settings,
        lambda session: keys.list_keys(session, include_revoked=include_revoked),
        migrate=False,
    )
    header = ("id", "prefix", "name", "role", "connection", "created", "last used")
    _echo_list(
        as_json=as_json,
        records=[
            {
                "id": row.id,
                "prefix": row.prefix,
                "name": row.name,
                "role": row.role,
                "connection": row.connection,
                "created_at": row.created_at,
                "last_used_at": row.last_used_at,
                "revoked_at": row.revoked_at,
            }
            for row in rows
        ],
        empty="no API keys",
        header=header + (("revoked",) if include_revoked else ()),
        cells=[
            (
                str(row.id),
                f"{row.prefix}...",
                row.name,
                row.role,
                row.connection,
                _when(row.created_at),
                _when(row.last_used_at, never="never"),
            )
            + ((_when(row.revoked_at, never="-"),) if include_revoked else ())
            for row in rows
        ],
        numeric={0},
    )


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix (see keys list).")],
    database: DatabaseOption = None,
) -> None:
    """Revoke an API key at once."""
    settings = _settings(database)
    _require_database(settings)
    revoked = _with_session(
        settings, lambda session: keys.revoke(session, key=key, now=utcnow()), migrate=False
    )
    if not revoked:
        typer.echo(f"no active API key with id or prefix {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked API key {key}")
