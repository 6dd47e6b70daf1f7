"""The one place that knows SQLite and PostgreSQL spell things differently: upserts, and the
hint SQLite's planner needs about statuses few rows hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from webhooks.store.models import Base, core_table


def upsert_insert(session: AsyncSession | AsyncConnection, model: type[Base]) -> Any:
    """An INSERT supporting on_conflict_do_nothing/on_conflict_do_update on this backend,
    built on the Core table (see models.core_table)."""
    table = core_table(model)
    if is_postgresql(session):
        return postgresql.insert(table)
    return sqlite.insert(table)


# The share of rows SQLite's planner is told a `rare` condition holds for (a constant in the
# SQL text: `likelihood` takes no bound parameter).
_RARE: ColumnElement[float] = literal_column("0.01")


def rare(
    session: AsyncSession | AsyncConnection, condition: ColumnElement[bool]
) -> ColumnElement[bool]:
    """`condition` (a status equality) marked as true of few rows. SQLite's ANALYZE, run when
    nearly every inbox or outbox row is settled, records one status for the whole table, and
    its planner then scans every row rather than search the status index: a scan of the
    inbox's retained history on each claim. `likelihood` overrides that estimate and still
    lets the index serve the term. PostgreSQL's statistics keep the rare values (and its
    inbox index holds only unsettled rows)."""
    if not is_postgresql(session):
        return func.likelihood(condition, _RARE)
    return condition


def utc_day(session: AsyncSession | AsyncConnection, column: Any) -> Any:
    """The UTC day of a timestamp column, to group by: PostgreSQL's own cast would follow the
    session's time zone; SQLite holds UTC text (the day comes back as ISO text there)."""
    if is_postgresql(session):
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def is_postgresql(session: AsyncSession | AsyncConnection) -> bool:
    """Whether `session` runs on PostgreSQL (the other backend is SQLite)."""
    return bool(_dialect(session).name == "postgresql")


def _dialect(session: AsyncSession | AsyncConnection) -> Any:
    return session.dialect if isinstance(session, AsyncConnection) else session.get_bind().dialect
