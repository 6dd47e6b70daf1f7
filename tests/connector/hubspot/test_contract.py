"""The HubSpot contract: every request body the connector sends and every answer the sandbox
gives, checked against JSON schemas written from HubSpot's API reference (tests/connector/
hubspot/schemas, each naming its source). The connector's own code runs against the sandbox
through a recording transport, so what is checked is what goes over the wire."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from connector.base import (
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    ConfiguredField,
    FieldPlan,
    RecordUpdate,
    TaskRequest,
)
from connector.http import RetryingClient
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.fields import PROPERTIES, PROPERTY_BY_FIELD
from connector.hubspot.hydrate import EventPlan, Fetch
from connector.hubspot.oauth import OAuthApp, exchange_code, portal_of, refresh_tokens
from connector.sandbox import SandboxState, create_sandbox_app
from connector.sandbox.seed import ALL_OBJECT_TYPES

SCHEMAS = Path(__file__).parent / "schemas"
API = "http://sandbox.contract"
CLIENT_ID = "contract-client"
CLIENT_SECRET = "contract-secret"
REDIRECT = "http://plugin.test/oauth/callback"


def _registry() -> Registry[Any]:
    resources = []
    for path in sorted(SCHEMAS.glob("*.json")):
        document = json.loads(path.read_text())
        Draft202012Validator.check_schema(document)
        resources.append((document["$id"], Resource.from_contents(document)))
    return Registry().with_resources(resources)


REGISTRY = _registry()
BASE = "https://crm-health.invalid/schemas/hubspot/"


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{BASE}{name}.json"}, registry=REGISTRY)


def violations(name: str, document: Any) -> list[str]:
    """Each way `document` breaks schema `name`, as "path: message"."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator(name).iter_errors(document)
    ]


# --- which schema each endpoint the connector uses (or the sandbox serves) answers to ---------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a regex matched against the whole path
    request: str | None  # schema of the body; None: the call has no body
    response: str  # schema of a 2xx answer
    form: bool = False  # the body is form-encoded, not JSON


ROUTES: tuple[Route, ...] = (
    Route("GET", r"/crm/v3/properties/\w+/groups", None, "collection-response-property-group"),
    Route("POST", r"/crm/v3/properties/\w+/groups", "property-group-create", "property-group"),
    Route("GET", r"/crm/v3/properties/\w+/groups/\w+", None, "property-group"),
    Route("GET", r"/crm/v3/properties/\w+", None, "collection-response-property"),
    Route("POST", r"/crm/v3/properties/\w+", "property-create", "property"),
    Route("GET", r"/crm/v3/properties/\w+/\w+", None, "property"),
    Route("PATCH", r"/crm/v3/properties/\w+/\w+", "property-update", "property"),
    Route(
        "POST",
        r"/crm/v3/objects/\w+/batch/update",
        "batch-update-input",
        "batch-response-simple-public-object",
    ),
    Route(
        "POST",
        r"/crm/v3/objects/\w+/batch/read",
        "batch-read-input",
        "batch-response-simple-public-object",
    ),
    Route("GET", r"/crm/v3/objects/\w+", None, "collection-response-simple-public-object"),
    Route("POST", r"/crm/v3/objects/\w+", "object-create-input", "simple-public-object"),
    Route("GET", r"/crm/v3/objects/\w+/[^/]+", None, "simple-public-object"),
    Route(
        "POST",
        r"/crm/v4/associations/\w+/\w+/batch/read",
        "associations-batch-read-input",
        "associations-batch-response",
    ),
    Route("POST", r"/oauth/v1/token", "oauth-token-form", "oauth-token-response", form=True),
    Route("GET", r"/oauth/v1/access-tokens/[^/]+", None, "oauth-access-token-info"),
)


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    request_body: bytes
    status: int
    response_body: bytes

    def route(self) -> Route | None:
        for route in ROUTES:
            if route.method == self.method and re.fullmatch(route.path, self.path):
                return route
        return None

    def problems(self) -> list[str]:
        """Everything in this call that breaks the contract (empty when it keeps it)."""
        where = f"{self.method} {self.path} ({self.status})"
        route = self.route()
        if route is None:
            return [f"{where}: no schema for this endpoint; add one to ROUTES"]
        found: list[str] = []
        if route.request is None:
            if self.request_body:
                found.append(f"{where} request: a body where none is expected")
        else:
            body = (
                dict(parse_qsl(self.request_body.decode(), keep_blank_values=True))
                if route.form
                else json.loads(self.request_body)
            )
            found += [f"{where} request {p}" for p in violations(route.request, body)]
        answer = json.loads(self.response_body) if self.response_body else None
        if 200 <= self.status < 300:
            found += [f"{where} answer {p}" for p in violations(route.response, answer)]
            if self.status == 207 and not {"errors", "numErrors"} <= set(answer or {}):
                found.append(f"{where} answer: a 207 without errors and numErrors")
        elif self.path.startswith("/crm/"):
            found += [f"{where} error answer {p}" for p in violations("error", answer)]
        return found


