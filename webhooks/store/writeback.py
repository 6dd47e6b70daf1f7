"""Write-back outbox repository: the health fields owed to the CRM, one row per account."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store import leases
from webhooks.store.models import Account, WritebackItem, core_table

PENDING, SENDING, DONE, FAILED = "pending", "sending", "done", "failed"


def fields_fingerprint(fields: Mapping[str, Any], *, ignore: Collection[str]) -> str:
    stable = {name: value for name, value in fields.items() if name not in ignore}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Owed:
    """Health field values one account's CRM record should carry."""

    account_id: int
    connection: str
    record_id: str
    fields: dict[str, Any]
    fingerprint: str


async def stage(session: AsyncSession, *, owed: Sequence[Owed], now: datetime) -> int:
    """Queue new field values unless the same values are already written or queued.

    Returns how many accounts got new values queued.
    """
    if not owed:
        return 0
    current = {
        row[0]: row[1]
        for row in await session.execute(
            select(WritebackItem.account_id, WritebackItem.fields_hash)
            .where(WritebackItem.account_id.in_([item.account_id for item in owed]))
            .order_by(WritebackItem.account_id)
            .with_for_update()
        )
    }
    new = [item for item in owed if item.account_id not in current]
    changed = [
        item
        for item in owed
        if item.account_id in current and current[item.account_id] != item.fingerprint
    ]
    if new:
        await session.execute(
            insert(core_table(WritebackItem)),
            [
                {
                    "account_id": item.account_id,
                    "connection": item.connection,
                    "record_id": item.record_id,
                    "fields": item.fields,
                    "fields_hash": item.fingerprint,
                    "version": 1,
                    "status": PENDING,
                    "attempts": 0,
                    "available_at": now,
                    "pending_since": now,
                }
                for item in new
            ],
        )
    if changed:
        # While an older version is in flight the row stays SENDING, so no second sender races
        # it (which could land the older values last); settling that send re-queues the new one.
        # Core table, not the ORM entity: an executemany UPDATE with its own WHERE.
        table = core_table(WritebackItem)
        await session.execute(
            update(table)
            .where(table.c.account_id == bindparam("owed_account"))
            .values(
                fields=bindparam("owed_fields"),
                fields_hash=bindparam("owed_hash"),
                version=table.c.version + 1,
                attempts=0,
                last_error=None,
                # New values do not jump a wait the CRM asked for (Retry-After, a paused
                # allowance) or a backoff under way: they go out when the old ones would have.
                available_at=case((table.c.available_at > now, table.c.available_at), else_=now),
                status=case((table.c.status == SENDING, SENDING), else_=PENDING),
                # Values waiting already keep their age: the CRM has been behind since then.
                pending_since=func.coalesce(table.c.pending_since, now),
            ),
            [
                {
                    "owed_account": item.account_id,
                    "owed_fields": item.fields,
                    "owed_hash": item.fingerprint,
                }
                for item in changed
            ],
        )
    return len(new) + len(changed)


async def claim_due(
    session: AsyncSession,
    *,
    connections: Collection[str],
    now: datetime,
    limit: int,
    lease_seconds: float,
) -> list[Any]:
    """Due rows as (connection, account_id, version, record_id, fields, attempts)."""
    return await leases.claim(
        session,
        WritebackItem,
        idle=PENDING,
        busy=SENDING,
        now=now,
        limit=limit,
        lease_seconds=lease_seconds,
        order_by=WritebackItem.available_at,
        where=WritebackItem.connection.in_(connections),
        returning=(
            WritebackItem.connection, WritebackItem.account_id, WritebackItem.version,
            WritebackItem.record_id, WritebackItem.fields, WritebackItem.attempts,
        ),
    )  # fmt: skip


async def mark_written(
    session: AsyncSession, *, account_id: int, version: int, now: datetime
) -> None:
    """Settle the version that was sent; a newer version staged meanwhile goes back to pending."""
    await _requeue_superseded(session, account_id=account_id, version=version, available_at=now)
    await session.execute(
        update(WritebackItem)
        .where(
            WritebackItem.account_id == account_id,
            WritebackItem.version == version,
            WritebackItem.status == SENDING,
        )
        .values(
            status=DONE,
            written_version=version,
            written_at=now,
            lease_until=None,
            last_error=None,
            pending_since=None,
        )
    )


async def mark_write_failed(
    session: AsyncSession,
    *,
    account_id: int,
    version: int,
    error: str,
    now: datetime,
    retry_in_seconds: float,
    refused: bool = False,
) -> str:
    """Count a failed attempt. The row waits `retry_in_seconds` for the next, however many
    failed before: an outage ends, and the values must land when it does. Only a `refused`
    row (the CRM refused this record's values, which sending them again cannot change) ends
    failed, for a person to look at; a newer version staged later is sent as usual."""
    retry_at = now + timedelta(seconds=retry_in_seconds)
    await _requeue_superseded(
        session, account_id=account_id, version=version, available_at=retry_at
    )
    row = await session.get(WritebackItem, account_id, with_for_update=True, populate_existing=True)
    if row is None or row.version != version or row.status != SENDING:
        return PENDING
    leases.count_failed_try(
        row, error=error, retry_at=None if refused else retry_at, idle=PENDING, gave_up=FAILED
    )
    return row.status


