"""Alerts repository: alert episodes, their delivery outbox, and what people do with them
(acknowledge, snooze, retry)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store import leases
from webhooks.store.dialect import upsert_insert
from webhooks.store.leases import ERROR_LIMIT
from webhooks.store.models import (
    Account,
    Alert,
    AlertChannelBudget,
    AlertDelivery,
    AlertReason,
    core_table,
)

OPEN, ACKNOWLEDGED, SNOOZED, RESOLVED = "open", "acknowledged", "snoozed", "resolved"
PENDING, PROCESSING, SENT, FAILED = "pending", "processing", "sent", "failed"


async def recent(
    session: AsyncSession, *, account_ids: Collection[int], resolved_since: datetime
) -> list[Alert]:
    """The accounts' alerts that are not resolved, or were resolved since `resolved_since`
    (the longest cooldown): all a rescore needs to decide what to raise or resolve."""
    if not account_ids:
        return []
    rows = await session.execute(
        select(Alert)
        .where(
            Alert.account_id.in_(list(account_ids)),
            or_(Alert.status != RESOLVED, Alert.resolved_at >= resolved_since),
        )
        .order_by(Alert.id)
    )
    return list(rows.scalars())


_Row = TypeVar("_Row", AlertReason, AlertDelivery)


async def _rows_by_alert(
    session: AsyncSession, model: type[_Row], alert_ids: Collection[int]
) -> dict[int, list[_Row]]:
    """{alert id: its rows of `model`, oldest first}, every given id present."""
    found: dict[int, list[_Row]] = {alert_id: [] for alert_id in alert_ids}
    if not alert_ids:
        return found
    rows = await session.execute(
        select(model).where(model.alert_id.in_(list(alert_ids))).order_by(model.id)
    )
    for row in rows.scalars():
        found[row.alert_id].append(row)
    return found


async def reasons_of(
    session: AsyncSession, *, alert_ids: Collection[int]
) -> dict[int, list[AlertReason]]:
    """{alert id: its reasons, oldest first}."""
    return await _rows_by_alert(session, AlertReason, alert_ids)


async def insert_new(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new alerts in one plain executemany: after a configuration change a recompute
    raises alerts for thousands of accounts at once, and asking for the ids back in order
    made SQLite insert them one statement at a time."""
    if rows:
        await session.execute(insert(core_table(Alert)), list(rows))


async def insert_reasons(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(core_table(AlertReason)), list(rows))


async def ids_fired(
    session: AsyncSession, *, account_ids: Collection[int], fired_at: datetime
) -> dict[int, int]:
    """{account id: id} of the alerts these accounts raised at `fired_at` (one each)."""
    if not account_ids:
        return {}
    rows = await session.execute(
        select(Alert.account_id, Alert.id).where(
            Alert.account_id.in_(list(account_ids)), Alert.fired_at == fired_at
        )
    )
    return {row[0]: row[1] for row in rows}


async def flush(session: AsyncSession) -> None:
    await session.flush()


def queue(
    session: AsyncSession,
    *,
    alert_id: int,
    kind: str,
    channel: str,
    available_at: datetime,
    now: datetime,
    error: str | None = None,
) -> None:
    """Owe one message to a channel; `error` records one that can never be sent (an unknown
    channel), failed at once so people see it."""
    session.add(
        AlertDelivery(
            alert_id=alert_id,
            channel=channel,
            kind=kind,
            status=PENDING if error is None else FAILED,
            attempts=0,
            created_at=now,
            available_at=available_at,
            last_error=error,
        )
    )


@dataclass(frozen=True, kw_only=True)
class DueDelivery:
    id: int
    alert_id: int
    channel: str
    kind: str
    attempts: int
    # Held back over its channel's daily limit: part of the channel's overflow digest.
    overflow: bool = False


async def claim_due(
    session: AsyncSession, *, now: datetime, limit: int, lease_seconds: float
) -> list[DueDelivery]:
    return await leases.claim_in_order(
        session,
        AlertDelivery,
        DueDelivery,
        idle=PENDING,
        busy=PROCESSING,
        now=now,
        limit=limit,
        lease_seconds=lease_seconds,
    )


async def alerts_with_accounts(
    session: AsyncSession, *, alert_ids: Collection[int]
) -> dict[int, tuple[Alert, Account]]:
    if not alert_ids:
        return {}
    rows = await session.execute(
        select(Alert, Account)
        .join(Account, Account.id == Alert.account_id)
        .where(Alert.id.in_(list(alert_ids)))
    )
    return {alert.id: (alert, account) for alert, account in rows}


