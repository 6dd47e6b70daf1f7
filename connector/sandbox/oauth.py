"""The sandbox's OAuth server, answering like HubSpot's v1 OAuth endpoints.

`/oauth/authorize` approves at once (no login page: the sandbox holds no real data) and sends the
browser back with a single-use code; `/oauth/v1/token` trades a code or a refresh token for an
access token that expires after `access_ttl_seconds`; `/oauth/v1/access-tokens/{token}` describes
a token. Errors carry HubSpot's `{"status": "BAD_...", "message", "correlationId"}` bodies.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

DEFAULT_ACCESS_TTL_SECONDS = 1800
# HubSpot gives a short window to trade a code; ten minutes is ample for any test or demo.
CODE_TTL_SECONDS = 600
DEFAULT_APP_ID = 2000001
DEFAULT_SCOPES = ("oauth",)


class OAuthError(Exception):
    """A refusal of the OAuth endpoints: HTTP status and HubSpot's `status` code and message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"status": self.code, "message": self.message, "correlationId": str(uuid.uuid4())}


@dataclass
class Grant:
    """An approved install: what a code or a refresh token stands for."""

    client_id: str
    scopes: list[str]
    redirect_uri: str
    issued_at: float  # epoch seconds


@dataclass
class AccessToken:
    token: str
    refresh_token: str
    scopes: list[str]
    expires_at: float  # epoch seconds


class TokenStore(Protocol):
    """Where issued codes and tokens survive a restart (the SQLite store)."""

    def put_token(self, kind: str, token: str, data: dict[str, Any]) -> None: ...

    def delete_token(self, kind: str, token: str) -> None: ...


