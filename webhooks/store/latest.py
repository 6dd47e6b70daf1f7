"""Each account's latest row of a history table at a moment, read with one index probe per
account however long the history grows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Subquery, select
from sqlalchemy.orm import aliased

from webhooks.store.models import Account


def latest_rows(
    model: Any,
    *,
    account_ids: Collection[int],
    time: str,
    where: Callable[[Any], Sequence[ColumnElement[bool]]],
) -> Subquery:
    """(account_id, id) of each account's latest `model` row by its `time` column (ties: the
    highest id) among the rows `where(row)` keeps; accounts without one are left out.

    A correlated ORDER BY time DESC LIMIT 1 per account walks the (account_id, time) index
    backwards and stops at the first row kept, where a max() grouped by account read every
    row up to the moment (the whole history, for a moment near now)."""
    row = aliased(model)
    latest = (
        select(row.id)
        .where(row.account_id == Account.id, *where(row))
        .order_by(getattr(row, time).desc(), row.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(Account.id.label("account_id"), latest.label("id"))
        .where(Account.id.in_(list(account_ids)))
        .subquery()
    )
