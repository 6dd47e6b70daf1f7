"""`crm-health doctor`: the first-run checklist the service can verify per connection (CRM
credentials, object access, webhooks, health fields, property mapping, last event, last
write-back), each with a status and what to do about it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from connector.base import CRMConnector, FieldsInspector
from connector.crm import AttributeSources
from connector.errors import (
    ConnectorError,
    CRMAuthError,
    CRMRateLimitPaused,
    CRMRetriesExhausted,
)
from connector.registry import CRMS
from webhooks.connections import Connection
from webhooks.store import inbox, writeback
from webhooks.store.db import SessionFactory

CheckStatus = Literal["ok", "warn", "fail"]
# CRM error texts are cut to this many characters: enough to see the cause, short for a table.
ERROR_CHARS = 200


class Check(BaseModel):
    name: str = Field(description="What was checked (credentials, access, webhooks ...).")
    status: CheckStatus = Field(
        description="ok; warn: works, but some signal or alert lacks data; fail: blocks syncing."
    )
    detail: str = Field(description="What was found.")
    action: str = Field(default="", description="What to do about it (empty when ok).")


class ConnectionReport(BaseModel):
    connection: str
    crm: str
    checks: list[Check]


class DoctorReport(BaseModel):
    checked_at: datetime
    connections: list[ConnectionReport]

    @property
    def failed(self) -> bool:
        return any(check.status == "fail" for item in self.connections for check in item.checks)


# What goes without each attribute: the reader decides whether that matters to them.
_WITHOUT: dict[str, str] = {
    "seats": "seat utilisation, support load per seat",
    "arr": "momentum, ARR on alerts",
    "renewal_date": "renewal alerts",
}


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:ERROR_CHARS]


def _crm_failure(exc: ConnectorError, *, what: str) -> Check:
    """A failed CRM call as a check: a refused token, an unreachable CRM or a spent allowance
    each say what to do."""
    if isinstance(exc, CRMAuthError):
        if exc.status == 403:
            return Check(
                name=what,
                status="fail",
                detail=f"the CRM refused access (403): {_short(exc)}",
                action="grant the app the scopes or permissions its CRM page lists",
            )
        return Check(
            name=what,
            status="fail",
            detail=f"the CRM refused the credentials ({exc.status}): {_short(exc)}",
            action="set a valid token or client credentials for this connection",
        )
    if isinstance(exc, CRMRateLimitPaused):
        return Check(
            name=what,
            status="warn",
            detail=f"the CRM's API allowance is used up: {_short(exc)}",
            action="run doctor again when the allowance resets",
        )
    if isinstance(exc, CRMRetriesExhausted):
        return Check(
            name=what,
            status="fail",
            detail=f"the CRM could not be reached: {_short(exc)}",
            action="check the API base URL, the network and the CRM's status page",
        )
    return Check(name=what, status="fail", detail=_short(exc), action="see the CRM's answer")


async def _access_checks(connector: CRMConnector) -> list[Check]:
    """Credentials from the first object read; then every object a backfill reads, as the
    scopes the CRM actually grants (a 403 names the object whose scope is missing)."""
    credentials_ok = Check(name="credentials", status="ok", detail="the CRM accepted them")
    readable: list[str] = []
    for object_type in connector.backfill_objects:
        try:
            await connector.list_backfill_page(object_type=object_type, after=None)
        except ConnectorError as exc:
            # A 403 is a token that works without some scope; anything else on the first
            # read says nothing about the scopes yet.
            scope_refused = isinstance(exc, CRMAuthError) and exc.status == 403
            if not readable and not scope_refused:
                return [_crm_failure(exc, what="credentials")]
            failure = _crm_failure(exc, what="access")
            failure.detail = f"reading {object_type}: {failure.detail}"
            return [credentials_ok, failure]
        readable.append(object_type)
    return [
        credentials_ok,
        Check(name="access", status="ok", detail="reads " + ", ".join(readable)),
    ]


async def _fields_check(connector: CRMConnector) -> Check:
    if not isinstance(connector, FieldsInspector):
        return Check(
            name="health fields",
            status="warn",
            detail="this CRM's fields cannot be read without provisioning",
            action="run `crm-health provision` (idempotent)",
        )
    try:
        missing = await connector.missing_health_fields()
    except ConnectorError as exc:
        return _crm_failure(exc, what="health fields")
    if missing:
        return Check(
            name="health fields",
            status="fail",
            detail="missing: " + ", ".join(missing),
            action="run `crm-health provision`",
        )
    return Check(name="health fields", status="ok", detail="every health field exists")


def _mapping_sources(connection: Connection) -> AttributeSources | None:
    if connection.crm_settings is None:
        return None
    return connection.crm_settings.attribute_sources()


def _mapping_check(connection: Connection) -> Check:
    sources = _mapping_sources(connection)
    if sources is None:
        return Check(
            name="property mapping",
            status="warn",
            detail="no CRM credentials, so no property mapping is in use",
            action="configure the connection's credentials first",
        )
    spec = CRMS.get(connection.crm)
    settings = {} if spec is None else spec.hints.attribute_settings
    unmapped = [name for name in _WITHOUT if getattr(sources, name) is None]
    if not unmapped:
        mapped = ", ".join(f"{name}={getattr(sources, name)}" for name in _WITHOUT)
        return Check(name="property mapping", status="ok", detail=mapped)
    return Check(
        name="property mapping",
        status="warn",
        detail="unmapped: " + "; ".join(f"{name} (so no {_WITHOUT[name]})" for name in unmapped),
        action="set " + ", ".join(settings.get(name, name) for name in unmapped),
    )


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


async def _events_checks(
    connection: Connection, sessions: SessionFactory, *, now: datetime
) -> list[Check]:
    spec = CRMS.get(connection.crm)
    setup = "the CRM's webhook setup" if spec is None else spec.hints.webhook_setup
    checks: list[Check] = []
    if connection.webhooks_accepted():
        checks.append(
            Check(
                name="webhooks",
                status="ok",
                detail="a secret to verify deliveries is set (whether the CRM sends them "
                "shows in the last event)",
            )
        )
    else:
        checks.append(
            Check(
                name="webhooks",
                status="warn",
                detail="no webhook secret: every delivery to this connection is refused",
                action="set the connection's webhook secret (see its CRM page)",
            )
        )
    async with sessions() as session:
        last_event = await inbox.last_received(
            session, connection=connection.name, sources=(connection.crm,)
        )
        sync = (await writeback.sync_by_connection(session, only=connection.name)).get(
            connection.name
        )
    if last_event is None:
        checks.append(
            Check(
                name="last event",
                status="warn",
                detail="no webhook event from the CRM in the inbox",
                action=f"{setup}; change a record and run doctor again",
            )
        )
    else:
        checks.append(
            Check(
                name="last event",
                status="ok",
                detail=f"{last_event:%Y-%m-%d %H:%M} UTC ({_age(now, last_event)})",
            )
        )
    last_write = None if sync is None else sync.last_written_at
    if sync is not None and (sync.failed or sync.failing):
        error = sync.failing_error or sync.failed_error or "see crm-health status"
        checks.append(
            Check(
                name="last write-back",
                status="warn",
                detail=f"{sync.failing} failing, {sync.failed} failed: {error}",
                action="see `crm-health status`; fix the cause, then `crm-health writeback retry`",
            )
        )
    elif last_write is None:
        checks.append(
            Check(
                name="last write-back",
                status="warn",
                detail="no health written to the CRM yet",
                action="run `crm-health backfill`, keep `crm-health serve` (or a worker) running",
            )
        )
    else:
        checks.append(
            Check(
                name="last write-back",
                status="ok",
                detail=f"{last_write:%Y-%m-%d %H:%M} UTC ({_age(now, last_write)})",
            )
        )
    return checks


async def check_connection(
    connection: Connection, sessions: SessionFactory, *, now: datetime
) -> ConnectionReport:
    """Every check of one connection; CRM calls are reads only."""
    checks: list[Check] = []
    connector = connection.connector
    if connector is None:
        checks.append(
            Check(
                name="credentials",
                status="fail",
                detail="no CRM credentials configured: nothing is read or written back",
                action="set the connection's access token or client credentials",
            )
        )
    else:
        access = await _access_checks(connector)
        checks.extend(access)
        if access[0].status == "ok":
            checks.append(await _fields_check(connector))
    checks.append(_mapping_check(connection))
    checks.extend(await _events_checks(connection, sessions, now=now))
    return ConnectionReport(connection=connection.name, crm=connection.crm, checks=checks)


async def run(
    connections: list[Connection], sessions: SessionFactory, *, now: datetime
) -> DoctorReport:
    """The checklist of every CRM connection, in order."""
    reports = [await check_connection(item, sessions, now=now) for item in connections]
    return DoctorReport(checked_at=now, connections=reports)


def table(report: DoctorReport) -> list[str]:
    """The report as aligned text: one row per check, what was found and what to do."""
    rows = [("connection", "check", "status", "found -> what to do")]
    for item in report.connections:
        for check in item.checks:
            found = check.detail + (f" -> {check.action}" if check.action else "")
            rows.append((item.connection, check.name, check.status, found))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]).rstrip() for row in rows
    ]
