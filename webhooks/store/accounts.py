"""Accounts repository: account rows (created on first sight, locked while worked on), their
current health and its history.

Every function works on a whole batch of accounts at once: the worker's cost per batch is a
handful of statements, not a handful per account.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from signals.model import Health
from webhooks.store.dialect import upsert_insert
from webhooks.store.models import Account, HealthSnapshot

AccountKey = tuple[str, str, str]  # (connection, crm, crm_id)


async def lock_accounts(
    session: AsyncSession, *, keys: Collection[AccountKey], now: datetime
) -> dict[AccountKey, Account]:
    """Fetch the accounts, creating new ones, locked for this transaction on PostgreSQL.

    Rows are locked in id order so concurrent workers cannot deadlock on each other.
    """
    if not keys:
        return {}
    await session.execute(
        upsert_insert(session, Account).on_conflict_do_nothing(
            index_elements=["connection", "crm_id"]
        ),
        [
            {
                "connection": connection,
                "crm": crm,
                "crm_id": crm_id,
                "attributes": {},
                "band": "unknown",
                "created_at": now,
            }
            for connection, crm, crm_id in keys
        ],
    )
    rows = await session.execute(
        select(Account)
        .where(tuple_(Account.connection, Account.crm_id).in_([(c, i) for c, _, i in keys]))
        .order_by(Account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(a.connection, a.crm, a.crm_id): a for a in rows.scalars()}


async def scores_at_or_before(
    session: AsyncSession, *, account_ids: Collection[int], at: datetime
) -> dict[int, int | None]:
    """Each account's latest recorded score at or before `at` (for trends)."""
    latest = (
        select(HealthSnapshot.account_id, func.max(HealthSnapshot.computed_at).label("computed_at"))
        .where(HealthSnapshot.account_id.in_(account_ids), HealthSnapshot.computed_at <= at)
        .group_by(HealthSnapshot.account_id)
        .subquery()
    )
    rows = await session.execute(
        select(HealthSnapshot.account_id, HealthSnapshot.score).join(
            latest,
            (HealthSnapshot.account_id == latest.c.account_id)
            & (HealthSnapshot.computed_at == latest.c.computed_at),
        )
    )
    return dict(rows.all())


async def record_health(
    session: AsyncSession, *, scored: Sequence[tuple[Account, Health]], at: datetime
) -> None:
    """Keep each account's current health on its row and append it to the history."""
    if not scored:
        return
    for account, health in scored:
        account.score = health.score
        account.band = health.band.value
        account.health_updated_at = at
    await session.execute(
        insert(HealthSnapshot),
        [
            {
                "account_id": account.id,
                "computed_at": at,
                "score": health.score,
                "band": health.band.value,
                "signals": {
                    name: None if value is None else round(value, 1)
                    for name, value in health.signals.items()
                },
                "drivers": list(health.drivers),
                "coverage": health.coverage.ratio,
            }
            for account, health in scored
        ],
    )


async def accounts_after(session: AsyncSession, *, after_id: int, limit: int) -> list[Account]:
    """Live accounts with ids above `after_id`, in id order, locked (a recompute's next chunk)."""
    rows = await session.execute(
        select(Account)
        .where(Account.id > after_id, Account.deleted_at.is_(None))
        .order_by(Account.id)
        .limit(limit)
        .with_for_update()
    )
    return list(rows.scalars().all())
