"""Backfill from Dataverse: one page of a table's rows as normalised events, following the
`@odata.nextLink` Dataverse gives, and only ever into the same environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import structlog

from connector.base import BackfillPage
from connector.dynamics.records import (
    ENTITY_SETS,
    NO_PLANNED_READS,
    DynamicsMapping,
    PlannedReads,
    record_from_web_api,
    to_normalised,
    web_api_select,
)
from connector.dynamics.webapi import LOOKUP_ANNOTATIONS, answer_json
from connector.errors import PayloadError
from connector.http import RetryingClient
from connector.model import NormalisedEvent

log = structlog.get_logger(__name__)

# Rows per backfill page (`Prefer: odata.maxpagesize`; Dataverse's own default and maximum is
# 5,000).
PAGE_SIZE: Final = 500
# Tables listed by a backfill, by entity set; accounts first, so they exist before the rows
# that hang off them.
BACKFILL_OBJECTS: tuple[str, ...] = (
    "accounts",
    "contacts",
    "emails",
    "phonecalls",
    "appointments",
    "incidents",
)
_ENTITY_BY_SET: Final[Mapping[str, str]] = MappingProxyType(
    {entity_set: entity for entity, entity_set in ENTITY_SETS.items()}
)


async def backfill_page(
    client: RetryingClient,
    *,
    data: str,
    org_url: str,
    mapping: DynamicsMapping,
    object_type: str,
    after: str | None,
    planned: Sequence[str] = (),
    reads: PlannedReads = NO_PLANNED_READS,
) -> BackfillPage:
    """One page of `object_type` rows (see `DynamicsConnector.list_backfill_page`); `data` is
    the Web API's path (`/api/data/v9.2`). A first page of accounts also selects `planned`
    (the field plan's columns the environment has), and accounts carry what `reads` reads."""
    if object_type not in BACKFILL_OBJECTS:
        raise ValueError(
            f"cannot backfill {object_type!r}; expected one of {', '.join(BACKFILL_OBJECTS)}"
        )
    entity = _ENTITY_BY_SET[object_type]
    headers = {"Prefer": f"{LOOKUP_ANNOTATIONS},odata.maxpagesize={PAGE_SIZE}"}
    where = f"Dataverse {object_type} page"
    if after is None:
        select = (*web_api_select(entity, mapping, planned=planned), "modifiedon")
        response = await client.request(
            "GET",
            f"{data}/{object_type}",
            params={"$select": ",".join(dict.fromkeys(select))},
            headers=headers,
        )
    else:
        if not is_own_link(after, org_url):
            raise ValueError(f"after must be an @odata.nextLink of {org_url}")
        response = await client.request("GET", after, headers=headers)
    document = answer_json(response, where)
    if not isinstance(document, Mapping) or not isinstance(document.get("value"), list):
        raise PayloadError(f"{where}: the answer has no 'value' list")
    rows = document["value"]
    events: list[tuple[str, NormalisedEvent]] = []
    for index, row in enumerate(rows):
        events += _row_events(entity, row, mapping, reads, where=f"{where}: value[{index}]")
    following = document.get("@odata.nextLink")
    if following is not None:
        if not isinstance(following, str) or not is_own_link(following, org_url):
            # The bearer token goes wherever the link points: only ever to this environment.
            raise PayloadError(f"{where}: @odata.nextLink does not point into {org_url}")
        if following == after:
            raise PayloadError(f"{where}: @odata.nextLink repeats the cursor")
    log.info(
        "dynamics_backfill_page",
        object_type=object_type,
        rows=len(rows),
        events=len(events),
        more=following is not None,
    )
    return BackfillPage(object_type=object_type, events=events, next_after=following)


def is_own_link(url: str, org_url: str) -> bool:
    """Whether `url` points into the Web API of the environment at `org_url`."""
    link, own = urlsplit(url), urlsplit(org_url)
    return (
        link.scheme == own.scheme
        and (link.hostname or "").lower() == (own.hostname or "").lower()
        and link.port == own.port
        and link.path.startswith("/api/data/")
    )


def _row_events(
    entity: str, row: Any, mapping: DynamicsMapping, reads: PlannedReads, *, where: str
) -> list[tuple[str, NormalisedEvent]]:
    if not isinstance(row, Mapping):
        raise PayloadError(f"{where} is not a JSON object")
    record = record_from_web_api(entity, row)
    version = row.get("modifiedon") or row.get("@odata.etag")
    if not isinstance(version, str) or not version:
        raise PayloadError(f"{where} has neither modifiedon nor @odata.etag")
    key = f"dynamics:{entity}:{record.id}:{version}"
    return [
        (key if number == 0 else f"{key}:{number}", event)
        for number, event in enumerate(to_normalised(record, mapping, reads=reads))
    ]
