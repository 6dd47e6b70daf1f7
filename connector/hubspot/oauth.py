"""HubSpot OAuth: the install link, the code exchange, and access tokens kept fresh.

An OAuth connection holds a short-lived access token (HubSpot: 30 minutes) and a refresh token.
`OAuthTokenSource` hands out a token that is valid for at least `refresh_margin` more seconds,
refreshing it first when needed (one refresh at a time), and tells its owner about every new
token pair so the service can store it encrypted. `OAuthBearer` plugs it into httpx, so every
request of a connection (writes, reads, backfill, hydration) is authorised the same way, and a
401 caused by a token revoked early is answered with one forced refresh and a single resend.

Uses the v1 token endpoints (form-encoded, documented response shapes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import structlog

from connector.errors import PayloadError
from connector.http import RetryingClient
from connector.hubspot.backfill import json_object

log = structlog.get_logger(__name__)

DEFAULT_AUTHORIZE_URL: Final = "https://app.hubspot.com/oauth/authorize"
TOKEN_PATH: Final = "/oauth/v1/token"  # noqa: S105 (a path, not a secret)
TOKEN_INFO_PATH: Final = "/oauth/v1/access-tokens/{token}"  # noqa: S105
# What the plugin reads and writes: companies (health fields and their definitions), the
# records that feed the signals, and tasks for alerts.
DEFAULT_SCOPES: Final = (
    "oauth",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.schemas.companies.read",
    "crm.schemas.companies.write",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.deals.read",
    "tickets",
    "sales-email-read",
)
# Refresh this long before the access token runs out: a request started with the old token
# must still finish inside its lifetime, retries included.
DEFAULT_REFRESH_MARGIN_SECONDS: Final = 300.0


@dataclass(frozen=True, kw_only=True)
class OAuthApp:
    """The HubSpot app the plugin installs as (from settings)."""

    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: Sequence[str] = DEFAULT_SCOPES
    authorize_url: str = DEFAULT_AUTHORIZE_URL

    def install_url(self, *, state: str) -> str:
        """Where to send the HubSpot admin to approve the install."""
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
            }
        )
        return f"{self.authorize_url}?{query}"


@dataclass(frozen=True, kw_only=True)
class TokenSet:
    """One access/refresh token pair and when the access token expires."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    portal_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat(),
            "portal_id": self.portal_id,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> TokenSet:
        return cls(
            access_token=str(document["access_token"]),
            refresh_token=str(document["refresh_token"]),
            expires_at=datetime.fromisoformat(str(document["expires_at"])),
            portal_id=None if document.get("portal_id") is None else int(document["portal_id"]),
        )

    def __repr__(self) -> str:
        # Never let a token reach a log line or a traceback.
        return f"TokenSet(expires_at={self.expires_at.isoformat()}, portal_id={self.portal_id})"


def _token_set(document: dict[str, Any], *, now: datetime, where: str) -> TokenSet:
    access = document.get("access_token")
    refresh = document.get("refresh_token")
    expires_in = document.get("expires_in")
    if not isinstance(access, str) or not access:
        raise PayloadError(f"{where}: access_token is missing")
    if not isinstance(refresh, str) or not refresh:
        raise PayloadError(f"{where}: refresh_token is missing")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        raise PayloadError(f"{where}: expires_in is missing or not a positive number")
    hub_id = document.get("hub_id")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_at=now + timedelta(seconds=float(expires_in)),
        portal_id=hub_id if isinstance(hub_id, int) and not isinstance(hub_id, bool) else None,
    )


async def exchange_code(
    client: RetryingClient, *, app: OAuthApp, code: str, now: datetime
) -> TokenSet:
    """Trade the code of an approved install for the first token pair, with its portal id."""
    form = {
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": app.redirect_uri,
        "code": code,
    }
    response = await client.request("POST", TOKEN_PATH, data=form)
    tokens = _token_set(json_object(response, "HubSpot token answer"), now=now, where="token")
    if tokens.portal_id is None:
        tokens = replace(tokens, portal_id=await portal_of(client, tokens.access_token))
    return tokens


async def portal_of(client: RetryingClient, access_token: str) -> int:
    """The portal (hub) an access token belongs to."""
    response = await client.request(
        "GET",
        TOKEN_INFO_PATH.format(token=access_token),
        path_for_logs=TOKEN_INFO_PATH.format(token="<redacted>"),  # noqa: S106
    )
    hub_id = json_object(response, "HubSpot token metadata").get("hub_id")
    if not isinstance(hub_id, int) or isinstance(hub_id, bool):
        raise PayloadError("HubSpot token metadata: hub_id is missing or not a number")
    return hub_id


async def refresh_tokens(
    client: RetryingClient, *, app: OAuthApp, refresh_token: str, now: datetime
) -> TokenSet:
    form = {
        "grant_type": "refresh_token",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "refresh_token": refresh_token,
    }
    response = await client.request("POST", TOKEN_PATH, data=form)
    return _token_set(json_object(response, "HubSpot refresh answer"), now=now, where="refresh")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OAuthTokenSource:
    """A connection's current access token, refreshed before it runs out."""

    def __init__(
        self,
        *,
        client: RetryingClient,
        app: OAuthApp,
        tokens: TokenSet,
        on_refresh: Callable[[TokenSet], Awaitable[None]],
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._client = client
        self._app = app
        self._tokens = tokens
        self._on_refresh = on_refresh
        self._margin = timedelta(seconds=refresh_margin_seconds)
        self._clock = clock
        self._lock = asyncio.Lock()

    @property
    def portal_id(self) -> int | None:
        return self._tokens.portal_id

    async def access_token(self) -> str:
        if self._clock() + self._margin < self._tokens.expires_at:
            return self._tokens.access_token
        return await self.refresh(stale=self._tokens.access_token)

    async def refresh(self, *, stale: str) -> str:
        """A fresh access token. `stale` is the token the caller saw fail or near expiry: when
        another caller already replaced it, that newer token is returned without a second
        refresh (several requests of one batch may all see the same 401)."""
        async with self._lock:
            if self._tokens.access_token != stale:
                return self._tokens.access_token
            now = self._clock()
            tokens = await refresh_tokens(
                self._client, app=self._app, refresh_token=self._tokens.refresh_token, now=now
            )
            # HubSpot keeps the portal with the refresh token; carry it over.
            self._tokens = replace(tokens, portal_id=tokens.portal_id or self._tokens.portal_id)
            await self._on_refresh(self._tokens)
            log.info(
                "hubspot_token_refreshed",
                portal_id=self._tokens.portal_id,
                expires_at=self._tokens.expires_at.isoformat(),
            )
            return self._tokens.access_token

    async def aclose(self) -> None:
        await self._client.aclose()


class OAuthBearer(httpx.Auth):
    """httpx authentication with an `OAuthTokenSource`: bearer header on every request, one
    forced refresh and resend when HubSpot answers 401 (token revoked or expired early)."""

    def __init__(self, source: OAuthTokenSource) -> None:
        self._source = source

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._source.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = await self._source.refresh(stale=token)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request
