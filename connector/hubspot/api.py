"""Calls to HubSpot's CRM v3 API: provision the health properties, batch-write and read back
company health, list existing records for a backfill."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any

import httpx
import structlog

from connector.base import (
    NO_FIELD_PLAN,
    BackfillPage,
    CRMOwner,
    FieldPlan,
    FieldValue,
    ProvisionReport,
    RecordUpdate,
    TaskRequest,
    WriteResult,
)
from connector.errors import CRMRequestRejected, PayloadError
from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.hubspot.backfill import (
    BACKFILL_OBJECTS,
    DEFAULT_PROPERTY_MAP,
    CompanyPropertyMap,
    json_object,
    list_backfill_page,
)
from connector.hubspot.fields import (
    GROUP_LABEL,
    GROUP_NAME,
    PropertySpec,
    planned_properties,
    to_property_value,
)
from connector.hubspot.hydrate import (
    EventPlan,
    HydrationOptions,
    HydrationReport,
    batch_read,
    hydrate,
)
from connector.hubspot.ratelimit import HubSpotLimits
from connector.mapping import DEFAULT_EXECUTIVE_TITLE
from connector.model import NormalisedEvent

DEFAULT_API_BASE = "https://api.hubapi.com"
# HubSpot allows a private app 100 requests per 10 seconds on its smallest plans; staying
# under that avoids 429s instead of recovering from them.
DEFAULT_RATE_LIMIT = RateLimit(requests_per_second=10, burst=10)
BATCH_LIMIT = 100
_COMPANY_PROPERTIES = "/crm/v3/properties/companies"
# HubSpot-defined association type of a task to a company.
TASK_TO_COMPANY = 192

log = structlog.get_logger(__name__)


class HubSpotConnector:
    """One HubSpot portal, reached with a private-app access token."""

    name = "hubspot"
    max_batch_size = BATCH_LIMIT
    backfill_objects = BACKFILL_OBJECTS

    def __init__(
        self,
        *,
        client: RetryingClient,
        properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP,
        executive_title: str = DEFAULT_EXECUTIVE_TITLE,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self.properties = properties
        self.executive_title = executive_title
        self._closing = closing
        self._field_plan: FieldPlan
        # The company properties provisioned, and the names written, under the plan in force.
        self._property_specs: tuple[PropertySpec, ...]
        self._written: frozenset[str]
        self.plan_fields(NO_FIELD_PLAN)

    @classmethod
    def create(
        cls,
        *,
        connection: str,
        access_token: str | None = None,
        auth: httpx.Auth | None = None,
        closing: Callable[[], Awaitable[None]] | None = None,
        api_base: str = DEFAULT_API_BASE,
        policy: RetryPolicy | None = None,
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        transport: httpx.AsyncBaseTransport | None = None,
        properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP,
        executive_title: str = DEFAULT_EXECUTIVE_TITLE,
    ) -> HubSpotConnector:
        """A connector authorised by a private-app `access_token`, or by `auth` (OAuth, see
        `connector.hubspot.oauth.OAuthBearer`); `closing` releases what `auth` holds."""
        if (access_token is None) == (auth is None):
            raise ValueError("give either access_token or auth")
        client = RetryingClient(
            base_url=api_base,
            name=f"hubspot:{connection}",
            headers=None if access_token is None else {"Authorization": f"Bearer {access_token}"},
            auth=auth,
            policy=policy or RetryPolicy(),
            rate_limit=rate_limit,
            limits=HubSpotLimits(),
            transport=transport,
        )
        return cls(
            client=client, properties=properties, executive_title=executive_title, closing=closing
        )

    @property
    def field_plan(self) -> FieldPlan:
        """The plan in force (NO_FIELD_PLAN until one is given)."""
        return self._field_plan

    def plan_fields(self, plan: FieldPlan) -> None:
        """Take `plan` from now on: its scores become number properties written like the
        signals', its inputs select properties read like its reads (see
        `connector.base.CRMConnector.plan_fields`). Calls no HubSpot API."""
        self._field_plan = plan
        self._property_specs = planned_properties(plan)
        self._written = frozenset(plan.written)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._closing is not None:
            await self._closing()

    async def list_backfill_page(
        self,
        *,
        object_type: str,
        after: str | None,
        page_size: int = BATCH_LIMIT,
    ) -> BackfillPage:
        """One page of existing records as normalised events; see `connector.hubspot.backfill`."""
        return await list_backfill_page(
            self._client,
            object_type=object_type,
            after=after,
            properties=self.properties,
            executive_title=self.executive_title,
            page_size=page_size,
            field_plan=self._field_plan,
        )

    @property
    def hydration(self) -> HydrationOptions:
        """This portal's mapping choices and field plan, as webhook hydration takes them."""
        return HydrationOptions(
            properties=self.properties,
            executive_title=self.executive_title,
            field_plan=self._field_plan,
        )

    async def hydrate(self, plans: Sequence[EventPlan]) -> list[list[NormalisedEvent]]:
        """The events the records webhook plans need produce, read in batches; see
        `connector.hubspot.hydrate` (raises the CRMHTTPError family when HubSpot fails)."""
        events, _report = await hydrate(self._client, plans, self.hydration)
        return events

    async def write_health(self, updates: Sequence[RecordUpdate]) -> WriteResult:
        """Batch update companies; a 207 answer marks only the records it names as failed.
        ValueError, before any call, for more than 100 records or a field that is not one of
        `field_plan.written`."""
        if len(updates) > BATCH_LIMIT:
            raise ValueError(f"HubSpot batch update takes at most {BATCH_LIMIT} records")
        self._require_written(name for update in updates for name in update.fields)
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
        try:
            response = await self._client.request(
                "POST", "/crm/v3/objects/companies/batch/update", json=body
            )
        except CRMRequestRejected as exc:
            # HubSpot answers 404 when none of the ids exists (207 when only some do).
            if exc.status != 404:
                raise
            gone = f"no such company in HubSpot: {exc.body[:300]}"
            return WriteResult(missing={update.record_id: gone for update in updates})
        return _batch_result(updates, json_object(response, "HubSpot batch update"))

    async def read_health(self, record_ids: Sequence[str]) -> dict[str, dict[str, FieldValue]]:
        """The health properties of up to 100 companies with one batch read (the one
        hydration uses); companies HubSpot does not have are absent."""
        if len(record_ids) > BATCH_LIMIT:
            raise ValueError(f"HubSpot batch read takes at most {BATCH_LIMIT} records")
        if not record_ids:
            return {}
        found, _ = await batch_read(
            self._client,
            "companies",
            list(dict.fromkeys(record_ids)),
            list(self._field_plan.written),
            HydrationReport(),
        )
        written = self._field_plan.written
        return {record.id: _health_values(record.properties, written) for record in found}

    def stored_health(self, fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
        """`fields` as HubSpot keeps them: every value a string, cleared ones empty. ValueError
        for a field that is not one of `field_plan.written`."""
        self._require_written(fields)
        stored = {name: to_property_value(value) for name, value in fields.items()}
        return _health_values(stored, self._field_plan.written)

    def _require_written(self, names: Iterable[str]) -> None:
        # HubSpot would refuse the whole batch for one property it lacks (400, "Property ...
        # does not exist"); a name outside the plan is the caller's mistake, said before.
        unknown = sorted(set(names) - self._written)
        if unknown:
            raise ValueError(
                f"not health fields of this HubSpot connection: {', '.join(unknown)}; "
                f"expected some of {', '.join(self._field_plan.written)}"
            )

    async def create_task(self, task: TaskRequest) -> str:
        """Create a to-do on the company, assigned to `owner_id` (a HubSpot owner id)."""
        properties = {
            "hs_timestamp": task.due_at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "hs_task_subject": task.subject,
            "hs_task_body": _task_body_html(task.body),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": task.priority.upper(),
            "hs_task_type": "TODO",
        }
        if task.owner_id is not None:
            properties["hubspot_owner_id"] = task.owner_id
        body = {
            "properties": properties,
            "associations": [
                {
                    "to": {"id": task.record_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": TASK_TO_COMPANY,
                        }
                    ],
                }
            ],
        }
        response = await self._client.request("POST", "/crm/v3/objects/tasks", json=body)
        task_id = json_object(response, "HubSpot task create").get("id")
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise PayloadError("HubSpot task create: the answer has no id")
        log.info("hubspot_task_created", task_id=str(task_id), company=task.record_id)
        return str(task_id)

    async def read_owner(self, owner_id: str) -> CRMOwner | None:
        """The owner `hubspot_owner_id` names (`GET /crm/v3/owners/{ownerId}`, scope
        `crm.objects.owners.read`); None for an id HubSpot does not know, archived owners
        included (their e-mail no longer reaches anyone in the portal)."""
        # Owner ids are numbers; anything else would only earn a 400 or a different path.
        if not owner_id.isascii() or not owner_id.isdigit():
            return None
        try:
            response = await self._client.request(
                "GET", f"/crm/v3/owners/{owner_id}", params={"idProperty": "id"}
            )
        except CRMRequestRejected as exc:
            if exc.status == 404:
                return None
            raise
        document = json_object(response, "HubSpot owner")
        name = " ".join(
            part.strip()
            for part in (document.get("firstName"), document.get("lastName"))
            if isinstance(part, str) and part.strip()
        )
        return CRMOwner(owner_id=owner_id, email=_text(document.get("email")), name=name or None)

    async def ensure_fields(self) -> ProvisionReport:
        """Create the property group and health properties; existing ones are updated in place."""
        report = ProvisionReport()
        groups = json_object(
            await self._client.request("GET", f"{_COMPANY_PROPERTIES}/groups"), "property groups"
        )
        if GROUP_NAME not in {group.get("name") for group in groups.get("results", [])}:
            group = {"name": GROUP_NAME, "label": GROUP_LABEL, "displayOrder": -1}
            if await self._create(f"{_COMPANY_PROPERTIES}/groups", group):
                report.created.append(f"group:{GROUP_NAME}")
        existing = {
            prop["name"]: prop
            for prop in json_object(
                await self._client.request("GET", _COMPANY_PROPERTIES), "company properties"
            ).get("results", [])
        }
        for spec in self._property_specs:
            wanted = spec.definition()
            current = existing.get(spec.name)
            if current is None:
                if await self._create(_COMPANY_PROPERTIES, wanted):
                    report.created.append(spec.name)
                else:
                    report.unchanged.append(spec.name)
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

    async def missing_health_fields(self) -> list[str]:
        """The property group and health properties (the field plan's included) the portal
        lacks (two reads, no write)."""
        groups = json_object(
            await self._client.request("GET", f"{_COMPANY_PROPERTIES}/groups"), "property groups"
        )
        missing = []
        if GROUP_NAME not in {group.get("name") for group in groups.get("results", [])}:
            missing.append(f"group:{GROUP_NAME}")
        existing = {
            prop.get("name")
            for prop in json_object(
                await self._client.request("GET", _COMPANY_PROPERTIES), "company properties"
            ).get("results", [])
        }
        missing.extend(spec.name for spec in self._property_specs if spec.name not in existing)
        return missing

    async def _create(self, path: str, definition: dict[str, Any]) -> bool:
        """POST a definition; False when it already exists (409): another process (a second
        replica starting, or `crm-health provision` run meanwhile) created it first."""
        try:
            await self._client.request("POST", path, json=definition)
        except CRMRequestRejected as exc:
            if exc.status == 409:
                log.info("hubspot_definition_exists", path=path, name=definition.get("name"))
                return False
            raise
        return True


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _differs(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        current_values = [option.get("value") for option in current or []]
        return current_values != [option["value"] for option in wanted]
    return bool(current != wanted)


def _health_values(properties: Mapping[str, Any], written: Sequence[str]) -> dict[str, FieldValue]:
    """The `written` fields of a company: HubSpot answers every property value as a string,
    and an unset one as null or "" (an empty string is how a value is cleared)."""
    values: dict[str, FieldValue] = {}
    for name in written:
        value = properties.get(name)
        values[name] = None if value is None or value == "" else str(value)
    return values


def _batch_result(updates: Sequence[RecordUpdate], document: dict[str, Any]) -> WriteResult:
    result = WriteResult()
    for record in document.get("results", []):
        result.written.add(str(record.get("id")))
    for error in document.get("errors", []):
        message = str(error.get("message") or error.get("category") or "rejected by HubSpot")
        # OBJECT_NOT_FOUND: no such company (a mistyped id, a deleted record).
        found = result.missing if error.get("category") == "OBJECT_NOT_FOUND" else result.failed
        for record_id in error.get("context", {}).get("ids", []):
            found[str(record_id)] = message
    # HubSpot lists written records in `results`; anything it mentions nowhere is reported
    # failed so the outbox retries it instead of believing it landed.
    for update in updates:
        if update.record_id not in {*result.written, *result.failed, *result.missing}:
            result.failed[update.record_id] = "not confirmed in HubSpot's batch response"
    return result


def _task_body_html(text: str) -> str:
    """A task's plain-text body as HubSpot's task notes take it: HubSpot renders them as HTML,
    so the text (which quotes a CRM's, a product's or a person's words) is escaped, and its
    line breaks become <br>."""
    return "<br>".join(html.escape(line, quote=True) for line in text.split("\n"))
