"""The `crm-health` command: serve, worker, migrate, provision, sandbox, demo."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
import uvicorn

from connector.sandbox.app import create_sandbox_app
from webhooks.app import create_app
from webhooks.connections import connections_from_settings
from webhooks.demo import fresh_database_url, run_demo
from webhooks.logging import configure_logging
from webhooks.runtime import Runtime
from webhooks.settings import Settings
from webhooks.store.migrate import upgrade_to_head

cli = typer.Typer(
    help="crm-health: customer health computed from CRM and product events, written back "
    "into the CRM. Configure with CRM_HEALTH_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Apply pending migrations, then run the API and the worker."""
    settings = _settings()
    upgrade_to_head(settings.database_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


@cli.command()
def worker() -> None:
    """Run only the pipeline worker (scale out by starting several)."""
    settings = _settings()

    async def run() -> None:
        runtime = Runtime.build(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.stop.set)
        try:
            await runtime.pipeline.run_forever(runtime.stop)
        finally:
            await runtime.aclose()

    asyncio.run(run())


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    upgrade_to_head(settings.database_url)
    typer.echo("database schema is up to date")


@cli.command()
def provision() -> None:
    """Create the "Customer health" fields in every configured CRM (idempotent)."""
    settings = _settings()

    async def run() -> int:
        registry = connections_from_settings(settings)
        writers = registry.writers()
        if not writers:
            typer.echo(
                "no CRM credentials configured (e.g. CRM_HEALTH_HUBSPOT_ACCESS_TOKEN)", err=True
            )
            return 1
        try:
            for name, connector in writers.items():
                report = await connector.ensure_fields()
                typer.echo(
                    f"{name} ({connector.name}): created {len(report.created)}, "
                    f"updated {len(report.updated)}, unchanged {len(report.unchanged)}"
                )
        finally:
            await registry.aclose()
        return 0

    raise typer.Exit(asyncio.run(run()))


@cli.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    access_token: Annotated[
        str | None, typer.Option(help="Bearer token the sandbox requires (none: any).")
    ] = None,
) -> None:
    """Run the local HubSpot-compatible sandbox CRM."""
    configure_logging()
    uvicorn.run(
        create_sandbox_app(access_token=access_token), host=host, port=port, log_config=None
    )


@cli.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the crm-health service.")] = 8000,
    sandbox_port: Annotated[int, typer.Option(help="Port of the sandbox CRM.")] = 8765,
    database: Annotated[str, typer.Option(help="SQLite file of the demo.")] = "demo.db",
    accounts: Annotated[int, typer.Option(help="Sample companies to create.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the sample data.")] = 7,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop after the summary instead of serving on.")
    ] = False,
) -> None:
    """Run sandbox CRM + service on SQLite, replay sample activity, print a summary."""
    configure_logging(level="warning", fmt="console")
    asyncio.run(
        run_demo(
            port=port,
            sandbox_port=sandbox_port,
            database_url=fresh_database_url(database),
            accounts=accounts,
            seed=seed,
            keep_serving=not exit_after,
        )
    )


def main() -> None:
    cli()
