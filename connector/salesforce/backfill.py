"""Salesforce backfill: list the records already in an org with SOQL, one page at a time, as the
same normalised events their Outbound Messages would give.

Each record of a REST query answer is turned into a `Notification` carrying its fields as an
Outbound Message would (text; booleans "true"/"false"; datetimes in UTC with a Z) and mapped by
`connector.salesforce.events.to_normalised`: one mapping for both paths. A page ends where
Salesforce ends its batch; its `nextRecordsUrl` (a query locator path such as
`/services/data/v62.0/query/01gD0000002HU6KIAW-2000`) is the cursor of the next one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import httpx
import structlog

from connector.base import BackfillPage
from connector.errors import CRMRequestRejected, PayloadError
from connector.http import RetryingClient
from connector.model import NormalisedEvent
from connector.salesforce.events import (
    NO_ACCOUNT_READS,
    AccountReads,
    Notification,
    SalesforceMapping,
    to_normalised,
)

__all__ = [
    "BACKFILL_OBJECTS",
    "BATCH_SIZE_MAX",
    "BATCH_SIZE_MIN",
    "SOBJECTS",
    "dedup_key",
    "error_codes",
    "json_document",
    "list_backfill_page",
    "next_records_url",
    "notification_from_record",
    "select",
    "soql_for",
    "soql_literal",
]

log = structlog.get_logger(__name__)

# Accounts first, so the accounts exist before the records that hang off them.
SOBJECTS: Final[Mapping[str, str]] = {
    "accounts": "Account",
    "contacts": "Contact",
    "tasks": "Task",
    "events": "Event",
    "cases": "Case",
}
BACKFILL_OBJECTS: tuple[str, ...] = tuple(SOBJECTS)

# The `Sforce-Query-Options: batchSize=` bounds; Salesforce may answer fewer records than asked.
BATCH_SIZE_MIN: Final = 200
BATCH_SIZE_MAX: Final = 2_000

# Every record carries it and it changes with every change of the record: the version in the
# dedup key, and the event time when a record has no better one.
VERSION_FIELD: Final = "SystemModstamp"

INVALID_QUERY_LOCATOR: Final = "INVALID_QUERY_LOCATOR"

_NEXT_RECORDS_URL = re.compile(r"/services/data/v\d+\.\d+/(?:tooling/)?query(?:All)?/[A-Za-z0-9-]+")
# REST answers datetimes as 2024-01-15T10:30:00.000+0000; Outbound Messages as ...000Z.
_UTC_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)\+0000")


def soql_for(
    object_type: str, mapping: SalesforceMapping, reads: AccountReads = NO_ACCOUNT_READS
) -> str:
    """The SOQL listing `object_type` (one of `BACKFILL_OBJECTS`) with the fields `mapping`
    reads (and, for accounts, the field plan's `reads`, which must all exist: one unknown
    field fails the whole query), plus the record version; ValueError for another type."""
    sobject = SOBJECTS.get(object_type)
    if sobject is None:
        raise ValueError(
            f"cannot backfill {object_type!r}; expected one of {', '.join(BACKFILL_OBJECTS)}"
        )
    planned = reads.fields if sobject == "Account" else ()
    return select(sobject, (*mapping.outbound_fields(sobject), *planned, VERSION_FIELD))


def select(sobject: str, fields: Iterable[str], *conditions: str) -> str:
    """`SELECT fields FROM sobject [WHERE c1 AND c2 ...]`; field and object names are the
    code's own or checked names, values in conditions go through `soql_literal`."""
    # Salesforce refuses a field selected twice, in any case ("duplicate field selected").
    distinct: dict[str, str] = {}
    for name in fields:
        distinct.setdefault(name.casefold(), name)
    words = ["SELECT", ", ".join(distinct.values()), "FROM", sobject]
    if conditions:
        words += ["WHERE", " AND ".join(conditions)]
    return " ".join(words)


def soql_literal(value: str) -> str:
    """`value` as a quoted SOQL string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def json_document(response: httpx.Response, where: str) -> Any:
    """The JSON Salesforce answered; PayloadError naming `where` when it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise PayloadError(f"{where}: the answer is not JSON") from exc


def error_codes(error: CRMRequestRejected) -> set[str]:
    """The `errorCode`s of a refused REST call (`[{"message": ..., "errorCode": ...}]`)."""
    try:
        document = json.loads(error.body)
    except ValueError:
        return set()
    items = document if isinstance(document, list) else [document]
    return {
        str(item["errorCode"])
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("errorCode"), str)
    }


def next_records_url(document: Mapping[str, Any], where: str) -> str | None:
    """Where the rest of a query answer is; None when `done`. PayloadError when the answer is
    not done yet says nowhere (or somewhere that is no query locator)."""
    done = document.get("done")
    if not isinstance(done, bool):
        raise PayloadError(f"{where}: 'done' is missing or not a boolean")
    if done:
        return None
    url = document.get("nextRecordsUrl")
    if not isinstance(url, str) or not _NEXT_RECORDS_URL.fullmatch(url):
        raise PayloadError(
            f"{where}: 'done' is false but 'nextRecordsUrl' is missing or not a query path"
        )
    return url


