"""Connections created by OAuth installs: saved with encrypted credentials, listed at start-up
and by workers that look for installs made by another process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.dialect import upsert_insert
from webhooks.store.keys import add_expiring, secret_token_hash
from webhooks.store.models import InstalledConnection, InstallGrant

ACTIVE = "active"


@dataclass(frozen=True, kw_only=True)
class Installed:
    name: str
    crm: str
    external_id: str
    credentials: str  # encrypted; only webhooks.secrets can read it
    installed_at: datetime


async def save(
    session: AsyncSession,
    *,
    name: str,
    crm: str,
    external_id: str,
    credentials: str,
    now: datetime,
) -> None:
    """Create the connection, or replace the credentials of an existing one (a re-install)."""
    insert = upsert_insert(session, InstalledConnection)
    await session.execute(
        insert.values(
            name=name,
            crm=crm,
            external_id=external_id,
            credentials=credentials,
            status=ACTIVE,
            installed_at=now,
            updated_at=now,
        ).on_conflict_do_update(
            index_elements=["name"],
            set_={
                "credentials": insert.excluded.credentials,
                "external_id": insert.excluded.external_id,
                "status": ACTIVE,
                # A re-install counts as a new install: other processes reload it.
                "installed_at": insert.excluded.installed_at,
                "updated_at": insert.excluded.updated_at,
            },
        )
    )


async def update_credentials(
    session: AsyncSession, *, name: str, credentials: str, now: datetime
) -> None:
    await session.execute(
        update(InstalledConnection)
        .where(InstalledConnection.name == name)
        .values(credentials=credentials, updated_at=now)
    )


async def active(session: AsyncSession) -> list[Installed]:
    rows = await session.execute(
        select(
            InstalledConnection.name,
            InstalledConnection.crm,
            InstalledConnection.external_id,
            InstalledConnection.credentials,
            InstalledConnection.installed_at,
        )
        .where(InstalledConnection.status == ACTIVE)
        .order_by(InstalledConnection.name)
    )
    return [
        Installed(
            name=name,
            crm=crm,
            external_id=external_id,
            credentials=credentials,
            installed_at=installed_at,
        )
        for name, crm, external_id, credentials, installed_at in rows
    ]


async def fingerprint(session: AsyncSession) -> tuple[int, datetime | None]:
    """Cheap to ask every worker pass: changes whenever an install is added or re-saved."""
    count, latest = (
        await session.execute(
            select(func.count(), func.max(InstalledConnection.installed_at)).where(
                InstalledConnection.status == ACTIVE
            )
        )
    ).one()
    return int(count), latest


async def create_grant(
    session: AsyncSession,
    *,
    kind: str,
    token: str,
    created_by: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store a single-use install token ("link" or "state"); only its SHA-256 is kept."""
    await add_expiring(
        session,
        InstallGrant(
            token_hash=secret_token_hash(token),
            kind=kind,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        ),
        now=now,
    )


async def consume_grant(session: AsyncSession, *, kind: str, token: str, now: datetime) -> bool:
    """Use up an unexpired, unused token of this kind; False when there is none. One UPDATE, so
    two requests racing with the same token cannot both win."""
    result = await session.execute(
        update(InstallGrant)
        .where(
            InstallGrant.token_hash == secret_token_hash(token),
            InstallGrant.kind == kind,
            InstallGrant.used_at.is_(None),
            InstallGrant.expires_at > now,
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
