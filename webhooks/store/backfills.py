"""Backfill cursors: how far a backfill got per connection and object type."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.dialect import upsert_insert
from webhooks.store.models import BackfillCursor


async def cursor(
    session: AsyncSession, *, connection: str, object_type: str
) -> BackfillCursor | None:
    return (
        await session.execute(
            select(BackfillCursor).where(
                BackfillCursor.connection == connection, BackfillCursor.object_type == object_type
            )
        )
    ).scalar_one_or_none()


async def advance(
    session: AsyncSession,
    *,
    connection: str,
    object_type: str,
    after: str | None,
    events: int,
    now: datetime,
) -> None:
    """Record that everything before `after` is stored (`after` None: the type is finished)."""
    insert = upsert_insert(session, BackfillCursor)
    await session.execute(
        insert.values(
            connection=connection, object_type=object_type, after=after, done=after is None,
            events=events, updated_at=now,
        ).on_conflict_do_update(
            index_elements=["connection", "object_type"],
            set_={
                "after": insert.excluded.after,
                "done": insert.excluded.done,
                "events": BackfillCursor.events + insert.excluded.events,
                "updated_at": insert.excluded.updated_at,
            },
        )
    )  # fmt: skip


async def reset(session: AsyncSession, *, connection: str) -> None:
    await session.execute(delete(BackfillCursor).where(BackfillCursor.connection == connection))
