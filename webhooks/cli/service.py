"""`crm-health` commands that run the service or set up a CRM: serve, worker, migrate,
provision, backfill."""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import Annotated

import structlog
import typer
from prometheus_client import start_http_server

from webhooks import server
from webhooks.app import create_app
from webhooks.backfill import run_backfill
from webhooks.cli.common import (
    DatabaseOption,
    _settings,
)
from webhooks.cli.root import cli
from webhooks.cli_errors import (
    no_crm_credentials,
    require_free_port,
    unknown_connection,
)
from webhooks.errors import NotConfigured
from webhooks.fieldplans import plan_connections
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.store.migrate import upgrade_to_head

log = structlog.get_logger(__name__)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database: DatabaseOption = None,
) -> None:
    """Apply pending migrations, then run the API and the worker."""
    settings = _settings(database)
    require_free_port(host, port, option="--port")
    upgrade_to_head(settings.database_url)
    server.run(create_app(settings), settings, host=host, port=port)


@cli.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this worker's Prometheus metrics at http://0.0.0.0:PORT/metrics.",
        ),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Run only the pipeline worker (scale out by starting several)."""
    settings = _settings(database)
    if metrics_port is not None:
        require_free_port("0.0.0.0", metrics_port, option="--metrics-port")  # noqa: S104

    async def run() -> None:
        runtime = Runtime.build(settings)
        if metrics_port is not None:
            # A worker has no API; its counters (events processed, write-backs, scoring time)
            # are only seen through a port of its own.
            start_http_server(metrics_port, registry=runtime.metrics.registry)
            log.info("metrics_served", port=metrics_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.stop.set)
        # As the service does (webhooks.app): what is built at start lives as long as the
        # process, out of the collector's sight. A recompute chunk's thousands of objects
        # otherwise set off full collections that walked all of it, a sixth of a recompute.
        gc.freeze()
        try:
            await runtime.pipeline.run_forever(runtime.stop)
        finally:
            await runtime.aclose()

    asyncio.run(run())


@cli.command()
def migrate(database: DatabaseOption = None) -> None:
    """Bring the database schema up to date."""
    settings = _settings(database)
    upgrade_to_head(settings.database_url)
    typer.echo("database schema is up to date")


@cli.command()
def provision(database: DatabaseOption = None) -> None:
    """Create the "Customer health" fields in every configured CRM (idempotent)."""
    settings = _settings(database)

    async def run() -> int:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            await plan_connections(runtime.sessions, runtime.connections)
            writers = runtime.connections.writers()
            if not writers:
                raise no_crm_credentials()
            for name, connector in writers.items():
                report = await connector.ensure_fields()
                typer.echo(
                    f"{name} ({connector.name}): created {len(report.created)}, "
                    f"updated {len(report.updated)}, unchanged {len(report.unchanged)}"
                )
        finally:
            await runtime.aclose()
        return 0

    raise typer.Exit(asyncio.run(run()))


@cli.command()
def backfill(
    connection: Annotated[
        str | None, typer.Option(help="Connection to backfill (default: the configured one).")
    ] = None,
    objects: Annotated[
        str | None, typer.Option(help="Comma-separated object types (default: all).")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over instead of resuming.")
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Load the CRM's existing accounts, contacts, engagements and tickets (resumable)."""
    settings = _settings(database)

    async def run() -> int:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            await plan_connections(runtime.sessions, runtime.connections)
            name = connection or settings.connection_name
            target = runtime.connections.get(name)
            if target is None:
                if connection is None and not runtime.connections.writers():
                    raise no_crm_credentials()
                raise unknown_connection(name, runtime.connections.writers())
            report = await run_backfill(
                sessions=runtime.sessions,
                connection=target,
                object_types=objects.split(",") if objects else None,
                restart=restart,
                progress=Progress("Backfill"),
            )
        except (NotConfigured, ValueError) as exc:
            typer.echo(str(exc), err=True)
            return 2
        finally:
            await runtime.aclose()
        done = ", ".join(report.skipped_types)
        typer.echo(
            f"backfill: {report.pages} pages, {report.events} events, {report.stored} new"
            + (f"; already complete: {done}" if done else "")
        )
        return 0

    raise typer.Exit(asyncio.run(run()))
