"""`crm-health` commands an operator checks and repairs with: status, doctor, recompute,
reconcile."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from webhooks import doctor as doctor_checks
from webhooks import reconcile as reconcile_service
from webhooks import sync_status
from webhooks.cli.common import (
    DatabaseOption,
    JsonOption,
    _require_database,
    _settings,
    database_origin,
    describe_database,
)
from webhooks.cli.root import cli
from webhooks.clock import utcnow
from webhooks.errors import NotConfigured, NotFound
from webhooks.fieldplans import plan_connections
from webhooks.progress import Progress
from webhooks.runtime import Runtime
from webhooks.store import configs, inbox


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
            await plan_connections(runtime.sessions, runtime.connections)
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
            await plan_connections(runtime.sessions, runtime.connections)
            summaries = await reconcile_service.reconcile(
                sessions=runtime.sessions,
                connections=runtime.connections,
                clock=utcnow,
                only=connection,
                progress=Progress("Reconcile", stream=sys.stderr),
            )
            sent = 0
            if send and any(summary.resent for summary in summaries):
                # Fields the configuration added are provisioned first (write-backs need them).
                await runtime.pipeline.provision_fields()
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
