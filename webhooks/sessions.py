"""Admin page sessions: an API key, once checked, opens a session stored server-side; the
browser holds only its random id, in a signed, HttpOnly, SameSite=Strict cookie, so the key
never lives in the browser and signing out or revoking the key ends the session at once. Every
state-changing request from the page must echo the session's CSRF token in `X-CSRF-Token`; the
token is derived from the session id, so it dies with its session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from webhooks.store import admin_sessions
from webhooks.store.db import SessionFactory

COOKIE_NAME = "crm_health_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, kw_only=True)
class SessionData:
    """What a session cookie says; the stored row decides whether the session still stands."""

    session_id: str
    csrf: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Signs and reads session cookies with HMAC-SHA256 over their JSON content, and derives
    each session's CSRF token from its id."""

    def __init__(self, secret: str, *, lifetime: timedelta) -> None:
        # Domain-separated from every other use of the same secret.
        self._key = hashlib.sha256(b"crm-health session\0" + secret.encode()).digest()
        self._csrf_key = hashlib.sha256(b"crm-health csrf\0" + secret.encode()).digest()
        self.lifetime = lifetime

    def issue(self, *, now: datetime) -> tuple[str, SessionData]:
        session_id = secrets.token_urlsafe(32)
        data = SessionData(
            session_id=session_id, csrf=self.csrf(session_id), expires_at=now + self.lifetime
        )
        body = json.dumps(
            {"s": session_id, "e": int(data.expires_at.timestamp())}, separators=(",", ":")
        ).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}", data

    def read(self, cookie: str | None, *, now: datetime) -> SessionData | None:
        """The session a cookie names; None when absent, tampered with or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        encoded, signature = cookie.split(".")
        try:
            body, given = _unb64(encoded), _unb64(signature)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(given, self._sign(body)):
            return None
        try:
            content = json.loads(body)
            session_id = str(content["s"])
            expires_at = datetime.fromtimestamp(int(content["e"]), tz=now.tzinfo)
        except (ValueError, KeyError, TypeError):
            return None
        data = SessionData(session_id=session_id, csrf=self.csrf(session_id), expires_at=expires_at)
        return data if data.expires_at > now else None

    def csrf(self, session_id: str) -> str:
        return _b64(hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).digest())

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()


async def open_session(
    *,
    sessions: SessionFactory,
    signer: SessionSigner,
    key_hash: str,
    key_id: int | None,
    now: datetime,
) -> tuple[str, SessionData]:
    """Store a new session of the key with this SHA-256; the cookie to set and what it says."""
    cookie, data = signer.issue(now=now)
    async with sessions() as session, session.begin():
        await admin_sessions.open_session(
            session,
            session_id=data.session_id,
            key_hash=key_hash,
            key_id=key_id,
            now=now,
            expires_at=data.expires_at,
        )
    return cookie, data


async def session_key_hash(
    *, sessions: SessionFactory, data: SessionData, now: datetime
) -> str | None:
    """The SHA-256 of the key behind a session that still stands (not signed out, not
    expired); None otherwise."""
    async with sessions() as session, session.begin():
        active = await admin_sessions.find_active(session, session_id=data.session_id, now=now)
    return None if active is None else active.key_hash


async def end_session(*, sessions: SessionFactory, data: SessionData, now: datetime) -> None:
    async with sessions() as session, session.begin():
        await admin_sessions.revoke(session, session_id=data.session_id, now=now)
