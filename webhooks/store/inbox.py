"""Inbox repository: durable, deduplicated storage of acknowledged events and their claiming."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store import leases
from webhooks.store.dialect import upsert_insert
from webhooks.store.models import InboxEvent

PENDING, PROCESSING, DONE, IGNORED, FAILED = "pending", "processing", "done", "ignored", "failed"


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    dedup_key: str
    kind: str
    payload: dict[str, Any]


async def insert_events(
    session: AsyncSession,
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
    rows = [
        {
            "source": source,
            "connection": connection,
            "dedup_key": event.dedup_key,
            "kind": event.kind,
            "payload": event.payload,
            "received_at": received_at,
            "status": PENDING,
            "attempts": 0,
            "available_at": received_at,
        }
        for event in events
    ]
    inserted = (await session.execute(statement, rows)).scalars().all()
    return len(inserted)


async def claim_batch(
    session: AsyncSession, *, now: datetime, limit: int, lease_seconds: float
) -> list[InboxEvent]:
    """Take up to `limit` due events (or ones whose worker's lease ran out), oldest first."""
    return await leases.claim(
        session,
        InboxEvent,
        idle=PENDING,
        busy=PROCESSING,
        now=now,
        limit=limit,
        lease_seconds=lease_seconds,
        order_by=InboxEvent.id,
    )


def mark_done(row: InboxEvent, *, status: str, now: datetime) -> None:
    row.status = status
    row.processed_at = now
    row.lease_until = None
    row.last_error = None


def mark_undecodable(row: InboxEvent, *, error: str, now: datetime) -> None:
    row.status = FAILED
    row.processed_at = now
    row.lease_until = None
    row.last_error = f"undecodable payload: {error}"[:2000]


async def mark_failed_attempt(
    session: AsyncSession,
    *,
    event_id: int,
    error: str,
    now: datetime,
    max_attempts: int,
    backoff_seconds: float,
) -> str:
    """Record a failed try; the event is retried later or, after the last try, marked failed."""
    row = await session.get(InboxEvent, event_id)
    if row is None:
        return FAILED
    row.attempts += 1
    row.last_error = error[:2000]
    row.lease_until = None
    if row.attempts >= max_attempts:
        row.status = FAILED
        row.processed_at = now
    else:
        row.status = PENDING
        row.available_at = now + timedelta(seconds=backoff_seconds * 2 ** (row.attempts - 1))
    return row.status


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
    )
    return {row[0]: row[1] for row in rows}


async def load(session: AsyncSession, *, event_ids: Sequence[int]) -> list[InboxEvent]:
    rows = await session.execute(
        select(InboxEvent).where(InboxEvent.id.in_(event_ids)).order_by(InboxEvent.id)
    )
    return list(rows.scalars().all())
