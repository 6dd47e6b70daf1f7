"""The `crm-health` command: serve, worker, migrate, provision, backfill, dead letters and
replay, sync status and write-back retry, recompute, reconcile, sandbox, demo, API keys,
usage import, configuration export and apply."""

from __future__ import annotations

import asyncio
import getpass
import inspect
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
import typer
import uvicorn
import yaml
from prometheus_client import start_http_server
from sqlalchemy.engine import make_url

from connector.sandbox.app import create_sandbox_app
from webhooks import config_service, installs, server, sync_status, usage_import
from webhooks import doctor as doctor_checks
from webhooks import reconcile as reconcile_service
from webhooks.app import create_app
from webhooks.backfill import run_backfill
from webhooks.cli_errors import (
    DEBUG_KEY,
    ErrorReportingGroup,
    no_crm_credentials,
    require_free_port,
    unknown_connection,
)
from webhooks.clock import utcnow
from webhooks.configuration import check_configuration
from webhooks.demo import fresh_database_url, run_demo
from webhooks.errors import InvalidConfig, NotConfigured, NotFound, ServiceError
from webhooks.logging import configure_logging
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.settings import Settings, normalise_database_url
from webhooks.store import configs, inbox, keys, product, writeback
from webhooks.store.db import AsyncSession, create_engine, create_session_factory
from webhooks.store.migrate import current_revision, head_revision, upgrade_to_head

T = TypeVar("T")

log = structlog.get_logger(__name__)

cli = typer.Typer(
    help="crm-health: customer health computed from CRM and product events, written back "
    "into the CRM. Configure with CRM_HEALTH_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
    # Expected failures of every command become one or two lines and an exit status there.
    cls=ErrorReportingGroup,
)


DATABASE_VARIABLE = "CRM_HEALTH_DATABASE_URL"

# One rule for where every command's data lives: --database, else CRM_HEALTH_DATABASE_URL,
# else ./crm_health.db in the working directory (README, "Where the data lives").
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        help=f"The database: a SQLite file or a database URL (default: {DATABASE_VARIABLE}, "
        "else ./crm_health.db).",
        show_default=False,
        metavar="FILE|URL",
    ),
]


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table (for scripts).")
]


def _cell(value: str) -> str:
    """A table cell on a terminal: names, errors and reasons come from CRMs, products and
    people, so control characters (escape sequences, newlines, tabs) are shown escaped,
    never acted on or allowed to break the row."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)


def _echo_table(
    header: tuple[str, ...], rows: list[tuple[str, ...]], *, numeric: Collection[int] = ()
) -> None:
    """Aligned columns under a header; counts right-aligned, text left, as a reader scans."""
    cells = [header, *[tuple(_cell(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        typer.echo(
            "  ".join(
                cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )


def _echo_json(rows: list[dict[str, Any]]) -> None:
    """A list command's rows as one JSON array (times in ISO 8601), empty when none."""
    typer.echo(json.dumps(rows, indent=2, default=_json_value, ensure_ascii=False))


def _echo_list(
    *,
    as_json: bool,
    records: list[dict[str, Any]],
    empty: str,
    header: tuple[str, ...],
    cells: list[tuple[str, ...]],
    numeric: Collection[int] = (),
) -> None:
    """A list command's output: its records as JSON (for scripts), or `empty` when there are
    none, or a table under `header` (one row of `cells` per record)."""
    if as_json:
        _echo_json(records)
    elif not cells:
        typer.echo(empty)
    else:
        _echo_table(header, cells, numeric=numeric)


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _when(moment: datetime | None, *, never: str = "-") -> str:
    return never if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def database_url_of(database: str) -> str:
    """--database takes what CRM_HEALTH_DATABASE_URL takes, or a plain path to a SQLite file
    (what the demo prints)."""
    if "://" in database:
        return normalise_database_url(database)
    return f"sqlite+aiosqlite:///{Path(database).expanduser().resolve()}"


