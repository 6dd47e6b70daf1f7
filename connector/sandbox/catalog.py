"""HubSpot's fixed identifiers for the object types the sandbox serves, and the `Change` record.

Object type ids (`0-2` companies ... `0-49` emails) and the HUBSPOT_DEFINED association type ids
are HubSpot's published values; the state, the v4 association routes and the outgoing webhooks
all read them from here so the three never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# HubSpot's object type ids ("0-1" style), used by v4 paths and generic `object.*` webhooks.
OBJECT_TYPE_IDS: dict[str, str] = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "tickets": "0-5",
    "tasks": "0-27",
    "notes": "0-46",
    "meetings": "0-47",
    "calls": "0-48",
    "emails": "0-49",
}

# The singular names HubSpot uses in legacy webhook types (`company.creation`) and messages.
SINGULAR_NAMES: dict[str, str] = {
    "companies": "company",
    "contacts": "contact",
    "deals": "deal",
    "tickets": "ticket",
    "tasks": "task",
    "notes": "note",
    "meetings": "meeting",
    "calls": "call",
    "emails": "email",
}

# Types that still have legacy webhook subscription types (`contact.propertyChange`); the
# others (engagements, tasks) only exist as generic `object.*` events with an objectTypeId.
LEGACY_WEBHOOK_TYPES: frozenset[str] = frozenset({"companies", "contacts", "deals", "tickets"})

# HUBSPOT_DEFINED default (unlabeled) association type ids, by (from type, to type).
ASSOCIATION_TYPE_IDS: dict[tuple[str, str], int] = {
    ("companies", "contacts"): 280,
    ("contacts", "companies"): 279,
    ("companies", "deals"): 342,
    ("deals", "companies"): 341,
    ("companies", "tickets"): 340,
    ("tickets", "companies"): 339,
    ("contacts", "deals"): 4,
    ("deals", "contacts"): 3,
    ("contacts", "tickets"): 15,
    ("tickets", "contacts"): 16,
    ("deals", "tickets"): 27,
    ("tickets", "deals"): 28,
    # engagements: (to engagement, from engagement) for each record type
    ("companies", "calls"): 181,
    ("calls", "companies"): 182,
    ("companies", "emails"): 185,
    ("emails", "companies"): 186,
    ("companies", "meetings"): 187,
    ("meetings", "companies"): 188,
    ("companies", "notes"): 189,
    ("notes", "companies"): 190,
    ("companies", "tasks"): 191,
    ("tasks", "companies"): 192,
    ("contacts", "calls"): 193,
    ("calls", "contacts"): 194,
    ("contacts", "emails"): 197,
    ("emails", "contacts"): 198,
    ("contacts", "meetings"): 199,
    ("meetings", "contacts"): 200,
    ("contacts", "notes"): 201,
    ("notes", "contacts"): 202,
    ("contacts", "tasks"): 203,
    ("tasks", "contacts"): 204,
    ("deals", "calls"): 205,
    ("calls", "deals"): 206,
    ("deals", "emails"): 209,
    ("emails", "deals"): 210,
    ("deals", "meetings"): 211,
    ("meetings", "deals"): 212,
    ("deals", "notes"): 213,
    ("notes", "deals"): 214,
    ("deals", "tasks"): 215,
    ("tasks", "deals"): 216,
    ("tickets", "calls"): 219,
    ("calls", "tickets"): 220,
    ("tickets", "emails"): 223,
    ("emails", "tickets"): 224,
    ("tickets", "meetings"): 225,
    ("meetings", "tickets"): 226,
    ("tickets", "notes"): 227,
    ("notes", "tickets"): 228,
    ("tickets", "tasks"): 229,
    ("tasks", "tickets"): 230,
}

# The "Primary" labelled types: a contact's, deal's or ticket's first company.
PRIMARY_TYPE_IDS: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 1,
    ("companies", "contacts"): 2,
    ("deals", "companies"): 5,
    ("companies", "deals"): 6,
    ("tickets", "companies"): 26,
    ("companies", "tickets"): 25,
}

# (from type, type id) -> to type: a v3 create body names only the type id, not the target type.
TARGET_BY_TYPE_ID: dict[tuple[str, int], str] = {
    (from_type, type_id): to_type
    for table in (ASSOCIATION_TYPE_IDS, PRIMARY_TYPE_IDS)
    for (from_type, to_type), type_id in table.items()
}


def can_associate(from_type: str, to_type: str) -> bool:
    """HubSpot has a default association type for the pair (engagements never link each other)."""
    return (from_type, to_type) in ASSOCIATION_TYPE_IDS


def object_type_name(raw: str) -> str | None:
    """The plural name for a type given as plural, singular or object type id (v4 paths)."""
    lowered = raw.lower()
    if lowered in OBJECT_TYPE_IDS:
        return lowered
    for name, singular in SINGULAR_NAMES.items():
        if lowered == singular or raw == OBJECT_TYPE_IDS[name]:
            return name
    return None


ChangeKind = Literal["creation", "propertyChange", "associationChange", "deletion"]


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change to the sandbox's records, as its observers (outgoing webhooks) see it.

    An association is reported once per direction, as HubSpot fires one event for each side.
    `source` is HubSpot's changeSource: "API" for /crm calls, "CRM_UI" for the control API and
    direct seeding (a person in the HubSpot UI, as far as a subscriber can tell).
    """

    kind: ChangeKind
    object_type: str
    object_id: str
    occurred_at: datetime
    source: str
    property_name: str | None = None
    property_value: str | None = None
    to_type: str | None = None
    to_id: str | None = None
    association_type_id: int | None = None
    primary: bool = False
    removed: bool = False


__all__ = [
    "ASSOCIATION_TYPE_IDS",
    "LEGACY_WEBHOOK_TYPES",
    "OBJECT_TYPE_IDS",
    "PRIMARY_TYPE_IDS",
    "SINGULAR_NAMES",
    "TARGET_BY_TYPE_ID",
    "Change",
    "can_associate",
    "object_type_name",
]
