"""The one place that knows SQLite and PostgreSQL spell upserts differently."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from webhooks.store.models import Base, core_table


def upsert_insert(session: AsyncSession | AsyncConnection, model: type[Base]) -> Any:
    """An INSERT supporting on_conflict_do_nothing/on_conflict_do_update on this backend,
    built on the Core table (see models.core_table)."""
    table = core_table(model)
    dialect = (
        session.dialect if isinstance(session, AsyncConnection) else session.get_bind().dialect
    )
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
