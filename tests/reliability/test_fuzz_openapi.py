"""Fuzz every operation of the OpenAPI schema with schemathesis: no input gives a 5xx.

The app runs with every source enabled (HubSpot, Salesforce, Dynamics, Segment, the bootstrap
admin token, OAuth installs) and no worker; the CRMs are unreachable (a transport that refuses
every connection). Each operation is fuzzed twice, with valid and invalid inputs
(schemathesis' positive and negative modes): without credentials, and with the ones it takes
(the admin token, the Segment write key, a HubSpot signature, the Salesforce secret, the
Dynamics key, the real connection names, the current configuration ETag, seeded account and
alert ids), so the generated inputs reach the handlers behind the checks. The intake bodies,
which the schema does not describe (they are read raw), are fuzzed behind valid credentials by
the last tests, from real documents with parts replaced, and from random bytes.

SQLite only, on purpose: fuzzing twice would double the time, and the store runs on both
backends everywhere else. Examples per operation are bounded (deadline off, derandomized, no
example database) so the module stays under a minute and a half.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
import schemathesis
from dynamics_samples import DOCS_EXAMPLE
from every_intake import (
    ADMIN_TOKEN,
    DYN_CONNECTION,
    DYN_KEY,
    EVERY_INTAKE,
    SEGMENT_KEY,
    SF_CONNECTION,
    SF_ORG,
    SF_SECRET,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from sqlalchemy import select

from testkit import (
    PUBLIC_URL,
    hubspot_event,
    make_settings,
    native,
    signed_v3_headers,
    store_native,
)
from webhooks.app import _printable, create_app
from webhooks.settings import Settings
from webhooks.store.models import Account, Alert

SEGMENT_CALLS = ("batch", "track", "page", "screen", "identify", "group", "alias")
# Seeded in the default connection, so that fuzzed reads and changes find something.
ACCOUNT_IDS = ("1001", "1002", "1003")
ALERTS = len(ACCOUNT_IDS)

SCHEMA_EXAMPLES = 25
BODY_EXAMPLES = 60
FUZZ = settings(
    max_examples=SCHEMA_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
BODY_FUZZ = settings(FUZZ, max_examples=BODY_EXAMPLES)


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused (fuzz test)", request=request)


class _LateApp:
    """The schema is read when the module is imported, before any database exists; requests go
    to the app the fixture builds once the database is there."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


APP = _LateApp()


def _settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        hubspot_api_base="http://127.0.0.1:9",
        hubspot_client_id="fuzz-client-id",
        encryption_key="fuzz-encryption-passphrase-of-32-characters-at-least",
        **EVERY_INTAKE,
    )


# Building the app reads no database and starts nothing: only its lifespan does.
schema = schemathesis.openapi.from_dict(create_app(_settings("sqlite+aiosqlite://")).openapi())
schema.app = APP
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


async def _seed(database_url: str) -> None:
    """Accounts the worker built from native events, each with one open alert, in the default
    connection: fuzzed reads and changes then find real rows."""
    app = create_app(_settings(database_url), crm_transport=httpx.MockTransport(_unreachable))
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await store_native(
            runtime,
            [
                event
                for days, crm_id in enumerate(ACCOUNT_IDS)
                for event in (
                    native("usage", crm_id, days_ago=days * 30, user="u1"),
                    native("account", crm_id, attributes={"name": f"Account {crm_id}", "seats": 5}),
                )
            ],
        )
        await runtime.pipeline.process_inbox()
        now = datetime.now(UTC)
        async with runtime.sessions() as session, session.begin():
            accounts = (await session.execute(select(Account))).scalars().all()
            assert len(accounts) == len(ACCOUNT_IDS)
            for account in accounts:
                session.add(
                    Alert(
                        account_id=account.id,
                        connection="default",
                        rule="entered-at-risk",
                        key="at_risk",
                        status="open",
                        title="Account is at risk",
                        reason="band neutral -> at risk",
                        score=35,
                        band="at_risk",
                        previous_score=55,
                        previous_band="neutral",
                        trend_30d=-20,
                        drivers=[],
                        notified=True,
                        fired_at=now - timedelta(hours=1),
                    )
                )


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Any]:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite+aiosqlite:///{path}"
    with ThreadPoolExecutor(max_workers=1) as pool:  # no event loop may run in this thread
        pool.submit(asyncio.run, _seed(database_url)).result()
    APP.app = create_app(_settings(database_url), crm_transport=httpx.MockTransport(_unreachable))
    yield APP
    # schemathesis started the app's lifespan in its own event loop thread: stop it there.
    asgi.shutdown_lifespans()
    APP.app = None