class OAuthServer:
    """Issues and checks OAuth codes and tokens for one configured app (client id + secret)."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        portal_id: int,
        client_id: str | None = None,
        client_secret: str | None = None,
        app_id: int = DEFAULT_APP_ID,
        access_ttl_seconds: int = DEFAULT_ACCESS_TTL_SECONDS,
        user: str = "sandbox-admin@example.com",
        user_id: int = 3000001,
        hub_domain: str = "sandbox.example.com",
        store: TokenStore | None = None,
    ) -> None:
        self.clock = clock
        self.portal_id = portal_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_id = app_id
        self.access_ttl_seconds = access_ttl_seconds
        self.user = user
        self.user_id = user_id
        self.hub_domain = hub_domain
        self.store = store
        self.codes: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.access_tokens: dict[str, AccessToken] = {}

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    def _now(self) -> float:
        return self.clock().timestamp()

    # --- authorize -----------------------------------------------------------------------------

    def authorize(self, query: Mapping[str, str]) -> str:
        """The redirect location for an install request, approved at once."""
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        if not self.configured or client_id != self.client_id:
            raise OAuthError("BAD_CLIENT_ID", "missing or unknown client id")
        if not redirect_uri or urlsplit(redirect_uri).scheme not in {"http", "https"}:
            raise OAuthError("BAD_REDIRECT_URI", "missing or invalid redirect_uri")
        scopes = [scope for scope in query.get("scope", "").split() if scope] or list(
            DEFAULT_SCOPES
        )
        code = str(uuid.uuid4())
        grant = Grant(client_id, scopes, redirect_uri, self._now())
        self.codes[code] = grant
        self._persist("code", code, asdict(grant))
        parts = urlsplit(redirect_uri)
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        joined = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
        return urlunsplit(parts._replace(query=joined))

    # --- token ---------------------------------------------------------------------------------

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer `POST /oauth/v1/token` for either grant type."""
        grant_type = form.get("grant_type", "")
        if grant_type not in {"authorization_code", "refresh_token"}:
            raise OAuthError("BAD_GRANT_TYPE", "missing or unknown grant_type")
        self._check_client(form)
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        return self._refresh(form)

    def _check_client(self, form: Mapping[str, str]) -> None:
        if not self.configured or form.get("client_id") != self.client_id:
            raise OAuthError("BAD_CLIENT_ID", "missing or unknown client id")
        assert self.client_secret is not None
        if not secrets.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            raise OAuthError("BAD_CLIENT_SECRET", "missing or invalid client secret")

    def _exchange_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        grant = self.codes.get(code)
        if grant is None:
            raise OAuthError("BAD_AUTH_CODE", "missing or unknown auth code")
        if self._now() - grant.issued_at > CODE_TTL_SECONDS:
            self._forget_code(code)
            raise OAuthError("EXPIRED_AUTH_CODE", "auth code is expired")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError(
                "BAD_REDIRECT_URI", "redirect_uri does not match initial auth code URL"
            )
        # Single use, as HubSpot's: a replayed code is unknown.
        self._forget_code(code)
        refresh_token = f"na1-{uuid.uuid4()}"
        self.refresh_tokens[refresh_token] = grant
        self._persist("refresh", refresh_token, asdict(grant))
        return self._issue(refresh_token, grant)

    def _refresh(self, form: Mapping[str, str]) -> dict[str, Any]:
        refresh_token = form.get("refresh_token", "")
        grant = self.refresh_tokens.get(refresh_token)
        if grant is None:
            raise OAuthError("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        # HubSpot keeps the refresh token; only the access token is new.
        return self._issue(refresh_token, grant)

    def _issue(self, refresh_token: str, grant: Grant) -> dict[str, Any]:
        token = f"CN{secrets.token_urlsafe(48)}"
        issued = AccessToken(
            token, refresh_token, list(grant.scopes), self._now() + self.access_ttl_seconds
        )
        self.access_tokens[token] = issued
        self._persist("access", token, asdict(issued))
        return {
            "token_type": "bearer",
            "refresh_token": refresh_token,
            "access_token": token,
            "expires_in": self.access_ttl_seconds,
            # Required by OAuth v1's AccessTokenResponse (the authorization-code/refresh kind).
            "token_use": "access_token",
            "hub_id": self.portal_id,
            "scopes": list(grant.scopes),
        }

    def _forget_code(self, code: str) -> None:
        self.codes.pop(code, None)
        if self.store is not None:
            self.store.delete_token("code", code)

    def _persist(self, kind: str, token: str, data: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.put_token(kind, token, data)

    def load(self, kind: str, token: str, data: Mapping[str, Any]) -> None:
        """Take back a code or token saved by an earlier run."""
        if kind == "access":
            self.access_tokens[token] = AccessToken(**data)
        elif kind == "refresh":
            self.refresh_tokens[token] = Grant(**data)
        elif kind == "code":
            self.codes[token] = Grant(**data)

    # --- checks --------------------------------------------------------------------------------

    def lookup(self, token: str) -> AccessToken | None:
        """The issued access token, expired or not; None when the sandbox never issued it."""
        return self.access_tokens.get(token)

    def expired_for(self, issued: AccessToken) -> float | None:
        """Seconds since `issued` expired, or None while it is still valid."""
        overdue = self._now() - issued.expires_at
        return overdue if overdue >= 0 else None

    def metadata(self, token: str) -> dict[str, Any]:
        """`GET /oauth/v1/access-tokens/{token}`; OAuthError 404 for a token it never issued."""
        issued = self.access_tokens.get(token)
        if issued is None:
            raise OAuthError("error", "Token not found", 404)
        return {
            "token": token,
            "user": self.user,
            "hub_domain": self.hub_domain,
            "scopes": list(issued.scopes),
            "hub_id": self.portal_id,
            "app_id": self.app_id,
            "expires_in": max(0, int(issued.expires_at - self._now())),
            "user_id": self.user_id,
            "token_type": "access",
        }

    def expire_all(self) -> None:
        """Make every issued access token expired now (tests of the refresh path)."""
        now = self._now()
        for issued in self.access_tokens.values():
            issued.expires_at = min(issued.expires_at, now)
            self._persist("access", issued.token, asdict(issued))

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "configured": self.configured,
            "app_id": self.app_id,
            "access_ttl_seconds": self.access_ttl_seconds,
            "issued_access_tokens": len(self.access_tokens),
            "refresh_tokens": len(self.refresh_tokens),
        }


def expired_message(seconds: float) -> str:
    """HubSpot's wording for an expired token, in its coarsest whole unit."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"The OAuth token used to make this call expired {count} {unit}(s) ago."
    return f"The OAuth token used to make this call expired {int(seconds)} second(s) ago."


def expiry_time(issued: AccessToken) -> datetime:
    return datetime.fromtimestamp(issued.expires_at, UTC)


__all__ = [
    "CODE_TTL_SECONDS",
    "DEFAULT_ACCESS_TTL_SECONDS",
    "AccessToken",
    "OAuthError",
    "OAuthServer",
    "expired_message",
    "expiry_time",
]
