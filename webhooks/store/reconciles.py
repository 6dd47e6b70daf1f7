"""Reconcile queries: the write-back rows a reconcile walks, and the schedules of the worker's
periodic jobs, one row each (its lease, cursor and counts): the reconcile (SCHEDULED) and
retention (webhooks.retention)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.dialect import upsert_insert
from webhooks.store.models import Account, ReconcileSchedule, WritebackItem

SCHEDULED = "scheduled"
IDLE, BUSY = "idle", "busy"


@dataclass(frozen=True, kw_only=True)
class OwedRow:
    """What the database says one account's CRM record should carry."""

    account_id: int
    record_id: str
    fields: dict[str, Any]


async def owed_after(
    session: AsyncSession, *, connection: str, after_account_id: int, limit: int
) -> list[OwedRow]:
    """The next `limit` write-back rows of the connection's live accounts (any status), in
    account id order after `after_account_id`. An account the CRM deleted, or that a
    write-back found missing from it, is not asked for."""
    rows = await session.execute(
        select(WritebackItem.account_id, WritebackItem.record_id, WritebackItem.fields)
        .join(Account, Account.id == WritebackItem.account_id)
        .where(
            WritebackItem.connection == connection,
            WritebackItem.account_id > after_account_id,
            Account.deleted_at.is_(None),
            Account.not_found_at.is_(None),
        )
        .order_by(WritebackItem.account_id)
        .limit(limit)
    )
    return [OwedRow(account_id=row[0], record_id=row[1], fields=row[2]) for row in rows]


async def count_owed(session: AsyncSession, *, connection: str) -> int:
    """How many rows `owed_after` walks for the connection (a progress bar's total)."""
    found = await session.scalar(
        select(func.count())
        .select_from(WritebackItem)
        .join(Account, Account.id == WritebackItem.account_id)
        .where(
            WritebackItem.connection == connection,
            Account.deleted_at.is_(None),
            Account.not_found_at.is_(None),
        )
    )
    return int(found or 0)


# --- the schedule --------------------------------------------------------------------------


async def ensure_schedule(session: AsyncSession, *, name: str, now: datetime) -> None:
    """Create the named schedule's row once (by whichever worker comes first); its first run is
    due one interval after that."""
    insert = upsert_insert(session, ReconcileSchedule)
    await session.execute(
        insert.values(
            name=name, status=IDLE, available_at=now, after_account_id=0, counts={},
            finished_at=now,
        ).on_conflict_do_nothing(index_elements=["name"])
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Step:
    """The schedule as a worker claimed it for one step; `lease_until` identifies the claim."""

    name: str
    lease_until: datetime
    started_at: datetime | None
    connection: str | None
    after_account_id: int
    counts: dict[str, Any]


async def claim_step(
    session: AsyncSession, *, name: str, now: datetime, interval: timedelta, lease_seconds: float
) -> Step | None:
    """Lease the schedule for one step when a run is under way or due (the last one ended an
    interval ago), and no other worker holds it. One UPDATE: of two workers asking at once,
    only one matches."""
    lease_until = now + timedelta(seconds=lease_seconds)
    table = ReconcileSchedule
    result = await session.execute(
        update(table)
        .where(
            table.name == name,
            or_(table.status == IDLE, table.lease_until < now),
            table.available_at <= now,
            or_(table.started_at.is_not(None), table.finished_at <= now - interval),
        )
        .values(status=BUSY, lease_until=lease_until)
        .returning(table.started_at, table.connection, table.after_account_id, table.counts)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    if row is None:
        return None
    return Step(
        name=name,
        lease_until=lease_until,
        started_at=row[0],
        connection=row[1],
        after_account_id=row[2],
        counts=dict(row[3] or {}),
    )


async def save_step(
    session: AsyncSession,
    *,
    step: Step,
    started_at: datetime,
    connection: str,
    after_account_id: int,
    counts: dict[str, Any],
    now: datetime,
) -> bool:
    """Record how far the run got and release the lease; False when the lease had run out and
    another worker took the schedule (its progress stands)."""
    return await _release(
        session,
        step=step,
        started_at=started_at,
        connection=connection,
        after_account_id=after_account_id,
        counts=counts,
        available_at=now,
        last_error=None,
    )


async def finish_run(
    session: AsyncSession, *, step: Step, counts: dict[str, Any], now: datetime
) -> bool:
    """End the run: its counts become the last run's, and the next is due an interval on."""
    return await _release(
        session,
        step=step,
        started_at=None,
        connection=None,
        after_account_id=0,
        counts={},
        available_at=now,
        last_error=None,
        finished_at=now,
        last_counts=counts,
    )


async def fail_step(session: AsyncSession, *, step: Step, error: str, retry_at: datetime) -> bool:
    """Release the lease without progress; the run resumes where it was at `retry_at`."""
    return await _release(
        session,
        step=step,
        started_at=step.started_at,
        connection=step.connection,
        after_account_id=step.after_account_id,
        counts=step.counts,
        available_at=retry_at,
        last_error=error[:2000],
    )


async def _release(session: AsyncSession, *, step: Step, **values: Any) -> bool:
    table = ReconcileSchedule
    result = await session.execute(
        update(table)
        .where(
            table.name == step.name,
            table.status == BUSY,
            table.lease_until == step.lease_until,
        )
        .values(status=IDLE, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def get_schedule(session: AsyncSession, *, name: str) -> ReconcileSchedule | None:
    return await session.get(ReconcileSchedule, name, populate_existing=True)
