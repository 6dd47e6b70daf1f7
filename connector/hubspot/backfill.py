"""HubSpot backfill: list the records already in a portal, one page at a time, as normalised events.

A backfill walks `BACKFILL_OBJECTS` in order, resuming each type from the `next_after` of its last
page; every event comes with a dedup key that only changes when the record does, so a resumed or
repeated backfill adds nothing the inbox already holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import structlog

from connector.base import BackfillPage
from connector.errors import PayloadError
from connector.http import RetryingClient
from connector.model import (
    AccountAttributes,
    ContactUpsert,
    Interaction,
    InteractionChannel,
    InteractionDirection,
    NormalisedEvent,
    Ticket,
    TicketPriority,
)

__all__ = [
    "BACKFILL_OBJECTS",
    "CUSTOMER_BOOKED_MEETING_SOURCES",
    "DEFAULT_EXECUTIVE_TITLE",
    "PAGE_SIZE_MAX",
    "BackfillPage",
    "CompanyPropertyMap",
    "list_backfill_page",
    "parse_timestamp",
]

log = structlog.get_logger(__name__)

# Companies first, so the accounts exist before the records that hang off them.
BACKFILL_OBJECTS: tuple[str, ...] = (
    "companies",
    "contacts",
    "emails",
    "calls",
    "meetings",
    "notes",
    "tickets",
)

# HubSpot's list endpoints answer at most 100 records per page.
PAGE_SIZE_MAX: Final = 100

# Job titles that put a contact in the executive suite (matched case-insensitively, anywhere in
# the title). "Product Owner" is a delivery role, not an owner of the business.
DEFAULT_EXECUTIVE_TITLE = (
    r"\b(?:chief|c[eftoimr]o|[se]?vp|vice[\s-]*president|president|founder"
    r"|(?<!product )owner|head\s+of|director)\b"
)

# hs_meeting_source values of meetings the invitee booked through a HubSpot meetings link (the
# public booking page or the embedded widget): the customer reached out, not us.
CUSTOMER_BOOKED_MEETING_SOURCES: frozenset[str] = frozenset(
    {"MEETINGS_PUBLIC", "MEETINGS_EMBEDDED"}
)

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


async def list_backfill_page(
    client: RetryingClient,
    *,
    object_type: str,
    after: str | None,
    properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP,
    executive_title: str = DEFAULT_EXECUTIVE_TITLE,
    page_size: int = PAGE_SIZE_MAX,
) -> BackfillPage:
    """List one page of `object_type` records (one of `BACKFILL_OBJECTS`) as normalised events.

    Records associated with no company produce no events (there is no account to score) but
    still move the cursor. Raises ValueError for a bad argument, PayloadError for a page that
    is not what HubSpot documents, and the client's CRMHTTPError family when the call fails.
    """
    if object_type not in BACKFILL_OBJECTS:
        raise ValueError(
            f"cannot backfill {object_type!r}; expected one of {', '.join(BACKFILL_OBJECTS)}"
        )
    if not 1 <= page_size <= PAGE_SIZE_MAX:
        raise ValueError(f"page_size must be between 1 and {PAGE_SIZE_MAX}")
    try:
        title_pattern = re.compile(executive_title, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"executive_title is not a valid regular expression: {exc}") from None

    names, associations, to_events = _plan(object_type, properties, title_pattern)
    params: dict[str, str | int] = {"limit": page_size}
    if names:
        params["properties"] = ",".join(names)
    if associations:
        params["associations"] = ",".join(associations)
    if after is not None:
        params["after"] = after
    response = await client.request("GET", f"/crm/v3/objects/{object_type}", params=params)

    where = f"HubSpot {object_type} page"
    document = json_object(response, where)
    results = document.get("results")
    if not isinstance(results, list):
        raise PayloadError(f"{where}: 'results' is missing or not a list")
    events: list[tuple[str, NormalisedEvent]] = []
    skipped = 0
    for index, raw in enumerate(results):
        record = _Record.parse(raw, where=f"{where}: results[{index}]")
        produced = to_events(record)
        if not produced:
            skipped += 1
        events.extend(produced)
    next_after = _next_after(document, where)
    if next_after is not None and next_after == after:
        # Asking again with the same cursor would loop for ever.
        raise PayloadError(f"{where}: paging.next.after repeats the cursor {after!r}")
    log.info(
        "hubspot_backfill_page",
        object_type=object_type,
        records=len(results),
        events=len(events),
        without_company=skipped,
        more=next_after is not None,
    )
    return BackfillPage(object_type=object_type, events=events, next_after=next_after)


# --- what to ask for and how to map it, per object type --------------------------------------

_Mapper = Callable[["_Record"], list[tuple[str, NormalisedEvent]]]


def _plan(
    object_type: str, property_map: CompanyPropertyMap, title_pattern: re.Pattern[str]
) -> tuple[list[str], list[str], _Mapper]:
    """(properties to ask for, association types to ask for, record -> events)."""
    if object_type == "companies":
        mapped = property_map.mapped()
        return (
            sorted(set(mapped.values())),
            [],
            lambda record: _company_events(record, mapped),
        )
    if object_type == "contacts":
        return (
            ["jobtitle"],
            ["companies"],
            lambda record: _contact_events(record, title_pattern),
        )
    if object_type == "tickets":
        return ["hs_ticket_priority", "createdate"], ["companies"], _ticket_events
    return (
        list(_INTERACTION_PROPERTIES[object_type]),
        ["companies", "contacts"],
        lambda record: _interaction_events(record, object_type),
    )


def _company_events(
    record: _Record, mapped: Mapping[str, str]
) -> list[tuple[str, NormalisedEvent]]:
    attributes = {attribute: record.text(prop) for attribute, prop in mapped.items()}
    event = AccountAttributes(account=record.id, at=record.updated_at, attributes=attributes)
    return [(f"companies:{record.id}:{record.version}", event)]


def _contact_events(
    record: _Record, title_pattern: re.Pattern[str]
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


def _direction(record: _Record, object_type: str) -> InteractionDirection:
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


_CHANNELS: Mapping[str, InteractionChannel] = {
    "emails": "email",
    "calls": "call",
    "meetings": "meeting",
    "notes": "note",
}


def _interaction_events(record: _Record, object_type: str) -> list[tuple[str, NormalisedEvent]]:
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


def _ticket_events(record: _Record) -> list[tuple[str, NormalisedEvent]]:
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


# --- reading the page ------------------------------------------------------------------------


def json_object(response: httpx.Response, where: str) -> dict[str, Any]:
    """The JSON object HubSpot answered; PayloadError naming `where` when it is anything else."""
    try:
        document = response.json()
    except ValueError as exc:
        raise PayloadError(f"{where}: the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise PayloadError(f"{where}: the answer is not a JSON object")
    return document


def _next_after(document: Mapping[str, Any], where: str) -> str | None:
    paging = document.get("paging")
    if paging is None:
        return None
    if not isinstance(paging, dict):
        raise PayloadError(f"{where}: 'paging' is not an object")
    following = paging.get("next")
    if following is None:
        return None
    if not isinstance(following, dict):
        raise PayloadError(f"{where}: 'paging.next' is not an object")
    after = following.get("after")
    if not isinstance(after, str) or not after:
        raise PayloadError(f"{where}: 'paging.next.after' is missing or not a string")
    return after


def _record_id(value: Any) -> str | None:
    # HubSpot sends ids as strings; a JSON number is the same id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def parse_timestamp(value: Any) -> datetime | None:
    """A HubSpot timestamp (ISO 8601, or epoch milliseconds as a string or number) in UTC.

    None when the value is not one; naive ISO values are taken as UTC, as HubSpot means them.
    """
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        if not isinstance(value, str):
            return None
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class _Record:
    """One listed record, checked just enough to be read safely; `where` names it in errors."""

    id: str
    updated_at: datetime
    created_at: datetime | None
    properties: Mapping[str, Any]
    associations: Mapping[str, Sequence[str]]
    where: str

    @classmethod
    def parse(cls, raw: Any, *, where: str) -> _Record:
        if not isinstance(raw, dict):
            raise PayloadError(f"{where} is not an object")
        record_id = _record_id(raw.get("id"))
        if record_id is None:
            raise PayloadError(f"{where}.id is missing or not a string")
        where = f"{where} (id {record_id})"
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
            id=record_id,
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

    def timestamp(self, name: str) -> datetime:
        """A timestamp property, or the record's createdAt when the property is unset."""
        value = self.text(name)
        if value is None:
            if self.created_at is None:
                raise PayloadError(f"{self.where} has neither properties.{name} nor createdAt")
            return self.created_at
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
            item_id = _record_id(item.get("id")) if isinstance(item, dict) else None
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
