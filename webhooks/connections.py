"""The CRM connections this service serves, built from settings, with their connectors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from connector.base import CRMConnector
from connector.http import RateLimit, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from webhooks.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Connection:
    name: str
    crm: str
    # Verifies inbound webhooks; None means this connection cannot accept them yet.
    webhook_secret: str | None
    # Writes health back; None means the CRM credentials are not configured.
    connector: CRMConnector | None


class ConnectionRegistry:
    def __init__(self, connections: list[Connection]) -> None:
        self._by_name = {connection.name: connection for connection in connections}

    def get(self, name: str) -> Connection | None:
        return self._by_name.get(name)

    def first_for_crm(self, crm: str) -> Connection | None:
        return next((c for c in self._by_name.values() if c.crm == crm), None)

    def writers(self) -> Mapping[str, CRMConnector]:
        return {c.name: c.connector for c in self._by_name.values() if c.connector is not None}

    async def aclose(self) -> None:
        for connector in self.writers().values():
            await connector.aclose()


def connections_from_settings(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> ConnectionRegistry:
    """The single connection the CRM_HEALTH_HUBSPOT_* settings describe."""
    secret = settings.hubspot_client_secret
    token = settings.hubspot_access_token
    connector: CRMConnector | None = None
    if token is not None:
        connector = HubSpotConnector.create(
            connection=settings.connection_name,
            access_token=token.get_secret_value(),
            api_base=settings.hubspot_api_base,
            policy=RetryPolicy(
                max_attempts=settings.crm_retry_max_attempts,
                max_elapsed_seconds=settings.crm_retry_max_seconds,
            ),
            rate_limit=RateLimit(
                requests_per_second=settings.hubspot_requests_per_second,
                burst=max(1, int(settings.hubspot_requests_per_second)),
            ),
            transport=transport,
        )
    return ConnectionRegistry(
        [
            Connection(
                name=settings.connection_name,
                crm="hubspot",
                webhook_secret=None if secret is None else secret.get_secret_value(),
                connector=connector,
            )
        ]
    )
