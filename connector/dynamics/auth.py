"""Microsoft Entra ID client credentials for a Dynamics 365 connection: an application user's
access token, kept fresh for every Web API request, and no secret in any error, log or repr.

The token comes from the Microsoft identity platform v2.0 endpoint
(`POST {authority}/{tenant}/oauth2/v2.0/token`, form `grant_type=client_credentials`,
`client_id`, `client_secret`, `scope={org_url}/.default`), which answers
`{"token_type": "Bearer", "expires_in": 3599, "access_token": "..."}` and refuses with 400/401
`{"error": "invalid_client", "error_description": "AADSTS7000215: ...\\r\\nTrace ID: ...", ...}`.
There is no refresh token: `DynamicsAuth` simply asks again a margin before `expires_in` runs
out, and at once when the Web API answers 401, with one resend of that call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import structlog

from connector.bearer import RefreshingBearerAuth
from connector.errors import CRMAuthError, CRMRequestRejected, PayloadError
from connector.http import RetryingClient

__all__ = [
    "CLIENT_CREDENTIALS_GRANT_TYPE",
    "DEFAULT_AUTHORITY",
    "DEFAULT_REFRESH_MARGIN_SECONDS",
    "DynamicsAuth",
    "DynamicsToken",
    "EntraClientCredentials",
    "parse_token",
]

log = structlog.get_logger(__name__)

DEFAULT_AUTHORITY: Final = "https://login.microsoftonline.com"
CLIENT_CREDENTIALS_GRANT_TYPE: Final = "client_credentials"
# Ask for a new token this long before the old one expires: a request started with the old
# token must still finish inside its lifetime, retries included.
DEFAULT_REFRESH_MARGIN_SECONDS: Final = 300.0

# Error texts are Entra's; keep what reaches a message bounded (AADSTS first lines run long).
_ERROR_TEXT_LIMIT: Final = 400


def _https_url(value: str, *, owner: str, name: str, example: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError(f"{owner}: {name} must be an https URL, e.g. {example}")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"{owner}: {name} must be a bare URL without path, query or fragment")
    return url


@dataclass(frozen=True, kw_only=True, repr=False)
class EntraClientCredentials:
    """An app registration's client secret, for the application user of one environment.

    `tenant_id` is the directory (tenant) id or a verified domain; `org_url` is the
    environment's URL (https://contoso.crm.dynamics.com), whose `/.default` scope the token is
    asked for; `authority` is the identity platform host (another cloud's for sovereign clouds).
    """

    tenant_id: str
    client_id: str
    client_secret: str
    org_url: str
    authority: str = DEFAULT_AUTHORITY

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("tenant_id", "client_id", "client_secret"):
            if not getattr(self, name).strip():
                raise ValueError(f"{owner}: {name} must not be empty")
        tenant = self.tenant_id.strip()
        if not all(char.isalnum() or char in "-." for char in tenant):
            raise ValueError(f"{owner}: tenant_id must be a tenant id (GUID) or domain name")
        object.__setattr__(self, "tenant_id", tenant)
        object.__setattr__(
            self,
            "org_url",
            _https_url(
                self.org_url,
                owner=owner,
                name="org_url",
                example="https://contoso.crm.dynamics.com",
            ),
        )
        object.__setattr__(
            self,
            "authority",
            _https_url(self.authority, owner=owner, name="authority", example=DEFAULT_AUTHORITY),
        )

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        return f"{self.org_url}/.default"

    def token_form(self) -> dict[str, str]:
        """The form to POST to `token_url`; it carries the secret."""
        return {
            "grant_type": CLIENT_CREDENTIALS_GRANT_TYPE,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": self.scope,
        }

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        return (
            f"EntraClientCredentials(tenant_id={self.tenant_id!r}, client_id={self.client_id!r},"
            f" org_url={self.org_url!r}, authority={self.authority!r})"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class DynamicsToken:
    """One access token and when it stops being valid."""

    access_token: str
    expires_in: int
    issued_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.issued_at + timedelta(seconds=self.expires_in)

    def __repr__(self) -> str:
        # Never let the token reach a log line or a traceback.
        return (
            f"DynamicsToken(expires_in={self.expires_in}, issued_at={self.issued_at.isoformat()})"
        )


def parse_token(document: Any, *, now: datetime) -> DynamicsToken:
    """A token from a 2xx token answer; `PayloadError` names what is missing or malformed."""
    where = "Entra ID token answer"
    if not isinstance(document, dict):
        raise PayloadError(f"{where} is not a JSON object")
    access = document.get("access_token")
    if not isinstance(access, str) or not access:
        raise PayloadError(f"{where}: access_token is missing")
    if "expires_in" not in document:
        raise PayloadError(f"{where}: expires_in is missing")
    expires_in = document["expires_in"]
    # The v1.0 endpoint sent it as a string; accept both.
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in.strip())
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise PayloadError(f"{where}: expires_in is not a positive number of seconds")
    token_type = document.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.casefold() != "bearer":
        raise PayloadError(f"{where}: token_type is not Bearer")
    return DynamicsToken(access_token=access, expires_in=expires_in, issued_at=now)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _refusal(error: CRMRequestRejected, *, secret: str) -> CRMAuthError:
    """The token endpoint's refusal as a `CRMAuthError` naming `error` and the first line of the
    AADSTS description (the rest is trace and correlation ids). Nothing of the request can
    reach the message, and the secret is masked should Entra ever quote it."""
    try:
        body = json.loads(error.body)
    except ValueError:
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    codes = body.get("error_codes") if isinstance(body, dict) else None
    kept: dict[str, Any] = {}
    if isinstance(code, str) and code:
        kept["error"] = code[:_ERROR_TEXT_LIMIT]
    if isinstance(description, str) and _first_line(description):
        kept["error_description"] = _first_line(description)[:_ERROR_TEXT_LIMIT]
    if isinstance(codes, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in codes
    ):
        kept["error_codes"] = codes[:10]
    if "error" in kept:
        detail = kept["error"]
        if "error_description" in kept:
            detail += f" ({kept['error_description']})"
        message = f"Entra ID token request refused: {detail}"
    else:
        message = f"Entra ID token request refused with status {error.status}"
    text = json.dumps(kept) if kept else ""
    if secret:
        message = message.replace(secret, "***")
        text = text.replace(secret, "***")
    return CRMAuthError(message, status=error.status, body=text)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DynamicsAuth(RefreshingBearerAuth[DynamicsToken]):
    """httpx authentication for a Dynamics 365 connection: a bearer token on every request, a
    new token `refresh_margin_seconds` before the old one expires, and one new token and one
    resend when the Web API answers 401.

    `client` is a `RetryingClient` for the token endpoint (base URL: the credentials'
    authority); `aclose` closes it. The API client's base URL is the org URL, so requests go
    where they were addressed. Concurrent callers share one token request.
    """

    def __init__(
        self,
        *,
        credentials: EntraClientCredentials,
        client: RetryingClient,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not refresh_margin_seconds >= 0:
            raise ValueError("refresh_margin_seconds must be at least 0")
        super().__init__(client=client, clock=clock)
        self._credentials = credentials
        self._margin = refresh_margin_seconds
        self._renew_at: datetime | None = None

    def __repr__(self) -> str:
        return f"DynamicsAuth(credentials={self._credentials!r})"

    def _fresh(self, token: DynamicsToken, now: datetime) -> bool:
        return self._renew_at is not None and now < self._renew_at

    async def _issue(self, now: datetime) -> DynamicsToken:
        try:
            response = await self._client.request(
                "POST", self._credentials.token_url, data=self._credentials.token_form()
            )
        except CRMRequestRejected as error:
            raise _refusal(error, secret=self._credentials.client_secret) from None
        try:
            document = response.json()
        except ValueError:
            document = None
        token = parse_token(document, now=now)
        # A token shorter-lived than twice the margin is renewed at half its lifetime
        # instead, so it is never stale on arrival.
        lifetime = max(token.expires_in - self._margin, token.expires_in / 2)
        self._renew_at = now + timedelta(seconds=lifetime)
        log.info(
            "dynamics_token_issued",
            org=urlsplit(self._credentials.org_url).hostname,
            expires_in=token.expires_in,
        )
        return token
