"""Salesforce connections: from the CRM_HEALTH_SALESFORCE_* settings (passed in as a plain
mapping) or a `crm: salesforce` entry of the connections file, each with what its Outbound
Messages are checked against and, given credentials, a connector (JWT bearer or
client-credentials flow)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import httpx
import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from connector.base import CRMConnector
from connector.crm import AttributeSources, CRMEntry, CRMInbound, EntryConfigError
from connector.guesses import SecretGuesses
from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.mapping import DEFAULT_EXECUTIVE_TITLE
from connector.salesforce.api import DEFAULT_API_VERSION, SalesforceConnector
from connector.salesforce.auth import (
    LOGIN_URL,
    ClientCredentialsGrant,
    JwtBearerGrant,
    SalesforceAuth,
)
from connector.salesforce.events import SalesforceMapping
from connector.salesforce.limits import SalesforceLimits

log = structlog.get_logger(__name__)

# Org ids come as 15 or 18 characters; the first 15 (case-sensitive) are the id itself.
_ORG_ID_LENGTH = 15
ORGANIZATION_ID_PATTERN = r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$"
_GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})


class SalesforceConfigError(EntryConfigError):
    """Salesforce settings or a connections-file entry that cannot work; names the setting."""


@dataclass(frozen=True, kw_only=True)
class SalesforceInbound(CRMInbound):
    """What an Outbound Message to this connection must match, and how its records map."""

    crm: ClassVar[str] = "salesforce"

    organization_id: str | None
    shared_secret: str | None
    mapping: SalesforceMapping
    # The org's own URL (My Domain), for links to records in alerts; None when unknown.
    org_url: str | None = None
    # Without a secret anyone who knows the org id (it is no secret) could post as the org, so
    # messages are refused unless the connection opted out of the secret explicitly.
    allow_unsigned: bool = False
    # Wrong secrets per client address, so the secret cannot be guessed at request speed.
    guesses: SecretGuesses = field(default_factory=SecretGuesses, compare=False, repr=False)

    def same_organization(self, organization_id: str) -> bool:
        if self.organization_id is None:
            return False
        return hmac.compare_digest(
            self.organization_id[:_ORG_ID_LENGTH].encode(),
            organization_id[:_ORG_ID_LENGTH].encode(),
        )

    def secret_matches(self, given: str | None) -> bool:
        """True when `given` is the configured secret; without one, only when the connection
        opted out of it (`allow_unsigned`)."""
        if self.shared_secret is None:
            return self.allow_unsigned
        return given is not None and hmac.compare_digest(
            self.shared_secret.encode(), given.encode()
        )

    def record_url(self, record_id: str) -> str | None:
        return None if self.org_url is None else f"{self.org_url}/{record_id}"

    def attribute_sources(self) -> AttributeSources:
        return self.mapping

    def accepts_webhooks(self, webhook_secret: str | None) -> bool:
        return self.shared_secret is not None or self.allow_unsigned


@dataclass(frozen=True, kw_only=True)
class SalesforceCredentials:
    login_url: str
    client_id: str | None
    username: str | None
    private_key: str | None
    client_secret: str | None


def grant_for(
    credentials: SalesforceCredentials, *, named: Callable[[str], str]
) -> JwtBearerGrant | ClientCredentialsGrant | None:
    """The OAuth flow the credentials describe; None without any. `named` turns a field into
    what the user set (a setting or a connections-file key), so errors say what to fix."""
    jwt_parts = credentials.username is not None or credentials.private_key is not None
    if credentials.client_id is None:
        if jwt_parts or credentials.client_secret is not None:
            raise SalesforceConfigError(
                f"{named('client_id')} is required with the other Salesforce credentials"
            )
        return None
    if jwt_parts and credentials.client_secret is not None:
        raise SalesforceConfigError(
            f"give either {named('username')} + {named('private_key')} (JWT bearer flow) or "
            f"{named('client_secret')} (client-credentials flow), not both"
        )
    if jwt_parts:
        if credentials.username is None or credentials.private_key is None:
            raise SalesforceConfigError(
                f"the JWT bearer flow needs both {named('username')} and {named('private_key')}"
            )
        try:
            return JwtBearerGrant(
                client_id=credentials.client_id,
                username=credentials.username,
                private_key_pem=credentials.private_key,
                login_url=credentials.login_url,
            )
        except ValueError as exc:
            raise SalesforceConfigError(f"{named('private_key')}: {exc}") from None
    if credentials.client_secret is None:
        raise SalesforceConfigError(
            f"{named('client_id')} needs {named('username')} + {named('private_key')} or "
            f"{named('client_secret')}"
        )
    if _host(credentials.login_url) in _GENERIC_LOGIN_HOSTS:
        raise SalesforceConfigError(
            f"{named('login_url')} must be the org's My Domain URL for the client-credentials "
            "flow (https://<domain>.my.salesforce.com)"
        )
    return ClientCredentialsGrant(
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        login_url=credentials.login_url,
    )


def _host(url: str) -> str:
    return httpx.URL(url).host


def org_url(login_url: str) -> str | None:
    """A My Domain login URL is also where records open; the generic login hosts are not."""
    if _host(login_url) in _GENERIC_LOGIN_HOSTS:
        return None
    return login_url.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class ConnectorOptions:
    api_version: str
    requests_per_second: float
    session_seconds: float
    daily_limit_pause_seconds: float
    permission_set: str
    policy: RetryPolicy


def build_connector(
    *,
    connection: str,
    grant: JwtBearerGrant | ClientCredentialsGrant,
    mapping: SalesforceMapping,
    options: ConnectorOptions,
    transport: httpx.AsyncBaseTransport | None,
) -> CRMConnector:
    token_client = RetryingClient(
        base_url=grant.login_url,
        name=f"salesforce:{connection}:oauth",
        policy=options.policy,
        transport=transport,
    )
    auth = SalesforceAuth(grant=grant, client=token_client, session_seconds=options.session_seconds)
    return SalesforceConnector.create(
        connection=connection,
        auth=auth,
        login_url=grant.login_url,
        api_version=options.api_version,
        policy=options.policy,
        rate_limit=RateLimit(
            requests_per_second=options.requests_per_second,
            burst=max(1, int(options.requests_per_second)),
        ),
        limits=SalesforceLimits(daily_pause_seconds=options.daily_limit_pause_seconds),
        transport=transport,
        mapping=mapping,
        permission_set_name=options.permission_set,
        user_id=auth.user_id,
        closing=auth.aclose,
    )


def _read_key_file(path: Path, *, setting: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SalesforceConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None


class FileSalesforceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None


class FileSalesforce(CRMEntry):
    """One Salesforce org: a `crm: salesforce` entry of the connections file (secrets as
    ${VAR}), or the CRM_HEALTH_SALESFORCE_* settings read into the same shape."""

    SETTING_PREFIX: ClassVar[str] = "CRM_HEALTH_SALESFORCE_"
    NESTED_SUFFIX: ClassVar[dict[str, str]] = {"fields": "_field"}
    CONFIGURING_SETTINGS: ClassVar[tuple[str, ...]] = (
        "client_id",
        "organization_id",
        "username",
        "private_key",
        "private_key_file",
        "client_secret",
        "webhook_secret",
    )
    ERROR: ClassVar[type[EntryConfigError]] = SalesforceConfigError

    crm: Literal["salesforce"]
    organization_id: str | None = Field(default=None, pattern=ORGANIZATION_ID_PATTERN)
    login_url: str = LOGIN_URL
    client_id: str | None = None
    username: str | None = None
    private_key: SecretStr | None = None
    private_key_file: Path | None = None
    client_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = Field(default=None)
    allow_unsigned: bool = False
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=r"^v\d{2}\.0$")
    requests_per_second: float = Field(default=5, gt=0)
    session_seconds: float = Field(default=7200, gt=60)
    daily_limit_pause_seconds: float = Field(default=1800, gt=0)
    permission_set: str = Field(default="Customer_Health", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
    fields: FileSalesforceFields = FileSalesforceFields()
    executive_title: str = DEFAULT_EXECUTIVE_TITLE

    @model_validator(mode="after")
    def _one_key_source(self) -> FileSalesforce:
        if self.private_key is not None and self.private_key_file is not None:
            raise ValueError("give private_key or private_key_file, not both")
        return self

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> Self:
        if values.get("private_key") is not None and values.get("private_key_file"):
            raise SalesforceConfigError(
                f"set {cls.setting('private_key')} or {cls.setting('private_key_file')}, not both"
            )
        return super().from_settings(values)

    def mapping(self) -> SalesforceMapping:
        try:
            return SalesforceMapping(
                **self.fields.model_dump(), executive_title=self.executive_title
            )
        except ValueError as exc:
            raise SalesforceConfigError(f"{self.mapping_source('fields')}: {exc}") from None

    def grant(self) -> JwtBearerGrant | ClientCredentialsGrant | None:
        """The OAuth flow the credentials describe; None without any."""
        key = None if self.private_key is None else self.private_key.get_secret_value()
        if self.private_key_file is not None:
            key = _read_key_file(self.private_key_file, setting=self.named("private_key_file"))
        return grant_for(
            SalesforceCredentials(
                login_url=self.login_url,
                client_id=self.client_id,
                username=self.username,
                private_key=key,
                client_secret=None
                if self.client_secret is None
                else self.client_secret.get_secret_value(),
            ),
            named=self.named,
        )

    def shared_secret(self) -> str | None:
        """The secret Outbound Messages must carry; None only when the connection opted out."""
        if self.webhook_secret is not None and self.allow_unsigned:
            raise SalesforceConfigError(
                f"give {self.named('webhook_secret')} or {self.named('allow_unsigned')}, not both"
            )
        if self.webhook_secret is None:
            return None
        secret = self.webhook_secret.get_secret_value()
        if not secret:
            # An empty line in an environment file is no "unset": it is a secret everyone
            # knows (an empty X-CRM-Health-Secret header matches it).
            raise SalesforceConfigError(
                f"{self.named('webhook_secret')} is empty: set a long random string, or remove "
                "it and opt out with allow_unsigned"
            )
        return secret

    def check(self) -> None:
        """Raise SalesforceConfigError for what `build` would refuse, building nothing."""
        self.mapping()
        self.grant()
        self.shared_secret()

    def build(
        self, *, policy: RetryPolicy, transport: httpx.AsyncBaseTransport | None
    ) -> tuple[SalesforceInbound, CRMConnector | None]:
        """What the connection's Outbound Messages are checked against, and its connector
        (None without credentials: messages are accepted, nothing is written back)."""
        grant = self.grant()
        mapping = self.mapping()
        secret = self.shared_secret()
        connector = (
            None
            if grant is None
            else build_connector(
                connection=self.name,
                grant=grant,
                mapping=mapping,
                options=ConnectorOptions(
                    api_version=self.api_version,
                    requests_per_second=self.requests_per_second,
                    session_seconds=self.session_seconds,
                    daily_limit_pause_seconds=self.daily_limit_pause_seconds,
                    permission_set=self.permission_set,
                    policy=policy,
                ),
                transport=transport,
            )
        )
        inbound = SalesforceInbound(
            organization_id=self.organization_id,
            shared_secret=secret,
            allow_unsigned=self.allow_unsigned,
            mapping=mapping,
            org_url=org_url(self.login_url),
        )
        if self.allow_unsigned:
            log.warning(
                "salesforce_unsigned_messages_allowed",
                connection=self.name,
                risk="anyone who knows the org id can post Outbound Messages as the org",
            )
        return inbound, connector
