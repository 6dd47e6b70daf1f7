"""Admin page sessions: an API key, once checked, becomes a signed, HttpOnly, SameSite=Strict
cookie, so the key itself never lives in the browser; the cookie also carries the CSRF token
that every state-changing request from the page must echo in `X-CSRF-Token`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE_NAME = "crm_health_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, kw_only=True)
class SessionData:
    key_hash: str  # the SHA-256 of the API key that signed in (revocation still applies)
    csrf: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Signs and reads session cookies with HMAC-SHA256 over their JSON content."""

    def __init__(self, secret: str, *, lifetime: timedelta) -> None:
        # Domain-separated from every other use of the same secret.
        self._key = hashlib.sha256(b"crm-health session\0" + secret.encode()).digest()
        self._lifetime = lifetime

    def issue(self, *, key_hash: str, now: datetime) -> tuple[str, SessionData]:
        data = SessionData(
            key_hash=key_hash, csrf=secrets.token_urlsafe(24), expires_at=now + self._lifetime
        )
        body = json.dumps(
            {"k": data.key_hash, "c": data.csrf, "e": int(data.expires_at.timestamp())},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}", data

    def read(self, cookie: str | None, *, now: datetime) -> SessionData | None:
        """The session a cookie holds; None when absent, tampered with or expired."""
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
            expires_at = datetime.fromtimestamp(int(content["e"]), tz=now.tzinfo)
            data = SessionData(
                key_hash=str(content["k"]), csrf=str(content["c"]), expires_at=expires_at
            )
        except (ValueError, KeyError, TypeError):
            return None
        return data if data.expires_at > now else None

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()