# --- every operation of the schema -------------------------------------------------------------


def _set_header(case: Any, name: str, value: str) -> None:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != name.lower()}
    case.headers = {**headers, name: value}


def _current_etag() -> str:
    with asgi.get_client(APP) as client:
        response = client.get("/api/v1/config", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def _seeded_ids(case: Any) -> None:
    """Half of the generated ids (positive ones) point at seeded rows instead."""
    parameters = case.path_parameters or {}
    value = parameters.get("alert_id")
    if isinstance(value, int) and value % 2 == 0:
        parameters["alert_id"] = 1 + abs(value) % ALERTS
    value = parameters.get("account_id")
    if isinstance(value, str) and len(value) % 2 == 0:
        parameters["account_id"] = ACCOUNT_IDS[len(value) % len(ACCOUNT_IDS)]


def _with_credentials(case: Any) -> None:
    """Give the case the credentials its operation takes, and real names where it needs them."""
    path: str = case.operation.path
    if path == "/webhooks/hubspot":
        # The schema describes no body, so none is sent: sign the empty body.
        for name, value in signed_v3_headers(b"", uri=f"{PUBLIC_URL}{path}").items():
            _set_header(case, name, value)
    elif path.startswith("/webhooks/salesforce/"):
        case.path_parameters["connection"] = SF_CONNECTION
        if "secret" in case.path_parameters:
            case.path_parameters["secret"] = SF_SECRET
        else:
            _set_header(case, "X-CRM-Health-Secret", SF_SECRET)
    elif path.startswith("/webhooks/dynamics/"):
        case.path_parameters["connection"] = DYN_CONNECTION
        case.query = {**(case.query or {}), "code": DYN_KEY}
    elif path.startswith("/ingest/segment/"):
        call = case.path_parameters.get("call")
        if call not in SEGMENT_CALLS:
            case.path_parameters["call"] = SEGMENT_CALLS[len(str(call)) % len(SEGMENT_CALLS)]
        basic = base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()
        _set_header(case, "Authorization", f"Basic {basic}")
    elif path == "/api/v1/session" and isinstance(case.body, dict) and "key" in case.body:
        case.body = {**case.body, "key": ADMIN_TOKEN}
    else:
        _set_header(case, "Authorization", f"Bearer {ADMIN_TOKEN}")
    if any(name.lower() == "if-match" for name in case.headers or {}):
        _set_header(case, "If-Match", _current_etag())
    _seeded_ids(case)


@schema.parametrize()
@FUZZ
@pytest.mark.usefixtures("live_app")
def test_no_operation_answers_5xx_without_credentials(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@schema.parametrize()
@FUZZ
@pytest.mark.usefixtures("live_app")
def test_no_operation_answers_5xx_with_credentials(case: Any) -> None:
    _with_credentials(case)
    case.call_and_validate(checks=[not_a_server_error])


# --- integers beyond what the database stores --------------------------------------------------

# The first integers past a signed 64-bit column, which both databases refuse to bind: what the
# fuzzer found first, pinned here for every operation that reads one.
TOO_BIG, TOO_SMALL = str(2**63), str(-(2**63) - 1)
BEYOND_64_BITS = [
    ("GET", f"/api/v1/accounts?offset={TOO_BIG}"),
    ("GET", f"/api/v1/accounts/{ACCOUNT_IDS[0]}/alerts?offset={TOO_BIG}"),
    ("GET", f"/api/v1/alerts?offset={TOO_BIG}"),
    ("GET", f"/api/v1/config/versions?offset={TOO_BIG}"),
    ("GET", f"/api/v1/config/audit?offset={TOO_BIG}"),
    ("GET", f"/api/v1/ingest/unmatched?offset={TOO_BIG}"),
    ("GET", f"/api/v1/alerts/{TOO_BIG}"),
    ("GET", f"/api/v1/alerts/{TOO_SMALL}"),
    ("POST", f"/api/v1/alerts/{TOO_BIG}/acknowledge"),
    ("POST", f"/api/v1/alerts/{TOO_BIG}/retry"),
    ("GET", f"/api/v1/config/versions/{TOO_BIG}"),
    ("POST", f"/api/v1/config/versions/{TOO_BIG}/rollback"),
]


@pytest.mark.parametrize(("method", "path"), BEYOND_64_BITS)
@pytest.mark.usefixtures("live_app")
def test_an_integer_beyond_64_bits_is_refused_not_a_5xx(method: str, path: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "If-Match": _current_etag()}
    with asgi.get_client(APP) as client:
        response = client.request(method, path, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text)


# --- JSON strings Python can read but not write back -----------------------------------------

# "\ud800" is valid JSON (an escaped lone surrogate) that no UTF-8 encoder accepts: a refusal
# that quotes the input must not try to encode it.
LONE_SURROGATE = [
    ("POST", "/api/v1/session", b'{"key": "\\ud800"}'),
    ("PUT", "/api/v1/config", b'{"config": {}, "comment": "\\ud800"}'),
    ("POST", "/api/v1/config/preview", b'{"config": {}, "limit": "\\ud800"}'),
    ("POST", "/api/v1/alerts/1/acknowledge", b'{"note": "\\ud800", "x": 1}'),
    ("POST", "/api/v1/alerts/1/snooze", b'{"until": "\\ud800"}'),
]


@pytest.mark.parametrize(("method", "path", "body"), LONE_SURROGATE)
@pytest.mark.usefixtures("live_app")
def test_a_lone_surrogate_in_a_json_body_is_refused_not_a_5xx(
    method: str, path: str, body: bytes
) -> None:
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json",
        "If-Match": _current_etag(),
    }
    with asgi.get_client(APP) as client:
        response = client.request(method, path, data=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text)


# --- intake bodies behind valid credentials ------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", "0", "-1", "1e309", "2026-02-30T25:61:00Z", "\x00", "\u202e", "\ud800"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(document, dict):
        items: Iterator[tuple[Any, Any]] = iter(document.items())
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _leaves(document: Any) -> list[tuple[Any, ...]]:
    return [path for path in _paths(document) if not isinstance(_at(document, path), dict | list)]


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


@st.composite
def _mutated(draw: st.DrawFn, document: Any) -> Any:
    """The document with up to three of its values (mostly leaves) replaced by arbitrary JSON,
    or removed; unchanged now and then, so valid documents get through too."""
    changed = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, 3))):
        paths = _leaves(changed) if draw(st.booleans()) else list(_paths(changed))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _at(changed, path[:-1])
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON_VALUES)
        else:
            del parent[path[-1]]
    return changed


