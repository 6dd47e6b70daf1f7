"""Each account's latest row of a history table at a moment, read with one index probe per
account however long the history grows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from webhooks.store.dialect import is_postgresql
from webhooks.store.models import Account


async def latest_rows(
    session: AsyncSession,
    model: Any,
    *,
    columns: Sequence[str],
    account_ids: Collection[int],
    time: str,
    where: Callable[[Any], Sequence[ColumnElement[bool]]],
) -> list[tuple[Any, ...]]:
    """The `columns` of each account's latest `model` row by its `time` column (ties: the
    highest id) among the rows `where(row)` keeps; accounts without one are left out.

    An ORDER BY time DESC LIMIT 1 per account walks the (account_id, time) index backwards
    and stops at the first row kept, where a max() grouped by account read every row up to
    the moment (the whole history, for a moment near now). PostgreSQL runs it as a LATERAL
    join that returns the row itself: joining the picked ids back to the table made it hash
    the whole history. SQLite has no LATERAL; it looks each picked id up by primary key."""
    row = aliased(model)
    latest = (
        select(row.id)
        .where(row.account_id == Account.id, *where(row))
        .order_by(getattr(row, time).desc(), row.id.desc())
        .limit(1)
    )
    accounts = Account.id.in_(list(account_ids))
    if is_postgresql(session):
        picked = latest.with_only_columns(*(getattr(row, name) for name in columns)).lateral()
        statement = (
            select(*(picked.c[name] for name in columns))
            .select_from(Account)
            .join(picked, true())
            .where(accounts)
        )
    else:
        picks = select(latest.scalar_subquery().label("id")).where(accounts).subquery()
        statement = select(*(getattr(model, name) for name in columns)).join(
            picks, model.id == picks.c.id
        )
    return [tuple(found) for found in await session.execute(statement)]
