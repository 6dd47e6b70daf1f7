"""Calls to HubSpot's CRM v3 API: provision the health properties, batch-write company health,
list existing records for a backfill."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import structlog

from connector.base import BackfillPage, ProvisionReport, RecordUpdate, WriteResult
from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.hubspot.backfill import (
    BACKFILL_OBJECTS,
    DEFAULT_EXECUTIVE_TITLE,
    DEFAULT_PROPERTY_MAP,
    CompanyPropertyMap,
    json_object,
    list_backfill_page,
)
from connector.hubspot.fields import GROUP_LABEL, GROUP_NAME, PROPERTIES, to_property_value

DEFAULT_API_BASE = "https://api.hubapi.com"
# HubSpot allows a private app 100 requests per 10 seconds on its smallest plans; staying
# under that avoids 429s instead of recovering from them.
DEFAULT_RATE_LIMIT = RateLimit(requests_per_second=10, burst=10)
BATCH_LIMIT = 100
_COMPANY_PROPERTIES = "/crm/v3/properties/companies"

log = structlog.get_logger(__name__)


class HubSpotConnector:
    """One HubSpot portal, reached with a private-app access token."""

    name = "hubspot"
    max_batch_size = BATCH_LIMIT
    backfill_objects = BACKFILL_OBJECTS

    def __init__(self, *, client: RetryingClient) -> None:
        self._client = client

    @classmethod
    def create(
        cls,
        *,
        connection: str,
        access_token: str,
        api_base: str = DEFAULT_API_BASE,
        policy: RetryPolicy | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> HubSpotConnector:
        client = RetryingClient(
            base_url=api_base,
            name=f"hubspot:{connection}",
            headers={"Authorization": f"Bearer {access_token}"},
            policy=policy or RetryPolicy(),
            rate_limit=rate_limit,
            transport=transport,
        )
        return cls(client=client)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def list_backfill_page(
        self,
        *,
        object_type: str,
        after: str | None,
        properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP,
        executive_title: str = DEFAULT_EXECUTIVE_TITLE,
        page_size: int = BATCH_LIMIT,
    ) -> BackfillPage:
        """One page of existing records as normalised events; see `connector.hubspot.backfill`."""
        return await list_backfill_page(
            self._client,
            object_type=object_type,
            after=after,
            properties=properties,
            executive_title=executive_title,
            page_size=page_size,
        )

    async def write_health(self, updates: Sequence[RecordUpdate]) -> WriteResult:
        """Batch update companies; a 207 answer marks only the records it names as failed."""
        if len(updates) > BATCH_LIMIT:
            raise ValueError(f"HubSpot batch update takes at most {BATCH_LIMIT} records")
        body = {
            "inputs": [
                {
                    "id": update.record_id,
                    "properties": {
                        name: to_property_value(value) for name, value in update.fields.items()
                    },
                }
                for update in updates
            ]
        }
        response = await self._client.request(
            "POST", "/crm/v3/objects/companies/batch/update", json=body
        )
        return _batch_result(updates, json_object(response, "HubSpot batch update"))

    async def ensure_fields(self) -> ProvisionReport:
        """Create the property group and health properties; existing ones are updated in place."""
        report = ProvisionReport()
        groups = json_object(
            await self._client.request("GET", f"{_COMPANY_PROPERTIES}/groups"), "property groups"
        )
        if GROUP_NAME not in {group.get("name") for group in groups.get("results", [])}:
            await self._client.request(
                "POST",
                f"{_COMPANY_PROPERTIES}/groups",
                json={"name": GROUP_NAME, "label": GROUP_LABEL, "displayOrder": -1},
            )
            report.created.append(f"group:{GROUP_NAME}")
        existing = {
            prop["name"]: prop
            for prop in json_object(
                await self._client.request("GET", _COMPANY_PROPERTIES), "company properties"
            ).get("results", [])
        }
        for spec in PROPERTIES:
            wanted = spec.definition()
            current = existing.get(spec.name)
            if current is None:
                await self._client.request("POST", _COMPANY_PROPERTIES, json=wanted)
                report.created.append(spec.name)
                continue
            changes = {
                key: wanted[key]
                for key in ("label", "description", "groupName", "options")
                if key in wanted and _differs(current.get(key), wanted[key])
            }
            if changes:
                await self._client.request(
                    "PATCH", f"{_COMPANY_PROPERTIES}/{spec.name}", json=changes
                )
                report.updated.append(spec.name)
            else:
                report.unchanged.append(spec.name)
        log.info(
            "hubspot_fields_ensured",
            created=len(report.created),
            updated=len(report.updated),
            unchanged=len(report.unchanged),
        )
        return report


def _differs(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        current_values = [option.get("value") for option in current or []]
        return current_values != [option["value"] for option in wanted]
    return bool(current != wanted)


def _batch_result(updates: Sequence[RecordUpdate], document: dict[str, Any]) -> WriteResult:
    result = WriteResult()
    for record in document.get("results", []):
        result.written.add(str(record.get("id")))
    for error in document.get("errors", []):
        message = str(error.get("message") or error.get("category") or "rejected by HubSpot")
        for record_id in error.get("context", {}).get("ids", []):
            result.failed[str(record_id)] = message
    # HubSpot lists written records in `results`; anything it mentions nowhere is reported
    # failed so the outbox retries it instead of believing it landed.
    for update in updates:
        if update.record_id not in result.written and update.record_id not in result.failed:
            result.failed[update.record_id] = "not confirmed in HubSpot's batch response"
    return result
