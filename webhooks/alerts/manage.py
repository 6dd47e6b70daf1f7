"""Alerts as the API shows them, and what people do with them: list, show, acknowledge,
snooze, send failed deliveries again. Every call is scoped to one connection: an alert of
another connection does not exist here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict

from webhooks.alerts.rules import QUIET_BECAUSE
from webhooks.errors import Conflict, InvalidFields, NotFound
from webhooks.store import alerts
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import Account, Alert, AlertDelivery, AlertReason

log = structlog.get_logger(__name__)

AlertStatus = Literal["open", "acknowledged", "snoozed", "resolved"]

MAX_SNOOZE = timedelta(days=90)


class AccountRef(BaseModel):
    id: str  # the CRM record id
    name: str | None


class DeliveryItem(BaseModel):
    # Read from the stored AlertDelivery row, whose columns carry these names.
    model_config = ConfigDict(from_attributes=True)

    channel: str
    kind: str  # fired, escalated, recovered
    status: str  # pending, processing, sent, failed
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    # When it is (or was) due: the end of a digest's period, the next try, or for one held
    # over its channel's daily limit (`overflow`), the next UTC midnight.
    available_at: datetime
    # Held for the channel's overflow digest: the channel had used its daily limit.
    overflow: bool


class ReasonItem(BaseModel):
    """One condition of the alert: open while `resolved_at` is null."""

    # Read from the stored AlertReason row, whose columns carry these names.
    model_config = ConfigDict(from_attributes=True)

    rule: str
    key: str
    severity: str
    title: str
    reason: str
    opened_at: datetime
    resolved_at: datetime | None


class AlertItem(BaseModel):
    """One alert episode of an account: `rule`, `key`, `title`, `reason` and `severity` are
    those of its most severe reason; `reasons` lists every condition it has had."""

    id: int
    account: AccountRef
    rule: str
    key: str
    status: AlertStatus
    severity: str
    title: str
    reason: str
    reasons: list[ReasonItem]
    score: int | None
    band: str
    previous_score: int | None
    previous_band: str | None
    trend_30d: int | None
    drivers: list[str]
    fired_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledged_note: str | None
    snoozed_until: datetime | None
    # live: raised by events newer than the age limit; history, backfill, first_load,
    # configuration: recorded without telling anyone (`quiet` says why).
    cause: str
    quiet: str | None
    # True once one of its deliveries was sent. False while every delivery is still owed
    # (a digest, a retry, the overflow digest) or failed, when its rule names no channel, and
    # when the condition came back within the rule's cooldown (nobody is told again).
    notified: bool
    deliveries: list[DeliveryItem]


class AlertPage(BaseModel):
    items: list[AlertItem]
    total: int
    limit: int
    offset: int


def status_at(alert: Alert, now: datetime) -> AlertStatus:
    """The status as people read it: a snooze that has run out is open again."""
    if alert.status == alerts.SNOOZED and (
        alert.snoozed_until is None or alert.snoozed_until <= now
    ):
        return "open"
    status: AlertStatus = alert.status  # type: ignore[assignment]
    return status


def _item(
    alert: Alert,
    account: Account,
    deliveries: Sequence[AlertDelivery],
    reasons: Sequence[AlertReason],
    now: datetime,
) -> AlertItem:
    status = status_at(alert, now)
    return AlertItem(
        id=alert.id,
        account=AccountRef(id=account.crm_id, name=account.name),
        rule=alert.rule,
        key=alert.key,
        status=status,
        severity=alert.severity,
        title=alert.title,
        reason=alert.reason,
        reasons=[ReasonItem.model_validate(reason) for reason in reasons],
        cause=alert.cause,
        quiet=QUIET_BECAUSE.get(alert.cause),
        score=alert.score,
        band=alert.band,
        previous_score=alert.previous_score,
        previous_band=alert.previous_band,
        trend_30d=alert.trend_30d,
        drivers=list(alert.drivers or []),
        fired_at=alert.fired_at,
        resolved_at=alert.resolved_at,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
        acknowledged_note=alert.acknowledged_note,
        snoozed_until=alert.snoozed_until if status == "snoozed" else None,
        notified=alert.notified,
        deliveries=[DeliveryItem.model_validate(delivery) for delivery in deliveries],
    )


async def _page(
    session: AsyncSession, *, where: alerts.AlertFilter, limit: int, offset: int, now: datetime
) -> AlertPage:
    rows, total = await alerts.list_alerts(
        session, where=where, now=now, limit=limit, offset=offset
    )
    ids = [alert.id for alert, _ in rows]
    found = await alerts.deliveries(session, alert_ids=ids)
    reasons = await alerts.reasons_of(session, alert_ids=ids)
    return AlertPage(
        items=[
            _item(alert, account, found[alert.id], reasons[alert.id], now)
            for alert, account in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


def _check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise InvalidFields("until: must be later than since")


async def list_alerts(
    sessions: SessionFactory,
    *,
    where: alerts.AlertFilter,
    limit: int,
    offset: int,
    now: datetime,
) -> AlertPage:
    """The connection's alerts matching `where`, newest first."""
    _check_window(where.since, where.until)
    async with sessions() as session:
        return await _page(session, where=where, limit=limit, offset=offset, now=now)


