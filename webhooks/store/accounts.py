"""Accounts repository: per-account facts (attributes, activity days) and health history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from signals.model import AccountFacts, Health
from webhooks.store.dialect import upsert_insert
from webhooks.store.models import Account, ActivityDay, HealthSnapshot


async def lock_account(
    session: AsyncSession, *, connection: str, crm: str, crm_id: str, now: datetime
) -> Account:
    """Fetch the account row, creating it if new, locked for this transaction on PostgreSQL."""
    await session.execute(
        upsert_insert(session, Account)
        .values(
            connection=connection,
            crm=crm,
            crm_id=crm_id,
            attributes={},
            band="unknown",
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["connection", "crm_id"])
    )
    return (
        await session.execute(
            select(Account)
            .where(Account.connection == connection, Account.crm_id == crm_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def record_activity(session: AsyncSession, *, account: Account, at: datetime) -> None:
    if account.last_activity_at is None or at > account.last_activity_at:
        account.last_activity_at = at
    insert = upsert_insert(session, ActivityDay).values(
        account_id=account.id, day=at.date(), events=1
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["account_id", "day"],
            set_={"events": ActivityDay.events + 1},
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


async def load_facts(session: AsyncSession, *, account: Account, as_of: datetime) -> AccountFacts:
    since = (as_of - timedelta(days=30)).date()
    active_days = (
        await session.execute(
            select(func.count())
            .select_from(ActivityDay)
            .where(ActivityDay.account_id == account.id, ActivityDay.day > since)
        )
    ).scalar_one()
    return AccountFacts(
        account_id=account.crm_id,
        as_of=as_of,
        last_activity_at=account.last_activity_at,
        active_days_30d=active_days,
    )


async def score_at_or_before(session: AsyncSession, *, account_id: int, at: datetime) -> int | None:
    return (
        await session.execute(
            select(HealthSnapshot.score)
            .where(HealthSnapshot.account_id == account_id, HealthSnapshot.computed_at <= at)
            .order_by(HealthSnapshot.computed_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


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
            signals=dict(health.signals),
            drivers=list(health.drivers),
            coverage=health.coverage,
        )
    )


async def get_account(session: AsyncSession, *, connection: str, crm_id: str) -> Account | None:
    return (
        await session.execute(
            select(Account).where(Account.connection == connection, Account.crm_id == crm_id)
        )
    ).scalar_one_or_none()


async def list_accounts(session: AsyncSession, *, connection: str) -> list[Account]:
    rows = await session.execute(
        select(Account).where(Account.connection == connection).order_by(Account.id)
    )
    return list(rows.scalars().all())
