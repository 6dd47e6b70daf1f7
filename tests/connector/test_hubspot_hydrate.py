"""HubSpot webhook events -> normalised events: what each subscription means, and hydration
(batch reads and associations v4, each record read once per batch), with HubSpot mocked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connector.base import (
    SENTIMENT_AUTHOR_ATTRIBUTE,
    SENTIMENT_FIELD,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
)
from connector.errors import PayloadError
from connector.http import RetryingClient, RetryPolicy
from connector.hubspot.events import HubSpotEvent
from connector.hubspot.hydrate import (
    HydrationOptions,
    hydrate,
    plan_event,
)
from connector.hubspot.records import CompanyPropertyMap, RenewalDeals
from connector.model import (
    AccountAttributes,
    AccountDeleted,
    ContactUpsert,
    Interaction,
    NormalisedEvent,
    Outcome,
    Ticket,
)

API = "https://hubspot.hydrate.test"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
UPDATED = "2026-11-23T11:00:00.000Z"
UPDATED_AT = datetime(2026, 11, 23, 11, tzinfo=UTC)
DEFAULTS = HydrationOptions()
# A configuration with a custom signal, the sentiment picklists and a custom indicator reading
# the portal's own `nps_score`.
PLAN = FieldPlan(
    scores=(ConfiguredField(neutral="health_renewal_risk", label="Health: Risk", description="d"),),
    inputs=(
        ConfiguredField(
            neutral=SENTIMENT_FIELD, label="CSM sentiment", description="d",
            options=("red", "amber", "green"),
        ),
        ConfiguredField(
            neutral=SENTIMENT_REASON_FIELD, label="CSM sentiment reason", description="d",
            options=("champion left", "budget cut"),
        ),
    ),
    reads=("nps_score",),
)  # fmt: skip
PLANNED = HydrationOptions(field_plan=PLAN)


def _event(subscription_type: str, object_id: int | None = 1234, **fields: Any) -> HubSpotEvent:
    base: dict[str, Any] = {
        "eventId": 9,
        "portalId": 62515,
        "occurredAt": int(NOW.timestamp() * 1000),
        "subscriptionType": subscription_type,
    }
    if object_id is not None:
        base["objectId"] = object_id
    base.update(fields)
    return HubSpotEvent.model_validate(base)


@dataclass
class FakeHubSpot:
    """HubSpot's batch read and associations v4 batch read, answering from dicts."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    links: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)
    # Properties the portal has no definition of: HubSpot leaves them out of a read's answer.
    lacking: set[str] = field(default_factory=set)
    reads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    association_reads: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, object_type: str, record_id: str, **properties: str | None) -> None:
        self.records.setdefault(object_type, {})[record_id] = properties

    def link(self, object_type: str, record_id: str, target: str, *ids: str) -> None:
        self.links.setdefault((object_type, target), {})[record_id] = list(ids)

    def batch_read(self, request: httpx.Request, object_type: str) -> httpx.Response:
        body = json.loads(request.content)
        self.reads.append((object_type, body))
        known = self.records.get(object_type, {})
        results = [
            {
                "id": item["id"],
                "properties": {
                    name: known[item["id"]].get(name)
                    for name in body["properties"]
                    if name not in self.lacking
                },
                "createdAt": "2026-11-01T09:00:00.000Z",
                "updatedAt": UPDATED,
                "archived": False,
            }
            for item in body["inputs"]
            if item["id"] in known
        ]
        missing = [item["id"] for item in body["inputs"] if item["id"] not in known]
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            answer["numErrors"] = 1
            answer["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some objects, they may be deleted or not exist.",
                    "context": {"ids": missing},
                }
            ]
        return httpx.Response(207 if missing else 200, json=answer)

    def association_read(self, request: httpx.Request, source: str, target: str) -> httpx.Response:
        body = json.loads(request.content)
        self.association_reads.append((source, target, body))
        known = self.links.get((source, target), {})
        results = [
            {
                "from": {"id": item["id"]},
                "to": [
                    {
                        "toObjectId": int(linked),
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}
                        ],
                    }
                    for linked in known[item["id"]]
                ],
            }
            for item in body["inputs"]
            if item["id"] in known
        ]
        return httpx.Response(200, json={"status": "COMPLETE", "results": results})


