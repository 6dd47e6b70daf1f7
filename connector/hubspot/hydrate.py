"""Webhook hydration: HubSpot webhooks carry ids and the changed property only. This turns one
connection's batch of events into normalised events, reading what scoring needs with batch reads
(at most 100 ids a call) and associations v4, each record once per batch however many events
name it.

Two steps, so the caller can tell what needs the API before calling it: `plan_event` (pure)
says what an event means and which records it needs read; `hydrate` reads them all at once and
maps them with the same per-object mapping the backfill uses (`connector.hubspot.records`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog

from connector.base import NO_FIELD_PLAN, SENTIMENT_AUTHOR_ATTRIBUTE, FieldPlan
from connector.errors import CRMRequestRejected, PayloadError
from connector.http import RetryingClient
from connector.hubspot.events import HubSpotEvent
from connector.hubspot.records import (
    DEFAULT_PROPERTY_MAP,
    DEFAULT_RENEWALS,
    ENGAGEMENT_OBJECTS,
    CompanyPropertyMap,
    ObjectMapping,
    Record,
    RenewalDeals,
    company_attributes,
    json_object,
    mapping_for,
    record_id,
)
from connector.mapping import DEFAULT_EXECUTIVE_TITLE, compile_title_pattern
from connector.model import AccountAttributes, AccountDeleted, ContactUpsert, NormalisedEvent

log = structlog.get_logger(__name__)

# HubSpot's batch read takes at most 100 ids. Its associations batch read was announced first
# with a 100-id and later a 1,000-id limit; 100 is inside both.
BATCH_READ_LIMIT: Final = 100
ASSOCIATION_READ_LIMIT: Final = 100
# A record with more associations than this many pages is rare; stop rather than loop.
_MAX_ASSOCIATION_PAGES: Final = 20

HANDLED_ACTIONS = frozenset(
    {
        "creation",
        "propertyChange",
        "deletion",
        "privacyDeletion",
        "merge",
        "restore",
        "associationChange",
    }
)
# Deal stage changes close deals; hs_is_closed(_won) follow from them.
_DEAL_STAGE = "dealstage"
# Who changed an input picklist in HubSpot ("HubSpot user 123"), next to its value in the same
# AccountAttributes; the service takes it as the sentiment's author.


@dataclass(frozen=True, kw_only=True)
class HydrationOptions:
    """A connection's mapping choices: company properties, executive titles, renewal deals,
    and the field plan in force (its score properties are our own writes; its reads and
    inputs are company attributes)."""

    properties: CompanyPropertyMap = DEFAULT_PROPERTY_MAP
    executive_title: str = DEFAULT_EXECUTIVE_TITLE
    renewals: RenewalDeals = DEFAULT_RENEWALS
    field_plan: FieldPlan = NO_FIELD_PLAN

    def __post_init__(self) -> None:
        compile_title_pattern(self.executive_title)

    def mapping(self, object_type: str) -> ObjectMapping:
        return mapping_for(
            object_type,
            properties=self.properties,
            title_pattern=compile_title_pattern(self.executive_title),
            renewals=self.renewals,
            field_plan=self.field_plan,
        )


@dataclass(frozen=True, kw_only=True)
class Fetch:
    """A record one event needs read.

    `read_properties` False means the event itself carried the only property that matters
    (`known`). `only_company` restricts the events to one company (an association just added:
    the other companies did not change); `not_before` moves the record's time up to the event's
    (an association change is newer than the record's last property change).
    """

    object_type: str
    id: str
    read_properties: bool = True
    associations: tuple[str, ...] = ()
    known: Mapping[str, str | None] = field(default_factory=dict)
    only_company: str | None = None
    not_before: datetime | None = None


@dataclass(kw_only=True)
class EventPlan:
    """What one webhook event means: events known from the payload alone, contacts deleted from
    the CRM (so gone from every account they were at), and the records still to read."""

    events: list[NormalisedEvent] = field(default_factory=list)
    contacts_deleted: list[tuple[str, datetime]] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)

    @property
    def needs_api(self) -> bool:
        return bool(self.fetches)


@dataclass(kw_only=True)
class HydrationReport:
    batch_reads: int = 0
    association_reads: int = 0
    records: int = 0
    missing: int = 0


# --- step 1: what each event means -------------------------------------------------------------


def plan_event(event: HubSpotEvent, options: HydrationOptions) -> EventPlan | None:
    """The plan for one event; None when its object or action is not one we handle.

    Raises PayloadError naming the field when an event lacks what its action needs.
    """
    object_type = event.object_type
    action = event.action
    if object_type is None or action not in HANDLED_ACTIONS:
        return None
    if event.property_name in options.field_plan.written:
        # One of our own health properties (HubSpot names equal neutral names): our write-back
        # coming back. Counting it as activity would rescore, write again and loop for ever.
        return EventPlan()
    if action == "associationChange":
        return _association_plan(event, options)
    object_id = str(_required(event, event.object_id, "objectId"))
    if action in {"deletion", "privacyDeletion"}:
        return _deletion_plan(object_type, object_id, event.occurred)
    planner = _PLANNERS.get(action)
    if planner is not None:
        return planner(event, object_type, object_id, options)
    # creation and restore: the payload has nothing but the id.
    return EventPlan(fetches=[_full_fetch(object_type, object_id, options)])


def _required(event: HubSpotEvent, value: Any, name: str) -> Any:
    if value is None:
        raise PayloadError(f"event {event.event_id} ({event.subscription_type}): {name} is missing")
    return value


def _full_fetch(object_type: str, object_id: str, options: HydrationOptions) -> Fetch:
    return Fetch(
        object_type=object_type,
        id=object_id,
        associations=options.mapping(object_type).associations,
    )


def _deletion_plan(object_type: str, object_id: str, at: datetime) -> EventPlan:
    if object_type == "companies":
        return EventPlan(events=[AccountDeleted(account=object_id, at=at)])
    if object_type == "contacts":
        return EventPlan(contacts_deleted=[(object_id, at)])
    # A deleted ticket, deal or engagement still happened: its facts stay and age out of their
    # windows (deletions are mostly clean-up, and the facts store has no per-record undo).
    return EventPlan()


def _merge_plan(
    event: HubSpotEvent, object_type: str, object_id: str, options: HydrationOptions
) -> EventPlan:
    # A merge may create a new record (newObjectId) or keep the primary one; every other id
    # involved no longer exists.
    survivor = str(event.new_object_id or event.primary_object_id or object_id)
    involved = {object_id, *(str(i) for i in event.merged_object_ids)}
    if event.primary_object_id is not None:
        involved.add(str(event.primary_object_id))
    gone = sorted(involved - {survivor})
    at = event.occurred
    plan = EventPlan(fetches=[_full_fetch(object_type, survivor, options)])
    if object_type == "companies":
        # Writing health to a merged-away id would land on the survivor through HubSpot's
        # aliasing, with stale values: stop scoring those accounts.
        plan.events = [AccountDeleted(account=company, at=at) for company in gone]
    elif object_type == "contacts":
        plan.contacts_deleted = [(contact, at) for contact in gone]
    return plan


def _property_change_plan(
    event: HubSpotEvent, object_type: str, object_id: str, options: HydrationOptions
) -> EventPlan:
    name = _required(event, event.property_name, "propertyName")
    at = event.occurred
    if object_type == "companies":
        return EventPlan(events=[_company_change(event, name, object_id, options)])
    if object_type == "contacts":
        if name != "jobtitle":
            return EventPlan()
        # The new title is in the payload; only where the contact works needs reading.
        return EventPlan(
            fetches=[
                Fetch(
                    object_type="contacts",
                    id=object_id,
                    read_properties=False,
                    associations=("companies",),
                    known={"jobtitle": event.property_value},
                    not_before=at,
                )
            ]
        )
    relevant = set(options.mapping(object_type).properties)
    if object_type == "deals":
        relevant.add(_DEAL_STAGE)
    if name not in relevant:
        return EventPlan()
    return EventPlan(fetches=[_full_fetch(object_type, object_id, options)])


def _company_change(
    event: HubSpotEvent, name: str, object_id: str, options: HydrationOptions
) -> AccountAttributes:
    """The attributes a company property's new value sets (each one the property carries);
    any company change makes the account known (so it is scored, if only as "unknown")."""
    value = (event.property_value or "").strip() or None
    carried = company_attributes(options.properties, options.field_plan)
    values = {attribute: value for attribute, prop in carried.items() if prop == name}
    user = event.changed_by_user
    if user is not None and name in {field.neutral for field in options.field_plan.inputs}:
        values[SENTIMENT_AUTHOR_ATTRIBUTE] = f"HubSpot user {user}"
    return AccountAttributes(account=object_id, at=event.occurred, attributes=values)


_PLANNERS: Mapping[str, Callable[[HubSpotEvent, str, str, HydrationOptions], EventPlan]] = {
    "merge": _merge_plan,
    "propertyChange": _property_change_plan,
}


def _association_plan(event: HubSpotEvent, options: HydrationOptions) -> EventPlan:
    from_type, to_type = event.association_sides()
    from_id = str(_required(event, event.from_object_id, "fromObjectId"))
    to_id = str(_required(event, event.to_object_id, "toObjectId"))
    removed = bool(_required(event, event.association_removed, "associationRemoved"))
    at = event.occurred
    if from_type == "companies" and to_type not in {None, "companies"}:
        company, other_type, other = from_id, to_type, to_id
    elif to_type == "companies" and from_type not in {None, "companies"}:
        company, other_type, other = to_id, from_type, from_id
    else:
        # No company on either side: only who an engagement was with can matter to scoring.
        for engagement_type, engagement, other_side in (
            (from_type, from_id, to_type),
            (to_type, to_id, from_type),
        ):
            if engagement_type in ENGAGEMENT_OBJECTS and other_side == "contacts":
                assert engagement_type is not None
                return EventPlan(fetches=[_full_fetch(engagement_type, engagement, options)])
        return EventPlan()
    assert other_type is not None
    if removed:
        if other_type == "contacts":
            left = ContactUpsert(account=company, at=at, contact=other, left=True)
            return EventPlan(events=[left])
        # A ticket, deal or engagement moved off a company still happened there.
        return EventPlan()
    associations = ("contacts",) if other_type in ENGAGEMENT_OBJECTS else ()
    fetch = Fetch(
        object_type=other_type,
        id=other,
        associations=associations,
        only_company=company,
        not_before=at,
    )
    return EventPlan(fetches=[fetch])


# --- step 2: read once, map --------------------------------------------------------------------


async def hydrate(
    client: RetryingClient, plans: Sequence[EventPlan], options: HydrationOptions
) -> tuple[list[list[NormalisedEvent]], HydrationReport]:
    """The events each plan's fetches produce (in plan order), reading every record once.

    The same record version mapped for several events is given to the first only, so an outcome
    is not counted twice. Records that no longer exist produce nothing (counted in the report).
    Raises the client's CRMHTTPError family when HubSpot cannot be read, PayloadError when it
    answers something it does not document.
    """
    report = HydrationReport()
    records, associated, missing = await _read_all(client, plans, options, report)
    results: list[list[NormalisedEvent]] = []
    seen: set[str] = set()
    for plan in plans:
        produced: list[NormalisedEvent] = []
        for fetch in plan.fetches:
            record = _record_for(fetch, records, associated)
            if record is None:
                continue
            for key, event in options.mapping(fetch.object_type).to_events(record):
                if key not in seen:
                    seen.add(key)
                    produced.append(event)
        results.append(produced)
    report.records = len(records)
    report.missing = len(missing)
    if missing:
        log.info(
            "hubspot_records_missing",
            count=len(missing),
            object_types=sorted({object_type for object_type, _ in missing}),
        )
    log.info(
        "hubspot_hydrated",
        plans=len(plans),
        batch_reads=report.batch_reads,
        association_reads=report.association_reads,
        records=report.records,
        missing=report.missing,
        events=sum(len(events) for events in results),
    )
    return results, report


_Key = tuple[str, str]  # (object type, record id)


async def _read_all(
    client: RetryingClient,
    plans: Sequence[EventPlan],
    options: HydrationOptions,
    report: HydrationReport,
) -> tuple[dict[_Key, Record], dict[_Key, dict[str, list[str]]], set[_Key]]:
    """Every record the plans need, each read once: (records, associations, missing ids)."""
    want_properties: dict[str, dict[str, None]] = defaultdict(dict)
    want_associations: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
    for plan in plans:
        for fetch in plan.fetches:
            if fetch.read_properties:
                want_properties[fetch.object_type][fetch.id] = None
            for target in fetch.associations:
                want_associations[(fetch.object_type, target)][fetch.id] = None

    records: dict[_Key, Record] = {}
    missing: set[_Key] = set()
    for object_type, ids in want_properties.items():
        names = options.mapping(object_type).properties
        found, absent = await batch_read(client, object_type, list(ids), names, report)
        records.update(((object_type, r.id), r) for r in found)
        missing.update((object_type, i) for i in absent)
    associated: dict[_Key, dict[str, list[str]]] = defaultdict(dict)
    for (object_type, target), ids in want_associations.items():
        # No need to ask where a record that does not exist is associated.
        wanted = [i for i in ids if (object_type, i) not in missing]
        links = await _association_read(client, object_type, target, wanted, report)
        for source in wanted:
            associated[(object_type, source)][target] = links.get(source, [])
    return records, associated, missing


def _record_for(
    fetch: Fetch,
    records: Mapping[_Key, Record],
    associated: Mapping[_Key, Mapping[str, list[str]]],
) -> Record | None:
    key = (fetch.object_type, fetch.id)
    links = dict(associated.get(key, {}))
    if fetch.only_company is not None:
        links["companies"] = [fetch.only_company]
    if fetch.read_properties:
        read = records.get(key)
        if read is None:
            return None
        record = dataclasses.replace(read, associations=links)
    else:
        assert fetch.not_before is not None
        record = Record(
            id=fetch.id,
            updated_at=fetch.not_before,
            created_at=None,
            properties=dict(fetch.known),
            associations=links,
            where=f"HubSpot {fetch.object_type} {fetch.id}",
        )
    if fetch.not_before is not None and fetch.not_before > record.updated_at:
        record = dataclasses.replace(record, updated_at=fetch.not_before)
    return record


def _chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


async def batch_read(
    client: RetryingClient,
    object_type: str,
    ids: Sequence[str],
    properties: Sequence[str],
    report: HydrationReport,
) -> tuple[list[Record], list[str]]:
    """(records found, ids HubSpot does not have), 100 ids a call."""
    found: list[Record] = []
    for chunk in _chunks(ids, BATCH_READ_LIMIT):
        body = {
            "inputs": [{"id": object_id} for object_id in chunk],
            "properties": list(properties),
            "propertiesWithHistory": [],
        }
        report.batch_reads += 1
        try:
            response = await client.request(
                "POST", f"/crm/v3/objects/{object_type}/batch/read", json=body
            )
        except CRMRequestRejected as exc:
            # HubSpot answers 404 when none of the ids exists (207 when only some do).
            if exc.status == 404:
                continue
            raise
        where = f"HubSpot {object_type} batch read"
        results = json_object(response, where).get("results")
        if not isinstance(results, list):
            raise PayloadError(f"{where}: 'results' is missing or not a list")
        found.extend(
            Record.parse(raw, where=f"{where}: results[{index}]")
            for index, raw in enumerate(results)
        )
    # Whatever HubSpot did not return is missing, whether its 207 errors (OBJECT_NOT_FOUND,
    # context.ids) say so or not.
    returned = {record.id for record in found}
    return found, [object_id for object_id in ids if object_id not in returned]


async def _association_read(
    client: RetryingClient,
    object_type: str,
    target: str,
    ids: Sequence[str],
    report: HydrationReport,
) -> dict[str, list[str]]:
    """Associated `target` ids per id, following each id's paging; 100 inputs a call."""
    linked: dict[str, dict[str, None]] = defaultdict(dict)
    where = f"HubSpot {object_type}->{target} associations batch read"
    pending: list[dict[str, str]] = [{"id": object_id} for object_id in ids]
    for _ in range(_MAX_ASSOCIATION_PAGES):
        if not pending:
            break
        following: list[dict[str, str]] = []
        for start in range(0, len(pending), ASSOCIATION_READ_LIMIT):
            inputs = pending[start : start + ASSOCIATION_READ_LIMIT]
            report.association_reads += 1
            try:
                response = await client.request(
                    "POST",
                    f"/crm/v4/associations/{object_type}/{target}/batch/read",
                    json={"inputs": inputs},
                )
            except CRMRequestRejected as exc:
                if exc.status == 404:  # none of these ids has any
                    continue
                raise
            # Ids without associations come back as errors or not at all: both mean "none".
            for result in _list(json_object(response, where), "results", where):
                source, targets, after = _association_result(result, where)
                for target_id in targets:
                    linked[source][target_id] = None
                if after is not None:
                    following.append({"id": source, "after": after})
        pending = following
    else:
        if pending:
            log.warning("hubspot_associations_truncated", where=where, records=len(pending))
    return {source: list(targets) for source, targets in linked.items()}


def _list(document: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = document.get(name, [])
    if not isinstance(value, list):
        raise PayloadError(f"{where}: '{name}' is not a list")
    return value


def _association_result(raw: Any, where: str) -> tuple[str, list[str], str | None]:
    if not isinstance(raw, dict):
        raise PayloadError(f"{where}: a result is not an object")
    origin = raw.get("from")
    source = record_id(origin.get("id")) if isinstance(origin, dict) else None
    if source is None:
        raise PayloadError(f"{where}: results[].from.id is missing or not a string")
    targets: list[str] = []
    for index, item in enumerate(_list(raw, "to", where)):
        target = record_id(item.get("toObjectId")) if isinstance(item, dict) else None
        if target is None:
            raise PayloadError(f"{where}: results[].to[{index}].toObjectId is missing")
        targets.append(target)
    paging = raw.get("paging")
    after = None
    if isinstance(paging, dict) and isinstance(paging.get("next"), dict):
        value = paging["next"].get("after")
        after = value if isinstance(value, str) and value else None
    return source, targets, after


__all__ = [
    "ASSOCIATION_READ_LIMIT",
    "BATCH_READ_LIMIT",
    "EventPlan",
    "Fetch",
    "HydrationOptions",
    "HydrationReport",
    "hydrate",
    "plan_event",
]