def _as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _json_bodies(document: Any) -> st.SearchStrategy[bytes]:
    """Mostly the document, changed; sometimes any JSON at all, or any bytes."""
    return st.one_of(
        _mutated(document).map(_as_json),
        _mutated(document).map(_as_json),
        JSON_VALUES.map(_as_json),
        st.binary(max_size=300),
    )


def _post(path: str, body: bytes, headers: dict[str, str]) -> int:
    with asgi.get_client(APP) as client:
        response = client.post(path, data=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text, body[:500])
    return response.status_code


HUBSPOT_DOCUMENT = [hubspot_event(1), hubspot_event(2, subscriptionType="company.creation")]


@BODY_FUZZ
@given(body=_json_bodies(HUBSPOT_DOCUMENT))
@pytest.mark.usefixtures("live_app")
def test_signed_hubspot_bodies_never_answer_5xx(body: bytes) -> None:
    uri = f"{PUBLIC_URL}/webhooks/hubspot"
    _post("/webhooks/hubspot", body, signed_v3_headers(body, uri=uri))


NATIVE_DOCUMENT = {
    "events": [
        native("usage", "1001", user="u1", feature="reports", id="n-1"),
        native("collaboration", "1001", kind="feedback"),
        native("interaction", "1002", channel="call", direction="customer", contact="c1"),
        native("contact", "1002", contact="c1", title="CEO", executive=True),
        native("ticket", "1003", ticket="t1", priority="urgent"),
        native("account", "1003", attributes={"name": "X", "seats": 10, "arr": 1.5}),
        native("outcome", "1003", outcome="renewed"),
    ]
}