class Recorder(httpx.AsyncBaseTransport):
    """Passes every call to the sandbox and keeps the request and answer bodies."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        self.exchanges.append(
            Exchange(
                request.method, request.url.path, request.content, response.status_code, content
            )
        )
        return httpx.Response(
            response.status_code, headers=response.headers, content=content, request=request
        )

    def calls(self, method: str, path_contains: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == method and path_contains in e.path]

    def assert_contract_kept(self) -> None:
        problems = [problem for exchange in self.exchanges for problem in exchange.problems()]
        assert self.exchanges, "nothing was recorded"
        assert not problems, "\n".join(problems)


@pytest.fixture
def state() -> SandboxState:
    sandbox = SandboxState(oauth_client_id=CLIENT_ID, oauth_client_secret=CLIENT_SECRET)
    # A roomy allowance: the client paces itself by the rate-limit headers, which only slows
    # the test down here.
    sandbox.limits.configure(window_max=100_000)
    return sandbox


@pytest.fixture
def recorder(state: SandboxState) -> Recorder:
    return Recorder(httpx.ASGITransport(app=create_sandbox_app(state)))


@pytest.fixture
async def connector(recorder: Recorder) -> AsyncIterator[HubSpotConnector]:
    hubspot = HubSpotConnector.create(
        connection="contract",
        access_token="pat-contract",
        api_base=API,
        rate_limit=None,
        transport=recorder,
    )
    yield hubspot
    await hubspot.aclose()


@pytest.fixture
async def raw(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client on the same recorder, for sandbox answers the connector never asks for."""
    async with httpx.AsyncClient(transport=recorder, base_url=API) as client:
        yield client


# --- (a) the connector's requests and (b) the sandbox's answers, on the wire ----------------


async def test_provisioning_keeps_the_properties_contract(
    state: SandboxState, recorder: Recorder, connector: HubSpotConnector
) -> None:
    await connector.ensure_fields()
    # A portal whose health_band lost an option and whose score says something else: the
    # second run updates both in place (PATCH with the options).
    band = state.properties["health_band"]
    band["options"] = band["options"][:-1]
    state.properties["health_score"]["description"] = "edited by hand"
    await connector.ensure_fields()

    recorder.assert_contract_kept()
    created = {
        json.loads(e.request_body)["name"]
        for e in recorder.calls("POST", "/crm/v3/properties/companies")
        if not e.path.endswith("/groups")
    }
    assert created == {spec.name for spec in PROPERTIES}
    assert [e.path.rsplit("/", 1)[1] for e in recorder.calls("PATCH", "/properties/")] == [
        "health_score",
        "health_band",
    ]
    assert recorder.calls("POST", "/properties/companies/groups")


