"""HubSpot backfill listing, driven against the in-process sandbox CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connector.errors import PayloadError
from connector.http import RetryingClient, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.backfill import (
    BACKFILL_OBJECTS,
    BackfillPage,
    CompanyPropertyMap,
    list_backfill_page,
    parse_timestamp,
)
from connector.model import AccountAttributes, ContactUpsert, Interaction, Ticket
from connector.sandbox import SandboxState, create_sandbox_app

NOON = "2026-01-05T12:00:00.000Z"
NOON_AT = datetime(2026, 1, 5, 12, tzinfo=UTC)


class FakeSleep:
    """Records the waits the client asks for instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def state() -> SandboxState:
    return SandboxState()


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def client(state: SandboxState, fake_sleep: FakeSleep) -> AsyncIterator[RetryingClient]:
    client = RetryingClient(
        base_url="http://sandbox",
        name="t",
        transport=httpx.ASGITransport(app=create_sandbox_app(state)),
        policy=RetryPolicy(max_attempts=3),
        sleep=fake_sleep,
    )
    yield client
    await client.aclose()


@pytest.fixture
def company(state: SandboxState) -> str:
    return state.add_company({"name": "Acme", "domain": "acme.test"})


async def _all_pages(
    client: RetryingClient, object_type: str, **options: Any
) -> list[BackfillPage]:
    pages = [await list_backfill_page(client, object_type=object_type, after=None, **options)]
    while pages[-1].next_after is not None:
        pages.append(
            await list_backfill_page(
                client, object_type=object_type, after=pages[-1].next_after, **options
            )
        )
    return pages


async def _events(client: RetryingClient, object_type: str, **options: Any) -> list[Any]:
    return [
        event
        for page in await _all_pages(client, object_type, **options)
        for _, event in page.events
    ]


async def _keys(client: RetryingClient) -> list[str]:
    return [
        key
        for object_type in BACKFILL_OBJECTS
        for page in await _all_pages(client, object_type)
        for key, _ in page.events
    ]


# --- paging ----------------------------------------------------------------------------------


async def test_paging_over_230_companies_returns_each_once_and_ends_with_no_cursor(
    state: SandboxState, client: RetryingClient
) -> None:
    ids = [state.add_company({"name": f"Company {n}"}) for n in range(230)]

    pages = await _all_pages(client, "companies")

    accounts = [event.account for page in pages for _, event in page.events]
    assert len(pages) == 3
    assert [len(page.events) for page in pages] == [100, 100, 30]
    assert accounts == ids
    assert pages[-1].next_after is None
    assert all(page.object_type == "companies" for page in pages)


async def test_page_size_is_sent_as_the_limit(state: SandboxState, client: RetryingClient) -> None:
    for n in range(3):
        state.add_company({"name": f"Company {n}"})

    pages = await _all_pages(client, "companies", page_size=2)

    assert [len(page.events) for page in pages] == [2, 1]
    assert state.requests[0].query["limit"] == "2"


