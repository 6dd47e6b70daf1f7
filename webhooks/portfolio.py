"""The portfolio: one connection's live customer accounts at a glance. Accounts and ARR by band
now and for each of the last 91 days, the accounts whose score moved most in a week, the
renewals of the next 90 days, and the segments and owners to filter by."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, Field

from webhooks.accounts_view import AccountQuery, RecordLink, account_filter, no_link
from webhooks.store import owners
from webhooks.store import portfolio as queries
from webhooks.store.account_views import AccountFilter
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import AccountRow
from webhooks.store.portfolio import BandSum

# Every band, in the order the portfolio shows them.
BANDS = ("healthy", "neutral", "at_risk", "onboarding", "unknown")
HISTORY_DAYS = 91
MOVER_DAYS = 7
MOVERS = 10
RENEWAL_DAYS = 90
RENEWALS = 50

_Read = TypeVar("_Read")


class Totals(BaseModel):
    accounts: int = Field(description="Live customer accounts matching the filters.")
    arr: float = Field(description="Their ARR summed (accounts without one add nothing).")
    accounts_without_arr: int = Field(description="Those of them without an ARR.")
    accounts_at_risk: int = Field(description="Those of them in the at_risk band.")
    arr_at_risk: float = Field(description="The ARR of the at_risk ones summed.")


class BandTotal(BaseModel):
    band: str = Field(description="healthy, neutral, at_risk, onboarding or unknown.")
    accounts: int = Field(description="Accounts in the band.")
    arr: float = Field(description="Their ARR summed.")


class DayBand(BaseModel):
    accounts: int = Field(description="Accounts in the band at the end of the day.")
    arr: float = Field(description="Their ARR summed, as it stood that day.")


class HistoryDay(BaseModel):
    day: date = Field(description="A UTC day.")
    bands: dict[str, DayBand] = Field(
        description="Every band (healthy, neutral, at_risk, onboarding, unknown): the accounts "
        "in it at the end of the day (health is a step function: the band last computed by "
        "then) and their ARR then. An account not scored yet that day is in none."
    )


class ListedAccount(BaseModel):
    """An account as the movers and the renewals name it."""

    id: str = Field(description="The CRM record id.")
    name: str | None = Field(description="The account's name.")
    band: str = Field(description="The band now.")
    arr: float | None = Field(description="The ARR now; null when unknown.")
    owner: str | None = Field(description="The owner attribute (the CRM's owner id).")
    owner_name: str | None = Field(description="The owner's name, when the CRM gave it.")
    record_url: str | None = Field(description="A link to the record in the CRM, when known.")


class Mover(ListedAccount):
    score: int = Field(description="The score now, 0..100.")
    score_before: int = Field(description="The score in force `days` days ago.")
    band_before: str = Field(description="The band in force `days` days ago.")
    change: int = Field(description="score - score_before.")


class Movers(BaseModel):
    days: int = Field(description="The window: the score now against the one this long ago.")
    items: list[Mover] = Field(
        description=f"Up to {MOVERS} accounts with the largest score change either way, "
        "largest first (ties: larger ARR, then record id). Accounts without a score then or "
        "now, or with no change, are left out."
    )


class Renewal(ListedAccount):
    renewal_date: date = Field(description="The renewal date.")
    days_left: int = Field(description="Days from today (UTC) to the renewal date; 0: today.")
    score: int | None = Field(description="The score now, 0..100; null without data.")


class Renewals(BaseModel):
    days: int = Field(description="The window: renewal dates from today to today + days.")
    total: int = Field(description="Accounts renewing in the window.")
    bands: list[BandTotal] = Field(
        description="The accounts renewing in the window by band (every band, in order)."
    )
    items: list[Renewal] = Field(
        description=f"The {RENEWALS} soonest renewals at most, soonest first (ties: larger "
        "ARR, then record id)."
    )


class SegmentFacet(BaseModel):
    value: str = Field(description="A segment.")
    accounts: int = Field(description="Live customer accounts in it.")


class OwnerFacet(BaseModel):
    value: str = Field(description="An owner id (the owner attribute).")
    name: str | None = Field(description="The owner's name, when the CRM gave it.")
    accounts: int = Field(description="Live customer accounts they own.")


class Facets(BaseModel):
    segments: list[SegmentFacet] = Field(
        description="Every segment of the connection's live customer accounts (whatever the "
        "filters), most accounts first."
    )
    owners: list[OwnerFacet] = Field(
        description="Every owner of the connection's live customer accounts (whatever the "
        "filters), most accounts first."
    )


class Portfolio(BaseModel):
    currency: str = Field(description="ISO 4217 code of every ARR (CRM_HEALTH_CURRENCY).")
    as_of: datetime = Field(description="When it was computed.")
    totals: Totals = Field(description="The matching accounts now.")
    bands: list[BandTotal] = Field(
        description="The matching accounts now by band: every band, in the order healthy, "
        "neutral, at_risk, onboarding, unknown."
    )
    history: list[HistoryDay] = Field(
        description=f"{HISTORY_DAYS} days, oldest first, the last today (UTC): the matching "
        "accounts by band at the end of each day, with the ARR in force that day."
    )
    movers: Movers = Field(description="The biggest score moves of the last days.")
    renewals: Renewals = Field(description="The renewals ahead.")
    facets: Facets = Field(description="The values the filters can take, with their counts.")


def _band_totals(sums: list[BandSum]) -> list[BandTotal]:
    found = {row.band: row for row in sums}
    return [
        BandTotal(
            band=band,
            accounts=found[band].accounts if band in found else 0,
            arr=found[band].arr if band in found else 0.0,
        )
        for band in BANDS
    ]


def _totals(sums: list[BandSum]) -> Totals:
    at_risk = [row for row in sums if row.band == "at_risk"]
    return Totals(
        accounts=sum(row.accounts for row in sums),
        arr=sum(row.arr for row in sums),
        accounts_without_arr=sum(row.accounts - row.with_arr for row in sums),
        accounts_at_risk=sum(row.accounts for row in at_risk),
        arr_at_risk=sum(row.arr for row in at_risk),
    )


def _history(found: dict[tuple[int, str], tuple[int, float]], first: date) -> list[HistoryDay]:
    return [
        HistoryDay(
            day=first + timedelta(days=index),
            bands={
                band: DayBand(
                    accounts=found.get((index, band), (0, 0.0))[0],
                    arr=found.get((index, band), (0, 0.0))[1],
                )
                for band in BANDS
            },
        )
        for index in range(HISTORY_DAYS)
    ]


def _live_customers(where: AccountFilter) -> AccountFilter:
    # Live accounts only (conditions always say so); customers only, whatever was asked.
    return replace(where, customer=True)


@dataclass(frozen=True, kw_only=True)
class _Current:
    """What the portfolio reads of the accounts as they are now."""

    by_band: list[BandSum]
    movers: list[queries.Mover]
    renewing: list[BandSum]
    soonest: list[AccountRow]
    segments: list[queries.Facet]
    owners: list[queries.Facet]
    names: dict[str, str]


async def _current(
    session: AsyncSession, *, where: AccountFilter, now: datetime, today: date
) -> _Current:
    moved = await queries.movers(
        session, where=where, since=now - timedelta(days=MOVER_DAYS), limit=MOVERS
    )
    renewing, soonest = await queries.renewals(
        session, where=where, first=today, last=today + timedelta(days=RENEWAL_DAYS),
        limit=RENEWALS,
    )  # fmt: skip
    segments, owner_facets = await queries.facets(
        session, where=AccountFilter(connection=where.connection, customer=True)
    )
    return _Current(
        by_band=await queries.by_band(session, where=where),
        movers=moved,
        renewing=renewing,
        soonest=soonest,
        segments=segments,
        owners=owner_facets,
        names=await owners.owner_names(
            session,
            connection=where.connection,
            owner_ids=[m.account.owner for m in moved] + [a.owner for a in soonest],
        ),
    )


async def portfolio(
    sessions: SessionFactory,
    *,
    connection: str,
    query: AccountQuery,
    now: datetime,
    currency: str,
    record_url: RecordLink = no_link,
) -> Portfolio:
    """The portfolio of the connection's live customer accounts matching `query`'s band,
    segment, owner and renewal filters (facets: of all of them); InvalidFields naming a
    filter that cannot be, as the accounts list raises it.

    Three reads run at once, each in a session of its own (the read pool has room): the
    history of the accounts whose ARR held in the window, that of the others, and the rest.
    Each is consistent in itself; a write landing between them may show in one only."""
    today = now.astimezone(UTC).date()
    where = _live_customers(account_filter(query, connection=connection, today=today))
    first = today - timedelta(days=HISTORY_DAYS - 1)

    async def read(work: Callable[[AsyncSession], Awaitable[_Read]]) -> _Read:
        async with sessions() as session:
            await queries.prepare(session)
            return await work(session)

    held, changed, current = await asyncio.gather(
        read(
            lambda s: queries.day_moves(s, where=where, first=first, last=today, arr_changed=False)
        ),
        read(
            lambda s: queries.day_moves(s, where=where, first=first, last=today, arr_changed=True)
        ),
        read(lambda s: _current(s, where=where, now=now, today=today)),
    )
    days = queries.band_days([*held, *changed], first=first, last=today)
    names = current.names

    def name_of(owner: str | None) -> str | None:
        return None if owner is None else names.get(owner)

    return Portfolio(
        currency=currency,
        as_of=now,
        totals=_totals(current.by_band),
        bands=_band_totals(current.by_band),
        history=_history(days, first),
        movers=Movers(
            days=MOVER_DAYS,
            items=[
                Mover(
                    id=m.account.crm_id,
                    name=m.account.name,
                    score=m.score,
                    band=m.account.band,
                    score_before=m.score_before,
                    band_before=m.band_before,
                    change=m.score - m.score_before,
                    arr=m.account.arr,
                    owner=m.account.owner,
                    owner_name=name_of(m.account.owner),
                    record_url=record_url(m.account.crm_id),
                )
                for m in current.movers
            ],
        ),
        renewals=Renewals(
            days=RENEWAL_DAYS,
            total=sum(row.accounts for row in current.renewing),
            bands=_band_totals(current.renewing),
            items=[
                Renewal(
                    id=a.crm_id,
                    name=a.name,
                    # Never None here (the window selects them by it): `or` is for the type.
                    renewal_date=a.renewal_date or today,
                    days_left=((a.renewal_date or today) - today).days,
                    band=a.band,
                    score=a.score,
                    arr=a.arr,
                    owner=a.owner,
                    owner_name=name_of(a.owner),
                    record_url=record_url(a.crm_id),
                )
                for a in current.soonest
            ],
        ),
        facets=Facets(
            segments=[SegmentFacet(value=f.value, accounts=f.accounts) for f in current.segments],
            owners=[
                OwnerFacet(value=f.value, name=f.name, accounts=f.accounts) for f in current.owners
            ],
        ),
    )