@pytest.fixture
async def hubspot() -> AsyncIterator[tuple[FakeHubSpot, RetryingClient]]:
    fake = FakeHubSpot()
    with respx.mock(base_url=API, assert_all_called=False) as router:
        router.post(path__regex=r"^/crm/v3/objects/(?P<object_type>\w+)/batch/read$").mock(
            side_effect=fake.batch_read
        )
        router.post(
            path__regex=r"^/crm/v4/associations/(?P<source>\w+)/(?P<target>\w+)/batch/read$"
        ).mock(side_effect=fake.association_read)
        client = RetryingClient(
            base_url=API, name="hubspot:test", policy=RetryPolicy(max_attempts=1)
        )
        yield fake, client
        await client.aclose()


async def _hydrate(
    client: RetryingClient, *events: HubSpotEvent, options: HydrationOptions = DEFAULTS
) -> list[NormalisedEvent]:
    plans = [plan_event(event, options) for event in events]
    assert all(plan is not None for plan in plans)
    produced, _ = await hydrate(client, [plan for plan in plans if plan is not None], options)
    direct = [e for plan in plans if plan is not None for e in plan.events]
    return direct + [e for events in produced for e in events]


# --- payload alone ---------------------------------------------------------------------------


def test_company_name_change_maps_without_a_read() -> None:
    plan = plan_event(
        _event("company.propertyChange", propertyName="name", propertyValue="Acme"), DEFAULTS
    )
    assert plan is not None
    assert not plan.needs_api
    assert plan.events == [AccountAttributes(account="1234", at=NOW, attributes={"name": "Acme"})]


def test_configured_company_property_maps_to_its_attribute() -> None:
    options = HydrationOptions(properties=CompanyPropertyMap(seats="licensed_seats"))
    plan = plan_event(
        _event("company.propertyChange", propertyName="licensed_seats", propertyValue="40"), options
    )
    assert plan is not None
    assert plan.events == [AccountAttributes(account="1234", at=NOW, attributes={"seats": "40"})]


def test_other_company_change_makes_the_account_known_without_attributes() -> None:
    event = _event("company.propertyChange", propertyName="notes_last_updated", propertyValue="1")
    plan = plan_event(event, DEFAULTS)
    assert plan is not None
    assert plan.events == [AccountAttributes(account="1234", at=NOW, attributes={})]


def test_change_to_our_own_health_property_is_not_activity() -> None:
    event = _event("company.propertyChange", propertyName="health_score", propertyValue="80")
    plan = plan_event(event, DEFAULTS)
    assert plan is not None
    assert (plan.events, plan.fetches, plan.contacts_deleted) == ([], [], [])


def test_change_to_a_custom_signals_score_property_is_not_activity() -> None:
    event = _event("company.propertyChange", propertyName="health_renewal_risk", propertyValue="9")
    plan = plan_event(event, PLANNED)
    assert plan is not None
    assert (plan.events, plan.fetches, plan.contacts_deleted) == ([], [], [])


def test_change_of_a_configured_read_sets_its_property_attribute() -> None:
    event = _event(
        "company.propertyChange",
        propertyName="nps_score",
        propertyValue=" 42 ",
        sourceId="userId:123",
    )
    plan = plan_event(event, PLANNED)
    assert plan is not None
    assert plan.events == [
        AccountAttributes(account="1234", at=NOW, attributes={"property:nps_score": "42"})
    ], "the author goes with an input picklist only"


