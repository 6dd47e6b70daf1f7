"""Read-only queries behind the accounts API: a filtered, sorted page of one connection's
accounts, their health history for a window (one query per page), open alert counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store import accounts
from webhooks.store.alerts import OPEN, SNOOZED
from webhooks.store.latest import latest_rows
from webhooks.store.models import Account, AccountRow, Alert, HealthSnapshot, SentimentFact

Trend = Literal["up", "down", "flat"]
SortKey = Literal[
    "score", "-score", "name", "-name", "updated_at", "-updated_at", "trend", "-trend", "arr",
    "-arr", "renewal", "-renewal",
]  # fmt: skip

# A 30-day trend above +2 points reads as "up", below -2 as "down", anything between as "flat":
# scores are whole numbers and move a point or two on noise alone.
TREND_FLAT_WITHIN = 2


@dataclass(frozen=True, kw_only=True)
class AccountFilter:
    """What a page of accounts is limited to; empty collections and None mean "any"."""

    connection: str
    bands: Collection[str] = ()
    customer: bool | None = None
    segments: Collection[str] = ()
    owners: Collection[str] = ()
    score_min: int | None = None
    score_max: int | None = None
    trend: Trend | None = None
    name_contains: str | None = None
    # Renewal dates from `renewal_from` to `renewal_to`, both inclusive.
    renewal_from: date | None = None
    renewal_to: date | None = None


def conditions(where: AccountFilter, *, scan: bool = False) -> list[ColumnElement[bool]]:
    """The WHERE terms of `where` on `Account` (live accounts of its connection only).

    `scan`: for reads of most of a connection's rows, the connection is compared as an
    expression no index serves, so the table is read in order. Without statistics SQLite's
    planner would walk an index on the connection and fetch every row from it, several times
    slower for a whole book."""
    connection = Account.connection + "" if scan else Account.connection
    found: list[ColumnElement[bool]] = [
        connection == where.connection,
        Account.deleted_at.is_(None),
        # A record the CRM does not have is no customer account (GET by id still shows it).
        Account.not_found_at.is_(None),
    ]
    if where.bands:
        found.append(Account.band.in_(list(where.bands)))
    if where.customer is not None:
        found.append(Account.customer.is_(where.customer))
    if where.segments:
        found.append(Account.segment.in_(list(where.segments)))
    if where.owners:
        found.append(Account.owner.in_(list(where.owners)))
    if where.score_min is not None:
        found.append(Account.score >= where.score_min)
    if where.score_max is not None:
        found.append(Account.score <= where.score_max)
    if where.trend == "up":
        found.append(Account.trend_30d > TREND_FLAT_WITHIN)
    elif where.trend == "down":
        found.append(Account.trend_30d < -TREND_FLAT_WITHIN)
    elif where.trend == "flat":
        found.append(Account.trend_30d.between(-TREND_FLAT_WITHIN, TREND_FLAT_WITHIN))
    if where.name_contains:
        found.append(Account.name.icontains(where.name_contains, autoescape=True))
    if where.renewal_from is not None:
        found.append(Account.renewal_date >= where.renewal_from)
    if where.renewal_to is not None:
        found.append(Account.renewal_date <= where.renewal_to)
    return found


def _ordered(query: Select[Any], sort: SortKey) -> Select[Any]:
    column: Any = {
        "score": Account.score,
        "name": func.lower(Account.name),
        "updated_at": Account.health_updated_at,
        "trend": Account.trend_30d,
        "arr": Account.arr,
        "renewal": Account.renewal_date,
    }[sort.lstrip("-")]
    direction = column.desc() if sort.startswith("-") else column.asc()
    # Nulls last either way, spelled portably (SQLite and PostgreSQL differ on the default);
    # the CRM id breaks ties so pages never overlap.
    return query.order_by(column.is_(None), direction, Account.crm_id)


async def page(
    session: AsyncSession, *, where: AccountFilter, sort: SortKey, limit: int, offset: int
) -> tuple[list[AccountRow], int]:
    """One page of matching accounts and how many match in all."""
    terms = conditions(where)
    total = await session.scalar(select(func.count()).select_from(Account).where(*terms))
    rows = await accounts.read_rows(
        session,
        _ordered(accounts.select_rows().where(*terms), sort).limit(limit).offset(offset),
    )
    return rows, int(total or 0)


async def matching_ids(session: AsyncSession, *, where: AccountFilter, sort: SortKey) -> list[int]:
    """The ids of every matching account, in the list's order: an export sorts once, then
    reads the rows a page at a time by id (no OFFSET rescans, and one order however the rows
    change meanwhile)."""
    found = await session.scalars(_ordered(select(Account.id).where(*conditions(where)), sort))
    return list(found)


async def rows_by_id(session: AsyncSession, *, ids: Sequence[int]) -> list[AccountRow]:
    """The accounts of `ids`, in that order (one left since gone is left out)."""
    if not ids:
        return []
    rows = await accounts.read_rows(session, accounts.select_rows().where(Account.id.in_(ids)))
    by_id = {row.id: row for row in rows}
    return [by_id[account_id] for account_id in ids if account_id in by_id]


async def find(session: AsyncSession, *, connection: str, crm_id: str) -> AccountRow | None:
    """The connection's account with this CRM record id (a deleted one too: its history stays)."""
    found = await accounts.read_rows(
        session,
        accounts.select_rows().where(Account.connection == connection, Account.crm_id == crm_id),
    )
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    score: int | None
    band: str
    config_version: str | None = None


