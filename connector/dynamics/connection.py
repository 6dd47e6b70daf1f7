"""Dynamics 365 (Dataverse) connections: from the CRM_HEALTH_DYNAMICS_* settings (passed in as
a plain mapping) or a `crm: dynamics` entry of the connections file, each with the credential
its webhook registration sends and, given an Entra app registration, a connector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
)

from connector.base import CRMConnector
from connector.crm import AttributeSources, CRMEntry, CRMInbound, EntryConfigError
from connector.dynamics.api import DynamicsConnector
from connector.dynamics.auth import DynamicsAuth, EntraClientCredentials
from connector.dynamics.limits import DynamicsLimits
from connector.dynamics.records import DynamicsMapping
from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.mapping import DEFAULT_EXECUTIVE_TITLE

WebhookAuth = Literal["webhook_key", "header", "query_string"]
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


class DynamicsConfigError(EntryConfigError):
    """Dynamics settings or a connections-file entry that cannot work; names the setting."""


@dataclass(frozen=True, kw_only=True)
class DynamicsInbound(CRMInbound):
    """What a webhook to this connection must carry, and how its records map."""

    crm: ClassVar[str] = "dynamics"

    auth_mode: WebhookAuth
    auth_name: str
    auth_value: str | None
    mapping: DynamicsMapping
    org_url: str | None = None

    def record_url(self, record_id: str) -> str | None:
        if self.org_url is None:
            return None
        return f"{self.org_url}/main.aspx?pagetype=entityrecord&etn=account&id={record_id}"

    def attribute_sources(self) -> AttributeSources:
        return self.mapping

    def accepts_webhooks(self, webhook_secret: str | None) -> bool:
        return self.auth_value is not None


class FileDynamicsColumns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None


class FileDynamics(CRMEntry):
    """One Dataverse environment: a `crm: dynamics` entry of the connections file (secrets as
    ${VAR}), or the CRM_HEALTH_DYNAMICS_* settings read into the same shape."""

    SETTING_PREFIX: ClassVar[str] = "CRM_HEALTH_DYNAMICS_"
    NESTED_SUFFIX: ClassVar[dict[str, str]] = {"columns": "_column"}
    CONFIGURING_SETTINGS: ClassVar[tuple[str, ...]] = (
        "org_url",
        "tenant_id",
        "client_id",
        "client_secret",
        "webhook_auth_value",
    )
    ERROR: ClassVar[type[EntryConfigError]] = DynamicsConfigError

    crm: Literal["dynamics"]
    org_url: str | None = Field(default=None, pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/?$")
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authority: str = DEFAULT_AUTHORITY
    webhook_auth: WebhookAuth = "webhook_key"
    webhook_auth_name: str = Field(default="x-crm-health-key", min_length=1)
    webhook_auth_value: SecretStr | None = None
    publisher_prefix: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9]{1,7}$")
    option_value_prefix: int = Field(default=10000, ge=10000, le=99999)
    solution: str = Field(default="CustomerHealth", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    requests_per_second: float = Field(default=10, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=52)
    columns: FileDynamicsColumns = FileDynamicsColumns()
    executive_title: str = DEFAULT_EXECUTIVE_TITLE

    def mapping(self) -> DynamicsMapping:
        try:
            return DynamicsMapping(
                **self.columns.model_dump(), executive_title=self.executive_title
            )
        except ValueError as exc:
            raise DynamicsConfigError(f"{self.mapping_source('columns')}: {exc}") from None

    def credentials(self) -> EntraClientCredentials | None:
        """The app registration's client credentials; None when none are given."""
        parts = {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        given = [name for name, value in parts.items() if value is not None]
        if not given:
            return None
        missing = [self.named(name) for name, value in parts.items() if value is None]
        if missing:
            raise DynamicsConfigError(
                f"the client-credentials flow also needs {', '.join(missing)}"
            )
        if self.org_url is None:
            raise DynamicsConfigError(
                f"{self.named('org_url')} is required with credentials (the token's scope)"
            )
        if self.publisher_prefix is None:
            raise DynamicsConfigError(
                f"{self.named('publisher_prefix')} is required with credentials: the health "
                "columns are named <prefix>_healthscore etc. after the solution's publisher"
            )
        assert self.tenant_id is not None
        assert self.client_id is not None
        assert self.client_secret is not None
        try:
            return EntraClientCredentials(
                tenant_id=self.tenant_id,
                client_id=self.client_id,
                client_secret=self.client_secret.get_secret_value(),
                org_url=self.org_url.rstrip("/"),
                authority=self.authority.rstrip("/"),
            )
        except ValueError as exc:
            raise DynamicsConfigError(f"{self.named('tenant_id')}: {exc}") from None

    def check(self) -> None:
        """Raise DynamicsConfigError for what `build` would refuse, building nothing."""
        self.mapping()
        self.credentials()

    def build(
        self, *, policy: RetryPolicy, transport: httpx.AsyncBaseTransport | None
    ) -> tuple[DynamicsInbound, CRMConnector | None]:
        """What the connection's webhooks are checked against, and its connector (None without
        credentials: webhooks are accepted, nothing is written back or read)."""
        credentials = self.credentials()
        mapping = self.mapping()
        connector: CRMConnector | None = None
        if credentials is not None:
            assert self.publisher_prefix is not None
            token_client = RetryingClient(
                base_url=credentials.authority,
                name=f"dynamics:{self.name}:oauth",
                policy=policy,
                transport=transport,
            )
            auth = DynamicsAuth(credentials=credentials, client=token_client)
            connector = DynamicsConnector.create(
                connection=self.name,
                auth=auth,
                org_url=credentials.org_url,
                prefix=self.publisher_prefix,
                option_value_prefix=self.option_value_prefix,
                solution=self.solution,
                policy=policy,
                rate_limit=RateLimit(
                    requests_per_second=self.requests_per_second,
                    burst=max(1, int(self.requests_per_second)),
                ),
                limits=DynamicsLimits(),
                max_concurrency=self.max_concurrency,
                transport=transport,
                mapping=mapping,
                closing=auth.aclose,
            )
        inbound = DynamicsInbound(
            auth_mode=self.webhook_auth,
            auth_name=self.webhook_auth_name,
            auth_value=None
            if self.webhook_auth_value is None
            else self.webhook_auth_value.get_secret_value(),
            mapping=mapping,
            org_url=None if self.org_url is None else self.org_url.rstrip("/"),
        )
        return inbound, connector
