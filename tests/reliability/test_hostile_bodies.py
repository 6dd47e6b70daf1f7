"""Hostile bodies on every intake, on SQLite and PostgreSQL: JSON nested 100,000 deep and a
5,000-digit integer answer 400 naming the problem (never 500) with valid credentials, and
401 without ever reaching a parser when the credentials are in the URL or the headers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from dynamics_samples import DOCS_EXAMPLE
from every_intake import (
    ADMIN_TOKEN,
    DYN_CONNECTION,
    DYN_KEY,
    EVERY_INTAKE,
    SEGMENT_KEY,
    SF_CONNECTION,
    SF_SECRET,
)
from sqlalchemy import select

from connector import segment
from connector.dynamics import events as dynamics_events
from connector.hubspot import events as hubspot_events
from connector.salesforce import events as salesforce_events
from testkit import PUBLIC_URL, Service, hubspot_event, native, signed_v3_headers
from webhooks import intake
from webhooks.store.models import InboxEvent

HUBSPOT_URI = f"{PUBLIC_URL}/webhooks/hubspot"
HOLE = b'"@HOLE@"'


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def _dynamics_template() -> bytes:
    document = json.loads(DOCS_EXAMPLE)
    document["Depth"] = "@HOLE@"
    return json.dumps(document).encode()


TRACK = {"event": "Used", "userId": "u1", "properties": {"p": "@HOLE@"}}
# intake -> (path with credentials, headers with credentials, a valid body with a HOLE where
# the hostile value goes, the same path and headers without credentials)
INTAKES: dict[str, tuple[str, dict[str, str], bytes, str, dict[str, str]]] = {
    "hubspot": (
        "/webhooks/hubspot",
        {},  # signed per body
        json.dumps([hubspot_event(1, extra="@HOLE@")]).encode(),
        "/webhooks/hubspot",
        {"Content-Type": "application/json"},
    ),
    "dynamics": (
        f"/webhooks/dynamics/{DYN_CONNECTION}?code={DYN_KEY}",
        {"Content-Type": "application/json"},
        _dynamics_template(),
        f"/webhooks/dynamics/{DYN_CONNECTION}",
        {"Content-Type": "application/json"},
    ),
    "segment-batch": (
        "/ingest/segment/v1/batch",
        {**basic(SEGMENT_KEY), "Content-Type": "application/json"},
        json.dumps(
            {
                "batch": [
                    {
                        "type": "track",
                        "event": "Used",
                        "userId": "u1",
                        "properties": {"p": "@HOLE@"},
                    }
                ]
            }
        ).encode(),
        "/ingest/segment/v1/batch",
        {**basic("not-the-write-key"), "Content-Type": "application/json"},
    ),
    "segment-track": (
        "/ingest/segment/v1/track",
        {**basic(SEGMENT_KEY), "Content-Type": "application/json"},
        json.dumps(TRACK).encode(),
        "/ingest/segment/v1/track",
        {"Authorization": "Bearer not-basic", "Content-Type": "application/json"},
    ),
    "native": (
        "/ingest/events",
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        json.dumps({"events": [native("usage", "1001", user="u1", feature="@HOLE@")]}).encode(),
        "/ingest/events",
        {"Content-Type": "application/json"},
    ),
}
# Segment's own limit for a single call is 32 KB; everything else takes 1 MB.
DEPTH = {"segment-track": 15_000}


def deep(name: str) -> bytes:
    depth = DEPTH.get(name, 100_000)
    return b"[" * depth + b"]" * depth


def huge_integer(_name: str) -> bytes:
    return b"9" * 5000


HOSTILE: dict[str, tuple[Callable[[str], bytes], str]] = {
    "deep": (deep, "JSON nested deeper than 64 levels"),
    "huge-integer": (huge_integer, "JSON number with 5000 digits"),
}


@pytest.fixture
async def intakes(service_factory) -> Service:
    service: Service = await service_factory(**EVERY_INTAKE)
    return service


async def inbox_rows(service: Service) -> list[InboxEvent]:
    async with service.runtime.sessions() as session:
        return list((await session.execute(select(InboxEvent))).scalars())


def _post_headers(name: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    return signed_v3_headers(body, uri=HUBSPOT_URI) if name == "hubspot" else headers


@pytest.mark.parametrize("name", INTAKES)
async def test_the_template_body_is_accepted(intakes: Service, name: str) -> None:
    """The control: with a plain value in the hole, each body is stored."""
    path, headers, template, _, _ = INTAKES[name]
    body = template.replace(HOLE, b"1" if name == "dynamics" else b'"x"')
    response = await intakes.client.post(
        path, content=body, headers=_post_headers(name, headers, body)
    )
    assert response.status_code in {200, 202}, response.text
    assert await inbox_rows(intakes)


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("name", INTAKES)
async def test_hostile_json_with_credentials_is_400_naming_the_problem(
    intakes: Service, name: str, hostile: str
) -> None:
    make, message = HOSTILE[hostile]
    path, headers, template, _, _ = INTAKES[name]
    body = template.replace(HOLE, make(name))
    response = await intakes.client.post(
        path, content=body, headers=_post_headers(name, headers, body)
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert await inbox_rows(intakes) == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_each_parser_alone_would_fail_on_the_hostile_values(hostile: str) -> None:
    """Why the shared limits exist: json.loads and pydantic's parser fail on these bodies with
    errors no intake can name, past the point where they have spent the work."""
    make, _ = HOSTILE[hostile]
    body = b"[" + make("hubspot") + b"]"
    with pytest.raises((RecursionError, ValueError)):
        json.loads(body)
    with pytest.raises(ValueError, match=r"recursion limit|out of range"):
        hubspot_events._BATCH.validate_json(body)


def _parsers_refusing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every intake's parser replaced by one that records being called."""
    called: list[str] = []

    def spy(name: str) -> Callable[..., Any]:
        def parse(*_args: object, **_kwargs: object) -> Any:
            called.append(name)
            raise AssertionError(f"{name} parsed a body before the credentials were checked")

        return parse

    monkeypatch.setattr(hubspot_events, "parse_batch", spy("hubspot"))
    monkeypatch.setattr(dynamics_events, "parse_execution_context", spy("dynamics"))
    monkeypatch.setattr(segment, "check_request", spy("segment"))
    monkeypatch.setattr(intake, "parse_native", spy("native"))
    monkeypatch.setattr(salesforce_events, "parse_outbound_message", spy("salesforce"))
    return called


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("name", INTAKES)
async def test_hostile_json_without_credentials_is_401_and_never_parsed(
    intakes: Service, name: str, hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, _ = HOSTILE[hostile]
    _, _, template, path, headers = INTAKES[name]
    called = _parsers_refusing(monkeypatch)
    response = await intakes.client.post(
        path, content=template.replace(HOLE, make(name)), headers=headers
    )
    assert response.status_code == 401, response.text
    assert called == []
    assert await inbox_rows(intakes) == []


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_segment_without_an_authorization_header_parses_within_the_limits(
    intakes: Service, hostile: str
) -> None:
    """Only then may the key be in the body (writeKey): the body must be parsed to find it."""
    make, message = HOSTILE[hostile]
    body = (
        b'{"writeKey": "' + SEGMENT_KEY.encode() + b'", "event": "Used", "userId": "u1", '
        b'"properties": ' + make("segment-track") + b"}"
    )
    response = await intakes.client.post(
        "/ingest/segment/v1/track", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert await inbox_rows(intakes) == []


def _deep_outbound_message(depth: int) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<soapenv:Body>" + b"<a>" * depth + b"</a>" * depth + b"</soapenv:Body></soapenv:Envelope>"
    )


async def test_deeply_nested_xml_is_a_400_fault_naming_the_depth(intakes: Service) -> None:
    response = await intakes.client.post(
        f"/webhooks/salesforce/{SF_CONNECTION}/{SF_SECRET}",
        content=_deep_outbound_message(100_000),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )
    assert response.status_code == 400, response.text
    assert "XML nested deeper than 64 levels" in response.text
    assert await inbox_rows(intakes) == []


async def test_deeply_nested_xml_without_the_secret_is_401_and_never_parsed(
    intakes: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    called = _parsers_refusing(monkeypatch)
    response = await intakes.client.post(
        f"/webhooks/salesforce/{SF_CONNECTION}",
        content=_deep_outbound_message(100_000),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )
    assert response.status_code == 401, response.text
    assert called == []


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_json_on_the_admin_config_api_is_400(intakes: Service, hostile: str) -> None:
    make, _ = HOSTILE[hostile]
    response = await intakes.client.put(
        "/api/v1/config",
        content=b'{"config": ' + make("admin") + b"}",
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/json",
            "If-Match": "*",
        },
    )
    assert response.status_code == 400, response.text
