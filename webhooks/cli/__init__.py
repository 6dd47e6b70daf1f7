"""The `crm-health` command: serve, worker, migrate, provision, backfill, dead letters and
replay, prune, sync status and write-back retry, recompute, reconcile, sandbox, demo, API
keys, usage and outcome imports, configuration export and apply, backtest and suggest.

The root app is `root.cli`; each module here registers one group of commands on it, and is
imported below in the order the commands are listed in the help.
"""

from __future__ import annotations

import inspect

import typer

from webhooks.cli.root import cli

# isort: off
# Imported for the commands they register, in the order the help lists them.
from webhooks.cli import service, inbox, prune, ops, local, access, writeback, imports  # noqa: F401
from webhooks.cli import config, calibrate  # noqa: F401
# isort: on

__all__ = ["cli", "main"]


def _unwrap_help(app: typer.Typer) -> None:
    """Docstrings break lines where the source does; the help re-wraps text to the terminal but
    keeps those breaks (a command list shows ragged half lines): each paragraph becomes one
    line. Runs over every command registered above, whoever added it."""
    for command in app.registered_commands:
        text = command.help or (inspect.getdoc(command.callback) if command.callback else None)
        if text:
            command.help = "\n\n".join(
                " ".join(paragraph.split()) for paragraph in text.split("\n\n")
            )
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _unwrap_help(group.typer_instance)


_unwrap_help(cli)


def main() -> None:
    cli()
