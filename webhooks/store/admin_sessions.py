"""Admin page sessions: opened at sign-in, read on every request, revoked at sign-out. Only the
SHA-256 of a session id is stored (the id itself lives in the browser's cookie)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.keys import add_expiring, secret_token_hash
from webhooks.store.models import AdminSession


@dataclass(frozen=True, kw_only=True)
class ActiveSession:
    key_hash: str
    expires_at: datetime


async def open_session(
    session: AsyncSession,
    *,
    session_id: str,
    key_hash: str,
    key_id: int | None,
    now: datetime,
    expires_at: datetime,
) -> None:
    await add_expiring(
        session,
        AdminSession(
            id_hash=secret_token_hash(session_id),
            key_hash=key_hash,
            key_id=key_id,
            created_at=now,
            expires_at=expires_at,
        ),
        now=now,
    )


async def find_active(
    session: AsyncSession, *, session_id: str, now: datetime
) -> ActiveSession | None:
    """The session with this id unless it was revoked or has expired."""
    row = (
        await session.execute(
            select(AdminSession.key_hash, AdminSession.expires_at).where(
                AdminSession.id_hash == secret_token_hash(session_id),
                AdminSession.revoked_at.is_(None),
                AdminSession.expires_at > now,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return ActiveSession(key_hash=row.key_hash, expires_at=row.expires_at)


async def revoke(session: AsyncSession, *, session_id: str, now: datetime) -> None:
    await session.execute(
        update(AdminSession)
        .where(
            AdminSession.id_hash == secret_token_hash(session_id), AdminSession.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
