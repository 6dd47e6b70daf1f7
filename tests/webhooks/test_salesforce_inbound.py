"""Salesforce end to end inside the service: Outbound Messages in (Ack only once stored), the
worker's mapping and echo suppression, composite write-back with per-record outcomes, and the
daily-limit pause. Salesforce is mocked at the transport with its documented bodies."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from connector.salesforce.api import DEFAULT_API_VERSION
from connector.salesforce.events import ACK_ENVELOPE
from webhooks.backfill import run_backfill
from webhooks.store.models import Account, InboxEvent, WritebackItem

CONNECTION = "acme-sf"
ORG = "00D5e000000abcdEAA"
ORG_URL = "https://acme.my.salesforce.com"
OWN_USER = "0055e000001XyZ1AAK"
TOKEN_URL = f"{ORG_URL}/services/oauth2/token"
COMPOSITE = f"{ORG_URL}/services/data/{DEFAULT_API_VERSION}/composite/sobjects"
ENDPOINT = f"/webhooks/salesforce/{CONNECTION}"
# A connection without a shared secret refuses every message (anyone may know an org id), so
# the fixtures configure one and `_post` sends it unless told otherwise.
SECRET = "s3cret-path-value"


def salesforce_settings(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "salesforce_connection_name": CONNECTION,
        "salesforce_organization_id": ORG,
        "salesforce_login_url": ORG_URL,
        "salesforce_client_id": "3MVG9-consumer-key",
        "salesforce_client_secret": "consumer-secret-value",
        "salesforce_webhook_secret": SECRET,
    }
    values.update(overrides)
    return values


def _fields(values: dict[str, str | None]) -> str:
    parts = []
    for name, value in values.items():
        if value is None:
            parts.append(f'<sf:{name} xsi:nil="true"/>')
        else:
            parts.append(f"<sf:{name}>{value}</sf:{name}>")
    return "".join(parts)


def outbound(
    *notifications: tuple[str, str, dict[str, str | None]], organization: str = ORG
) -> bytes:
    """An Outbound Message shaped like the SOAP API guide's example: (notification id,
    sObject type, fields)."""
    body = "".join(
        f"<Notification><Id>{nid}</Id>"
        f'<sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{_fields(values)}</sObject></Notification>"
        for nid, sobject, values in notifications
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization}</OrganizationId>"
        "<ActionId>04k5e000000TnTyAAK</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"<EnterpriseUrl>{ORG_URL}/services/Soap/c/62.0/00D5e000000abcd</EnterpriseUrl>"
        f"<PartnerUrl>{ORG_URL}/services/Soap/u/62.0/00D5e000000abcd</PartnerUrl>"
        f"{body}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def account(
    nid: str, record: str = "0015e00000AbCdEAAV", **values: str | None
) -> tuple[str, str, dict[str, str | None]]:
    fields: dict[str, str | None] = {
        "Id": record,
        "IsDeleted": "false",
        "LastModifiedById": "0055e000009OtherAAA",
        "Name": "Acme Corporation",
        "OwnerId": "0055e000002OwnerAAA",
        "SystemModstamp": "2026-11-20T10:15:00.000Z",
        "Website": "https://www.acme.example",
    }
    fields.update(values)
    return nid, "Account", fields


async def _inbox(service) -> list[InboxEvent]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(select(InboxEvent).where(InboxEvent.source == "salesforce"))
        return list(rows.scalars())


async def _accounts(service) -> dict[str, Account]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(select(Account).where(Account.connection == CONNECTION))
        return {row.crm_id: row for row in rows.scalars()}


async def _post(
    service, body: bytes, path: str = ENDPOINT, *, secret: str | None = SECRET, **headers: str
):
    if secret is not None:
        headers = {"X-CRM-Health-Secret": secret, **headers}
    return await service.client.post(
        path,
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""', **headers},
    )


@pytest.fixture
async def salesforce(service_factory):
    return await service_factory(**salesforce_settings())


@pytest.fixture
def org():
    """Salesforce's token endpoint and the composite collections endpoint, all records ok."""
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(
            200,
            json={
                "access_token": "00D5e000000abcd!AQ0AQ.token",
                "instance_url": ORG_URL,
                "id": f"https://login.salesforce.com/id/{ORG}/{OWN_USER}",
                "token_type": "Bearer",
                "issued_at": "1732357200000",
                "signature": "c2lnbmF0dXJl",
            },
        )
        router.patch(COMPOSITE).mock(side_effect=_all_ok)
        yield router


