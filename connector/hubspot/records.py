"""HubSpot CRM records as normalised events: reading a record safely, and the one mapping per
object type that both the backfill (listed pages) and webhook hydration (batch reads) use."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

import httpx
import structlog

from connector.base import NO_FIELD_PLAN, FieldPlan, property_attribute
from connector.bounds import parse_timestamp
from connector.errors import PayloadError
from connector.model import (
    AccountAttributes,
    ContactUpsert,
    Interaction,
    InteractionChannel,
    InteractionDirection,
    NormalisedEvent,
    Outcome,
    OutcomeKind,
    Ticket,
    TicketPriority,
)

log = structlog.get_logger(__name__)

# hs_meeting_source values of meetings the invitee booked through a HubSpot meetings link (the
# public booking page or the embedded widget): the customer reached out, not us.
CUSTOMER_BOOKED_MEETING_SOURCES: frozenset[str] = frozenset(
    {"MEETINGS_PUBLIC", "MEETINGS_EMBEDDED"}
)

ENGAGEMENT_OBJECTS: tuple[str, ...] = ("emails", "calls", "meetings", "notes")

_TICKET_PRIORITIES: Mapping[str, TicketPriority] = {
    "LOW": "low",
    "MEDIUM": "medium",
    "HIGH": "high",
    "URGENT": "urgent",
}
# A priority the portal added itself, or none at all, cannot be ranked: count it as ordinary.
_FALLBACK_PRIORITY: Final[TicketPriority] = "medium"

_INTERACTION_PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "emails": ("hs_timestamp", "hs_email_direction"),
    "calls": ("hs_timestamp", "hs_call_direction"),
    "meetings": ("hs_timestamp", "hs_meeting_source"),
    "notes": ("hs_timestamp",),
}

_CHANNELS: Mapping[str, InteractionChannel] = {
    "emails": "email",
    "calls": "call",
    "meetings": "meeting",
    "notes": "note",
}

# HubSpot-calculated deal properties ("true"/"false"): they hold in every pipeline, whatever
# the portal named its stages, unlike dealstage ids such as "closedwon".
DEAL_CLOSED = "hs_is_closed"
DEAL_CLOSED_WON = "hs_is_closed_won"
DEAL_CLOSE_DATE = "closedate"


@dataclass(frozen=True, kw_only=True)
class CompanyPropertyMap:
    """Which HubSpot company property carries each account attribute; None leaves it unmapped.

    Portals keep seats, ARR, renewal date and segment in custom properties of their own naming,
    so only name, domain and owner (HubSpot's standard properties) are mapped by default.
    """

    name: str | None = "name"
    domain: str | None = "domain"
    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None
    owner: str | None = "hubspot_owner_id"
    # The lifecycle stage (HealthConfig.customers decides which stages are customers) and the
    # date the company became a customer (the start of its onboarding period).
    lifecycle: str | None = "lifecyclestage"
    customer_since: str | None = "hs_lifecyclestage_customer_date"
    # When the record was created: the onboarding start where no customer-since date is known.
    created: str | None = "createdate"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"CompanyPropertyMap.{item.name} must be a property name or None")

    def mapped(self) -> dict[str, str]:
        """Account attribute -> HubSpot property, for the mapped attributes only."""
        return {
            item.name: value
            for item in fields(self)
            if (value := getattr(self, item.name)) is not None
        }


DEFAULT_PROPERTY_MAP: Final = CompanyPropertyMap()


def company_attributes(properties: CompanyPropertyMap, field_plan: FieldPlan) -> dict[str, str]:
    """Account attribute -> the company property carrying it: the mapped attributes, each
    property the field plan reads (into `property_attribute(name)`), and each input picklist
    the plan provisions (into the attribute of its neutral name, which is its property's)."""
    attributes = properties.mapped()
    attributes.update({property_attribute(name): name for name in field_plan.reads})
    attributes.update({field.neutral: field.neutral for field in field_plan.inputs})
    return attributes


@dataclass(frozen=True, kw_only=True)
class RenewalDeals:
    """Which closed deals tell how a renewal ended: won is `renewed`, lost is `churned`.

    By default a deal is a renewal when HubSpot's standard `dealtype` property says
    "existingbusiness"; a new-business deal won or lost says nothing about a customer's health.
    `type_property=None` counts every closed deal (portals with a renewals-only pipeline).
    """

    type_property: str | None = "dealtype"
    renewal_types: frozenset[str] = frozenset({"existingbusiness"})

    def properties(self) -> list[str]:
        names = [DEAL_CLOSED, DEAL_CLOSED_WON, DEAL_CLOSE_DATE]
        if self.type_property is not None:
            names.append(self.type_property)
        return names


DEFAULT_RENEWALS: Final = RenewalDeals()


@dataclass(frozen=True, kw_only=True)
class ObjectMapping:
    """How one object type is read and mapped: the properties and associated object types
    (plural names) it needs, and record -> (dedup key, event) pairs."""

    properties: tuple[str, ...]
    associations: tuple[str, ...]
    to_events: Callable[[Record], list[tuple[str, NormalisedEvent]]]


def mapping_for(
    object_type: str,
    *,
    properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP,
    title_pattern: re.Pattern[str],
    renewals: RenewalDeals = DEFAULT_RENEWALS,
    field_plan: FieldPlan = NO_FIELD_PLAN,
) -> ObjectMapping:
    """The mapping of `object_type` (companies, contacts, tickets, deals or an engagement);
    a company carries the reads and inputs of `field_plan` too."""
    if object_type == "companies":
        mapped = company_attributes(properties, field_plan)
        return ObjectMapping(
            properties=tuple(sorted(set(mapped.values()))),
            associations=(),
            to_events=lambda record: company_events(record, mapped),
        )
    if object_type == "contacts":
        return ObjectMapping(
            properties=("jobtitle",),
            associations=("companies",),
            to_events=lambda record: contact_events(record, title_pattern),
        )
    if object_type == "tickets":
        return ObjectMapping(
            properties=("hs_ticket_priority", "createdate"),
            associations=("companies",),
            to_events=ticket_events,
        )
    if object_type == "deals":
        return ObjectMapping(
            properties=tuple(renewals.properties()),
            associations=("companies",),
            to_events=lambda record: deal_events(record, renewals),
        )
    if object_type in _INTERACTION_PROPERTIES:
        return ObjectMapping(
            properties=_INTERACTION_PROPERTIES[object_type],
            associations=("companies", "contacts"),
            to_events=lambda record: interaction_events(record, object_type),
        )
    raise ValueError(f"no mapping for HubSpot object type {object_type!r}")


# --- record -> events, per object type ---------------------------------------------------------


def company_events(record: Record, mapped: Mapping[str, str]) -> list[tuple[str, NormalisedEvent]]:
    # A property the record does not carry says nothing: HubSpot leaves a name the portal
    # has no property of out of a read's answer (its reference: "If any of the specified
    # properties are not present on the requested object(s), they will be ignored"), so a
    # configured read of a property deleted or mistyped only goes without a value. One it
    # carries empty is the CRM's explicit clear.
    attributes = {
        attribute: record.text(prop)
        for attribute, prop in mapped.items()
        if prop in record.properties
    }
    event = AccountAttributes(account=record.id, at=record.updated_at, attributes=attributes)
    return [(f"companies:{record.id}:{record.version}", event)]


def contact_events(
    record: Record, title_pattern: re.Pattern[str]
) -> list[tuple[str, NormalisedEvent]]:
    title = record.text("jobtitle")
    executive = None if title is None else title_pattern.search(title) is not None
    return [
        (
            record.key("contacts", company),
            ContactUpsert(
                account=company,
                at=record.updated_at,
                contact=record.id,
                title=title,
                executive=executive,
                left=False,
            ),
        )
        for company in record.associated("companies")
    ]


def _direction(record: Record, object_type: str) -> InteractionDirection:
    if object_type == "emails":
        # EMAIL is sent by us, FORWARDED_EMAIL forwarded into the CRM by us; only a logged
        # reply comes in as INCOMING_EMAIL.
        return "customer" if record.text("hs_email_direction") == "INCOMING_EMAIL" else "ours"
    if object_type == "calls":
        return "customer" if record.text("hs_call_direction") == "INBOUND" else "ours"
    if object_type == "meetings":
        source = record.text("hs_meeting_source")
        return "customer" if source in CUSTOMER_BOOKED_MEETING_SOURCES else "ours"
    return "ours"


def interaction_events(record: Record, object_type: str) -> list[tuple[str, NormalisedEvent]]:
    companies = record.associated("companies")
    if not companies:
        return []
    at = record.timestamp("hs_timestamp")
    direction = _direction(record, object_type)
    contacts = record.associated("contacts")
    contact = contacts[0] if contacts else None
    return [
        (
            record.key(object_type, company),
            Interaction(
                account=company,
                at=at,
                channel=_CHANNELS[object_type],
                direction=direction,
                contact=contact,
                source_id=f"{object_type}:{record.id}",
            ),
        )
        for company in companies
    ]


def ticket_events(record: Record) -> list[tuple[str, NormalisedEvent]]:
    companies = record.associated("companies")
    if not companies:
        return []
    at = record.timestamp("createdate")
    raw_priority = record.text("hs_ticket_priority")
    priority = _TICKET_PRIORITIES.get((raw_priority or "").upper(), _FALLBACK_PRIORITY)
    return [
        (
            record.key("tickets", company),
            Ticket(account=company, at=at, ticket=record.id, priority=priority),
        )
        for company in companies
    ]


def deal_events(record: Record, renewals: RenewalDeals) -> list[tuple[str, NormalisedEvent]]:
    """An Outcome per associated company for a closed renewal deal; nothing for any other."""
    if record.text(DEAL_CLOSED) != "true":
        return []
    if renewals.type_property is not None and (
        record.text(renewals.type_property) not in renewals.renewal_types
    ):
        return []
    outcome: OutcomeKind = "renewed" if record.text(DEAL_CLOSED_WON) == "true" else "churned"
    at = record.timestamp(DEAL_CLOSE_DATE, fallback=record.updated_at)
    return [
        (record.key("deals", company), Outcome(account=company, at=at, outcome=outcome))
        for company in record.associated("companies")
    ]


# --- reading records ---------------------------------------------------------------------------


def json_object(response: httpx.Response, where: str) -> dict[str, Any]:
    """The JSON object HubSpot answered; PayloadError naming `where` when it is anything else."""
    try:
        document = response.json()
    except ValueError as exc:
        raise PayloadError(f"{where}: the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise PayloadError(f"{where}: the answer is not a JSON object")
    return document


def record_id(value: Any) -> str | None:
    """A record id as HubSpot sends it (a string; a JSON number is the same id), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


@dataclass(frozen=True)
class Record:
    """One record, checked just enough to be read safely; `where` names it in errors."""

    id: str
    updated_at: datetime
    created_at: datetime | None
    properties: Mapping[str, Any]
    associations: Mapping[str, Sequence[str]]
    where: str

    @classmethod
    def parse(cls, raw: Any, *, where: str) -> Record:
        if not isinstance(raw, dict):
            raise PayloadError(f"{where} is not an object")
        found_id = record_id(raw.get("id"))
        if found_id is None:
            raise PayloadError(f"{where}.id is missing or not a string")
        where = f"{where} (id {found_id})"
        updated_at = parse_timestamp(raw.get("updatedAt"))
        if updated_at is None:
            raise PayloadError(f"{where}.updatedAt is missing or not a timestamp")
        created_raw = raw.get("createdAt")
        created_at = parse_timestamp(created_raw)
        if created_raw is not None and created_at is None:
            raise PayloadError(f"{where}.createdAt is not a timestamp: {created_raw!r}")
        properties = raw.get("properties", {})
        if not isinstance(properties, dict):
            raise PayloadError(f"{where}.properties is not an object")
        return cls(
            id=found_id,
            updated_at=updated_at,
            created_at=created_at,
            properties=properties,
            associations=_associations(raw.get("associations"), where),
            where=where,
        )

    @property
    def version(self) -> str:
        return self.updated_at.isoformat(timespec="milliseconds")

    def key(self, object_type: str, company: str) -> str:
        return f"{object_type}:{self.id}:{self.version}:{company}"

    def text(self, name: str) -> str | None:
        """A property's value; None when it is unset or blank (HubSpot clears with "")."""
        value = self.properties.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise PayloadError(f"{self.where}.properties.{name} is not a string: {value!r}")
        return value.strip() or None

    def timestamp(self, name: str, *, fallback: datetime | None = None) -> datetime:
        """A timestamp property, else `fallback`, else the record's createdAt."""
        value = self.text(name)
        if value is None:
            default = fallback or self.created_at
            if default is None:
                raise PayloadError(f"{self.where} has neither properties.{name} nor createdAt")
            return default
        parsed = parse_timestamp(value)
        if parsed is None:
            raise PayloadError(f"{self.where}.properties.{name} is not a timestamp: {value!r}")
        return parsed

    def associated(self, object_type: str) -> list[str]:
        return list(self.associations.get(object_type, ()))


def _associations(raw: Any, where: str) -> dict[str, list[str]]:
    """Associated ids per object type, each once, in HubSpot's order.

    v3 lists a record once per association label (a contact's primary company comes as
    `contact_to_company` and again as `contact_to_company_unlabeled`), hence the de-duplication.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PayloadError(f"{where}.associations is not an object")
    associated: dict[str, list[str]] = {}
    for object_type, block in raw.items():
        at = f"{where}.associations.{object_type}"
        if not isinstance(block, dict) or not isinstance(block.get("results"), list):
            raise PayloadError(f"{at}.results is missing or not a list")
        ids: dict[str, None] = {}
        for index, item in enumerate(block["results"]):
            item_id = record_id(item.get("id")) if isinstance(item, dict) else None
            if item_id is None:
                raise PayloadError(f"{at}.results[{index}].id is missing or not a string")
            ids[item_id] = None
        paging = block.get("paging")
        if isinstance(paging, dict) and paging.get("next"):
            # Only records with very many associations get here; the rest is not fetched, so
            # say so rather than lose it silently.
            log.warning("hubspot_backfill_associations_truncated", where=at, listed=len(ids))
        associated[str(object_type)] = list(ids)
    return associated