@BODY_FUZZ
@given(body=_json_bodies(NATIVE_DOCUMENT))
@pytest.mark.usefixtures("live_app")
def test_native_event_bodies_never_answer_5xx(body: bytes) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    _post("/ingest/events", body, headers)


SEGMENT_MESSAGES: dict[str, dict[str, Any]] = {
    "track": {
        "type": "track",
        "event": "Report Exported",
        "userId": "u1",
        "messageId": "m-1",
        "timestamp": "2026-11-23T09:12:00Z",
        "context": {"groupId": "g1"},
        "properties": {"feature": "reports"},
    },
    "page": {"type": "page", "name": "Home", "userId": "u1", "messageId": "m-2"},
    "screen": {"type": "screen", "name": "Home", "userId": "u1", "messageId": "m-3"},
    "identify": {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}},
    "group": {"type": "group", "groupId": "g1", "userId": "u1", "traits": {"crm_id": "1001"}},
    "alias": {"type": "alias", "previousId": "anonymous-1", "userId": "u1"},
}
SEGMENT_DOCUMENTS = {
    **SEGMENT_MESSAGES,
    "batch": {"batch": list(SEGMENT_MESSAGES.values()), "sentAt": "2026-11-23T09:12:01Z"},
}


@BODY_FUZZ
@given(
    call_and_body=st.sampled_from(SEGMENT_CALLS).flatmap(
        lambda call: st.tuples(st.just(call), _json_bodies(SEGMENT_DOCUMENTS[call]))
    )
)
@pytest.mark.usefixtures("live_app")
def test_segment_bodies_never_answer_5xx(call_and_body: tuple[str, bytes]) -> None:
    call, body = call_and_body
    basic = base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
    _post(f"/ingest/segment/v1/{call}", body, headers)


@BODY_FUZZ
@given(body=_json_bodies(json.loads(DOCS_EXAMPLE)))
@pytest.mark.usefixtures("live_app")
def test_dynamics_bodies_never_answer_5xx(body: bytes) -> None:
    _post(f"/webhooks/dynamics/{DYN_CONNECTION}?code={DYN_KEY}", body, {})


XML_PIECES = st.sampled_from(
    ["<", ">", "&", "&amp;", "&#0;", "&#x110000;", "<![CDATA[", "]]>", "</sObject>", "<Id/>"]
)
# Mostly well-formed (escaped) text, sometimes markup that breaks the document.
XML_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40).map(escape),
    st.lists(st.one_of(st.text(max_size=20), XML_PIECES), max_size=5).map("".join),
)


def _outbound(organization: str, notification: str, fields: dict[str, str]) -> bytes:
    values = "".join(f"<sf:{name}>{value}</sf:{name}>" for name, value in fields.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization}</OrganizationId><ActionId>04k5e000000TnTyAAK</ActionId>"
        f"<Notification><Id>{notification}</Id>"
        '<sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{values}</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


SALESFORCE_BODIES = st.one_of(
    st.builds(
        _outbound,
        organization=st.one_of(st.just(SF_ORG), st.just(SF_ORG[:15]), XML_TEXT),
        notification=st.one_of(st.just("04l5e000001"), XML_TEXT),
        fields=st.fixed_dictionaries(
            {"Id": st.one_of(st.just("0015e00000AbCdEAAV"), XML_TEXT)},
            optional=dict.fromkeys(
                ("Name", "Website", "OwnerId", "LastModifiedById", "IsDeleted"), XML_TEXT
            ),
        ),
    ),
    st.binary(max_size=300),
)


@BODY_FUZZ
@given(body=SALESFORCE_BODIES)
@pytest.mark.usefixtures("live_app")
def test_salesforce_bodies_never_answer_5xx(body: bytes) -> None:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    _post(f"/webhooks/salesforce/{SF_CONNECTION}/{SF_SECRET}", body, headers)


def test_a_location_with_a_lone_surrogate_is_written_escaped() -> None:
    # A key of the client's own making (an extra field some models refuse) lands in `loc`.
    assert _printable("\ud800x") == "\\ud800x"
    assert _printable(3) == 3
    assert json.dumps(_printable("\ud800")).encode("utf-8")