def test_a_configured_read_of_a_mapped_property_sets_both_attributes() -> None:
    options = HydrationOptions(
        properties=CompanyPropertyMap(seats="licensed_seats"),
        field_plan=FieldPlan(reads=("licensed_seats",)),
    )
    event = _event("company.propertyChange", propertyName="licensed_seats", propertyValue="40")
    plan = plan_event(event, options)
    assert plan is not None
    [change] = plan.events
    assert isinstance(change, AccountAttributes)
    assert change.attributes == {"seats": "40", "property:licensed_seats": "40"}


def test_a_sentiment_set_by_a_hubspot_user_carries_its_author() -> None:
    event = _event(
        "company.propertyChange",
        propertyName=SENTIMENT_FIELD,
        propertyValue="amber",
        changeSource="CRM_UI",
        sourceId="userId:123",
    )
    plan = plan_event(event, PLANNED)
    assert plan is not None
    assert plan.events == [
        AccountAttributes(
            account="1234",
            at=NOW,
            attributes={SENTIMENT_FIELD: "amber", SENTIMENT_AUTHOR_ATTRIBUTE: "HubSpot user 123"},
        )
    ]


@pytest.mark.parametrize(
    "source",
    [{}, {"sourceId": "987654"}, {"sourceId": "userId:"}, {"sourceId": "userId:12a"}],
    ids=["no-source", "an-app", "no-user-id", "not-a-user-id"],
)
def test_a_sentiment_reason_set_by_no_named_user_has_no_author(source: dict[str, Any]) -> None:
    event = _event(
        "company.propertyChange", propertyName=SENTIMENT_REASON_FIELD, propertyValue="", **source
    )
    plan = plan_event(event, PLANNED)
    assert plan is not None
    assert plan.events == [
        AccountAttributes(account="1234", at=NOW, attributes={SENTIMENT_REASON_FIELD: None})
    ]


def test_without_a_plan_a_sentiment_change_only_makes_the_account_known() -> None:
    event = _event(
        "company.propertyChange",
        propertyName=SENTIMENT_FIELD,
        propertyValue="red",
        sourceId="userId:123",
    )
    plan = plan_event(event, DEFAULTS)
    assert plan is not None
    assert plan.events == [AccountAttributes(account="1234", at=NOW, attributes={})]


def test_company_deletion_deletes_the_account() -> None:
    plan = plan_event(_event("company.deletion"), DEFAULTS)
    assert plan is not None
    assert plan.events == [AccountDeleted(account="1234", at=NOW)]


def test_contact_deletion_says_the_contact_is_gone() -> None:
    plan = plan_event(_event("contact.deletion", object_id=77), DEFAULTS)
    assert plan is not None
    assert plan.contacts_deleted == [("77", NOW)]


def test_deleted_engagement_keeps_its_facts() -> None:
    plan = plan_event(_event("object.deletion", objectTypeId="0-49"), DEFAULTS)
    assert plan is not None
    assert (plan.events, plan.fetches) == ([], [])


def test_removed_contact_association_means_the_contact_left() -> None:
    event = _event(
        "contact.associationChange",
        object_id=None,
        associationType="CONTACT_TO_COMPANY",
        fromObjectId=77,
        toObjectId=1234,
        associationRemoved=True,
        isPrimaryAssociation=False,
    )
    plan = plan_event(event, DEFAULTS)
    assert plan is not None
    assert not plan.needs_api
    assert plan.events == [ContactUpsert(account="1234", at=NOW, contact="77", left=True)]


@pytest.mark.parametrize(
    "event",
    [
        _event("conversation.newMessage"),
        _event("object.creation", objectTypeId="0-7"),  # products
        _event("company.unknownAction"),
    ],
    ids=["conversation", "product", "unknown-action"],
)
def test_unsupported_events_are_not_handled(event: HubSpotEvent) -> None:
    assert plan_event(event, DEFAULTS) is None


def test_association_change_without_its_fields_names_the_missing_one() -> None:
    event = _event(
        "company.associationChange",
        object_id=None,
        associationType="COMPANY_TO_CONTACT",
        fromObjectId=1234,
        toObjectId=77,
    )
    with pytest.raises(PayloadError, match="associationRemoved"):
        plan_event(event, DEFAULTS)