async def mark_sent(session: AsyncSession, *, delivery_ids: Sequence[int], now: datetime) -> None:
    """The deliveries were sent; their alerts are notified from now on (in the same
    transaction: an alert reads as notified exactly when one of its deliveries was sent)."""
    if delivery_ids:
        await session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.id.in_(delivery_ids))
            .values(status=SENT, sent_at=now, lease_until=None, last_error=None)
        )
        told = select(AlertDelivery.alert_id).where(AlertDelivery.id.in_(delivery_ids))
        await session.execute(
            update(Alert)
            .where(Alert.id.in_(told), Alert.notified.is_(False))
            .values(notified=True)
            .execution_options(synchronize_session=False)
        )


async def still_owed(session: AsyncSession, *, alert_ids: Collection[int]) -> set[int]:
    """Those of the alerts that have a delivery still to be sent (waiting for a digest or the
    overflow digest, or retrying): people are going to be told about them."""
    if not alert_ids:
        return set()
    rows = await session.execute(
        select(AlertDelivery.alert_id)
        .where(
            AlertDelivery.alert_id.in_(list(alert_ids)),
            AlertDelivery.status.in_((PENDING, PROCESSING)),
        )
        .distinct()
    )
    return set(rows.scalars())


# --- the daily limit of each channel ------------------------------------------------------------


async def take_leave(
    session: AsyncSession, *, channel: str, day: date, wanted: int, forced: int, limit: int
) -> int:
    """Leave for up to `wanted` messages of `channel` on UTC `day` within `limit`, plus
    `forced` ones sent whatever the count (the overflow digest); returns how many of `wanted`
    may be sent. Counted in a row per channel and day that this transaction locks: of two
    workers claiming at once, the second waits for the first to commit and then sees its
    count (counting sent rows instead would miss the messages the other worker has claimed
    but not yet sent: the claims themselves take turns only until each commits)."""
    await session.execute(
        upsert_insert(session, AlertChannelBudget)
        .values(channel=channel, day=day, sent=0)
        .on_conflict_do_nothing(index_elements=["channel", "day"])
    )
    used = (
        await session.execute(
            select(AlertChannelBudget.sent)
            .where(AlertChannelBudget.channel == channel, AlertChannelBudget.day == day)
            .with_for_update()
        )
    ).scalar_one()
    granted = max(0, min(wanted, limit - used))
    if granted or forced:
        await session.execute(
            update(AlertChannelBudget)
            .where(AlertChannelBudget.channel == channel, AlertChannelBudget.day == day)
            .values(sent=AlertChannelBudget.sent + granted + forced)
        )
    return granted


async def give_back_leave(session: AsyncSession, *, channel: str, day: date, count: int) -> None:
    """Messages given leave on `day` that were not sent after all (their channel failed):
    the limit counts messages sent, so they may be sent again later that day."""
    if count:
        await session.execute(
            update(AlertChannelBudget)
            .where(AlertChannelBudget.channel == channel, AlertChannelBudget.day == day)
            .values(
                sent=case(
                    (AlertChannelBudget.sent > count, AlertChannelBudget.sent - count), else_=0
                )
            )
        )


async def forget_leave_before(session: AsyncSession, *, day: date) -> None:
    """Only today's counts are ever read: earlier days' rows go."""
    await session.execute(delete(AlertChannelBudget).where(AlertChannelBudget.day < day))


async def hold_for_overflow(
    session: AsyncSession, *, delivery_ids: Collection[int], until: datetime
) -> None:
    """Claimed deliveries over their channel's daily limit: never dropped, they wait until
    `until` (the next UTC midnight) and go out together as the channel's overflow digest."""
    if delivery_ids:
        await session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.id.in_(list(delivery_ids)))
            .values(status=PENDING, overflow=True, available_at=until, lease_until=None)
        )


async def mark_failed_attempt(
    session: AsyncSession,
    *,
    delivery_id: int,
    error: str,
    retry_at: datetime | None,
) -> None:
    """One try failed: try again at `retry_at`, or (None) never again unless someone asks."""
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id)
        .values(
            status=FAILED if retry_at is None else PENDING,
            attempts=AlertDelivery.attempts + 1,
            available_at=AlertDelivery.available_at if retry_at is None else retry_at,
            lease_until=None,
            last_error=error[:ERROR_LIMIT],
        )
    )


