"""The root of the `crm-health` command: the typer app every command module registers
on, and the options that come before any command (--debug)."""

from __future__ import annotations

from typing import Annotated

import typer

from webhooks.cli_errors import DEBUG_KEY, ErrorReportingGroup

cli = typer.Typer(
    help="crm-health: customer health computed from CRM and product events, written back "
    "into the CRM. Configure with CRM_HEALTH_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
    # Expected failures of every command become one or two lines and an exit status there.
    cls=ErrorReportingGroup,
)


@cli.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of a failure (also CRM_HEALTH_DEBUG=1)."),
    ] = False,
) -> None:
    ctx.meta[DEBUG_KEY] = debug
