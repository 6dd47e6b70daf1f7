"""Record owners' e-mail and name as their CRM last answered (the owner routing's cache)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.dialect import upsert_insert
from webhooks.store.models import CRMOwnerContact

__all__ = ["KnownOwner", "owner_names", "read_owners", "save_owner"]


@dataclass(frozen=True, kw_only=True)
class KnownOwner:
    """One owner as stored: `found` False when the CRM had no such owner."""

    connection: str
    owner_id: str
    email: str | None
    name: str | None
    found: bool
    fetched_at: datetime


async def read_owners(
    session: AsyncSession, *, connection: str, owner_ids: set[str]
) -> dict[str, KnownOwner]:
    """The stored owners among `owner_ids` of the connection, by owner id (however old)."""
    if not owner_ids:
        return {}
    rows = await session.scalars(
        select(CRMOwnerContact).where(
            CRMOwnerContact.connection == connection,
            CRMOwnerContact.owner_id.in_(owner_ids),
        )
    )
    return {
        row.owner_id: KnownOwner(
            connection=row.connection,
            owner_id=row.owner_id,
            email=row.email,
            name=row.name,
            found=row.found,
            fetched_at=row.fetched_at,
        )
        for row in rows
    }


async def owner_names(
    session: AsyncSession, *, connection: str, owner_ids: Iterable[str | None]
) -> dict[str, str]:
    """The names the CRM gave of these owners (by owner id), where the cache holds one."""
    known = await read_owners(
        session, connection=connection, owner_ids={owner for owner in owner_ids if owner}
    )
    return {key: owner.name for key, owner in known.items() if owner.found and owner.name}


async def save_owner(
    session: AsyncSession,
    *,
    connection: str,
    owner_id: str,
    email: str | None,
    name: str | None,
    found: bool,
    fetched_at: datetime,
) -> None:
    """Store what the CRM just said about an owner, replacing what it said before."""
    values = {"email": email, "name": name, "found": found, "fetched_at": fetched_at}
    statement = upsert_insert(session, CRMOwnerContact).values(
        connection=connection, owner_id=owner_id, **values
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["connection", "owner_id"], set_=values)
    )
