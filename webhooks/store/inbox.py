"""Inbox repository: durable, deduplicated storage of acknowledged events, claiming, and the
dead letters that could not be processed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from webhooks.retry import RetrySchedule
from webhooks.store import leases, pruning
from webhooks.store.dialect import upsert_insert
from webhooks.store.leases import ERROR_LIMIT
from webhooks.store.models import InboxEvent
from webhooks.store.product import UNMATCHED

PENDING, PROCESSING, DONE, IGNORED, DEAD = "pending", "processing", "done", "ignored", "dead"
# Statuses of events still waiting for something (the worker, their account, a replay).
UNSETTLED = (PENDING, PROCESSING, UNMATCHED, DEAD)
# Statuses of events the worker is through with: retention deletes them after a while.
PROCESSED = (DONE, IGNORED)


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    dedup_key: str
    kind: str
    payload: dict[str, Any]
    body: str | None = None


@dataclass(frozen=True, kw_only=True)
class Claimed:
    id: int
    source: str
    connection: str
    kind: str
    payload: dict[str, Any]
    received_at: datetime
    body: str | None = None
    # Failed tries so far: an event that broke a batch before is tried on its own.
    attempts: int = 0


def _new_row(
    source: str, connection: str, event: NewEvent, received_at: datetime
) -> dict[str, Any]:
    """An inbox row as the ORM's insert takes it: pending and due at once."""
    return {
        "source": source,
        "connection": connection,
        "dedup_key": event.dedup_key,
        "kind": event.kind,
        "payload": event.payload,
        "body": event.body,
        "received_at": received_at,
        "status": PENDING,
        "attempts": 0,
        "available_at": received_at,
    }


async def insert_events(
    session: AsyncSession | AsyncConnection,
    *,
    source: str,
    connection: str,
    events: Sequence[NewEvent],
    received_at: datetime,
) -> int:
    """Store events, skipping any already stored under the same dedup key; return new count."""
    if not events:
        return 0
    # executemany with a cached statement: a multi-VALUES literal would be compiled anew for
    # every batch, which cost more than the insert itself.
    statement = (
        upsert_insert(session, InboxEvent)
        .on_conflict_do_nothing(index_elements=["source", "connection", "dedup_key"])
        .returning(InboxEvent.id)
    )
    rows = [_new_row(source, connection, event, received_at) for event in events]
    inserted = (await session.execute(statement, rows)).scalars().all()
    return len(inserted)


# The hot insert of intake, as one statement whose rows arrive as a single JSON array
# parameter (source, connection, dedup_key, kind, payload, body, received_at): one json.dumps
# per commit instead of SQLAlchemy's per-row parameter processing (a JSON encode and two
# datetime conversions per row), which measured about 1 ms of CPU per 100 events.
_GROUPED_INSERT = {
    "sqlite": """
INSERT INTO inbox_events
    (source, connection, dedup_key, kind, payload, body, received_at, status, attempts,
     available_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), :status, 0, json_extract(value, '$[6]')
FROM json_each(:rows) WHERE true
ON CONFLICT (source, connection, dedup_key) DO NOTHING
RETURNING source, connection, dedup_key""",
    "postgresql": """
INSERT INTO inbox_events
    (source, connection, dedup_key, kind, payload, body, received_at, status, attempts,
     available_at)
SELECT item->>0, item->>1, item->>2, item->>3, item->4, item->>5, CAST(item->>6 AS timestamptz),
       :status, 0, CAST(item->>6 AS timestamptz)
FROM json_array_elements(CAST(:rows AS json)) AS item
ON CONFLICT (source, connection, dedup_key) DO NOTHING
RETURNING source, connection, dedup_key""",
}


def _stored_time(value: datetime, dialect: str) -> str:
    """A timestamp as the UTC columns hold it: SQLite keeps SQLAlchemy's naive UTC text
    (the claim query compares it as text), PostgreSQL parses ISO 8601 with its offset."""
    utc = value.astimezone(UTC)
    if dialect == "sqlite":
        return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return utc.isoformat()


