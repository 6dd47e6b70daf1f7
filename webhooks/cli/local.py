"""`crm-health` commands that run locally without a CRM: sandbox (the HubSpot-compatible
sandbox CRM) and demo."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvicorn

from connector.sandbox.app import create_sandbox_app
from webhooks.cli.root import cli
from webhooks.cli_errors import (
    require_free_port,
)
from webhooks.demo import fresh_database_url, run_demo
from webhooks.logging import configure_logging


@cli.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    access_token: Annotated[
        str | None, typer.Option(help="Bearer token the sandbox requires (none: any).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="SQLite file the sandbox keeps its data in (none: memory only)."),
    ] = None,
    latency_ms: Annotated[
        int, typer.Option(min=0, help="Milliseconds added before every /crm answer.")
    ] = 0,
    oauth_client_id: Annotated[
        str | None, typer.Option(help="Client id of the OAuth app the sandbox accepts.")
    ] = None,
    oauth_client_secret: Annotated[
        str | None,
        typer.Option(
            help="Client secret of that OAuth app.",
            envvar="CRM_HEALTH_SANDBOX_OAUTH_CLIENT_SECRET",
        ),
    ] = None,
    oauth_token_ttl: Annotated[
        int, typer.Option(min=1, help="Seconds an OAuth access token lives.")
    ] = 1800,
    webhook_url: Annotated[
        str | None, typer.Option(help="Send signed HubSpot webhooks of every change here.")
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            help="Client secret the webhooks are signed with (v3).",
            envvar="CRM_HEALTH_SANDBOX_WEBHOOK_SECRET",
        ),
    ] = None,
    webhook_batch_ms: Annotated[
        int, typer.Option(min=0, help="Milliseconds changes are gathered into one webhook.")
    ] = 100,
) -> None:
    """Run the local HubSpot-compatible sandbox CRM."""
    # Imported here rather than at the top: only this command builds a sandbox state, and the
    # module's import block belongs to the other commands' owners.
    from connector.sandbox.outbound import Subscription  # noqa: PLC0415
    from connector.sandbox.state import SandboxState  # noqa: PLC0415

    if (oauth_client_id is None) != (oauth_client_secret is None):
        raise typer.BadParameter("give both --oauth-client-id and --oauth-client-secret")
    if webhook_url is not None and not webhook_secret:
        raise typer.BadParameter("--webhook-url needs --webhook-secret to sign with")
    require_free_port(host, port, option="--port")
    configure_logging()
    state = SandboxState(
        database=database,
        oauth_client_id=oauth_client_id,
        oauth_client_secret=oauth_client_secret,
        access_token_ttl_seconds=oauth_token_ttl,
    )
    state.faults.latency_seconds = latency_ms / 1000
    if webhook_url is not None and webhook_secret:
        state.webhooks.subscribe(
            Subscription(
                target_url=webhook_url,
                client_secret=webhook_secret,
                app_id=state.oauth.app_id,
                batch_ms=webhook_batch_ms,
            )
        )
    try:
        uvicorn.run(
            create_sandbox_app(state, access_token=access_token),
            host=host,
            port=port,
            log_config=None,
        )
    finally:
        state.close()


@cli.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the crm-health service.")] = 8000,
    sandbox_port: Annotated[int, typer.Option(help="Port of the sandbox CRM.")] = 8765,
    database: Annotated[
        str,
        typer.Option(
            help="SQLite file of the demo, emptied first; other commands read it with "
            "--database FILE."
        ),
    ] = "demo.db",
    accounts: Annotated[
        int, typer.Option(min=1, help="Sample companies to create, each with 180 days of activity.")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the sample data.")] = 7,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop after the summary instead of serving on.")
    ] = False,
) -> None:
    """Run sandbox CRM + service on SQLite, replay 180 days of sample activity through the API,
    print a summary (bands, the most at-risk companies and why, alerts, URLs), keep serving."""
    # Both servers bind 127.0.0.1 (webhooks.demo).
    require_free_port("127.0.0.1", port, option="--port")
    require_free_port("127.0.0.1", sandbox_port, option="--sandbox-port")
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