async def test_provisioning_a_field_plan_keeps_the_properties_contract(
    state: SandboxState, recorder: Recorder, connector: HubSpotConnector
) -> None:
    score = ConfiguredField(neutral="health_renewal_risk", label="Health: Risk", description="r")
    sentiment = ConfiguredField(
        neutral=SENTIMENT_FIELD, label="CSM sentiment", description="s", options=SENTIMENT_RATINGS
    )
    connector.plan_fields(FieldPlan(scores=(score,), inputs=(sentiment,), reads=("nps_score",)))
    await connector.ensure_fields()
    company = state.add_company({"name": "Acme"})
    await connector.write_health(
        [RecordUpdate(record_id=company, fields={"health_renewal_risk": 12})]
    )
    await connector.read_health([company])
    await connector.list_backfill_page(object_type="companies", after=None)

    recorder.assert_contract_kept()
    created = {
        json.loads(e.request_body)["name"]
        for e in recorder.calls("POST", "/crm/v3/properties/companies")
        if not e.path.endswith("/groups")
    }
    assert {"health_renewal_risk", SENTIMENT_FIELD} <= created


async def test_writing_health_keeps_the_objects_contract(
    state: SandboxState, recorder: Recorder, connector: HubSpotConnector
) -> None:
    await connector.ensure_fields()
    first = state.add_company({"name": "Acme", "numberofemployees": 40})
    second = state.add_company({"name": "Globex"})
    fields: dict[str, Any] = {
        "health_score": 72.0,
        "health_band": "healthy",
        "health_trend_30d": -3.5,
        "health_active_use": 80,
        "health_collaboration": None,
        "health_drivers": "Seats in use: 90%\nExecutive reached",
        "health_updated_at": "2026-11-23T12:00:00.000Z",
    }

    await connector.write_health(
        [
            RecordUpdate(record_id=first, fields=fields),
            RecordUpdate(record_id=second, fields={**fields, "health_band": "at_risk"}),
        ]
    )
    # An id the portal does not have: HubSpot's 207 multi-status answer.
    result = await connector.write_health(
        [
            RecordUpdate(record_id=first, fields={"health_score": 71}),
            RecordUpdate(record_id="424242", fields={"health_score": 10}),
        ]
    )
    await connector.create_task(
        TaskRequest(
            record_id=first,
            subject="Acme turned at risk",
            body="Seats in use fell to 20%.",
            due_at=datetime(2026, 11, 24, 9, tzinfo=UTC),
            priority="high",
        )
    )

    recorder.assert_contract_kept()
    assert set(result.missing) == {"424242"}
    assert [e.status for e in recorder.calls("POST", "/batch/update")] == [200, 207]
    answer = json.loads(recorder.calls("POST", "/batch/update")[0].response_body)
    written = answer["results"][0]["properties"]
    assert written["health_score"] == "72"
    assert written["health_collaboration"] == ""


async def _seed_portal(state: SandboxState) -> dict[str, str]:
    """One record of every type the connector reads, linked to one company."""
    company = state.add_company(
        {"name": "Acme", "domain": "acme.test", "numberofemployees": 120, "annualrevenue": 1.5e6}
    )
    state.add_company({"name": "Globex"})
    contact = state.add_object(
        "contacts", {"email": "ceo@acme.test", "jobtitle": "CEO"}, {"companies": [company]}
    )
    ids = {"companies": company, "contacts": contact}
    at = "2026-11-20T10:00:00.000Z"
    engagements: dict[str, dict[str, Any]] = {
        "emails": {"hs_timestamp": at, "hs_email_direction": "INCOMING_EMAIL"},
        "calls": {"hs_timestamp": at, "hs_call_direction": "INBOUND", "hs_call_duration": 3000},
        "meetings": {"hs_timestamp": at, "hs_meeting_outcome": "COMPLETED"},
        "notes": {"hs_timestamp": at, "hs_note_body": "Quarterly review"},
    }
    for object_type, properties in engagements.items():
        ids[object_type] = state.add_object(
            object_type, properties, {"companies": [company], "contacts": [contact]}
        )
    ids["tickets"] = state.add_object(
        "tickets",
        {"subject": "Login fails", "hs_ticket_priority": "HIGH"},
        {"companies": [company]},
    )
    ids["deals"] = state.add_object(
        "deals",
        {"dealname": "Renewal", "amount": "12000", "closedate": at},
        {"companies": [company]},
    )
    return ids


