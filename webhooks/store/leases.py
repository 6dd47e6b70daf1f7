"""Claiming rows with a lease: the one pattern behind the inbox and the write-back outbox.

A claimed row moves from its idle status to a busy one with `lease_until`; a worker that dies
mid-work leaves the lease to run out, and the row becomes claimable again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


class Leased(Protocol):
    status: Any
    available_at: Any
    lease_until: Any


LeasedRow = TypeVar("LeasedRow", bound=Leased)


async def claim(
    session: AsyncSession,
    model: type[LeasedRow],
    *,
    idle: str,
    busy: str,
    now: datetime,
    limit: int,
    lease_seconds: float,
    order_by: InstrumentedAttribute[Any],
    where: ColumnElement[bool] | None = None,
) -> list[LeasedRow]:
    """Take up to `limit` due rows (or ones whose lease ran out) for this worker.

    On PostgreSQL, SKIP LOCKED lets several workers claim disjoint sets concurrently.
    """
    status: InstrumentedAttribute[str] = model.status
    due = or_(
        (status == idle) & (model.available_at <= now),
        (status == busy) & (model.lease_until < now),
    )
    result = await session.execute(
        select(model)
        .where(due, where if where is not None else true())
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows: list[LeasedRow] = list(result.scalars().all())
    lease_until = now + timedelta(seconds=lease_seconds)
    for row in rows:
        row.status = busy
        row.lease_until = lease_until
    return rows