# --- hydrated ----------------------------------------------------------------------------------


async def test_company_creation_reads_the_mapped_properties(hubspot) -> None:
    fake, client = hubspot
    fake.add(
        "companies", "1234", name="Acme", domain="acme.test", hubspot_owner_id="9",
        lifecyclestage="customer", hs_lifecyclestage_customer_date="2026-11-28T10:00:00.000Z",
    )  # fmt: skip
    [event] = await _hydrate(client, _event("company.creation"))
    assert event == AccountAttributes(
        account="1234",
        at=UPDATED_AT,
        attributes={"name": "Acme", "domain": "acme.test", "owner": "9", "lifecycle": "customer",
                    "customer_since": "2026-11-28T10:00:00.000Z", "created": None},
    )  # fmt: skip
    [(object_type, body)] = fake.reads
    assert object_type == "companies"
    assert body == {
        "inputs": [{"id": "1234"}],
        "properties": [
            "createdate",
            "domain",
            "hs_lifecyclestage_customer_date",
            "hubspot_owner_id",
            "lifecyclestage",
            "name",
        ],
        "propertiesWithHistory": [],
    }


async def test_a_hydrated_company_carries_the_plans_reads_and_inputs(hubspot) -> None:
    fake, client = hubspot
    fake.add(
        "companies", "1234", name="Acme", nps_score="42", health_csm_sentiment="red",
        health_csm_sentiment_reason="", health_renewal_risk="12",
    )  # fmt: skip
    [event] = await _hydrate(client, _event("company.creation"), options=PLANNED)
    assert isinstance(event, AccountAttributes)
    assert {name: event.attributes[name] for name in event.attributes if name != "name"} == {
        "domain": None, "owner": None, "lifecycle": None, "customer_since": None,
        "created": None, "property:nps_score": "42", SENTIMENT_FIELD: "red",
        SENTIMENT_REASON_FIELD: None,
    }  # fmt: skip
    [(_, body)] = fake.reads
    asked = body["properties"]
    assert {"nps_score", SENTIMENT_FIELD, SENTIMENT_REASON_FIELD} <= set(asked)
    assert "health_renewal_risk" not in asked, "scores are ours: read back only by read_health"
    assert SENTIMENT_AUTHOR_ATTRIBUTE not in event.attributes


async def test_a_configured_property_the_portal_lacks_does_not_break_other_events(
    hubspot,
) -> None:
    fake, client = hubspot
    fake.lacking = {"nps_score", SENTIMENT_FIELD, SENTIMENT_REASON_FIELD}
    fake.add("companies", "1234", name="Acme")
    fake.add("contacts", "77", jobtitle="CEO")
    fake.link("contacts", "77", "companies", "1234")
    events = await _hydrate(
        client,
        _event("company.creation"),
        _event("contact.creation", object_id=77, eventId=10),
        options=PLANNED,
    )
    company, contact = events
    assert isinstance(company, AccountAttributes)
    assert company.attributes["name"] == "Acme"
    assert not {"property:nps_score", SENTIMENT_FIELD, SENTIMENT_REASON_FIELD} & set(
        company.attributes
    ), "a property the answer leaves out says nothing (no clear of the value held)"
    assert contact == ContactUpsert(
        account="1234", at=UPDATED_AT, contact="77", title="CEO", executive=True
    )


async def test_new_contact_at_a_company_is_an_executive_by_title(hubspot) -> None:
    fake, client = hubspot
    fake.add("contacts", "77", jobtitle="VP Sales")
    fake.link("contacts", "77", "companies", "1234", "1235")
    events = await _hydrate(client, _event("contact.creation", object_id=77))
    assert events == [
        ContactUpsert(
            account=company, at=UPDATED_AT, contact="77", title="VP Sales", executive=True
        )
        for company in ("1234", "1235")
    ]
    [(source, target, body)] = fake.association_reads
    assert (source, target, body) == ("contacts", "companies", {"inputs": [{"id": "77"}]})