async def test_backfill_keeps_the_list_contract(
    state: SandboxState, recorder: Recorder, connector: HubSpotConnector
) -> None:
    await _seed_portal(state)

    for object_type in connector.backfill_objects:
        after: str | None = None
        while True:
            page = await connector.list_backfill_page(
                object_type=object_type, after=after, page_size=1
            )
            after = page.next_after
            if after is None:
                break

    recorder.assert_contract_kept()
    listed = {e.path.rsplit("/", 1)[1] for e in recorder.calls("GET", "/crm/v3/objects/")}
    assert listed == set(connector.backfill_objects)
    # Page size 1 over two companies: the first page carried a paging cursor.
    assert any(b'"paging"' in e.response_body for e in recorder.calls("GET", "/companies"))


async def test_hydration_keeps_the_batch_read_and_associations_contract(
    state: SandboxState, recorder: Recorder, connector: HubSpotConnector
) -> None:
    ids = await _seed_portal(state)
    fetches = [
        Fetch(object_type=object_type, id=record_id, associations=associations)
        for object_type, record_id in ids.items()
        for associations in [connector.hydration.mapping(object_type).associations]
    ]
    # A contact HubSpot no longer has (207 on the batch read) and a company nothing links to
    # (207 on the associations read).
    fetches.append(Fetch(object_type="contacts", id="999999", associations=("companies",)))
    lonely = state.add_object("notes", {"hs_timestamp": "2026-11-21T10:00:00.000Z"})
    fetches.append(Fetch(object_type="notes", id=lonely, associations=("companies", "contacts")))

    await connector.hydrate([EventPlan(fetches=fetches)])

    recorder.assert_contract_kept()
    assert 207 in {e.status for e in recorder.calls("POST", "/batch/read")}
    associations = recorder.calls("POST", "/crm/v4/associations/")
    assert associations
    assert 207 in {e.status for e in associations}


