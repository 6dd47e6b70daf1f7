"""HubSpot connections: from the CRM_HEALTH_HUBSPOT_* settings (passed in as a plain mapping),
a `crm: hubspot` entry of the connections file, or an OAuth install, each with the portal its
events come from and, given a token or an install, a connector."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connector.base import CRMConnector
from connector.crm import AttributeSources, CRMEntry, CRMInbound, EntryConfigError
from connector.http import RateLimit, RetryPolicy
from connector.hubspot.api import DEFAULT_API_BASE, HubSpotConnector
from connector.hubspot.records import CompanyPropertyMap
from connector.mapping import DEFAULT_EXECUTIVE_TITLE

RECORD_URL = "https://app.hubspot.com/contacts/{portal}/record/0-2/{record}"


class HubSpotConfigError(EntryConfigError):
    """HubSpot settings or a connections-file entry that cannot work; names the setting."""


@dataclass(frozen=True, kw_only=True)
class HubSpotInbound(CRMInbound):
    """The portal whose events a HubSpot connection takes, and how its signatures are read."""

    crm: ClassVar[str] = "hubspot"

    # The portal whose events this connection takes; None takes any unclaimed portal.
    portal_id: int | None = None
    # v1/v2 signatures (no timestamp, no URL in v1) are accepted for this connection's events;
    # off unless the operator opts in, so v3 is all that counts.
    accept_legacy_signatures: bool = False
    # The company properties the connector reads; None without a connector (nothing is read).
    properties: CompanyPropertyMap | None = None

    def record_url(self, record_id: str) -> str | None:
        if self.portal_id is None:
            return None
        return RECORD_URL.format(portal=self.portal_id, record=record_id)

    def attribute_sources(self) -> AttributeSources | None:
        return self.properties


class HubSpotProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None


class FileHubSpot(CRMEntry):
    """One HubSpot portal (or app): a `crm: hubspot` entry of the connections file (secrets as
    ${VAR}), or the CRM_HEALTH_HUBSPOT_* settings read into the same shape."""

    SETTING_PREFIX: ClassVar[str] = "CRM_HEALTH_HUBSPOT_"
    NESTED_SUFFIX: ClassVar[dict[str, str]] = {"properties": "_property"}
    ERROR: ClassVar[type[EntryConfigError]] = HubSpotConfigError

    crm: Literal["hubspot"]
    portal_id: int | None = Field(default=None, gt=0)
    access_token: SecretStr | None = None
    client_secret: SecretStr | None = None
    accept_legacy_signatures: bool = False
    api_base: str = DEFAULT_API_BASE
    requests_per_second: float = Field(default=10, gt=0)
    properties: HubSpotProperties = HubSpotProperties()
    executive_title: str = DEFAULT_EXECUTIVE_TITLE

    @classmethod
    def configured_in_settings(cls, values: Mapping[str, Any]) -> bool:
        # With an OAuth app the client secret belongs to the app, not to a connection of its
        # own: a settings connection exists only for a private-app token (or webhooks without
        # OAuth).
        oauth_app = all(
            value is not None
            for value in (
                values.get("client_id"),
                values.get("client_secret"),
                values.get("public_url"),
            )
        )
        return values.get("access_token") is not None or (
            values.get("client_secret") is not None and not oauth_app
        )

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> Self:
        # The settings validated these values already, and the settings connection's name was
        # never held to the connections file's pattern: taken as they are.
        fields = cls.settings_fields(values)
        entry = cls.model_construct(
            name=values.get("connection_name") or values["default_connection_name"],
            crm="hubspot",
            **fields,
        )
        entry._from_settings = True
        return cast(Self, entry)

    def signing_secret(self) -> str | None:
        return None if self.client_secret is None else self.client_secret.get_secret_value()

    def property_map(self) -> CompanyPropertyMap:
        return CompanyPropertyMap(**self.properties.model_dump())

    def build(
        self,
        *,
        policy: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None,
        auth: httpx.Auth | None = None,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[HubSpotInbound, CRMConnector | None]:
        """The connection's portal and signature options, and its connector: authorised by the
        access token, or by `auth` (an OAuth install; `closing` releases what it holds)."""
        connector: HubSpotConnector | None = None
        if self.access_token is not None or auth is not None:
            connector = HubSpotConnector.create(
                connection=self.name,
                access_token=None
                if auth is not None or self.access_token is None
                else self.access_token.get_secret_value(),
                auth=auth,
                closing=closing,
                api_base=self.api_base,
                policy=policy,
                rate_limit=RateLimit(
                    requests_per_second=self.requests_per_second,
                    burst=max(1, int(self.requests_per_second)),
                ),
                transport=transport,
                properties=self.property_map(),
                executive_title=self.executive_title,
            )
        inbound = HubSpotInbound(
            portal_id=self.portal_id,
            accept_legacy_signatures=self.accept_legacy_signatures,
            properties=None if connector is None else connector.properties,
        )
        return inbound, connector