def _outbound_text(value: Any) -> str | None:
    """A JSON field value as an Outbound Message carries it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _UTC_DATETIME.sub(r"\1Z", value) if _UTC_DATETIME.fullmatch(value) else value
    return str(value)


def dedup_key(sobject_type: str, record_id: str, version: str) -> str:
    """Stable per record version: listing the same version again gives the same key."""
    return f"salesforce:{sobject_type}:{record_id}:{version}"


def notification_from_record(record: Any, *, where: str) -> Notification:
    """A query answer's record as the Notification an Outbound Message would carry; its `id`
    is the record version's dedup key. Nested values (`attributes`, addresses, relationship
    objects) are left out, as the message leaves out compound fields."""
    if not isinstance(record, Mapping):
        raise PayloadError(f"{where} is not a JSON object")
    attributes = record.get("attributes")
    sobject_type = attributes.get("type") if isinstance(attributes, Mapping) else None
    if not isinstance(sobject_type, str) or not sobject_type:
        raise PayloadError(f"{where}.attributes.type is missing")
    fields = {
        name: _outbound_text(value)
        for name, value in record.items()
        if name != "attributes" and not isinstance(value, Mapping | list)
    }
    record_id = fields.get("Id")
    if not record_id:
        raise PayloadError(f"{where} has no Id")
    version = fields.get(VERSION_FIELD)
    if not version:
        raise PayloadError(f"{where} has no {VERSION_FIELD}")
    return Notification(
        id=dedup_key(sobject_type, record_id, version), sobject_type=sobject_type, fields=fields
    )


async def list_backfill_page(
    client: RetryingClient,
    *,
    object_type: str,
    after: str | None,
    mapping: SalesforceMapping,
    api_version: str,
    batch_size: int = BATCH_SIZE_MAX,
    reads: AccountReads = NO_ACCOUNT_READS,
) -> BackfillPage:
    """List one page of `object_type` records (one of `BACKFILL_OBJECTS`) as normalised events.

    `after` is the `nextRecordsUrl` of the previous page (None: start the query). A locator
    Salesforce no longer knows (they expire when left unused) starts the query again: the
    dedup keys make the repeated records add nothing. Records that mean no event (an activity
    on no account, a to-do) still move the cursor. Raises ValueError for a bad argument,
    PayloadError for an answer that is not what Salesforce documents, and the client's
    CRMHTTPError family when the call fails. Accounts carry the field plan's `reads` (only
    fields the org has: see `soql_for`) as attributes.
    """
    soql = soql_for(object_type, mapping, reads)
    if not BATCH_SIZE_MIN <= batch_size <= BATCH_SIZE_MAX:
        raise ValueError(f"batch_size must be between {BATCH_SIZE_MIN} and {BATCH_SIZE_MAX}")
    if after is not None and not _NEXT_RECORDS_URL.fullmatch(after):
        raise ValueError(f"after must be a nextRecordsUrl Salesforce answered, not {after!r}")
    headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
    where = f"Salesforce {object_type} page"
    if after is None:
        response = await _first_page(client, soql, api_version=api_version, headers=headers)
    else:
        try:
            response = await client.request("GET", after, headers=headers)
        except CRMRequestRejected as exc:
            if INVALID_QUERY_LOCATOR not in error_codes(exc):
                raise
            log.warning("salesforce_backfill_locator_expired", object_type=object_type)
            response = await _first_page(client, soql, api_version=api_version, headers=headers)
    document = json_document(response, where)
    if not isinstance(document, Mapping):
        raise PayloadError(f"{where}: the answer is not a JSON object")
    records = document.get("records")
    if not isinstance(records, list):
        raise PayloadError(f"{where}: 'records' is missing or not a list")
    events = _events(records, mapping, reads, where=where)
    following = next_records_url(document, where)
    if following is not None and following == after:
        # Asking again with the same locator would loop for ever.
        raise PayloadError(f"{where}: nextRecordsUrl repeats the cursor {after!r}")
    log.info(
        "salesforce_backfill_page",
        object_type=object_type,
        records=len(records),
        events=len(events),
        more=following is not None,
    )
    return BackfillPage(object_type=object_type, events=events, next_after=following)


async def _first_page(
    client: RetryingClient, soql: str, *, api_version: str, headers: Mapping[str, str]
) -> httpx.Response:
    return await client.request(
        "GET", f"/services/data/{api_version}/query", params={"q": soql}, headers=headers
    )


def _events(
    records: Sequence[Any], mapping: SalesforceMapping, reads: AccountReads, *, where: str
) -> list[tuple[str, NormalisedEvent]]:
    events: list[tuple[str, NormalisedEvent]] = []
    for index, record in enumerate(records):
        notification = notification_from_record(record, where=f"{where}: records[{index}]")
        produced = to_normalised(notification, mapping, reads=reads, delivered=False)
        for number, event in enumerate(produced):
            key = notification.dedup_key if number == 0 else f"{notification.dedup_key}:{number}"
            events.append((key, event))
    return events