async def test_oauth_keeps_the_token_contract(state: SandboxState, recorder: Recorder) -> None:
    app = OAuthApp(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT,
        scopes=("oauth", "crm.objects.companies.write"),
    )
    async with httpx.AsyncClient(transport=recorder, base_url=API) as browser:
        approved = await browser.get(
            "/oauth/authorize",
            params={"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "scope": "oauth"},
        )
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    recorder.exchanges.clear()  # the install page is HubSpot's web app, not its API
    client = RetryingClient(base_url=API, name="oauth", transport=recorder)
    now = datetime.now(UTC)

    tokens = await exchange_code(client, app=app, code=code, now=now)
    fresh = await refresh_tokens(
        client, app=app, refresh_token=tokens.refresh_token, now=now + timedelta(minutes=1)
    )
    portal = await portal_of(client, fresh.access_token)
    await client.aclose()

    recorder.assert_contract_kept()
    assert portal == state.portal_id
    assert len(recorder.calls("POST", "/oauth/v1/token")) == 2


@pytest.mark.parametrize("object_type", ALL_OBJECT_TYPES)
async def test_sandbox_reads_of_every_object_type_keep_the_objects_contract(
    state: SandboxState, recorder: Recorder, raw: httpx.AsyncClient, object_type: str
) -> None:
    ids = await _seed_portal(state)
    record_id = ids.get(object_type) or state.add_object(
        object_type, {"hs_timestamp": "2026-11-22T10:00:00.000Z"}, {"companies": [ids["companies"]]}
    )
    names = ",".join(state.definitions[object_type])
    linked = "companies" if object_type != "companies" else "contacts"

    await raw.get(
        f"/crm/v3/objects/{object_type}",
        params={"properties": names, "associations": linked, "limit": 1},
    )
    await raw.get(
        f"/crm/v3/objects/{object_type}/{record_id}",
        params={"properties": names, "associations": linked},
    )
    await raw.post(
        f"/crm/v3/objects/{object_type}/batch/read",
        json={
            "inputs": [{"id": record_id}],
            "properties": list(state.definitions[object_type]),
            "propertiesWithHistory": [],
        },
    )
    await raw.get("/crm/v3/properties/companies/name")
    await raw.get("/crm/v3/properties/companies/groups/companyinformation")
    await raw.get(f"/crm/v3/objects/{object_type}/777777")  # an error answer

    recorder.assert_contract_kept()
    assert [e.status for e in recorder.exchanges] == [200, 200, 200, 200, 200, 404]


# --- the schemas can fail: what they must catch ----------------------------------------------


def _band_definition() -> dict[str, Any]:
    return PROPERTY_BY_FIELD["health_band"].definition()


def _without_hidden(definition: dict[str, Any]) -> dict[str, Any]:
    options = [{k: v for k, v in o.items() if k != "hidden"} for o in definition["options"]]
    return {**definition, "options": options}


def test_every_property_definition_keeps_property_create() -> None:
    for spec in PROPERTIES:
        assert violations("property-create", spec.definition()) == [], spec.name


def test_every_enumeration_option_carries_label_value_display_order_and_hidden_false() -> None:
    options = _band_definition()["options"]

    assert [o["displayOrder"] for o in options] == list(range(len(options)))
    assert all(o["hidden"] is False and o["label"] and o["value"] for o in options)


@pytest.mark.parametrize("schema", ["property-create", "property-update"])
def test_an_option_without_hidden_breaks_the_contract(schema: str) -> None:
    definition = _without_hidden(_band_definition())
    if schema == "property-update":
        definition = {"options": definition["options"]}

    problems = violations(schema, definition)

    assert problems
    assert all("'hidden' is a required property" in p for p in problems)


def _company() -> dict[str, Any]:
    return {
        "id": "1",
        "properties": {"name": "Acme", "numberofemployees": "42", "city": None},
        "createdAt": "2026-11-23T12:00:00.000Z",
        "updatedAt": "2026-11-23T12:00:00.000Z",
        "archived": False,
    }


BROKEN_OBJECTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a number in properties": lambda o: o["properties"].update(numberofemployees=42),
    "a boolean in properties": lambda o: o["properties"].update(is_public=True),
    "a numeric id": lambda o: o.update(id=1),
    "archived as text": lambda o: o.update(archived="false"),
    "no updatedAt": lambda o: o.pop("updatedAt"),
    "updatedAt in epoch milliseconds": lambda o: o.update(updatedAt=1763899200000),
}


@pytest.mark.parametrize("breakage", BROKEN_OBJECTS)
def test_a_mistyped_object_breaks_the_contract(breakage: str) -> None:
    good = _company()
    bad = _company()
    BROKEN_OBJECTS[breakage](bad)

    assert violations("simple-public-object", good) == []
    assert violations("simple-public-object", bad)


async def test_a_number_stored_in_the_sandbox_is_caught_on_the_wire(
    state: SandboxState, recorder: Recorder, raw: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    # As a hand-edited (or old) sandbox file could hold it, past the sandbox's own validation.
    state.companies[company]["numberofemployees"] = 42  # type: ignore[assignment]

    await raw.get(
        f"/crm/v3/objects/companies/{company}", params={"properties": "numberofemployees"}
    )

    with pytest.raises(AssertionError, match="properties/numberofemployees: 42 is not of type"):
        recorder.assert_contract_kept()


def test_a_batch_answer_without_its_timestamps_breaks_the_contract() -> None:
    answer = {"status": "COMPLETE", "results": [_company()]}

    problems = violations("batch-response-simple-public-object", answer)

    assert any("'startedAt' is a required property" in p for p in problems)
    assert any("'completedAt' is a required property" in p for p in problems)