def _all_ok(request):
    records = json.loads(request.content)["records"]
    return respx.MockResponse(
        200, json=[{"id": r["id"], "success": True, "errors": []} for r in records]
    )


def _records(router) -> list[dict[str, Any]]:
    return [
        record
        for call in router.routes[1].calls
        for record in json.loads(call.request.content)["records"]
    ]


# --- intake -------------------------------------------------------------------------------------


async def test_outbound_message_is_stored_then_acknowledged_exactly(salesforce) -> None:
    response = await _post(salesforce, outbound(account("04l5e000001"), account("04l5e000002")))
    assert response.status_code == 200
    assert response.content == ACK_ENVELOPE
    assert response.headers["content-type"].startswith("text/xml")
    rows = await _inbox(salesforce)
    assert sorted(row.dedup_key for row in rows) == ["04l5e000001", "04l5e000002"]
    assert {row.kind for row in rows} == {"Account"}
    assert all(row.connection == CONNECTION for row in rows)


async def test_redelivered_notifications_are_acknowledged_and_stored_once(salesforce) -> None:
    body = outbound(account("04l5e000001"))
    for _ in range(3):
        assert (await _post(salesforce, body)).content == ACK_ENVELOPE
    assert len(await _inbox(salesforce)) == 1


async def test_message_from_another_org_is_403_and_not_stored(salesforce) -> None:
    response = await _post(
        salesforce, outbound(account("04l5e000001"), organization="00D5e000000zzzzEAA")
    )
    assert response.status_code == 403
    assert b"<faultcode>soapenv:Client</faultcode>" in response.content
    assert b"00D5e000000zzzzEAA is not the org" in response.content
    assert await _inbox(salesforce) == []


async def test_fifteen_character_org_id_matches_the_eighteen_character_one(
    service_factory,
) -> None:
    service = await service_factory(**salesforce_settings(salesforce_organization_id=ORG[:15]))
    assert (await _post(service, outbound(account("04l5e000001")))).status_code == 200


async def test_unknown_connection_is_404_fault(salesforce) -> None:
    response = await _post(salesforce, outbound(account("04l5e000001")), "/webhooks/salesforce/x")
    assert response.status_code == 404
    assert b"no Salesforce connection named" in response.content


async def test_hubspot_connection_name_is_no_salesforce_endpoint(salesforce) -> None:
    response = await _post(salesforce, outbound(account("1")), "/webhooks/salesforce/default")
    assert response.status_code == 404


async def test_connection_without_organization_id_is_503_so_salesforce_retries(
    service_factory,
) -> None:
    service = await service_factory(**salesforce_settings(salesforce_organization_id=None))
    response = await _post(service, outbound(account("04l5e000001")))
    assert response.status_code == 503
    assert b"soapenv:Server" in response.content
    assert b"CRM_HEALTH_SALESFORCE_ORGANIZATION_ID" in response.content


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (ENDPOINT, {}, 401),
        (f"{ENDPOINT}/wrong-secret", {}, 401),
        (f"{ENDPOINT}/s3cret-path-value", {}, 200),
        (ENDPOINT, {"X-CRM-Health-Secret": "s3cret-path-value"}, 200),
        (ENDPOINT, {"X-CRM-Health-Secret": "nope"}, 401),
    ],
)
async def test_shared_secret_is_required_in_path_or_header_when_configured(
    salesforce, path: str, headers: dict[str, str], status: int
) -> None:
    service = salesforce
    response = await _post(service, outbound(account("04l5e000001")), path, secret=None, **headers)
    assert response.status_code == status
    assert len(await _inbox(service)) == (1 if status == 200 else 0)


async def test_connection_without_a_secret_refuses_a_message_from_its_own_org(
    service_factory,
) -> None:
    service = await service_factory(**salesforce_settings(salesforce_webhook_secret=None))
    # The org id is all a forger needs to know; Salesforce shows it in every message.
    response = await _post(service, outbound(account("04l5e000001")), secret=None)
    assert response.status_code == 401
    assert b"<faultcode>soapenv:Client</faultcode>" in response.content
    assert b"CRM_HEALTH_SALESFORCE_ALLOW_UNSIGNED" in response.content
    assert await _inbox(service) == []