async def test_records_without_a_company_yield_no_events_but_paging_goes_on(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    linked = []
    for n in range(5):
        associations = {"companies": [company]} if n % 2 else None
        email = state.add_object("emails", {"hs_timestamp": NOON}, associations)
        if associations:
            linked.append(email)
    state.add_object("contacts", {"jobtitle": "CTO"})
    state.add_object("tickets", {"subject": "Orphan"})

    pages = await _all_pages(client, "emails", page_size=2)

    assert len(pages) == 3
    assert [key.split(":")[1] for page in pages for key, _ in page.events] == linked
    assert await _events(client, "contacts") == []
    assert await _events(client, "tickets") == []


# --- companies -------------------------------------------------------------------------------


async def test_company_attributes_follow_the_property_map_as_strings(
    state: SandboxState, client: RetryingClient
) -> None:
    company = state.add_company(
        {
            "name": "Acme",
            "domain": "acme.test",
            "numberofemployees": 40,
            "annualrevenue": "120000",
            "industry": "COMPUTER_SOFTWARE",
        }
    )
    property_map = CompanyPropertyMap(
        seats="numberofemployees", arr="annualrevenue", segment="industry"
    )

    [event] = await _events(client, "companies", properties=property_map)

    assert isinstance(event, AccountAttributes)
    assert event.account == company
    assert event.attributes == {
        "name": "Acme",
        "domain": "acme.test",
        "seats": "40",
        "arr": "120000",
        "segment": "COMPUTER_SOFTWARE",
        "owner": None,
        "lifecycle": None,
        "customer_since": None,
        "created": state.companies[company]["createdate"],
    }
    assert event.at == parse_timestamp(state.companies[company]["hs_lastmodifieddate"])
    asked = state.requests[-1].query["properties"].split(",")
    assert sorted(asked) == sorted(
        ["name", "domain", "numberofemployees", "annualrevenue", "industry", "hubspot_owner_id",
         "lifecyclestage", "hs_lifecyclestage_customer_date", "createdate"]
    )  # fmt: skip


async def test_unmapped_attributes_are_left_out(client: RetryingClient, company: str) -> None:
    [event] = await _events(
        client,
        "companies",
        properties=CompanyPropertyMap(
            domain=None, owner=None, lifecycle=None, customer_since=None, created=None
        ),
    )

    assert event.attributes == {"name": "Acme"}


async def test_property_map_refuses_a_blank_property_name() -> None:
    with pytest.raises(ValueError, match="seats"):
        CompanyPropertyMap(seats=" ")


# --- contacts --------------------------------------------------------------------------------


async def test_contact_becomes_one_upsert_per_associated_company(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    other = state.add_company({"name": "Acme Europe"})
    contact = state.add_object(
        "contacts", {"jobtitle": "VP Customer Success"}, {"companies": [company, other]}
    )

    events = await _events(client, "contacts")

    # The primary company is listed twice by HubSpot (labelled and unlabeled): one event each.
    assert [event.account for event in events] == [company, other]
    for event in events:
        assert isinstance(event, ContactUpsert)
        assert event.contact == contact
        assert event.title == "VP Customer Success"
        assert event.executive is True
        assert event.left is False
        assert event.at == parse_timestamp(state.objects["contacts"][contact]["lastmodifieddate"])


@pytest.mark.parametrize(
    ("title", "executive"),
    [
        ("Chief Revenue Officer", True),
        ("CTO", True),
        ("cfo", True),
        ("SVP Engineering", True),
        ("Vice President, Sales", True),
        ("President", True),
        ("Co-Founder", True),
        ("Owner", True),
        ("Head of IT", True),
        ("Director of Operations", True),
        ("Product Owner", False),
        ("Software Engineer", False),
        ("Directory Administrator", False),
        ("Customer Success Manager", False),
    ],
)
async def test_executive_flag_comes_from_the_title(
    state: SandboxState, client: RetryingClient, company: str, title: str, executive: bool
) -> None:
    state.add_object("contacts", {"jobtitle": title}, {"companies": [company]})

    [event] = await _events(client, "contacts")

    assert event.executive is executive


async def test_contact_without_a_title_leaves_executive_undecided(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    state.add_object("contacts", {"firstname": "Ada"}, {"companies": [company]})

    [event] = await _events(client, "contacts")

    assert (event.title, event.executive) == (None, None)


async def test_a_custom_executive_title_pattern_replaces_the_default(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    state.add_object("contacts", {"jobtitle": "Geschäftsführer"}, {"companies": [company]})
    state.add_object("contacts", {"jobtitle": "CEO"}, {"companies": [company]})

    events = await _events(client, "contacts", executive_title=r"gesch[aä]ftsf[uü]hrer")

    assert [event.executive for event in events] == [True, False]


# --- engagements -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("INCOMING_EMAIL", "customer"),
        ("EMAIL", "ours"),
        ("FORWARDED_EMAIL", "ours"),
        (None, "ours"),
    ],
)
async def test_email_direction_is_customer_only_for_incoming_email(
    state: SandboxState,
    client: RetryingClient,
    company: str,
    direction: str | None,
    expected: str,
) -> None:
    contact = state.add_object("contacts", {"email": "ada@acme.test"}, {"companies": [company]})
    email = state.add_object(
        "emails",
        {"hs_timestamp": NOON, "hs_email_direction": direction},
        {"companies": [company], "contacts": [contact]},
    )

    [(key, event)] = (await list_backfill_page(client, object_type="emails", after=None)).events

    assert event == Interaction(
        account=company,
        at=NOON_AT,
        channel="email",
        direction=expected,  # type: ignore[arg-type]
        contact=contact,
        source_id=f"emails:{email}",
    )
    assert key.startswith(f"emails:{email}:")


@pytest.mark.parametrize(
    ("direction", "expected"), [("INBOUND", "customer"), ("OUTBOUND", "ours"), (None, "ours")]
)
async def test_call_direction_is_customer_only_for_inbound_calls(
    state: SandboxState,
    client: RetryingClient,
    company: str,
    direction: str | None,
    expected: str,
) -> None:
    state.add_object(
        "calls", {"hs_timestamp": NOON, "hs_call_direction": direction}, {"companies": [company]}
    )

    [event] = await _events(client, "calls")

    assert (event.channel, event.direction, event.contact) == ("call", expected, None)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("MEETINGS_PUBLIC", "customer"),
        ("MEETINGS_EMBEDDED", "customer"),
        ("CRM_UI", "ours"),
        ("BIDIRECTIONAL_SYNC", "ours"),
        (None, "ours"),
    ],
)
async def test_meeting_booked_by_the_customer_through_a_meetings_link_is_theirs(
    state: SandboxState, client: RetryingClient, company: str, source: str | None, expected: str
) -> None:
    state.add_object(
        "meetings", {"hs_timestamp": NOON, "hs_meeting_source": source}, {"companies": [company]}
    )

    [event] = await _events(client, "meetings")

    assert (event.channel, event.direction) == ("meeting", expected)