def database_origin(database: str | None) -> str:
    """Which step of the rule chose the database, for `status` and error lines."""
    if database is not None:
        return "--database"
    if os.environ.get(DATABASE_VARIABLE):
        return DATABASE_VARIABLE
    return f"the default; --database or {DATABASE_VARIABLE} choose another"


def describe_database(database_url: str) -> str:
    """The database as a person finds it: a SQLite file's absolute path, or the URL without
    its password."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return "SQLite in memory"
        return f"SQLite file {Path(url.database).resolve()}"
    return url.render_as_string(hide_password=True)


@cli.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of a failure (also CRM_HEALTH_DEBUG=1)."),
    ] = False,
) -> None:
    ctx.meta[DEBUG_KEY] = debug


def _settings(database: str | None = None) -> Settings:
    # An invalid setting or file raises here; cli_errors says which, with exit status 2.
    # Given to the constructor, --database outranks the environment variable.
    settings = Settings() if database is None else Settings(database_url=database_url_of(database))
    check_configuration(settings)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


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


def _require_database(settings: Settings) -> None:
    """Stop with one line unless the database exists and its schema is this version's: commands
    that only read or fix rows must never create an empty database where a path was mistyped."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).resolve()
        if not path.exists():
            typer.echo(
                f"database {path} does not exist: point --database or {DATABASE_VARIABLE} at "
                "yours, or create it with `crm-health migrate`",
                err=True,
            )
            raise typer.Exit(2)

    async def revision() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    # A database that cannot be reached or read fails here; cli_errors says what and what to do.
    current = asyncio.run(revision())
    head = head_revision()
    if current != head:
        state = "has no schema yet" if current is None else f"is at revision {current}"
        typer.echo(
            f"the database {state}; this crm-health needs {head}: run `crm-health migrate`",
            err=True,
        )
        raise typer.Exit(2)


def _age(seconds: float) -> str:
    """A duration for a table cell: 45s, 12m 05s, 3h 02m, 2d 04h."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _status_table(report: sync_status.SyncReport) -> list[str]:
    header = (
        "connection", "status", "pending", "failing", "failed", "oldest pending",
        "last success", "dead letters",
    )  # fmt: skip
    rows = [header]
    for item in report.connections:
        sync = item.writebacks
        last = sync.last_success_at
        rows.append(
            (
                item.connection,
                item.status.replace("_", " "),
                str(sync.pending),
                str(sync.failing),
                str(sync.failed),
                _age(sync.oldest_pending_age_seconds) if sync.oldest_pending_since else "-",
                "never" if last is None else f"{last:%Y-%m-%d %H:%M} UTC",
                str(item.dead_letters),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    # Text columns left, counts right, as a reader scans them.
    numeric = {2, 3, 4, 7}
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    if not report.connections:
        lines.append("(no connection has write-backs or dead letters yet)")
    counts = report.inbox.counts
    lines.append(
        "inbox: "
        + ", ".join(f"{counts.get(status, 0)} {status}" for status in inbox.UNSETTLED)
        + f"; oldest pending {_age(report.inbox.oldest_pending_age_seconds)}"
    )
    for item in report.connections:
        sync = item.writebacks
        if sync.failing_error:
            lines.append(f"{item.connection}: failing: {sync.failing_error}")
        if sync.failed_error:
            lines.append(f"{item.connection}: failed: {sync.failed_error}")
        if item.not_found_in_crm:
            lines.append(
                f"{item.connection}: not found in the CRM: {item.not_found_in_crm} accounts "
                "(not scored or listed until the CRM sends them)"
            )
        if item.unknown_accounts:
            lines.append(
                f"{item.connection}: unknown account ids: {item.unknown_accounts} (their "
                "events wait)"
            )
        lines.extend(f"{item.connection}: retry: {command}" for command in item.commands)
    return lines


@cli.command()
def status(
    as_json: JsonOption = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 1 when a connection has failing or failed write-backs or "
            "dead letters (for cron and monitoring).",
        ),
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Sync state per connection: write-backs pending, failing and failed, the oldest pending,
    the last success, dead letters and the last CRM errors. Exit status: 0; 1 with --check
    when something is failing, failed or dead; 2 the database cannot be read."""
    settings = _settings(database)
    _require_database(settings)

    async def run() -> sync_status.SyncReport:
        runtime = Runtime.build(settings)
        try:
            return await sync_status.report(
                runtime.sessions, now=utcnow(), include=runtime.connections.writers().keys()
            )
        finally:
            await runtime.aclose()

    report = asyncio.run(run())
    where = f"database: {describe_database(settings.database_url)} ({database_origin(database)})"
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        # Standard output stays the API's report; the location goes with the other remarks.
        typer.echo(where, err=True)
    else:
        for line in _status_table(report):
            typer.echo(line)
        typer.echo(where)
    raise typer.Exit(1 if check and any(map(sync_status.needs_action, report.connections)) else 0)