async def retry_failed(session: AsyncSession, *, alert_id: int, now: datetime) -> int:
    """Send an alert's failed deliveries again, with fresh attempts."""
    result = await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.alert_id == alert_id, AlertDelivery.status == FAILED)
        .values(status=PENDING, attempts=0, available_at=now, lease_until=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- reading and acting on alerts -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AlertFilter:
    connection: str
    account: str | None = None  # CRM record id
    rule: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_alerts(
    session: AsyncSession, *, where: AlertFilter, now: datetime, limit: int, offset: int
) -> tuple[list[tuple[Alert, Account]], int]:
    """Newest first. A snooze that has run out reads as open again."""
    query = (
        select(Alert, Account)
        .join(Account, Account.id == Alert.account_id)
        .where(Alert.connection == where.connection)
    )
    if where.account is not None:
        query = query.where(Account.crm_id == where.account)
    if where.rule is not None:
        # Any of its reasons, not only the one it is titled by.
        query = query.where(
            select(AlertReason.id)
            .where(AlertReason.alert_id == Alert.id, AlertReason.rule == where.rule)
            .exists()
        )
    if where.status == OPEN:
        query = query.where(
            or_(
                Alert.status == OPEN,
                (Alert.status == SNOOZED) & (Alert.snoozed_until <= now),
            )
        )
    elif where.status == SNOOZED:
        query = query.where(Alert.status == SNOOZED, Alert.snoozed_until > now)
    elif where.status is not None:
        query = query.where(Alert.status == where.status)
    if where.since is not None:
        query = query.where(Alert.fired_at >= where.since)
    if where.until is not None:
        query = query.where(Alert.fired_at < where.until)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(Alert.fired_at.desc(), Alert.id.desc()).limit(limit).offset(offset)
    )
    return [(alert, account) for alert, account in rows], int(total)


async def find_account(session: AsyncSession, *, connection: str, crm_id: str) -> Account | None:
    """The connection's account with this CRM record id (deleted ones too: their history stays)."""
    return (
        await session.execute(
            select(Account).where(Account.connection == connection, Account.crm_id == crm_id)
        )
    ).scalar_one_or_none()


async def get(session: AsyncSession, *, alert_id: int) -> tuple[Alert, Account] | None:
    row = (
        await session.execute(
            select(Alert, Account)
            .join(Account, Account.id == Alert.account_id)
            .where(Alert.id == alert_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def deliveries(
    session: AsyncSession, *, alert_ids: Collection[int]
) -> dict[int, list[AlertDelivery]]:
    """{alert id: its deliveries, oldest first}."""
    return await _rows_by_alert(session, AlertDelivery, alert_ids)


async def acknowledge(
    session: AsyncSession, *, alert: Alert, by: str, note: str | None, now: datetime
) -> None:
    values: dict[str, Any] = {
        "acknowledged_at": now,
        "acknowledged_by": by[:200],
        "acknowledged_note": note,
    }
    if alert.status != RESOLVED:
        values |= {"status": ACKNOWLEDGED, "snoozed_until": None}
    await session.execute(update(Alert).where(Alert.id == alert.id).values(**values))


async def snooze(session: AsyncSession, *, alert: Alert, until: datetime) -> None:
    await session.execute(
        update(Alert).where(Alert.id == alert.id).values(status=SNOOZED, snoozed_until=until)
    )


async def resolve_for_accounts(
    session: AsyncSession, *, account_ids: Collection[int], now: datetime
) -> int:
    """Resolve, telling no one, the alerts of accounts deleted from the CRM: they are no longer
    rescored, so nothing else would ever end them."""
    if not account_ids:
        return 0
    ended = select(Alert.id).where(
        Alert.account_id.in_(list(account_ids)), Alert.status != RESOLVED
    )
    await session.execute(
        update(AlertReason)
        .where(AlertReason.alert_id.in_(ended), AlertReason.resolved_at.is_(None))
        .values(resolved_at=now)
    )
    result = await session.execute(
        update(Alert)
        .where(Alert.account_id.in_(list(account_ids)), Alert.status != RESOLVED)
        .values(status=RESOLVED, resolved_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def next_digest_time(now: datetime, digest: str) -> datetime:
    """When a digest channel's period ends: the next full hour, or the next midnight (UTC)."""
    if digest == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if digest == "daily":
        return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return now