async def test_job_title_change_reads_only_where_the_contact_works(hubspot) -> None:
    fake, client = hubspot
    fake.link("contacts", "77", "companies", "1234")
    event = _event(
        "contact.propertyChange", object_id=77, propertyName="jobtitle", propertyValue="Engineer"
    )
    events = await _hydrate(client, event)
    assert events == [
        ContactUpsert(account="1234", at=NOW, contact="77", title="Engineer", executive=False)
    ]
    assert fake.reads == []


async def test_custom_executive_title_pattern_replaces_the_default(hubspot) -> None:
    fake, client = hubspot
    fake.add("contacts", "77", jobtitle="Geschäftsführer")
    fake.link("contacts", "77", "companies", "1234")
    options = HydrationOptions(executive_title=r"gesch[aä]ftsf[uü]hrer")
    [event] = await _hydrate(client, _event("contact.creation", object_id=77), options=options)
    assert isinstance(event, ContactUpsert)
    assert event.executive is True


async def test_contact_added_to_a_company_joins_that_company_only(hubspot) -> None:
    fake, client = hubspot
    fake.add("contacts", "77", jobtitle="Director of IT")
    event = _event(
        "company.associationChange",
        object_id=None,
        associationType="COMPANY_TO_CONTACT",
        fromObjectId=1234,
        toObjectId=77,
        associationRemoved=False,
    )
    [upsert] = await _hydrate(client, event)
    assert upsert == ContactUpsert(
        account="1234", at=NOW, contact="77", title="Director of IT", executive=True
    )
    assert fake.association_reads == []


@pytest.mark.parametrize(
    ("type_id", "object_type", "properties", "expected"),
    [
        ("0-49", "emails", {"hs_email_direction": "INCOMING_EMAIL"}, ("email", "customer")),
        ("0-49", "emails", {"hs_email_direction": "EMAIL"}, ("email", "ours")),
        ("0-48", "calls", {"hs_call_direction": "INBOUND"}, ("call", "customer")),
        ("0-47", "meetings", {"hs_meeting_source": "MEETINGS_PUBLIC"}, ("meeting", "customer")),
        ("0-47", "meetings", {"hs_meeting_source": "CRM_UI"}, ("meeting", "ours")),
        ("0-46", "notes", {}, ("note", "ours")),
    ],
)
async def test_new_engagement_becomes_an_interaction_with_its_direction(
    hubspot, type_id, object_type, properties, expected
) -> None:
    channel, direction = expected
    fake, client = hubspot
    fake.add(object_type, "501", hs_timestamp="2026-11-20T10:00:00Z", **properties)
    fake.link(object_type, "501", "companies", "1234")
    fake.link(object_type, "501", "contacts", "77")
    [event] = await _hydrate(client, _event("object.creation", object_id=501, objectTypeId=type_id))
    assert event == Interaction(
        account="1234",
        at=datetime(2026, 11, 20, 10, tzinfo=UTC),
        channel=channel,
        direction=direction,
        contact="77",
        source_id=f"{object_type}:501",
    )


async def test_ticket_priority_is_read_with_its_companies(hubspot) -> None:
    fake, client = hubspot
    fake.add("tickets", "31", hs_ticket_priority="HIGH", createdate="2026-11-22T08:00:00Z")
    fake.link("tickets", "31", "companies", "1234")
    [event] = await _hydrate(client, _event("ticket.creation", object_id=31))
    assert event == Ticket(
        account="1234", at=datetime(2026, 11, 22, 8, tzinfo=UTC), ticket="31", priority="high"
    )


