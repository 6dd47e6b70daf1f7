"""`crm-health config export|apply`: the health configuration as code (YAML)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from webhooks import config_service
from webhooks.cli.common import (
    DatabaseOption,
    _require_database,
    _settings,
    _with_session,
)
from webhooks.cli.root import cli
from webhooks.clock import utcnow
from webhooks.errors import InvalidConfig, ServiceError

config_app = typer.Typer(
    help="The health configuration as code: export the version in force, apply a YAML file.",
    no_args_is_help=True,
)
cli.add_typer(config_app, name="config")


def _cli_author() -> str:
    try:
        return f"{getpass.getuser()} (cli)"
    except OSError:
        return "cli"


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@config_app.command("export")
def config_export(
    file: Annotated[
        str, typer.Argument(help="YAML file to write; - writes standard output.", metavar="FILE")
    ],
    database: DatabaseOption = None,
) -> None:
    """Write the configuration in force as YAML (the defaults until a version is stored)."""
    settings = _settings(database)
    _require_database(settings)
    document = _with_session(settings, config_service.current_document, migrate=False)
    origin = (
        "the defaults (no version stored yet)"
        if document.version_id is None
        else f"version {document.version_id} ({document.version}) by {document.author}, "
        f"{document.created_at:%Y-%m-%d %H:%M} UTC"
    )
    text = (
        f"# crm-health configuration: {origin}\n"
        "# Change it and store it with: crm-health config apply FILE [--dry-run]\n"
        + yaml.safe_dump(document.config.model_dump(mode="json"), sort_keys=False)
    )
    if file == "-":
        typer.echo(text, nl=False)
        return
    try:
        Path(file).write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"{file}: cannot write: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {origin} to {file}", err=True)


@config_app.command("apply")
def config_apply(
    file: Annotated[
        str, typer.Argument(help="YAML file to apply; - reads standard input.", metavar="FILE")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the changes; store nothing.")
    ] = False,
    comment: Annotated[str, typer.Option(help="Why: kept with the version.")] = "",
    author: Annotated[
        str | None, typer.Option(help="Who, for the history (default: the login user).")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Validate a YAML configuration, print the changed field paths (old -> new) and store it
    as a new version, which rescores every account. Applying what is in force already stores
    nothing. Exit status: 0 stored, nothing to change, or a dry run; 1 not stored because
    another change got in first (run it again); 2 the file cannot be read or does not
    validate (every invalid field path is listed)."""
    source = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        typer.echo(f"{source}: cannot read: {exc}; nothing applied", err=True)
        raise typer.Exit(2) from None
    if document is None:
        typer.echo(f"{source}: the file is empty; nothing applied", err=True)
        raise typer.Exit(2)
    try:
        config = config_service.parse_config(document)
    except InvalidConfig as exc:
        for path, message in exc.errors:
            typer.echo(f"{source}: {path}: {message}", err=True)
        typer.echo(f"{source}: {len(exc.errors)} invalid field(s); nothing applied", err=True)
        raise typer.Exit(2) from None
    settings = _settings(database)
    try:
        result = _with_session(
            settings,
            lambda session: config_service.apply_config(
                session,
                config=config,
                author=author or _cli_author(),
                comment=comment,
                dry_run=dry_run,
                now=utcnow(),
            ),
        )
    except ServiceError as exc:
        typer.echo(f"not applied: {exc.message}", err=True)
        raise typer.Exit(1) from None
    before = result.before
    label = "the defaults" if before.version_id is None else f"version {before.version_id}"
    if not result.changes:
        typer.echo(f"no changes: {label} is this configuration already; nothing stored")
        return
    typer.echo(f"{len(result.changes)} change(s) from {label}:")
    for path, old, new in result.changes:
        typer.echo(f"  {path}: {_shown(old)} -> {_shown(new)}")
    if result.stored is None:
        typer.echo("dry run: nothing stored")
    else:
        typer.echo(
            f"stored version {result.stored.version_id} ({result.stored.version}); "
            "a running worker rescores every account"
        )
