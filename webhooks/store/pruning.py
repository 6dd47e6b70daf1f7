"""Retention queries: which rows of each table may go (a `Rule`), deleting them a batch at a
time and counting them, and giving SQLite the freed pages back. The policy and its schedule are
webhooks.retention; the inbox's rule is inbox.delete_processed, usage's facts.prune_usage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from webhooks.store import configs
from webhooks.store.dialect import is_postgresql
from webhooks.store.models import (
    AdminSession,
    Alert,
    AlertChannelBudget,
    AlertDelivery,
    AttributeChange,
    CollaborationFact,
    CRMOwnerContact,
    HealthSnapshot,
    InstallGrant,
    InteractionFact,
    RecomputeJob,
    SentimentFact,
    SurveyFact,
    TicketFact,
)

RESOLVED = "resolved"
# Delivery states that are over: a message sent, or given up on until someone retries it.
FINISHED_DELIVERIES = ("sent", "failed")
FINISHED_JOB = configs.DONE
# Pages SQLite gives back to the file system per incremental_vacuum step (4 MB of 4 KB pages):
# each step holds the write lock briefly, like a delete batch.
VACUUM_PAGES = 1000


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Which rows of one table may go: `where(dialect)` selects them."""

    model: Any
    where: Callable[[str], ColumnElement[bool]]


async def delete_batch(session: AsyncSession, *, rule: Rule, limit: int) -> int:
    """Delete up to `limit` of the rule's rows (lowest keys first); how many went."""
    return await delete_where(
        session, model=rule.model, where=rule.where(session.get_bind().dialect.name), limit=limit
    )


async def count(session: AsyncSession, *, rule: Rule) -> int:
    """How many rows the rule would delete now."""
    return await count_where(
        session, model=rule.model, where=rule.where(session.get_bind().dialect.name)
    )