async def defer(
    session: AsyncSession,
    *,
    account_ids: Collection[int],
    until: datetime,
    reason: str,
    count_attempt: bool = False,
) -> None:
    """Put claimed rows back to pending until `until`, whatever version each holds now.

    Without `count_attempt`, for a CRM that refused to take calls for a while (a used-up daily
    allowance): nothing was wrong with the rows, so a long pause never counts against them.
    With it, for rows sent into an outage: the attempt shows they are failing, but they wait
    for the connection's backoff and are never failed for it. One statement for the whole
    chunk, however long the outage: a probe every few minutes stays cheap.
    """
    if not account_ids:
        return
    # Locked in account id order first, as `stage` locks them: no deadlock with a stager.
    await session.execute(
        select(WritebackItem.account_id)
        .where(WritebackItem.account_id.in_(account_ids))
        .order_by(WritebackItem.account_id)
        .with_for_update()
    )
    await session.execute(
        update(WritebackItem)
        .where(WritebackItem.account_id.in_(account_ids), WritebackItem.status == SENDING)
        .values(
            status=PENDING,
            available_at=until,
            lease_until=None,
            last_error=reason[: leases.ERROR_LIMIT],
            attempts=WritebackItem.attempts + (1 if count_attempt else 0),
        )
        .execution_options(synchronize_session=False)
    )


async def _requeue_superseded(
    session: AsyncSession, *, account_id: int, version: int, available_at: datetime
) -> None:
    """A newer version staged while `version` was in flight goes back to pending, due at
    `available_at` (no earlier than the CRM allowed after a failed send).

    The row is locked first. Without the lock, a `stage` committed between this UPDATE (which
    then matches nothing, so locks nothing) and the caller's settling UPDATE (which no longer
    matches the sent version) left the row SENDING until its lease ran out."""
    await session.execute(
        select(WritebackItem.account_id)
        .where(WritebackItem.account_id == account_id)
        .with_for_update()
    )
    await session.execute(
        update(WritebackItem)
        .where(
            WritebackItem.account_id == account_id,
            WritebackItem.version != version,
            WritebackItem.status == SENDING,
        )
        .values(status=PENDING, available_at=available_at, lease_until=None)
    )


async def get_item(session: AsyncSession, *, account_id: int) -> WritebackItem | None:
    return await session.get(WritebackItem, account_id)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(WritebackItem.status, func.count()).group_by(WritebackItem.status)
    )
    return {row[0]: row[1] for row in rows}


def _due_now(now: datetime) -> dict[str, Any]:
    """The values that send a row again on the next pass, with fresh attempts."""
    return {"attempts": 0, "available_at": now, "last_error": None, "lease_until": None}


