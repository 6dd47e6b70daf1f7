"""HubSpot backfill: list the records already in a portal, one page at a time, as normalised events.

A backfill walks `BACKFILL_OBJECTS` in order, resuming each type from the `next_after` of its last
page; every event comes with a dedup key that only changes when the record does, so a resumed or
repeated backfill adds nothing the inbox already holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import structlog

from connector.base import NO_FIELD_PLAN, BackfillPage, FieldPlan
from connector.bounds import parse_timestamp
from connector.errors import PayloadError
from connector.http import RetryingClient
from connector.hubspot.records import (
    CUSTOMER_BOOKED_MEETING_SOURCES,
    DEFAULT_PROPERTY_MAP,
    CompanyPropertyMap,
    Record,
    json_object,
    mapping_for,
)
from connector.mapping import DEFAULT_EXECUTIVE_TITLE, compile_title_pattern
from connector.model import NormalisedEvent

__all__ = [
    "BACKFILL_OBJECTS",
    "CUSTOMER_BOOKED_MEETING_SOURCES",
    "DEFAULT_PROPERTY_MAP",
    "PAGE_SIZE_MAX",
    "BackfillPage",
    "CompanyPropertyMap",
    "json_object",
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


async def list_backfill_page(
    client: RetryingClient,
    *,
    object_type: str,
    after: str | None,
    properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP,
    executive_title: str = DEFAULT_EXECUTIVE_TITLE,
    page_size: int = PAGE_SIZE_MAX,
    field_plan: FieldPlan = NO_FIELD_PLAN,
) -> BackfillPage:
    """List one page of `object_type` records (one of `BACKFILL_OBJECTS`) as normalised events;
    companies carry the reads and inputs of `field_plan` as attributes.

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
    mapping = mapping_for(
        object_type,
        properties=properties,
        title_pattern=compile_title_pattern(executive_title),
        field_plan=field_plan,
    )
    params: dict[str, str | int] = {"limit": page_size}
    if mapping.properties:
        params["properties"] = ",".join(mapping.properties)
    if mapping.associations:
        params["associations"] = ",".join(mapping.associations)
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
        record = Record.parse(raw, where=f"{where}: results[{index}]")
        produced = mapping.to_events(record)
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


# --- reading the page ------------------------------------------------------------------------


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
