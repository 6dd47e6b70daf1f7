"""API keys repository: keys are random, shown once, and stored only as their SHA-256; every
other stored secret token is kept the same way."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.models import AdminSession, ApiKey, InstallGrant

# global_admin changes what applies to every connection; admin manages its connection (its
# alerts and its own settings); viewer reads; ingest sends events. Every key is bound to one
# connection, whose accounts and alerts it sees.
GLOBAL_ADMIN = "global_admin"
ADMIN_ROLES = (GLOBAL_ADMIN, "admin")
ROLES = (*ADMIN_ROLES, "viewer", "ingest")
KEY_PREFIX = "chk_"
PREFIX_LENGTH = 12
_CONNECTION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# last_used_at is a hint for people, not an audit trail: one write a minute per key is enough.
_TOUCH_EVERY = timedelta(seconds=60)


def secret_token_hash(token: str) -> str:
    """How every random secret token is stored (API keys, admin sessions, install links and
    OAuth states): tokens of 128 or more random bits make a fast hash as safe as a slow one,
    and it costs no latency."""
    return hashlib.sha256(token.encode()).hexdigest()


async def add_expiring(
    session: AsyncSession, row: AdminSession | InstallGrant, *, now: datetime
) -> None:
    """Store a secret that expires (an admin page session, a single-use install token),
    clearing those of its kind past their end: none can be presented again, so each new one
    keeps the table to the ones that still could."""
    model = type(row)
    await session.execute(delete(model).where(model.expires_at <= now))
    session.add(row)
    await session.flush()


def _check(*, name: str, role: str, connection: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if not _CONNECTION.match(connection):
        raise ValueError(f"connection: {connection!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    if not name.strip() or len(name) > 200:
        raise ValueError("name: 1 to 200 characters")


async def create(
    session: AsyncSession, *, name: str, role: str, connection: str, now: datetime
) -> tuple[ApiKey, str]:
    """A new key; the returned plaintext is the only copy there will ever be."""
    _check(name=name, role=role, connection=connection)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name.strip(),
        prefix=key[:PREFIX_LENGTH],
        key_hash=secret_token_hash(key),
        role=role,
        connection=connection,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_keys(session: AsyncSession, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list((await session.execute(query)).scalars())


async def revoke(session: AsyncSession, *, key: str, now: datetime) -> bool:
    """Revoke by id (digits) or prefix; False when no active key matched."""
    match = ApiKey.prefix == key
    if key.isdigit():
        match = or_(ApiKey.id == int(key), match)
    result = await session.execute(
        update(ApiKey).where(match, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def find_active_by_hash(
    session: AsyncSession, *, digest: str, now: datetime
) -> ApiKey | None:
    """The unrevoked key with this SHA-256 (an admin page session holds only that)."""
    row = (
        await session.execute(
            select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        )
    ).scalar_one_or_none()
    if row is not None and (row.last_used_at is None or now - row.last_used_at >= _TOUCH_EVERY):
        row.last_used_at = now
    return row
