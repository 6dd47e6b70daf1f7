"""Alerts over HTTP: list and read them (viewer), acknowledge, snooze and retry them (admin).
Every key sees only its own connection's alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from connector.bounds import Moment
from webhooks.alerts import manage
from webhooks.alerts.manage import AlertItem, AlertPage, AlertStatus
from webhooks.deps import AdminPrincipal, Offset, RuntimeDep, ViewerPrincipal, row_id
from webhooks.routes.responses import UNAUTHENTICATED, error_responses
from webhooks.store.alerts import AlertFilter

router = APIRouter(tags=["alerts"])


_VIEWER_ONLY = "The key's role may not read alerts (needs admin or viewer)."
_ADMIN_ONLY = "The key's role may not change alerts (needs admin)."
_NO_ALERT = "No such alert for the key's connection."

AlertId = Annotated[int, row_id("The alert's id.")]
Limit = Annotated[int, Query(ge=1, le=500)]


class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)


class SnoozeRequest(BaseModel):
    """Exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    until: Moment | None = Field(
        default=None, description="ISO 8601 time with offset, in the future, at most 90 days."
    )
    hours: float | None = Field(default=None, ge=1, le=2160, allow_inf_nan=False)


class Retried(BaseModel):
    retried: int


@router.get(
    "/api/v1/alerts",
    response_model=AlertPage,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: _VIEWER_ONLY,
            422: "A filter that is not valid: the message names it (since and until need an "
            "ISO 8601 time with offset).",
        }
    ),
    summary="Alerts of the key's connection, newest first",
)
async def list_alerts(
    *,
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    account: Annotated[str | None, Query(description="The account's CRM record id.")] = None,
    rule: Annotated[str | None, Query(description="A rule's name.")] = None,
    status: Annotated[AlertStatus | None, Query()] = None,
    since: Annotated[Moment | None, Query(description="Fired at or after.")] = None,
    until: Annotated[Moment | None, Query(description="Fired before.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlertPage:
    return await manage.list_alerts(
        runtime.sessions,
        where=AlertFilter(
            connection=principal.connection,
            account=account,
            rule=rule,
            status=status,
            since=since,
            until=until,
        ),
        limit=limit,
        offset=offset,
        now=datetime.now(UTC),
    )


@router.get(
    "/api/v1/alerts/{alert_id}",
    response_model=AlertItem,
    responses=error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 404: _NO_ALERT}),
    summary="One alert with its deliveries",
)
async def get_alert(
    runtime: RuntimeDep, principal: ViewerPrincipal, alert_id: AlertId
) -> AlertItem:
    return await manage.get_alert(
        runtime.sessions, connection=principal.connection, alert_id=alert_id, now=datetime.now(UTC)
    )


@router.post(
    "/api/v1/alerts/{alert_id}/acknowledge",
    response_model=AlertItem,
    responses=error_responses(
        {401: UNAUTHENTICATED, 403: _ADMIN_ONLY, 404: _NO_ALERT, 422: "A note over 1,000 chars."}
    ),
    summary="Someone is on it: the alert stops reading as open",
)
async def acknowledge(
    runtime: RuntimeDep,
    principal: AdminPrincipal,
    alert_id: AlertId,
    body: Annotated[AcknowledgeRequest | None, Body()] = None,
) -> AlertItem:
    return await manage.acknowledge(
        runtime.sessions,
        connection=principal.connection,
        alert_id=alert_id,
        by=principal.name,
        note=None if body is None else body.note,
        now=datetime.now(UTC),
    )


@router.post(
    "/api/v1/alerts/{alert_id}/snooze",
    response_model=AlertItem,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: _ADMIN_ONLY,
            404: _NO_ALERT,
            409: "The alert is resolved.",
            422: "Not exactly one of until (future, at most 90 days) or hours (1 to 2160).",
        }
    ),
    summary="Quiet an alert until a time or for so many hours",
)
async def snooze(
    runtime: RuntimeDep, principal: AdminPrincipal, alert_id: AlertId, body: SnoozeRequest
) -> AlertItem:
    return await manage.snooze(
        runtime.sessions,
        connection=principal.connection,
        alert_id=alert_id,
        until=body.until,
        hours=body.hours,
        now=datetime.now(UTC),
    )


@router.post(
    "/api/v1/alerts/{alert_id}/retry",
    response_model=Retried,
    responses=error_responses({401: UNAUTHENTICATED, 403: _ADMIN_ONLY, 404: _NO_ALERT}),
    summary="Send the alert's failed deliveries again",
)
async def retry(runtime: RuntimeDep, principal: AdminPrincipal, alert_id: AlertId) -> Retried:
    retried = await manage.retry(
        runtime.sessions, connection=principal.connection, alert_id=alert_id, now=datetime.now(UTC)
    )
    return Retried(retried=retried)


@router.get(
    "/api/v1/accounts/{account_id}/alerts",
    response_model=AlertPage,
    responses=error_responses(
        {401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 404: "No such account for the key's connection."}
    ),
    summary="One account's alert history, newest first",
)
async def account_alerts(
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    account_id: Annotated[str, Path(description="The account's CRM record id.")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlertPage:
    return await manage.account_alerts(
        runtime.sessions,
        connection=principal.connection,
        record_id=account_id,
        limit=limit,
        offset=offset,
        now=datetime.now(UTC),
    )
