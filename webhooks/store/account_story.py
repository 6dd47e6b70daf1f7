"""Read-only queries behind the account page's story: the configuration in force at a moment
and the versions applied in a window, the account's contacts, and its week-by-week activity
and events. Every read is bounded by its window (and its events by a limit), not by history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from signals.config import HealthConfig
from webhooks.store.dialect import utc_day
from webhooks.store.facts import ESCALATION_PRIORITIES
from webhooks.store.models import (
    Alert,
    CollaborationFact,
    ConfigVersion,
    ContactFact,
    InteractionFact,
    OutcomeFact,
    SentimentFact,
    SurveyFact,
    TicketFact,
    UsageMonth,
)

# --- configuration versions ---------------------------------------------------------------------


async def config_at(session: AsyncSession, *, at: datetime) -> tuple[int | None, HealthConfig]:
    """The configuration in force at `at` and its version id: the newest version stored by
    then; the defaults (id None) before the first."""
    row = (
        await session.execute(
            select(ConfigVersion.id, ConfigVersion.document)
            .where(ConfigVersion.created_at <= at)
            .order_by(ConfigVersion.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None, HealthConfig()
    return row[0], HealthConfig.model_validate(row[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange:
    at: datetime
    version: int
    author: str
    comment: str


async def config_changes(
    session: AsyncSession, *, connection: str, since: datetime, until: datetime
) -> list[ConfigChange]:
    """The versions applied after `since` up to `until` that apply to `connection` (global
    ones and those limited to it), oldest first."""
    rows = await session.execute(
        select(ConfigVersion.created_at, ConfigVersion.id, ConfigVersion.author,
               ConfigVersion.comment)
        .where(
            ConfigVersion.created_at > since,
            ConfigVersion.created_at <= until,
            or_(ConfigVersion.scope.is_(None), ConfigVersion.scope == connection),
        )
        .order_by(ConfigVersion.id)
    )  # fmt: skip
    return [
        ConfigChange(at=at, version=version, author=author, comment=comment or "")
        for at, version, author, comment in rows
    ]


# --- contacts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRow:
    contact: str
    title: str | None
    executive: bool
    first_seen_at: datetime | None
    left_at: datetime | None
    last_interaction_at: datetime | None


async def contacts(
    session: AsyncSession,
    *,
    account_id: int,
    left_since: datetime,
    interactions_since: datetime,
    limit: int,
) -> tuple[list[ContactRow], int]:
    """The account's contacts still there and those who left after `left_since`: executives
    first, then by their latest interaction after `interactions_since` (newest first, none
    last), then by name; at most `limit`, and how many there are in all."""
    kept = [
        ContactFact.account_id == account_id,
        or_(ContactFact.left_at.is_(None), ContactFact.left_at > left_since),
    ]
    latest = (
        select(InteractionFact.contact, func.max(InteractionFact.at).label("at"))
        .where(
            InteractionFact.account_id == account_id,
            InteractionFact.at > interactions_since,
            InteractionFact.contact.is_not(None),
        )
        .group_by(InteractionFact.contact)
        .subquery()
    )
    rows = await session.execute(
        select(
            ContactFact.contact,
            ContactFact.title,
            ContactFact.executive,
            ContactFact.first_seen_at,
            ContactFact.left_at,
            latest.c.at,
        )
        .outerjoin(latest, latest.c.contact == ContactFact.contact)
        .where(*kept)
        .order_by(
            ContactFact.executive.desc(),
            latest.c.at.is_(None),
            latest.c.at.desc(),
            ContactFact.contact,
        )
        .limit(limit)
    )
    found = [
        ContactRow(
            contact=contact,
            title=title,
            executive=bool(executive),
            first_seen_at=first_seen_at,
            left_at=left_at,
            last_interaction_at=last,
        )
        for contact, title, executive, first_seen_at, left_at, last in rows
    ]
    total = await session.scalar(select(func.count()).select_from(ContactFact).where(*kept))
    return found, int(total or 0)


# --- week by week -------------------------------------------------------------------------------


@dataclass(slots=True)
class DayCounts:
    interactions_ours: int = 0
    interactions_customer: int = 0
    tickets: int = 0
    escalations: int = 0
    collaborations: int = 0


def _day(value: Any) -> date:
    """A utc_day() value: a date on PostgreSQL, ISO text on SQLite."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def daily_counts(
    session: AsyncSession, *, account_id: int, since: datetime, until: datetime
) -> dict[date, DayCounts]:
    """Per UTC day from `since` up to `until`: the account's interactions by who started
    them, tickets opened (high and urgent ones too) and collaboration events."""
    days: dict[date, DayCounts] = {}

    def on(day: Any) -> DayCounts:
        return days.setdefault(_day(day), DayCounts())

    day = utc_day(session, InteractionFact.at)
    for found, direction, count in await session.execute(
        select(day, InteractionFact.direction, func.count())
        .where(
            InteractionFact.account_id == account_id,
            InteractionFact.at >= since,
            InteractionFact.at <= until,
        )
        .group_by(day, InteractionFact.direction)
    ):
        counts = on(found)
        if direction == "customer":
            counts.interactions_customer += count
        else:
            counts.interactions_ours += count
    day = utc_day(session, TicketFact.opened_at)
    for found, count, escalated in await session.execute(
        select(
            day,
            func.count(),
            func.sum(case((TicketFact.priority.in_(ESCALATION_PRIORITIES), 1), else_=0)),
        )
        .where(
            TicketFact.account_id == account_id,
            TicketFact.opened_at >= since,
            TicketFact.opened_at <= until,
        )
        .group_by(day)
    ):
        counts = on(found)
        counts.tickets += count
        counts.escalations += int(escalated or 0)
    day = utc_day(session, CollaborationFact.at)
    for found, count in await session.execute(
        select(day, func.count())
        .where(
            CollaborationFact.account_id == account_id,
            CollaborationFact.at >= since,
            CollaborationFact.at <= until,
        )
        .group_by(day)
    ):
        on(found).collaborations += count
    return days