async def test_connection_that_opted_out_of_the_secret_accepts_a_message_from_its_own_org(
    service_factory,
) -> None:
    service = await service_factory(
        **salesforce_settings(salesforce_webhook_secret=None, salesforce_allow_unsigned=True)
    )
    response = await _post(service, outbound(account("04l5e000001")), secret=None)
    assert response.status_code == 200
    assert len(await _inbox(service)) == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_guessing_the_secret_is_429_after_ten_failures_even_for_the_right_one(
    salesforce,
) -> None:
    inbound = salesforce.runtime.connections.get(CONNECTION).crm_settings
    clock = _Clock()
    inbound.guesses.clock = clock
    body = outbound(account("04l5e000001"))
    statuses = [
        (await _post(salesforce, body, secret=f"guess-{i}")).status_code for i in range(3000)
    ]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    # Past the limit the secret is not compared: the right one is refused too, which is what
    # makes guessing cost a window per ten tries.
    clock.now += 30
    refused = await _post(salesforce, body)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert b"<faultcode>soapenv:Client</faultcode>" in refused.content
    assert await _inbox(salesforce) == []
    clock.now += 30
    assert (await _post(salesforce, body)).status_code == 200
    assert len(await _inbox(salesforce)) == 1


async def test_wrong_secrets_from_one_address_do_not_block_another(salesforce) -> None:
    body = outbound(account("04l5e000001"))
    for i in range(50):
        await _post(salesforce, body, secret=f"guess-{i}")
    assert (await _post(salesforce, body)).status_code == 429
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=salesforce.app, client=("198.51.100.7", 40000)),
        base_url=str(salesforce.client.base_url),
    )
    async with other:
        response = await other.post(
            ENDPOINT,
            content=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "X-CRM-Health-Secret": SECRET},
        )
    assert response.status_code == 200
    assert len(await _inbox(salesforce)) == 1


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&lol9;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&xxe;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
async def test_xml_bombs_are_400_faults_and_nothing_is_stored(salesforce, body: bytes) -> None:
    response = await _post(salesforce, body)
    assert response.status_code == 400
    assert b"soapenv:Fault" in response.content
    assert b"root:" not in response.content
    assert await _inbox(salesforce) == []


async def test_body_over_the_limit_is_413(service_factory) -> None:
    service = await service_factory(**salesforce_settings(webhook_max_body_bytes=512))
    response = await _post(service, outbound(*(account(f"04l{i:012d}") for i in range(5))))
    assert response.status_code == 413
    assert await _inbox(service) == []


async def test_storage_failure_is_a_503_fault_never_an_ack(salesforce, monkeypatch) -> None:
    async def broken(*args: object, **kwargs: object) -> list[int]:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("webhooks.inbox_writer.inbox.insert_grouped", broken)
    response = await _post(salesforce, outbound(account("04l5e000001")))
    assert response.status_code == 503
    assert ACK_ENVELOPE not in response.content
    assert b"send them again" in response.content


# --- the worker ----------------------------------------------------------------------------------


async def test_account_notification_becomes_an_account_with_owner_and_domain(
    salesforce, org
) -> None:
    await _post(salesforce, outbound(account("04l5e000001")))
    await salesforce.runtime.pipeline.run_once()
    stored = (await _accounts(salesforce))["0015e00000AbCdEAAV"]
    assert stored.crm == "salesforce"
    assert stored.name == "Acme Corporation"
    assert stored.domain == "acme.example"
    assert stored.owner == "0055e000002OwnerAAA"


async def test_health_is_written_back_with_composite_collections(salesforce, org) -> None:
    await _post(salesforce, outbound(account("04l5e000001")))
    await salesforce.runtime.pipeline.run_once()
    records = _records(org)
    assert [r["id"] for r in records] == ["0015e00000AbCdEAAV"]
    assert records[0]["attributes"] == {"type": "Account"}
    assert records[0]["Health_Band__c"] in {"healthy", "neutral", "at_risk", "unknown"}
    body = json.loads(org.routes[1].calls[0].request.content)
    assert body["allOrNone"] is False
    assert org.routes[1].calls[0].request.headers["Authorization"].startswith("Bearer ")


async def test_our_own_change_to_an_account_is_ignored(salesforce, org) -> None:
    await _post(salesforce, outbound(account("04l5e000001", LastModifiedById=OWN_USER)))
    await salesforce.runtime.pipeline.run_once()
    assert await _accounts(salesforce) == {}
    assert not org.routes[1].called
    rows = await _inbox(salesforce)
    assert [row.status for row in rows] == ["done"]


