"""Inbox repository: durable, deduplicated storage of acknowledged events (keys claimed in
inbox_dedup), claiming, the dead letters that could not be processed, the day partitions of
PostgreSQL's inbox and the inbox's retention."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from webhooks.retry import RetrySchedule
from webhooks.store import leases, pruning
from webhooks.store.dialect import is_postgresql, upsert_insert
from webhooks.store.leases import ERROR_LIMIT
from webhooks.store.models import InboxDedup, InboxEvent
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
    bound = session if isinstance(session, AsyncConnection) else await session.connection()
    [count] = await insert_grouped(bound, groups=[(source, connection, events, received_at)])
    return count


# The hot insert of intake. Rows arrive as a single JSON array parameter (source, connection,
# dedup_key, kind, payload, body, received_at): one json.dumps per commit instead of
# SQLAlchemy's per-row parameter processing (a JSON encode and two datetime conversions per
# row), which measured about 1 ms of CPU per 100 events.
#
# Each key is claimed in inbox_dedup first, in the same transaction, and only the events whose
# key was new are stored. Two transactions claiming one key at once: the second waits on the
# first's uncommitted key and then skips it (or takes it, if the first rolled back).
#
# PostgreSQL: one statement. A key twice in one document is claimed once (ON CONFLICT DO
# NOTHING sees the statement's own rows); its first copy is the one stored, and events keep
# the document's order, so ids follow arrival.
_PG_GROUPED_INSERT = """
WITH item AS (
    SELECT value->>0 AS source, value->>1 AS connection, value->>2 AS dedup_key,
           value->>3 AS kind, value->4 AS payload, value->>5 AS body,
           CAST(value->>6 AS timestamptz) AS received_at, n,
           row_number() OVER (PARTITION BY value->>0, value->>1, value->>2 ORDER BY n) AS copy
    FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS document(value, n)
), new AS (
    INSERT INTO inbox_dedup (source, connection, dedup_key, received_at)
    SELECT source, connection, dedup_key, received_at FROM item
    ON CONFLICT DO NOTHING
    RETURNING source, connection, dedup_key
)
INSERT INTO inbox_events
    (source, connection, dedup_key, kind, payload, body, received_at, status, attempts,
     available_at)
SELECT item.source, item.connection, item.dedup_key, item.kind, item.payload, item.body,
       item.received_at, :status, 0, item.received_at
FROM item JOIN new USING (source, connection, dedup_key)
WHERE item.copy = 1
ORDER BY item.n
RETURNING source, connection, dedup_key"""

# SQLite has no data-modifying CTE: the keys are claimed first, then the events at the indexes
# of the document (json_each's `key`) whose key was new are stored. The keys come as a document
# of their own, (source, connection, dedup_key, received_at): json_extract parses the whole
# element it reads from, and the events' elements carry their payloads.
_SQLITE_CLAIM_KEYS = """
INSERT INTO inbox_dedup (source, connection, dedup_key, received_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]')
FROM json_each(:keys) WHERE true
ON CONFLICT DO NOTHING
RETURNING source, connection, dedup_key"""

_SQLITE_INSERT_PICKED = """
INSERT INTO inbox_events
    (source, connection, dedup_key, kind, payload, body, received_at, status, attempts,
     available_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), :status, 0, json_extract(value, '$[6]')