async def delete_where(
    session: AsyncSession, *, model: Any, where: ColumnElement[bool], limit: int
) -> int:
    """Delete up to `limit` rows matching `where`, lowest primary keys first; how many went.

    The rows are chosen by a read first and deleted by key (checked against `where` again, for
    rows that changed meanwhile): on SQLite the write lock is then held only for the deletes
    themselves, not for the search, which can take a while on a big table."""
    keys = list(model.__table__.primary_key.columns)
    chosen = (await session.execute(select(*keys).where(where).order_by(*keys).limit(limit))).all()
    if not chosen:
        return 0
    matching = (
        keys[0].in_([row[0] for row in chosen])
        if len(keys) == 1
        else tuple_(*keys).in_([tuple(row) for row in chosen])
    )
    result = await session.execute(
        delete(model).where(matching, where).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_where(session: AsyncSession, *, model: Any, where: ColumnElement[bool]) -> int:
    found = await session.scalar(select(func.count()).select_from(model).where(where))
    return int(found or 0)


async def vacuum_step(session: AsyncSession) -> int:
    """SQLite: return up to VACUUM_PAGES free pages to the file system (databases created with
    auto_vacuum=INCREMENTAL; on others a no-op); the free pages left. PostgreSQL: 0, its
    autovacuum makes the space reusable."""
    if is_postgresql(session):
        return 0
    # The pragma frees one page per step of its statement, and the driver's execute() steps
    # once; executescript() runs it to the end (the session holds no transaction here).
    raw = await (await session.connection()).get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
    return int(await session.scalar(text("PRAGMA freelist_count")) or 0)


# --- the rules ---------------------------------------------------------------------------------


def older_facts(model: Any, at: Any, cutoff: datetime) -> Rule:
    """Dated facts (interactions, collaboration events, tickets by opening, survey answers)
    before `cutoff`."""
    return Rule(model=model, where=lambda _dialect: at < cutoff)


def fact_rules(cutoff: datetime) -> dict[str, Rule]:
    return {
        "interactions": older_facts(InteractionFact, InteractionFact.at, cutoff),
        "collaboration_events": older_facts(CollaborationFact, CollaborationFact.at, cutoff),
        "tickets": older_facts(TicketFact, TicketFact.opened_at, cutoff),
        "survey_responses": older_facts(SurveyFact, SurveyFact.at, cutoff),
        # A sentiment lasts a year at most: one set before the cutoff ended long ago.
        "csm_sentiments": older_facts(SentimentFact, SentimentFact.at, cutoff),
    }


def _any(later: Any, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """Whether a row of `later` meets the conditions, as a scalar subquery with LIMIT 1:
    PostgreSQL turns an EXISTS into a hash semi-join on the account (every row of an account
    against every other), while this runs as one index probe per row on both backends."""
    return select(later.id).where(*conditions).limit(1).scalar_subquery().is_not(None)


def _newer(later: Any, row: Any, time: str) -> ColumnElement[bool]:
    """`later` comes after `row` in (time, id) order: a tie in time goes to the higher id."""
    later_at, row_at = getattr(later, time), getattr(row, time)
    return or_(later_at > row_at, and_(later_at == row_at, later.id > row.id))


def superseded_attributes(cutoff: datetime) -> Rule:
    """Attribute changes before `cutoff` that a later change at or before it replaced: the
    value in force at the cutoff (ARR a year before a backtest's moment) stays."""

    def where(_dialect: str) -> ColumnElement[bool]:
        later = aliased(AttributeChange)
        return and_(
            AttributeChange.at < cutoff,
            _any(
                later,
                later.account_id == AttributeChange.account_id,
                later.name == AttributeChange.name,
                later.at <= cutoff,
                _newer(later, AttributeChange, "at"),
            ),
        )

    return Rule(model=AttributeChange, where=where)


def _next_utc_midnight(column: Any, dialect: str) -> Any:
    # SQLite holds UTC as text, which compares as time; PostgreSQL works in UTC, then back.
    if dialect == "sqlite":
        return func.datetime(func.date(column), "+1 day")
    midnight = func.date_trunc("day", func.timezone("UTC", column)) + text("interval '1 day'")
    return func.timezone("UTC", midnight)


def thinned_health(*, since: datetime, full_before: datetime) -> Rule:
    """Health rows from `since` (older ones are expired_health's) to `full_before` other than
    each account's last of a UTC day under each configuration version: readers look for the
    latest row at or before a moment (under a version), which the day's last row still answers
    to the day. Each row is judged by one probe of the (account, time) index for a later row
    of its day."""

    def where(dialect: str) -> ColumnElement[bool]:
        later = aliased(HealthSnapshot)
        return and_(
            HealthSnapshot.computed_at >= since,
            HealthSnapshot.computed_at < full_before,
            _any(
                later,
                later.account_id == HealthSnapshot.account_id,
                later.computed_at >= HealthSnapshot.computed_at,
                later.computed_at < _next_utc_midnight(HealthSnapshot.computed_at, dialect),
                later.computed_at < full_before,
                later.config_version.is_not_distinct_from(HealthSnapshot.config_version),
                or_(
                    later.computed_at > HealthSnapshot.computed_at,
                    later.id > HealthSnapshot.id,
                ),
            ),
        )

    return Rule(model=HealthSnapshot, where=where)


def expired_health(cutoff: datetime) -> Rule:
    """Health rows before `cutoff` except each account's newest before it (per version): the
    band in force then, which hysteresis and score drops of a long-idle account still read."""

    def where(_dialect: str) -> ColumnElement[bool]:
        later = aliased(HealthSnapshot)
        return and_(
            HealthSnapshot.computed_at < cutoff,
            _any(
                later,
                later.account_id == HealthSnapshot.account_id,
                later.config_version.is_not_distinct_from(HealthSnapshot.config_version),
                later.computed_at < cutoff,
                _newer(later, HealthSnapshot, "computed_at"),
            ),
        )

    return Rule(model=HealthSnapshot, where=where)


def resolved_alerts(cutoff: datetime) -> Rule:
    """Alerts resolved before `cutoff`; their reasons and deliveries go with them (cascade)."""
    return Rule(
        model=Alert,
        where=lambda _dialect: and_(Alert.status == RESOLVED, Alert.resolved_at < cutoff),
    )


def finished_deliveries(cutoff: datetime) -> Rule:
    """Sent or failed deliveries created before `cutoff` of alerts still open (acknowledged,
    snoozed): the alert itself stays."""
    return Rule(
        model=AlertDelivery,
        where=lambda _dialect: and_(
            AlertDelivery.status.in_(FINISHED_DELIVERIES),
            AlertDelivery.created_at < cutoff,
            AlertDelivery.alert_id.in_(select(Alert.id).where(Alert.status != RESOLVED)),
        ),
    )


def housekeeping_rules(cutoff: datetime) -> dict[str, Rule]:
    """Small tables that grow with use: what expired, finished or went stale before `cutoff`."""
    return {
        "admin_sessions": Rule(
            model=AdminSession, where=lambda _dialect: AdminSession.expires_at < cutoff
        ),
        "install_grants": Rule(
            model=InstallGrant, where=lambda _dialect: InstallGrant.expires_at < cutoff
        ),
        "recompute_jobs": Rule(
            model=RecomputeJob,
            where=lambda _dialect: and_(
                RecomputeJob.status == FINISHED_JOB, RecomputeJob.finished_at < cutoff
            ),
        ),
        "alert_channel_budgets": Rule(
            model=AlertChannelBudget,
            where=lambda _dialect: AlertChannelBudget.day < cutoff.date(),
        ),
        # Read from the CRM again after a day anyway: an old row is only a cache entry.
        "crm_owners": Rule(
            model=CRMOwnerContact, where=lambda _dialect: CRMOwnerContact.fetched_at < cutoff
        ),
    }