async def test_note_is_ours_and_falls_back_to_created_at_without_hs_timestamp(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    note = state.add_object("notes", {"hs_note_body": "Renewal chat"}, {"companies": [company]})

    [event] = await _events(client, "notes")

    assert (event.channel, event.direction, event.contact) == ("note", "ours", None)
    assert event.at == parse_timestamp(state.objects["notes"][note]["hs_createdate"])


async def test_epoch_millisecond_timestamps_are_understood(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    state.add_object("calls", {"hs_timestamp": "1767614400000"}, {"companies": [company]})

    [event] = await _events(client, "calls")

    assert event.at == NOON_AT


async def test_engagement_fans_out_to_every_associated_company_with_its_first_contact(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    other = state.add_company({"name": "Globex"})
    first = state.add_object("contacts", {"email": "a@acme.test"})
    second = state.add_object("contacts", {"email": "b@acme.test"})
    state.add_object(
        "emails",
        {"hs_timestamp": NOON, "hs_email_direction": "INCOMING_EMAIL"},
        {"companies": [company, other], "contacts": [first, second]},
    )

    page = await list_backfill_page(client, object_type="emails", after=None)

    assert [(event.account, getattr(event, "contact", None)) for _, event in page.events] == [
        (company, first),
        (other, first),
    ]
    assert len({key for key, _ in page.events}) == 2


# --- tickets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("LOW", "low"),
        ("MEDIUM", "medium"),
        ("HIGH", "high"),
        ("URGENT", "urgent"),
        (None, "medium"),
    ],
)
async def test_ticket_priority_maps_to_the_normalised_scale(
    state: SandboxState,
    client: RetryingClient,
    company: str,
    priority: str | None,
    expected: str,
) -> None:
    ticket = state.add_object(
        "tickets",
        {"subject": "Export broken", "hs_ticket_priority": priority, "createdate": NOON},
        {"companies": [company]},
    )

    [event] = await _events(client, "tickets")

    assert event == Ticket(account=company, at=NOON_AT, ticket=ticket, priority=expected)  # type: ignore[arg-type]


async def test_ticket_priority_the_portal_added_itself_counts_as_medium(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    # Portals can add their own options to hs_ticket_priority.
    options = state.definitions["tickets"]["hs_ticket_priority"]["options"]
    options.append({"label": "Critical", "value": "CRITICAL", "displayOrder": 4, "hidden": False})
    state.add_object("tickets", {"hs_ticket_priority": "CRITICAL"}, {"companies": [company]})

    [event] = await _events(client, "tickets")

    assert event.priority == "medium"


# --- dedup keys ------------------------------------------------------------------------------


async def _seed_one_of_each(state: SandboxState, company: str) -> dict[str, str]:
    contact = state.add_object("contacts", {"jobtitle": "CTO"}, {"companies": [company]})
    linked = {"companies": [company], "contacts": [contact]}
    return {
        "contacts": contact,
        "emails": state.add_object("emails", {"hs_timestamp": NOON}, linked),
        "calls": state.add_object("calls", {"hs_timestamp": NOON}, linked),
        "meetings": state.add_object("meetings", {"hs_timestamp": NOON}, linked),
        "notes": state.add_object("notes", {"hs_timestamp": NOON}, linked),
        "tickets": state.add_object("tickets", {"subject": "Slow"}, {"companies": [company]}),
    }


async def test_dedup_keys_are_the_same_when_the_same_data_is_listed_again(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    await _seed_one_of_each(state, company)

    first = await _keys(client)
    second = await _keys(client)

    assert first == second
    assert len(first) == len(set(first)) == len(BACKFILL_OBJECTS)


async def test_dedup_key_changes_only_for_the_record_that_was_updated(
    state: SandboxState, client: RetryingClient, company: str
) -> None:
    ids = await _seed_one_of_each(state, company)
    before = await _keys(client)

    state.update_object("contacts", ids["contacts"], {"jobtitle": "CEO"})
    state.update_object("companies", company, {"name": "Acme Inc"})

    after = await _keys(client)
    changed = {key.split(":")[0] for key in set(after) - set(before)}
    assert changed == {"companies", "contacts"}
    assert len(after) == len(before)


# --- faults and bad pages --------------------------------------------------------------------


async def test_a_503_on_a_page_is_retried_by_the_client(
    state: SandboxState, client: RetryingClient, fake_sleep: FakeSleep, company: str
) -> None:
    state.faults.fail_next(1, 503, retry_after=2, path_contains="/objects/companies")

    page = await list_backfill_page(client, object_type="companies", after=None)

    assert [event.account for _, event in page.events] == [company]
    assert [(r.status, r.forced) for r in state.requests] == [(503, True), (200, False)]
    assert len(fake_sleep.waits) == 1
    assert fake_sleep.waits[0] >= 2


def _answering(body: Any) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(200, content=body)
        return httpx.Response(200, json=body)

    return handler


async def _page_from(body: Any, object_type: str = "contacts", **options: Any) -> BackfillPage:
    client = RetryingClient(
        base_url="http://hubspot.test",
        name="t",
        transport=httpx.MockTransport(_answering(body)),
        policy=RetryPolicy(max_attempts=1),
    )
    async with client:
        return await list_backfill_page(client, object_type=object_type, **options)


GOOD_CONTACT = {
    "id": "7",
    "properties": {"jobtitle": "CTO"},
    "createdAt": NOON,
    "updatedAt": NOON,
    "archived": False,
    "associations": {"companies": {"results": [{"id": "1", "type": "contact_to_company"}]}},
}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"<html>busy</html>", "not JSON"),
        ([], "not a JSON object"),
        ({"paging": {}}, "'results' is missing"),
        ({"results": ["7"]}, r"results\[0\] is not an object"),
        ({"results": [{**GOOD_CONTACT, "id": None}]}, r"results\[0\]\.id"),
        ({"results": [{**GOOD_CONTACT, "updatedAt": "yesterday"}]}, r"\(id 7\)\.updatedAt"),
        ({"results": [{**GOOD_CONTACT, "properties": {"jobtitle": 5}}]}, "properties.jobtitle"),
        ({"results": [{**GOOD_CONTACT, "associations": {"companies": []}}]}, "associations"),
        (
            {"results": [{**GOOD_CONTACT, "associations": {"companies": {"results": [{}]}}}]},
            r"associations\.companies\.results\[0\]\.id",
        ),
        ({"results": [], "paging": {"next": {"link": "x"}}}, "paging.next.after"),
    ],
)
async def test_a_malformed_page_raises_payload_error_naming_the_problem(
    body: Any, complaint: str
) -> None:
    with pytest.raises(PayloadError, match=complaint):
        await _page_from(body, after=None)