@cli.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Check every CRM connection's setup: credentials, object access (scopes), webhooks,
    health fields, seats/ARR/renewal mapping, last event and last write-back, each with
    what to do. Exit status: 0 nothing failed (warnings allowed); 1 a check failed or no
    connection is configured; 2 the database cannot be read."""
    settings = _settings(database)
    _require_database(settings)

    async def run() -> doctor_checks.DoctorReport:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            return await doctor_checks.run(
                runtime.connections.all(), runtime.sessions, now=utcnow()
            )
        finally:
            await runtime.aclose()

    report = asyncio.run(run())
    if not report.connections:
        typer.echo(
            "no CRM connection configured: set e.g. CRM_HEALTH_HUBSPOT_ACCESS_TOKEN (see "
            "docs/hubspot.md, docs/salesforce.md, docs/dynamics.md)",
            err=True,
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for line in doctor_checks.table(report):
            typer.echo(line)
    raise typer.Exit(1 if report.failed else 0)


@cli.command()
def recompute(database: DatabaseOption = None) -> None:
    """Rescore every account from stored facts (the worker does it in the background)."""
    settings = _settings(database)
    _require_database(settings)

    async def run() -> int:
        runtime = Runtime.build(settings)
        try:
            async with runtime.sessions() as session, session.begin():
                job = await configs.request_recompute(
                    session,
                    config_id=await configs.current_id(session),
                    reason="requested from the command line",
                    now=utcnow(),
                )
                return job.id
        finally:
            await runtime.aclose()

    typer.echo(f"recompute job {asyncio.run(run())} queued; a running worker picks it up")


# Delivery rounds of `reconcile --send`: each sends every due row; rows that fail wait out
# their backoff, so the rounds end long before this unless new rows keep coming.
SEND_ROUNDS = 100


@cli.command()
def reconcile(
    connection: Annotated[
        str | None, typer.Option(help="Connection to reconcile (default: every one).")
    ] = None,
    send: Annotated[
        bool,
        typer.Option("--send", help="Deliver the re-queued values now instead of by the worker."),
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Read the health fields back from the CRM and re-send every value that differs from
    the database (after an outage, edits by hand, a restored backup). Exit status: 0 done;
    1 a CRM failed a read (the other connections are done); 2 nothing to reconcile."""
    settings = _settings(database)

    async def run() -> int:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            summaries = await reconcile_service.reconcile(
                sessions=runtime.sessions,
                connections=runtime.connections,
                clock=utcnow,
                only=connection,
                progress=Progress("Reconcile", stream=sys.stderr),
            )
            sent = 0
            if send and any(summary.resent for summary in summaries):
                for _ in range(SEND_ROUNDS):
                    delivered = await runtime.pipeline.deliver_writebacks()
                    sent += delivered
                    if not delivered:
                        break
        except (NotConfigured, NotFound) as exc:
            typer.echo(exc.message, err=True)
            return 2
        finally:
            await runtime.aclose()
        for summary in summaries:
            typer.echo(summary.text())
        resent = sum(summary.resent for summary in summaries)
        if send and resent:
            typer.echo(f"{sent} write-back(s) sent now; any that failed are retried by the worker")
        elif resent:
            typer.echo(
                f"{resent} re-queued: a running worker (crm-health serve or worker) sends them, "
                "or run again with --send"
            )
        return 1 if any(summary.error for summary in summaries) else 0

    raise typer.Exit(asyncio.run(run()))


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