async def test_echo_of_a_write_back_starts_no_loop(salesforce, org) -> None:
    await _post(salesforce, outbound(account("04l5e000001")))
    await salesforce.runtime.pipeline.run_once()
    assert org.routes[1].call_count == 1
    # Our write changed the record: the flow sends it again, last modified by us.
    await _post(salesforce, outbound(account("04l5e000002", LastModifiedById=OWN_USER[:15])))
    await salesforce.runtime.pipeline.run_once()
    await salesforce.runtime.pipeline.run_once()
    assert org.routes[1].call_count == 1


async def _writeback(service) -> WritebackItem:
    async with service.runtime.sessions() as session:
        return (await session.execute(select(WritebackItem))).scalar_one()


async def test_rejected_record_is_failed_at_once_and_not_retried(salesforce, org) -> None:
    org.routes[1].respond(
        200,
        json=[
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "ENTITY_IS_DELETED",
                        "message": "entity is deleted",
                        "fields": [],
                    }
                ],
            }
        ],
    )
    await _post(salesforce, outbound(account("04l5e000001")))
    await salesforce.runtime.pipeline.run_once()
    item = await _writeback(salesforce)
    assert item.status == "failed"
    assert item.attempts == 1
    assert "ENTITY_IS_DELETED" in (item.last_error or "")


async def test_locked_record_is_retried_later(salesforce, org) -> None:
    org.routes[1].respond(
        200,
        json=[
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "UNABLE_TO_LOCK_ROW",
                        "message": "unable to obtain exclusive access to this record",
                        "fields": [],
                    }
                ],
            }
        ],
    )
    await _post(salesforce, outbound(account("04l5e000001")))
    await salesforce.runtime.pipeline.run_once()
    item = await _writeback(salesforce)
    assert item.status == "pending"
    assert "UNABLE_TO_LOCK_ROW" in (item.last_error or "")


async def test_daily_limit_pauses_the_write_back_without_counting_an_attempt(
    salesforce, org
) -> None:
    org.routes[1].respond(
        403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    await _post(salesforce, outbound(account("04l5e000001")))
    await salesforce.runtime.pipeline.run_once()
    item = await _writeback(salesforce)
    assert item.status == "pending"
    assert item.attempts == 0
    assert "TotalRequests" in (item.last_error or "")
    calls = org.routes[1].call_count
    await salesforce.runtime.pipeline.run_once()
    assert org.routes[1].call_count == calls


# --- backfill ----------------------------------------------------------------------------------


QUERY = f"{ORG_URL}/services/data/{DEFAULT_API_VERSION}/query"
NEXT_PAGE = f"/services/data/{DEFAULT_API_VERSION}/query/01gD0000002HU6KIAW-2000"


def _account_record(record_id: str, name: str) -> dict[str, Any]:
    return {
        "attributes": {
            "type": "Account",
            "url": f"/services/data/{DEFAULT_API_VERSION}/sobjects/Account/{record_id}",
        },
        "Id": record_id,
        "IsDeleted": False,
        "LastModifiedById": "0055e000009OtherAAA",
        "Name": name,
        "OwnerId": "0055e000002OwnerAAA",
        "SystemModstamp": "2026-11-01T08:00:00.000+0000",
        "Website": None,
    }


async def test_backfill_pages_through_soql_and_the_worker_scores_the_accounts(
    salesforce, org
) -> None:
    first = org.get(QUERY).respond(
        200,
        json={
            "totalSize": 3,
            "done": False,
            "nextRecordsUrl": NEXT_PAGE,
            "records": [
                _account_record("0015e00000AAAAAAA1", "Initech"),
                _account_record("0015e00000AAAAAAA2", "Umbrella"),
            ],
        },
    )
    second = org.get(f"{ORG_URL}{NEXT_PAGE}").respond(
        200,
        json={
            "totalSize": 3,
            "done": True,
            "records": [_account_record("0015e00000AAAAAAA3", "Hooli")],
        },
    )
    connection = salesforce.runtime.connections.get(CONNECTION)
    report = await run_backfill(
        sessions=salesforce.runtime.sessions, connection=connection, object_types=["accounts"]
    )
    assert report.events == 3
    assert first.call_count == 1
    assert second.call_count == 1
    assert "FROM Account" in first.calls[0].request.url.params["q"]
    await salesforce.runtime.pipeline.run_once()
    accounts = await _accounts(salesforce)
    assert {a.name for a in accounts.values()} == {"Initech", "Umbrella", "Hooli"}
    assert sorted(r["id"] for r in _records(org)) == sorted(accounts)