async def test_a_bad_engagement_timestamp_names_the_record_and_property() -> None:
    email = {**GOOD_CONTACT, "properties": {"hs_timestamp": "soon"}}

    with pytest.raises(PayloadError, match=r"\(id 7\)\.properties\.hs_timestamp"):
        await _page_from({"results": [email]}, object_type="emails", after=None)


async def test_a_cursor_that_does_not_advance_is_refused() -> None:
    body = {"results": [GOOD_CONTACT], "paging": {"next": {"after": "8"}}}

    with pytest.raises(PayloadError, match="repeats the cursor"):
        await _page_from(body, after="8")


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"object_type": "deals"}, "cannot backfill"),
        ({"object_type": "contacts", "page_size": 101}, "page_size"),
        ({"object_type": "contacts", "executive_title": "("}, "executive_title"),
    ],
)
async def test_bad_arguments_are_refused_before_any_call(
    state: SandboxState, client: RetryingClient, options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await list_backfill_page(client, after=None, **options)
    assert state.requests == []


# --- through the connector -------------------------------------------------------------------


async def test_connector_lists_backfill_pages_with_its_own_client(
    state: SandboxState, company: str
) -> None:
    connector = HubSpotConnector.create(
        connection="t",
        access_token="tok",
        api_base="http://sandbox",
        transport=httpx.ASGITransport(app=create_sandbox_app(state, access_token="tok")),
    )
    try:
        page = await connector.list_backfill_page(object_type="companies", after=None)
    finally:
        await connector.aclose()

    assert [event.account for _, event in page.events] == [company]
    assert page.next_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-05T12:00:00Z", NOON_AT),
        ("2026-01-05T12:00:00.000Z", NOON_AT),
        ("2026-01-05T13:00:00+01:00", NOON_AT),
        ("2026-01-05T12:00:00", NOON_AT),
        ("1767614400000", NOON_AT),
        (1767614400000, NOON_AT),
        ("next week", None),
        ("", None),
        (True, None),
        ("99999999999999999999999", None),
    ],
)
def test_parse_timestamp_reads_iso_8601_and_epoch_milliseconds(
    value: object, expected: datetime | None
) -> None:
    assert parse_timestamp(value) == expected
