"""Salesforce OAuth for server-to-server connections: the JWT bearer and client credentials grants,
and access tokens kept fresh for every API request of a connection.

Both grants get a token with no user present and no refresh token: a new session is simply
asked for again. Salesforce's token answer (`access_token`, `instance_url`, `id`, `issued_at`,
`token_type`, `scope`, `signature`) has no `expires_in`: the session lasts as long as the org's
session timeout (two hours by default). `SalesforceAuth` therefore asks again a margin before
`session_seconds` have passed, and at once when an API call is answered 401 (`INVALID_SESSION_ID`:
timed out early, logged out, revoked), with one resend of that call.

The API client of a connection is created with the login URL as its base; `SalesforceAuth`
sends every request to the `instance_url` the current token names, since that is where the
org lives (and it can move, e.g. on an instance refresh).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx
import structlog
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connector.bearer import RefreshingBearerAuth
from connector.errors import CRMAuthError, CRMRequestRejected, PayloadError
from connector.http import RetryingClient

__all__ = [
    "ASSERTION_LIFETIME_SECONDS",
    "DEFAULT_REFRESH_MARGIN_SECONDS",
    "DEFAULT_SESSION_SECONDS",
    "JWT_BEARER_GRANT_TYPE",
    "LOGIN_URL",
    "SANDBOX_LOGIN_URL",
    "TOKEN_PATH",
    "ClientCredentialsGrant",
    "JwtBearerGrant",
    "SalesforceAuth",
    "SalesforceGrant",
    "SalesforceToken",
    "parse_token",
]

log = structlog.get_logger(__name__)

LOGIN_URL: Final = "https://login.salesforce.com"
SANDBOX_LOGIN_URL: Final = "https://test.salesforce.com"
TOKEN_PATH: Final = "/services/oauth2/token"  # noqa: S105 (a path, not a secret)
JWT_BEARER_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS_GRANT_TYPE: Final = "client_credentials"
# Salesforce accepts an assertion for at most three minutes after it was made.
ASSERTION_LIFETIME_SECONDS: Final = 180
# The org's session timeout; two hours unless the admin changed it (Setup > Session Settings).
DEFAULT_SESSION_SECONDS: Final = 7_200.0
# Ask for a new session this long before the old one may time out: a request started with the
# old token must still finish inside its lifetime, retries included.
DEFAULT_REFRESH_MARGIN_SECONDS: Final = 300.0

# Error texts are Salesforce's; keep what reaches a message short.
_ERROR_TEXT_LIMIT: Final = 200
_GENERIC_LOGIN_HOSTS: Final = frozenset({"login.salesforce.com", "test.salesforce.com"})


def _login_url(value: str, *, owner: str) -> str:
    """The login URL without a trailing slash (the JWT audience must match it exactly)."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError(f"{owner}: login_url must be an https URL, e.g. {LOGIN_URL}")
    if parts.query or parts.fragment:
        raise ValueError(f"{owner}: login_url must not carry a query or a fragment")
    return url


