"""Claiming rows with a lease: the one pattern behind the inbox, the write-back and alert
outboxes and the recompute jobs.

A claimed row moves from its idle status to a busy one with `lease_until`; a worker that dies
mid-work leaves the lease to run out, and the row becomes claimable again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.dialect import is_postgresql, rare

T = TypeVar("T")

# The longest error text a row keeps.
ERROR_LIMIT = 2000


async def claim(
    session: AsyncSession,
    model: Any,
    *,
    idle: str,
    busy: str,
    now: datetime,
    limit: int,
    lease_seconds: float,
    order_by: Any,
    returning: Sequence[Any],
    where: ColumnElement[bool] | None = None,
) -> list[Any]:
    """Take up to `limit` due rows (or ones whose lease ran out) in one UPDATE ... RETURNING.

    Call it in a transaction of its own: on PostgreSQL the claimers of one table take turns
    until it commits (a transaction-scoped advisory lock), so several workers claim disjoint
    sets without locking the rows they choose. A row lock (SELECT ... FOR UPDATE SKIP LOCKED,
    as before) is a WAL record of its own on top of the update that follows, about 90 bytes
    an inbox event. The UPDATE checks again that each row is still due: a row that another
    transaction changed meanwhile (a worker settling it as its lease ran out) is re-read and
    left alone.
    """
    due = or_(
        rare(session, model.status == idle) & (model.available_at <= now),
        rare(session, model.status == busy) & (model.lease_until < now),
    )
    if is_postgresql(session):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:queue))"),
            {"queue": f"claim:{model.__tablename__}"},
        )
    primary_key = model.__table__.primary_key.columns[0]
    chosen = (
        select(primary_key)
        .where(due, where if where is not None else true())
        .order_by(order_by)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(
        update(model)
        .where(primary_key.in_(chosen), due)
        .values(status=busy, lease_until=now + timedelta(seconds=lease_seconds))
        .returning(*returning)
        .execution_options(synchronize_session=False)
    )
    return list(result.all())


async def claim_in_order(
    session: AsyncSession,
    model: Any,
    into: type[T],
    *,
    idle: str,
    busy: str,
    now: datetime,
    limit: int,
    lease_seconds: float,
) -> list[T]:
    """`claim` the due rows with the lowest ids, each copied into the dataclass `into` from
    the columns its fields name, sorted by id (RETURNING keeps no order)."""
    names = [field.name for field in dataclasses.fields(into)]  # type: ignore[arg-type]
    rows = await claim(
        session,
        model,
        idle=idle,
        busy=busy,
        now=now,
        limit=limit,
        lease_seconds=lease_seconds,
        order_by=model.id,
        returning=[getattr(model, name) for name in names],
    )
    claimed = [into(**dict(zip(names, row, strict=True))) for row in rows]
    return sorted(claimed, key=attrgetter("id"))


def count_failed_try(
    row: Any, *, error: str, retry_at: datetime | None, idle: str, gave_up: str
) -> None:
    """A claimed row's try failed: count it, keep its error, end its lease; it is due again at
    `retry_at` (back to `idle`) or, with None, stays `gave_up`."""
    row.attempts += 1
    row.last_error = error[:ERROR_LIMIT]
    row.lease_until = None
    if retry_at is None:
        row.status = gave_up
    else:
        row.status = idle
        row.available_at = retry_at