async def account_alerts(
    sessions: SessionFactory,
    *,
    connection: str,
    record_id: str,
    limit: int,
    offset: int,
    now: datetime,
) -> AlertPage:
    """One account's alert history, newest first; NotFound for an account we do not know."""
    async with sessions() as session:
        if await alerts.find_account(session, connection=connection, crm_id=record_id) is None:
            raise NotFound(f"no account {record_id!r}")
        where = alerts.AlertFilter(connection=connection, account=record_id)
        return await _page(session, where=where, limit=limit, offset=offset, now=now)


async def _scoped(
    session: AsyncSession, *, connection: str, alert_id: int
) -> tuple[Alert, Account]:
    found = await alerts.get(session, alert_id=alert_id)
    # Another connection's alert reads exactly like a missing one: no existence leaks.
    if found is None or found[0].connection != connection:
        raise NotFound(f"no alert {alert_id}")
    return found


async def get_alert(
    sessions: SessionFactory, *, connection: str, alert_id: int, now: datetime
) -> AlertItem:
    async with sessions() as session:
        alert, account = await _scoped(session, connection=connection, alert_id=alert_id)
        deliveries = await alerts.deliveries(session, alert_ids=[alert.id])
        reasons = await alerts.reasons_of(session, alert_ids=[alert.id])
        return _item(alert, account, deliveries[alert.id], reasons[alert.id], now)


async def acknowledge(
    sessions: SessionFactory,
    *,
    connection: str,
    alert_id: int,
    by: str,
    note: str | None,
    now: datetime,
) -> AlertItem:
    """Someone is on it: the alert stops reading as open (a resolved one stays resolved)."""
    async with sessions() as session, session.begin():
        alert, _ = await _scoped(session, connection=connection, alert_id=alert_id)
        await alerts.acknowledge(session, alert=alert, by=by, note=note, now=now)
    log.info("alert_acknowledged", alert_id=alert_id, connection=connection, by=by)
    return await get_alert(sessions, connection=connection, alert_id=alert_id, now=now)


async def snooze(
    sessions: SessionFactory,
    *,
    connection: str,
    alert_id: int,
    until: datetime | None,
    hours: float | None,
    now: datetime,
) -> AlertItem:
    """Quiet the alert until a time (or for so many hours); it reads as open again after."""
    if (until is None) == (hours is None):
        raise InvalidFields(
            "until, hours: give exactly one (until: an ISO 8601 time with offset; hours: 1 to 2160)"
        )
    if until is None:
        assert hours is not None
        until = now + timedelta(hours=hours)
    elif until <= now:
        raise InvalidFields("until: must be in the future")
    elif until - now > MAX_SNOOZE:
        raise InvalidFields("until: at most 90 days ahead")
    async with sessions() as session, session.begin():
        alert, _ = await _scoped(session, connection=connection, alert_id=alert_id)
        if alert.status == alerts.RESOLVED:
            raise Conflict(f"alert {alert_id} is resolved: there is nothing to snooze")
        await alerts.snooze(session, alert=alert, until=until)
    log.info("alert_snoozed", alert_id=alert_id, connection=connection, until=until.isoformat())
    return await get_alert(sessions, connection=connection, alert_id=alert_id, now=now)


async def retry(sessions: SessionFactory, *, connection: str, alert_id: int, now: datetime) -> int:
    """Make the alert's failed deliveries pending again, with fresh attempts; how many."""
    async with sessions() as session, session.begin():
        await _scoped(session, connection=connection, alert_id=alert_id)
        retried = await alerts.retry_failed(session, alert_id=alert_id, now=now)
    log.info("alert_deliveries_retried", alert_id=alert_id, connection=connection, count=retried)
    return retried