def _required(value: str, *, owner: str, name: str) -> None:
    if not value.strip():
        raise ValueError(f"{owner}: {name} must not be empty")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rsa_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Load the connected app's signing key; errors say what is wrong, never what the key is."""
    owner = "JwtBearerGrant"
    if "PRIVATE KEY-----" not in pem:
        raise ValueError(
            f"{owner}: private_key_pem is not a PEM private key (expected a '-----BEGIN PRIVATE"
            " KEY-----' or '-----BEGIN RSA PRIVATE KEY-----' block; the certificate uploaded to"
            " the connected app is the other half)"
        )
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        # cryptography's word for "encrypted and no password given".
        raise ValueError(
            f"{owner}: private_key_pem is encrypted; pass the unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            f"{owner}: private_key_pem could not be read as a PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{owner}: private_key_pem must be an RSA key (Salesforce signs RS256)")
    return key


class SalesforceGrant(Protocol):
    """How a connection proves who it is to Salesforce's token endpoint."""

    @property
    def login_url(self) -> str: ...

    def token_form(self, *, now: datetime) -> dict[str, str]:
        """The form to POST to `{login_url}/services/oauth2/token`; it carries a secret."""
        ...


@dataclass(frozen=True, kw_only=True, repr=False)
class JwtBearerGrant:
    """The OAuth 2.0 JWT bearer flow: a connected app with "Use digital signatures" (the
    certificate of `private_key_pem`), pre-authorised for `username` (admin-approved users,
    with the user's profile or a permission set on the app).

    `client_id` is the connected app's consumer key. `login_url` is where the token is asked
    for: https://login.salesforce.com, https://test.salesforce.com for a sandbox, or the org's
    My Domain URL. The assertion's audience is always one of the two generic hosts (Salesforce
    refuses any other `aud`, a My Domain URL included): the sandbox one for test.salesforce.com
    and sandbox My Domains, the production one otherwise.
    """

    client_id: str
    username: str
    private_key_pem: str
    login_url: str = LOGIN_URL
    _key: rsa.RSAPrivateKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _required(self.client_id, owner=owner, name="client_id")
        _required(self.username, owner=owner, name="username")
        object.__setattr__(self, "login_url", _login_url(self.login_url, owner=owner))
        object.__setattr__(self, "_key", _rsa_private_key(self.private_key_pem))

    @property
    def audience(self) -> str:
        host = httpx.URL(self.login_url).host
        sandbox = host == httpx.URL(SANDBOX_LOGIN_URL).host or host.endswith(
            ".sandbox.my.salesforce.com"
        )
        return SANDBOX_LOGIN_URL if sandbox else LOGIN_URL

    def assertion(self, *, now: datetime) -> str:
        """A signed JWT (RS256): iss = consumer key, sub = username, aud = the generic login
        host, exp in three minutes."""
        header = {"alg": "RS256"}
        claims = {
            "iss": self.client_id,
            "sub": self.username,
            "aud": self.audience,
            "exp": int(now.timestamp()) + ASSERTION_LIFETIME_SECONDS,
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}"

    def token_form(self, *, now: datetime) -> dict[str, str]:
        return {"grant_type": JWT_BEARER_GRANT_TYPE, "assertion": self.assertion(now=now)}

    def __repr__(self) -> str:
        # Never let the key reach a log line or a traceback.
        return (
            f"JwtBearerGrant(client_id={self.client_id!r}, username={self.username!r},"
            f" login_url={self.login_url!r})"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class ClientCredentialsGrant:
    """The OAuth 2.0 client credentials flow: a connected app with "Enable Client Credentials
    Flow" and a run-as user whose permissions every call gets.

    `login_url` must be the org's My Domain URL (https://<domain>.my.salesforce.com, or
    https://<domain>.sandbox.my.salesforce.com): Salesforce refuses this flow on
    login.salesforce.com and test.salesforce.com, which cannot tell which org is meant.
    """

    client_id: str
    client_secret: str
    login_url: str

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _required(self.client_id, owner=owner, name="client_id")
        _required(self.client_secret, owner=owner, name="client_secret")
        url = _login_url(self.login_url, owner=owner)
        if urlsplit(url).hostname in _GENERIC_LOGIN_HOSTS:
            raise ValueError(
                f"{owner}: login_url must be the org's My Domain URL"
                " (https://<domain>.my.salesforce.com), not the generic login host"
            )
        object.__setattr__(self, "login_url", url)

    def token_form(self, *, now: datetime) -> dict[str, str]:
        return {
            "grant_type": CLIENT_CREDENTIALS_GRANT_TYPE,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        return f"ClientCredentialsGrant(client_id={self.client_id!r}, login_url={self.login_url!r})"


@dataclass(frozen=True, kw_only=True, repr=False)
class SalesforceToken:
    """One Salesforce session: the access token, the instance to call, and who it is for."""

    access_token: str
    instance_url: str
    user_id: str
    organization_id: str
    issued_at: datetime

    def __repr__(self) -> str:
        # Never let the token reach a log line or a traceback.
        return (
            f"SalesforceToken(instance_url={self.instance_url!r}, user_id={self.user_id!r},"
            f" organization_id={self.organization_id!r}, issued_at={self.issued_at.isoformat()})"
        )


def parse_token(document: Any, *, now: datetime) -> SalesforceToken:
    """A token from a 2xx token answer; `PayloadError` names what is missing or malformed.

    `issued_at` (milliseconds since the epoch) is taken when present but never later than
    `now`: a Salesforce clock ahead of ours must not stretch the session past its timeout.
    """
    where = "Salesforce token answer"
    if not isinstance(document, dict):
        raise PayloadError(f"{where} is not a JSON object")
    access = document.get("access_token")
    if not isinstance(access, str) or not access:
        raise PayloadError(f"{where}: access_token is missing")
    instance = document.get("instance_url")
    if not isinstance(instance, str) or not instance:
        raise PayloadError(f"{where}: instance_url is missing")
    instance = instance.rstrip("/")
    parts = urlsplit(instance)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise PayloadError(f"{where}: instance_url is not an http(s) URL")
    identity = document.get("id")
    if not isinstance(identity, str) or not identity:
        raise PayloadError(f"{where}: id is missing")
    organization_id, user_id = _identity_ids(identity, where=where)
    return SalesforceToken(
        access_token=access,
        instance_url=instance,
        user_id=user_id,
        organization_id=organization_id,
        issued_at=min(_issued_at(document.get("issued_at")) or now, now),
    )


def _identity_ids(identity: str, *, where: str) -> tuple[str, str]:
    """(organization id, user id) from the identity URL `https://<login host>/id/<org>/<user>`."""
    segments = [segment for segment in urlsplit(identity).path.split("/") if segment]
    if len(segments) >= 3 and segments[-3] == "id":
        organization_id, user_id = segments[-2], segments[-1]
        if organization_id.isalnum() and user_id.isalnum():
            return organization_id, user_id
    raise PayloadError(f"{where}: id is not an identity URL (.../id/<organization>/<user>)")


def _issued_at(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _refusal(error: CRMRequestRejected) -> CRMAuthError:
    """The token endpoint's refusal, e.g. 400 `{"error": "invalid_grant", "error_description":
    "user hasn't approved this consumer"}`, as a `CRMAuthError` that names it. Only those two
    fields are kept: nothing of the request (assertion, secret) can reach the message."""
    try:
        body = json.loads(error.body)
    except ValueError:
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    kept: dict[str, str] = {}
    if isinstance(code, str) and code:
        kept["error"] = code[:_ERROR_TEXT_LIMIT]
    if isinstance(description, str) and description:
        kept["error_description"] = description[:_ERROR_TEXT_LIMIT]
    if "error" in kept:
        detail = kept["error"]
        if "error_description" in kept:
            detail += f" ({kept['error_description']})"
        message = f"Salesforce token request refused: {detail}"
    else:
        message = f"Salesforce token request refused with status {error.status}"
    return CRMAuthError(message, status=error.status, body=json.dumps(kept) if kept else "")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SalesforceAuth(RefreshingBearerAuth[SalesforceToken]):
    """httpx authentication for a Salesforce connection: a bearer token on every request, sent to
    the token's instance, a new session before the old one may time out, and one new session
    and one resend when Salesforce answers 401.

    `client` is a `RetryingClient` for the token endpoint (base URL: the grant's login URL);
    `aclose` closes it. `session_seconds` is the org's session timeout (Setup > Session
    Settings); the token is renewed `refresh_margin_seconds` before it. Concurrent callers
    share one token request.
    """

    def __init__(
        self,
        *,
        grant: SalesforceGrant,
        client: RetryingClient,
        session_seconds: float = DEFAULT_SESSION_SECONDS,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not session_seconds > 0:
            raise ValueError("session_seconds must be positive")
        if not 0 <= refresh_margin_seconds < session_seconds:
            raise ValueError("refresh_margin_seconds must be at least 0 and below session_seconds")
        super().__init__(client=client, clock=clock)
        self._grant = grant
        self._renew_after = timedelta(seconds=session_seconds - refresh_margin_seconds)

    def __repr__(self) -> str:
        return f"SalesforceAuth(grant={self._grant!r})"

    def _fresh(self, token: SalesforceToken, now: datetime) -> bool:
        return now < token.issued_at + self._renew_after

    async def _issue(self, now: datetime) -> SalesforceToken:
        try:
            response = await self._client.request(
                "POST",
                f"{self._grant.login_url}{TOKEN_PATH}",
                data=self._grant.token_form(now=now),
            )
        except CRMRequestRejected as error:
            raise _refusal(error) from None
        try:
            document = response.json()
        except ValueError:
            document = None
        token = parse_token(document, now=now)
        log.info(
            "salesforce_token_issued",
            instance=urlsplit(token.instance_url).hostname,
            user_id=token.user_id,
            organization_id=token.organization_id,
        )
        return token

    def _authorise(self, request: httpx.Request, token: SalesforceToken) -> None:
        """Bearer header, and the token's instance as scheme, host and port (path and query
        stay)."""
        instance = httpx.URL(token.instance_url)
        request.url = request.url.copy_with(
            scheme=instance.scheme, host=instance.host, port=instance.port
        )
        # httpx set Host from the URL the request was built with.
        request.headers["Host"] = request.url.netloc.decode("ascii")
        super()._authorise(request, token)

    async def user_id(self) -> str:
        return (await self.token()).user_id

    async def organization_id(self) -> str:
        return (await self.token()).organization_id