def _connection_names(settings: Settings) -> list[str]:
    """Every connection name a key or an import may use: the settings' own (native events
    need no CRM), the CRM settings', the connections file's and HubSpot installs."""

    async def run() -> list[str]:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            return [item.name for item in runtime.connections.all()]
        finally:
            await runtime.aclose()

    return sorted({settings.connection_name, *asyncio.run(run())})


keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
cli.add_typer(keys_app, name="keys")


def _with_session(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, migrate: bool = True
) -> T:
    """Run `work` in one committed transaction on a migrated database (`migrate`: brought up
    to date, created if need be; otherwise checked by _require_database first)."""
    if migrate:
        upgrade_to_head(settings.database_url)

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


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


import_app = typer.Typer(
    help="Load product events from files, e.g. a data warehouse export.", no_args_is_help=True
)
cli.add_typer(import_app, name="import")


@import_app.command("usage")
def import_usage(
    file: Annotated[
        str,
        typer.Argument(help="CSV file with a header row; - reads standard input.", metavar="FILE"),
    ],
    connection: Annotated[
        str | None,
        typer.Option(help="Connection the account ids belong to (default: the configured one)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; store nothing.")
    ] = False,
    delimiter: Annotated[
        str, typer.Option(help="Field separator: one character, or \\t for a tab.")
    ] = ",",
    ignore_unknown_columns: Annotated[
        bool,
        typer.Option(
            "--ignore-unknown-columns",
            help="Skip columns other than account, at, type, user, feature, kind, id.",
        ),
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Import usage and collaboration rows from a CSV file (streamed; bad rows are reported
    by line and skipped). Exit status: 0 every row imported; 1 some rows had errors (the
    others were imported); 2 the file or the options could not be used."""

    def report(summary: usage_import.ImportSummary) -> None:
        for error in summary.errors:
            typer.echo(str(error))
        if summary.error_count > len(summary.errors):
            typer.echo(f"... and {summary.error_count - len(summary.errors):,} more")
        typer.echo(summary.text())

    try:
        separator = usage_import.parse_delimiter(delimiter)
    except usage_import.ImportFileError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(2) from None
    settings = _settings(database)
    name = connection or settings.connection_name
    progress = Progress("Import", stream=sys.stderr)

    async def store(rows: usage_import.UsageCsv) -> usage_import.ImportSummary:
        runtime = Runtime.build(settings)
        try:
            await runtime.connections.sync_installed(runtime.sessions)
            # Native events may name any connection; a name that is neither the settings'
            # nor a configured one is a typo that would file the rows where nothing reads them.
            if name != settings.connection_name and runtime.connections.get(name) is None:
                typer.echo(f"unknown connection {name!r}", err=True)
                raise typer.Exit(2)
            return await usage_import.import_usage(
                rows=rows, sessions=runtime.sessions, connection=name, progress=progress
            )
        finally:
            await runtime.aclose()

    try:
        with usage_import.open_csv(file) as stream:
            # The header (and, for a file, its encoding) is checked before the database is
            # touched: a file that cannot be imported stores nothing.
            rows = usage_import.UsageCsv(
                stream,
                delimiter=separator,
                ignore_unknown_columns=ignore_unknown_columns,
                check_encoding=not dry_run,
            )
            if dry_run:
                summary = asyncio.run(
                    usage_import.import_usage(
                        rows=rows, sessions=None, connection=name, dry_run=True, progress=progress
                    )
                )
            else:
                upgrade_to_head(settings.database_url)
                summary = asyncio.run(store(rows))
    except usage_import.ImportFileError as exc:
        source = "standard input" if file == "-" else file
        if exc.summary is not None:
            report(exc.summary)
            typer.echo(f"{source}: stopped: {exc.message}", err=True)
        else:
            typer.echo(f"{source}: {exc.message}; nothing imported", err=True)
        raise typer.Exit(2) from None
    report(summary)
    raise typer.Exit(1 if summary.error_count else 0)


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