async def insert_grouped(
    connection: AsyncConnection,
    *,
    groups: Sequence[tuple[str, str, Sequence[NewEvent], datetime]],
) -> list[int]:
    """Store the events of several requests, each (source, connection, events, received_at),
    in one statement; how many of each request's events were new."""
    dialect = connection.dialect.name
    rows = [
        (source, name, event.dedup_key, event.kind, event.payload, event.body, stamp)
        for source, name, events, received_at in groups
        # Formatted once per request, not per event.
        for stamp in (_stored_time(received_at, dialect),)
        for event in events
    ]
    try:
        # allow_nan=False: NaN is no JSON to SQLite's json_each or PostgreSQL's json.
        document = json.dumps(rows, separators=(",", ":"), allow_nan=False)
    except ValueError:
        document = None
    if document is not None and dialect in _GROUPED_INSERT:
        result = await connection.execute(
            text(_GROUPED_INSERT[dialect]), {"rows": document, "status": PENDING}
        )
    else:
        # A payload JSON cannot carry (NaN from a lenient parser): the ORM's own statement,
        # which stores what it always stored for such values.
        result = await connection.execute(
            upsert_insert(connection, InboxEvent)
            .on_conflict_do_nothing(index_elements=["source", "connection", "dedup_key"])
            .returning(InboxEvent.source, InboxEvent.connection, InboxEvent.dedup_key),
            [
                _new_row(source, name, event, received_at)
                for source, name, events, received_at in groups
                for event in events
            ],
        )
    inserted = Counter(tuple(row) for row in result.all())
    counts = []
    for source, name, events, _ in groups:
        count = 0
        for event in events:
            key = (source, name, event.dedup_key)
            # Two requests holding the same event in one group: only one of them stored it.
            if inserted[key] > 0:
                inserted[key] -= 1
                count += 1
        counts.append(count)
    return counts


async def claim_batch(
    session: AsyncSession, *, now: datetime, limit: int, lease_seconds: float
) -> list[Claimed]:
    """Take up to `limit` due events (or ones whose worker's lease ran out), oldest first."""
    return await leases.claim_in_order(
        session,
        InboxEvent,
        Claimed,
        idle=PENDING,
        busy=PROCESSING,
        now=now,
        limit=limit,
        lease_seconds=lease_seconds,
    )


async def settle(
    session: AsyncSession, *, event_ids: Sequence[int], status: str, now: datetime
) -> None:
    """Mark claimed events done or ignored."""
    if event_ids:
        await session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(event_ids))
            .values(status=status, processed_at=now, lease_until=None, last_error=None)
        )


async def drop_bodies(session: AsyncSession, *, event_ids: Sequence[int]) -> None:
    """Forget the stored bodies of requests split into their calls: the calls are rows of their
    own now. The request's row stays until retention, so a request sent again is still
    recognised as a duplicate."""
    if event_ids:
        await session.execute(
            update(InboxEvent).where(InboxEvent.id.in_(event_ids)).values(body=None)
        )


def _processed_before(statuses: Sequence[str], before: datetime) -> Any:
    return InboxEvent.status.in_(statuses) & (InboxEvent.processed_at < before)


async def delete_processed(
    session: AsyncSession, *, statuses: Sequence[str], before: datetime, limit: int
) -> int:
    """Delete up to `limit` events of these statuses processed before `before` (retention:
    PROCESSED; an explicit purge of old dead letters: DEAD); how many went. Unmatched, pending
    and processing events have no processing time and never match."""
    return await pruning.delete_where(
        session, model=InboxEvent, where=_processed_before(statuses, before), limit=limit
    )


async def count_processed(
    session: AsyncSession, *, statuses: Sequence[str], before: datetime
) -> int:
    """How many events `delete_processed` would delete in all (a dry run)."""
    return await pruning.count_where(
        session, model=InboxEvent, where=_processed_before(statuses, before)
    )


async def bury(session: AsyncSession, *, errors: dict[int, str], now: datetime) -> None:
    """Move events that can never be processed to the dead letters, with their error."""
    for event_id, error in errors.items():
        await session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == event_id)
            .values(
                status=DEAD,
                processed_at=now,
                lease_until=None,
                attempts=InboxEvent.attempts + 1,
                last_error=error[:ERROR_LIMIT],
            )
        )