FROM json_each(:rows)
WHERE key IN (SELECT value FROM json_each(:picked))
ORDER BY key"""


def _stored_time(value: datetime, dialect: str) -> str:
    """A timestamp as the UTC columns hold it: SQLite keeps SQLAlchemy's naive UTC text
    (the claim query compares it as text), PostgreSQL parses ISO 8601 with its offset."""
    utc = value.astimezone(UTC)
    if dialect == "sqlite":
        return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return utc.isoformat()


Key = tuple[str, str, str]


def _first_copies(keys: Sequence[Key], new: set[Key]) -> list[int]:
    """The index of the first copy of each new key: the one copy of it that is stored."""
    picked = []
    for index, key in enumerate(keys):
        if key in new:
            new.discard(key)
            picked.append(index)
    return picked


async def insert_grouped(
    connection: AsyncConnection,
    *,
    groups: Sequence[tuple[str, str, Sequence[NewEvent], datetime]],
) -> list[int]:
    """Store the events of several requests, each (source, connection, events, received_at),
    skipping keys already claimed; how many of each request's events were new."""
    dialect = connection.dialect.name
    rows = [
        (source, name, event.dedup_key, event.kind, event.payload, event.body, stamp)
        for source, name, events, received_at in groups
        # Formatted once per request, not per event.
        for stamp in (_stored_time(received_at, dialect),)
        for event in events
    ]
    keys = [(row[0], row[1], row[2]) for row in rows]
    try:
        # allow_nan=False: NaN is no JSON to SQLite's json_each or PostgreSQL's json.
        document = json.dumps(rows, separators=(",", ":"), allow_nan=False)
    except ValueError:
        document = None
    if document is None:
        picked = await _insert_through_orm(connection, groups, keys)
    elif dialect == "postgresql":
        result = await connection.execute(
            text(_PG_GROUPED_INSERT), {"rows": document, "status": PENDING}
        )
        picked = _first_copies(keys, {tuple(row) for row in result.all()})
    else:
        claimed = await connection.execute(
            text(_SQLITE_CLAIM_KEYS),
            {"keys": json.dumps([(*row[:3], row[6]) for row in rows], separators=(",", ":"))},
        )
        picked = _first_copies(keys, {tuple(row) for row in claimed.all()})
        if picked:
            await connection.execute(
                text(_SQLITE_INSERT_PICKED),
                {"rows": document, "picked": json.dumps(picked), "status": PENDING},
            )
    # `picked` is in document order: each request's share is the stretch within its rows.
    counts = []
    start = 0
    for _, _, events, _ in groups:
        end = start + len(events)
        counts.append(bisect_left(picked, end) - bisect_left(picked, start))
        start = end
    return counts


async def _insert_through_orm(
    connection: AsyncConnection,
    groups: Sequence[tuple[str, str, Sequence[NewEvent], datetime]],
    keys: Sequence[Key],
) -> list[int]:
    """A payload JSON cannot carry (NaN from a lenient parser): the ORM's own statements,
    which store what they always stored for such values; the same claim, in two steps."""
    rows = [
        _new_row(source, name, event, received_at)
        for source, name, events, received_at in groups
        for event in events
    ]
    claimed = await connection.execute(
        upsert_insert(connection, InboxDedup)
        .on_conflict_do_nothing()
        .returning(InboxDedup.source, InboxDedup.connection, InboxDedup.dedup_key),
        [{k: row[k] for k in ("source", "connection", "dedup_key", "received_at")} for row in rows],
    )
    picked = _first_copies(keys, {tuple(row) for row in claimed.all()})
    if picked:
        await connection.execute(insert(InboxEvent), [rows[index] for index in picked])
    return picked


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
    # Nothing is processed before it arrives: the received_at bound lets PostgreSQL skip the
    # day partitions after `before`.
    return (
        InboxEvent.status.in_(statuses)
        & (InboxEvent.processed_at < before)
        & (InboxEvent.received_at < before)
    )


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


# PostgreSQL keeps inbox_events partitioned by UTC day of received_at (migration 0022): a day
# past retention is dropped whole instead of deleted row by row, and the hot partition stays
# small. Partitions are named after their day; the DEFAULT partition takes any row whose day
# has none, so an insert never fails for a missing partition.
PARTITION_PREFIX = "inbox_events_p"
DEFAULT_PARTITION = "inbox_events_default"
# Days created ahead of today, by the worker (hourly) and by the migration.
PARTITION_DAYS_AHEAD = 3
# Room left on each page so that the two status updates of a row (claimed, settled) find
# space on its own page: the new row versions stay beside the old ones, and PostgreSQL logs
# only the changed middle of each new version instead of the whole row (payload included).
PARTITION_FILLFACTOR = 70
# Partition DDL waits at most this long for the inbox's lock; the worker tries again later
# rather than queue intake behind it.
_PARTITION_LOCK_TIMEOUT = "2s"


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def _day_bounds(day: date) -> tuple[str, str]:
    """The range of one day's partition, as literals (DDL takes no bind parameters)."""
    return (
        f"'{day.isoformat()} 00:00:00+00'",
        f"'{(day + timedelta(days=1)).isoformat()} 00:00:00+00'",
    )


def _partition_day(name: str) -> date | None:
    if not name.startswith(PARTITION_PREFIX):
        return None
    try:
        return datetime.strptime(name.removeprefix(PARTITION_PREFIX), "%Y%m%d").date()
    except ValueError:
        return None