async def history(
    session: AsyncSession, *, account_ids: Sequence[int], since: datetime
) -> dict[int, list[Point]]:
    """Each account's health from `since` on, oldest first: the state in force at `since` (the
    history is a step function), then every change after it. Two queries for any number of
    accounts."""
    if not account_ids:
        return {}
    ids = list(account_ids)
    found: dict[int, list[Point]] = defaultdict(list)
    seeds = await latest_rows(
        session,
        HealthSnapshot,
        columns=("account_id", "score", "band", "config_version"),
        account_ids=ids,
        time="computed_at",
        where=lambda row: [row.computed_at < since],
    )
    for account_id, score, band, version in seeds:
        found[account_id] = [Point(since, score, band, version)]
    rows = await session.execute(
        select(
            HealthSnapshot.account_id,
            HealthSnapshot.computed_at,
            HealthSnapshot.score,
            HealthSnapshot.band,
            HealthSnapshot.config_version,
        )
        .where(HealthSnapshot.account_id.in_(ids), HealthSnapshot.computed_at >= since)
        .order_by(HealthSnapshot.account_id, HealthSnapshot.computed_at, HealthSnapshot.id)
    )
    for account_id, at, score, band, version in rows:
        found[account_id].append(Point(at, score, band, version))
    return dict(found)


async def open_alerts(session: AsyncSession, *, account_id: int, now: datetime) -> int:
    """Alerts of the account that read as open: open, or snoozed with the snooze run out."""
    count = await session.scalar(
        select(func.count())
        .select_from(Alert)
        .where(
            Alert.account_id == account_id,
            or_(
                Alert.status == OPEN,
                and_(
                    Alert.status == SNOOZED,
                    or_(Alert.snoozed_until.is_(None), Alert.snoozed_until <= now),
                ),
            ),
        )
    )
    return int(count or 0)


async def sentiment_history(
    session: AsyncSession, *, account_id: int, limit: int
) -> list[SentimentFact]:
    """The account's CSM sentiments as set and cleared, newest first: the audit."""
    rows = await session.scalars(
        select(SentimentFact)
        .where(SentimentFact.account_id == account_id)
        .order_by(SentimentFact.at.desc(), SentimentFact.id.desc())
        .limit(limit)
    )
    return list(rows)