async def resend(session: AsyncSession, *, account_ids: Collection[int], now: datetime) -> int:
    """Queue the values owed to these accounts again, due now with fresh attempts: the CRM was
    found holding something else (an outage, an edit by hand, a restored backup). A row being
    sent is left to its sender, whose values are the ones owed. Returns how many were queued."""
    if not account_ids:
        return 0
    result = await session.execute(
        update(WritebackItem)
        .where(WritebackItem.account_id.in_(account_ids), WritebackItem.status != SENDING)
        .values(
            status=PENDING,
            pending_since=func.coalesce(WritebackItem.pending_since, now),
            **_due_now(now),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# -- sync status and retry (crm-health status, /metrics, GET /api/v1/sync) ---------------------

# The statuses of rows whose values the CRM does not have yet, or refused.
_UNWRITTEN = (PENDING, SENDING, FAILED)


@dataclass(frozen=True, kw_only=True)
class ConnectionSync:
    """One connection's write-backs as a count per state; `pending` counts every row owed and
    not written yet (waiting or being sent), `failing` those of them whose last send failed."""

    connection: str
    pending: int = 0
    sending: int = 0
    failing: int = 0
    failed: int = 0
    oldest_pending_since: datetime | None = None
    last_written_at: datetime | None = None
    failing_error: str | None = None
    failed_error: str | None = None


def _shortened(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


async def sync_by_connection(
    session: AsyncSession,
    *,
    include: Collection[str] = (),
    only: str | None = None,
    error_chars: int = 300,
) -> dict[str, ConnectionSync]:
    """Write-back state of each connection with write-backs, and of those in `include` (or
    of `only` alone), from aggregates: the counts read only unwritten rows (the claim index's
    leading status keeps written ones out); the last success and each error text are one index
    lookup apiece."""
    table = core_table(WritebackItem)
    counts: dict[str, dict[str, Any]] = {name: {} for name in ([only] if only else include)}
    if only is None:
        # Connections whose rows are all written are listed too (with their last success):
        # "nothing owed" is an answer, not an absence. Read along the (connection, written_at)
        # index, one entry per row, without touching the rows.
        for (connection,) in await session.execute(select(table.c.connection).distinct()):
            counts.setdefault(connection, {})
    statement = (
        select(
            table.c.connection,
            table.c.status,
            func.count(),
            func.count(case((table.c.attempts > 0, 1))),
            func.min(table.c.pending_since),
        )
        .where(table.c.status.in_(_UNWRITTEN))
        .group_by(table.c.connection, table.c.status)
    )
    if only is not None:
        statement = statement.where(table.c.connection == only)
    rows = await session.execute(statement)
    for connection, status, count, retried, since in rows:
        entry = counts.setdefault(connection, {})
        if status == FAILED:
            entry["failed"] = count
            continue
        entry["pending"] = entry.get("pending", 0) + count
        entry["failing"] = entry.get("failing", 0) + retried
        if status == SENDING:
            entry["sending"] = count
        if since is not None:
            earliest = entry.get("oldest_pending_since")
            entry["oldest_pending_since"] = since if earliest is None else min(earliest, since)
    result: dict[str, ConnectionSync] = {}
    for connection in sorted(counts):
        entry = counts[connection]
        failing_error = failed_error = None
        if entry.get("failing"):
            failing_error = await _latest_error(
                session, connection=connection, status=PENDING, retried_only=True
            )
        if entry.get("failed"):
            failed_error = await _latest_error(session, connection=connection, status=FAILED)
        result[connection] = ConnectionSync(
            connection=connection,
            last_written_at=await session.scalar(
                select(func.max(table.c.written_at)).where(table.c.connection == connection)
            ),
            failing_error=_shortened(failing_error, error_chars),
            failed_error=_shortened(failed_error, error_chars),
            **entry,
        )
    return result


async def _latest_error(
    session: AsyncSession, *, connection: str, status: str, retried_only: bool = False
) -> str | None:
    """The error of the connection's row in `status` that is due last: read backwards along the
    claim index (status, available_at), so the scan stops at the first row of the connection."""
    table = core_table(WritebackItem)
    statement = (
        select(table.c.last_error)
        .where(
            table.c.status == status,
            table.c.connection == connection,
            table.c.last_error.is_not(None),
        )
        .order_by(table.c.available_at.desc())
        .limit(1)
    )
    if retried_only:
        statement = statement.where(table.c.attempts > 0)
    error: str | None = await session.scalar(statement)
    return error


@dataclass(frozen=True, kw_only=True)
class Requeued:
    """What `retry` put back to pending, and the record ids asked for that have no write-back."""

    failed: int
    failing: int
    unknown: tuple[str, ...] = ()


async def retry(
    session: AsyncSession,
    *,
    now: datetime,
    failed: bool,
    failing: bool,
    connection: str | None = None,
    record_ids: Collection[str] | None = None,
) -> Requeued:
    """Make write-backs due now with fresh attempts: those the CRM refused (`failed`, after
    someone fixed the record or the field) and those retried with backoff (`failing`, once the
    CRM is back). Rows being sent are left to their sender. `record_ids` are CRM record ids of
    `connection`, which they need."""
    table = core_table(WritebackItem)
    scope = []
    unknown: tuple[str, ...] = ()
    if connection is not None:
        scope.append(table.c.connection == connection)
    if record_ids is not None:
        if connection is None:
            raise ValueError("record ids need their connection")
        # Through the accounts' unique (connection, crm_id) index to the outbox's primary key.
        found = {
            row[0]: row[1]
            for row in await session.execute(
                select(Account.crm_id, Account.id)
                .join(table, table.c.account_id == Account.id)
                .where(Account.connection == connection, Account.crm_id.in_(record_ids))
            )
        }
        unknown = tuple(sorted(set(record_ids) - set(found)))
        scope.append(table.c.account_id.in_(list(found.values())))
    fresh = _due_now(now)
    counts = {"failed": 0, "failing": 0}
    if failed:
        result = await session.execute(
            update(table)
            .where(table.c.status == FAILED, *scope)
            .values(
                status=PENDING,
                # Owed since the values were first staged; a row failed before the column
                # existed starts its wait now.
                pending_since=func.coalesce(table.c.pending_since, now),
                **fresh,
            )
        )
        counts["failed"] = int(result.rowcount)  # type: ignore[attr-defined]
    if failing:
        result = await session.execute(
            update(table)
            .where(table.c.status == PENDING, table.c.attempts > 0, *scope)
            .values(**fresh)
        )
        counts["failing"] = int(result.rowcount)  # type: ignore[attr-defined]
    return Requeued(unknown=unknown, **counts)
