"""Each person's preferences, by connection and key name: read them, replace them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.dialect import upsert_insert
from webhooks.store.models import UserPreference

__all__ = ["read_preferences", "save_preferences"]


async def read_preferences(
    session: AsyncSession, *, connection: str, user_name: str
) -> dict[str, Any]:
    """What the user stored ({} when nothing yet)."""
    found = await session.scalar(
        select(UserPreference.preferences).where(
            UserPreference.connection == connection, UserPreference.user_name == user_name
        )
    )
    return dict(found) if isinstance(found, dict) else {}


async def save_preferences(
    session: AsyncSession,
    *,
    connection: str,
    user_name: str,
    preferences: dict[str, Any],
    now: datetime,
) -> None:
    """Store the user's preferences, replacing what was there."""
    values = {"preferences": preferences, "updated_at": now}
    statement = upsert_insert(session, UserPreference).values(
        connection=connection, user_name=user_name, **values
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["connection", "user_name"], set_=values)
    )