async def mark_failed_attempt(
    session: AsyncSession,
    *,
    event_id: int,
    error: str,
    now: datetime,
    max_attempts: int,
    schedule: RetrySchedule,
    not_before_seconds: float = 0.0,
) -> str:
    """Record a failed try; retried later on the schedule (never sooner than
    `not_before_seconds`, a CRM's Retry-After) or, after the last try, dead-lettered."""
    row = await session.get(InboxEvent, event_id, populate_existing=True)
    if row is None:
        return DEAD
    tries = row.attempts + 1
    retry_at = (
        None
        if tries >= max_attempts
        else now + timedelta(seconds=schedule.delay(tries, not_before=not_before_seconds))
    )
    leases.count_failed_try(row, error=error, retry_at=retry_at, idle=PENDING, gave_up=DEAD)
    if retry_at is None:
        row.processed_at = now
    return row.status


async def release(
    session: AsyncSession,
    *,
    event_ids: Sequence[int],
    available_at: datetime,
    note: str,
) -> None:
    """Put claimed events back for a try at `available_at`, without counting an attempt: the CRM
    took no calls (its allowance is used up, or it is down), which is nothing wrong with these
    events. Only events still being processed: one settled meanwhile stays settled."""
    if event_ids:
        await session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(event_ids), InboxEvent.status == PROCESSING)
            .values(
                status=PENDING,
                lease_until=None,
                available_at=available_at,
                last_error=note[:ERROR_LIMIT],
            )
        )


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
    )
    return {row[0]: row[1] for row in rows}


@dataclass(frozen=True, kw_only=True)
class Backlog:
    counts: dict[str, int]
    oldest_pending_received_at: datetime | None


async def backlog(session: AsyncSession) -> Backlog:
    """Unsettled events by status, and when the oldest pending (or processing) one arrived.
    Settled rows are left out: the cost follows the backlog, not the inbox's whole history."""
    rows = await session.execute(
        select(InboxEvent.status, func.count(), func.min(InboxEvent.received_at))
        .where(InboxEvent.status.in_(UNSETTLED))
        .group_by(InboxEvent.status)
    )
    counts: dict[str, int] = {}
    oldest: datetime | None = None
    for status, count, first in rows:
        counts[status] = count
        if status in (PENDING, PROCESSING) and first is not None:
            oldest = first if oldest is None else min(oldest, first)
    return Backlog(counts=counts, oldest_pending_received_at=oldest)


async def dead_letters(session: AsyncSession, *, limit: int = 100) -> list[InboxEvent]:
    rows = await session.execute(
        select(InboxEvent).where(InboxEvent.status == DEAD).order_by(InboxEvent.id).limit(limit)
    )
    return list(rows.scalars().all())


async def replay(session: AsyncSession, *, event_ids: Sequence[int] | None, now: datetime) -> int:
    """Send dead letters (these, or all when None) back to the worker with fresh attempts."""
    statement = update(InboxEvent).where(InboxEvent.status == DEAD)
    if event_ids is not None:
        statement = statement.where(InboxEvent.id.in_(event_ids))
    result = await session.execute(
        statement.values(status=PENDING, attempts=0, available_at=now, processed_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def dead_letters_by_connection(session: AsyncSession) -> dict[str, int]:
    """How many dead letters each connection has (read through the claim index's status)."""
    rows = await session.execute(
        select(InboxEvent.connection, func.count())
        .where(InboxEvent.status == DEAD)
        .group_by(InboxEvent.connection)
    )
    return {row[0]: row[1] for row in rows}


async def statuses(session: AsyncSession, *, event_ids: Sequence[int]) -> dict[int, str]:
    """The status of each of these events that exists (by primary key)."""
    if not event_ids:
        return {}
    rows = await session.execute(
        select(InboxEvent.id, InboxEvent.status).where(InboxEvent.id.in_(event_ids))
    )
    return {row[0]: row[1] for row in rows}


async def last_received(
    session: AsyncSession, *, connection: str, sources: Sequence[str]
) -> datetime | None:
    """When the newest event of these sources reached this connection's inbox (None: none is
    there; retention may have pruned settled ones). A diagnostic read: it scans the
    connection's rows, so it is for `crm-health doctor`, not for a hot path."""
    # max() keeps the column's type, so the value comes back as an aware UTC datetime.
    return await session.scalar(
        select(func.max(InboxEvent.received_at)).where(
            InboxEvent.connection == connection, InboxEvent.source.in_(sources)
        )
    )