async def weekly_active_users(
    session: AsyncSession, *, account_id: int, weeks: Sequence[date], until: date
) -> dict[date, int]:
    """Per week (its Monday, of `weeks`, oldest first): the distinct people who used the
    product on a day of it up to `until`, from the per-user monthly day bits."""
    if not weeks:
        return {}
    first = weeks[0].replace(day=1)
    rows = await session.execute(
        select(UsageMonth.month, UsageMonth.user, UsageMonth.days).where(
            UsageMonth.account_id == account_id,
            UsageMonth.month >= first,
            UsageMonth.month <= until,
        )
    )
    users: dict[date, set[str]] = {week: set() for week in weeks}
    for month, user, bits in rows:
        for bit in range(31):
            if not bits >> bit & 1:
                continue
            day = month + timedelta(days=bit)
            if day > until or day < weeks[0]:
                continue
            week = day - timedelta(days=day.weekday())
            if week in users:
                users[week].add(user)
    return {week: len(found) for week, found in users.items()}


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """One dated thing that happened to the account, as stored: its kind and columns."""

    at: datetime
    kind: str
    values: dict[str, Any]


async def events(
    session: AsyncSession, *, account_id: int, since: datetime, until: datetime, limit: int
) -> list[StoredEvent]:
    """The account's dated facts after `since` up to `until` of every kind (interactions,
    tickets, collaboration, contacts gained and lost, survey answers, sentiments, outcomes,
    alerts): the newest `limit` of each kind, so the newest `limit` of them all are among
    them (one more of a kind than `limit` says there were more)."""
    found: list[StoredEvent] = []
    reads: tuple[tuple[str, Any, tuple[Any, ...]], ...] = (
        ("interaction", InteractionFact.at,
         (InteractionFact.channel, InteractionFact.direction, InteractionFact.contact)),
        ("ticket", TicketFact.opened_at, (TicketFact.ticket, TicketFact.priority)),
        ("collaboration", CollaborationFact.at, (CollaborationFact.kind,)),
        ("contact_gained", ContactFact.first_seen_at,
         (ContactFact.contact, ContactFact.title, ContactFact.executive)),
        ("contact_left", ContactFact.left_at,
         (ContactFact.contact, ContactFact.title, ContactFact.executive)),
        ("survey", SurveyFact.at,
         (SurveyFact.kind, SurveyFact.score, SurveyFact.respondent, SurveyFact.comment)),
        ("sentiment", SentimentFact.at,
         (SentimentFact.rating, SentimentFact.reason, SentimentFact.note, SentimentFact.author,
          SentimentFact.until)),
        ("outcome", OutcomeFact.at, (OutcomeFact.outcome, OutcomeFact.arr)),
        ("alert", Alert.fired_at,
         (Alert.id, Alert.title, Alert.rule, Alert.severity, Alert.status)),
    )  # fmt: skip
    for kind, at, columns in reads:
        model = at.class_
        rows = await session.execute(
            select(at, *columns)
            .where(model.account_id == account_id, at > since, at <= until)
            .order_by(at.desc())
            .limit(limit)
        )
        names = [column.key for column in columns]
        found.extend(
            StoredEvent(at=row[0], kind=kind, values=dict(zip(names, row[1:], strict=True)))
            for row in rows
        )
    return found