async def _bound(session: AsyncSession | AsyncConnection) -> AsyncConnection:
    return session if isinstance(session, AsyncConnection) else await session.connection()


async def ensure_partitions(session: AsyncSession | AsyncConnection, now: datetime) -> list[str]:
    """Create the day partitions of today and the next PARTITION_DAYS_AHEAD days that are
    missing (PostgreSQL; SQLite keeps a plain table); the names created. Rows that reached
    the default partition for such a day move into it. Runs in the caller's transaction."""
    connection = await _bound(session)
    if not is_postgresql(connection):
        return []
    # One creator at a time: two workers starting together would both find a day missing.
    await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('inbox_partitions'))"))
    await connection.execute(text(f"SET LOCAL lock_timeout = '{_PARTITION_LOCK_TIMEOUT}'"))
    today = now.astimezone(UTC).date()
    created = []
    for offset in range(PARTITION_DAYS_AHEAD + 1):
        day = today + timedelta(days=offset)
        name = partition_name(day)
        if await connection.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}):
            continue
        low, high = _day_bounds(day)
        # Created standalone and then attached: ATTACH takes a lock intake's inserts do not
        # wait for, where CREATE ... PARTITION OF would lock the whole inbox.
        await connection.execute(
            text(
                f"CREATE TABLE {name} (LIKE inbox_events INCLUDING DEFAULTS) "
                f"WITH (fillfactor = {PARTITION_FILLFACTOR})"
            )
        )
        await connection.execute(
            text(
                # Names and bounds are built from dates here, never from input.
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE received_at >= {low} "  # noqa: S608
                f"AND received_at < {high} RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            )
        )
        await connection.execute(
            text(
                f"ALTER TABLE inbox_events ATTACH PARTITION {name} "
                f"FOR VALUES FROM ({low}) TO ({high})"
            )
        )
        created.append(name)
    return created


async def drop_settled_partition(session: AsyncSession, *, before: datetime) -> int | None:
    """Retention's cheap path (PostgreSQL): detach and drop the first day partition wholly
    before `before` whose every event is settled (done, ignored) and was processed before it;
    the events it held, or None when no partition qualifies (SQLite: always None). No row is
    deleted one by one, so the drop writes next to no WAL. Runs in the caller's transaction."""
    connection = await _bound(session)
    if not is_postgresql(connection):
        return None
    names = (
        await connection.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'inbox_events'::regclass ORDER BY c.relname"
            )
        )
    ).all()
    cutoff = before.astimezone(UTC)
    await connection.execute(text(f"SET LOCAL lock_timeout = '{_PARTITION_LOCK_TIMEOUT}'"))
    for name in names:
        day = _partition_day(name)
        if day is None or datetime.combine(day + timedelta(days=1), time(), UTC) > cutoff:
            continue
        # No row may arrive or change between the check and the drop (a Segment request's
        # calls are stored under its own, old, received_at).
        await connection.execute(text(f"LOCK TABLE {name} IN SHARE MODE"))
        total, waiting = (
            await connection.execute(
                text(
                    # The partition's name comes from the catalogue, checked as a day.
                    f"SELECT count(*), count(*) FILTER (WHERE status NOT IN ('done', "  # noqa: S608
                    f"'ignored') OR processed_at IS NULL OR processed_at >= :cutoff) "
                    f"FROM {name}"
                ),
                {"cutoff": cutoff},
            )
        ).one()
        if waiting:
            continue
        await connection.execute(text(f"ALTER TABLE inbox_events DETACH PARTITION {name}"))
        await connection.execute(text(f"DROP TABLE {name}"))
        return int(total)
    return None


def _received_before(before: datetime) -> Any:
    return InboxDedup.received_at < before


async def delete_dedup_keys(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` dedup keys received before `before`; how many went. Past it, a key
    sent again is a new event: `before` is the end of the dedup window."""
    key = tuple_(InboxDedup.source, InboxDedup.connection, InboxDedup.dedup_key)
    result = await session.execute(
        delete(InboxDedup)
        .where(
            key.in_(
                select(InboxDedup.source, InboxDedup.connection, InboxDedup.dedup_key)
                .where(_received_before(before))
                .limit(limit)
            )
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_dedup_keys(session: AsyncSession, *, before: datetime) -> int:
    """How many dedup keys `delete_dedup_keys` would delete in all (a dry run)."""
    return await pruning.count_where(session, model=InboxDedup, where=_received_before(before))
