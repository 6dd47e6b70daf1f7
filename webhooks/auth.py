"""Who is calling: an API key (or the bootstrap admin token) resolved to a role and the one
connection whose data it may touch."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from webhooks.errors import Forbidden, Unauthenticated
from webhooks.settings import Settings
from webhooks.store import keys
from webhooks.store.db import SessionFactory

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, kw_only=True)
class Principal:
    role: str
    connection: str
    # None for the bootstrap token, which is a setting, not a stored key.
    key_id: int | None
    name: str

    @property
    def settings_scope(self) -> str | None:
        """The one connection whose settings this key sees and may change (the segment
        overrides and alert routing under `connections.<name>` of the configuration); None
        for a global admin, whose changes apply to everyone."""
        return None if self.role == keys.GLOBAL_ADMIN else self.connection


def _bearer(authorization: str | None) -> str:
    if authorization is None:
        raise Unauthenticated(
            "missing API key: send Authorization: Bearer <key>", headers=_CHALLENGE
        )
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Authorization: expected Bearer <API key>", headers=_CHALLENGE)
    return value.strip()


async def authenticate(
    *, sessions: SessionFactory, settings: Settings, authorization: str | None, now: datetime
) -> Principal:
    key = _bearer(authorization)
    return await principal_for_hash(
        sessions=sessions, settings=settings, digest=keys.secret_token_hash(key), now=now
    )


async def principal_for_hash(
    *, sessions: SessionFactory, settings: Settings, digest: str, now: datetime
) -> Principal:
    """The principal of the key with this SHA-256: how a bearer key and an admin page session
    (which holds only the hash) are both resolved, revocation included."""
    bootstrap = settings.admin_token
    if bootstrap is not None and hmac.compare_digest(
        digest.encode(), keys.secret_token_hash(bootstrap.get_secret_value()).encode()
    ):
        return Principal(
            role=keys.GLOBAL_ADMIN,
            connection=settings.connection_name,
            key_id=None,
            name="bootstrap",
        )
    async with sessions() as session, session.begin():
        row = await keys.find_active_by_hash(session, digest=digest, now=now)
    if row is None:
        raise Unauthenticated("unknown or revoked API key", headers=_CHALLENGE)
    return Principal(role=row.role, connection=row.connection, key_id=row.id, name=row.name)


def allow(principal: Principal, *roles: str) -> Principal:
    if principal.role not in roles:
        raise Forbidden(f"this needs an API key with role {' or '.join(roles)}")
    return principal


def require_global(principal: Principal, what: str) -> None:
    """Changes that reach every connection (the global configuration, new installs) need a
    global admin; an admin key bound to a connection gets a 403 saying what it may do."""
    if principal.settings_scope is not None:
        raise Forbidden(
            f"{what} applies to every connection and needs a {keys.GLOBAL_ADMIN} key; this "
            f"key may change only connection {principal.connection!r}'s settings "
            f"(connections.{principal.connection} of the configuration)"
        )


def require_connection(principal: Principal, connection: str) -> None:
    """Keys are scoped to one connection; admin keys too."""
    if principal.connection != connection:
        raise Forbidden(f"this API key may not access connection {connection!r}")