@pytest.mark.parametrize(
    ("dealtype", "won", "expected"),
    [
        ("existingbusiness", "true", "renewed"),
        ("existingbusiness", "false", "churned"),
        ("newbusiness", "true", None),
    ],
)
async def test_closed_renewal_deal_is_an_outcome(hubspot, dealtype, won, expected) -> None:
    fake, client = hubspot
    fake.add(
        "deals",
        "88",
        dealtype=dealtype,
        hs_is_closed="true",
        hs_is_closed_won=won,
        closedate="2026-11-21T00:00:00Z",
    )
    fake.link("deals", "88", "companies", "1234")
    event = _event(
        "deal.propertyChange", object_id=88, propertyName="dealstage", propertyValue="closedwon"
    )
    events = await _hydrate(client, event)
    closed = datetime(2026, 11, 21, tzinfo=UTC)
    assert events == (
        [] if expected is None else [Outcome(account="1234", at=closed, outcome=expected)]
    )


async def test_every_closed_deal_counts_when_no_deal_type_is_configured(hubspot) -> None:
    fake, client = hubspot
    fake.add("deals", "88", hs_is_closed="true", hs_is_closed_won="true")
    fake.link("deals", "88", "companies", "1234")
    options = HydrationOptions(renewals=RenewalDeals(type_property=None))
    [event] = await _hydrate(client, _event("deal.creation", object_id=88), options=options)
    assert event == Outcome(account="1234", at=UPDATED_AT, outcome="renewed")


async def test_merged_company_is_deleted_and_the_survivor_read(hubspot) -> None:
    fake, client = hubspot
    fake.add("companies", "1234", name="Acme merged")
    event = _event("company.merge", primaryObjectId=1234, mergedObjectIds=[999])
    events = await _hydrate(client, event)
    assert AccountDeleted(account="999", at=NOW) in events
    assert events[-1] == AccountAttributes(
        account="1234",
        at=UPDATED_AT,
        attributes={
            "name": "Acme merged",
            "domain": None,
            "owner": None,
            "lifecycle": None,
            "customer_since": None,
            "created": None,
        },
    )


async def test_events_for_the_same_records_are_read_once_per_batch(hubspot) -> None:
    fake, client = hubspot
    for n in range(120):
        fake.add("contacts", str(n), jobtitle="Engineer")
        fake.link("contacts", str(n), "companies", "1234")
    events = [_event("contact.creation", object_id=n % 120, eventId=n) for n in range(150)]
    produced = await _hydrate(client, *events)
    assert len(fake.reads) == 2
    assert [len(body["inputs"]) for _, body in fake.reads] == [100, 20]
    assert [len(body["inputs"]) for _, _, body in fake.association_reads] == [100, 20]
    assert len(produced) == 120, "each record's events once, not once per event"


async def test_records_that_no_longer_exist_produce_nothing(hubspot) -> None:
    fake, client = hubspot
    fake.add("tickets", "31", hs_ticket_priority="LOW", createdate=UPDATED)
    fake.link("tickets", "31", "companies", "1234")
    plans = [
        plan_event(_event("ticket.creation", object_id=ticket, eventId=ticket), DEFAULTS)
        for ticket in (31, 32)
    ]
    produced, report = await hydrate(client, [p for p in plans if p is not None], DEFAULTS)
    assert [len(events) for events in produced] == [1, 0]
    assert report.missing == 1
    [(_, _, body)] = fake.association_reads
    assert body == {"inputs": [{"id": "31"}]}, "no association read for a missing record"


async def test_batch_read_answering_404_means_none_exist() -> None:
    with respx.mock(base_url=API) as router:
        router.post("/crm/v3/objects/companies/batch/read").respond(
            404, json={"status": "error", "category": "OBJECT_NOT_FOUND"}
        )
        async with RetryingClient(
            base_url=API, name="hubspot:test", policy=RetryPolicy(max_attempts=1)
        ) as client:
            plan = plan_event(_event("company.restore"), DEFAULTS)
            assert plan is not None
            produced, report = await hydrate(client, [plan], DEFAULTS)
    assert (produced, report.missing) == ([[]], 1)


def test_restore_is_read_like_a_creation() -> None:
    plan = plan_event(_event("company.restore"), DEFAULTS)
    assert plan is not None
    assert plan.needs_api
    assert plan.events == []
