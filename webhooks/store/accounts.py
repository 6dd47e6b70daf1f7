"""Accounts repository: per-account facts (attributes, activity days) and health history.

Every function works on a whole batch of accounts at once: the worker's cost per batch is a
handful of statements, not a handful per account.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from signals.model import AccountFacts, Health
from webhooks.store.dialect import upsert_insert
from webhooks.store.models import Account, ActivityDay, HealthSnapshot

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
        upsert_insert(session, Account)
        .values(
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
            ]
        )
        .on_conflict_do_nothing(index_elements=["connection", "crm_id"])
    )
    rows = await session.execute(
        select(Account)
        .where(tuple_(Account.connection, Account.crm_id).in_([(c, i) for c, _, i in keys]))
        .order_by(Account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(a.connection, a.crm, a.crm_id): a for a in rows.scalars()}


async def record_activity(
    session: AsyncSession, *, activity: Sequence[tuple[Account, datetime]]
) -> None:
    """Count activity per account and UTC day, and move each account's last-activity time."""
    per_day: Counter[tuple[int, date]] = Counter()
    for account, at in activity:
        if account.last_activity_at is None or at > account.last_activity_at:
            account.last_activity_at = at
        per_day[(account.id, at.date())] += 1
    if not per_day:
        return
    # One row per (account, day) in the statement: PostgreSQL refuses to update a row twice.
    insert = upsert_insert(session, ActivityDay).values(
        [{"account_id": a, "day": d, "events": n} for (a, d), n in per_day.items()]
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["account_id", "day"],
            set_={"events": ActivityDay.events + insert.excluded.events},
        )
    )


def apply_attributes(account: Account, *, attributes: dict[str, str | None], at: datetime) -> None:
    """Out-of-order delivery is normal: per attribute, only a later `at` overwrites."""
    merged: dict[str, Any] = dict(account.attributes or {})
    for name, value in attributes.items():
        current = merged.get(name)
        if current is not None and datetime.fromisoformat(current["at"]) > at:
            continue
        merged[name] = {"value": value, "at": at.isoformat()}
        if name == "name":
            account.name = value
    account.attributes = merged


def mark_deleted(account: Account, *, at: datetime) -> None:
    account.deleted_at = at


def facts_of(account: Account, *, as_of: datetime) -> AccountFacts:
    """The snapshot scoring sees. Inputs the store does not hold yet stay None (no data)."""
    return AccountFacts(
        account_id=account.crm_id,
        as_of=as_of,
        attributes={
            name: entry["value"]
            for name, entry in (account.attributes or {}).items()
            if entry.get("value") is not None
        },
        # The store holds CRM record activity only so far; it stands in for product usage.
        last_usage_at=account.last_activity_at,
    )


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


def record_health(session: AsyncSession, *, account: Account, health: Health, at: datetime) -> None:
    account.score = health.score
    account.band = health.band.value
    account.health_updated_at = at
    session.add(
        HealthSnapshot(
            account_id=account.id,
            computed_at=at,
            score=health.score,
            band=health.band.value,
            signals={
                name: None if value is None else round(value, 1)
                for name, value in health.signals.items()
            },
            drivers=list(health.drivers),
            coverage=health.coverage.ratio,
        )
    )
